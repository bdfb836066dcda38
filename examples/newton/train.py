"""Logistic regression trained by Newton's method with the emitted closed-form Hessian.

Uses ``newton_grad.py`` beside this script (generated with
``gradgen compile examples/newton/newton.grad --hessian``), so it needs only NumPy:

    python examples/newton/train.py

Each Newton step solves H d = -g with the gradient and Hessian of `loss`; plain gradient
descent on the same problem is run for comparison. Where SciPy and gradgen are installed
(``pip install gradgen[scipy]``), SciPy's trust-exact method is run too, in one call of
``gradgen.scipy.minimize`` that hands it ``loss_value_and_grad`` and ``loss_hessian``.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def make_data(n, d, seed):
    """Gaussian features plus a bias column; labels in {-1, +1} from a noisy linear rule."""
    rng = np.random.default_rng(seed)
    X = np.hstack([rng.standard_normal((n, d)), np.ones((n, 1))])
    w_true = np.append(rng.standard_normal(d) * 2.0, 0.5)
    y = np.where(X @ w_true + 0.5 * rng.standard_normal(n) >= 0, 1.0, -1.0)
    return X, y


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compile", action="store_true",
                        help="compile newton.grad with gradgen instead of importing "
                             "newton_grad.py")
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--features", type=int, default=10)
    parser.add_argument("--lam", type=float, default=1e-2)
    parser.add_argument("--tol", type=float, default=1e-10, help="stop when |grad| < tol")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    if args.compile:
        import gradgen

        mod = gradgen.load(HERE / "newton.grad", hessian=True)
    else:
        sys.path.insert(0, str(HERE))
        import newton_grad as mod

    X, y = make_data(args.samples, args.features, args.seed)
    lam = args.lam

    print("Newton's method (f_hessian):")
    w = np.zeros(X.shape[1])
    for it in range(1, 51):
        value, g = mod.loss_value_and_grad(X, y, w, lam)
        H = mod.loss_hessian(X, y, w, lam)
        w = w - np.linalg.solve(H, g)
        gnorm = np.linalg.norm(mod.loss_grad(X, y, w, lam))
        print(f"  iteration {it:2d}  loss {mod.loss(X, y, w, lam):.12f}  |grad| {gnorm:.2e}")
        if gnorm < args.tol:
            break
    newton_iters, newton_loss = it, mod.loss(X, y, w, lam)
    accuracy = np.mean(np.sign(X @ w) == y)

    print("Gradient descent (f_value_and_grad, learning rate 1.0), same tolerance:")
    v = np.zeros(X.shape[1])
    for step in range(1, 100_001):
        value, g = mod.loss_value_and_grad(X, y, v, lam)
        if np.linalg.norm(g) < args.tol:
            break
        v -= 1.0 * g
        if step % 2000 == 0:
            print(f"  step {step:6d}  loss {value:.12f}  |grad| {np.linalg.norm(g):.2e}")
    gd_steps, gd_loss = step, mod.loss(X, y, v, lam)

    print(f"Newton: {newton_iters} iterations to |grad| < {args.tol:g}, final loss "
          f"{newton_loss:.12f}, training accuracy {accuracy:.3f}")
    print(f"Gradient descent: {gd_steps} steps, final loss {gd_loss:.12f}")

    try:
        import scipy.optimize  # noqa: F401  (gradgen.scipy imports SciPy only when called)

        from gradgen.scipy import minimize
    except ImportError:
        print("(gradgen.scipy needs gradgen and scipy installed: trust-exact skipped)")
        return
    res = minimize(mod.loss, X, y, np.zeros(X.shape[1]), lam, method="trust-exact",
                   options={"gtol": args.tol})
    print(f"SciPy trust-exact (loss_hessian): {res.nit} iterations, final loss {res.fun:.12f}, "
          f"|grad| {np.linalg.norm(res.jac):.2e}")


if __name__ == "__main__":
    main()
