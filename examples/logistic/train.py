"""Train L2-regularised logistic regression (logistic.grad) on a small synthetic data set.

Uses the generated module ``logistic_grad.py`` beside this script, so it needs only NumPy:

    python examples/logistic/train.py

Regenerate that module with ``gradgen compile examples/logistic/logistic.grad --force``,
or compile the source afresh in memory (needs gradgen installed) with ``--compile``.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def make_data(n, d, seed):
    """Two Gaussian features plus a bias column; labels in {-1, +1} from a noisy linear rule."""
    rng = np.random.default_rng(seed)
    F = rng.standard_normal((n, d))
    X = np.hstack([F, np.ones((n, 1))])
    w_true = np.append(rng.standard_normal(d) * 2.0, 0.5)
    margin = X @ w_true + 0.3 * rng.standard_normal(n)  # a little label noise
    y = np.where(margin >= 0, 1.0, -1.0)
    return X, y


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compile", action="store_true",
                        help="compile logistic.grad with gradgen instead of importing "
                             "logistic_grad.py")
    parser.add_argument("--samples", type=int, default=200, help="number of samples N")
    parser.add_argument("--features", type=int, default=2, help="features before the bias")
    parser.add_argument("--lam", type=float, default=1e-3, help="L2 regularisation strength")
    parser.add_argument("--steps", type=int, default=500, help="gradient-descent steps")
    parser.add_argument("--lr", type=float, default=1.0, help="learning rate")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data set")
    parser.add_argument("--every", type=int, default=50, help="print the loss every N steps")
    args = parser.parse_args(argv)

    if args.compile:
        import gradgen

        loss_value_and_grad = gradgen.load(HERE / "logistic.grad").loss_value_and_grad
    else:
        sys.path.insert(0, str(HERE))
        from logistic_grad import loss_value_and_grad

    X, y = make_data(args.samples, args.features, args.seed)
    w = np.zeros(X.shape[1])

    for step in range(args.steps + 1):
        value, dw = loss_value_and_grad(X, y, w, args.lam)  # one Param: dw is a bare array
        if step % args.every == 0 or step == args.steps:
            print(f"step {step:5d}  loss {value:.4f}")
        if step < args.steps:
            w -= args.lr * dw

    accuracy = np.mean(np.where(X @ w >= 0, 1.0, -1.0) == y)
    print(f"weights: {np.array2string(w, precision=3)}")
    print(f"training accuracy: {accuracy:.3f} ({len(y)} samples)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
