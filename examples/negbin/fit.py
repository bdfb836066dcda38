"""Negative-binomial regression fitted by Newton's method with the emitted Hessian.

Uses ``negbin_grad.py`` beside this script (generated with
``gradgen compile examples/negbin/negbin.grad --hessian``), so it needs only NumPy:

    python examples/negbin/fit.py

Synthetic counts are drawn from a negative binomial with log link, mean
mu = exp(X @ beta) and dispersion r (variance mu + mu^2 / r); the maximum-likelihood
estimates of beta and a = log r are found by damped Newton steps on `nll`, each solving
H d = -g with the 2 x 2 blocks of `nll_hessian` assembled into one matrix.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def make_data(n, seed, beta, r):
    """Features (standard normal, scaled, plus an intercept column) and counts drawn from
    NB(mean exp(X @ beta), dispersion r)."""
    rng = np.random.default_rng(seed)
    d = len(beta) - 1
    X = np.hstack([0.5 * rng.standard_normal((n, d)), np.ones((n, 1))])
    mu = np.exp(X @ beta)
    y = rng.negative_binomial(r, r / (r + mu)).astype(np.float64)
    return X, y


def newton(mod, X, y, tol, max_iter=50):
    """Damped Newton on (beta, a) from beta = (0, ..., log(mean y)), a = 0 (a = log r): halve a
    step until the loss does not increase (beyond rounding, near the minimum). Returns
    (beta, alpha, iterations, |grad|)."""
    d = X.shape[1]
    beta = np.zeros(d)
    beta[-1] = np.log(y.mean())
    alpha = 0.0
    for it in range(1, max_iter + 1):
        value, (g_beta, g_alpha) = mod.nll_value_and_grad(X, y, beta, alpha)
        (h_bb, h_ba), (h_ab, h_aa) = mod.nll_hessian(X, y, beta, alpha)
        H = np.block([[h_bb, h_ba[:, None]], [h_ab[None, :], np.reshape(h_aa, (1, 1))]])
        step = -np.linalg.solve(H, np.append(g_beta, g_alpha))
        t = 1.0
        while t > 1e-8:
            new_beta, new_alpha = beta + t * step[:d], alpha + t * step[d]
            if mod.nll(X, y, new_beta, new_alpha) <= value + 1e-12 * abs(value):
                break
            t /= 2
        beta, alpha = new_beta, new_alpha
        g_beta, g_alpha = mod.nll_grad(X, y, beta, alpha)
        gnorm = float(np.linalg.norm(np.append(g_beta, g_alpha)))
        print(f"  iteration {it:2d}  nll {mod.nll(X, y, beta, alpha):.12f}  step {t:g}  "
              f"|grad| {gnorm:.2e}")
        if gnorm < tol:
            break
    return beta, alpha, it, gnorm


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compile", action="store_true",
                        help="compile negbin.grad with gradgen instead of importing "
                             "negbin_grad.py")
    parser.add_argument("--samples", type=int, default=4000)
    parser.add_argument("--tol", type=float, default=1e-10, help="stop when |grad| < tol")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    if args.compile:
        import gradgen

        mod = gradgen.load(HERE / "negbin.grad", hessian=True)
    else:
        sys.path.insert(0, str(HERE))
        import negbin_grad as mod

    beta_true, r_true = np.array([0.6, -0.4, 0.3, 1.2]), 2.5
    X, y = make_data(args.samples, args.seed, beta_true, r_true)
    print(f"{len(y)} counts, mean {y.mean():.3f}, variance {y.var():.3f}")
    print("Newton's method (nll_hessian):")
    beta, alpha, iterations, gnorm = newton(mod, X, y, args.tol)
    print(f"Newton: {iterations} iterations to |grad| {gnorm:.2e}")
    print("beta:", " ".join(f"{b:.4f}" for b in beta), "(true:",
          " ".join(f"{b:.4f}" for b in beta_true) + ")")
    print(f"dispersion r: {np.exp(alpha):.4f} (true: {r_true:.4f})")


if __name__ == "__main__":
    main()
