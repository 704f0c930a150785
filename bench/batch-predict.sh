#!/usr/bin/env bash
# Batch prediction speed (issue 10): `predictor batch-predict` (release build) on the 60,000 MNIST
# training images as JSON lines, local files to local files, beside a TensorFlow 2.21 script doing
# the same files to files (bench/batch-predict-tf.py) in the same run. Instances/s come from the
# wall time of the whole process (model loading included); peak RSS from /usr/bin/time -v.
#
#   bench/batch-predict.sh [MODEL_DIR]
#
# MODEL_DIR defaults to testdata/savedmodels/tf1-tutorial (the tutorial's 784-512-256-10 network,
# written by TensorFlow). Environment: RUNS (runs of each, default 3; the best wall time and the
# largest RSS are reported), COUNT (images, default 60000), THREADS (our workers, default all
# cores), VENV (default <repo>/.venv), OUT (work directory, default a temporary one).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
RUNS=${RUNS:-3}
COUNT=${COUNT:-60000}
VENV=${VENV:-$ROOT/.venv}
OUT=${OUT:-$(mktemp -d)}
MODEL_DIR=${1:-$ROOT/testdata/savedmodels/tf1-tutorial}
mkdir -p "$OUT"

[ -x "$VENV/bin/python" ] || { echo "no TensorFlow venv at $VENV (scripts/setup-python.sh)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "/usr/bin/time is missing (apt-get install time)" >&2; exit 1; }

cargo build --release -q -p predictor
PREDICTOR=$ROOT/target/release/predictor
INPUT=$OUT/train.json
python3 scripts/make-sample-json.py --split train --count "$COUNT" --out "$INPUT"
echo "input: $COUNT images, $(du -m "$INPUT" | cut -f1) MiB of JSON lines; CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores" >&2

# measure COMMAND... -> "wall_seconds peak_rss_kib" of one run.
measure() {
  local log=$OUT/time.log
  /usr/bin/time -v "$@" >"$OUT/stdout.txt" 2>"$log" || { cat "$log" >&2; exit 1; }
  local wall rss
  wall=$(grep 'Elapsed (wall clock)' "$log" | awk '{print $NF}' | awk -F: '{ if (NF == 3) print $1*3600 + $2*60 + $3; else print $1*60 + $2 }')
  rss=$(grep 'Maximum resident set size' "$log" | awk '{print $NF}')
  echo "$wall $rss"
}

rows() { wc -l <"$1/prediction.results-00000-of-00001"; }

best() { sort -n -k1 | awk '{ if (NR == 1) w = $1; if ($2 > r) r = $2 } END { print w, r }'; }

ours=()
theirs=()
for run in $(seq "$RUNS"); do
  rm -rf "$OUT/ours" "$OUT/tf"
  ours+=("$(measure "$PREDICTOR" batch-predict --model-dir "$MODEL_DIR" --input-paths "$INPUT" \
    --output-path "$OUT/ours" --data-format text ${THREADS:+--threads "$THREADS"})")
  [ "$(rows "$OUT/ours")" -eq "$COUNT" ] || { echo "ours wrote $(rows "$OUT/ours") rows" >&2; exit 1; }
  theirs+=("$(measure "$VENV/bin/python" bench/batch-predict-tf.py "$MODEL_DIR" "$INPUT" "$OUT/tf")")
  [ "$(rows "$OUT/tf")" -eq "$COUNT" ] || { echo "TF wrote $(rows "$OUT/tf") rows" >&2; exit 1; }
  echo "run $run: ours ${ours[-1]}, TensorFlow ${theirs[-1]} (wall s, peak RSS KiB)" >&2
done

# Same classes from both (probabilities agree to float32 rounding; see BENCHMARKS.md).
"$VENV/bin/python" - "$OUT/ours" "$OUT/tf" <<'PY'
import json, sys
a = [json.loads(l)["class"] for l in open(sys.argv[1] + "/prediction.results-00000-of-00001")]
b = [json.loads(l)["class"] for l in open(sys.argv[2] + "/prediction.results-00000-of-00001")]
same = sum(x == y for x, y in zip(a, b))
print(f"classes agree on {same} of {len(a)} instances", file=sys.stderr)
sys.exit(0 if same == len(a) == len(b) else 1)
PY

read -r our_wall our_rss < <(printf '%s\n' "${ours[@]}" | best)
read -r tf_wall tf_rss < <(printf '%s\n' "${theirs[@]}" | best)
awk -v n="$COUNT" -v ow="$our_wall" -v orss="$our_rss" -v tw="$tf_wall" -v trss="$tf_rss" 'BEGIN {
  printf "| program | wall | instances/s | peak RSS |\n|---|---|---|---|\n"
  printf "| predictor batch-predict | %.2f s | %.0f | %.0f MiB |\n", ow, n / ow, orss / 1024
  printf "| TensorFlow 2.21 script | %.2f s | %.0f | %.0f MiB |\n", tw, n / tw, trss / 1024
  printf "\nratio: %.1fx the instances/s of TensorFlow, %.2fx its peak RSS\n", tw / ow, orss / trss
}'
