#!/usr/bin/env bash
# Hyperparameter-tuning speed: a tuning job of 8 trials, 2 in parallel, run by `predictor serve`
# (the jobs service: each trial a trainer process with cores/2 threads), against the same 8
# trials run one after the other as plain `trainer` runs (all cores each) with the same
# hyperparameters. Prints the CPU, the core count, both wall times and their ratio.
#
#   bench/tuning.sh [--data testdata/mnist] [--epochs 1] [--trials 8] [--parallel 2]
#
# Builds predictor and trainer in release mode first (PREDICTOR / TRAINER name other binaries;
# the server looks for the trainer beside itself unless TRAINER is set). The tuning job's wall
# time runs from the submit to the job's end (polled every 0.2 s); the sequential time covers
# the 8 trainer processes. Both read the same local data and write to scratch folders.
set -euo pipefail
DATA=testdata/mnist EPOCHS=1 TRIALS=8 PARALLEL=2
ARGS=("$@")
set --
source "$(dirname "$0")/lib-serve.sh"
set -- "${ARGS[@]+"${ARGS[@]}"}"
while [ $# -gt 0 ]; do
  case "$1" in
    --data) DATA=$2; shift 2 ;;
    --epochs) EPOCHS=$2; shift 2 ;;
    --trials) TRIALS=$2; shift 2 ;;
    --parallel) PARALLEL=$2; shift 2 ;;
    *) echo "unknown flag $1" >&2; exit 2 ;;
  esac
done
serve_init
if [ -z "${TRAINER:-}" ]; then
  cargo build --release -q -p trainer
  TRAINER="$root/target/release/trainer"
fi
DATA=$(cd "$DATA" && pwd)
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores"
echo "data: $DATA, $EPOCHS epoch(s), $TRIALS trials, $PARALLEL in parallel"

serve_start --allow-cpu --allow-unauthenticated-changes --trainer-path "$TRAINER"
body=$(python3 - "$DATA" "$work/jobdir" "$EPOCHS" "$TRIALS" "$PARALLEL" <<'EOF'
import json, sys
data, job_dir, epochs, trials, parallel = sys.argv[1:]
print(json.dumps({"jobId": "bench_tuning", "trainingInput": {
    "jobDir": job_dir, "args": ["--train-file", data, "--epochs", epochs],
    "scaleTier": "BASIC", "region": "us-central1",
    "hyperparameters": {
        "goal": "MAXIMIZE", "hyperparameterMetricTag": "accuracy", "algorithm": "RANDOM_SEARCH",
        "maxTrials": int(trials), "maxParallelTrials": int(parallel),
        "params": [
            {"parameterName": "learning-rate", "type": "DOUBLE", "minValue": 0.003,
             "maxValue": 0.3, "scaleType": "UNIT_LOG_SCALE"},
            {"parameterName": "hidden-units", "type": "DISCRETE",
             "discreteValues": [64, 128, 256, 512]}]}}}))
EOF
)
start=$(date +%s.%N)
curl -sf -X POST -H 'Content-Type: application/json' -d "$body" \
  "$url/v1/projects/default/jobs" >/dev/null
while :; do
  job=$(curl -sf "$url/v1/projects/default/jobs/bench_tuning")
  state=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["state"])' "$job")
  case "$state" in SUCCEEDED|FAILED|CANCELLED) break ;; esac
  sleep 0.2
done
tuning_seconds=$(python3 -c "print(round($(date +%s.%N) - $start, 2))")
if [ "$state" != SUCCEEDED ]; then
  echo "the tuning job ended $state:" >&2
  echo "$job" >&2
  exit 1
fi
echo "tuning job ($TRIALS trials, $PARALLEL in parallel): ${tuning_seconds}s"
# Each trial's own wall time (start to end, as the job records them), to separate the trainers'
# time from the service's.
python3 -c '
import json, sys
from datetime import datetime
def t(s): return datetime.fromisoformat(s.replace("Z", "+00:00"))
job = json.loads(sys.argv[1])
trials = sorted(job["trainingOutput"]["trials"], key=lambda t: int(t["trialId"]))
spans = [(t(x["startTime"]), t(x["endTime"])) for x in trials]
print("trial wall times (s): " + " ".join(f"{(e - s).total_seconds():.2f}" for s, e in spans))
print(f"first trial start to last trial end: {(max(e for _, e in spans) - min(s for s, _ in spans)).total_seconds():.2f}s")
' "$job"

# The same hyperparameters, one plain trainer run after the other.
mapfile -t flags < <(python3 -c '
import json, sys
for t in sorted(json.loads(sys.argv[1])["trainingOutput"]["trials"], key=lambda t: int(t["trialId"])):
    print(" ".join(f"--{k}={v}" for k, v in sorted(t["hyperparameters"].items())))' "$job")
start=$(date +%s.%N)
for i in "${!flags[@]}"; do
  # shellcheck disable=SC2086  # one word per flag
  "$TRAINER" --train-file "$DATA" --epochs "$EPOCHS" ${flags[$i]} \
    --job-dir "$work/sequential/$i" >/dev/null 2>"$work/sequential-$i.log"
done
sequential_seconds=$(python3 -c "print(round($(date +%s.%N) - $start, 2))")
echo "sequential trainer runs ($TRIALS, all cores each): ${sequential_seconds}s"
python3 -c "print(f'ratio sequential/tuning: {$sequential_seconds / $tuning_seconds:.2f}x')"
serve_stop
