#!/usr/bin/env bash
# Latency of one whole `predictor local` process (release build) on 1 and on 10,000 instances,
# beside `gcloud ai-platform local predict` (TensorFlow 2.21 from the venv) on the same files.
# Wall time and peak RSS come from /usr/bin/time -v; the table is printed in Markdown for
# BENCHMARKS.md ("predictor local").
#
#   bench/predict-local.sh [MODEL_DIR]
#
# MODEL_DIR defaults to a model written by our trainer: one epoch on testdata/mnist with the
# release trainer (the tutorial's network, 784-512-256-10). Environment: RUNS (predictor runs per
# file, default 5; the median is reported), GCLOUD_RUNS (default 2), VENV (default <repo>/.venv),
# OUT (work directory, default a temporary one), PREDICTOR (the binary to measure, default the
# release build made here).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
RUNS=${RUNS:-5}
GCLOUD_RUNS=${GCLOUD_RUNS:-2}
VENV=${VENV:-$ROOT/.venv}
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"

command -v gcloud >/dev/null || { echo "gcloud is not on PATH" >&2; exit 1; }
[ -x "$VENV/bin/python" ] || { echo "no TensorFlow venv at $VENV (scripts/setup-python.sh)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "/usr/bin/time is missing (apt-get install time)" >&2; exit 1; }

cargo build --release -q -p predictor -p trainer
# PREDICTOR=path measures another build (e.g. an older commit's) on the same files.
PREDICTOR=${PREDICTOR:-$ROOT/target/release/predictor}

MODEL_DIR=${1:-}
if [ -z "$MODEL_DIR" ]; then
  echo "training the reference model (1 epoch, release trainer) into $OUT/job ..." >&2
  "$ROOT/target/release/trainer" --train-file testdata/mnist --job-dir "$OUT/job" --seed 1 >/dev/null
  MODEL_DIR=$OUT/job/model
fi

python3 scripts/make-sample-json.py --count 1 --out "$OUT/one.json"
python3 scripts/make-sample-json.py --count 10000 --out "$OUT/ten-thousand.json"

# measure LABEL FILE COMMAND... -> "wall_seconds peak_rss_kib" of one run; checks the row count.
measure() {
  local rows=$1; shift
  local log=$OUT/time.log
  /usr/bin/time -v "$@" >"$OUT/stdout.txt" 2>"$log" || { cat "$log" >&2; exit 1; }
  local printed
  printed=$(($(wc -l <"$OUT/stdout.txt") - 1)) # minus the table heading
  [ "$printed" -eq "$rows" ] || { echo "expected $rows rows, got $printed: $*" >&2; exit 1; }
  local wall rss
  wall=$(grep 'Elapsed (wall clock)' "$log" | awk '{print $NF}' | awk -F: '{ if (NF == 3) print $1*3600 + $2*60 + $3; else print $1*60 + $2 }')
  rss=$(grep 'Maximum resident set size' "$log" | awk '{print $NF}')
  echo "$wall $rss"
}

# median of the walls and the largest RSS of N runs.
summarize() {
  sort -n -k1 | awk '{ w[NR] = $1; if ($2 > r) r = $2 } END { m = (NR % 2) ? w[(NR + 1) / 2] : (w[NR / 2] + w[NR / 2 + 1]) / 2; printf "%.3f s | %.0f MiB", m, r / 1024 }'
}

declare -A RESULT
for name in one ten-thousand; do
  file=$OUT/$name.json
  rows=$(wc -l <"$file")
  RESULT[predictor-$name]=$(for _ in $(seq "$RUNS"); do measure "$rows" "$PREDICTOR" local --model-dir "$MODEL_DIR" --json-instances "$file"; done | summarize)
  RESULT[gcloud-$name]=$(for _ in $(seq "$GCLOUD_RUNS"); do
    PATH="$VENV/bin:$PATH" TF_CPP_MIN_LOG_LEVEL=2 measure "$rows" gcloud ai-platform local predict --model-dir "$MODEL_DIR" --json-instances "$file"
  done | summarize)
done

cat <<EOF
Model: $MODEL_DIR; files from scripts/make-sample-json.py (MNIST t10k, pixel/255); default table output.
predictor: median of $RUNS runs; gcloud: median of $GCLOUD_RUNS runs; RSS: largest of the runs.
Machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); $(gcloud version 2>/dev/null | head -1); TensorFlow $("$VENV/bin/python" -c 'import tensorflow as tf; print(tf.__version__)' 2>/dev/null).

| instances | predictor local: wall | peak RSS | gcloud local predict: wall | peak RSS |
|---:|---:|---:|---:|---:|
| 1 | ${RESULT[predictor-one]} | ${RESULT[gcloud-one]} |
| 10,000 | ${RESULT[predictor-ten-thousand]} | ${RESULT[gcloud-ten-thousand]} |
EOF
