#!/usr/bin/env bash
# Creates (or refreshes) the test virtualenv at $VENV (default: <repo>/.venv) with the pinned tools in
# scripts/requirements-test.txt. Idempotent: a venv whose pins are already installed is left alone.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=${VENV:-$ROOT/.venv}
REQ=$ROOT/scripts/requirements-test.txt
# Packages installed with --no-deps (see the file's header).
REQ_NODEPS=$ROOT/scripts/requirements-test-nodeps.txt
STAMP=$VENV/.requirements-test.sha256
want=$(cat "$REQ" "$REQ_NODEPS" | sha256sum | cut -d' ' -f1)
if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  echo "setup-python: $VENV is up to date"
  exit 0
fi
PY=${PYTHON_FOR_VENV:-python3}
"$PY" -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q -r "$REQ"
"$VENV/bin/pip" install -q --no-deps -r "$REQ_NODEPS"
"$VENV/bin/python" -c 'import tensorflow as tf; print("setup-python: TensorFlow", tf.__version__)'
"$VENV/bin/python" -c 'from tensorflow_serving.apis import prediction_service_pb2_grpc'
echo "$want" > "$STAMP"
