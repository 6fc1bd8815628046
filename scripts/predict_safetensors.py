#!/usr/bin/env python3
"""Classify MNIST test images with a bp-train model file, using only numpy and safetensors.

The network is rebuilt from the file alone: its `layers` metadata lists the modules of the
equivalent PyTorch nn.Sequential (Linear, BatchNorm1d, ReLU, Sigmoid, Dropout) and the tensors are
named as that Sequential's state_dict (`layers.0.weight`, ...), Linear weights in (out, in) layout.

    cargo run -p bp-train -- --epochs 5 --save model.safetensors
    cargo run -p bp-train -- eval --model model.safetensors --predictions bp.csv
    python3 scripts/predict_safetensors.py model.safetensors --compare bp.csv

With --compare, the predictions bp-train wrote (`bp-train eval --predictions`) are checked against
the ones computed here: the predicted classes must agree and the probabilities must be close. The
exit status is 1 if they do not.
"""

import argparse
import gzip
import json
import os
import sys

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file

DTYPES = {"f32": np.float32, "f64": np.float64}


def read_idx(path):
    """An IDX file (gzip'd or raw) as a numpy array of unsigned bytes."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    if data[:2] != b"\x00\x00" or data[2] != 0x08:
        sys.exit(f"{path}: not an IDX file of unsigned bytes")
    rank = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(rank)]
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * rank)
    if body.size != int(np.prod(dims)):
        sys.exit(f"{path}: {body.size} values for dimensions {dims}")
    return body.reshape(dims)


def find(data_dir, stem):
    for name in (stem + ".gz", stem):
        path = os.path.join(data_dir, name)
        if os.path.exists(path):
            return path
    sys.exit(f"{data_dir}: no {stem}[.gz]")


def load_model(path):
    """The metadata and the modules of the network, as (kind, tensors) pairs in order."""
    with safe_open(path, framework="np") as f:
        meta = f.metadata() or {}
    if meta.get("format") != "bp-mlp":
        sys.exit(f"{path}: not a bp-train model file (no `format: bp-mlp` metadata)")
    tensors = load_file(path)
    dtype = DTYPES[meta["dtype"]]
    modules = []
    used = set()
    for i, text in enumerate(json.loads(meta["layers"])):
        kind = text.split("(", 1)[0]
        own = {k.split(".")[-1]: v for k, v in tensors.items() if k.startswith(f"layers.{i}.")}
        used.update(f"layers.{i}.{name}" for name in own)
        for name, value in own.items():
            if value.dtype != dtype:
                sys.exit(f"{path}: layers.{i}.{name} is {value.dtype}, the metadata says {meta['dtype']}")
        modules.append((kind, own))
    extra = set(tensors) - used
    if extra:
        sys.exit(f"{path}: tensors {sorted(extra)} belong to no module")
    return meta, modules


def forward(x, modules, eps):
    """Class probabilities for the rows of x."""
    for kind, t in modules:
        if kind == "Linear":
            x = x @ t["weight"].T + t["bias"]
        elif kind == "BatchNorm1d":
            x = t["weight"] * (x - t["running_mean"]) / np.sqrt(t["running_var"] + eps) + t["bias"]
        elif kind == "ReLU":
            x = np.maximum(x, 0)
        elif kind == "Sigmoid":
            x = 1 / (1 + np.exp(-x))
        elif kind == "Dropout":
            pass  # inverted dropout: the identity at inference
        else:
            sys.exit(f"unknown module {kind}")
    x = x - x.max(axis=1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=1, keepdims=True)


def read_predictions(path, count):
    """bp-train's predictions: (predicted classes, probabilities) of the first `count` rows."""
    rows = np.genfromtxt(path, delimiter=",", names=True, max_rows=count)
    names = rows.dtype.names
    probs = np.stack([rows[n] for n in names if n.startswith("p") and n[1:].isdigit()], axis=1)
    return rows["predicted"].astype(int), probs


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a .safetensors file written by bp-train")
    parser.add_argument("--data-dir", default=os.path.join(os.path.dirname(__file__), "..", "datasets", "mnist"))
    parser.add_argument("--count", type=int, default=100, help="how many test images (from the first)")
    parser.add_argument("--compare", metavar="CSV", help="bp-train's predictions (eval --predictions)")
    parser.add_argument("--tolerance", type=float, default=1e-5, help="largest probability difference allowed")
    args = parser.parse_args()

    meta, modules = load_model(args.model)
    dtype = DTYPES[meta["dtype"]]
    rows, cols = json.loads(meta["input_shape"])
    images = read_idx(find(args.data_dir, "t10k-images-idx3-ubyte"))[: args.count]
    labels = read_idx(find(args.data_dir, "t10k-labels-idx1-ubyte"))[: args.count].astype(int)
    if images.shape[1:] != (rows, cols):
        sys.exit(f"the images are {images.shape[1:]}, the model takes {rows} x {cols}")
    x = images.reshape(len(images), rows * cols).astype(dtype) / dtype(255)
    probs = forward(x, modules, dtype(float(meta["batch_norm_eps"])))
    predicted = probs.argmax(axis=1)

    n = len(labels)
    print(f"model: {args.model}: {meta['architecture']} {'-'.join(map(str, json.loads(meta['sizes'])))}, "
          f"{meta['activation']}, {meta['dtype']}")
    print(f"numpy: {(predicted == labels).sum()}/{n} of the first {n} test images correct")
    print(f"first 10 predicted: {' '.join(map(str, predicted[:10]))}")
    print(f"first 10 labels:    {' '.join(map(str, labels[:10]))}")
    if not args.compare:
        return 0
    bp_predicted, bp_probs = read_predictions(args.compare, n)
    if len(bp_predicted) != n:
        sys.exit(f"{args.compare}: {len(bp_predicted)} rows, expected {n}")
    agree = int((bp_predicted == predicted).sum())
    diff = float(np.abs(bp_probs - probs).max())
    print(f"agreement with bp-train: {agree}/{n} predicted classes equal")
    print(f"largest probability difference: {diff:.3g}")
    ok = agree == n and diff <= args.tolerance
    print("OK" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
