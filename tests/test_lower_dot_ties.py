"""The lower rules `sum_product_dot` (a full sum of a product is `np.vdot`),
`where_tie_split` (maximum's/minimum's adjoint as a product with tie weights) and
`mul_off_diagonal`/`div_off_diagonal` (`x * (1 - eye(N))` sets the diagonal to 0), on a
t-SNE-like cost compiled once: values against NumPy written here, float32 kept, the NaN behaviour the
rule documents, and the array API target (which has neither vdot nor arithmetic on
booleans) on array_api_strict. Their IR before/after: tests/golden/passes/lower_*.txt."""

from __future__ import annotations

import types

import numpy as np
import pytest

import gradgen

SOURCE = """\
def cost(x: Param[N], w: Data[N]):
    q = maximum(x, 0.5)
    return sum(w * log(q)) + sum(x ** 2)


def op(x: Param[N]):
    return minimum(x, 0.5)


def tsne(Y: Param[N, E], P: Data[N, N]):
    sum_Y = sum(Y ** 2, axis=1)
    num = 1 / (1 + sum_Y[:, None] + sum_Y[None, :] - 2 * Y @ Y.T)
    num = num * (1 - eye(N))
    Q = maximum(num / sum(num), 1e-12)
    return sum(P * log(P / Q))
"""


def _tsne_reference(Y, P):
    """The t-SNE KL cost and its gradient, written out (benchmarks/models.py's formula
    with the clipped entries' mass): no entry of this Q is clipped."""
    sum_Y = (Y ** 2).sum(axis=1)
    num = 1 / (1 + sum_Y[:, None] + sum_Y[None, :] - 2 * Y @ Y.T)
    np.fill_diagonal(num, 0)
    Q = num / num.sum()
    assert (Q[~np.eye(len(Y), dtype=bool)] > 1e-12).all()
    Qc = np.maximum(Q, 1e-12)
    value = np.sum(P * np.log(P / Qc))
    live = Q > 1e-12
    S = P[live].sum()
    dd2 = np.where(live, P * num - S * Q * num, 0.0)
    dd2 = dd2 + dd2.T
    return value, 2 * (dd2.sum(axis=1)[:, None] * Y - dd2 @ Y)


def _tsne_data(n=7, seed=3):
    rng = np.random.default_rng(seed)
    A = rng.random((n, n)) + 0.1
    P = A + A.T
    np.fill_diagonal(P, 0)
    P = np.maximum(P / P.sum(), 1e-12)
    return rng.standard_normal((n, 2)), P


def _load(code: str) -> types.ModuleType:
    mod = types.ModuleType("dot_ties_grad")
    exec(compile(code, "<case>", "exec"), mod.__dict__)  # noqa: S102
    return mod


@pytest.fixture(scope="module")
def text() -> str:
    return gradgen.compile_source(SOURCE, "case.grad")


@pytest.fixture(scope="module")
def mod(text):
    return _load(text)


@pytest.fixture(scope="module")
def amod():
    """The array API module."""
    return _load(gradgen.compile_source(SOURCE, "case.grad", target="array-api"))


X = np.array([0.25, 0.5, 0.75, 2.0, 0.5])      # below, tie, above, above, tie
W = np.array([1.5, -2.0, 0.5, 3.0, 4.0])


def _reference(x, w):
    """The value and gradient, by hand: maximum's derivative 1 above 0.5, 1/2 at the tie."""
    q = np.maximum(x, 0.5)
    share = np.where(x > 0.5, 1.0, np.where(x == 0.5, 0.5, 0.0))
    return np.sum(w * np.log(q)) + np.sum(x * x), share * w / q + 2 * x


def test_emitted_code_uses_vdot_and_tie_weights(text):
    body = text[text.index("def cost_value_and_grad"):]
    assert "np.vdot(" in body and "np.where" not in body     # nor in the JVP, HVP
    assert "_tie_split(x > 0.5, x == 0.5, x.dtype)" in body
    tsne = text[text.index("def tsne_value_and_grad"):]
    assert "np.eye" not in tsne and "_zero_diagonal(" in tsne


def test_tsne_value_gradient_float32_and_array_api(mod, amod):
    Y, P = _tsne_data()
    value, grad = mod.tsne_value_and_grad(Y, P)
    ref_value, ref_grad = _tsne_reference(Y, P)
    np.testing.assert_allclose(value, ref_value, rtol=1e-12)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-10, atol=1e-14)
    v32, g32 = mod.tsne_value_and_grad(Y.astype(np.float32), P.astype(np.float32))
    assert g32.dtype == np.float32 and np.asarray(v32).dtype == np.float32
    np.testing.assert_allclose(g32, ref_grad, rtol=2e-4, atol=1e-6)
    # the linear derivatives of zero_diagonal: the HVP against a difference of gradients
    V = np.random.default_rng(5).standard_normal(Y.shape)
    eps = 1e-6
    fd = (mod.tsne_grad(Y + eps * V, P) - mod.tsne_grad(Y - eps * V, P)) / (2 * eps)
    np.testing.assert_allclose(mod.tsne_hvp(Y, P, V), fd, rtol=1e-6, atol=1e-9)
    xp = pytest.importorskip("array_api_strict")
    value, grad = amod.tsne_value_and_grad(xp.asarray(Y), xp.asarray(P))
    np.testing.assert_allclose(float(value), ref_value, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(grad), ref_grad, rtol=1e-10, atol=1e-14)


def test_tie_weights_are_float32_exact_and_keep_the_product_dtype(mod):
    """`_tie_split` makes the weights float32 for float32 and wider (0, 1/2, 1 are exact),
    the dtype itself below that; a product with them has the other factor's dtype."""
    cond, tie = np.array([True, False, False]), np.array([False, True, False])
    for dtype, weights in ((np.float64, np.float32), (np.float32, np.float32),
                           (np.longdouble, np.float32), (np.float16, np.float16)):
        w = mod._tie_split(cond, tie, np.dtype(dtype))
        assert w.dtype == weights
        np.testing.assert_array_equal(w, [1.0, 0.5, 0.0])
        assert (np.ones(3, dtype) * w).dtype == dtype
    x16, w16 = X.astype(np.float16), W.astype(np.float16)
    assert mod.cost_grad(x16, w16).dtype == np.float16


def test_tsne_peak_memory_five_square_arrays(mod):
    """At most five (n, n) float64 arrays alive at once in the t-SNE value and gradient:
    its tie weights float32 (`_tie_split`), the product with them written into the
    buffer of `P / Q`, which dies there (the scheduler spills the weights to make the
    `out=` line short enough). Before, the float64 weights were a sixth array at the peak."""
    import tracemalloc
    Y, P = _tsne_data(300)
    mod.tsne_value_and_grad(Y, P)
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        out = mod.tsne_value_and_grad(Y, P)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    del out
    square = P.nbytes
    assert peak - base <= 5.1 * square, (peak - base) / square


def test_values_ties_and_float32(mod):
    value, grad = mod.cost_value_and_grad(X, W)
    ref_value, ref_grad = _reference(X, W)
    np.testing.assert_allclose(value, ref_value, rtol=1e-14)
    np.testing.assert_array_equal(grad, ref_grad)          # exact: ties get exactly half
    v32, g32 = mod.cost_value_and_grad(X.astype(np.float32), W.astype(np.float32))
    assert g32.dtype == np.float32 and np.asarray(v32).dtype == np.float32
    np.testing.assert_allclose(g32, ref_grad, rtol=1e-6)
    np.testing.assert_allclose(v32, ref_value, rtol=1e-6)
    # minimum: 1 below, 1/2 at the tie, 0 above
    g = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    np.testing.assert_array_equal(mod.op_vjp(X, g), [1.0, 1.0, 0.0, 0.0, 2.5])


def test_nan_behaviour_is_the_documented_one(mod):
    """Where the argument is not chosen the weight is 0: a NaN cotangent there gives NaN
    (as JAX's mask form; `where` gave 0), a NaN argument gets a 0 derivative from a finite
    cotangent (as before)."""
    g = np.array([np.nan, 1.0, 1.0, 1.0, 1.0])
    out = mod.op_vjp(np.array([0.75, 0.5, 0.25, 1.0, 0.5]), g)   # x = 0.75: not chosen
    assert np.isnan(out[0])
    np.testing.assert_array_equal(out[1:], [0.5, 1.0, 0.0, 0.5])
    x = np.array([np.nan, 0.25, 0.75])
    with np.errstate(invalid="ignore"):
        ct = mod.op_vjp(x, np.array([1.0, 1.0, 1.0]))
    np.testing.assert_array_equal(ct, [0.0, 1.0, 0.0])


def test_array_api_target_matches_numpy(amod):
    xp = pytest.importorskip("array_api_strict")
    value, grad = amod.cost_value_and_grad(xp.asarray(X), xp.asarray(W))
    ref_value, ref_grad = _reference(X, W)
    np.testing.assert_allclose(float(value), ref_value, rtol=1e-14)
    np.testing.assert_array_equal(np.asarray(grad), ref_grad)


def test_a_product_is_never_written_into_the_float32_tie_weights():
    """tie_split's NumPy array is float32 for float64 arguments: a float64 product written
    into its buffer (`np.multiply(g, w, out=w)`) would round the tangent to float32 (found
    by test_random_programs: <u, J v> and <J^T u, v> differing by 3e-8)."""
    src = ("def f(v: Param[3], W: Param[2, 2]):\n"
           "    t = W + W\n"
           "    a, b = split(t, 2)\n"
           "    m = minimum(cumsum(b, axis=-2), zeros((1, 1)))\n"
           "    return exp(tanh(exp(m)))\n")
    mod = _load(gradgen.compile_source(src, "ties.grad"))
    rng = np.random.default_rng(1)
    v, W = rng.standard_normal(3), -np.abs(rng.standard_normal((2, 2)))
    dv, dW = rng.standard_normal(3), rng.standard_normal((2, 2))
    _, tangent = mod.f_jvp(v, W, dv, dW)
    u = rng.standard_normal(tangent.shape)
    _, dW_u = mod.f_vjp(v, W, u)
    lhs, rhs = float(np.sum(u * tangent)), float(np.sum(dW_u * dW))
    assert abs(lhs) > 0.1 and abs(lhs - rhs) <= 1e-14 * abs(lhs)
    assert tangent.dtype == np.float64
