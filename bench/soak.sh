#!/usr/bin/env bash
# Soak test of `predictor serve` (issue 5): steady prediction load while versions are created,
# made default and deleted underneath it.
#
#   bench/soak.sh                   # 5 minutes
#   SOAK_SECONDS=60 bench/soak.sh   # shorter
#
# - Serves the registry model `mnist` (testdata/savedmodels/tf1-tutorial) on 127.0.0.1.
# - wrk sends single-instance predictions to the model's *default* version
#   (/v1/projects/default/models/mnist:predict) at a steady pace: CONNECTIONS connections, each
#   waiting DELAY_MS between requests (about CONNECTIONS * 1000 / DELAY_MS requests/s).
# - Meanwhile, every CHURN_SECONDS: create version v<i> (waits until READY), make it the
#   default, delete v<i-1>. The loop is bounded by the soak's duration.
# - Every 10 s the server's RSS is sampled.
# Passes when wrk saw no failed request (non-2xx, socket errors, timeouts) and prints the RSS
# samples, so a trend is visible.
set -euo pipefail

# shellcheck source=bench/lib-serve.sh
source "$(dirname "$0")/lib-serve.sh"
soak=${SOAK_SECONDS:-300}
connections=${CONNECTIONS:-8}
delay_ms=${DELAY_MS:-8}
churn=${CHURN_SECONDS:-10}
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 1; }

serve_init
model=${MODEL:-$root/testdata/savedmodels/tf1-tutorial}
serve_sample_bodies
serve_start
cli() { "$bin" "$@" --endpoint "$url"; }
cli models create mnist
cli versions create v0 --model mnist --origin "$model" --timeout-secs 60

cat >"$work/soak.lua" <<EOF
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open("$work/one.json", "r"); wrk.body = f:read("*a"); f:close()
function delay() return $delay_ms end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("requests %d, non-2xx %d, socket errors %d, timeouts %d, p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
    summary.requests, e.status, e.connect + e.read + e.write, e.timeout,
    latency:percentile(50) / 1e3, latency:percentile(99) / 1e3, latency.max / 1e3))
end
EOF

echo "soak: ${soak}s, $connections connections, ${delay_ms} ms pause each; load: $(uptime)" >&2
wrk -t 2 -c "$connections" -d "${soak}s" --timeout 5s -s "$work/soak.lua" "$url/v1/projects/default/models/mnist:predict" \
  >"$work/wrk.out" &
wrk_pid=$!

(
  started=$(date +%s)
  while [ $(( $(date +%s) - started )) -lt "$soak" ]; do
    echo "$(( $(date +%s) - started )) $(awk '/VmRSS/ {print $2}' "/proc/$server_pid/status")"
    sleep 10
  done
) >"$work/rss.txt" &
rss_pid=$!

i=1
deadline=$(( $(date +%s) + soak - churn ))
while [ "$(date +%s)" -lt "$deadline" ]; do
  sleep "$churn"
  cli versions create "v$i" --model mnist --origin "$model" --timeout-secs 60 2>/dev/null
  cli versions set-default "v$i" --model mnist >/dev/null
  cli versions delete "v$((i - 1))" --model mnist 2>/dev/null
  i=$((i + 1))
done
wait "$wrk_pid"
wait "$rss_pid" || true

echo "versions created, defaulted and deleted: $((i - 1)); final list:"
cli versions list --model mnist
echo "wrk: $(tail -n 1 "$work/wrk.out")"
echo "RSS samples (seconds, KiB):"
cat "$work/rss.txt"
curl -s "$url/monitoring/prometheus/metrics" | grep -E '^predictor_(requests_total|loaded_versions|predictions_total)'
if grep -q "non-2xx 0, socket errors 0, timeouts 0" "$work/wrk.out"; then
  echo "PASS: no failed predictions"
else
  echo "FAIL: some predictions failed"; exit 1
fi
