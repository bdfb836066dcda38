"""Sparse Data (issue 14, item 8): the checked-in logistic and newton modules take
`scipy.sparse` arrays (csr_array, csc_array, coo_array) for their Data matrix `X` in every
function, Hessian included, and give what they give for the dense matrix; matrices whose
`*` is a matrix product (`scipy.sparse.csr_matrix`, `np.matrix`) are refused by the
argument checks with a TypeError that says what to pass instead.

The modules are imported from examples/ as they are (no compilation here).
"""

from __future__ import annotations

import numpy as np
import pytest
from emitted import example_module


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(8, 3))
    X[np.abs(X) < 0.6] = 0.0   # about half the entries
    y = np.where(rng.normal(size=8) > 0, 1.0, -1.0)
    w = rng.normal(size=3)
    v = rng.normal(size=3)
    return X, y, w, 0.1, v


CALLS = {   # function -> extra arguments after (X, y, w, lam)
    "loss": (), "loss_grad": (), "loss_value_and_grad": (), "loss_vjp": (1.0,),
    "loss_jvp": ("v",), "loss_hvp": ("v",), "loss_hessian": (),
}


def _flat(result) -> list[np.ndarray]:
    if isinstance(result, tuple):
        return [a for r in result for a in _flat(r)]
    assert not hasattr(result, "tocsr"), "a sparse result"
    return [np.asarray(result)]


@pytest.mark.parametrize("example", ["logistic", "newton"])
@pytest.mark.parametrize("kind", ["csr_array", "csc_array", "coo_array"])
def test_sparse_arrays_give_the_dense_results(data, example, kind):
    sparse = pytest.importorskip("scipy.sparse")
    mod = example_module(example)
    X, y, w, lam, v = data
    Xs = getattr(sparse, kind)(X)
    functions = [f for f in CALLS if hasattr(mod, f)]
    assert ("loss_hessian" in functions) == (example == "newton")
    for f in functions:
        extra = [v if e == "v" else e for e in CALLS[f]]
        dense = _flat(getattr(mod, f)(X, y, w, lam, *extra))
        got = _flat(getattr(mod, f)(Xs, y, w, lam, *extra))
        assert len(got) == len(dense)
        for a, b in zip(got, dense):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14, err_msg=f)


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")   # np.matrix itself
@pytest.mark.parametrize("kind", ["csr_matrix", "np.matrix"])
def test_matrices_are_refused_with_a_clear_message(data, kind):
    X, y, w, lam, _ = data
    if kind == "np.matrix":
        M = np.asmatrix(X)
    else:
        M = pytest.importorskip("scipy.sparse").csr_matrix(X)
    mod = example_module("newton")
    for f in ("loss", "loss_grad", "loss_hessian"):
        with pytest.raises(TypeError) as info:
            getattr(mod, f)(M, y, w, lam)
        assert str(info.value) == (
            f"argument 'X': {type(M).__name__} is not supported (its * is a matrix product); "
            "pass an array: np.asarray(x), or scipy.sparse.csr_array(x) for sparse data")
