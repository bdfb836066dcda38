"""Cox proportional-hazards regression fitted by Newton's method with the emitted Hessian.

Uses ``cox_grad.py`` beside this script (generated with
``gradgen compile examples/cox/cox.grad --hessian``), so it needs only NumPy:

    python examples/cox/train.py [--samples 2000] [--compile]

Survival times are simulated from a Cox model with known coefficients (exponential
baseline hazard, independent exponential censoring), sorted by time; the script fits the
coefficients by maximising the partial likelihood and prints them beside the true ones,
with standard errors from the observed information (N times the Hessian of the
per-sample loss) and hazard ratios exp(beta).
"""

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
BETA_TRUE = np.array([0.8, -0.5, 0.0, 0.3, -1.0])


def make_data(n, seed, beta=BETA_TRUE):
    """Covariates, event times T ~ Exp(rate exp(x @ beta)), censoring C ~ Exp(rate 0.5);
    the observed time min(T, C) and event = T <= C, sorted by time (ascending)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, len(beta)))
    t_event = rng.exponential(1.0 / np.exp(X @ beta))
    t_censor = rng.exponential(2.0, size=n)
    time = np.minimum(t_event, t_censor)
    event = (t_event <= t_censor).astype(float)
    order = np.argsort(time)
    return X[order], event[order], time[order]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compile", action="store_true",
                        help="compile cox.grad with gradgen instead of importing cox_grad.py")
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--lam", type=float, default=0.0, help="ridge penalty")
    parser.add_argument("--tol", type=float, default=1e-10, help="stop when |grad| < tol")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    if args.compile:
        import gradgen

        mod = gradgen.load(HERE / "cox.grad", hessian=True)
    else:
        sys.path.insert(0, str(HERE))
        import cox_grad as mod

    X, event, _ = make_data(args.samples, args.seed)
    n, d = X.shape
    print(f"{n} subjects, {d} covariates, {int(event.sum())} events "
          f"({100 * (1 - event.mean()):.0f}% censored)")

    beta = np.zeros(d)
    print("Newton's method (nll_value_and_grad, nll_hessian):")
    for it in range(1, 51):
        value, g = mod.nll_value_and_grad(X, event, beta, args.lam)
        print(f"  iteration {it:2d}  loss {value:.12f}  |grad| {np.linalg.norm(g):.2e}")
        if np.linalg.norm(g) < args.tol:
            break
        beta = beta - np.linalg.solve(mod.nll_hessian(X, event, beta, args.lam), g)

    # the loss is the mean over subjects: the observed information is n times its Hessian
    se = np.sqrt(np.diag(np.linalg.inv(n * mod.nll_hessian(X, event, beta, args.lam))))
    print(f"converged in {it} iterations, final loss {mod.nll(X, event, beta, args.lam):.12f}")
    print("  coef   true  fitted  std.err  hazard ratio")
    for k in range(d):
        print(f"  b{k}  {BETA_TRUE[k]:+.2f}  {beta[k]:+.3f}   {se[k]:.3f}    {np.exp(beta[k]):.3f}")
    z = np.abs(beta - BETA_TRUE) / se
    print(f"largest |fitted - true| / std.err: {z.max():.2f}")


if __name__ == "__main__":
    main()
