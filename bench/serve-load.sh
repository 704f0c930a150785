#!/usr/bin/env bash
# Load benchmark of `predictor serve` (issue 5) with a real HTTP load generator.
#
#   bench/serve-load.sh            # oha if installed (cargo install oha), else wrk (apt-get install wrk)
#   DURATION=20 bench/serve-load.sh
#
# Builds the release binary, serves testdata/savedmodels/tf1-tutorial (the tutorial's MNIST MLP,
# exported by TensorFlow) on 127.0.0.1, and for batching on and off measures:
#   single-instance predict at 1 and 64 connections, 100-instance predict at 16 connections:
#   req/s, instances/s, p50/p99 latency, non-2xx responses, and the server's peak RSS (VmHWM).
# Every run is bounded in time (DURATION seconds, default 10) and talks to loopback only.
# Prints a Markdown table; machine load (uptime) is printed before each run.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
duration=${DURATION:-10}
model=${MODEL:-$root/testdata/savedmodels/tf1-tutorial}
route=${ROUTE:-/v1/models/mnist:predict}

oha_bin=${OHA:-$(command -v oha || true)}
[ -n "$oha_bin" ] || { [ -x /tmp/oha/bin/oha ] && oha_bin=/tmp/oha/bin/oha; } || true
wrk_bin=$(command -v wrk || true)
if [ -z "$oha_bin" ] && [ -z "$wrk_bin" ]; then
  echo "need a load generator: cargo install oha, or apt-get install wrk" >&2
  exit 1
fi

cargo build --release -p predictor >&2
bin=$root/target/release/predictor

work=$(mktemp -d)
server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# Bodies: the first test image alone, and the 10 sample images repeated to 100 instances.
python3 - "$root/testdata/sample.json" "$work" <<'EOF'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
with open(sys.argv[2] + "/one.json", "w") as f:
    json.dump({"instances": rows[:1]}, f)
with open(sys.argv[2] + "/hundred.json", "w") as f:
    json.dump({"instances": (rows * 10)[:100]}, f)
EOF

start_server() {
  local log=$work/server.log
  # Per-request logs stay on (info), written to a file as a deployment would.
  RUST_LOG=${RUST_LOG:-info} "$bin" serve --port 0 --registry "$work/registry" --model "mnist=$model" "$@" \
    >"$work/server.out" 2>"$log" &
  server_pid=$!
  for _ in $(seq 1 200); do
    if grep -q "listening on" "$work/server.out" 2>/dev/null; then break; fi
    sleep 0.05
  done
  url=$(sed -n 's/^listening on //p' "$work/server.out")
  [ -n "$url" ] || { echo "server did not start:" >&2; cat "$log" >&2; exit 1; }
  for _ in $(seq 1 200); do
    if curl -sf "$url/v1/models/mnist" | grep -q AVAILABLE; then return; fi
    sleep 0.1
  done
  echo "model did not become AVAILABLE:" >&2; cat "$log" >&2; exit 1
}

stop_server() {
  peak_rss_kb=$(awk '/VmHWM/ {print $2}' "/proc/$server_pid/status")
  kill -TERM "$server_pid"; wait "$server_pid" 2>/dev/null || true
  server_pid=
}

# run NAME BODY INSTANCES CONNECTIONS -> one Markdown row (and the load average first, on stderr)
run() {
  local name=$1 body=$2 instances=$3 connections=$4
  echo "load before '$name' ($mode): $(uptime)" >&2
  if [ -n "$oha_bin" ]; then
    "$oha_bin" --no-tui --output-format json -z "${duration}s" -c "$connections" -m POST \
      -H 'content-type: application/json' -D "$body" "$url$route" >"$work/result.json"
    python3 - "$work/result.json" "$name" "$mode" "$instances" "$connections" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
name, mode, instances, connections = sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
codes = r.get("statusCodeDistribution", {})
ok = sum(v for k, v in codes.items() if k.startswith("2"))
bad = sum(v for k, v in codes.items() if not k.startswith("2")) + sum(r.get("errorDistribution", {}).values())
secs = r["summary"]["total"]
rps = ok / secs
p = r["latencyPercentiles"]
print(f"| {name} | {mode} | {connections} | {rps:,.0f} | {rps * instances:,.0f} | {p['p50'] * 1e3:.2f} | {p['p99'] * 1e3:.2f} | {bad} |")
EOF
  else
    cat >"$work/post.lua" <<EOF
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open("$body", "r"); wrk.body = f:read("*a"); f:close()
done = function(summary, latency, requests)
  local bad = summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
  local rps = (summary.requests - summary.errors.status) / (summary.duration / 1e6)
  io.write(string.format("| $name | $mode | $connections | %.0f | %.0f | %.2f | %.2f | %d |\n",
    rps, rps * $instances, latency:percentile(50) / 1e3, latency:percentile(99) / 1e3, bad))
end
EOF
    "$wrk_bin" -t "$(( connections < 2 ? 1 : 2 ))" -c "$connections" -d "${duration}s" -s "$work/post.lua" "$url$route" | tail -n 1
  fi
}

echo "machine: $(nproc) CPUs, $(uname -m); tool: ${oha_bin:-$wrk_bin}; ${duration}s per run; route $route" >&2
echo "| load | batching | connections | req/s | instances/s | p50 ms | p99 ms | errors |"
echo "|---|---|---|---|---|---|---|---|"
for mode in on off; do
  if [ "$mode" = on ]; then start_server; else start_server --no-batching; fi
  run "1 instance" "$work/one.json" 1 1
  run "1 instance" "$work/one.json" 1 64
  run "100 instances" "$work/hundred.json" 100 16
  stop_server
  echo "| peak RSS ($mode) | $((peak_rss_kb / 1024)) MiB | | | | | | |"
done
