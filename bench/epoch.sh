#!/usr/bin/env bash
# One-epoch training time of the Rust trainer side by side with PyTorch and Keras 3 (same
# network, data, batch size and thread count), each run several times, interleaved.
#
#   bench/epoch.sh [--runs 3] [--threads 2] [--no-keras] [--seed 1] [--json results.json]
#
# Needs the peers' virtualenv (bench/peers/setup.sh) and /usr/bin/time (for the trainer's peak
# RSS). Builds the trainer in release mode first. Run it on an otherwise idle machine: with
# other jobs competing for the cores, every contender slows down, the multi-threaded ones most.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
cargo build --release -q -p trainer
exec python3 bench/epoch.py "$@"
