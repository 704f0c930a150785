#!/usr/bin/env bash
# Load benchmark of `predictor serve` (issue 5) with a real HTTP load generator.
#
#   bench/serve-load.sh            # oha if installed (cargo install oha), else wrk (apt-get install wrk)
#   DURATION=20 bench/serve-load.sh
#   PREDICTOR=/tmp/old/predictor bench/serve-load.sh   # measure another build of the server
#   PROTOCOL=v2 bench/serve-load.sh                     # KServe V2 infer instead of TF Serving REST
#   PROTOCOL=grpc bench/serve-load.sh                   # TF Serving gRPC Predict (Rust client:
#                                                       # crates/serving/examples/grpc_load.rs)
#   PROTOCOL="rest v2 grpc" MODES=on bench/serve-load.sh  # all three, same run, same server
#   GRPC_LOAD=/path/grpc_load GRPC_CONNECTIONS=4 ...      # another build of the client; connections
#   MODES=on bench/serve-load.sh                        # batching on only (default: on, then off)
#
# Builds the release binary, serves testdata/savedmodels/tf1-tutorial (the tutorial's MNIST MLP,
# exported by TensorFlow) on 127.0.0.1, and for batching on and off measures:
#   single-instance predict at 1 and 64 connections, 100-instance predict at 16 connections:
#   req/s, instances/s, p50/p99 latency, non-2xx responses, and the server's peak RSS (VmHWM).
# gRPC runs the same loads as concurrent streams (64 streams over GRPC_CONNECTIONS HTTP/2
# connections, default 1, as ghz's default) and counts failed calls as errors.
# Every run is bounded in time (DURATION seconds, default 10) and talks to loopback only.
# Prints a Markdown table; machine load (uptime) is printed before each run.
set -euo pipefail

# shellcheck source=bench/lib-serve.sh
source "$(dirname "$0")/lib-serve.sh"
duration=${DURATION:-10}
protocols=${PROTOCOL:-rest}
# select PROTOCOL: sets $route and $suffix (the body files) for the HTTP protocols
select_protocol() {
  case "$1" in
    rest) route=${ROUTE:-/v1/models/mnist:predict}; suffix= ;;
    v2) route=${ROUTE:-/v2/models/mnist/infer}; suffix=-v2 ;;
    grpc) route=/tensorflow.serving.PredictionService/Predict; suffix= ;;
    *) echo "PROTOCOL must be rest, v2 or grpc (or several), not $1" >&2; exit 1 ;;
  esac
}
for protocol in $protocols; do select_protocol "$protocol"; done
grpc_load=
case " $protocols " in
  *" grpc "*)
    if [ -n "${GRPC_LOAD:-}" ]; then
      grpc_load=$GRPC_LOAD
    else
      cargo build --release -p serving --example grpc_load >&2
      grpc_load=$(cd "$(dirname "$0")/.." && pwd)/target/release/examples/grpc_load
    fi ;;
esac

oha_bin=${OHA:-$(command -v oha || true)}
[ -n "$oha_bin" ] || { [ -x /tmp/oha/bin/oha ] && oha_bin=/tmp/oha/bin/oha; } || true
wrk_bin=$(command -v wrk || true)
if [ -z "$oha_bin" ] && [ -z "$wrk_bin" ]; then
  echo "need a load generator: cargo install oha, or apt-get install wrk" >&2
  exit 1
fi

serve_init
model=${MODEL:-$root/testdata/savedmodels/tf1-tutorial}
serve_sample_bodies

# run NAME BODY INSTANCES CONNECTIONS -> one Markdown row (and the load average first, on stderr)
run() {
  local name=$1 body=$2 instances=$3 connections=$4
  [ "$protocols" = rest ] || name="$name, $protocol"
  echo "load before '$name' ($mode): $(uptime)" >&2
  if [ "$protocol" = grpc ]; then
    "$grpc_load" "$grpc_addr" "$root/testdata/sample.json" "$instances" "$connections" \
      "${GRPC_CONNECTIONS:-1}" "$duration" "$name" "$mode"
  elif [ -n "$oha_bin" ]; then
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

echo "machine: $(nproc) CPUs, $(uname -m), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2); tool: ${oha_bin:-$wrk_bin}; ${duration}s per run; protocols: $protocols" >&2
echo "| load | batching | connections | req/s | instances/s | p50 ms | p99 ms | errors |"
echo "|---|---|---|---|---|---|---|---|"
for mode in ${MODES:-on off}; do
  args=(--model "mnist=$model")
  [ "$mode" = on ] || args+=(--no-batching)
  [ -z "$grpc_load" ] || args+=(--grpc-port 0)
  serve_start "${args[@]}"
  serve_wait_available mnist
  for protocol in $protocols; do
    select_protocol "$protocol"
    run "1 instance" "$work/one$suffix.json" 1 1
    run "1 instance" "$work/one$suffix.json" 1 64
    run "100 instances" "$work/hundred$suffix.json" 100 16
  done
  serve_stop
  echo "| peak RSS ($mode) | $((peak_rss_kb / 1024)) MiB | | | | | | |"
done
