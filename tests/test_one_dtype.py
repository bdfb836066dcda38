"""The float arguments made one dtype at entry (rule `one_dtype_at_entry`): a function whose
in-place statements write a value of one argument's computation into the buffer of another's
starts with `if not _dims(...): x, W = _one_dtype(x, W)`. Mixed float32/float64 arguments
give what the same numbers in float64 give (exactly: the float32 ones are converted once),
float32 throughout stays float32, and the caller's arrays are never written."""

from __future__ import annotations

import numpy as np
import pytest
from emitted import example_module, load

import gradgen

# A mixture-density network (benchmarks/models/mdn.grad, shortened): ten float arguments.
MDN = '''
def mdn(x: Data[N, D], y: Data[N], W1: Param[D, H], b1: Param[H], Wpi: Param[H, K],
        Wmu: Param[H, K], Ws: Param[H, K], lam: float):
    h = tanh(x @ W1 + b1)
    log_pi = log_softmax(h @ Wpi, axis=1)
    log_s = h @ Ws
    z = (y[:, None] - h @ Wmu) / exp(log_s)
    return -mean(logsumexp(log_pi - 0.5 * z ** 2 - log_s, axis=1)) + lam * sum(W1 ** 2)
'''
NAMES = ("x", "y", "W1", "b1", "Wpi", "Wmu", "Ws")


@pytest.fixture(scope="module")
def mods():
    """The program with and without checks (one compile each)."""
    return {checks: load(gradgen.compile_source(MDN, "mdn.grad", checks=checks),
                         f"mdn_{checks}") for checks in (True, False)}


def _args(rng):
    N, D, H, K = 7, 3, 5, 4
    shapes = {"x": (N, D), "y": (N,), "W1": (D, H), "b1": (H,), "Wpi": (H, K),
              "Wmu": (H, K), "Ws": (H, K)}
    return [rng.standard_normal(shapes[n]) * (0.3 if n[0] == "W" else 1.0) for n in NAMES]


def _reference(x, y, W1, b1, Wpi, Wmu, Ws, lam):
    """The loss in NumPy (float64), written out independently."""
    h = np.tanh(x @ W1 + b1)
    a = h @ Wpi
    log_pi = a - a.max(axis=1, keepdims=True)
    log_pi -= np.log(np.exp(log_pi).sum(axis=1, keepdims=True))
    log_s = h @ Ws
    z = (y[:, None] - h @ Wmu) / np.exp(log_s)
    t = log_pi - 0.5 * z ** 2 - log_s
    m = t.max(axis=1, keepdims=True)
    lse = np.log(np.exp(t - m).sum(axis=1)) + m[:, 0]
    return -lse.mean() + lam * (W1 ** 2).sum()


@pytest.mark.parametrize("checks", [True, False])
def test_mixed_dtypes_give_the_float64_results(mods, checks):
    mod = mods[checks]
    rng = np.random.default_rng(3)
    args = _args(rng)
    value, grads = mod.mdn_value_and_grad(*args, 0.1)
    np.testing.assert_allclose(value, _reference(*args, 0.1), rtol=1e-12)
    # central differences of the reference, for one Param entry each
    for i, name in enumerate(NAMES[2:], start=2):
        e = np.zeros_like(args[i])
        e.flat[1] = 1e-6
        plus = [a + e if k == i else a for k, a in enumerate(args)]
        minus = [a - e if k == i else a for k, a in enumerate(args)]
        fd = (_reference(*plus, 0.1) - _reference(*minus, 0.1)) / 2e-6
        np.testing.assert_allclose(grads[i - 2].flat[1], fd, rtol=1e-6, atol=1e-9)
    for f32 in [(0,), (2, 4, 6), (1, 3, 5)]:   # data, some weights, the rest
        mixed = [a.astype(np.float32) if k in f32 else a for k, a in enumerate(args)]
        saved = [a.copy() for a in mixed]
        want = mod.mdn_value_and_grad(*[a.astype(np.float64) for a in mixed], 0.1)
        got = mod.mdn_value_and_grad(*mixed, 0.1)
        for a, s in zip(mixed, saved):   # the caller's arrays are not written
            assert a.dtype == s.dtype and np.array_equal(a, s)
        assert np.asarray(got[0]).dtype == np.float64 and got[0] == want[0]
        for g, w in zip(got[1], want[1]):
            assert g.dtype == np.float64
            np.testing.assert_array_equal(g, w)
        # a NumPy float64 scalar for `lam` is strongly typed: float64, like the arrays
        np.testing.assert_array_equal(mod.mdn_grad(*mixed, np.float64(0.1))[0], want[1][0])
    single = [a.astype(np.float32) for a in args]
    value32, grads32 = mod.mdn_value_and_grad(*single, 0.1)
    assert np.asarray(value32).dtype == np.float32
    for g, w in zip(grads32, grads):
        assert g.dtype == np.float32
        np.testing.assert_allclose(g, w, rtol=2e-3, atol=2e-4)
    # float32 arrays with a NumPy float64 scalar: float64 (NumPy's promotion)
    assert mod.mdn_grad(*single, np.float64(0.1))[0].dtype == np.float64


def test_the_prologue_converts_only_where_dtypes_differ(mods):
    """`_dims` says whether the float arguments share a dtype (remembered with the shapes):
    the usual call converts nothing; with checks off the conversion is unconditional."""
    mod = mods[True]
    rng = np.random.default_rng(4)
    args = _args(rng)
    assert mod._dims(mod._MDN_ARGS, *args, 0.1) is True
    assert mod._dims(mod._MDN_ARGS, *args, 0.1) is True   # (the remembered call)
    mixed = [args[0].astype(np.float32), *args[1:]]
    assert mod._dims(mod._MDN_ARGS, *mixed, 0.1) is False
    assert mod._dims(mod._MDN_ARGS, *mixed, 0.1) is False
    assert mod._dims(mod._MDN_ARGS, *args, np.float32(0.1)) is False
    out = mod._one_dtype(*mixed, 0.1)
    assert [np.asarray(a).dtype for a in out[:-1]] == [np.float64] * len(args)
    assert out[-1] == 0.1 and type(out[-1]) is float   # a Python number stays weak
    assert out[1] is args[1]   # (already of the dtype: not copied)
    source = gradgen.compile_source(MDN, "mdn.grad")
    grad = source[source.index("def mdn_grad("):]
    assert "    if not _dims(_MDN_ARGS, x, y, W1, b1, Wpi, Wmu, Ws, lam):  # float dtypes differ: " \
           "one for all\n        x, y, W1, b1, Wpi, Wmu, Ws, lam = _one_dtype(" in grad
    unchecked = gradgen.compile_source(MDN, "mdn.grad", checks=False)
    assert "\n    x, y, W1, b1, Wpi, Wmu, Ws, lam = _one_dtype(" in unchecked


def test_a_function_that_needs_no_conversion_has_none():
    """One float argument, or no in-place step across arguments: no `_one_dtype`."""
    source = gradgen.compile_source("def f(x: Param[N]):\n    return sum(exp(x) * x)\n", "f.grad")
    assert "def _one_dtype" not in source and "\n    _dims(_F_ARGS, x)\n" in source


def test_an_index_argument_is_no_dtype_source():
    """`z - z[arange(N), y][:, None]` into z's buffer (z = x @ W): the value reads the Index
    y besides z's own inputs, and an Index is no dtype source, so the buffer has its dtype
    with no `_one_dtype` of x and W. The HVP still has it: `tz` (x, vW) is computed in a
    buffer of W's value. Mixed float32/float64 arguments give the float64 results."""
    text = ("def f(x: Data[N, D], W: Param[D, C], y: Index[N]):\n    z = x @ W\n"
            "    return sum(exp(z - z[arange(N), y][:, None]))\n")
    source = gradgen.compile_source(text, "f.grad")
    funcs = dict(zip(("f", "grad", "value_and_grad", "vjp", "jvp", "hvp"),
                     source.split("\ndef f")[1:]))
    for name in ("f", "grad", "value_and_grad", "vjp", "jvp"):
        assert "= _one_dtype(" not in funcs[name], name
        assert "reuses z's buffer" in funcs[name], name
    assert "    if not _dims(_F_ARGS, x, W, y):  # float dtypes differ: one for all\n" \
           "        x, W = _one_dtype(x, W)\n" in funcs["hvp"]
    mod = load(source, "index_dtype")
    rng = np.random.default_rng(6)
    x, W = rng.standard_normal((5, 3)), rng.standard_normal((3, 4))
    y, vW = rng.integers(0, 4, 5), rng.standard_normal((3, 4))
    for x_, W_ in ((x.astype(np.float32), W), (x, W.astype(np.float32))):
        x64, W64 = x_.astype(np.float64), W_.astype(np.float64)
        got, want = mod.f_value_and_grad(x_, W_, y), mod.f_value_and_grad(x64, W64, y)
        assert got[0] == want[0] and np.array_equal(got[1], want[1])
        assert got[1].dtype == np.float64
        assert np.array_equal(mod.f_hvp(x_, W_, y, vW), mod.f_hvp(x64, W64, y, vW))
    eps, E = 1e-6, np.zeros_like(W)
    E[1, 2] = eps
    fd = (mod.f(x, W + E, y) - mod.f(x, W - E, y)) / (2 * eps)
    np.testing.assert_allclose(mod.f_grad(x, W, y)[1, 2], fd, rtol=1e-7)


def test_the_mlp_example_with_float32_data():
    """float32 data with float64 weights: the float64 results of the same numbers."""
    mod = example_module("mlp", prefix="one_dtype")
    rng = np.random.default_rng(5)
    X, V, W = rng.standard_normal((6, 4)), rng.standard_normal((4, 3)), rng.standard_normal((3, 2))
    Y = np.eye(2)[rng.integers(0, 2, 6)]
    X32 = X.astype(np.float32)
    want = mod.cost_value_and_grad(X32.astype(np.float64), Y, V, W)
    got = mod.cost_value_and_grad(X32, Y, V, W)
    assert got[0] == want[0] and all(np.array_equal(g, w) for g, w in zip(got[1], want[1]))
    assert X32.dtype == np.float32


def test_a_product_plus_a_bias_adds_into_the_products_array():
    """`x @ W1 + b1` is `h = x @ W1; h += b1` (the product's new array takes the steps
    above it: one (N, H) allocation, not two); the mixed-dtype results above come through
    these lines. With the workspace the product is computed into the workspace's buffer."""
    source = gradgen.compile_source(MDN, "mdn.grad")
    grad = source[source.index("def mdn_grad("):]
    assert "    h = x @ W1  # (N, H)\n    h += b1\n    np.tanh(h, out=h)\n" in grad
    assert "= x @ W1 + b1" not in grad
    ws = gradgen.compile_source(MDN, "mdn.grad", workspace=True)
    assert '    h = np.matmul(x, W1, out=ws("h", N, H))  # (N, H)\n    h += b1\n' in ws


def test_a_square_into_a_dead_buffer_is_np_square():
    """`1 - h ** 2` computed in `h`'s buffer once `h` dies is `np.square(h, out=h)` (the
    op's own form into a buffer, `OpDef.into`), not `np.power(h, 2, out=h)`, NumPy's
    general `pow` loop (~2x slower at (10^4, 32)); the values are those checked above."""
    source = gradgen.compile_source(MDN, "mdn.grad")
    assert " = np.square(h, out=h)" in source and "np.power(" not in source


def test_a_scalar_read_only_with_arrays_is_passed_as_it_is():
    """Rule `weak_scalar_as_is`: where the float arrays have one dtype and a scalar argument
    is read only by `+ - * /` with an array (`lam * w`), it needs no `_weak`: NumPy 2 gives
    a Python number the array's dtype as `_weak` would. Read with a scalar (`lam * (w @ w)`)
    or returned it keeps `_weak`. The same numbers for a Python float, int, NumPy scalar
    and 0-d array, float32 kept, mixed dtypes as float64."""
    src = ("def f(X: Data[N, D], y: Data[N], w: Param[D], lam: float, mu: float):\n"
           "    return sum(exp(y * (X @ w))) + lam / 2 * sum(w ** 2) + mu * sum(w)\n")
    source = gradgen.compile_source(src, "f.grad", hessian=True)
    mod = load(source, "weak_as_is")
    hess = source[source.index("def f_hessian("):]
    grad = source[source.index("def f_grad("):source.index("def f_value_and_grad(")]
    value = source[source.index("def f("):source.index("def f_grad(")]
    assert "_weak(lam" not in hess and "_weak(mu" not in hess
    assert "_weak(lam" not in grad and "_weak(mu" not in grad
    assert "lam = _weak(lam, X.dtype)" in value and "mu = _weak(mu, X.dtype)" in value
    rng = np.random.default_rng(6)
    X, w = rng.standard_normal((5, 3)) * 0.3, rng.standard_normal(3)
    y = rng.choice([-1.0, 1.0], 5)
    e = np.exp(y * (X @ w))
    want_h = (e[:, None, None] * X[:, :, None] * X[:, None, :]).sum(axis=0) + 0.5 * np.eye(3)
    want_g = X.T @ (y * e) + 0.5 * w + 0.25
    for lam, mu in [(0.5, 0.25), (np.float64(0.5), np.float64(0.25)),
                    (np.array(0.5), np.array(0.25))]:
        np.testing.assert_allclose(mod.f_hessian(X, y, w, lam, mu), want_h, rtol=1e-12)
        np.testing.assert_allclose(mod.f_grad(X, y, w, lam, mu), want_g, rtol=1e-12)
    # an int is a number too
    np.testing.assert_allclose(mod.f_grad(X, y, w, 1, 0), X.T @ (y * e) + w, rtol=1e-12)
    X32, y32, w32 = X.astype(np.float32), y.astype(np.float32), w.astype(np.float32)
    for lam, mu in [(0.5, 0.25), (np.float32(0.5), np.float32(0.25))]:
        h32, g32 = mod.f_hessian(X32, y32, w32, lam, mu), mod.f_grad(X32, y32, w32, lam, mu)
        assert h32.dtype == np.float32 and g32.dtype == np.float32
        # the same float32 numbers as with the 0-d arrays `_weak` would make
        same = mod.f_grad(X32, y32, w32, np.asarray(lam, np.float32),
                          np.asarray(mu, np.float32))
        np.testing.assert_array_equal(g32, same)
    mixed = mod.f_grad(X32, y, w, 0.5, 0.25)
    assert mixed.dtype == np.float64
    np.testing.assert_array_equal(mixed, mod.f_grad(X32.astype(np.float64), y, w, 0.5, 0.25))
