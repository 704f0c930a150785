"""Print every scalar TensorBoard finds under a log directory, as JSON, read by TensorBoard itself.

Usage: tensorboard-scalars.py LOGDIR [--server EXPECTED_POINTS]

Two readers, both from the `tensorboard` PyPI package (scripts/requirements-test.txt):
* "python_loader": TensorBoard's Python event loader (`EventMultiplexer`, what
  `tensorboard --load_fast=false` serves), one entry per run and tag:
  [[step, "<float32 bits as 8 hex digits>", wall_time], ...]. Keras-style scalars are rank-0
  tensors (under Tags()["tensors"]); TF1-style `simple_value`s are under Tags()["scalars"].
* "data_server" (with --server): a real `tensorboard` process on a free loopback port with the
  default fast loader (the Rust data server), queried over HTTP like the web page does:
  /data/plugin/scalars/tags, then /data/plugin/scalars/scalars?run=..&tag=.. → [[wall, step, value]].
  The server reloads in the background, so this polls until EXPECTED_POINTS points are served or
  60 s have passed, then prints what it has (the caller's comparison reports any difference).
"""

import json
import os
import re
import struct
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request

from tensorboard.backend.event_processing import event_accumulator, event_multiplexer
from tensorboard.util import tensor_util


def float_bits(value):
    return struct.pack("<f", value).hex()


def python_loader(logdir):
    # 0 = keep every point (the default keeps a reservoir sample of 10 tensors per tag).
    keep_all = {event_accumulator.TENSORS: 0, event_accumulator.SCALARS: 0}
    multiplexer = event_multiplexer.EventMultiplexer(size_guidance=keep_all)
    multiplexer.AddRunsFromDirectory(logdir)
    multiplexer.Reload()
    runs = {}
    for run, tags in multiplexer.Runs().items():
        series = {}
        for tag in tags.get("tensors", []):
            plugin = multiplexer.SummaryMetadata(run, tag).plugin_data.plugin_name
            if plugin != "scalars":
                continue  # e.g. the model config Keras writes under the tag "keras"
            points = []
            for event in multiplexer.Tensors(run, tag):
                array = tensor_util.make_ndarray(event.tensor_proto)
                if array.shape != () or array.dtype.name != "float32":
                    raise SystemExit(f"{run}/{tag}: not a float32 scalar: {array.dtype} {array.shape}")
                points.append([event.step, float_bits(float(array)), event.wall_time])
            series[tag] = points
        for tag in tags.get("scalars", []):
            series[tag] = [[e.step, float_bits(e.value), e.wall_time] for e in multiplexer.Scalars(run, tag)]
        runs[run] = series
    return runs


def get_json(base, path):
    with urllib.request.urlopen(base + path, timeout=10) as response:
        return json.load(response)


def data_server(logdir, expected_points):
    tensorboard = os.path.join(os.path.dirname(sys.executable), "tensorboard")
    process = subprocess.Popen(
        [tensorboard, "--logdir", logdir, "--host", "127.0.0.1", "--port", "0",
         "--load_fast", "true", "--reload_interval", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        base = None
        for line in process.stderr:
            found = re.search(r"(http://[^ /]+:\d+)/", line)
            if found:
                base = found.group(1)
                break
        if base is None:
            raise SystemExit("tensorboard exited before it served: " + str(process.wait()))
        # Keep draining its log so that a full pipe never blocks the server.
        threading.Thread(target=lambda: [None for _ in process.stderr], daemon=True).start()
        deadline = time.time() + 60
        while True:
            runs = {}
            for run, tags in get_json(base, "/data/plugin/scalars/tags").items():
                runs[run] = {}
                for tag in tags:
                    query = urllib.parse.urlencode({"run": run, "tag": tag})
                    runs[run][tag] = get_json(base, "/data/plugin/scalars/scalars?" + query)
            served = sum(len(points) for tags in runs.values() for points in tags.values())
            if served >= expected_points or time.time() > deadline:
                return runs
            time.sleep(0.5)
    finally:
        process.terminate()
        process.wait(timeout=20)


def main():
    logdir = sys.argv[1]
    result = {"python_loader": python_loader(logdir)}
    if len(sys.argv) > 3 and sys.argv[2] == "--server":
        result["data_server"] = data_server(logdir, int(sys.argv[3]))
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
