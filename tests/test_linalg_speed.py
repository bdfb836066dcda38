"""The emitted triangular solve at sizes past its block of 64 rows, and derivatives through it
and through `matmul_scalar_outwards` (issue 12, h-gp): the op harness draws 3x3 matrices,
which never reach the blocked path nor its wide right-hand sides (the Cholesky VJP's)."""

from __future__ import annotations

import numpy as np
import pytest

import gradgen
from fdcheck import assert_close, fd_directional
from gradgen.ops import REGISTRY


@pytest.fixture(scope="module")
def solve_triangular():
    """The `_solve_triangular` helper exactly as emitted modules carry it."""
    namespace = {"np": np}
    exec(REGISTRY["solve_triangular"].prelude, namespace)  # noqa: S102
    return namespace["_solve_triangular"]


@pytest.mark.parametrize("n", [1, 65, 130])
@pytest.mark.parametrize("lower", [True, False])
def test_solve_triangular_matches_a_dense_solve(solve_triangular, n, lower):
    rng = np.random.default_rng(n)
    a = rng.standard_normal((n, n)) + 2 * np.sqrt(n) * np.eye(n)
    t = np.tril(a) if lower else np.triu(a)       # the triangle read; the rest is ignored
    for b in (rng.standard_normal(n), rng.standard_normal((n, 3)),
              rng.standard_normal((n, 70)), rng.standard_normal((2, n, 80))):
        before = b.copy()
        x = solve_triangular(a, b, lower)
        assert x.shape == b.shape
        assert_close(x, np.linalg.solve(t, b[..., None] if b.ndim == 1 else b)
                     .reshape(b.shape), f"n={n} b{b.shape}", rtol=1e-10)
        assert np.array_equal(b, before), "the right-hand side was modified"
    stack = np.stack([a, a + np.eye(n)])           # a batch of matrices, one b for all
    b = rng.standard_normal((n, 66))
    expected = np.linalg.solve(np.tril(stack) if lower else np.triu(stack), b)
    assert_close(solve_triangular(stack, b, lower), expected, "batch", rtol=1e-10)
    x32 = solve_triangular(a.astype(np.float32), b.astype(np.float32), lower)
    assert x32.dtype == np.float32


GP = '''
def f(log_ell: Param[()], log_sn: Param[()], w: Param[D], X: Data[N, D], y: Data[N]):
    sq = sum(X ** 2, axis=1)
    d2 = sq[:, None] + sq[None, :] - 2 * X @ X.T
    K = exp(-0.5 * d2 / exp(2 * log_ell)) + exp(2 * log_sn) * eye(N)
    L = cholesky(K)
    r = y - X @ w
    alpha = cho_solve(L, r)
    return 0.5 * r @ alpha + sum(log(diag(L))) + sum(X.T @ (-r / N)) ** 2
'''


def test_gp_gradient_and_hvp_at_a_blocked_size_match_finite_differences():
    """N = 150: the Cholesky VJP solves with (150, 150) right-hand sides (blocked, wide
    path); `X.T @ (-r / N)` goes through matmul_scalar_outwards. Gradient and
    Hessian-vector product against two-sided differences of the value and the gradient."""
    m = gradgen.load_source(GP, "gp_test.grad")
    rng = np.random.default_rng(7)
    N, D = 150, 3
    args = {"log_ell": np.array(0.3), "log_sn": np.array(-0.7), "w": rng.standard_normal(D),
            "X": rng.uniform(-2, 2, (N, D)), "y": rng.standard_normal(N)}
    order = ["log_ell", "log_sn", "w", "X", "y"]
    params = order[:3]
    grad = m.f_grad(*(args[k] for k in order))
    v = {"log_ell": np.array(0.4), "log_sn": np.array(-0.3), "w": rng.standard_normal(D)}
    fd = fd_directional(m.f, order, args, v)
    assert_close(sum(np.sum(g * v[k]) for g, k in zip(grad, params)), fd, "grad . v")
    hvp = m.f_hvp(*(args[k] for k in order), *(v[k] for k in params))
    fd2 = fd_directional(m.f_grad, order, args, v)
    for k, got, want in zip(params, hvp, fd2):
        assert_close(got, want, f"hvp {k}")
    code = [line.split("#")[0] for line in
            gradgen.compile_source(GP, filename="gp_test.grad").splitlines()]
    assert not any("(-r / N)" in line for line in code)     # the scalar left the product
    assert any("X.T @ r" in line for line in code)
