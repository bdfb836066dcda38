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
    """N = 150: the adjoint of cho_solve(cholesky(K), r) and sum(log(diag(L))) is
    (K^-1 - a a^T) / 2 with K^-1 by `_cho_inverse`'s halves (150 -> 75 -> 37), and the
    HVP's solves are blocked; `X.T @ (-r / N)` goes through matmul_scalar_outwards.
    Gradient and Hessian-vector product against two-sided differences of the value and
    the gradient."""
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


# -- cho_inverse (h-gp, issue 12): inv(L @ L.T) from a Cholesky factor, by halves; made only
# by the lower rule spd_inverse_by_factor (after differentiation), so no source reaches it
# and the op harness never draws it.

@pytest.fixture(scope="module")
def cho_inverse():
    """The `_cho_inverse` helper exactly as emitted modules carry it."""
    namespace = {"np": np}
    exec(REGISTRY["cho_inverse"].prelude, namespace)  # noqa: S102
    return namespace["_cho_inverse"]


@pytest.mark.parametrize("n", [1, 64, 65, 130, 257])
def test_cho_inverse_matches_a_dense_inverse(cho_inverse, n):
    """Below, at and past the block of 64 rows (odd halves too); only the lower triangle is
    read, the result is exactly symmetric, the argument is not modified, float32 kept."""
    rng = np.random.default_rng(n)
    a = rng.standard_normal((n, n)) / np.sqrt(n) + 2 * np.eye(n)
    before = a.copy()
    got = cho_inverse(a)
    t = np.tril(a)
    assert_close(got, np.linalg.inv(t @ t.T), f"n={n}", rtol=1e-10)
    assert np.array_equal(got, got.T)
    assert np.array_equal(a, before)
    assert cho_inverse(a.astype(np.float32)).dtype == np.float32


def test_cho_inverse_derivative_rules_match_finite_differences():
    """Its VJP, JVP and batched JVP (vmap), on a hand-built graph sum(cho_inverse(L) * B),
    against two-sided differences along lower triangular directions."""
    from gradgen import ir
    from gradgen.autodiff.forward import batched_jvp, jvp
    from gradgen.autodiff.reverse import vjp
    from test_pass_golden import _raw, _run

    source = ("def f(L: Param[N, N], B: Data[N, N], U: Data[N, N], V: Data[2, N, N]):\n"
              "    return L\n")
    rng = np.random.default_rng(11)
    n = 5   # test_pass_golden.SIZES (whose T and D are dimension names: not used here)
    values = {"L": np.tril(rng.standard_normal((n, n))) + 3 * np.eye(n),
              "B": rng.standard_normal((n, n)), "U": np.tril(rng.standard_normal((n, n))),
              "V": np.tril(rng.standard_normal((2, n, n)))}
    with ir.building(REGISTRY):
        entry, _ = _raw(source)
        l, b, t, v = (a.node for a in entry.args)
        out = ir.make("sum", ir.make("cho_inverse", l) * b, axes=(0, 1), keepdims=False)
        grad = vjp([out], [ir.const(1.0)], [l])[0][0]
        tangent = jvp([out], {id(l): t})[0][0]
        batched = batched_jvp([out], {id(l): v})[0]
        got = [_run(entry, ir.Graph((l, b, t, v), (x,), {}), values)
               for x in (grad, tangent, batched)]

    def f(m):
        return np.sum(np.linalg.inv(m @ m.T) * values["B"])

    def fd(direction, h=1e-6):
        return (f(values["L"] + h * direction) - f(values["L"] - h * direction)) / (2 * h)

    assert_close(np.sum(got[0] * values["U"]), fd(values["U"]), "vjp . U")
    assert_close(got[1], fd(values["U"]), "jvp")
    assert_close(got[2], [fd(values["V"][0]), fd(values["V"][1])], "batched jvp")
