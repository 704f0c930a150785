# Shared set-up for the `predictor serve` benchmarks (bench/serve-load.sh, bench/soak.sh); meant
# to be sourced, after `set -euo pipefail`.
#
#   serve_init               cd to the repository, build the release binary ($bin; or take the
#                            binary PREDICTOR names, e.g. an older build to compare with), make a
#                            scratch folder ($work, removed on exit with any server still running)
#   serve_sample_bodies      $work/one.json (first sample image) and $work/hundred.json (the 10
#                            sample images repeated to 100 instances); the same as KServe V2 infer
#                            bodies in $work/one-v2.json and $work/hundred-v2.json
#   serve_start [ARGS...]    `predictor serve --port 0 --registry $work/registry ARGS...` on
#                            127.0.0.1 with per-request `info` logs in $work/server.log, as a
#                            deployment would write them; sets $server_pid and $url (and
#                            $grpc_addr, HOST:PORT, when ARGS include --grpc-port)
#   serve_wait_available M   waits until TF Serving's status of model M says AVAILABLE
#   serve_stop               SIGTERM and wait; sets $peak_rss_kb (the server's VmHWM)

serve_init() {
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  cd "$root"
  if [ -n "${PREDICTOR:-}" ]; then
    bin=$PREDICTOR
  else
    cargo build --release -p predictor >&2
    bin=$root/target/release/predictor
  fi
  work=$(mktemp -d)
  server_pid=
  trap serve_cleanup EXIT
}

serve_cleanup() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}

serve_sample_bodies() {
  python3 - "$root/testdata/sample.json" "$work" <<'EOF'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
with open(sys.argv[2] + "/one.json", "w") as f:
    json.dump({"instances": rows[:1]}, f)
with open(sys.argv[2] + "/hundred.json", "w") as f:
    json.dump({"instances": (rows * 10)[:100]}, f)
for name, batch in (("one-v2", rows[:1]), ("hundred-v2", (rows * 10)[:100])):
    with open(sys.argv[2] + "/" + name + ".json", "w") as f:
        tensor = {"name": "image", "shape": [len(batch), len(batch[0])], "datatype": "FP32", "data": batch}
        json.dump({"inputs": [tensor]}, f)
EOF
}

serve_start() {
  rm -f "$work/server.out"
  RUST_LOG=${RUST_LOG:-info} "$bin" serve --port 0 --registry "$work/registry" "$@" \
    >"$work/server.out" 2>"$work/server.log" &
  server_pid=$!
  for _ in $(seq 1 200); do
    if grep -q "listening on" "$work/server.out" 2>/dev/null; then break; fi
    sleep 0.05
  done
  url=$(sed -n 's/^listening on //p' "$work/server.out")
  # HOST:PORT of the gRPC API when started with --grpc-port.
  grpc_addr=$(sed -n 's/^grpc listening on //p' "$work/server.out")
  if [ -z "$url" ]; then
    echo "server did not start:" >&2
    cat "$work/server.log" >&2
    exit 1
  fi
}

serve_wait_available() {
  for _ in $(seq 1 200); do
    if curl -sf "$url/v1/models/$1" | grep -q AVAILABLE; then return; fi
    sleep 0.1
  done
  echo "model $1 did not become AVAILABLE:" >&2
  cat "$work/server.log" >&2
  exit 1
}

serve_stop() {
  peak_rss_kb=$(awk '/VmHWM/ {print $2}' "/proc/$server_pid/status")
  kill -TERM "$server_pid"
  wait "$server_pid" 2>/dev/null || true
  server_pid=
}
