#!/usr/bin/env python3
"""The TensorFlow peer of `predictor batch-predict` for bench/batch-predict.sh: the same files to the
same files, the way a user would write it with TensorFlow 2.21.

    batch-predict-tf.py MODEL_DIR INPUT_JSON_LINES OUTPUT_DIR [--batch-size 2048]

Loads the SavedModel with tf.saved_model.load, reads the JSON-lines file (one instance per line, a
bare list of 784 floats), runs `serving_default` on batches of --batch-size instances and writes
`prediction.results-00000-of-00001` with one `json.dumps(prediction)` line per instance (the
outputs keyed by name, as Cloud ML Engine writes them). Prints `instances=N seconds=S` (the whole
run after Python start-up, model loading included) on stdout.
"""

import argparse
import json
import os
import time

start = time.perf_counter()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir")
    parser.add_argument("input")
    parser.add_argument("output_dir")
    parser.add_argument("--batch-size", type=int, default=2048)
    args = parser.parse_args()

    serve = tf.saved_model.load(args.model_dir).signatures["serving_default"]
    input_name = list(serve.structured_input_signature[1].keys())[0]
    os.makedirs(args.output_dir, exist_ok=True)
    count = 0
    with open(args.input) as source, open(
        os.path.join(args.output_dir, "prediction.results-00000-of-00001"), "w"
    ) as sink:
        def flush(batch):
            outputs = serve(**{input_name: tf.constant(np.asarray(batch, dtype=np.float32))})
            columns = {name: tensor.numpy().tolist() for name, tensor in sorted(outputs.items())}
            for i in range(len(batch)):
                sink.write(json.dumps({name: rows[i] for name, rows in columns.items()}) + "\n")

        batch = []
        for line in source:
            batch.append(json.loads(line))
            if len(batch) == args.batch_size:
                flush(batch)
                count += len(batch)
                batch = []
        if batch:
            flush(batch)
            count += len(batch)
    print(f"instances={count} seconds={time.perf_counter() - start:.3f}")


if __name__ == "__main__":
    main()
