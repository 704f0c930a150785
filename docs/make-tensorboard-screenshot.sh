#!/bin/sh
# Makes docs/tensorboard-scalars.png: TensorBoard's SCALARS page with our trainer's run beside a
# Keras 3 run of the tutorial, same data and flags.
#
#   cargo build --release -p trainer && docs/make-tensorboard-screenshot.sh   (TRAINER=path picks another build)
#
# Both train on the first 20000 MNIST training images with 20% held out for validation
# (16000 to train on, 500 steps per epoch), 3 epochs, batch scalars every 25 steps:
#   ours:  target/release/trainer --validation-split 0.2 --log-every-steps 25 → logs/rust/{train,validation}
#   Keras: scripts/keras-tensorboard-run.py (TensorBoard(update_freq=25))     → logs/keras/{train,validation}
# then scripts/tensorboard-screenshot.sh renders the page with headless Chromium.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-$root/.venv/bin/python}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The subset as IDX files the trainer reads (the test split unchanged).
"$python" - "$root/testdata/mnist" "$work/mnist" <<'PY'
import gzip, os, shutil, sys
source, target = sys.argv[1], sys.argv[2]
os.makedirs(target)
limit = 20000
for name, header, item in (("train-images-idx3-ubyte", 16, 784), ("train-labels-idx1-ubyte", 8, 1)):
    data = bytearray(gzip.open(os.path.join(source, name + ".gz")).read())
    data[4:8] = limit.to_bytes(4, "big")
    open(os.path.join(target, name), "wb").write(bytes(data[:header + limit * item]))
for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
    shutil.copy(os.path.join(source, name), target)
PY

"${TRAINER:-$root/target/release/trainer}" --train-file "$work/mnist" --job-dir "$work/rust-job" --epochs 3 \
  --validation-split 0.2 --log-every-steps 25 --seed 1 --tensorboard-dir "$work/logs/rust"
"$python" "$root/scripts/keras-tensorboard-run.py" --data "$root/testdata/mnist" --logdir "$work/logs/keras" \
  --train-limit 20000 --validation-split 0.2 --epochs 3 --log-every-steps 25 --seed 1
"$root/scripts/tensorboard-screenshot.sh" "$work/logs" "$root/docs/tensorboard-scalars.png" "${TAG_FILTER:-loss}"
