#!/usr/bin/env bash
# Creates the peer-benchmark virtualenv ($VENV, default <repo>/.venv-peers) with PyTorch and
# Keras 3 / TensorFlow, pinned to the versions the numbers in BENCHMARKS.md were measured with.
#
#   bench/peers/setup.sh
#
# PyTorch: PyPI only carries the CUDA build of torch for Linux x86-64, and `import torch` fails
# unless its CUDA runtime wheels (cuBLAS, cuDNN, NCCL, ...) are installed too, so the venv is
# about 7 GB. The benchmark never touches a GPU: it runs torch on the CPU with
# torch.set_num_threads(N). (A `--no-deps` install of torch alone does not import:
# libtorch_global_deps.so needs libcudart.so.13.)
# Idempotent: a venv whose pins are already installed is left alone.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
VENV=${VENV:-$ROOT/.venv-peers}
PINS=(torch==2.15.0 tensorflow-cpu==2.21.0 numpy)
STAMP=$VENV/.peers.pins
if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "${PINS[*]}" ]; then
  echo "peers: $VENV is up to date"
  exit 0
fi
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q "${PINS[@]}"
TF_CPP_MIN_LOG_LEVEL=2 "$VENV/bin/python" - <<'PY'
import torch, tensorflow as tf, keras
torch.set_num_threads(2)
y = torch.nn.Linear(784, 10)(torch.zeros(32, 784))
assert y.shape == (32, 10)
print(f"peers: torch {torch.__version__} (CPU, {torch.get_num_threads()} threads), "
      f"keras {keras.__version__}, tensorflow {tf.__version__}")
PY
echo "${PINS[*]}" > "$STAMP"
