#!/bin/sh
# Screenshot of TensorBoard's SCALARS page for a log directory, taken with headless Chromium.
#
#   scripts/tensorboard-screenshot.sh LOGDIR OUT.png [TAG_REGEX]
#
# Starts the .venv's `tensorboard` (scripts/requirements-test.txt) on a free loopback port, waits
# until it serves scalars, and renders http://127.0.0.1:PORT/#scalars (smoothing off, tags
# filtered by TAG_REGEX, default "epoch_") into OUT.png with Debian's chromium
# (`apt-get install --no-install-recommends chromium`). Chromium runs with a fresh profile, no
# sandbox (root in CI) and no background networking. docs/make-tensorboard-screenshot.sh uses this.
set -eu
logdir=$1
out=$2
filter=${3:-epoch_}
root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-$root/.venv/bin/python}
work=$(mktemp -d)
trap 'kill "$tensorboard_pid" 2>/dev/null || true; rm -rf "$work"' EXIT

"$(dirname "$python")/tensorboard" --logdir "$logdir" --host 127.0.0.1 --port 0 \
  >"$work/tensorboard.log" 2>&1 &
tensorboard_pid=$!
url=
for _ in $(seq 120); do
  url=$(grep -so 'http://[^ /]*:[0-9]*' "$work/tensorboard.log" | head -n 1 || true)
  if [ -n "$url" ] && curl -sf "$url/data/plugin/scalars/tags" | grep -q "$filter"; then break; fi
  url=
  sleep 0.5
done
[ -n "$url" ] || { cat "$work/tensorboard.log"; echo "tensorboard did not serve scalars" >&2; exit 1; }

chromium --headless --no-sandbox --disable-gpu --no-first-run --disable-background-networking \
  --disable-component-update --disable-sync --user-data-dir="$work/profile" --hide-scrollbars \
  --window-size=1400,1100 --virtual-time-budget=20000 --screenshot="$out" \
  "$url/#scalars&_smoothingWeight=0&tagFilter=$filter" 2>"$work/chromium.log" \
  || { cat "$work/chromium.log"; exit 1; }
[ -s "$out" ] || { echo "chromium wrote no screenshot" >&2; exit 1; }
echo "wrote $out"
