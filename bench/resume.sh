#!/usr/bin/env bash
# Exact resume after SIGKILL at random moments, on full-size MNIST.
#
#   bench/resume.sh [--points 20] [--epochs 1] [--every 200] [--threads 2] [--seed 1]
#
# Trains once without interruption, then, for each of --points experiments: starts the same run
# in a fresh job directory, SIGKILLs it at a random wall-clock moment of the training part
# (uniform between the first checkpoint write and the end of the last epoch, so kills also land
# inside checkpoint writes), resumes it to completion and compares the exported weights
# (variables.data) byte for byte with the uninterrupted run. Prints one line per point and a
# summary; exits 1 if any point differs. Builds the trainer in release mode first, unless
# $TRAINER names a binary to use.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
POINTS=20 EPOCHS=1 EVERY=200 THREADS=2 SEED=1 DATA=testdata/mnist
while [ $# -gt 0 ]; do
  case "$1" in
    --points) POINTS=$2; shift 2 ;;
    --epochs) EPOCHS=$2; shift 2 ;;
    --every) EVERY=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --seed) SEED=$2; shift 2 ;;
    --data) DATA=$2; shift 2 ;;
    *) echo "unknown flag $1" >&2; exit 2 ;;
  esac
done
if [ -z "${TRAINER:-}" ]; then
  cargo build --release -q -p trainer
  TRAINER="$ROOT/target/release/trainer"
fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
FLAGS=(--train-file "$DATA" --epochs "$EPOCHS" --seed "$SEED" --threads "$THREADS"
       --checkpoint-every-steps "$EVERY")
weights() { sha256sum "$1/model/variables/variables.data-00000-of-00001" | cut -d' ' -f1; }

start=$(date +%s.%N)
"$TRAINER" "${FLAGS[@]}" --job-dir "$WORK/reference" >/dev/null 2>"$WORK/reference.log"
reference_seconds=$(python3 -c "import json;print(sum(json.load(open('$WORK/reference/job.json'))['timings_seconds']['train_epochs']))")
load_seconds=$(python3 -c "import json;print(json.load(open('$WORK/reference/job.json'))['timings_seconds']['load_data'])")
expected=$(weights "$WORK/reference")
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "reference: train ${reference_seconds}s (load ${load_seconds}s), weights sha256 $expected"

same=0
for point in $(seq 1 "$POINTS"); do
  job="$WORK/point-$point"
  # A random moment inside the training part (after loading the data).
  delay=$(python3 -c "import random;print(round($load_seconds + 0.2 + random.random()*$reference_seconds, 3))")
  "$TRAINER" "${FLAGS[@]}" --job-dir "$job" >/dev/null 2>"$job.killed.log" &
  pid=$!
  sleep "$delay"
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  latest=$(sed -n 's/^model_checkpoint_path: "\(.*\)"/\1/p' "$job/checkpoints/checkpoint" 2>/dev/null || true)
  "$TRAINER" "${FLAGS[@]}" --job-dir "$job" >/dev/null 2>"$job.resumed.log"
  got=$(weights "$job")
  if [ "$got" = "$expected" ]; then verdict=identical; same=$((same + 1)); else verdict=DIFFERENT; fi
  echo "point $point: killed at ${delay}s, resumed from ${latest:-nothing}: $verdict"
  rm -rf "$job"
done
echo "summary: $same/$POINTS resumed runs bit-identical to the uninterrupted run ($(python3 -c "print(round($(date +%s.%N) - $start))")s)"
[ "$same" = "$POINTS" ]
