#!/usr/bin/env python3
"""Classify MNIST test images with a bp-train model file, using only numpy and safetensors.

The network is rebuilt from the file alone (model file format version 2): the metadata holds
`format: bp-model`, `format_version: 2` and `model`, a JSON header whose `layers` lists the layers
(`{"layer": "affine", "out": 50}`, `relu`, `sigmoid`, `dropout`, `batch_norm`, `conv`, `max_pool`,
`flatten`), and the tensors are named as the state_dict of the equivalent PyTorch nn.Sequential
(`layers.0.weight`, ...): Linear weights in (out, in) layout, Conv2d weights in (out, in, kh, kw),
BatchNorm1d's weight, bias, running_mean and running_var. Convolutions and max pooling are computed
here from their definitions (windows of the zero-padded input; pooling ignores its padding, as
PyTorch's MaxPool2d), independently of bp's im2col.

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

FORMAT = "bp-model"
FORMAT_VERSION = "2"
DTYPES = {"f32": np.float32, "f64": np.float64}
# The epsilon of bp's batch normalisation (BatchNorm1d(..., eps=1e-06) in the file's `modules`).
BATCH_NORM_EPS = 1e-6
# For each layer kind: the PyTorch module it is, and the tensors it keeps.
LAYERS = {
    "affine": ("Linear", ("weight", "bias")),
    "relu": ("ReLU", ()),
    "sigmoid": ("Sigmoid", ()),
    "dropout": ("Dropout", ()),
    "batch_norm": ("BatchNorm1d", ("weight", "bias", "running_mean", "running_var")),
    "conv": ("Conv2d", ("weight", "bias")),
    "max_pool": ("MaxPool2d", ()),
    "flatten": ("Flatten", ()),
}


def window_out(size, kernel, stride, pad):
    """Positions of a window of `kernel` moved by `stride` over `size` padded by `pad` each side."""
    return (size + 2 * pad - kernel) // stride + 1


def next_shape(path, i, kind, spec, shape):
    """The sample shape after layer i, and the shapes of its tensors."""
    width = int(np.prod(shape))
    if kind == "affine":
        return (spec["out"],), {"weight": (spec["out"], width), "bias": (spec["out"],)}
    if kind in ("conv", "max_pool"):
        if len(shape) != 3:
            sys.exit(f"{path}: layer {i} ({kind}) takes images (C, H, W), not samples of shape {shape}")
        c, h, w = shape
        kh, kw = spec["size"] if kind == "conv" else (spec["size"], spec["size"])
        out = (window_out(h, kh, spec["stride"], spec["pad"]), window_out(w, kw, spec["stride"], spec["pad"]))
        if kind == "conv":
            f = spec["filters"]
            return (f, *out), {"weight": (f, c, kh, kw), "bias": (f,)}
        return (c, *out), {}
    if kind == "flatten":
        return (width,), {}
    if kind == "batch_norm":
        return shape, {name: (width,) for name in LAYERS[kind][1]}
    return shape, {}


def windows(x, kh, kw, stride, pad, fill):
    """The (kh, kw) windows of images x (N, C, H, W) padded with `fill`, moved by `stride`:
    (N, C, OH, OW, kh, kw)."""
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), constant_values=fill)
    view = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))
    return view[:, :, ::stride, ::stride]


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


def read_header(path):
    """The `model` header of a bp-train model file, after checking its format and version."""
    try:
        with safe_open(path, framework="np") as f:
            meta = f.metadata() or {}
    except Exception as e:  # noqa: BLE001 - any reader error means the same to the user
        sys.exit(f"{path}: not a safetensors file ({e})")
    fmt = meta.get("format")
    if fmt is None:
        sys.exit(f"{path}: not a bp-train model file (no `format` metadata; bp-train writes `format: {FORMAT}`)")
    version = meta.get("format_version")
    if fmt == "bp-mlp":
        sys.exit(f"{path}: a bp-train model file of format version {version or 1} (`bp-mlp`); this script "
                 f"reads version {FORMAT_VERSION} (`{FORMAT}`): train the model again with --save")
    if fmt != FORMAT:
        sys.exit(f"{path}: not a bp-train model file (`format` is {fmt!r}, not {FORMAT!r})")
    if version is None:
        sys.exit(f"{path}: no `format_version` metadata")
    if version != FORMAT_VERSION:
        sys.exit(f"{path}: model file format version {version!r}; this script reads version {FORMAT_VERSION!r}")
    if "model" not in meta:
        sys.exit(f"{path}: no `model` metadata")
    try:
        header = json.loads(meta["model"])
    except json.JSONDecodeError as e:
        sys.exit(f"{path}: the `model` metadata is not JSON: {e}")
    for key in ("dtype", "image_shape", "input_shape", "classes", "layers"):
        if key not in header:
            sys.exit(f"{path}: the `model` metadata has no `{key}`")
    if header["dtype"] not in DTYPES:
        sys.exit(f"{path}: unknown dtype {header['dtype']!r} (f32 or f64)")
    return header


def load_model(path):
    """The header and the layers of the network, as (kind, spec, tensors) triples in order."""
    header = read_header(path)
    dtype = DTYPES[header["dtype"]]
    tensors = load_file(path)
    modules = header.get("modules")
    if modules is not None and len(modules) != len(header["layers"]):
        sys.exit(f"{path}: {len(modules)} modules for {len(header['layers'])} layers")
    shape = tuple(header["input_shape"])
    layers = []
    used = set()
    for i, spec in enumerate(header["layers"]):
        kind = spec.get("layer")
        if kind not in LAYERS:
            sys.exit(f"{path}: layer {i} is {kind!r}; this script knows {', '.join(LAYERS)}")
        module, names = LAYERS[kind]
        if modules is not None and modules[i].split("(", 1)[0] != module:
            sys.exit(f"{path}: layer {i} is {kind}, but its module is {modules[i]!r}")
        own = {}
        for name in names:
            key = f"layers.{i}.{name}"
            if key not in tensors:
                sys.exit(f"{path}: no tensor {key}, which layer {i} ({kind}) needs")
            own[name] = tensors[key]
            used.add(key)
        shape, shapes = next_shape(path, i, kind, spec, shape)
        for name, value in own.items():
            if value.dtype != dtype:
                sys.exit(f"{path}: layers.{i}.{name} is {value.dtype}, the header says {header['dtype']}")
            if value.shape != shapes[name]:
                sys.exit(f"{path}: layers.{i}.{name} has shape {value.shape}, layer {i} ({kind}) needs {shapes[name]}")
        layers.append((kind, spec, own))
    extra = set(tensors) - used
    if extra:
        sys.exit(f"{path}: tensors {sorted(extra)} belong to no layer")
    if shape != (header["classes"],):
        sys.exit(f"{path}: the last layer gives scores of shape {shape}, but `classes` is {header['classes']}")
    return header, layers


def forward(x, layers, eps):
    """Class probabilities for the samples of x (inference: dropout is the identity, batch
    normalisation uses the running statistics)."""
    for kind, spec, t in layers:
        if kind == "affine":
            x = x.reshape(len(x), -1) @ t["weight"].T + t["bias"]
        elif kind == "conv":
            kh, kw = spec["size"]
            cols = windows(x, kh, kw, spec["stride"], spec["pad"], 0)
            x = np.einsum("ncijuv,fcuv->nfij", cols, t["weight"], optimize=True) + t["bias"][:, None, None]
        elif kind == "max_pool":
            k = spec["size"]
            x = windows(x, k, k, spec["stride"], spec["pad"], -np.inf).max(axis=(4, 5))
        elif kind == "flatten":
            x = x.reshape(len(x), -1)
        elif kind == "batch_norm":
            x = t["weight"] * (x - t["running_mean"]) / np.sqrt(t["running_var"] + eps) + t["bias"]
        elif kind == "relu":
            x = np.maximum(x, 0)
        elif kind == "sigmoid":
            x = 1 / (1 + np.exp(-x))
        elif kind == "dropout":
            pass  # inverted dropout: the identity at inference
        else:
            sys.exit(f"unknown layer {kind}")
    x = x - x.max(axis=1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=1, keepdims=True)


def describe(layers):
    """The layer list as bp-train's --layers writes it: `affine 50, relu, affine 10`."""
    words = []
    for kind, spec, _ in layers:
        if kind == "affine":
            words.append(f"affine {spec['out']}")
        elif kind == "dropout":
            words.append(f"dropout {spec['ratio']}")
        elif kind == "batch_norm":
            words.append("batchnorm")
        elif kind == "conv":
            kh, kw = spec["size"]
            words.append(f"conv {spec['filters']} {kh}x{kw} stride {spec['stride']} pad {spec['pad']}")
        elif kind == "max_pool":
            words.append(f"maxpool {spec['size']} stride {spec['stride']} pad {spec['pad']}")
        else:
            words.append(kind)
    return ", ".join(words)


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

    header, layers = load_model(args.model)
    dtype = DTYPES[header["dtype"]]
    rows, cols = header["image_shape"]
    images = read_idx(find(args.data_dir, "t10k-images-idx3-ubyte"))[: args.count]
    labels = read_idx(find(args.data_dir, "t10k-labels-idx1-ubyte"))[: args.count].astype(int)
    if images.shape[1:] != (rows, cols):
        sys.exit(f"the images are {images.shape[1:]}, the model takes {rows} x {cols}")
    x = images.reshape(len(images), *header["input_shape"]).astype(dtype) / dtype(255)
    probs = forward(x, layers, dtype(BATCH_NORM_EPS))
    predicted = probs.argmax(axis=1)

    n = len(labels)
    print(f"model: {args.model}: {'x'.join(map(str, header['input_shape']))} -> {describe(layers)}, "
          f"{header['classes']} classes, {header['dtype']}")
    print(f"numpy: {(predicted == labels).sum()}/{n} of the first {n} test images correct")
    print(f"first 10 predicted: {' '.join(map(str, predicted[:10]))}")
    print(f"first 10 labels:    {' '.join(map(str, labels[:10]))}")
    if not args.compare:
        return 0
    bp_predicted, bp_probs = read_predictions(args.compare, n)
    if len(bp_predicted) != n:
        sys.exit(f"{args.compare}: {len(bp_predicted)} rows, expected {n}")
    if bp_probs.shape[1] != probs.shape[1]:
        sys.exit(f"{args.compare}: {bp_probs.shape[1]} probabilities a row, the model has {probs.shape[1]} classes")
    agree = int((bp_predicted == predicted).sum())
    diff = float(np.abs(bp_probs - probs).max())
    print(f"agreement with bp-train: {agree}/{n} predicted classes equal")
    print(f"largest probability difference: {diff:.3g}")
    ok = agree == n and diff <= args.tolerance
    print("OK" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
