#!/usr/bin/env python3
"""Time PyTorch's CPU training steps of the book's SimpleConvNet and DeepConvNet, for comparison
with bp's (`cargo bench -p bp-bench -- simple-convnet deep-convnet`).

The nets, batch size, optimizer and data are bp's `--net simple-convnet` and `--net deep-convnet`:
MNIST images (N, 1, 28, 28) in [0, 1], batches of 100 drawn at random, Adam with lr 0.001, one
forward and backward pass and an update per step, in float32. Prints the median seconds per epoch
(600 steps) over several rounds.

    pip install torch numpy
    python3 scripts/torch_convnets.py --threads 2
"""

import argparse
import gzip
import os
import statistics
import sys
import time

import numpy as np
import torch
from torch import nn


def read_images(path):
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    n, rows, cols = (int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(3))
    return np.frombuffer(data, dtype=np.uint8, offset=16).reshape(n, 1, rows, cols)


def read_labels(path):
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return np.frombuffer(data, dtype=np.uint8, offset=8).astype(np.int64)


def simple_convnet():
    return nn.Sequential(
        nn.Conv2d(1, 30, 5), nn.ReLU(), nn.MaxPool2d(2, 2), nn.Flatten(),
        nn.Linear(30 * 12 * 12, 100), nn.ReLU(), nn.Linear(100, 10),
    )


def deep_convnet():
    def block(cin, cout, pad):
        return [nn.Conv2d(cin, cout, 3, padding=pad), nn.ReLU()]
    return nn.Sequential(
        *block(1, 16, 1), *block(16, 16, 1), nn.MaxPool2d(2, 2),
        *block(16, 32, 1), *block(32, 32, 2), nn.MaxPool2d(2, 2),
        *block(32, 64, 1), *block(64, 64, 1), nn.MaxPool2d(2, 2),
        nn.Flatten(), nn.Linear(64 * 4 * 4, 50), nn.ReLU(), nn.Dropout(0.5), nn.Linear(50, 10), nn.Dropout(0.5),
    )


NETS = {"simple-convnet": simple_convnet, "deep-convnet": deep_convnet}


def seconds_per_epoch(make, x, t, steps, rounds, rng):
    net = make()
    opt = torch.optim.Adam(net.parameters(), lr=0.001)
    loss_fn = nn.CrossEntropyLoss()
    net.train()

    def step():
        idx = torch.from_numpy(rng.integers(0, len(x), 100))
        xb, tb = x[idx], t[idx]
        opt.zero_grad(set_to_none=False)
        loss = loss_fn(net(xb), tb)
        loss.backward()
        opt.step()

    for _ in range(10):
        step()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        times.append((time.perf_counter() - start) * 600 / steps)
    return statistics.median(times), times


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=os.path.join(os.path.dirname(__file__), "..", "datasets", "mnist"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=100, help="steps timed per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--net", choices=sorted(NETS), action="append")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    path = os.path.join(args.data_dir, "train-images-idx3-ubyte.gz")
    if not os.path.exists(path):
        sys.exit(f"{path}: not found")
    x = torch.from_numpy(read_images(path).astype(np.float32) / 255)
    t = torch.from_numpy(read_labels(os.path.join(args.data_dir, "train-labels-idx1-ubyte.gz")))
    rng = np.random.default_rng(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, mkldnn {torch.backends.mkldnn.is_available()}")
    for name in args.net or sorted(NETS):
        median, times = seconds_per_epoch(NETS[name], x, t, args.steps, args.rounds, rng)
        print(f"{name}: {median:.2f} s per epoch of 600 steps (median of {args.rounds}: "
              f"{', '.join(f'{s:.2f}' for s in times)})")


if __name__ == "__main__":
    main()
