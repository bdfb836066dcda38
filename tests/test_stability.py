"""Numerical stability of emitted values and derivatives at large inputs (±30, ±100, ±1000):
where the true value and derivative are finite, no NaN or inf, and the values are right."""

from __future__ import annotations

import math
import types
import warnings

import numpy as np
import pytest
from compiled import compile_text

BIG = [30.0, 100.0, 1000.0]
POINTS = [s * b for b in BIG for s in (-1.0, 1.0)]


def _module(text: str) -> types.ModuleType:
    mod = types.ModuleType("stability")
    exec(compile(compile_text(text, "s.grad"), "s.grad", "exec"), mod.__dict__)
    return mod


def _softplus(x: float) -> float:
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))


# (source body in x, exact value, exact derivative) for scalar x
SCALAR_CASES = {
    "softplus": ("softplus(x)", _softplus, _sigmoid),
    "sigmoid": ("sigmoid(x)", _sigmoid, lambda x: _sigmoid(x) * (1 - _sigmoid(x))),
    "logistic written out": ("1 / (1 + exp(-x))", _sigmoid,
                             lambda x: _sigmoid(x) * (1 - _sigmoid(x))),
    "log(sigmoid)": ("log(sigmoid(x))", lambda x: -_softplus(-x), lambda x: _sigmoid(-x)),
    "log(1 / (1 + exp(-x)))": ("log(1 / (1 + exp(-x)))", lambda x: -_softplus(-x),
                               lambda x: _sigmoid(-x)),
    # sigmoid of a negation (the op sigmoid_neg) and its log, and softplus of a negation,
    # whose derivative it is
    "sigmoid(-x)": ("sigmoid(-x)", lambda x: _sigmoid(-x),
                    lambda x: -_sigmoid(-x) * (1 - _sigmoid(-x))),
    "log(sigmoid(-x))": ("log(sigmoid(-x))", lambda x: -_softplus(x), lambda x: -_sigmoid(x)),
    "softplus(-x)": ("softplus(-x)", lambda x: _softplus(-x), lambda x: -_sigmoid(-x)),
}


@pytest.mark.parametrize("name", list(SCALAR_CASES))
@pytest.mark.parametrize("x", POINTS)
def test_scalar_functions_are_stable(name, x):
    body, value, deriv = SCALAR_CASES[name]
    mod = _module(f"def f(x: Param[()]):\n    return {body}\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # no overflow/invalid warnings either
        v, g = mod.f_value_and_grad(np.float64(x))
        _, t = mod.f_jvp(np.float64(x), np.float64(1.0))
    assert np.isfinite(v) and np.isfinite(g) and np.isfinite(t)
    assert v == pytest.approx(value(x), rel=1e-12, abs=1e-300)
    assert g == pytest.approx(deriv(x), rel=1e-9, abs=1e-300)
    assert t == pytest.approx(g, rel=1e-12, abs=1e-300)


def _exact_logsumexp(row):
    m = max(row)
    return m + math.log(sum(math.exp(r - m) for r in row))


@pytest.mark.parametrize("scale", BIG)
def test_logsumexp_softmax_log_softmax_and_cross_entropy(scale):
    rng = np.random.default_rng(int(scale))
    x = rng.uniform(-1, 1, size=(4, 5)) * scale
    x[0, 0] = scale          # a dominating entry: others underflow in a naive softmax
    x[1, :] = -scale
    Y = np.eye(5)[[1, 2, 0, 4]]
    mod = _module(
        "def lse(x: Param[4, 5]):\n    return sum(logsumexp(x, axis=1))\n"
        "def sm(x: Param[4, 5], w: Data[4, 5]):\n    return sum(softmax(x, axis=1) * w)\n"
        "def lsm(x: Param[4, 5], w: Data[4, 5]):\n    return sum(log_softmax(x, axis=1) * w)\n"
        "def logsm(x: Param[4, 5], w: Data[4, 5]):\n"
        "    return sum(log(softmax(x, axis=1)) * w)\n"
        "def xent(x: Param[4, 5], Y: Data[4, 5]):\n"
        "    return -mean(sum(x * Y, axis=1) - logsumexp(x, axis=1))\n")
    w = rng.normal(size=(4, 5))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        results = {
            "lse": mod.lse_value_and_grad(x),
            "sm": mod.sm_value_and_grad(x, w),
            "lsm": mod.lsm_value_and_grad(x, w),
            "logsm": mod.logsm_value_and_grad(x, w),
            "xent": mod.xent_value_and_grad(x, Y),
        }
    for name, (v, g) in results.items():
        assert np.isfinite(v) and np.all(np.isfinite(g)), name
    lse_rows = np.array([_exact_logsumexp(r) for r in x])
    assert results["lse"][0] == pytest.approx(lse_rows.sum(), rel=1e-12)
    softmax = np.exp(x - lse_rows[:, None])
    np.testing.assert_allclose(results["lse"][1], softmax, rtol=1e-12, atol=1e-300)
    log_softmax = x - lse_rows[:, None]
    assert results["lsm"][0] == pytest.approx(np.sum(log_softmax * w), rel=1e-10)
    assert results["logsm"][0] == pytest.approx(np.sum(log_softmax * w), rel=1e-10)
    np.testing.assert_allclose(results["logsm"][1], results["lsm"][1], rtol=1e-10,
                               atol=1e-12)
    np.testing.assert_allclose(results["xent"][1], (softmax - Y) / 4, rtol=1e-10,
                               atol=1e-300)


def test_sqrt_at_zero_follows_the_documented_convention():
    mod = _module("def f(x: Param[3]):\n    return sum(sqrt(x))\n")
    with np.errstate(divide="ignore"):
        g = mod.f_grad(np.array([0.0, 1.0, 4.0]))
    assert g[0] == np.inf and g[1] == 0.5 and g[2] == 0.25
