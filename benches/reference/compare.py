#!/usr/bin/env python3
"""Runs the NumPy reference (two_layer_net.py) and bp-train side by side on the book's run and prints
the ratio of their training times.

Both train the book's TwoLayerNet 784-50-10 on the shipped MNIST with the same algorithm (weights
0.01 * randn, SGD lr 0.1, batch 100 drawn with replacement, 10000 iterations) and both time only the
training steps. The runs alternate (NumPy, bp-train, NumPy, ...) so that both see the same machine;
the table shows medians.

    python3 benches/reference/compare.py                 # f32 and f64, 3 runs each
    python3 benches/reference/compare.py --runs 5 --dtype f32
    python3 benches/reference/compare.py --lean          # NumPy also skips the first layer's dx

bp-train is built with `cargo build --release -p bp-train` first (in CARGO_TARGET_DIR if set),
unless --bp-train names a binary.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
FINAL = re.compile(r"final test_acc=([0-9.]+) train_acc=([0-9.]+) train_seconds=([0-9.]+) iters=(\d+)")


def final_line(cmd, env=None):
    """Runs cmd and returns (test_acc, train_seconds) from its last `final ...` line."""
    out = subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True, text=True).stdout
    matches = FINAL.findall(out)
    if not matches:
        sys.exit(f"no 'final ...' line in the output of {' '.join(cmd)}:\n{out}")
    test_acc, _train_acc, seconds, _iters = matches[-1]
    return float(test_acc), float(seconds)


def build():
    subprocess.run(["cargo", "build", "--release", "--quiet", "-p", "bp-train"], cwd=ROOT, check=True)
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    return os.path.join(target, "release", "bp-train")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of each program per dtype (default 3)")
    parser.add_argument("--iters", type=int, default=10000)
    parser.add_argument("--dtype", choices=["f32", "f64", "both"], default="both")
    parser.add_argument("--lean", action="store_true", help="NumPy skips the first layer's dx too")
    parser.add_argument("--bp-train", help="the bp-train binary (default: build it)")
    args = parser.parse_args()

    binary = args.bp_train or build()
    dtypes = ["f32", "f64"] if args.dtype == "both" else [args.dtype]
    rows = []
    for dtype in dtypes:
        numpy_cmd = [sys.executable, os.path.join(HERE, "two_layer_net.py"),
                     "--dtype", {"f32": "float32", "f64": "float64"}[dtype], "--iters", str(args.iters)]
        if args.lean:
            numpy_cmd.append("--lean")
        bp_cmd = [binary, "--quiet", "--dtype", dtype, "--iters", str(args.iters)]
        numpy, bp = [], []
        for run in range(args.runs):
            numpy.append(final_line(numpy_cmd))
            bp.append(final_line(bp_cmd))
            print(f"{dtype} run {run + 1}: numpy {numpy[-1][1]:.2f} s (test acc {numpy[-1][0]:.4f}), "
                  f"bp-train {bp[-1][1]:.2f} s (test acc {bp[-1][0]:.4f})", flush=True)
        np_s = statistics.median(s for _, s in numpy)
        bp_s = statistics.median(s for _, s in bp)
        rows.append((dtype, np_s, bp_s, numpy[-1][0], bp[-1][0]))

    label = "NumPy (lean)" if args.lean else "NumPy (book)"
    print()
    print(f"book run, {args.iters} iterations, training steps only, medians of {args.runs} runs")
    print(f"{'dtype':<6} {label + ' s':>15} {'bp-train s':>11} {'speed-up':>9} {'NumPy acc':>10} {'bp acc':>7}")
    for dtype, np_s, bp_s, np_acc, bp_acc in rows:
        print(f"{dtype:<6} {np_s:>15.2f} {bp_s:>11.2f} {np_s / bp_s:>8.1f}x {np_acc:>10.4f} {bp_acc:>7.4f}")


if __name__ == "__main__":
    main()
