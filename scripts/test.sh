#!/usr/bin/env bash
# The project's test command (README "Run the tests"; .ci/run calls it).
# Sets up the pinned Python tools the tests drive (TensorFlow 2.21 for format checks and gcloud parity,
# fake-gcs-server for gs://, tritonclient and tensorflow-serving-api for the serving clients), then runs
# lints and the whole workspace's tests. The tests start and stop their own fake-gcs-server on free
# loopback ports; nothing touches the internet.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
scripts/setup-python.sh
export PYTHON="$ROOT/.venv/bin/python"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace --no-fail-fast "$@"
