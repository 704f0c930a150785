"""Reads the MNIST IDX files (gzip or raw, detected by content) for the peer benchmarks.

Shared by pytorch_mlp.py and keras_mlp.py so both peers see exactly the data the Rust trainer
reads: pixels scaled by 1/255 as float32, labels as int64. Also holds the command-line flags both
peers take, so the benchmark scripts call them alike.
"""

import argparse
import gzip
import os
import struct

import numpy as np

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def _read(directory, stem):
    for name in (stem, stem + ".gz"):
        path = os.path.join(directory, name)
        if os.path.exists(path):
            with open(path, "rb") as f:
                data = f.read()
            if data[:2] == b"\x1f\x8b":
                data = gzip.decompress(data)
            return path, data
    raise FileNotFoundError(f"{stem}[.gz] not found in {directory}")


def _decode(path, data, expected_magic):
    magic, = struct.unpack(">I", data[:4])
    if magic != expected_magic:
        raise ValueError(f"{path}: magic {magic}, expected {expected_magic}")
    rank = data[3]
    dims = struct.unpack(">" + "I" * rank, data[4:4 + 4 * rank])
    payload = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * rank)
    if payload.size != int(np.prod(dims)):
        raise ValueError(f"{path}: {payload.size} bytes of data, header says {dims}")
    return payload.reshape(dims)


def load(directory):
    """Returns (x_train, y_train, x_test, y_test): float32 [n, 784] in [0, 1] and int64 [n]."""
    out = []
    for split in ("train", "test"):
        images = _decode(*_read(directory, FILES[split + "_images"]), 2051)
        labels = _decode(*_read(directory, FILES[split + "_labels"]), 2049)
        x = images.reshape(images.shape[0], -1).astype(np.float32) / 255.0
        out += [x, labels.astype(np.int64)]
    return tuple(out)


def parse_args():
    """The flags every peer takes: --data, --threads, --epochs, --batch-size, --seed."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default="testdata/mnist")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=1)
    return parser.parse_args()
