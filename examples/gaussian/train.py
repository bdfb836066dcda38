"""Fit a multivariate Gaussian (mean and covariance) by gradient descent on its negative
log-likelihood, with the gradient emitted by gradgen (`logdet` and `solve` inside).

Uses ``gaussian_grad.py`` beside this script, so it needs only NumPy:

    python examples/gaussian/train.py

Regenerate it with ``gradgen compile examples/gaussian/gaussian.grad --force``; ``--compile``
compiles the source afresh with gradgen instead.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.compile:
        import gradgen

        mod = gradgen.load(HERE / "gaussian.grad")
    else:
        sys.path.insert(0, str(HERE))
        import gaussian_grad as mod

    rng = np.random.default_rng(args.seed)
    true_mu = np.array([1.0, -2.0, 0.5])
    L = np.array([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [-0.3, 0.4, 0.5]])
    true_S = L @ L.T
    X = true_mu + rng.standard_normal((args.samples, 3)) @ L.T

    mu, A = np.zeros(3), np.eye(3)
    for step in range(args.steps + 1):
        value, (dmu, dA) = mod.nll_value_and_grad(X, mu, A)
        if step % 100 == 0:
            print(f"step {step:5d}  nll {value:.6f}")
        mu -= args.lr * dmu
        A -= args.lr * dA
    S = A @ A.T + np.eye(3) / 10
    # The maximum-likelihood answer in closed form, for comparison.
    mle_mu = X.mean(axis=0)
    mle_S = np.cov(X.T, bias=True)
    print("fitted mean:      ", np.round(mu, 3), " sample mean:", np.round(mle_mu, 3))
    print("fitted covariance:\n", np.round(S, 3))
    print("sample covariance:\n", np.round(mle_S, 3))
    print("covariance the data was drawn from:\n", np.round(true_S, 3))
    print(f"max |fitted - sample| covariance entry: {np.abs(S - mle_S).max():.2e}; "
          f"nll at the closed-form MLE {mod.nll(X, mle_mu, np.linalg.cholesky(mle_S - np.eye(3) / 10)):.6f}")


if __name__ == "__main__":
    main()
