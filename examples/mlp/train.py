"""Train the two-layer MLP of mlp.grad on the Iris data set: gradient descent, then L-BFGS and trust-ncg.

By default this uses the generated module ``mlp_grad.py`` that sits beside this script, so
its gradient descent needs nothing but NumPy:

    python examples/mlp/train.py

Where SciPy and gradgen are installed (``pip install gradgen[scipy]``) it also fits the same
network with ``scipy.optimize.minimize``: L-BFGS with ``cost_value_and_grad``, and trust-ncg
with the Hessian-vector products of ``cost_hvp``, each in one call of ``gradgen.scipy.minimize``
(no flattening glue). ``--figure FILE`` (needs matplotlib: ``pip install gradgen[examples]``)
saves the loss curves of the three and the decision regions of the trust-ncg fit; the README's
picture is made with ``python examples/pictures.py``.

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
    with np.errstate(over="ignore"):   # exp(-z) overflows for z below -709: Z is 0 there
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
    parser.add_argument("--figure", metavar="FILE",
                        help="save the loss curves and decision regions (PNG, SVG, ...)")
    args = parser.parse_args(argv)

    if args.compile:
        import gradgen

        mod = gradgen.load(HERE / "mlp.grad")
    else:
        sys.path.insert(0, str(HERE))
        import mlp_grad as mod
    cost_value_and_grad = mod.cost_value_and_grad

    X, Y, labels = load_iris(HERE / "iris.csv")
    N, D = X.shape
    C = Y.shape[1]
    rng = np.random.default_rng(args.seed)
    V = 0.1 * rng.standard_normal((D, args.hidden))
    W = 0.1 * rng.standard_normal((args.hidden, C))

    V0, W0 = V.copy(), W.copy()

    print(f"Gradient descent (cost_value_and_grad, learning rate {args.lr:g}):")
    curves = {"gradient descent": []}
    for step in range(args.steps + 1):
        loss, (dV, dW) = cost_value_and_grad(X, Y, V, W)
        curves["gradient descent"].append(loss)
        if step % args.every == 0 or step == args.steps:
            print(f"step {step:5d}  loss {loss:.4f}")
        if step < args.steps:
            V -= args.lr * dV
            W -= args.lr * dW

    accuracy = np.mean(predict(X, V, W) == labels)
    print(f"training accuracy: {accuracy:.3f} ({N} samples, {C} classes)")

    fits = {"gradient descent": (V, W)}
    try:
        import scipy.optimize  # noqa: F401  (gradgen.scipy imports SciPy only when called)

        from gradgen.scipy import minimize
    except ImportError:   # gradgen (or NumPy only) without SciPy: gradient descent alone
        minimize = None
        print("(gradgen.scipy needs gradgen and scipy installed: L-BFGS and trust-ncg skipped)")
    if minimize is not None:
        for label, method in (("L-BFGS", "L-BFGS-B"), ("trust-ncg with cost_hvp", "trust-ncg")):
            losses = [mod.cost(X, Y, V0, W0)]
            res = minimize(mod.cost, X, Y, V0, W0, method=method,
                           callback=lambda intermediate_result: losses.append(  # noqa: B023
                               intermediate_result.fun))   # (called in this iteration)
            curves[label] = losses
            fits[label] = res.params
            print(f"{label}: final value {res.fun:.4f} after {res.nit} iterations "
                  f"({res.nfev} evaluations), training accuracy "
                  f"{np.mean(predict(X, *res.params) == labels):.3f}")

    if args.figure:
        figure(args.figure, curves, fits, X, labels)
        print(f"wrote {args.figure}")
    return 0


def figure(path, curves, fits, X, labels):
    """Loss per iteration of each method (log scale), and the decision regions of the last
    fit (trust-ncg where SciPy is installed) over the two standardised petal features."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), dpi=80)
    for label, losses in curves.items():
        left.plot(np.arange(len(losses)), losses, label=label)
    left.set(xscale="log", yscale="log", xlabel="iteration", ylabel="cost (cross-entropy)",
             title="Training the MLP on Iris")
    left.legend()
    label, (V, W) = list(fits.items())[-1]
    u, v = np.meshgrid(np.linspace(-2.2, 2.2, 200), np.linspace(-2.2, 2.2, 200))
    grid = np.column_stack([u.ravel(), v.ravel(), np.ones(u.size)])
    regions = predict(grid, V, W).reshape(u.shape)
    light, dark = ("#fbb4ae", "#b3cde3", "#ccebc5"), ("#e41a1c", "#377eb8", "#4daf4a")
    right.contourf(u, v, regions, levels=[-0.5, 0.5, 1.5, 2.5], colors=light)
    for k, name in enumerate(CLASSES):
        right.scatter(X[labels == k, 0], X[labels == k, 1], s=12, label=name, color=dark[k])
    right.set(xlabel="petal length (standardised)", ylabel="petal width (standardised)",
              title=f"Decision regions ({label})")
    right.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None} if str(path).endswith(".png") else None)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
