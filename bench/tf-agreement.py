#!/usr/bin/env python3
"""How closely `predictor local` reproduces TensorFlow on the 10,000 MNIST test images, set
beside how closely TensorFlow reproduces itself when only the batch size changes.

    .venv/bin/python bench/tf-agreement.py MODEL_DIR [--predictor target/release/predictor]

Prints, for the model's `probabilities` output: ours vs TF (one batch of 10,000), and TF with
batches of 1 and of 7 vs TF with one batch of 10,000 (on the first 1,000 and 7,000 images):
maximum relative difference, the same for probabilities >= 1e-3, the share of bit-identical
floats, and whether the classes agree.
"""
import argparse
import gzip
import json
import os
import subprocess
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_images():
    raw = gzip.open(os.path.join(ROOT, "testdata/mnist/t10k-images-idx3-ubyte.gz")).read()
    return np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 784).astype(np.float32) / np.float32(255)


def compare(name, ours, theirs):
    rel = np.abs(ours.astype(np.float64) - theirs) / np.abs(theirs.astype(np.float64))
    rel[ours == theirs] = 0
    large = rel[theirs >= 1e-3]
    print(f"{name:34s} max rel {rel.max():.2e}  (p >= 1e-3: {large.max():.2e})  "
          f"bit-identical {np.mean(ours == theirs):6.1%}  classes equal {bool((ours.argmax(1) == theirs.argmax(1)).all())}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir")
    parser.add_argument("--predictor", default=os.path.join(ROOT, "target/release/predictor"))
    args = parser.parse_args()
    x = test_images()
    with tempfile.TemporaryDirectory() as tmp:
        instances = os.path.join(tmp, "instances.json")
        with open(instances, "w") as f:
            for row in x:
                f.write(json.dumps([float(v) for v in row]) + "\n")
        out = subprocess.run([args.predictor, "local", "--model-dir", args.model_dir, "--json-instances",
                              instances, "--format", "json"], capture_output=True, text=True, check=True).stdout
    ours = np.array([p["probabilities"] for p in json.loads(out)["predictions"]], np.float32)
    serve = tf.saved_model.load(args.model_dir).signatures["serving_default"]
    full = serve(image=tf.constant(x))["probabilities"].numpy()
    compare("ours vs TF (batch 10000)", ours, full)
    for batch, count in ((1, 1000), (7, 7000)):
        parts = [serve(image=tf.constant(x[i:i + batch]))["probabilities"].numpy() for i in range(0, count, batch)]
        compare(f"TF batch {batch} vs TF batch 10000", np.concatenate(parts), full[:count])


if __name__ == "__main__":
    main()
