#!/usr/bin/env python3
"""Generates the small IDX fixtures in testdata/idx/ from the real MNIST files in testdata/mnist/.

Standard library only. The output is deterministic (gzip mtime 0), so rerunning the script with
the same zlib reproduces the committed files byte for byte:

    python3 scripts/make-idx-fixtures.py            # writes testdata/idx/
    python3 scripts/make-idx-fixtures.py --check    # fails if the committed files differ

Fixtures:
  mnist-small/      first 1000 training and 200 test examples, gzip, canonical names
  mnist-tiny-raw/   first 16 training and 8 test examples, uncompressed, `train-images.idx3-ubyte`
                    spelling (the dot variant)
  count-mismatch/   16 training images but 15 training labels (test files fine)
  malformed/        single files with one defect each (see MALFORMED below)
"""

import argparse
import gzip
import struct
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MNIST = ROOT / "testdata" / "mnist"
OUT = ROOT / "testdata" / "idx"

NOTICE = """\
Subsets of the MNIST handwritten digit database: Yann LeCun, Corinna Cortes and
Christopher J. C. Burges. Licensed under Creative Commons Attribution-Share Alike 3.0
(CC BY-SA 3.0). Made from testdata/mnist by scripts/make-idx-fixtures.py (the first N
examples of each split, re-encoded as IDX; some files deliberately damaged for tests).
"""


def read_idx(name):
    """Returns (dims, payload) of a gzip IDX file from testdata/mnist."""
    data = gzip.decompress((MNIST / f"{name}.gz").read_bytes())
    zero, dtype, rank = struct.unpack(">HBB", data[:4])
    assert zero == 0 and dtype == 0x08, name
    dims = list(struct.unpack(f">{rank}I", data[4 : 4 + 4 * rank]))
    return dims, data[4 + 4 * rank :]


def idx_bytes(dims, payload, dtype=0x08):
    return struct.pack(">HBB", 0, dtype, len(dims)) + struct.pack(f">{len(dims)}I", *dims) + payload


def gz(data):
    return gzip.compress(data, compresslevel=9, mtime=0)


def first(name, count):
    """The first `count` examples of an MNIST file, as IDX bytes."""
    dims, payload = read_idx(name)
    per_item = 1
    for size in dims[1:]:
        per_item *= size
    return idx_bytes([count] + dims[1:], payload[: count * per_item])


def fixtures():
    files = {"NOTICE": NOTICE.encode()}
    splits = {"train": "train", "t10k": "t10k"}
    for split, (images, labels) in {"train": (1000, 1000), "t10k": (200, 200)}.items():
        files[f"mnist-small/{split}-images-idx3-ubyte.gz"] = gz(first(f"{splits[split]}-images-idx3-ubyte", images))
        files[f"mnist-small/{split}-labels-idx1-ubyte.gz"] = gz(first(f"{splits[split]}-labels-idx1-ubyte", labels))
    for split, count in {"train": 16, "t10k": 8}.items():
        files[f"mnist-tiny-raw/{split}-images.idx3-ubyte"] = first(f"{split}-images-idx3-ubyte", count)
        files[f"mnist-tiny-raw/{split}-labels.idx1-ubyte"] = first(f"{split}-labels-idx1-ubyte", count)

    files["count-mismatch/train-images-idx3-ubyte"] = first("train-images-idx3-ubyte", 16)
    files["count-mismatch/train-labels-idx1-ubyte"] = first("train-labels-idx1-ubyte", 15)
    files["count-mismatch/t10k-images-idx3-ubyte"] = first("t10k-images-idx3-ubyte", 8)
    files["count-mismatch/t10k-labels-idx1-ubyte"] = first("t10k-labels-idx1-ubyte", 8)

    images4 = first("train-images-idx3-ubyte", 4)
    labels4 = first("train-labels-idx1-ubyte", 4)
    # MALFORMED: one defect per file.
    files["malformed/labels-magic-in-images-file"] = labels4  # magic 2049 where 2051 is expected
    files["malformed/float-dtype-images"] = idx_bytes([4, 28, 28], images4[16:], dtype=0x0D)
    files["malformed/short-payload-images"] = images4[:-1]  # one byte missing
    files["malformed/long-payload-images"] = images4 + b"\x00"  # one byte too many
    files["malformed/truncated-gzip-images.gz"] = gz(images4)[:-20]  # stream cut off
    files["malformed/huge-count-images"] = idx_bytes([4_000_000_000, 28, 28], images4[16:116])
    return files


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare with testdata/idx instead of writing")
    args = parser.parse_args()
    stale = []
    for relative, data in sorted(fixtures().items()):
        path = OUT / relative
        if args.check:
            if not path.is_file() or path.read_bytes() != data:
                stale.append(relative)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        print(f"{path.relative_to(ROOT)}: {len(data)} bytes")
    if stale:
        sys.exit(f"testdata/idx is out of date ({', '.join(stale)}); run scripts/make-idx-fixtures.py")


if __name__ == "__main__":
    main()
