#!/usr/bin/env bash
# In-process inference of the trainer's export (784-512-256-10): savedmodel-runtime's
# `LoadedModel::run` vs TensorFlow (`signatures["serving_default"]`) vs PyTorch eager, at batch
# 1, 32, 256 and 10,000, in one run (crates/savedmodel-runtime/examples/inference_bench.rs with
# the peers in bench/peers/inference.py). Prints a Markdown table for BENCHMARKS.md.
#
#   bench/inference.sh [MODEL_DIR] [-- extra inference_bench flags, e.g. --seconds 3]
#
# MODEL_DIR defaults to one epoch of the release trainer on testdata/mnist (seed 1). Needs the
# peers' virtualenv (bench/peers/setup.sh). CPU_KERNELS_ISA=avx2 (or portable) caps the kernels
# to measure what an AVX2-only machine gets.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
cargo build --release -q -p trainer -p savedmodel-runtime --example inference_bench
MODEL_DIR=${1:-}
[ $# -gt 0 ] && shift
[ "${1:-}" = "--" ] && shift
if [ -z "$MODEL_DIR" ]; then
  OUT=${OUT:-$(mktemp -d)}
  echo "training the reference model (1 epoch, release trainer) into $OUT/job ..." >&2
  target/release/trainer --train-file testdata/mnist --job-dir "$OUT/job" --seed 1 >/dev/null
  MODEL_DIR=$OUT/job/model
fi
exec target/release/examples/inference_bench --model "$MODEL_DIR" "$@"
