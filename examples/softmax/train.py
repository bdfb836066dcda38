"""Fit the softmax classifier of softmax.grad to the Iris data set (integer class labels, no
one-hot matrix) with full-batch gradient descent.

By default this uses the generated module ``softmax_grad.py`` beside this script, so it
needs nothing but NumPy:

    python examples/softmax/train.py

Regenerate that module with ``gradgen compile examples/softmax/softmax.grad --force``, or
compile the source afresh in memory (needs gradgen installed) with ``--compile``.
"""

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CLASSES = ("setosa", "versicolor", "virginica")
FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")


def load_iris(path):
    """The four measurements (standardised) plus a bias column, and integer labels."""
    features, labels = [], []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            features.append([float(row[k]) for k in FEATURES])
            labels.append(CLASSES.index(row["species"]))
    F = np.array(features)
    F = (F - F.mean(axis=0)) / F.std(axis=0)
    X = np.hstack([F, np.ones((len(F), 1))])  # (N, D) with D = 5
    return X, np.array(labels)  # y: (N,) integers 0, 1, 2


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compile", action="store_true",
                        help="compile softmax.grad with gradgen instead of importing "
                             "softmax_grad.py")
    parser.add_argument("--steps", type=int, default=500, help="gradient-descent steps")
    parser.add_argument("--lr", type=float, default=0.5, help="learning rate")
    parser.add_argument("--lam", type=float, default=1e-3, help="L2 penalty")
    parser.add_argument("--every", type=int, default=100, help="print the loss every N steps")
    args = parser.parse_args(argv)

    if args.compile:
        import gradgen

        mod = gradgen.load(HERE / "softmax.grad")
    else:
        sys.path.insert(0, str(HERE))
        import softmax_grad as mod

    X, y = load_iris(HERE / "iris.csv")
    N, D = X.shape
    C = len(CLASSES)
    W = np.zeros((D, C))
    for step in range(args.steps + 1):
        loss, dW = mod.cost_value_and_grad(X, y, W, args.lam)
        if step % args.every == 0 or step == args.steps:
            print(f"step {step:4d}  loss {loss:.4f}")
        if step < args.steps:
            W -= args.lr * dW

    accuracy = np.mean(np.argmax(X @ W, axis=1) == y)
    print(f"training accuracy: {accuracy:.3f} ({N} samples, {C} classes)")
    # float32 in, float32 out: the integer labels do not promote the model to float64
    loss32 = mod.cost(X.astype(np.float32), y, W.astype(np.float32), args.lam)
    print(f"float32 loss: {loss32:.4f} (dtype {loss32.dtype})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
