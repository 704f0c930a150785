#!/usr/bin/env bash
# Cost of TensorBoard logging on the trainer's epoch time: the same one-epoch run on full MNIST
# with --no-tensorboard, with the default logging (epoch scalars + batch scalars every 100 steps)
# and with batch scalars at every step (--log-every-steps 1, the worst case), interleaved.
#
#   bench/tensorboard-overhead.sh [RUNS=3] [THREADS=2]
#
# TRAINER=path picks the binary (default: a release build, made first). Epoch time is job.json's
# timings_seconds.train_epochs[0]; prints one line per run and the medians with their ratios to
# the run without logging.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
RUNS=${1:-3}
THREADS=${2:-2}
if [ -z "${TRAINER:-}" ]; then
  cargo build --release -q -p trainer
  TRAINER=$ROOT/target/release/trainer
fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, threads $THREADS"
for run in $(seq "$RUNS"); do
  for mode in off default every-step; do
    case $mode in
      off) flags=(--no-tensorboard) ;;
      default) flags=() ;;
      every-step) flags=(--log-every-steps 1) ;;
    esac
    job=$WORK/$mode-$run
    "$TRAINER" --train-file testdata/mnist --job-dir "$job" --threads "$THREADS" --seed 1 \
      "${flags[@]}" >/dev/null 2>"$WORK/stderr" || { cat "$WORK/stderr"; exit 1; }
    seconds=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["timings_seconds"]["train_epochs"][0])' "$job/job.json")
    echo "run $run $mode epoch_seconds $seconds"
    echo "$mode $seconds" >>"$WORK/all"
  done
done
python3 - "$WORK/all" <<'PY'
import statistics, sys
times = {}
for line in open(sys.argv[1]):
    mode, seconds = line.split()
    times.setdefault(mode, []).append(float(seconds))
base = statistics.median(times["off"])
for mode in ("off", "default", "every-step"):
    median = statistics.median(times[mode])
    print(f"{mode:10s} median {median:.3f} s  ratio to off {median / base:.4f}  ({', '.join(f'{t:.3f}' for t in times[mode])})")
PY
