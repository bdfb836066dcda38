"""Subscript assignment in every index form of the language (SPEC §1, rev. 2): `H[T - 1] = h`,
`A[0, idx] = v` (an integer beside an index array), `A[idx, 1:4] = v` (a slice beside one),
`A[t, :, k] = v` (loop variables apart), `A[:, t] += v`, inside and outside loops.

One module (compiled once, with --hessian) holds every form as an entry point; each is
checked against a NumPy function written here by hand, its gradient against two-sided
finite differences, forward against reverse mode (<u, J v> = <J^T u, v>), and its HVP
against finite differences of the gradient. The index arrays hold distinct values (with
repeated indices, which write of `A[idx] = v` wins is NumPy's choice, not a derivative).
"""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
from fdcheck import assert_close, fd_directional, fd_jacobian

import gradgen

SOURCE = textwrap.dedent("""
    def last_row(X: Param[T, 3], h: Param[3]):
        H = zeros((T, 3))
        for t in range(T):
            h = tanh(X[t] * h)
            H[t] = h
        H[T - 1] = 2 * h
        H[T - 2] += h * h
        return sum(H * X)

    def columns(X: Param[T, 3], h: Param[3]):
        H = zeros((3, T))
        for t in range(T):
            h = tanh(X[t] * h)
            H[:, t] = h
            H[:, T - 1] += h
        return sum(H.T * X)

    def beside(X: Param[4, 5], v: Param[3], idx: Index[3]):
        A = X * 1.0
        A[0, idx] = v
        A[1, idx] += v * v
        A[idx, 2] -= sin(v)
        A[idx, 1:4] *= 0.5 + A[idx, 0:3]
        for t in range(2, 4):
            A[t, idx] = A[t, idx] * v
        return sum(A * X)

    def apart(X: Param[4, 5, 3], v: Param[5]):
        A = X
        for t in range(4):
            for k in range(3):
                A[t, :, k] = v * A[t, :, k]
            A[t, 1:4, 2] += v[1:4]
            A[t, 0, :] = tanh(A[t, 0, :])
        return sum(A * X) + sum(X[1, :, 2])
    """)
SIZES = {"T": 5}


@pytest.fixture(scope="module")
def mod():
    return gradgen.load_source(SOURCE, "assign.grad", hessian=True)


def _last_row(X, h):
    T = X.shape[0]
    H = np.zeros((T, 3))
    for t in range(T):
        h = np.tanh(X[t] * h)
        H[t] = h
    H[-1] = 2 * h
    H[-2] += h * h
    return np.sum(H * X)


def _columns(X, h):
    T = X.shape[0]
    H = np.zeros((3, T))
    for t in range(T):
        h = np.tanh(X[t] * h)
        H[:, t] = h
        H[:, -1] += h
    return np.sum(H.T * X)


def _beside(X, v, idx):
    A = X.copy()
    A[0, idx] = v
    A[1, idx] += v * v
    A[idx, 2] -= np.sin(v)
    A[idx, 1:4] = A[idx, 1:4] * (0.5 + A[idx, 0:3])
    for t in range(2, 4):
        A[t, idx] = A[t, idx] * v
    return np.sum(A * X)


def _apart(X, v):
    A = X.copy()
    for t in range(4):
        for k in range(3):
            A[t, :, k] = v * A[t, :, k]
        A[t, 1:4, 2] += v[1:4]
        A[t, 0, :] = np.tanh(A[t, 0, :])
    return np.sum(A * X) + np.sum(X[1, :, 2])


CASES = {   # entry point: (reference, Param shapes, Index arguments)
    "last_row": (_last_row, {"X": (5, 3), "h": (3,)}, {}),
    "columns": (_columns, {"X": (5, 3), "h": (3,)}, {}),
    "beside": (_beside, {"X": (4, 5), "v": (3,)}, {"idx": np.array([3, 0, 2])}),
    "apart": (_apart, {"X": (4, 5, 3), "v": (5,)}, {}),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_subscript_assignment_forms(mod, name):
    ref, shapes, indices = CASES[name]
    rng = np.random.default_rng(7)
    params = {n: rng.uniform(0.3, 1.2, size=s) * rng.choice([-1.0, 1.0], size=s)
              for n, s in shapes.items()}
    order = [*shapes, *indices]
    args = {**params, **indices}

    def run(fn, *extra):
        return fn(*(args[n] for n in order), *extra)

    def value(*xs):
        return getattr(mod, name)(*xs)

    assert_close(run(getattr(mod, name)), ref(*(args[n] for n in order)), f"{name} value",
                 rtol=1e-12)
    grads = run(getattr(mod, f"{name}_grad"))
    for n, g in zip(shapes, grads):
        assert_close(g, fd_jacobian(value, order, args, n), f"{name} d/d{n}")
    # forward vs reverse: <u, J v> = <J^T u, v> (u a number: the output is a scalar)
    tangents = {n: rng.normal(size=s) for n, s in shapes.items()}
    _, jv = run(getattr(mod, f"{name}_jvp"), *tangents.values())
    assert_close(jv, sum(np.sum(g * tangents[n]) for n, g in zip(shapes, grads)),
                 f"{name} jvp vs grad", rtol=1e-12)
    assert_close(jv, fd_directional(value, order, args, tangents), f"{name} jvp vs fd")
    # second order: the HVP against finite differences of the gradient, and the Hessian
    hvp = run(getattr(mod, f"{name}_hvp"), *tangents.values())

    def grad(*xs):
        return getattr(mod, f"{name}_grad")(*xs)

    fd = fd_directional(grad, order, args, tangents)
    for n, a, b in zip(shapes, hvp, fd):
        assert_close(a, b, f"{name} hvp d/d{n}", rtol=1e-5)
    hess = run(getattr(mod, f"{name}_hessian"))
    for i, n in enumerate(shapes):
        row = sum(np.tensordot(hess[i][j], tangents[m], axes=tangents[m].ndim)
                  for j, m in enumerate(shapes))
        assert_close(row, hvp[i], f"{name} hessian row {n} vs hvp", rtol=1e-10)


def test_index_values_apart_from_an_index_array_are_a_located_error():
    """`A[0, :, idx]`: NumPy moves the index arrays' axes to the front (shape (3, 5) here,
    not (5, 3)); the message says what to write instead."""
    with pytest.raises(gradgen.CompileError) as e:
        gradgen.compile_source(textwrap.dedent("""
            def f(X: Param[4, 5, 6], v: Param[5, 3], idx: Index[3]):
                A = X
                A[0, :, idx] = v
                return sum(A)
            """), "apart.grad")
    text = str(e.value)
    assert text.startswith("apart.grad:4:7: error: NumPy moves the axes of index arrays to "
                           "the front"), text
    assert "A[:, 0, idx]" in text
