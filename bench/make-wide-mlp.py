"""Writes a wide MNIST MLP (784-512-256-10, the trainer's default size) as a TF1 SavedModel with
random weights, for load tests where the forward pass is a real part of the cost:

    .venv/bin/python bench/make-wide-mlp.py /tmp/mlp512
    MODEL=/tmp/mlp512 bench/serve-load.sh

Same graph as testdata/savedmodels/tf1-tutorial (`image` in, `probabilities` and `class` out,
TF1 `SavedModelBuilder`), which is 784-16-16-10: its forward pass costs 26 kFLOP per instance
against 1.07 MFLOP here. Untrained: the classes mean nothing, the cost is the same.
"""
import sys

import tensorflow as tf

export_dir = sys.argv[1]
tf.compat.v1.disable_v2_behavior()
tf.compat.v1.enable_resource_variables()
graph = tf.Graph()
with graph.as_default():
    tf.compat.v1.set_random_seed(1)
    image = tf.compat.v1.placeholder(tf.float32, [None, 784], name="image")

    def dense(x, n_in, n_out, name, activation):
        with tf.compat.v1.variable_scope(name):
            w = tf.compat.v1.get_variable(
                "kernel", [n_in, n_out], initializer=tf.compat.v1.glorot_uniform_initializer(), use_resource=True
            )
            b = tf.compat.v1.get_variable(
                "bias", [n_out], initializer=tf.compat.v1.zeros_initializer(), use_resource=True
            )
            y = tf.nn.bias_add(tf.matmul(x, w), b)
            return activation(y) if activation else y

    hidden = dense(image, 784, 512, "dense", tf.nn.relu)
    hidden = dense(hidden, 512, 256, "dense_1", tf.nn.relu)
    logits = dense(hidden, 256, 10, "dense_2", None)
    probabilities = tf.nn.softmax(logits, name="probabilities")
    predicted = tf.argmax(probabilities, axis=1, output_type=tf.int64, name="class")
    with tf.compat.v1.Session(graph=graph) as sess:
        sess.run(tf.compat.v1.global_variables_initializer())
        builder = tf.compat.v1.saved_model.Builder(export_dir)
        signature = tf.compat.v1.saved_model.predict_signature_def(
            inputs={"image": image}, outputs={"probabilities": probabilities, "class": predicted}
        )
        builder.add_meta_graph_and_variables(
            sess, ["serve"], signature_def_map={"serving_default": signature}, strip_default_attrs=True
        )
        builder.save()
print(f"wrote {export_dir}")
