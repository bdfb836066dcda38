"""Logistic regression on more data than any worker's memory: L-BFGS (SciPy) on the client,
the loss and its gradient computed by the array-API module of examples/logistic/logistic.grad
(`gradgen.load(..., target="array-api")`) on chunked Dask arrays held by a
`dask.distributed` cluster.

    python examples/bigdata/fit.py                       # LocalCluster, 2 workers x 1 GiB, 3.2 GB
    python examples/bigdata/fit.py --rows 200000 --memory-limit 256MiB   # a quick run
    python examples/bigdata/fit.py --scheduler tcp://scheduler:8786      # a real cluster

The data are generated chunk by chunk on the workers (`dask.array.random`: a seeded
generator per block), never on the client. `persist()` makes the cluster compute them once
and keep them (the blocks over a worker's memory limit are spilled to its disk), so the
L-BFGS iterations do not generate them again; it returns new collections, which replace
the lazy ones. Each evaluation then builds `loss_value_and_grad`'s graph on the persisted
blocks: `X @ w` per row block, and the means as tree reductions over the blocks
(`sum(...) / N`, `X.T @ r / N`), so only D + 1 numbers come back to the client.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import gradgen

SOURCE = Path(__file__).resolve().parent.parent / "logistic" / "logistic.grad"
logistic = gradgen.load(str(SOURCE), target="array-api", modes=("grad",))


def make_data(rows: int, dims: int, chunk_rows: int, seed: int = 0):
    """Lazy (X, y, w_true): rows of N(0, 1) features in blocks of `chunk_rows` rows, labels
    in {-1, +1} from a logistic model with true weights w_true. Nothing is computed here."""
    import dask.array as da

    w_true = np.linspace(-1.0, 1.0, dims)
    rng = da.random.default_rng(seed)
    X = rng.standard_normal((rows, dims), chunks=(chunk_rows, dims))
    u = rng.random((rows,), chunks=(chunk_rows,))
    p = 1 / (1 + da.exp(-(X @ w_true)))
    y = da.where(u < p, 1.0, -1.0)
    return X, y, w_true


def value_and_grad(X, y, w, lam: float):
    """The mean loss and its gradient at the NumPy weights `w`, computed on the cluster by
    the emitted module; only these D + 1 numbers come back."""
    import dask
    import dask.array as da

    wd = da.from_array(w, chunks=-1)   # one small block, sent with the graph
    value, grad = dask.compute(*logistic.loss_value_and_grad(X, y, wd, lam))
    return float(value), np.asarray(grad, dtype=np.float64)


def fit(X, y, lam: float = 1e-3, tol: float = 1e-9):
    """L-BFGS on the mean loss over the persisted (X, y); returns (w, SciPy's result,
    evaluations)."""
    import scipy.optimize

    evaluations = 0

    def fun(w):
        nonlocal evaluations
        evaluations += 1
        return value_and_grad(X, y, w, lam)

    w0 = np.zeros(X.shape[1])
    res = scipy.optimize.minimize(fun, w0, jac=True, method="L-BFGS-B",
                                  options={"gtol": tol, "ftol": 1e-15, "maxiter": 200})
    return res.x, res, evaluations


def spilled_bytes(client) -> int:
    """The bytes the workers hold on disk (spilled over their memory limits)."""
    def on_disk(dask_worker):
        spilled = getattr(dask_worker.data, "spilled_total", None)   # a SpillBuffer's
        return int(spilled.disk) if spilled is not None else 0
    return sum(client.run(on_disk).values())


def run(rows: int, dims: int, chunk_rows: int, workers: int, memory_limit: str,
        scheduler: str | None = None, processes: bool = True, lam: float = 1e-3,
        quiet: bool = False) -> dict:
    """Start (or connect to) a cluster, persist the data on it, fit; a summary dict."""
    import dask
    from dask.distributed import Client, LocalCluster, wait
    from dask.utils import parse_bytes

    cluster = None
    if scheduler is None:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1,
                               memory_limit=memory_limit, processes=processes,
                               dashboard_address=None)
        client = Client(cluster)
    else:
        client = Client(scheduler)
    try:
        X, y, w_true = make_data(rows, dims, chunk_rows)
        data_bytes = X.nbytes + y.nbytes
        t0 = time.perf_counter()
        X, y = dask.persist(X, y)   # computed on the workers once, kept (or spilled) there
        wait([X, y])
        t_data = time.perf_counter() - t0
        t0 = time.perf_counter()
        w, res, evaluations = fit(X, y, lam)
        t_fit = time.perf_counter() - t0
        out = {"rows": rows, "dims": dims, "data_bytes": int(data_bytes),
               "worker_limit": parse_bytes(memory_limit), "spilled": spilled_bytes(client),
               "iterations": int(res.nit), "evaluations": evaluations,
               "loss": float(res.fun), "grad_norm": float(np.linalg.norm(res.jac)),
               "w": w, "w_true": w_true, "seconds_data": t_data, "seconds_fit": t_fit}
        if not quiet:
            print(f"data {data_bytes / 2**30:.2f} GiB on {len(client.scheduler_info()['workers'])} "
                  f"workers of {memory_limit} each; spilled to disk "
                  f"{out['spilled'] / 2**30:.2f} GiB; generated in {t_data:.1f} s")
            print(f"L-BFGS: {res.nit} iterations, {evaluations} evaluations in {t_fit:.1f} s; "
                  f"loss {res.fun:.6f}, |grad| {out['grad_norm']:.1e}")
            print(f"max |w - w_true| = {np.max(np.abs(w - w_true)):.3f}")
        return out
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=8_000_000)
    p.add_argument("--dims", type=int, default=50)
    p.add_argument("--chunk-rows", type=int, default=250_000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--memory-limit", default="1GiB", help="per worker (LocalCluster)")
    p.add_argument("--scheduler", help="address of a running dask.distributed scheduler")
    a = p.parse_args(argv)
    run(a.rows, a.dims, a.chunk_rows, a.workers, a.memory_limit, a.scheduler)


if __name__ == "__main__":
    main()
