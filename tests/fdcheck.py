"""Finite-difference helpers for testing emitted modules (independent of gradgen).

Every function here works on plain NumPy arrays and calls the emitted functions with
keyword-free positional arguments, so nothing of the compiler under test is used to
compute an expected value.
"""

from __future__ import annotations

import numpy as np

EPS = 1e-6     # step of the two-sided differences
RTOL = 1e-6    # tolerance relative to max(1, max |expected|)

# How test inputs are drawn for each input domain of an OpDef (see gradgen/ops/registry.py):
# away from zero, from the kinks and from the edges of the domain.
DOMAINS = {
    "real": lambda rng, shape: _signed(rng, shape, 0.3, 1.5),
    "nonzero": lambda rng, shape: _signed(rng, shape, 0.3, 1.5),
    "positive": lambda rng, shape: rng.uniform(0.5, 2.0, size=shape),
    "unit": lambda rng, shape: _signed(rng, shape, 0.1, 0.9),
    # square matrices (..., n, n): well conditioned; spd is also symmetric positive definite
    "invertible": lambda rng, shape: _invertible(rng, shape),
    "spd": lambda rng, shape: _spd(rng, shape),
}
# Domains of whole matrices: their elements are not drawn independently (an SPD matrix has
# equal elements across the diagonal), so they are left out of the distinctness check.
MATRIX_DOMAINS = {"invertible", "spd"}


def _signed(rng, shape, lo, hi):
    return rng.uniform(lo, hi, size=shape) * rng.choice([-1.0, 1.0], size=shape)


def _square(shape):
    assert len(shape) >= 2 and shape[-1] == shape[-2], f"not square matrices: {shape}"
    return shape[-1]


def _invertible(rng, shape):
    n = _square(shape)
    return np.eye(n) + 0.3 * rng.normal(size=shape) / np.sqrt(n)


def _spd(rng, shape):
    n = _square(shape)
    r = rng.normal(size=shape)
    return r @ np.swapaxes(r, -1, -2) / n + np.eye(n)


def draw(rng, domain: str, shape) -> np.ndarray:
    """A float64 array of `shape` from `domain`; never zeros or ones."""
    return np.asarray(DOMAINS[domain](rng, tuple(shape)), dtype=np.float64)


def min_gap(arrays) -> float:
    """The smallest distance between two of the values of `arrays` (inf for < 2 values)."""
    values = np.sort(np.concatenate([np.ravel(a) for a in arrays] or [np.zeros(0)]))
    return float(np.min(np.diff(values))) if values.size > 1 else float("inf")


def as_tuple(result, k: int) -> tuple:
    """The derivatives of `k` Params as a tuple (one Param gives a bare array)."""
    if k == 1:
        assert not isinstance(result, tuple), f"one Param must give a bare array, got {result!r}"
        return (result,)
    assert isinstance(result, tuple) and len(result) == k, \
        f"expected a tuple of {k} derivatives, got {type(result).__name__}"
    return result


def rel_error(actual, expected) -> float:
    """max |actual - expected| / max(1, max |expected|)."""
    a = np.asarray(actual, dtype=np.float64)
    b = np.asarray(expected, dtype=np.float64)
    if not b.size:
        return 0.0
    scale = max(1.0, float(np.max(np.abs(b))))
    return float(np.max(np.abs(a - b))) / scale


def assert_close(actual, expected, what: str, rtol: float = RTOL) -> None:
    """Same shape, finite, and within `rtol` of `expected` (relative to its scale)."""
    a, b = np.asarray(actual), np.asarray(expected)
    assert a.shape == b.shape, f"{what}: shape {a.shape}, expected {b.shape}"
    assert np.issubdtype(a.dtype, np.floating), f"{what}: dtype {a.dtype} is not a float type"
    assert np.all(np.isfinite(a)), f"{what}: not finite:\n{a}"
    err = rel_error(a, b)
    assert err <= rtol, (f"{what}: relative error {err:.3e} > {rtol:.0e}\n"
                         f"actual:\n{a}\nexpected:\n{b}")


def call(fn, order, args, *extra):
    """`fn(*args in order, *extra)`."""
    return fn(*(args[n] for n in order), *extra)


def fd_jacobian(fn, order, args, name, eps: float = EPS, symmetric: bool = False):
    """d fn / d args[name] by two-sided differences, shaped `args[name].shape + out.shape`
    (a tuple of such arrays when `fn` returns a tuple).

    `symmetric`: args[name] is a stack of symmetric matrices that `fn` reads as symmetric
    (cholesky reads one triangle), so each step moves elements (i, j) and (j, i) together,
    by (E_ij + E_ji) / 2: the quotient is d fn(sym(A)) / dA_ij with sym(A) = (A + A^T) / 2,
    which is what a symmetric gradient (or cotangent) of A must equal."""
    base = np.asarray(args[name], dtype=np.float64)
    rows = []
    for i in range(base.size):
        step = np.zeros(base.size)
        step[i] = eps
        step = step.reshape(base.shape)
        if symmetric:
            step = (step + np.swapaxes(step, -1, -2)) / 2
        plus = call(fn, order, dict(args, **{name: base + step}))
        minus = call(fn, order, dict(args, **{name: base - step}))
        if isinstance(plus, tuple):
            rows.append(tuple(_quotient(a, b, eps) for a, b in zip(plus, minus)))
        else:
            rows.append(_quotient(plus, minus, eps))
    if isinstance(rows[0], tuple):
        return tuple(np.array([r[k] for r in rows]).reshape(base.shape + rows[0][k].shape)
                     for k in range(len(rows[0])))
    return np.array(rows).reshape(base.shape + rows[0].shape)


def _quotient(plus, minus, eps):
    return (np.asarray(plus, dtype=np.float64) - np.asarray(minus, dtype=np.float64)) / (2 * eps)


def fd_directional(fn, order, args, directions: dict, eps: float = EPS):
    """(fn(args + eps v) - fn(args - eps v)) / (2 eps); every output of `fn` (a tuple or not)."""
    plus = dict(args, **{n: args[n] + eps * v for n, v in directions.items()})
    minus = dict(args, **{n: args[n] - eps * v for n, v in directions.items()})
    hi, lo = call(fn, order, plus), call(fn, order, minus)
    if isinstance(hi, tuple):
        return tuple((np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))
                     / (2 * eps) for a, b in zip(hi, lo))
    return (np.asarray(hi, dtype=np.float64) - np.asarray(lo, dtype=np.float64)) / (2 * eps)


def contract(jac: np.ndarray, u: np.ndarray) -> np.ndarray:
    """sum over the output axes of `jac` (shaped param + out) weighted by `u` (shaped out)."""
    u = np.asarray(u, dtype=np.float64)
    if u.ndim == 0:
        return jac * u
    return np.tensordot(jac, u, axes=u.ndim)
