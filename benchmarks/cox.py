"""Cox proportional hazards: the emitted value and gradient against JAX.

The contenders compute the value and gradient of examples/cox/cox.grad (the Breslow
negative log partial likelihood per sample, rows sorted by time) at (N, D) = (1000, 10),
(10000, 10), (100000, 10), float64, each in a worker process of its own
(`timing.Isolated`), interleaved, threads pinned to 1 (BLAS and XLA):

- gradgen: `nll_value_and_grad` of the checked-in examples/cox/cox_grad.py (NumPy only);
- numpy by hand: the textbook O(N) gradient with np.logaddexp.accumulate for the risk
  sets and exp(eta) * cumsum(event / N * exp(-log_risk)) for the gradient (which
  overflows once eta leaves exp's range; gradgen's does not);
- jax: `jax.jit(jax.value_and_grad(f))` with `jax.lax.cumlogsumexp(eta, reverse=True)`.

It needs only NumPy for the first two; run it with a Python that also has JAX to get the
third (here: /work/tmp/jaxenv/bin/python benchmarks/cox.py):

    python benchmarks/cox.py [--rounds 9] [--sizes 1000,10000,100000] [--clock cpu]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen"
                           "=false intra_op_parallelism_threads=1").strip()

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from timing import Isolated, Local, Unavailable, interleaved

D = 10
LAM = 1e-3


def data(n: int, seed: int = 0):
    """Covariates, a coefficient vector and events sorted by simulated time, as in
    examples/cox/train.py (here with D = 10)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, D))
    beta = rng.normal(scale=0.3, size=D)
    t_event = rng.exponential(1.0 / np.exp(X @ beta))
    t_censor = rng.exponential(2.0, size=n)
    order = np.argsort(np.minimum(t_event, t_censor))
    return X[order], (t_event <= t_censor).astype(float)[order], beta


def gradgen_contender(n: int) -> Local:
    spec = importlib.util.spec_from_file_location(
        "cox_grad", HERE.parent / "examples" / "cox" / "cox_grad.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    X, event, beta = data(n)
    return Local("gradgen nll_value_and_grad", lambda: mod.nll_value_and_grad(
        X, event, beta, LAM))


def numpy_contender(n: int) -> Local:
    X, event, beta = data(n)

    def run():
        eta = X @ beta
        log_risk = np.logaddexp.accumulate(eta[::-1])[::-1]
        value = -np.sum(event * (eta - log_risk)) / n + LAM / 2 * beta @ beta
        d_eta = np.exp(eta) * np.cumsum(event / n * np.exp(-log_risk)) - event / n
        return value, X.T @ d_eta + LAM * beta
    return Local("numpy by hand (not overflow-safe)", run)


def jax_contender(n: int) -> Local:
    try:
        import jax
    except ImportError as e:
        raise Unavailable(f"jax: {e}") from None
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    def nll(X, event, beta):
        eta = X @ beta
        log_risk = jax.lax.cumlogsumexp(eta, axis=0, reverse=True)
        return -jnp.sum(event * (eta - log_risk)) / X.shape[0] + LAM / 2 * beta @ beta

    f = jax.jit(jax.value_and_grad(nll, argnums=2))
    args = [jax.device_put(a) for a in data(n)]
    assert all(a.dtype == jnp.float64 for a in args)

    def result():
        value, grad = jax.block_until_ready(f(*args))
        return float(value), np.asarray(grad)
    return Local(f"jax {jax.__version__} jit(value_and_grad), f64",
                 lambda: jax.block_until_ready(f(*args)), result, traced_memory=False)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--clock", default="cpu", choices=("cpu", "wall"))
    args = ap.parse_args(argv)
    print(f"NumPy {np.__version__}, threads pinned to 1, clock {args.clock}, "
          f"medians of {args.rounds} interleaved rounds, D = {D}\n")
    print("| N | gradgen | numpy by hand | jax jit | gradgen / jax |")
    print("|---|---|---|---|---|")
    for n in (int(s) for s in args.sizes.split(",")):
        contenders = {}
        for key in ("gradgen", "numpy", "jax"):
            try:
                contenders[key] = Isolated(__file__, f"{key}_contender", n)
            except Unavailable as e:
                print(f"({key} not measured: {e})", file=sys.stderr)
        ref_value, ref_grad = contenders["gradgen"].result()
        for key, c in contenders.items():
            value, grad = c.result()
            err = max(abs(value - ref_value) / abs(ref_value),
                      np.max(np.abs(grad - ref_grad)) / np.max(np.abs(ref_grad)))
            assert err <= 1e-6, f"{key} disagrees with gradgen: {err:.1e}"
        res = interleaved(contenders, args.rounds, clock=args.clock)
        for c in contenders.values():
            c.close()
        med = {k: r.median * 1e6 for k, r in res.items()}
        cells = [f"{med[k]:.0f} us" if k in med else "not measured"
                 for k in ("gradgen", "numpy", "jax")]
        ratio = f"{med['gradgen'] / med['jax']:.2f}" if "jax" in med else "-"
        print(f"| {n} | {' | '.join(cells)} | {ratio} |", flush=True)


if __name__ == "__main__":
    main()
