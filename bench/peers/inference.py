"""In-process inference peers of savedmodel-runtime's `inference_bench`: TensorFlow and PyTorch.

    .venv-peers/bin/python bench/peers/inference.py --framework tf|torch --model DIR
        [--data testdata/mnist] [--batches 1,32,256,10000] [--threads 2] [--seconds 1.5]

tf:    `tf.saved_model.load(DIR).signatures["serving_default"]` called on a `tf.constant` batch
       (what TF Serving and `gcloud ai-platform local predict` run), outputs fetched to numpy.
torch: the same Dense MLP rebuilt as `nn.Sequential(Linear, ReLU, ..., Softmax)` in eager mode
       under `torch.inference_mode()`, weights read from the SavedModel's checkpoint (any chain
       of `<layer>/kernel` + `<layer>/bias` variables, in checkpoint order), plus `argmax`.

Inputs are the first rows of the MNIST t10k images, pixel/255, float32 [batch, 784]. Every batch
size runs for about `--seconds` after a warm-up; prints one JSON line per batch size:
framework, version, threads, batch, calls, seconds_per_call (the best of 5 timed rounds).
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mnist_data  # noqa: E402


def timed(call, seconds):
    """Best mean seconds per call over 5 rounds of about seconds/5 each."""
    start = time.perf_counter()
    call()
    one = max(time.perf_counter() - start, 1e-7)
    per_round = max(1, int(seconds / 5 / one))
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(per_round):
            call()
        best = min(best, (time.perf_counter() - start) / per_round)
    return best, per_round * 5


def dense_layers(model_dir):
    """[(kernel [in, out], bias [out])] from the checkpoint, chained by shape."""
    import tensorflow as tf

    reader = tf.train.load_checkpoint(os.path.join(model_dir, "variables", "variables"))
    shapes = reader.get_variable_to_shape_map()
    kernels = {}
    for name, shape in shapes.items():
        if "OPTIMIZER_SLOT" in name or "Momentum" in name or len(shape) != 2:
            continue
        bias_name = name.replace("kernel", "bias")
        if bias_name != name and bias_name in shapes:
            kernels[name] = (reader.get_tensor(name), reader.get_tensor(bias_name))
    layers, width = [], 784
    while True:
        nxt = [v for v in kernels.values() if v[0].shape[0] == width]
        if not nxt:
            break
        layers.append(nxt[0])
        kernels = {k: v for k, v in kernels.items() if v is not nxt[0]}
        width = nxt[0][0].shape[1]
    if not layers:
        raise SystemExit(f"{model_dir}: no Dense kernel/bias chain from 784 inputs in the checkpoint")
    return layers


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--framework", choices=["tf", "torch"], required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", default="testdata/mnist")
    parser.add_argument("--batches", default="1,32,256,10000")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=1.5)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np

    _, _, x_test, _ = mnist_data.load(args.data)
    batches = [int(b) for b in args.batches.split(",")]

    if args.framework == "tf":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
        fn = tf.saved_model.load(args.model).signatures["serving_default"]
        (key,) = fn.structured_input_signature[1].keys()
        version = tf.__version__

        def make_call(x):
            xt = tf.constant(x)
            return lambda: {k: v.numpy() for k, v in fn(**{key: xt}).items()}
    else:
        import torch
        from torch import nn

        torch.set_num_threads(args.threads)
        modules = []
        layers = dense_layers(args.model)
        for i, (kernel, bias) in enumerate(layers):
            linear = nn.Linear(kernel.shape[0], kernel.shape[1])
            with torch.no_grad():
                linear.weight.copy_(torch.from_numpy(np.ascontiguousarray(kernel.T)))
                linear.bias.copy_(torch.from_numpy(bias))
            modules.append(linear)
            if i + 1 < len(layers):
                modules.append(nn.ReLU())
        model = nn.Sequential(*modules, nn.Softmax(dim=1)).eval()
        version = torch.__version__

        def make_call(x):
            xt = torch.from_numpy(x)

            def call():
                with torch.inference_mode():
                    p = model(xt)
                    return p.numpy(), p.argmax(dim=1).numpy()

            return call

    for batch in batches:
        x = np.ascontiguousarray(x_test[:batch])
        seconds, calls = timed(make_call(x), args.seconds)
        print(json.dumps({
            "framework": "TensorFlow" if args.framework == "tf" else "PyTorch",
            "version": version,
            "threads": args.threads,
            "batch": batch,
            "calls": calls,
            "seconds_per_call": seconds,
        }), flush=True)


if __name__ == "__main__":
    main()
