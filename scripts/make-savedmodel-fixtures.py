#!/usr/bin/env python3
"""Writes the SavedModel fixtures that savedmodel-runtime's tests run, with TensorFlow's own outputs.

Usage (TensorFlow 2.21, `tensorflow-cpu` from PyPI, Keras 3):

    .venv/bin/python scripts/make-savedmodel-fixtures.py [--out testdata/savedmodels] [--dump-dir DIR] [NAME...]

Every fixture is a small Dense MLP trained for a few steps on MNIST (so its classes mean something),
exported the way real users export models, one per kind of graph that the Rust runtime must run:

  tf1-training-graph  TF1 `SavedModelBuilder` + `predict_signature_def`, saved from the whole training
                      graph: ref variables (VariableV2), dropout behind a `keras_learning_phase`
                      PlaceholderWithDefault (Switch/Merge), loss, gradients, Momentum slots, global_step.
  tf2-module          TF2 `tf.saved_model.save` of a `tf.Module`: resource variables, function library,
                      StatefulPartitionedCall; two signatures (`serving_default`, `logits`).
  keras3-export       Keras 3 `model.export()`: single output `output_0`, dynamic Flatten.
  tf1-tutorial        TF1 `SavedModelBuilder` like the Cloud ML Engine MNIST tutorial: input `image`
                      [-1,784], outputs `probabilities` and `class` (int64 ArgMax), resource variables.

Convolutional models (input [-1,28,28,1] NHWC, what users export for MNIST CNNs):

  keras-cnn           Keras 3 `model.export()` of a Sequential CNN (Conv2D VALID + ReLU, MaxPooling2D,
                      Conv2D SAME strided, MaxPooling2D SAME, Flatten, Dense softmax), trained briefly.
  tf-module-cnn       `tf.Module` CNN, random weights: Conv2D SAME, AvgPool SAME and VALID, dilated and
                      EXPLICIT-padded Conv2D, Conv2DBackpropInput (transposed conv), Pad/PadV2, ConcatV2 on
                      channels, broadcasting Mul/AddV2, Max/Sum over spatial axes, Squeeze, Reshape -1.
  mobilenet-cnn       MobileNet-style `tf.Module`, random weights: strided Conv2D, DepthwiseConv2dNative
                      (strides 1 and 2), FusedBatchNormV3 (inference, random statistics), Relu6, 1x1
                      convolutions, global average pool (Mean keep_dims), Squeeze, MatMul + BiasAdd.

Each fixture directory gets `expected.json`: the signature, its inputs (20 MNIST test images and a few
random images) and the outputs TensorFlow computed for them, floats written with full precision (every
float32 is printed so that parsing it as f64 and rounding to f32 gives the same float32 back).
Also `ops.txt`: the op types each graph uses (top level and inside functions), so one can see what the
runtime must support. `--dump-dir` additionally writes `saved_model_cli show --all` output there (kept
out of the repository because it is large).

Each fixture is built in its own Python process: the TF1 fixtures switch TensorFlow to v1 behaviour,
which cannot be undone within a process.
"""

import argparse
import gzip
import json
import os
import shutil
import struct
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MNIST_DIR = os.path.join(REPO, "testdata", "mnist")
SEED = 20240601
NUM_MNIST_INSTANCES = 20
NUM_RANDOM_INSTANCES = 3
TRAIN_EXAMPLES = 3000
TRAIN_STEPS = 300
BATCH = 64

FIXTURES = ["tf1-training-graph", "tf2-module", "keras3-export", "tf1-tutorial", "keras-cnn", "tf-module-cnn", "mobilenet-cnn"]


# ----------------------------------------------------------------------------------------------
# data


def read_idx(path):
    import numpy as np

    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, = struct.unpack(">I", data[:4])
    ndim = magic & 0xFF
    dims = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    return np.frombuffer(data[4 + 4 * ndim :], dtype=np.uint8).reshape(dims)


def mnist(split):
    """(images float32 [n,28,28] scaled to [0,1], labels int64 [n])."""
    import numpy as np

    prefix = "train" if split == "train" else "t10k"
    images = read_idx(os.path.join(MNIST_DIR, f"{prefix}-images-idx3-ubyte.gz"))
    labels = read_idx(os.path.join(MNIST_DIR, f"{prefix}-labels-idx1-ubyte.gz"))
    return images.astype(np.float32) / np.float32(255.0), labels.astype(np.int64)


def training_data():
    images, labels = mnist("train")
    return images[:TRAIN_EXAMPLES], labels[:TRAIN_EXAMPLES]


def eval_instances():
    """20 real MNIST test images followed by a few random images, float32 [n,28,28]."""
    import numpy as np

    images, labels = mnist("test")
    rng = np.random.default_rng(SEED)
    # Multiples of 1/256 are exact in float32 and short in JSON.
    random_images = (rng.integers(0, 256, size=(NUM_RANDOM_INSTANCES, 28, 28)) / 256.0).astype(np.float32)
    instances = np.concatenate([images[:NUM_MNIST_INSTANCES], random_images])
    described = [
        {"source": "mnist-t10k", "index": i, "label": int(labels[i])} for i in range(NUM_MNIST_INSTANCES)
    ] + [{"source": "random-uniform-k/256", "seed": SEED, "index": i} for i in range(NUM_RANDOM_INSTANCES)]
    return instances, described


def batches(images, labels, steps, batch, seed):
    import numpy as np

    rng = np.random.default_rng(seed)
    for _ in range(steps):
        idx = rng.integers(0, len(images), size=batch)
        yield images[idx], labels[idx]


# ----------------------------------------------------------------------------------------------
# expected.json


def float32_text(value):
    """Shortest decimal that round-trips through f64 -> f32 to the same float32."""
    import numpy as np

    v = np.float32(value)
    text = repr(float(v))  # exact: every float32 is a float64
    short = np.format_float_positional(v, unique=True, trim="-") if np.isfinite(v) else text
    if np.float32(float(short)) == v:
        return short
    return text


def tensor_json(array):
    import numpy as np

    array = np.asarray(array)
    if array.dtype == np.float32:
        values = [float32_text(v) for v in array.reshape(-1)]
        return {"dtype": "float32", "shape": list(array.shape), "values": values}
    if array.dtype in (np.int64, np.int32):
        return {"dtype": str(array.dtype), "shape": list(array.shape), "values": [int(v) for v in array.reshape(-1)]}
    raise ValueError(f"unsupported dtype {array.dtype}")


def dumps_compact_lists(doc):
    """JSON with one line per tensor: indented objects, but each `values` list on a single line."""
    import re

    text = json.dumps(doc, indent=1)
    def one_line(match):
        items = [item.strip() for item in match.group(1).split(",") if item.strip()]
        return "[" + ", ".join(items) + "]"

    text = re.sub(r"\[([^\[\]{}]*)\]", one_line, text)
    text = re.sub(r"\{([^\[\]{}]*)\}", lambda m: "{" + one_line(m)[1:-1] + "}", text)
    # Float values were stored as strings to control their text; turn them back into JSON numbers.
    text = re.sub(r'"(-?[0-9][0-9.eE+-]*)"', r"\1", text)
    json.loads(text)  # still valid JSON
    return text + "\n"


def write_expected(export_dir, signature, tags, inputs, outputs, instances, other_signatures=None):
    doc = {
        "generator": "scripts/make-savedmodel-fixtures.py",
        "tags": tags,
        "signature": signature,
        "instances": instances,
        "inputs": {k: tensor_json(v) for k, v in sorted(inputs.items())},
        "outputs": {k: tensor_json(v) for k, v in sorted(outputs.items())},
    }
    if other_signatures:
        doc["other_signatures"] = {
            sig: {"outputs": {k: tensor_json(v) for k, v in sorted(outs.items())}}
            for sig, outs in sorted(other_signatures.items())
        }
    with open(os.path.join(export_dir, "expected.json"), "w") as f:
        f.write(dumps_compact_lists(doc))


# ----------------------------------------------------------------------------------------------
# op inventory


def op_inventory(export_dir):
    from tensorflow.core.protobuf import saved_model_pb2

    sm = saved_model_pb2.SavedModel()
    with open(os.path.join(export_dir, "saved_model.pb"), "rb") as f:
        sm.ParseFromString(f.read())
    lines = []
    for mg in sm.meta_graphs:
        lines.append(f"meta graph tags={list(mg.meta_info_def.tags)}")
        top = sorted({n.op for n in mg.graph_def.node})
        lines.append(f"  top level ({len(mg.graph_def.node)} nodes): {' '.join(top)}")
        for fn in sorted(mg.graph_def.library.function, key=lambda f: f.signature.name):
            ops = sorted({n.op for n in fn.node_def})
            lines.append(f"  function {fn.signature.name} ({len(fn.node_def)} nodes): {' '.join(ops)}")
        lines.append("  signatures: " + ", ".join(sorted(mg.signature_def.keys())))
    return "\n".join(lines) + "\n"


def finish(export_dir, dump_dir):
    with open(os.path.join(export_dir, "ops.txt"), "w") as f:
        f.write(op_inventory(export_dir))
    # Nothing in the fixtures should depend on when they were made.
    fingerprint = os.path.join(export_dir, "fingerprint.pb")
    if os.path.exists(fingerprint):
        os.remove(fingerprint)
    if dump_dir:
        os.makedirs(dump_dir, exist_ok=True)
        name = os.path.basename(export_dir.rstrip("/"))
        cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
        with open(os.path.join(dump_dir, f"{name}.show-all.txt"), "w") as f:
            subprocess.run([cli, "show", "--all", "--dir", export_dir], stdout=f, stderr=subprocess.STDOUT, check=False)
        from tensorflow.core.protobuf import saved_model_pb2

        sm = saved_model_pb2.SavedModel()
        with open(os.path.join(export_dir, "saved_model.pb"), "rb") as f:
            sm.ParseFromString(f.read())
        with open(os.path.join(dump_dir, f"{name}.saved_model.pbtxt"), "w") as f:
            f.write(str(sm))


# ----------------------------------------------------------------------------------------------
# TF1 graphs


def tf1_dense(tf, x, n_in, n_out, scope, activation, use_resource):
    with tf.compat.v1.variable_scope(scope):
        kernel = tf.compat.v1.get_variable(
            "kernel",
            [n_in, n_out],
            initializer=tf.compat.v1.glorot_uniform_initializer(seed=SEED + n_in + n_out),
            use_resource=use_resource,
        )
        bias = tf.compat.v1.get_variable(
            "bias", [n_out], initializer=tf.compat.v1.zeros_initializer(), use_resource=use_resource
        )
        y = tf.nn.bias_add(tf.matmul(x, kernel), bias)
        return activation(y) if activation is not None else y


def build_tf1_training_graph(export_dir):
    """The whole training graph of a TF1-era Keras-style model, as `SavedModelBuilder` saved it."""
    import numpy as np
    import tensorflow as tf

    tf.compat.v1.disable_v2_behavior()  # ref variables (VariableV2), Switch/Merge control flow
    train_x, train_y = training_data()
    inst, described = eval_instances()
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.set_random_seed(SEED)
        learning_phase = tf.compat.v1.placeholder_with_default(False, shape=(), name="keras_learning_phase")
        images = tf.compat.v1.placeholder(tf.float32, [None, 784], name="images")
        labels = tf.compat.v1.placeholder(tf.int64, [None], name="labels")
        hidden = tf1_dense(tf, images, 784, 16, "dense", tf.nn.relu, use_resource=False)
        # What Keras' Dropout did in graph mode: K.in_train_phase -> tf.cond on the learning phase.
        hidden = tf.compat.v1.cond(
            learning_phase,
            lambda: tf.compat.v1.nn.dropout(hidden, rate=0.25, seed=SEED),
            lambda: tf.identity(hidden),
            name="dropout/cond",
        )
        hidden = tf1_dense(tf, hidden, 16, 8, "dense_1", tf.nn.tanh, use_resource=False)
        logits = tf1_dense(tf, hidden, 8, 10, "dense_2", None, use_resource=False)
        scores = tf.nn.softmax(logits, name="dense_2/Softmax")
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
        global_step = tf.compat.v1.train.get_or_create_global_step()
        train_op = tf.compat.v1.train.MomentumOptimizer(0.05, 0.9).minimize(loss, global_step=global_step)
        assert not tf.compat.v1.resource_variables_enabled()
        with tf.compat.v1.Session(graph=graph) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            for bx, by in batches(train_x.reshape(-1, 784), train_y, TRAIN_STEPS, BATCH, SEED):
                sess.run(train_op, {images: bx, labels: by, learning_phase: True})
            feed = inst.reshape(-1, 784)
            expected_scores = sess.run(scores, {images: feed})
            builder = tf.compat.v1.saved_model.Builder(export_dir)
            signature = tf.compat.v1.saved_model.predict_signature_def(
                inputs={"images": images}, outputs={"scores": scores}
            )
            builder.add_meta_graph_and_variables(
                sess,
                [tf.compat.v1.saved_model.tag_constants.SERVING],
                signature_def_map={"serving_default": signature},
                strip_default_attrs=True,
            )
            builder.save()
    write_expected(
        export_dir, "serving_default", ["serve"], {"images": feed}, {"scores": expected_scores}, described
    )
    return np.asarray(expected_scores)


def build_tf1_tutorial(export_dir):
    """Like the Cloud ML Engine MNIST tutorial's export: `image` in, `probabilities` and `class` out."""
    import tensorflow as tf

    tf.compat.v1.disable_v2_behavior()
    tf.compat.v1.enable_resource_variables()
    train_x, train_y = training_data()
    inst, described = eval_instances()
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.set_random_seed(SEED)
        image = tf.compat.v1.placeholder(tf.float32, [None, 784], name="image")
        labels = tf.compat.v1.placeholder(tf.int64, [None], name="labels")
        hidden = tf1_dense(tf, image, 784, 16, "dense", tf.nn.relu, use_resource=True)
        hidden = tf1_dense(tf, hidden, 16, 16, "dense_1", tf.nn.relu, use_resource=True)
        logits = tf1_dense(tf, hidden, 16, 10, "dense_2", None, use_resource=True)
        probabilities = tf.nn.softmax(logits, name="probabilities")
        predicted = tf.argmax(probabilities, axis=1, output_type=tf.int64, name="class")
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
        train_op = tf.compat.v1.train.GradientDescentOptimizer(0.2).minimize(loss)
        with tf.compat.v1.Session(graph=graph) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            for bx, by in batches(train_x.reshape(-1, 784), train_y, TRAIN_STEPS, BATCH, SEED + 1):
                sess.run(train_op, {image: bx, labels: by})
            feed = inst.reshape(-1, 784)
            out_p, out_c = sess.run([probabilities, predicted], {image: feed})
            builder = tf.compat.v1.saved_model.Builder(export_dir)
            signature = tf.compat.v1.saved_model.predict_signature_def(
                inputs={"image": image}, outputs={"probabilities": probabilities, "class": predicted}
            )
            builder.add_meta_graph_and_variables(
                sess,
                [tf.compat.v1.saved_model.tag_constants.SERVING],
                signature_def_map={"serving_default": signature},
                strip_default_attrs=True,
            )
            builder.save()
    write_expected(
        export_dir,
        "serving_default",
        ["serve"],
        {"image": feed},
        {"probabilities": out_p, "class": out_c},
        described,
    )


# ----------------------------------------------------------------------------------------------
# TF2 graphs


def build_tf2_module(export_dir):
    """`tf.saved_model.save` of a plain `tf.Module` with two signatures."""
    import numpy as np
    import tensorflow as tf

    tf.random.set_seed(SEED)
    train_x, train_y = training_data()
    inst, described = eval_instances()

    class Dense(tf.Module):
        def __init__(self, n_in, n_out, name):
            super().__init__(name=name)
            init = tf.keras.initializers.GlorotUniform(seed=SEED + n_in + n_out)
            self.kernel = tf.Variable(init([n_in, n_out]), name="kernel")
            self.bias = tf.Variable(tf.zeros([n_out]), name="bias")

        def __call__(self, x):
            return tf.nn.bias_add(tf.matmul(x, self.kernel), self.bias)

    class Classifier(tf.Module):
        def __init__(self):
            super().__init__(name="classifier")
            self.hidden1 = Dense(784, 16, "hidden1")
            self.hidden2 = Dense(16, 8, "hidden2")
            self.out = Dense(8, 10, "out")

        def logits(self, pixels, training=False):
            x = tf.reshape(pixels, [-1, 784])
            x = tf.nn.relu(self.hidden1(x))
            if training:
                x = tf.nn.dropout(x, rate=0.2)
            x = tf.nn.elu(self.hidden2(x))
            return self.out(x)

        @tf.function(input_signature=[tf.TensorSpec([None, 28, 28], tf.float32, name="pixels")])
        def serve(self, pixels):
            probabilities = tf.nn.softmax(self.logits(pixels))
            return {"scores": probabilities, "predicted_class": tf.argmax(probabilities, axis=1)}

        @tf.function(input_signature=[tf.TensorSpec([None, 28, 28], tf.float32, name="pixels")])
        def serve_logits(self, pixels):
            return {"logits": self.logits(pixels)}

    model = Classifier()
    for bx, by in batches(train_x, train_y, TRAIN_STEPS, BATCH, SEED + 2):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(labels=by, logits=model.logits(bx, training=True))
            )
        for var, grad in zip(model.trainable_variables, tape.gradient(loss, model.trainable_variables)):
            var.assign_sub(0.2 * grad)

    tf.saved_model.save(
        model, export_dir, signatures={"serving_default": model.serve, "logits": model.serve_logits}
    )
    # What TensorFlow computes from the saved files, not from the Python object.
    loaded = tf.saved_model.load(export_dir)
    out = loaded.signatures["serving_default"](pixels=tf.constant(inst))
    logits = loaded.signatures["logits"](pixels=tf.constant(inst))["logits"].numpy()
    write_expected(
        export_dir,
        "serving_default",
        ["serve"],
        {"pixels": inst},
        {k: v.numpy() for k, v in out.items()},
        described,
        other_signatures={"logits": {"logits": np.asarray(logits)}},
    )


def build_keras3_export(export_dir):
    """Keras 3 `model.export()` (TF backend) of a Sequential MLP with dropout."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(SEED)
    train_x, train_y = training_data()
    inst, described = eval_instances()
    model = keras.Sequential(
        [
            keras.Input(shape=(28, 28)),
            keras.layers.Flatten(),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dropout(0.2),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    model.fit(train_x, train_y, batch_size=BATCH, epochs=2, shuffle=False, verbose=0)
    model.export(export_dir, verbose=False)
    loaded = tf.saved_model.load(export_dir)
    sig = loaded.signatures["serving_default"]
    (input_key,) = sig.structured_input_signature[1].keys()
    out = sig(**{input_key: tf.constant(inst)})
    write_expected(
        export_dir,
        "serving_default",
        ["serve"],
        {input_key: inst},
        {k: v.numpy() for k, v in out.items()},
        described,
    )


# ----------------------------------------------------------------------------------------------
# convolutional models


def build_keras_cnn(export_dir):
    """Keras 3 `model.export()` of the usual small MNIST CNN, trained for a moment."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(SEED)
    train_x, train_y = training_data()
    inst, described = eval_instances()
    model = keras.Sequential(
        [
            keras.Input(shape=(28, 28, 1)),
            keras.layers.Conv2D(8, 3, activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(3, strides=2, padding="same"),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    model.fit(train_x[..., None], train_y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
    model.export(export_dir, verbose=False)
    loaded = tf.saved_model.load(export_dir)
    sig = loaded.signatures["serving_default"]
    (input_key,) = sig.structured_input_signature[1].keys()
    images = inst[..., None]
    out = sig(**{input_key: tf.constant(images)})
    write_expected(
        export_dir, "serving_default", ["serve"], {input_key: images}, {k: v.numpy() for k, v in out.items()}, described
    )


def random_variable(tf, rng, shape, scale, name):
    import numpy as np

    return tf.Variable(rng.normal(0.0, scale, size=shape).astype(np.float32), name=name)


def save_image_module(model, export_dir, inst, described):
    """Saves a `tf.Module` whose `serve` takes `images` [-1,28,28,1]; expected.json from the saved files."""
    import tensorflow as tf

    tf.saved_model.save(model, export_dir, signatures={"serving_default": model.serve})
    loaded = tf.saved_model.load(export_dir)
    images = inst[..., None]
    out = loaded.signatures["serving_default"](images=tf.constant(images))
    write_expected(
        export_dir, "serving_default", ["serve"], {"images": images}, {k: v.numpy() for k, v in out.items()}, described
    )


def build_tf_module_cnn(export_dir):
    """A `tf.Module` CNN with random weights exercising padding modes, pooling and shape ops."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(SEED + 7)
    inst, described = eval_instances()

    class Cnn(tf.Module):
        def __init__(self):
            super().__init__(name="cnn")
            v = lambda shape, scale, name: random_variable(tf, rng, shape, scale, name)
            self.c1 = v([5, 5, 1, 6], 0.3, "c1")
            self.b1 = v([6], 0.1, "b1")
            self.c2 = v([3, 3, 6, 8], 0.2, "c2")
            self.c3 = v([3, 3, 6, 4], 0.2, "c3")
            self.t1 = v([3, 3, 5, 12], 0.2, "t1")
            self.scale = v([1, 1, 1, 5], 0.5, "scale")
            self.shift = v([5], 0.1, "shift")
            self.dense = v([20, 10], 0.3, "dense")
            self.dense_b = v([10], 0.1, "dense_b")

        @tf.function(input_signature=[tf.TensorSpec([None, 28, 28, 1], tf.float32, name="images")])
        def serve(self, images):
            x = tf.nn.conv2d(images, self.c1, strides=1, padding="SAME")
            x = tf.nn.relu(tf.nn.bias_add(x, self.b1))
            x = tf.nn.avg_pool2d(x, ksize=3, strides=2, padding="SAME")  # [14,14,6]
            a = tf.nn.conv2d(x, self.c2, strides=[1, 2, 2, 1], padding=[[0, 0], [1, 2], [2, 1], [0, 0]])
            b = tf.nn.conv2d(tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]]), self.c3, strides=1, padding="VALID", dilations=2)
            b = tf.nn.avg_pool2d(b, ksize=2, strides=2, padding="VALID")  # [6,6,4]
            a = a[:, :6, :6, :]
            x = tf.concat([a, b], axis=3)  # [6,6,12]
            x = tf.raw_ops.PadV2(input=x, paddings=[[0, 0], [0, 1], [1, 0], [0, 0]], constant_values=0.25)
            x = tf.nn.conv2d_transpose(x, self.t1, output_shape=tf.stack([tf.shape(x)[0], 14, 14, 5]), strides=2, padding="SAME")
            x = tf.nn.relu6(x * self.scale + self.shift)
            top = tf.reduce_max(x, axis=[1, 2], keepdims=True)
            total = tf.reduce_sum(x, axis=[1, 2], keepdims=True)
            x = tf.squeeze(tf.concat([top, total * 0.01], axis=3), axis=[1, 2])  # [n,10]
            x = tf.reshape(tf.concat([x, x * 0.5], axis=1), [-1, 20])
            logits = tf.nn.bias_add(tf.matmul(x, self.dense), self.dense_b)
            probabilities = tf.nn.softmax(logits)
            return {"probabilities": probabilities, "class": tf.argmax(probabilities, axis=1)}

    model = Cnn()
    save_image_module(model, export_dir, inst, described)


def build_mobilenet_cnn(export_dir):
    """A small MobileNet-style `tf.Module` (depthwise separable blocks, fused BN, ReLU6), random weights."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(SEED + 11)
    inst, described = eval_instances()

    class BatchNorm(tf.Module):
        def __init__(self, channels, name):
            super().__init__(name=name)
            self.gamma = tf.Variable(rng.uniform(0.5, 1.5, channels).astype(np.float32), name="gamma")
            self.beta = tf.Variable(rng.normal(0.0, 0.1, channels).astype(np.float32), name="beta")
            self.mean = tf.Variable(rng.normal(0.0, 0.2, channels).astype(np.float32), name="moving_mean")
            self.var = tf.Variable(rng.uniform(0.5, 2.0, channels).astype(np.float32), name="moving_variance")

        def __call__(self, x):
            y, _, _ = tf.compat.v1.nn.fused_batch_norm(
                x, self.gamma, self.beta, mean=self.mean, variance=self.var, epsilon=1e-3, is_training=False
            )
            return y

    class MobileNet(tf.Module):
        def __init__(self):
            super().__init__(name="mobilenet")
            v = lambda shape, scale, name: random_variable(tf, rng, shape, scale, name)
            self.stem = v([3, 3, 1, 8], 0.4, "stem")
            self.bn0 = BatchNorm(8, "bn0")
            self.blocks = []
            for i, (c_in, c_out, stride) in enumerate([(8, 16, 1), (16, 24, 2), (24, 32, 2)]):
                dw = v([3, 3, c_in, 1], 0.4, f"dw{i}")
                pw = v([1, 1, c_in, c_out], 0.3, f"pw{i}")
                self.blocks.append((dw, BatchNorm(c_in, f"bn_dw{i}"), pw, BatchNorm(c_out, f"bn_pw{i}"), stride))
            self.dense = v([32, 10], 0.3, "dense")
            self.dense_b = v([10], 0.1, "dense_b")

        @tf.function(input_signature=[tf.TensorSpec([None, 28, 28, 1], tf.float32, name="images")])
        def serve(self, images):
            x = tf.nn.conv2d(images, self.stem, strides=2, padding="SAME")
            x = tf.nn.relu6(self.bn0(x))
            for dw, bn_dw, pw, bn_pw, stride in self.blocks:
                x = tf.nn.depthwise_conv2d(x, dw, strides=[1, stride, stride, 1], padding="SAME")
                x = tf.nn.relu6(bn_dw(x))
                x = tf.nn.conv2d(x, pw, strides=1, padding="VALID")
                x = tf.nn.relu6(bn_pw(x))
            x = tf.reduce_mean(x, axis=[1, 2], keepdims=True)
            x = tf.squeeze(x, axis=[1, 2])
            logits = tf.nn.bias_add(tf.matmul(x, self.dense), self.dense_b)
            probabilities = tf.nn.softmax(logits)
            return {"probabilities": probabilities, "class": tf.argmax(probabilities, axis=1)}

    model = MobileNet()
    save_image_module(model, export_dir, inst, described)


BUILDERS = {
    "tf1-training-graph": build_tf1_training_graph,
    "tf2-module": build_tf2_module,
    "keras3-export": build_keras3_export,
    "tf1-tutorial": build_tf1_tutorial,
    "keras-cnn": build_keras_cnn,
    "tf-module-cnn": build_tf_module_cnn,
    "mobilenet-cnn": build_mobilenet_cnn,
}


def build_one(name, out_dir, dump_dir):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf

    np.random.seed(SEED)
    tf.config.experimental.enable_op_determinism()
    export_dir = os.path.join(out_dir, name)
    if os.path.exists(export_dir):
        shutil.rmtree(export_dir)
    BUILDERS[name](export_dir)
    finish(export_dir, dump_dir)
    total = sum(
        os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(export_dir) for f in files
    )
    print(f"{name}: {total} bytes in {export_dir}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="fixtures to build (default: all): " + ", ".join(FIXTURES))
    parser.add_argument("--out", default=os.path.join(REPO, "testdata", "savedmodels"))
    parser.add_argument("--dump-dir", default=None, help="also write saved_model_cli dumps here")
    parser.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    names = args.names or FIXTURES
    unknown = [n for n in names if n not in BUILDERS]
    if unknown:
        parser.error(f"unknown fixture(s) {unknown}; known: {FIXTURES}")
    if args.in_process:
        (name,) = names
        build_one(name, args.out, args.dump_dir)
        return
    for name in names:
        cmd = [sys.executable, os.path.abspath(__file__), "--in-process", "--out", args.out, name]
        if args.dump_dir:
            cmd[3:3] = ["--dump-dir", args.dump_dir]
        subprocess.run(cmd, check=True)


if __name__ == "__main__":
    main()
