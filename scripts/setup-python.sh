#!/usr/bin/env bash
# Creates (or refreshes) the test virtualenv at $VENV (default: <repo>/.venv) with the pinned tools in
# scripts/requirements-test.txt. Idempotent: a venv whose pins are already installed is left alone.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=${VENV:-$ROOT/.venv}
REQ=$ROOT/scripts/requirements-test.txt
STAMP=$VENV/.requirements-test.sha256
want=$(sha256sum "$REQ" | cut -d' ' -f1)
if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  echo "setup-python: $VENV is up to date"
  exit 0
fi
PY=${PYTHON_FOR_VENV:-python3}
"$PY" -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q -r "$REQ"
"$VENV/bin/python" -c 'import tensorflow as tf; print("setup-python: TensorFlow", tf.__version__)'
echo "$want" > "$STAMP"
