"""examples/bigdata: the array-API module's loss and gradient on chunked Dask arrays held
by a `dask.distributed` cluster whose workers' memory limit is smaller than the data
(blocks spilled to disk), against the NumPy target on the same data materialised here.

The in-process cluster's workers are given a memory limit of 1 MiB for 3.5 MB of data; the
memory monitor's pause and terminate thresholds (which compare the whole test process's
memory with that limit) are off, so the limit acts where it matters here: the managed data
over 60 % of it are spilled to disk. The full L-BFGS fit is a long test.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

import gradgen

# dask.distributed and the example are imported by the tests that use them, not while
# collecting: every xdist worker collects every file, and importing them cost each one
# ~0.5 s of CPU (the worker that runs this file pays it once).
pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("distributed") is None,
                       reason="the big-data example needs dask.distributed "
                              "(pip install '.[test]')"),
    pytest.mark.skipif(importlib.util.find_spec("array_api_compat") is None,
                       reason="the array-API target on Dask needs array_api_compat"),
]

HERE = Path(__file__).resolve().parent.parent / "examples" / "bigdata"


def _fit():
    """examples/bigdata/fit.py, imported (with dask.distributed)."""
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    return importlib.import_module("fit")


ROWS, DIMS, CHUNK, LAM = 40_000, 10, 5_000, 1e-3
MEMORY = {"distributed.worker.memory.pause": False,
          "distributed.worker.memory.terminate": False,
          "distributed.worker.memory.spill": False}


def _numpy_data():
    """The example's data, computed here by the local scheduler (deterministic: seeded)."""
    import dask

    X, y, w_true = _fit().make_data(ROWS, DIMS, CHUNK)
    X, y = dask.compute(X, y, scheduler="threads")
    return X, y, w_true


def _reference():
    """The NumPy target's module of the same source."""
    return gradgen.load(str(_fit().SOURCE))


def test_gradient_on_a_cluster_with_less_memory_than_the_data():
    import dask
    from dask.distributed import Client, LocalCluster, wait

    fit = _fit()
    Xn, yn, _ = _numpy_data()
    ref = _reference()
    w = np.linspace(0.5, -0.5, DIMS)
    expected_value, expected_grad = ref.loss_value_and_grad(Xn, yn, w, LAM)
    with dask.config.set(MEMORY), \
            LocalCluster(n_workers=2, threads_per_worker=1, memory_limit="1MiB",
                         processes=False, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        X, y, _ = fit.make_data(ROWS, DIMS, CHUNK)
        assert X.nbytes + y.nbytes > 3 * 2**20   # more than all workers' limits together
        X, y = dask.persist(X, y)
        wait([X, y])
        value, grad = fit.value_and_grad(X, y, w, LAM)
        assert fit.spilled_bytes(client) > 2**20   # the limit acted: blocks are on disk
    assert abs(value - expected_value) <= 1e-10 * max(1.0, abs(expected_value))
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-10, atol=1e-12)


@pytest.mark.long
def test_lbfgs_fit_on_the_cluster_matches_scipy_on_numpy():
    import dask
    import scipy.optimize

    fit = _fit()
    Xn, yn, _ = _numpy_data()
    ref = _reference()
    best = scipy.optimize.minimize(lambda w: ref.loss_value_and_grad(Xn, yn, w, LAM),
                                   np.zeros(DIMS), jac=True, method="L-BFGS-B",
                                   options={"gtol": 1e-9, "ftol": 1e-15, "maxiter": 200})
    with dask.config.set(MEMORY):
        out = fit.run(ROWS, DIMS, CHUNK, 2, "1MiB", processes=False, lam=LAM, quiet=True)
    assert out["data_bytes"] > 3 * out["worker_limit"] and out["spilled"] > 0
    assert out["grad_norm"] < 1e-8
    np.testing.assert_allclose(out["w"], best.x, atol=1e-7)
    assert abs(out["loss"] - best.fun) < 1e-12
