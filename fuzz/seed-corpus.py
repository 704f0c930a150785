#!/usr/bin/env python3
"""Seeds fuzz/corpus/<target>/ from testdata/ (run from anywhere; standard library only).

Seeds are kept small (libFuzzer mutates best below a few kB): IDX files are cut to their header
and a few records (raw and gzip), bundles are packed as the bundle target expects (4-byte
little-endian index length, index, shard), JSON seeds are testdata/sample.json rows in both
request shapes plus hand-picked edge cases. Re-running rewrites the seed files only; inputs
the fuzzer added to the corpus are kept.
"""
import gzip
import json
import pathlib
import struct

ROOT = pathlib.Path(__file__).resolve().parent.parent
TESTDATA = ROOT / "testdata"
CORPUS = ROOT / "fuzz" / "corpus"


def put(target, name, data):
    folder = CORPUS / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"seed-{name}").write_bytes(data)


def idx_prefix(data, records):
    """The IDX header and the first `records` records, with the count rewritten to match."""
    rank = data[3]
    header = 4 + 4 * rank
    dims = list(struct.unpack(f">{rank}I", data[4:header]))
    per_record = 1
    for d in dims[1:]:
        per_record *= d
    dims[0] = min(dims[0], records)
    return data[:4] + struct.pack(f">{rank}I", *dims) + data[header:header + dims[0] * per_record]


def seed_idx():
    for path in sorted((TESTDATA / "idx").rglob("*")):
        if not path.is_file() or path.name == "NOTICE":
            continue
        data = path.read_bytes()
        raw = gzip.decompress(data) if data[:2] == b"\x1f\x8b" and path.parent.name != "malformed" else data
        name = f"{path.parent.name}-{path.name}"
        if path.parent.name == "malformed":
            put("idx", name, data[:4096])
            continue
        small = idx_prefix(raw, 3)
        put("idx", name, small)
        put("idx", name + ".gz", gzip.compress(small, mtime=0))
    # An images/labels pair for the dataset path: first byte splits the rest.
    images = idx_prefix((TESTDATA / "idx/mnist-tiny-raw/train-images.idx3-ubyte").read_bytes(), 2)
    labels = idx_prefix((TESTDATA / "idx/mnist-tiny-raw/train-labels.idx1-ubyte").read_bytes(), 2)
    split = round(255 * len(images) / (len(images) + len(labels)))
    put("idx", "pair", bytes([split]) + images + labels)


def seed_savedmodel():
    for pb in sorted((TESTDATA / "savedmodels").glob("*/saved_model.pb")):
        put("savedmodel", pb.parent.name, pb.read_bytes())


def seed_bundle():
    pairs = [(TESTDATA / "savedmodels/bundle-fixture", "bundle-fixture")]
    pairs += [(p.parent, p.parent.parent.name) for p in sorted((TESTDATA / "savedmodels").glob("*/variables/variables.index"))]
    for folder, name in pairs:
        index = (folder / "variables.index").read_bytes()
        shard = (folder / "variables.data-00000-of-00001").read_bytes()
        put("bundle", name, struct.pack("<I", len(index)) + index + shard)


def seed_json():
    rows = [json.loads(line) for line in (TESTDATA / "sample.json").read_text().splitlines() if line.strip()]
    row = json.dumps(rows[0])
    cases = {
        "lines": (row + "\n" + json.dumps(rows[1]) + "\n").encode(),
        "request": json.dumps({"instances": rows[:2]}).encode(),
        "keyed": json.dumps({"instances": [{"image": rows[0]}]}).encode(),
        "columnar": json.dumps({"inputs": {"image": rows[:1]}}).encode(),
        "signature": json.dumps({"signature_name": "serving_default", "instances": rows[:1]}).encode(),
        "nonfinite": b'{"instances": [[NaN, Infinity, -Infinity, 1e400, -0.0, 5e-324]]}',
        "b64": b'{"instances": [{"b64": "aGVsbG8="}]}',
        "escapes": b'{"instances": ["\\u00e9\\ud83d\\ude00\\n\\"", 1, true, null, {"a": []}]}',
        "bom": b"\xef\xbb\xbf" + row.encode() + b"\r\n",
    }
    for target in ("json_gcloud", "json_tf_serving"):
        for name, data in cases.items():
            put(target, name, data)


def main():
    seed_idx()
    seed_savedmodel()
    seed_bundle()
    seed_json()
    for target in sorted(p.name for p in CORPUS.iterdir()):
        files = list((CORPUS / target).iterdir())
        size = sum(f.stat().st_size for f in files)
        print(f"{target}: {len(files)} files, {size} bytes")


if __name__ == "__main__":
    main()
