"""Scans and triangular solves beyond the op harness (tests/test_ops.py has their cases):
logcumsumexp at large and -inf entries and in float32, the emitted blocked triangular solve
at sizes the harness does not reach, the formula of expscan's VJP, and the diagnostics of
the new built-ins. References are written here from their definitions (math, loops)."""

from __future__ import annotations

import math
import types

import numpy as np
import pytest

import gradgen
from gradgen.ops import REGISTRY

LCSE = """\
def fwd(x: Param[N], w: Data[N]):
    return sum(w * logcumsumexp(x))


def rev(x: Param[N, D], w: Data[N, D]):
    return sum(w * logcumsumexp(x, axis=0, reverse=True))
"""


@pytest.fixture(scope="module")
def lcse():
    mod = types.ModuleType("lcse_grad")
    source = gradgen.compile_source(LCSE, "lcse.grad", hessian=True)
    exec(compile(source, "lcse", "exec"), mod.__dict__)  # noqa: S102
    return mod


def _lcse_ref(x):
    """log(sum(exp(x[:j + 1]))) for every j, with math.fsum of exponentials shifted by the
    running maximum."""
    out = []
    for j in range(len(x)):
        m = max(x[:j + 1])
        out.append(m + math.log(math.fsum(math.exp(v - m) for v in x[:j + 1])))
    return np.array(out)


def _lcse_grad_ref(x, w):
    """d/dx_i sum_j w_j y_j = sum_{j >= i} w_j exp(x_i - y_j)."""
    y = _lcse_ref(x)
    return np.array([math.fsum(w[j] * math.exp(x[i] - y[j]) for j in range(i, len(x)))
                     for i in range(len(x))])


def _lcse_hvp_ref(x, w, t, eps=1e-5):
    """Central differences of the reference gradient along t."""
    return (_lcse_grad_ref(x + eps * t, w) - _lcse_grad_ref(x - eps * t, w)) / (2 * eps)


W = np.array([0.7, -1.3, 2.1, 0.4, -0.6])
T = np.array([0.3, -0.8, 0.5, 1.1, -0.2])


@pytest.mark.parametrize("shift", [0.0, 800.0, -800.0, 1e5])
def test_logcumsumexp_large_entries(lcse, shift):
    """Entries far beyond exp's range: value, gradient and HVP finite and right."""
    x = np.array([0.2, 1.5, -0.7, 3.0, 2.2]) + shift
    # x_i - y_j loses the low bits of x: an absolute error of about |x| ulp(1) in exponents
    rtol = 1e-12 + 1e-13 * abs(shift)
    assert np.allclose(lcse.fwd(x, W), np.sum(W * _lcse_ref(x)), rtol=1e-14, atol=0)
    np.testing.assert_allclose(lcse.fwd_grad(x, W), _lcse_grad_ref(x, W), rtol=rtol)
    np.testing.assert_allclose(lcse.fwd_hvp(x, W, T), _lcse_hvp_ref(x, W, T),
                               rtol=1e-6 + 1e-10 * abs(shift))   # differences of x + 1e-5 t
    np.testing.assert_allclose(lcse.fwd_hessian(x, W) @ T, lcse.fwd_hvp(x, W, T), rtol=rtol)
    _, tangent = lcse.fwd_jvp(x, W, T)
    assert math.isclose(tangent, lcse.fwd_grad(x, W) @ T, rel_tol=rtol)


def test_logcumsumexp_minus_inf_entries(lcse):
    """-inf entries (masked) after a finite one: no nan anywhere, zero derivatives there,
    and the others as if the masked entries were not there."""
    x = np.array([0.5, -np.inf, 2.0, -np.inf, -1.0])
    kept = np.array([0, 2, 4])
    value = lcse.fwd(x, W)
    grad = lcse.fwd_grad(x, W)
    hvp = lcse.fwd_hvp(x, W, T)
    hess = lcse.fwd_hessian(x, W)
    _, tangent = lcse.fwd_jvp(x, W, np.where(np.isinf(x), 0.0, T))
    for a in (value, grad, hvp, hess, tangent):
        assert not np.any(np.isnan(a))
    y = _lcse_ref(x[kept])      # the running sums skip the masked entries
    y_full = np.repeat(y, [2, 2, 1])
    assert math.isclose(value, np.sum(W * y_full), rel_tol=1e-14)
    np.testing.assert_array_equal(grad[[1, 3]], 0.0)
    w_kept = np.add.reduceat(W, kept)   # a masked entry's weight goes with the one before
    np.testing.assert_allclose(grad[kept], _lcse_grad_ref(x[kept], w_kept), rtol=1e-13)


def test_logcumsumexp_reverse_two_dimensional(lcse):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(6, 3)) * 50
    w = rng.normal(size=(6, 3))
    ref = np.stack([_lcse_ref(x[::-1, d])[::-1] for d in range(3)], axis=1)
    assert math.isclose(lcse.rev(x, w), np.sum(w * ref), rel_tol=1e-12)
    grad = np.stack([_lcse_grad_ref(x[::-1, d], w[::-1, d])[::-1] for d in range(3)], axis=1)
    np.testing.assert_allclose(lcse.rev_grad(x, w), grad, rtol=1e-11)


def test_logcumsumexp_float32_beyond_exp_range(lcse):
    """float32 overflows exp at 88.7: entries at 100 stay finite and float32."""
    x = (np.array([0.2, 1.5, -0.7, 3.0, 2.2]) + 100).astype(np.float32)
    w = W.astype(np.float32)
    value, grad = lcse.fwd_value_and_grad(x, w)
    assert grad.dtype == np.float32 and np.asarray(value).dtype == np.float32
    x64 = x.astype(np.float64)
    assert math.isclose(value, np.sum(W * _lcse_ref(x64)), rel_tol=1e-6)
    np.testing.assert_allclose(grad, _lcse_grad_ref(x64, W), rtol=1e-4)   # |x| ~ 100: ulp 8e-6


def _helper(op, name):
    namespace = {"np": np}
    exec(REGISTRY[op].prelude, namespace)  # noqa: S102
    return namespace[name]


def test_expscan_vjp_formula():
    """expscan's VJP (v_bar = expscan of g the other way with a and b swapped, a_bar =
    v * v_bar, b_bar = g * out) against central differences of <g, expscan(v, a, b)>. (No
    emitted function differentiates expscan in reverse mode; its JVP runs in every HVP.)"""
    expscan = _helper("expscan", "_expscan")
    rng = np.random.default_rng(5)
    v, g = rng.normal(size=(2, 5))
    a, b = rng.normal(size=(2, 5))
    for reverse in (False, True):
        out = expscan(v, a, b, axis=0, reverse=reverse)
        ref = np.array([sum(v[i] * math.exp(a[i] + b[j]) for i in
                            (range(j, 5) if reverse else range(j + 1))) for j in range(5)])
        np.testing.assert_allclose(out, ref, rtol=1e-13)
        v_bar = expscan(g, b, a, axis=0, reverse=not reverse)
        rule = {"v": v_bar, "a": v * v_bar, "b": g * out}
        for name in "vab":
            num = np.zeros(5)
            for k in range(5):
                args = {"v": v.copy(), "a": a.copy(), "b": b.copy()}
                args[name][k] += 1e-6
                up = g @ expscan(args["v"], args["a"], args["b"], axis=0, reverse=reverse)
                args[name][k] -= 2e-6
                down = g @ expscan(args["v"], args["a"], args["b"], axis=0, reverse=reverse)
                num[k] = (up - down) / 2e-6
            np.testing.assert_allclose(rule[name], num, rtol=1e-7, atol=1e-9)


def _substitute(L, b, lower):
    """Row-by-row substitution with the lower (upper) triangle of one matrix L."""
    n = L.shape[0]
    x = np.array(b, dtype=float)
    for i in range(n) if lower else range(n - 1, -1, -1):
        done = slice(0, i) if lower else slice(i + 1, n)
        x[i] = (x[i] - L[i, done] @ x[done]) / L[i, i]
    return x


@pytest.mark.parametrize("lower", [True, False])
def test_blocked_triangular_solve(lower):
    """The emitted helper past its block size (150 rows: two halves of 75, each two blocks
    of 37 and 38), reading only its triangle, for a vector, a matrix and a batch."""
    solve = _helper("solve_triangular", "_solve_triangular")
    rng = np.random.default_rng(7)
    n = 150
    a = rng.normal(size=(2, n, n)) / np.sqrt(n) + 2 * np.eye(n)
    noisy = a + 1e3 * (np.triu(np.ones((n, n)), 1) if lower else np.tril(np.ones((n, n)), -1))
    b, B = rng.normal(size=n), rng.normal(size=(2, n, 3))
    x = solve(noisy[0], b, lower=lower)
    np.testing.assert_allclose(x, _substitute(a[0], b, lower), rtol=1e-10, atol=1e-12)
    X = solve(noisy, B, lower=lower)
    assert X.shape == (2, n, 3)
    for k in range(2):
        for c in range(3):
            np.testing.assert_allclose(X[k, :, c], _substitute(a[k], B[k, :, c], lower),
                                       rtol=1e-10, atol=1e-12)
    Xv = solve(noisy, b, lower=lower)     # a vector against a batch of matrices
    np.testing.assert_allclose(Xv[1], _substitute(a[1], b, lower), rtol=1e-10, atol=1e-12)


def test_cumprod_gradient_with_negative_entries():
    """cumprod's derivatives hold for any nonzero entries (the documented domain)."""
    text = "def f(x: Param[4]):\n    return sum(cumprod(x, reverse=True))\n"
    mod = types.ModuleType("cumprod_grad")
    exec(compile(gradgen.compile_source(text, "c.grad"), "c", "exec"), mod.__dict__)  # noqa: S102
    x = np.array([-1.5, 0.5, -2.0, 3.0])
    # sum_j prod_{k >= j} x_k; d/dx_i = sum_{j <= i} prod_{k >= j, k != i} x_k
    ref = [sum(math.prod(x[k] for k in range(j, 4) if k != i) for j in range(i + 1))
           for i in range(4)]
    np.testing.assert_allclose(mod.f_grad(x), ref, rtol=1e-14)


@pytest.mark.parametrize("body, message", [
    ("a, b = split(v, 2)\n    return sum(a)", "cannot split axis 0 of length 5 into 2 equal"),
    ("a, b = split(x, 2)\n    return sum(a)", "declare it as a multiple, such as 2 * M"),
    ("a, b = split(m, 0)\n    return sum(a)", "the number of parts must be positive"),
    ("a, b = split(m, 2.5)\n    return sum(a)", "must be an integer literal"),
    ("a = split(m, 2)\n    return sum(a)", "unpack it"),
    ("a, b, c = split(m, 2)\n    return sum(a)", "cannot unpack 2 values into 3 names"),
    ("return sum(tril(v))", "needs a matrix"),
    ("return sum(triu(m, k=N))", "must be an integer literal"),
    ("return sum(cumsum(m, axis=2))", "axis 2 is out of range"),
    ("return sum(logcumsumexp(m, reverse=1))", "must be True or False"),
    ("return sum(cumprod(s))", "not a scalar"),
    ("return sum(solve_triangular(m, v))", "solve_triangular"),
    ("return sum(cho_solve(m, x))", "solve_triangular(A, b)"),
])
def test_errors(body, message):
    text = (f"def f(m: Param[4, 4], v: Param[5], x: Param[N], s: Param[()]):\n"
            f"    {body}\n")
    with pytest.raises(gradgen.CompileError) as err:
        gradgen.compile_source(text, "f.grad")
    assert message in str(err.value)
    assert "f.grad:" in str(err.value)


def test_log_of_cumsum_of_exp_is_logcumsumexp():
    """The literal form is rewritten to the stable op (rule log_cumsum_exp): finite at 1000."""
    text = "def f(x: Param[3]):\n    return sum(log(cumsum(exp(x), reverse=True)))\n"
    source = gradgen.compile_source(text, "f.grad")
    assert "logaddexp.accumulate" in source and "np.cumsum" not in source
    mod = types.ModuleType("f_grad")
    exec(compile(source, "f", "exec"), mod.__dict__)  # noqa: S102
    x = np.array([1000.0, 999.0, 1001.0])
    ref = _lcse_ref(x[::-1])[::-1]
    assert math.isclose(mod.f(x), ref.sum(), rel_tol=1e-15)
    grad = _lcse_grad_ref(x[::-1], np.ones(3))[::-1]
    np.testing.assert_allclose(mod.f_grad(x), grad, rtol=1e-12)
