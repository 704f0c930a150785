#!/usr/bin/env python3
"""Writes testdata/sample.json: real MNIST test images as `gcloud ... predict --json-instances` input.

Usage (standard library only, no TensorFlow or numpy needed):

    python3 scripts/make-sample-json.py [--count 10] [--first 0] [--shape flat|28x28]
                                        [--split t10k|train] [--mnist-dir testdata/mnist]
                                        [--out testdata/sample.json]

Like the Cloud ML Engine MNIST tutorial's `sample.json`: newline-delimited JSON, one instance per
line, each a bare JSON array (the models have a single input, so gcloud wraps it under the input's
name). Pixels are scaled the way the models were trained, `pixel / 255` as float32, so an instance
is 784 floats in [0, 1] (`--shape 28x28` writes 28 rows of 28 instead, for models whose input is
[-1, 28, 28]). Every float is written as the shortest decimal that gives the same float32 back after
being parsed as a double and rounded to float32 - which is what both gcloud (Python json + numpy) and
our predictor do - so the file is short and exact.

The images are the first `--count` images of `--split` (t10k, the test set, by default; `train` for
the 60,000 training images, as bench/batch-predict.sh uses) starting at `--first`, read from the IDX
files.
"""

import argparse
import gzip
import os
import struct
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read_idx(path):
    """(dims, payload bytes) of a gzip-compressed IDX file, with its header checked."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise SystemExit(f"{path}: not an unsigned-byte IDX file")
    ndim = data[3]
    dims = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    payload = data[4 + 4 * ndim :]
    expected = 1
    for d in dims:
        expected *= d
    if len(payload) != expected:
        raise SystemExit(f"{path}: header says {expected} bytes of data, found {len(payload)}")
    return dims, payload


def to_float32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def float32_text(value):
    """Shortest decimal whose double, rounded to float32, is `value` (itself a float32 as a double)."""
    if value == 0.0:
        return "0.0"
    for digits in range(1, 18):
        text = repr(float(f"{value:.{digits}g}"))
        if to_float32(float(text)) == value:
            return text
    return repr(value)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--shape", choices=["flat", "28x28"], default="flat")
    parser.add_argument("--split", choices=["t10k", "train"], default="t10k")
    parser.add_argument("--mnist-dir", default=os.path.join(REPO, "testdata", "mnist"))
    parser.add_argument("--out", default=os.path.join(REPO, "testdata", "sample.json"), help="'-' for stdout")
    args = parser.parse_args()

    dims, pixels = read_idx(os.path.join(args.mnist_dir, f"{args.split}-images-idx3-ubyte.gz"))
    if len(dims) != 3 or dims[1:] != (28, 28):
        raise SystemExit(f"expected [n, 28, 28] images, found {list(dims)}")
    if args.count < 1 or args.first < 0 or args.first + args.count > dims[0]:
        raise SystemExit(f"--first {args.first} --count {args.count} is outside the {dims[0]} {args.split} images")

    # 256 possible pixel values: format each once.
    text_of = [float32_text(to_float32(to_float32(p) / to_float32(255.0))) for p in range(256)]
    lines = []
    for i in range(args.first, args.first + args.count):
        image = pixels[i * 784 : (i + 1) * 784]
        values = [text_of[p] for p in image]
        if args.shape == "flat":
            lines.append("[" + ", ".join(values) + "]")
        else:
            rows = ["[" + ", ".join(values[r * 28 : (r + 1) * 28]) + "]" for r in range(28)]
            lines.append("[" + ", ".join(rows) + "]")
    text = "\n".join(lines) + "\n"
    if args.out == "-":
        sys.stdout.write(text)
    else:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
