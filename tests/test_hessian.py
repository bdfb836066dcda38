"""f_hessian: closed-form Hessian blocks against finite differences of f_grad."""

from __future__ import annotations

import ast
import types
from pathlib import Path

import numpy as np
import pytest

import gradgen

ROOT = Path(__file__).resolve().parent.parent


def _module(text: str, name: str = "h.grad", **options) -> types.ModuleType:
    src = gradgen.compile_source(text, name, hessian=True, **options)
    mod = types.ModuleType("hessian_test")
    exec(compile(src, name, "exec"), mod.__dict__)
    mod.__source__ = src
    return mod


def _fd_hessian(grad, params, i, j, eps=1e-6):
    """d(grad_i)/d(params_j) by two-sided differences, shaped p_i.shape + p_j.shape."""
    pj = params[j]
    cols = []
    for k in range(pj.size):
        step = np.zeros(pj.size)
        step[k] = eps
        step = step.reshape(pj.shape)
        plus, minus = list(params), list(params)
        plus[j], minus[j] = pj + step, pj - step
        cols.append((np.asarray(grad(plus)[i]) - np.asarray(grad(minus)[i])) / (2 * eps))
    return np.moveaxis(np.array(cols), 0, -1).reshape(params[i].shape + pj.shape)


def test_logistic_hessian_is_the_closed_matrix_form():
    src = (ROOT / "examples" / "logistic" / "logistic.grad").read_text()
    mod = _module(src, "logistic.grad")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 5))
    y = rng.choice([-1.0, 1.0], size=40)
    w = rng.normal(size=5)
    lam = 0.3
    H = mod.loss_hessian(X, y, w, lam)
    assert H.shape == (5, 5)
    s = 1 / (1 + np.exp(-y * (X @ w)))
    closed = X.T @ ((s * (1 - s))[:, None] * X) / 40 + lam * np.eye(5)
    np.testing.assert_allclose(H, closed, rtol=1e-10, atol=1e-12)
    fd = _fd_hessian(lambda ps: (mod.loss_grad(X, y, ps[0], lam),), [w], 0, 0)
    np.testing.assert_allclose(H, fd, rtol=1e-6, atol=1e-7)
    # One pass over X: a single matrix product, no Python loop over directions.
    fn = next(n for n in ast.parse(mod.__source__).body
              if isinstance(n, ast.FunctionDef) and n.name == "loss_hessian")
    assert not any(isinstance(n, (ast.For, ast.While, ast.ListComp)) for n in ast.walk(fn))
    matmuls = [n for n in ast.walk(fn) if isinstance(n, ast.BinOp)
               and isinstance(n.op, ast.MatMult)]
    assert len(matmuls) == 2   # X @ w (forward) and one (D, N) @ (N, D) product


def test_mlp_hessian_blocks_match_finite_differences():
    mod = _module((ROOT / "examples" / "mlp" / "mlp.grad").read_text(), "mlp.grad")
    rng = np.random.default_rng(1)
    N, D, M, C = 5, 3, 4, 3
    X = rng.normal(size=(N, D))
    Y = np.eye(C)[rng.integers(0, C, size=N)]
    V, W = rng.normal(size=(D, M)), rng.normal(size=(M, C))
    H = mod.cost_hessian(X, Y, V, W)
    grad = (lambda ps: mod.cost_grad(X, Y, *ps))
    for i, pi in enumerate((V, W)):
        for j, pj in enumerate((V, W)):
            assert H[i][j].shape == pi.shape + pj.shape
            np.testing.assert_allclose(H[i][j], _fd_hessian(grad, [V, W], i, j),
                                       rtol=1e-5, atol=1e-7)
    # Symmetry of the blocks: H_VW is H_WV transposed.
    np.testing.assert_allclose(H[0][1], np.transpose(H[1][0], (2, 3, 0, 1)), atol=1e-12)


def test_hessian_with_scalar_and_vector_params_and_unused_param():
    text = '''
def f(a: Param[()], v: Param[3], u: Param[2], X: Data[4, 3]):
    return sum(tanh(X @ v) * a) + a ** 3 + sum(exp(v) * v)
'''
    mod = _module(text)
    rng = np.random.default_rng(2)
    a, v, u = np.array(0.7), rng.normal(size=3), rng.normal(size=2)
    X = rng.normal(size=(4, 3))
    H = mod.f_hessian(a, v, u, X)
    params = [a, v, u]
    grad = (lambda ps: mod.f_grad(ps[0], ps[1], ps[2], X))
    for i in range(3):
        for j in range(3):
            assert H[i][j].shape == params[i].shape + params[j].shape
            np.testing.assert_allclose(H[i][j], _fd_hessian(grad, params, i, j),
                                       rtol=1e-6, atol=1e-7)
    assert not np.any(H[2][2]) and not np.any(H[0][2])


def test_hessian_against_hvp_with_unit_vectors():
    mod = _module((ROOT / "examples" / "logistic" / "logistic.grad").read_text())
    rng = np.random.default_rng(3)
    X, y, w = rng.normal(size=(30, 4)), rng.choice([-1.0, 1.0], 30), rng.normal(size=4)
    H = mod.loss_hessian(X, y, w, 0.1)
    for k in range(4):
        np.testing.assert_allclose(H[:, k], mod.loss_hvp(X, y, w, 0.1, np.eye(4)[k]),
                                   rtol=1e-12, atol=1e-14)


def test_hessian_keeps_float32():
    mod = _module((ROOT / "examples" / "logistic" / "logistic.grad").read_text())
    rng = np.random.default_rng(4)
    X = rng.normal(size=(10, 3)).astype(np.float32)
    y = rng.choice([-1.0, 1.0], 10).astype(np.float32)
    assert mod.loss_hessian(X, y, rng.normal(size=3).astype(np.float32), 0.1).dtype == \
        np.float32


def test_hessian_of_non_scalar_output_is_an_error():
    with pytest.raises(gradgen.CompileError, match="--hessian needs a scalar output"):
        gradgen.compile_source("def f(x: Param[3]):\n    return exp(x)\n", "t.grad",
                               hessian=True)


def test_mirror_blocks_are_computed_once_and_returned_as_copies():
    """Of H_VW and H_WV only one is pushed through the gradient (the other is its
    transpose, exactly), and the two results do not share memory (SPEC 2)."""
    mod = _module((ROOT / "examples" / "mlp" / "mlp.grad").read_text(), "mlp.grad")
    rng = np.random.default_rng(5)
    X, Y = rng.normal(size=(6, 3)), np.eye(4)[rng.integers(0, 4, size=6)]
    V, W = rng.normal(size=(3, 5)), rng.normal(size=(5, 4))
    H = mod.cost_hessian(X, Y, V, W)
    np.testing.assert_array_equal(H[0][1], np.transpose(H[1][0], (2, 3, 0, 1)))
    assert not np.shares_memory(H[0][1], H[1][0])
    # the diagonal blocks are symmetric to rounding, and each its own array
    for k in range(2):
        size = H[k][k].shape[0] * H[k][k].shape[1]
        block = H[k][k].reshape(size, size)
        np.testing.assert_allclose(block, block.T, rtol=1e-12, atol=1e-14)


def test_a_scalar_params_blocks_read_as_scalar_expressions():
    """A 0-d Param's one direction is the number 1: its blocks are plain expressions
    (`6 * a`, `2 * x`), with no (1,) basis `np.eye(1).reshape((1,))` multiplied in and no
    `.reshape(())` to take it out again; the values agree with finite differences, and
    with float32 arguments every block is float32."""
    text = """
def f(a: Param[()], x: Param[3]):
    return a * sum(x ** 2) + a ** 3 + sin(a) * x[0]
"""
    mod = _module(text)
    fn = mod.__source__.split("def f_hessian")[1]
    assert "np.eye(1" not in fn and "basis" not in fn and "reshape" not in fn
    rng = np.random.default_rng(7)
    a, x = np.array(0.7), rng.normal(size=3)
    H = mod.f_hessian(a, x)
    grad = (lambda ps: mod.f_grad(*ps))
    for i in range(2):
        for j in range(2):
            assert np.shape(H[i][j]) == np.shape([a, x][i]) + np.shape([a, x][j])
            np.testing.assert_allclose(H[i][j], _fd_hessian(grad, [a, x], i, j),
                                       rtol=1e-6, atol=1e-7)
    H32 = mod.f_hessian(np.float32(0.7), x.astype(np.float32))
    assert all(np.asarray(b).dtype == np.float32 for row in H32 for b in row)


def test_a_long_return_of_hessian_blocks_is_wrapped_as_ruff_writes_it():
    text = '''
def f(x_long_name: Param[3], y_long_name: Param[3], z_long_name: Param[()]):
    return sum(x_long_name * y_long_name) * z_long_name ** 2 + z_long_name ** 3
'''
    mod = _module(text)
    src = mod.__source__
    assert max(len(line) for line in src.splitlines()) <= 100
    assert "    return (\n        (" in src
    assert "        (\n            H_x_long_name_z_long_name.copy(),\n" in src
    rng = np.random.default_rng(6)
    x, y, z = rng.normal(size=3), rng.normal(size=3), np.array(0.4)
    H = mod.f_hessian(x, y, z)
    grad = (lambda ps: mod.f_grad(*ps))
    for i in range(3):
        for j in range(3):
            np.testing.assert_allclose(H[i][j], _fd_hessian(grad, [x, y, z], i, j),
                                       rtol=1e-6, atol=1e-7)


def test_a_diagonal_block_is_not_a_transposed_view():
    """cox's Hessian (one Param) is written into its own buffer, no `.T` view of it."""
    src = gradgen.compile_source((ROOT / "examples" / "cox" / "cox.grad").read_text(),
                                 "cox.grad", hessian=True)
    body = src[src.index("def nll_hessian"):]
    (line,) = [line for line in body.splitlines() if line.strip().startswith("H = ")]
    assert ".T" not in line
