"""Index arguments and integer-array indexing beyond the op harness (tests/test_ops.py):
the checks at entry, IndexError on both sides of a gather, negative indices, dtypes, the
scatter-add helper against np.add.at, and the diagnostics of the frontend."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

import gradgen
from gradgen import CompileError

SOURCE = """
def cost(E: Param[V, D], idx: Index[B], W: Param[D, C], y: Index[B], n: int):
    H = E[idx]
    S = H @ W
    return -mean(log_softmax(S, axis=1)[arange(B), y]) * float(n)


def rows(E: Param[V, D], idx: Index[B]):
    return sum(E[idx])


def segments(x: Param[N, D], ids: Index[N]):
    return sum(segment_sum(x, ids, 4) ** 2)


def temporal_ce(S: Param[M, T, K], y: Index[M, T], mask: Data[M, T]):
    lp = log_softmax(reshape(S, (M * T, K)), axis=1)
    return -sum(reshape(mask, (M * T,)) * lp[arange(M * T), reshape(y, (M * T,))]) / M
"""


@pytest.fixture(scope="module")
def mod(tmp_path_factory):
    path = tmp_path_factory.mktemp("indexing") / "indexing.grad"
    path.write_text(SOURCE, encoding="utf-8")
    return gradgen.load(path)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    V, D, B, C = 6, 3, 9, 4
    return {"E": rng.normal(size=(V, D)), "idx": rng.integers(0, V, B),
            "W": rng.normal(size=(D, C)), "y": rng.integers(0, C, B), "n": 2}


def _reference(E, idx, W, y, n):
    S = E[idx] @ W
    z = S - S.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return -logp[np.arange(len(y)), y].mean() * n


def test_value_and_argument_kinds(mod, data):
    assert np.isclose(mod.cost(**data), _reference(**data), rtol=1e-12)
    # int32 labels and a NumPy integer scalar are integers too
    d32 = dict(data, idx=data["idx"].astype(np.int32), y=data["y"].astype(np.uint8),
               n=np.int64(2))
    assert np.isclose(mod.cost(**d32), _reference(**data), rtol=1e-12)


@pytest.mark.parametrize("name, bad", [("idx", lambda d: d["idx"].astype(float)),
                                       ("y", lambda d: list(d["y"])),
                                       ("n", lambda d: 2.0)])
def test_an_index_argument_must_hold_integers(mod, data, name, bad):
    with pytest.raises(ValueError, match=f"argument '{name}': expected a NumPy array of "
                                         "integers or a Python int"):
        mod.cost(**dict(data, **{name: bad(data)}))


def test_float32_stays_float32(mod, data):
    f32 = dict(data, E=data["E"].astype(np.float32), W=data["W"].astype(np.float32))
    assert mod.cost(**f32).dtype == np.float32
    for g in mod.cost_grad(**f32):
        assert g.dtype == np.float32
    assert mod.segments_grad(f32["E"][:4], np.array([0, 3, 3, 1])).dtype == np.float32


@pytest.mark.parametrize("fn", ["rows", "rows_grad"])
def test_out_of_range_raises_index_error_in_the_gather_and_the_scatter(mod, data, fn):
    """`rows_grad` needs no forward gather (the gradient of sum(E[idx]) is a count): the
    scatter-add checks the range itself, with NumPy's message."""
    idx = data["idx"].copy()
    idx[2] = len(data["E"])
    with pytest.raises(IndexError, match="index 6 is out of bounds for axis 0 with size 6"):
        getattr(mod, fn)(data["E"], idx)
    idx[2] = -len(data["E"]) - 1
    with pytest.raises(IndexError, match="out of bounds"):
        getattr(mod, fn)(data["E"], idx)


def test_segment_ids_out_of_range_raise(mod, data):
    with pytest.raises(IndexError, match="index 4 is out of bounds for axis 0 with size 4"):
        mod.segments(data["E"][:3], np.array([0, 4, 1]))


def test_negative_indices_count_from_the_end_in_both_directions(mod, data):
    E, idx = data["E"], data["idx"]
    neg = idx - len(E)
    assert np.allclose(mod.rows(E, neg), mod.rows(E, idx))
    assert np.allclose(mod.rows_grad(E, neg), mod.rows_grad(E, idx))
    counts = np.bincount(idx, minlength=len(E))[:, None] * np.ones(E.shape[1])
    assert np.array_equal(mod.rows_grad(E, idx), counts)   # repeats accumulate


def test_gradient_against_finite_differences(mod, data):
    dE, dW = mod.cost_grad(**data)
    eps = 1e-6
    for name, grad in (("E", dE), ("W", dW)):
        x = data[name]
        fd = np.zeros_like(x)
        for k in range(x.size):
            step = np.zeros(x.size)
            step[k] = eps
            step = step.reshape(x.shape)
            fd.flat[k] = (_reference(**dict(data, **{name: x + step}))
                          - _reference(**dict(data, **{name: x - step}))) / (2 * eps)
        assert np.allclose(grad, fd, rtol=1e-6, atol=1e-8), name


def test_arguments_are_not_modified(mod, data):
    copies = {k: np.copy(v) for k, v in data.items()}
    mod.cost_value_and_grad(**data)
    mod.cost_hvp(**data, vE=np.ones_like(data["E"]), vW=np.ones_like(data["W"]))
    for k, v in copies.items():
        assert np.array_equal(np.asarray(data[k]), v), k


def test_the_docstring_shows_index_arguments(mod):
    assert "idx: Index[B]" in mod.cost.__doc__ and "n: int" in mod.cost.__doc__
    assert "dE" in mod.cost_grad.__doc__ and "didx" not in mod.cost_grad.__doc__


@pytest.fixture(scope="module")
def scatter_add():
    """The module helper `_scatter_add`, taken from a module that needs it."""
    namespace: dict = {}
    exec(gradgen.compile_source(SOURCE, "s.grad"), namespace)  # noqa: S102
    return namespace["_scatter_add"]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape, axis, index_shapes", [
    ((5, 3), 0, [(7,)]), ((5,), 0, [(7,)]), ((2, 5, 3), 1, [(4, 2)]),
    ((5, 4, 2), 0, [(3, 1), (1, 6)]), ((2, 5, 4), 1, [(6,), (6,)]), ((5, 3), 0, [()])])
def test_scatter_add_matches_np_add_at(scatter_add, dtype, shape, axis, index_shapes):
    rng = np.random.default_rng(len(index_shapes) + axis)
    k = len(index_shapes)
    index = [rng.integers(-n, n, size=s) for s, n in zip(index_shapes, shape[axis:axis + k])]
    b = np.broadcast_shapes(*index_shapes)
    g = rng.normal(size=shape[:axis] + b + shape[axis + k:]).astype(dtype)
    expected = np.zeros(shape, dtype)
    np.add.at(expected, (slice(None),) * axis + tuple(index), g)
    out = scatter_add(g, shape, axis, *index)
    assert out.dtype == dtype and out.shape == shape
    assert np.allclose(out, expected, rtol=1e-6)


# ---------------------------------------------------------------- diagnostics

def _error(source: str, **options) -> str:
    with pytest.raises(CompileError) as info:
        gradgen.compile_source(textwrap.dedent(source).lstrip("\n"), "t.grad", **options)
    return str(info.value)


def test_boolean_mask_suggests_where():
    text = _error("""
        def f(x: Param[N]):
            return sum(x[x > 0])
        """)
    assert text.startswith("t.grad:2:18: error: boolean-mask indexing (x[x > 0]) has a shape "
                           "that depends on the data; use where(condition, x, 0)")


def test_wrt_an_index_argument_is_a_diagnostic():
    text = _error("""
        def f(x: Param[N], y: Index[N]):
            return sum(x[y])
        """, wrt=["y"])
    assert "--wrt y: 'y' is an Index argument: integers are never differentiated" in text


@pytest.mark.parametrize("body, col, message", [
    ("return x[w]", 14, "an index must be an integer literal, a slice or an Index value"),
    ("return sum(x // 2)", 18, "'//' is for integers (Index values and dimensions)"),
    ("return y + 1", 12, ("an entry point must return floating-point numbers, not "
                          "integers; use float(...)")),
    ("return sum(one_hot(x, 3))", 24, "the y of one_hot(...) must be an Index value"),
    ("return sum(x[y, :][:, y])", 18, None),
    # (a slice beside an index array is taken first: x[y, 1:] of a matrix works)
    ("return sum(x[y, 1:])", 18, "too many indices (2) for an array of shape (N,)"),
    # (an integer beside an index array is one too, as in NumPy: x[y, 0] of a matrix works)
    ("return sum(x[y, 0])", 18, "too many indices (2) for an array of shape (N,)"),
])
def test_indexing_diagnostics(body, col, message):
    source = f"""
        def f(x: Param[N], y: Index[N], w: Data[N]):
            {body}
        """
    if message is None:   # a gather of a gather: fine
        gradgen.compile_source(textwrap.dedent(source).lstrip("\n").replace(
            "Param[N]", "Param[N, N]"), "t.grad")
        return
    text = _error(source)
    head = text.split("\n")[0]
    assert head.startswith(f"t.grad:2:{col}: error: {message}"), head


# ---------------------------------------------------------------- subscript assignment

UPDATES = """
def svm(X: Data[N, D], y: Index[N], W: Param[D, C]):
    S = X @ W
    margins = maximum(0, S - S[arange(N), y][:, None] + 1)
    margins[arange(N), y] = 0
    return sum(margins) / N


def edits(x: Param[N, M], i: Index[K], v: Param[K, M]):
    z = x * x
    z[i] += v * v
    z[0] = sin(v[0])
    z[1:3, 1] -= v[1, 0]
    z[:, i[0]] = 2.0
    return sum(z * z)
"""


def _svm_ref(X, y, W):
    S = X @ W
    m = np.maximum(0, S - S[np.arange(len(y)), y][:, None] + 1)
    m[np.arange(len(y)), y] = 0
    return m.sum() / len(y)


def _edits_ref(x, i, v):
    z = x * x
    np.add.at(z, i, v * v)
    z[0] = np.sin(v[0])
    z[1:3, 1] -= v[1, 0]
    z[:, i[0]] = 2.0
    return np.sum(z * z)


@pytest.fixture(scope="module")
def updates(tmp_path_factory):
    path = tmp_path_factory.mktemp("updates") / "updates.grad"
    path.write_text(UPDATES, encoding="utf-8")
    return gradgen.load(path, hessian=True)


def _fd_grad(f, x, eps=1e-6):
    g = np.zeros_like(x)
    for k in range(x.size):
        step = np.zeros(x.size)
        step[k] = eps
        step = step.reshape(x.shape)
        g.flat[k] = (f(x + step) - f(x - step)) / (2 * eps)
    return g


def test_subscript_assignment_values_and_derivatives(updates):
    rng = np.random.default_rng(11)
    X, W, y = rng.normal(size=(6, 3)), rng.normal(size=(3, 4)), rng.integers(0, 4, 6)
    assert np.isclose(updates.svm(X, y, W), _svm_ref(X, y, W), rtol=1e-12)
    assert np.allclose(updates.svm_grad(X, y, W), _fd_grad(lambda w: _svm_ref(X, y, w), W),
                       rtol=1e-6, atol=1e-9)
    x, v = rng.normal(size=(5, 4)), rng.normal(size=(3, 4))
    i = np.array([3, 1, 3])   # a repeat: += accumulates
    args = {"x": x, "i": i, "v": v}
    assert np.isclose(updates.edits(**args), _edits_ref(**args), rtol=1e-12)
    dx, dv = updates.edits_grad(**args)
    assert np.allclose(dx, _fd_grad(lambda t: _edits_ref(t, i, v), x), rtol=1e-6, atol=1e-8)
    assert np.allclose(dv, _fd_grad(lambda t: _edits_ref(x, i, t), v), rtol=1e-6, atol=1e-8)
    tx, tv = rng.normal(size=x.shape), rng.normal(size=v.shape)
    hx, hv = updates.edits_hvp(x, i, v, tx, tv)
    eps = 1e-6
    plus = updates.edits_grad(x + eps * tx, i, v + eps * tv)
    minus = updates.edits_grad(x - eps * tx, i, v - eps * tv)
    for h, p, m in zip((hx, hv), plus, minus):
        assert np.allclose(h, (p - m) / (2 * eps), rtol=1e-5, atol=1e-7)
    (hxx, hxv), (hvx, hvv) = updates.edits_hessian(**args)
    assert np.allclose(np.tensordot(hxx, tx, 2) + np.tensordot(hxv, tv, 2), hx)
    assert np.allclose(np.tensordot(hvx, tx, 2) + np.tensordot(hvv, tv, 2), hv)
    f32 = {"x": x.astype(np.float32), "i": i, "v": v.astype(np.float32)}
    assert all(g.dtype == np.float32 for g in updates.edits_grad(**f32))
    assert np.array_equal(args["x"], x)   # the caller's arrays are not modified


def test_subscript_assignment_diagnostics():
    text = _error("""
        def f(x: Param[N]):
            y[0] = 1.0
            return sum(x)
        """)
    assert text.startswith("t.grad:2:5: error: unknown name 'y'"), text
    text = _error("""
        def f(x: Param[N]):
            x[x > 0] = 1.0
            return sum(x)
        """)
    assert "boolean-mask indexing" in text.split("\n")[0]
    text = _error("""
        def f(x: Param[N]):
            x[0] //= 2.0
            return sum(x)
        """)
    assert "augmented assignment '//=' is not supported" in text


def test_integer_arithmetic_of_dimensions_in_values():
    """`//` and `%` of dimensions are Python numbers in the emitted code (no np.float64
    to turn float32 into float64)."""
    text = gradgen.compile_source("def f(x: Param[C, H]):\n"
                                  "    return sum(x) * sqrt(C // H) + C % H\n", "d.grad")
    namespace: dict = {}
    exec(text, namespace)  # noqa: S102
    x = np.ones((7, 3), np.float32)
    value = namespace["f"](x)
    assert value.dtype == np.float32 and np.isclose(value, 21 * np.sqrt(2) + 1, rtol=1e-6)


def test_arange_from_zero_and_from_a_dimension_expression():
    """`arange(0, N)` (a literal 0 start) and `arange(1, N + 1)`, as weights."""
    mod = gradgen.load_source("def f(x: Param[N]):\n"
                              "    return sum(x * float(arange(0, N)) * float(arange(1, N + 1)))\n")
    x = np.array([0.5, -1.0, 2.0, 3.0])
    w = np.arange(4) * np.arange(1, 5)
    assert mod.f(x) == pytest.approx(float(x @ w))
    np.testing.assert_allclose(mod.f_grad(x), w)


def test_a_reshaped_index_value_still_indexes(mod):
    """cs231n's temporal_softmax_loss flattens the labels: `reshape(y, (M * T,))` of an
    Index value is an Index value (so are transpose, expand_dims and squeeze of one), not
    floats that cannot index. Value and gradient against NumPy."""
    rng = np.random.default_rng(3)
    M, T, K = 3, 4, 5
    S, y = rng.standard_normal((M, T, K)), rng.integers(0, K, (M, T))
    mask = (rng.random((M, T)) < 0.7).astype(float)
    value, dS = mod.temporal_ce_value_and_grad(S, y, mask)
    flat = S.reshape(M * T, K)
    p = np.exp(flat - flat.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    rows, labels, m = np.arange(M * T), y.reshape(-1), mask.reshape(-1)
    np.testing.assert_allclose(value, -np.sum(m * np.log(p[rows, labels])) / M, rtol=1e-12)
    p[rows, labels] -= 1
    np.testing.assert_allclose(dS, (m[:, None] * p / M).reshape(M, T, K), rtol=1e-10,
                               atol=1e-15)
