"""SciPy without glue (issue 14, item 1; SPEC §4): `gradgen.scipy` hands a compiled entry
point to `scipy.optimize.minimize` and `least_squares`, packing the Params into one flat
vector. The references here are SciPy's own results on hand-written functions, finite
differences and the known solution of a noise-free problem, never gradgen's output.

The example modules are imported from examples/ as they are (no compilation); the one
vector-output program is compiled once.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from emitted import example_module

import gradgen
from gradgen.scipy import least_squares, minimize, problem

# scipy.optimize is imported by the tests (gradgen.scipy imports it when called), not while
# collecting: every xdist worker collects every file (~0.4 s of CPU each).
pytestmark = pytest.mark.skipif(importlib.util.find_spec("scipy") is None,
                                reason="scipy is not installed")


@pytest.fixture(scope="module")
def mlp():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 3))
    Y = np.eye(3)[rng.integers(0, 3, size=30)]
    V0, W0 = 0.3 * rng.normal(size=(3, 4)), 0.3 * rng.normal(size=(4, 3))
    return example_module("mlp"), X, Y, V0, W0


def _reference_cost(X, Y, V, W):   # the MLP of mlp.grad, written again in NumPy
    U = (1 / (1 + np.exp(-(X @ V)))) @ W
    m = U.max(axis=1, keepdims=True)
    lse = np.log(np.exp(U - m).sum(axis=1)) + m[:, 0]
    return -np.mean((U * Y).sum(axis=1) - lse)


def test_pack_unpack_and_the_objective(mlp):
    m, X, Y, V0, W0 = mlp
    p = problem(m.cost, X, Y, V0, W0)
    assert p.wrt == ("V", "W") and p.x0.shape == (24,)
    V, W = p.unpack(p.x0)
    assert np.array_equal(V, V0) and np.array_equal(W, W0)
    x = np.random.default_rng(1).normal(size=24)
    V, W = p.unpack(x)
    assert np.isclose(p.fun(x), _reference_cost(X, Y, V, W), rtol=1e-12)
    # the gradient and the HVP against central differences of the reference
    h = 1e-6
    fd = np.array([(_reference_cost(X, Y, *p.unpack(x + h * e))
                    - _reference_cost(X, Y, *p.unpack(x - h * e))) / (2 * h)
                   for e in np.eye(24)])
    assert np.allclose(p.jac(x), fd, atol=1e-7)
    value, g = p.fun_and_jac(x)
    assert value == p.fun(x) and np.allclose(g, fd, atol=1e-7)
    v = np.random.default_rng(2).normal(size=24)
    fd_hv = (p.jac(x + h * v) - p.jac(x - h * v)) / (2 * h)
    assert np.allclose(p.hessp(x, v), fd_hv, atol=1e-6)
    assert np.allclose(p.hessp(x, v[:, None]), fd_hv, atol=1e-6)   # an (n, 1) column
    H = p.hess(x)   # no cost_hessian in mlp_grad.py: one HVP per column
    assert H.shape == (24, 24) and np.allclose(H, H.T, atol=1e-10)
    assert np.allclose(H @ v, p.hessp(x, v), atol=1e-10)
    with pytest.raises(ValueError, match="expected a vector of 24 entries"):
        p.fun(np.zeros(23))


def test_minimize_with_each_kind_of_method(mlp):
    m, X, Y, V0, W0 = mlp
    start = _reference_cost(X, Y, V0, W0)
    for method in ("L-BFGS-B", "trust-ncg", "Newton-CG", "trust-exact", "Nelder-Mead"):
        res = minimize(m.cost, X, Y, V0, W0, method=method, options={"maxiter": 60})
        V, W = res.params
        assert V.shape == V0.shape and W.shape == W0.shape
        assert np.isclose(res.fun, _reference_cost(X, Y, V, W), rtol=1e-12)
        assert res.fun < start, method
    assert np.array_equal(V0, mlp[3]) and np.array_equal(W0, mlp[4])   # not modified
    # res.jac is the gradient at the result (by cost_value_and_grad), and it has shrunk
    res = minimize(m.cost, X, Y, V0, W0, method="trust-ncg", options={"maxiter": 40})
    assert np.allclose(res.jac, np.concatenate([d.ravel() for d in m.cost_grad(X, Y, *res.params)]))
    assert np.linalg.norm(res.jac) < 0.5 * np.linalg.norm(problem(m.cost, X, Y, V0, W0).jac(
        np.concatenate([V0.ravel(), W0.ravel()])))


def test_minimize_options_are_what_the_method_uses(mlp):
    m, X, Y, V0, W0 = mlp
    p = problem(m.cost, X, Y, V0, W0)
    assert set(p.minimize_options("trust-ncg")) == {"fun", "x0", "method", "jac", "hessp"}
    assert set(p.minimize_options("trust-exact")) == {"fun", "x0", "method", "jac", "hess"}
    assert set(p.minimize_options("L-BFGS-B")) == {"fun", "x0", "method", "jac"}
    assert set(p.minimize_options("Nelder-Mead")) == {"fun", "x0", "method"}

    import scipy.optimize as scipy_optimize
    res = scipy_optimize.minimize(p.fun, p.x0, jac=p.jac, hessp=p.hessp, method="trust-ncg")
    assert res.success


def test_trust_exact_with_the_emitted_hessian():
    m = example_module("newton")   # compiled with --hessian; one vector Param and a float
    rng = np.random.default_rng(4)
    X = np.hstack([rng.normal(size=(60, 3)), np.ones((60, 1))])
    y = np.where(X @ np.array([1.0, -2.0, 0.5, 0.3]) + rng.normal(size=60) > 0, 1.0, -1.0)
    p = problem(m.loss, X, y, np.zeros(4), 0.1)
    assert p.wrt == ("w",)
    w = rng.normal(size=4)
    s = 1 / (1 + np.exp(y * (X @ w)))   # the logistic loss's Hessian, by hand
    H = (X.T * (s * (1 - s))) @ X / 60 + 0.1 * np.eye(4)
    assert np.allclose(p.hess(w), H, atol=1e-12)
    res = minimize(m.loss, X, y, np.zeros(4), 0.1, method="trust-exact",
                   options={"gtol": 1e-8})
    assert res.success and res.params.shape == (4,)
    assert np.linalg.norm(m.loss_grad(X, y, res.params, 0.1)) < 1e-8


RESIDUALS = '''
def resid(X: Data[N, D], y: Data[N], w: Param[D], b: Param[()]):
    """Residuals of a tanh model."""
    return tanh(X @ w + b) - y
'''


def test_least_squares_by_a_linear_operator():
    mod = gradgen.load_source(RESIDUALS, "resid.grad", modes=("vjp", "jvp"))
    rng = np.random.default_rng(5)
    X = rng.normal(size=(40, 3))
    w_true, b_true = np.array([0.5, -0.3, 0.2]), 0.1
    y = np.tanh(X @ w_true + b_true)
    res = least_squares(mod.resid, X, y, np.zeros(3), 0.0)
    w, b = res.params
    assert np.allclose(w, w_true, atol=1e-8) and np.isclose(b, b_true, atol=1e-8)
    assert b.shape == ()
    p = problem(mod.resid, X, y, np.zeros(3), 0.0)
    J = p.jac_operator(np.array([0.1, 0.2, 0.3, 0.4]))
    # the dense Jacobian by hand: d tanh(z) = (1 - tanh(z)^2) dz
    t = np.tanh(X @ np.array([0.1, 0.2, 0.3]) + 0.4)
    dense = (1 - t ** 2)[:, None] * np.hstack([X, np.ones((40, 1))])
    assert np.allclose(J.matmat(np.eye(4)), dense, atol=1e-12)   # columns as (n, 1)
    u = rng.normal(size=40)
    assert np.allclose(J.rmatvec(u), dense.T @ u, atol=1e-12)
    assert np.allclose(J.rmatvec(u[:, None]).ravel(), dense.T @ u, atol=1e-12)
    with pytest.raises(ValueError, match="resid_hvp is not in the module"):
        p.hessp(p.x0, p.x0)


def test_wrt_is_read_off_the_module_and_can_be_given():
    mod = gradgen.load_source(RESIDUALS.replace("tanh(X @ w + b) - y", "sum((X @ w + b - y) ** 2)"),
                              "sq.grad", wrt=("b",), modes=("grad",))
    rng = np.random.default_rng(6)
    X, y, w = rng.normal(size=(10, 3)), rng.normal(size=10), rng.normal(size=3)
    p = problem(mod.resid, X, y, w, 0.0)
    assert p.wrt == ("b",)
    res = minimize(mod.resid, X, y, w, 0.0, method="BFGS")
    assert np.isclose(res.params, np.mean(y - X @ w), atol=1e-6)   # the least-squares b
    with pytest.raises(ValueError, match="no argument 'v'"):
        problem(mod.resid, X, y, w, 0.0, wrt=("v",))
    with pytest.raises(TypeError, match="takes 4 arguments"):
        problem(mod.resid, X, y, w)
