"""The special functions beyond the op harness (tests/test_ops.py checks their derivatives):
the accuracy of the emitted gammaln, digamma and polygamma helpers against math.lgamma and
mpmath; their special values; xlogy at 0; `inf` and masked softmax / log_softmax /
logsumexp; the stable rewrites of literal forms at large |z|; and float literals inside
`where` keeping float32.

References are written here, from math and mpmath (which sympy depends on), never from the
emitted helpers.
"""

from __future__ import annotations

import math
import types
import warnings

import mpmath
import numpy as np
import pytest

import gradgen
from gradgen import cli


def _module(text: str, **options) -> types.ModuleType:
    mod = types.ModuleType("special")
    exec(compile(gradgen.compile_source(text, "s.grad", **options), "s.grad", "exec"),
         mod.__dict__)
    return mod


@pytest.fixture(scope="module")
def helpers():
    """The `_gammaln`, `_digamma` and `_polygamma` helpers an emitted module carries."""
    mod = _module("def f(x: Param[N]):\n"
                  "    return sum(gammaln(x) + digamma(x) + polygamma(1, x))\n", modes=("grad",))
    return mod._gammaln, mod._digamma, mod._polygamma


def _points() -> np.ndarray:
    """Positive float64 values over the whole range, dense where the functions have roots
    or the helpers change method (0.5, 1, 1.4616..., 1.5, 2, 2.5, 10)."""
    rng = np.random.default_rng(7)
    edges = [0.5, 1.0, 1.4616321449683622, 1.5, 2.0, 2.5, 10.0]
    return np.concatenate([
        np.exp(rng.uniform(math.log(1e-300), math.log(1e300), 150)),
        rng.uniform(0.0, 3.0, 200), rng.uniform(3.0, 30.0, 100),
        *[e + rng.uniform(-1e-6, 1e-6, 15) for e in edges],
        np.nextafter(np.array(edges), 0.0), np.array(edges), [5e-324, 1e-300, 1e-10]])


def _ulps(got: np.ndarray, want: list) -> np.ndarray:
    """|got - want| in units in the last place of want (mpmath values, exact differences)."""
    return np.array([float(abs(mpmath.mpf(float(g)) - w) / mpmath.mpf(np.spacing(abs(float(w)))))
                     for g, w in zip(got, want)])


# The largest errors measured (tests/test_special.py, 2026-11-30): gammaln 2.3 ulp,
# digamma 3.4 ulp, polygamma(1..4) 2.5 / 2.9 / 3.2 / 4.2 ulp over ~13,000 points.
MAX_ULPS = 5.0


def test_gammaln_within_a_few_ulp_of_mpmath_and_math_lgamma(helpers):
    gammaln, _, _ = helpers
    x = _points()
    x = x[x < 2e305]
    got = gammaln(x)
    with mpmath.workdps(40):
        want = [mpmath.loggamma(mpmath.mpf(float(v))) for v in x]
    assert _ulps(got, want).max() <= MAX_ULPS
    # math.lgamma itself is off by up to ~1e-15 absolute (2e-8 relative near its root 2:
    # 1.9999998903871465 gives -4.634259442859e-08 where mpmath has -4.634259349413e-08)
    lg = np.array([math.lgamma(v) for v in x])
    assert np.all(np.abs(got - lg) <= 1e-14 * np.maximum(np.abs(lg), 1.0))


def test_digamma_and_polygamma_within_a_few_ulp_of_mpmath(helpers):
    _, digamma, polygamma = helpers
    x = _points()
    with mpmath.workdps(40):
        x = x[x > 1e-300]                  # digamma(5e-324) = -2e323 overflows to -inf
        want = [mpmath.digamma(mpmath.mpf(float(v))) for v in x]
        assert _ulps(digamma(x), want).max() <= MAX_ULPS
        x = x[(x > 1e-60) & (x < 1e60)]   # polygamma(n, x) ~ x^-(n+1) leaves float64 range
        for n in (1, 2):
            want = [mpmath.polygamma(n, mpmath.mpf(float(v))) for v in x]
            assert _ulps(polygamma(n, x), want).max() <= MAX_ULPS, n


def test_special_values_negative_arguments_and_dtypes(helpers):
    gammaln, digamma, polygamma = helpers
    with warnings.catch_warnings():
        warnings.simplefilter("error")       # the helpers warn about nothing
        g = gammaln(np.array([0.0, -1.0, -2.0, np.inf, np.nan, 3e305, -0.5, -2.5]))
        d = digamma(np.array([0.0, -1.0, -3.0, np.inf, np.nan, -0.5, -2.25]))
        p = polygamma(1, np.array([0.0, np.inf, np.nan, -0.5]))
    assert g[0] == g[1] == g[2] == np.inf and g[3] == np.inf and np.isnan(g[4])
    assert g[5] == np.inf                    # lgamma overflows float64
    assert g[6:] == pytest.approx([math.lgamma(-0.5), math.lgamma(-2.5)], rel=1e-14)
    assert d[0] == -np.inf and np.isnan(d[1]) and np.isnan(d[2]) and d[3] == np.inf
    assert np.isnan(d[4])
    assert d[5:] == pytest.approx([float(mpmath.digamma(-0.5)), float(mpmath.digamma(-2.25))],
                                  rel=1e-13)
    assert p[0] == np.inf and p[1] == 0.0 and np.isnan(p[2]) and np.isnan(p[3])
    # float32 stays float32 (rounded from float64), scalars stay scalars, shapes are kept
    x32 = np.array([0.25, 1.5, 7.0, 40.0], dtype=np.float32)
    for fn, ref in ((gammaln, math.lgamma), (digamma, lambda v: float(mpmath.digamma(v)))):
        r = fn(x32)
        assert r.dtype == np.float32
        assert np.array_equal(r, np.array([ref(float(v)) for v in x32], dtype=np.float32))
        assert np.ndim(fn(2.5)) == 0 and fn(np.ones((2, 0))).shape == (2, 0)
        assert fn(np.full((3, 4), 2.0).T).shape == (4, 3)
    assert polygamma(2, x32).dtype == np.float32 and np.ndim(polygamma(1, 3.0)) == 0


def test_xlogy_is_zero_at_x_zero_and_follows_jax_derivatives():
    mod = _module("def f(x: Param[N], y: Param[N]):\n    return sum(xlogy(x, y))\n")
    x, y = np.array([0.0, 0.0, 2.0, 0.0]), np.array([0.0, 3.0, 0.5, np.nan])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        v = mod._xlogy(x, y)
    assert v[:3].tolist() == [0.0, 0.0, 2.0 * math.log(0.5)] and np.isnan(v[3])
    assert mod.f(x[:3], y[:3]) == pytest.approx(2.0 * math.log(0.5), rel=1e-15)
    with np.errstate(divide="ignore", invalid="ignore"):
        dx, dy = mod.f_grad(x[1:3], y[1:3])
    # d/dx = log(y), d/dy = x / y (0 at x = 0 for y > 0), as JAX's xlogy
    assert dx.tolist() == [math.log(3.0), math.log(0.5)] and dy.tolist() == [0.0, 4.0]


def test_logaddexp_and_log_sigmoid_are_finite_at_large_arguments():
    mod = _module("def f(x: Param[N], y: Param[N]):\n"
                  "    return sum(logaddexp(x, y) + log_sigmoid(x))\n")
    x, y = np.array([-1000.0, 1000.0, -np.inf]), np.array([-1000.5, 999.0, 1.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        v, (dx, dy) = mod.f_value_and_grad(x[:2], y[:2])
    assert np.isfinite(v) and np.all(np.isfinite(dx)) and np.all(np.isfinite(dy))
    e = 1 / (1 + math.exp(-0.5))             # d logaddexp / dx at x - y = 0.5
    f = 1 / (1 + math.exp(-1.0))
    assert dx == pytest.approx([e + 1.0, f + 0.0], rel=1e-14)
    assert dy == pytest.approx([1 - e, 1 - f], rel=1e-14)
    with np.errstate(over="ignore"):
        _, (dx, dy) = mod.f_value_and_grad(x[2:], y[2:])   # -inf: no weight, no nan
    assert dx.tolist() == [1.0] and dy.tolist() == [1.0]


# ---------------------------------------------------------------- inf and masking

MASKED = """\
def masked(s: Param[N, C], mask: Data[N, C], w: Data[N, C]):
    z = where(mask > 0, s, -inf)
    p = softmax(z, axis=1)
    lp = where(mask > 0, log_softmax(z, axis=1), 0.0)
    return sum(w * p) + sum(w * lp) + sum(logsumexp(z, axis=1) ** 2)
"""


def _masked_reference(s, mask, w):
    """The same cost over the unmasked entries only (float64 NumPy)."""
    total = 0.0
    for row in range(s.shape[0]):
        keep = mask[row] > 0
        z = s[row, keep]
        lse = z.max() + math.log(np.exp(z - z.max()).sum())
        total += (w[row, keep] * np.exp(z - lse)).sum() + (w[row, keep] * (z - lse)).sum() \
            + lse ** 2
    return total


@pytest.fixture(scope="module")
def masked():
    rng = np.random.default_rng(3)
    s = rng.normal(size=(4, 5))
    mask = (rng.uniform(size=(4, 5)) > 0.5).astype(float)
    mask[:, 2] = 1.0                         # every row keeps an unmasked entry
    mask[3] = [0, 0, 1, 0, 0]                # one row keeps only one
    return _module(MASKED, hessian=True), s, mask, rng.normal(size=(4, 5)), rng


def test_masked_entries_get_probability_and_gradient_zero(masked):
    mod, s, mask, w, rng = masked
    off = mask == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")       # no overflow or invalid-value warnings
        value, g = mod.masked_value_and_grad(s, mask, w)
        v = rng.normal(size=s.shape)
        hvp = mod.masked_hvp(s, mask, w, v)
        hessian = mod.masked_hessian(s, mask, w)
        _, tangent = mod.masked_jvp(s, mask, w, v)
    for a in (g, hvp, hessian, tangent):
        assert np.all(np.isfinite(a))
    assert value == pytest.approx(_masked_reference(s, mask, w), rel=1e-12)
    assert np.all(g[off] == 0) and np.all(hvp[off] == 0)
    assert np.all(hessian[off] == 0) and np.all(hessian[:, :, off] == 0)
    # the gradient against differences of the reference, the HVP and the JVP against it
    eps, fd = 1e-6, np.zeros_like(s)
    for i in np.ndindex(s.shape):
        d = np.zeros_like(s)
        d[i] = eps
        fd[i] = (_masked_reference(s + d, mask, w) - _masked_reference(s - d, mask, w)) / (2 * eps)
    assert np.allclose(g, fd, rtol=1e-6, atol=1e-7)
    assert np.allclose(hessian.reshape(20, 20) @ v.ravel(), hvp.ravel(), rtol=1e-10, atol=1e-12)
    assert tangent == pytest.approx(float((g * v).sum()), rel=1e-10)
    # softmax of masked rows: probability 0 off the mask, a distribution on it
    soft = _module("def p(s: Param[N, C], mask: Data[N, C]):\n"
                   "    return softmax(where(mask > 0, s, -inf), axis=1)\n")
    probs = soft.p(s, mask)
    assert np.all(probs[off] == 0) and np.allclose(probs.sum(axis=1), 1.0)
    # float32 stays float32, with the same zeros
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        v32, g32 = mod.masked_value_and_grad(*(a.astype(np.float32) for a in (s, mask, w)))
    assert v32.dtype == g32.dtype == np.float32 and np.all(np.isfinite(g32))
    assert np.all(g32[off] == 0) and v32 == pytest.approx(value, rel=1e-5)


def test_fully_masked_row_gives_nan_value_and_zero_gradient(masked):
    """Documented (README): a row with every entry -inf has no distribution, so its
    softmax, log_softmax and logsumexp are nan, as JAX's softmax; the gradient of its
    entries is 0 (every one is masked out by the `where`)."""
    mod, s, mask, w, _ = masked
    mask = mask.copy()
    mask[1] = 0.0
    with np.errstate(invalid="ignore"):
        value, g = mod.masked_value_and_grad(s, mask, w)
    assert np.isnan(value)
    assert np.all(g[1] == 0)


def test_inf_is_a_constant_of_the_language():
    mod = _module("def f(x: Param[N]):\n    return sum(minimum(x, inf) + maximum(x, -inf))\n")
    assert mod.f(np.array([1.0, 2.0])) == 6.0
    assert "np.inf" in gradgen.compile_source(
        "def f(x: Param[N]):\n    return logsumexp(where(x > 0, x, -inf))\n", "s.grad")


# ---------------------------------------------------------------- stable rewrites

STABLE = """\
def softplus_forms(z: Param[N]):
    return sum(log(1 + exp(z))) + sum(log(exp(z) + 1.0)) + sum(log1p(exp(z)))

def log_sigmoid_form(z: Param[N]):
    return sum(log(sigmoid(z)))

def lse_forms(z: Param[N, C]):
    return sum(log(sum(exp(z), axis=1))) + sum(log(sum(exp(z), axis=0, keepdims=True))) \\
        + log(sum(exp(z)))
"""


def _softplus(x: float) -> float:
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))


def _lse(a: np.ndarray, axis=None) -> np.ndarray:
    m = np.max(a, axis=axis, keepdims=True)
    return np.squeeze(m, axis=axis) + np.log(np.sum(np.exp(a - m), axis=axis))


@pytest.fixture(scope="module")
def stable():
    return _module(STABLE)


@pytest.mark.parametrize("dtype, big", [(np.float64, [710.0, 1000.0, 1e5]),
                                        (np.float32, [89.0, 100.0, 1e4])])
def test_literal_forms_are_stable_at_large_z(stable, dtype, big):
    z = np.array([-b for b in big] + [-3.0, 0.5] + big, dtype=dtype)
    zs = [float(v) for v in z]
    with warnings.catch_warnings():
        warnings.simplefilter("error")       # no overflow warnings either
        v, g = stable.softplus_forms_value_and_grad(z)
        v2, g2 = stable.log_sigmoid_form_value_and_grad(z)
        zz = np.stack([z, z[::-1] * 0.5]).astype(dtype)
        v3, g3 = stable.lse_forms_value_and_grad(zz)
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    tiny = 1e-300 if dtype == np.float64 else 1e-37   # float32: sigmoid(-89) is subnormal
    for a in (v, g, v2, g2, v3, g3):
        assert a.dtype == dtype and np.all(np.isfinite(a))
    assert v == pytest.approx(3 * sum(_softplus(x) for x in zs), rel=rtol)
    assert g == pytest.approx([3 * _sigmoid(x) for x in zs], rel=rtol, abs=tiny)
    assert v2 == pytest.approx(-sum(_softplus(-x) for x in zs), rel=rtol)
    assert g2 == pytest.approx([_sigmoid(-x) for x in zs], rel=rtol, abs=tiny)
    z64 = zz.astype(np.float64)
    want = _lse(z64, 1).sum() + _lse(z64, 0).sum() + _lse(z64)
    assert v3 == pytest.approx(want, rel=rtol)
    soft = lambda a, axis: np.exp(a - np.expand_dims(_lse(a, axis), axis if axis is not None
                                                      else ()))
    want_g = soft(z64, 1) + soft(z64, 0) + np.exp(z64 - _lse(z64))
    assert np.allclose(g3, want_g, rtol=rtol, atol=tiny)


def test_show_ir_rules_names_the_stabilizing_rules(tmp_path, capsys):
    src = tmp_path / "stable.grad"
    src.write_text(STABLE, encoding="utf-8")
    assert cli.main(["show", "--ir", "--rules", str(src)]) == 0
    out = capsys.readouterr().out
    for rule in ("log_one_plus_exp [stabilize] on log x2", "log1p_exp [stabilize] on log1p",
                 "log_sigmoid [stabilize] on log", "log_sum_exp [stabilize] on log x3"):
        assert rule in out, rule
    assert "%" in out and " exp " not in out.split("# log_sigmoid_form")[0].split(
        "# softplus_forms")[1]   # no exp left in the softplus forms


# ---------------------------------------------------------------- dtype of where's numbers

def test_float_literals_in_where_keep_float32():
    """Regression (issue 10): `where(x >= 0, 1.0, 0.0)` was a float64 array (NumPy's
    default for Python numbers), which made the float32 cost float64."""
    mod = _module("def f(x: Param[N]):\n    return sum(where(x >= 0, 1.0, 0.0) * x)\n\n"
                  "def g(x: Param[()]):\n    return where(x >= 0, 2, 0) * x\n")
    x = np.array([-1.0, 2.0, 3.0], dtype=np.float32)
    value, grad = mod.f_value_and_grad(x)
    assert value.dtype == np.float32 and value == 5.0
    assert grad.dtype == np.float32 and grad.tolist() == [0.0, 1.0, 1.0]
    v, dx = mod.g_value_and_grad(np.float32(3.0))
    assert v.dtype == np.float32 and v == 6.0 and dx.dtype == np.float32 and dx == 2.0
    assert mod.f(x.astype(np.float64)).dtype == np.float64


@pytest.mark.parametrize("order", ["2.5", "x", "9", "-1", "N"])
def test_polygamma_order_must_be_an_integer_literal(order):
    src = f"def f(x: Param[N]):\n    return sum(polygamma({order}, x))\n"
    with pytest.raises(gradgen.CompileError) as info:
        gradgen.compile_source(src, "p.grad")
    assert "p.grad:2:16: error: polygamma(): the order n of polygamma(n, x) must be an " \
           "integer literal from 0 to 8" in str(info.value)


def test_polygamma_of_order_zero_is_digamma():
    src = "def f(x: Param[N]):\n    return sum(polygamma(0, x))\n"
    forward = gradgen.compile_source(src, "p.grad", modes=("grad",)).split("\ndef f(")[1]
    forward = forward.split("\ndef ")[0]
    assert "_digamma(x)" in forward and "_polygamma" not in forward
