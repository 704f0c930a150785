#!/usr/bin/env python3
"""Writes testdata/savedmodels/bundle-fixture/: a tensor bundle written by TensorFlow itself.

The savedmodel-format crate's test `bundle_fixture` writes the same tensors with our own bundle
writer and checks that `variables.index` and `variables.data-00000-of-00001` are byte-identical
to these files, and that our reader recovers the values recorded in `tensors.json`.

TensorFlow's low-level `SaveV2` op is used (no tf.train.Checkpoint) so that the keys are the plain
names given here, like the keys of a TF1 SavedModel (`dense/kernel`). SaveV2 appends tensors to
the data file in the order of `tensor_names`; the index is sorted by TF. The order is recorded in
tensors.json so the Rust test can add tensors in the same order.

Usage: .venv/bin/python scripts/make-bundle-fixture.py   (TensorFlow 2.21, tensorflow-cpu)
"""

import json
import os
import pathlib
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parent.parent
OUT = REPO / "testdata" / "savedmodels" / "bundle-fixture"


def tensors():
    """Name -> numpy array, in the order they are written to the data file (deliberately not
    sorted, so that the test also covers "data order = insertion order, index sorted")."""
    rng = np.random.default_rng(20240521)
    return [
        ("dense/kernel", rng.standard_normal((4, 3)).astype(np.float32)),
        ("dense/bias", rng.standard_normal(3).astype(np.float32)),
        ("dense_1/kernel", rng.standard_normal((3, 2)).astype(np.float32)),
        ("dense_1/bias", np.zeros(2, dtype=np.float32)),
        ("counts", np.array([[1, -2], [2**40, -(2**62)]], dtype=np.int64)),
        ("scale", np.array([0.1, -2.5e-300, 1e300], dtype=np.float64)),
        ("global_step", np.array(1234, dtype=np.int64)),
        ("flags", np.array([True, False, True], dtype=np.bool_)),
        ("vocab", np.array([b"abc", b"", b"hello world"], dtype=object)),
    ]


def to_json_values(array):
    if array.dtype == object:
        return [v.decode("utf-8") for v in array.reshape(-1)]
    # float32 -> Python float is exact, and parsing that decimal back as f64 then narrowing to
    # f32 gives the same bits.
    return [v.item() for v in array.reshape(-1)]


def main():
    print("TensorFlow", tf.__version__, file=sys.stderr)
    items = tensors()
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        prefix = os.path.join(tmp, "variables")
        tf.raw_ops.SaveV2(
            prefix=prefix,
            tensor_names=[name for name, _ in items],
            shape_and_slices=[""] * len(items),
            tensors=[tf.constant(value) for _, value in items],
        )
        # Check TF reads back what it wrote.
        restored = tf.raw_ops.RestoreV2(
            prefix=prefix,
            tensor_names=[name for name, _ in items],
            shape_and_slices=[""] * len(items),
            dtypes=[tf.as_dtype(value.dtype if value.dtype != object else tf.string) for _, value in items],
        )
        for (name, value), back in zip(items, restored):
            assert np.array_equal(back.numpy(), value), name
        for suffix in ["index", "data-00000-of-00001"]:
            data = pathlib.Path(f"{prefix}.{suffix}").read_bytes()
            (OUT / f"variables.{suffix}").write_bytes(data)
    description = {
        "generator": "scripts/make-bundle-fixture.py",
        "tensorflow_version": tf.__version__,
        "note": "tensors are listed in the order SaveV2 wrote them to the data file",
        "tensors": [
            {
                "name": name,
                "dtype": "string" if value.dtype == object else str(value.dtype),
                "shape": list(value.shape),
                "values": to_json_values(value),
            }
            for name, value in items
        ],
    }
    (OUT / "tensors.json").write_text(json.dumps(description, indent=1) + "\n")
    print(f"wrote {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
