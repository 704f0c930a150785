"""The Keras run shown beside ours in docs/tensorboard-scalars.png: the tutorial's model trained by
Keras 3 (the .venv's TensorFlow 2.21) with its own `TensorBoard` callback.

    .venv/bin/python scripts/keras-tensorboard-run.py --logdir DIR [--data testdata/mnist]
        [--train-limit 20000] [--epochs 3] [--log-every-steps 25] [--validation-split 0.2] [--seed 1]

Same model, loss, optimizer and batch size as the Rust trainer (and bench/peers/keras_mlp.py);
`--train-limit` keeps the first N training images so the run is short; `--validation-split`
is Keras's `validation_split` (the last fraction, before shuffling), as the trainer's flag.

Keras 3.15's callback writes the `epoch_*` summaries only when the epoch's last global step is a
multiple of `update_freq` (it leaves the batch-level `record_if` condition in force at epoch end;
seen with TF 2.21), so pick --log-every-steps to divide the steps per epoch: the defaults give
16000 training images, 500 steps per epoch, a point every 25 steps.
`TensorBoard(update_freq=--log-every-steps)` writes DIR/train and DIR/validation.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench", "peers"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras_mlp  # noqa: E402
import mnist_data  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--logdir", required=True)
    parser.add_argument("--data", default="testdata/mnist")
    parser.add_argument("--train-limit", type=int, default=20000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--log-every-steps", type=int, default=25)
    parser.add_argument("--validation-split", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    import keras

    keras.utils.set_random_seed(args.seed)
    x_train, y_train, _, _ = mnist_data.load(args.data)
    x_train, y_train = x_train[:args.train_limit], y_train[:args.train_limit]
    y_train = keras.utils.to_categorical(y_train, 10)
    model = keras_mlp.tutorial_model(keras)
    tensorboard = keras.callbacks.TensorBoard(log_dir=args.logdir, update_freq=args.log_every_steps)
    model.fit(x_train, y_train, batch_size=32, epochs=args.epochs, shuffle=True,
              validation_split=args.validation_split, verbose=2, callbacks=[tensorboard])


if __name__ == "__main__":
    main()
