"""Helper for tests/tensorflow_accepts_export.rs: asks the real TensorFlow about files we wrote.

Usage:
  python tf_check.py models CASE.json    load every exported model listed in CASE.json with
                                         tf.saved_model.load, the TF1 loader and saved_model_cli,
                                         run it on the case's inputs, print JSON results
  python tf_check.py bundle PREFIX N     write a bundle of N float32 tensors with TF's SaveV2 (the
                                         Rust test rewrites it and compares bytes)

The Rust test does all the asserting; this script only reports what TensorFlow did.
"""

import json
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


def run_models(case_path):
    with open(case_path) as f:
        case = json.load(f)
    results = []
    for model in case["models"]:
        directory = model["dir"]
        x = np.array(model["inputs"], dtype=np.float32)
        result = {"tensorflow_version": tf.__version__}

        # TF2 loader: a TF1-style SavedModel is loaded as "v1 in v2" with .signatures.
        loaded = tf.saved_model.load(directory)
        outputs = loaded.signatures["serving_default"](image=tf.constant(x))
        result["tf2"] = {k: v.numpy().tolist() for k, v in outputs.items()}
        result["tf2_output_dtypes"] = {k: v.dtype.name for k, v in outputs.items()}

        # TF1 loader inside a graph/session, feeding and fetching by the signature's tensor names.
        with tf.Graph().as_default() as graph:
            with tf.compat.v1.Session(graph=graph) as session:
                meta = tf.compat.v1.saved_model.loader.load(session, ["serve"], directory)
                signature = meta.signature_def["serving_default"]
                fetches = {k: v.name for k, v in signature.outputs.items()}
                feed = {signature.inputs["image"].name: x}
                values = session.run(fetches, feed_dict=feed)
                result["tf1"] = {k: v.tolist() for k, v in values.items()}

        # The checkpoint as TF reads it.
        reader = tf.train.load_checkpoint(os.path.join(directory, "variables", "variables"))
        shapes = reader.get_variable_to_shape_map()
        result["checkpoint"] = {
            name: {"shape": list(shapes[name]), "values": reader.get_tensor(name).reshape(-1).tolist()}
            for name in sorted(shapes)
        }

        cli = subprocess.run(
            [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli", "show", "--all", "--dir", directory],
            capture_output=True,
            text=True,
        )
        result["cli_returncode"] = cli.returncode
        result["cli"] = cli.stdout + cli.stderr
        results.append(result)
    json.dump({"results": results}, sys.stdout)


def write_bundle(prefix, count):
    names = [f"{i:06d}/{'layer_' * 3}{i % 7}/kernel" for i in range(count)]
    tensors = [tf.constant([float(i), -0.5 * i], dtype=tf.float32) for i in range(count)]
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names, shape_and_slices=[""] * count, tensors=tensors)
    json.dump({"names": names}, sys.stdout)


def main():
    mode = sys.argv[1]
    if mode == "models":
        run_models(sys.argv[2])
    elif mode == "bundle":
        write_bundle(sys.argv[2], int(sys.argv[3]))
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
