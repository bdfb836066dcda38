"""Train the two-layer MLP of mlp.grad on the Iris data set with full-batch gradient descent.

By default this uses the generated module ``mlp_grad.py`` that sits beside this script, so
it needs nothing but NumPy:

    python examples/mlp/train.py

Regenerate that module with ``gradgen compile examples/mlp/mlp.grad --force``, or compile
the source afresh in memory (needs gradgen installed) with:

    python examples/mlp/train.py --compile
"""

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CLASSES = ("setosa", "versicolor", "virginica")


def load_iris(path):
    """Petal length and width (standardised) plus a bias column, and one-hot labels."""
    features, labels = [], []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            features.append([float(row["petal_length"]), float(row["petal_width"])])
            labels.append(CLASSES.index(row["species"]))
    F = np.array(features)
    F = (F - F.mean(axis=0)) / F.std(axis=0)
    X = np.hstack([F, np.ones((len(F), 1))])  # (N, D) with D = 3
    labels = np.array(labels)
    Y = np.eye(len(CLASSES))[labels]  # (N, C) one-hot
    return X, Y, labels


def predict(X, V, W):
    """Class index of the largest output logit (the same network as mlp.grad)."""
    Z = 1 / (1 + np.exp(-(X @ V)))
    return np.argmax(Z @ W, axis=1)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compile", action="store_true",
                        help="compile mlp.grad with gradgen instead of importing mlp_grad.py")
    parser.add_argument("--steps", type=int, default=2000, help="gradient-descent steps")
    parser.add_argument("--lr", type=float, default=1.0, help="learning rate")
    parser.add_argument("--hidden", type=int, default=16, help="hidden units M")
    parser.add_argument("--seed", type=int, default=0, help="seed of the initial weights")
    parser.add_argument("--every", type=int, default=250, help="print the loss every N steps")
    args = parser.parse_args(argv)

    if args.compile:
        import gradgen

        cost_value_and_grad = gradgen.load(HERE / "mlp.grad").cost_value_and_grad
    else:
        sys.path.insert(0, str(HERE))
        from mlp_grad import cost_value_and_grad

    X, Y, labels = load_iris(HERE / "iris.csv")
    N, D = X.shape
    C = Y.shape[1]
    rng = np.random.default_rng(args.seed)
    V = 0.1 * rng.standard_normal((D, args.hidden))
    W = 0.1 * rng.standard_normal((args.hidden, C))

    for step in range(args.steps + 1):
        loss, (dV, dW) = cost_value_and_grad(X, Y, V, W)
        if step % args.every == 0 or step == args.steps:
            print(f"step {step:5d}  loss {loss:.4f}")
        if step < args.steps:
            V -= args.lr * dV
            W -= args.lr * dW

    accuracy = np.mean(predict(X, V, W) == labels)
    print(f"training accuracy: {accuracy:.3f} ({N} samples, {C} classes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
