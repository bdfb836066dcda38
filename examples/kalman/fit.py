"""Fit a local-level model (a random walk seen with noise) to a simulated series by maximum
likelihood: kalman.grad's Kalman-filter negative log-likelihood, minimised over the two log
variances by L-BFGS (with `nll_value_and_grad`) and by trust-ncg (with `nll_hvp`, the
Hessian-vector product through the filter's loop), each in one call of
``gradgen.scipy.minimize``.

By default this uses the generated module ``kalman_grad.py`` beside this script:

    python examples/kalman/fit.py --length 2000

Without SciPy (or gradgen) installed it falls back to plain gradient descent. Regenerate the
module with ``gradgen compile examples/kalman/kalman.grad --force``, or compile the source
afresh in memory (needs gradgen installed) with ``--compile``.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
TRUE_Q, TRUE_R = 0.5, 2.0      # variances of the level's steps and of the observation noise


def simulate(rng, T, q=TRUE_Q, r=TRUE_R):
    """T observations of a local-level model starting at level 0."""
    level = np.cumsum(rng.normal(scale=np.sqrt(q), size=T))
    return level + rng.normal(scale=np.sqrt(r), size=T)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compile", action="store_true",
                        help="compile kalman.grad with gradgen instead of importing "
                             "kalman_grad.py")
    parser.add_argument("--length", type=int, default=300, help="observations (T)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulated series")
    args = parser.parse_args(argv)

    if args.compile:
        import gradgen

        mod = gradgen.load(HERE / "kalman.grad")
    else:
        sys.path.insert(0, str(HERE))
        import kalman_grad as mod

    y = simulate(np.random.default_rng(args.seed), args.length)
    m0, P0 = 0.0, 10.0                  # the level's prior: known to be near 0
    theta0 = np.zeros(2)                # q = r = 1
    print(f"{args.length} observations; true q = {TRUE_Q}, r = {TRUE_R}; "
          f"negative log-likelihood at the truth "
          f"{mod.nll(np.log([TRUE_Q, TRUE_R]), y, m0, P0):.4f}, at the start "
          f"{mod.nll(theta0, y, m0, P0):.4f}")

    try:
        import scipy.optimize  # noqa: F401  (gradgen.scipy imports SciPy only when called)

        from gradgen.scipy import minimize
    except ImportError:
        minimize = None
    if minimize is None:
        print("(gradgen.scipy needs gradgen and scipy installed: gradient descent instead)")
        theta = theta0.copy()
        for _ in range(2000):
            value, grad = mod.nll_value_and_grad(theta, y, m0, P0)
            theta -= 1.0 / args.length * grad
        fits = {"gradient descent": (theta, value, 2000)}
    else:
        fits = {}
        for label, method in (("L-BFGS", "L-BFGS-B"), ("trust-ncg with nll_hvp", "trust-ncg")):
            res = minimize(mod.nll, theta0, y, m0, P0, method=method)
            fits[label] = (res.params, res.fun, res.nit)

    for label, (theta, value, iterations) in fits.items():
        q, r = np.exp(theta)
        grad = mod.nll_grad(theta, y, m0, P0)
        print(f"{label}: q = {q:.4f}, r = {r:.4f}, negative log-likelihood {value:.6f} "
              f"after {iterations} iterations, |gradient| {np.max(np.abs(grad)):.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
