"""Keras 3 (TensorFlow 2.21 backend) peer of the Rust trainer: the tutorial's model as written.

    .venv-peers/bin/python bench/peers/keras_mlp.py [--data testdata/mnist] [--threads 2]
        [--epochs 1] [--batch-size 32] [--seed 1]

Sequential Dense(512, relu) Dropout(0.2) Dense(256, relu) Dropout(0.2) Dense(10, softmax),
categorical cross-entropy, SGD(0.01, momentum=0.9), `fit(shuffle=True, verbose=0)`. TensorFlow
is limited to `threads` intra-op and inter-op threads.

Prints one JSON line: framework, version, threads, epoch_seconds (per epoch, from a callback,
so the one-off graph tracing before the first epoch is excluded but the first epoch's own
tracing is not), test_loss, test_accuracy.
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import mnist_data  # noqa: E402


def tutorial_model(keras):
    """The tutorial's model, compiled (also used by scripts/keras-tensorboard-run.py)."""
    model = keras.Sequential([
        keras.Input(shape=(784,)),
        keras.layers.Dense(512, activation="relu"),
        keras.layers.Dropout(0.2),
        keras.layers.Dense(256, activation="relu"),
        keras.layers.Dropout(0.2),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=0.01, momentum=0.9),
        loss="categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def main():
    args = mnist_data.parse_args()

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    import keras

    keras.utils.set_random_seed(args.seed)
    x_train, y_train, x_test, y_test = mnist_data.load(args.data)
    y_train = keras.utils.to_categorical(y_train, 10)
    y_test = keras.utils.to_categorical(y_test, 10)

    model = tutorial_model(keras)

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds = []

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self.start)

    timer = EpochTimer()
    model.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs,
              shuffle=True, verbose=0, callbacks=[timer])
    test_loss, test_accuracy = model.evaluate(x_test, y_test, verbose=0)
    print(json.dumps({
        "framework": "keras",
        "version": f"keras {keras.__version__} / tensorflow {tf.__version__}",
        "threads": args.threads,
        "epoch_seconds": timer.seconds,
        "test_loss": float(test_loss),
        "test_accuracy": float(test_accuracy),
    }))


if __name__ == "__main__":
    main()
