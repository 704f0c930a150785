"""PyTorch peer of the Rust trainer: the same network, initialisation, loss and optimizer.

    .venv-peers/bin/python bench/peers/pytorch_mlp.py [--data testdata/mnist] [--threads 2]
        [--epochs 1] [--batch-size 32] [--seed 1]

Network: Linear(784, 512) ReLU Dropout(0.2) Linear(512, 256) ReLU Dropout(0.2) Linear(256, 10),
Glorot-uniform weights and zero biases (Keras's defaults), cross-entropy from logits (mean over
the batch), SGD with momentum 0.9 (PyTorch's `buf = m * buf + g; p -= lr * buf`, the same update
as TF's MomentumOptimizer). CPU only, `torch.set_num_threads(threads)`. Each epoch draws a fresh
permutation and slices batches of 32 from it, like Keras `fit(shuffle=True)`.

Prints one JSON line: framework, version, threads, epoch_seconds (the training loop only, data
already in memory), test_loss, test_accuracy.
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mnist_data  # noqa: E402


def main():
    args = mnist_data.parse_args()

    import torch
    from torch import nn

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    x_train, y_train, x_test, y_test = (torch.from_numpy(a) for a in mnist_data.load(args.data))

    model = nn.Sequential(
        nn.Linear(784, 512), nn.ReLU(), nn.Dropout(0.2),
        nn.Linear(512, 256), nn.ReLU(), nn.Dropout(0.2),
        nn.Linear(256, 10),
    )
    for layer in model:
        if isinstance(layer, nn.Linear):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    epoch_seconds = []
    n = x_train.shape[0]
    for _ in range(args.epochs):
        model.train()
        start = time.perf_counter()
        order = torch.randperm(n)
        for first in range(0, n, args.batch_size):
            idx = order[first:first + args.batch_size]
            xb, yb = x_train[idx], y_train[idx]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(xb), yb)
            loss.backward()
            optimizer.step()
        epoch_seconds.append(time.perf_counter() - start)

    model.eval()
    total_loss, correct = 0.0, 0
    with torch.no_grad():
        for first in range(0, x_test.shape[0], 1000):
            xb, yb = x_test[first:first + 1000], y_test[first:first + 1000]
            logits = model(xb)
            total_loss += nn.functional.cross_entropy(logits, yb, reduction="sum").item()
            correct += (logits.argmax(dim=1) == yb).sum().item()
    print(json.dumps({
        "framework": "pytorch",
        "version": torch.__version__,
        "threads": torch.get_num_threads(),
        "epoch_seconds": epoch_seconds,
        "test_loss": total_loss / x_test.shape[0],
        "test_accuracy": correct / x_test.shape[0],
    }))


if __name__ == "__main__":
    main()
