#!/usr/bin/env python3
"""The book's TwoLayerNet (Deep Learning from Scratch, ch. 5, train_neuralnet.py) in NumPy, as a
speed and accuracy reference for bp-train.

Same algorithm as `cargo run -p bp-train`: Affine -> Relu -> Affine -> SoftmaxWithLoss, weights
0.01 * randn, SGD with lr 0.1, batch 100 drawn with replacement each iteration, 10000 iterations.
Only the training steps are timed (not data loading, not evaluation).

By default each step runs the book's own code path (the first Affine layer computes dx, and the loss
comes from the forward pass inside `gradient`). `--lean` skips the first layer's dx, as bp-train does.

Prints one line:  final test_acc=0.9704 train_acc=0.9789 train_seconds=8.31 iters=10000
"""
import argparse
import gzip
import os
import sys
import time

import numpy as np


def load_idx(path):
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    if data[0:2] != b"\0\0" or data[2] != 0x08:
        sys.exit(f"{path}: not an unsigned-byte IDX file")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def find(directory, stem):
    for name in (stem, stem.replace("-idx", ".idx")):
        for suffix in ("", ".gz"):
            path = os.path.join(directory, name + suffix)
            if os.path.exists(path):
                return path
    sys.exit(f"{directory}: no {stem}[.gz] (MNIST ships in datasets/mnist/)")


def load_mnist(directory, dtype):
    def images(stem):
        x = load_idx(find(directory, stem))
        return (x.reshape(x.shape[0], -1).astype(dtype)) / dtype(255.0)

    def labels(stem):
        return load_idx(find(directory, stem)).astype(np.int64)

    return (images("train-images-idx3-ubyte"), labels("train-labels-idx1-ubyte"),
            images("t10k-images-idx3-ubyte"), labels("t10k-labels-idx1-ubyte"))


class TwoLayerNet:
    def __init__(self, input_size, hidden_size, output_size, dtype, rng, weight_init_std=0.01):
        self.W1 = (weight_init_std * rng.standard_normal((input_size, hidden_size))).astype(dtype)
        self.b1 = np.zeros(hidden_size, dtype=dtype)
        self.W2 = (weight_init_std * rng.standard_normal((hidden_size, output_size))).astype(dtype)
        self.b2 = np.zeros(output_size, dtype=dtype)

    def predict(self, x):
        h = np.maximum(x @ self.W1 + self.b1, 0)
        return h @ self.W2 + self.b2

    def accuracy(self, x, t, chunk=10000):
        correct = 0
        for i in range(0, x.shape[0], chunk):
            correct += int(np.sum(np.argmax(self.predict(x[i:i + chunk]), axis=1) == t[i:i + chunk]))
        return correct / x.shape[0]

    def gradient(self, x, t, lean):
        """One forward and backward pass; returns the loss and the gradients."""
        # forward: Affine1, Relu1, Affine2, SoftmaxWithLoss
        a1 = x @ self.W1 + self.b1
        mask = a1 <= 0
        h = a1
        h[mask] = 0
        a2 = h @ self.W2 + self.b2
        a2 = a2 - a2.max(axis=1, keepdims=True)
        y = np.exp(a2)
        y /= y.sum(axis=1, keepdims=True)
        n = x.shape[0]
        loss = -np.sum(np.log(y[np.arange(n), t] + 1e-7)) / n
        # backward
        dout = y
        dout[np.arange(n), t] -= 1
        dout /= n
        dW2 = h.T @ dout
        db2 = dout.sum(axis=0)
        dh = dout @ self.W2.T
        dh[mask] = 0
        dW1 = x.T @ dh
        db1 = dh.sum(axis=0)
        if not lean:
            _dx = dh @ self.W1.T  # the book's Affine.backward always computes dx
        return loss, {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.path.join(here, "..", "..", "datasets", "mnist"))
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float64")
    parser.add_argument("--iters", type=int, default=10000)
    parser.add_argument("--hidden", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lean", action="store_true", help="skip the first layer's dx")
    args = parser.parse_args()

    dtype = np.dtype(args.dtype).type
    x_train, t_train, x_test, t_test = load_mnist(args.data_dir, dtype)
    rng = np.random.default_rng(args.seed)
    net = TwoLayerNet(x_train.shape[1], args.hidden, 10, dtype, rng)
    lr = dtype(args.lr)
    train_size = x_train.shape[0]
    iters_per_epoch = max(train_size // args.batch_size, 1)

    train_seconds = 0.0
    epoch_loss = 0.0
    for i in range(args.iters):
        start = time.perf_counter()
        batch_mask = rng.choice(train_size, args.batch_size)
        loss, grad = net.gradient(x_train[batch_mask], t_train[batch_mask], args.lean)
        for key in ("W1", "b1", "W2", "b2"):
            getattr(net, key).__isub__(lr * grad[key])
        train_seconds += time.perf_counter() - start
        epoch_loss += float(loss)
        if (i + 1) % iters_per_epoch == 0:
            print(f"epoch {(i + 1) // iters_per_epoch:2d} | loss {epoch_loss / iters_per_epoch:.4f} | "
                  f"train_acc {net.accuracy(x_train, t_train):.4f} | "
                  f"test_acc {net.accuracy(x_test, t_test):.4f}", flush=True)
            epoch_loss = 0.0
    print(f"final test_acc={net.accuracy(x_test, t_test):.4f} "
          f"train_acc={net.accuracy(x_train, t_train):.4f} "
          f"train_seconds={train_seconds:.2f} iters={args.iters}")


if __name__ == "__main__":
    main()
