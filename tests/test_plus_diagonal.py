"""`x + c * eye(n)` as c added to the diagonal (the lower rule `add_scaled_identity`, op
`plus_diagonal`), the transpose of a weighted Gram matrix dropped (`transpose_symmetric`
on `(v * X.T) @ X`) and a chain of elementwise steps computed in one buffer before it is
broadcast (the scheduler's chain_in_place_before_broadcast): the logistic-regression
Hessian (issue 12 item 2, h-hess2).

plus_diagonal is made only by a lower rule (after differentiation), so no source reaches
its derivative rules and the op harness never draws it: they are checked here on a
hand-built graph, as tests/test_linalg_speed.py does for cho_inverse.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import gradgen
from fdcheck import assert_close
from gradgen.ops import REGISTRY

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def plus_diagonal():
    """The `_plus_diagonal` helper exactly as emitted modules carry it."""
    namespace = {"np": np}
    exec(REGISTRY["plus_diagonal"].prelude, namespace)  # noqa: S102
    return namespace["_plus_diagonal"]


def test_plus_diagonal_helper_every_layout_and_dtype(plus_diagonal):
    """A copy when no `out` (the argument untouched, promoted as `x + c * I` is); into `out`
    when given, whether it is x, another buffer, or not C-contiguous (a transposed view)."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 4))
    before = x.copy()
    expected = x + 2.5 * np.eye(4)
    got = plus_diagonal(x, 2.5)
    assert np.array_equal(got, expected) and np.array_equal(x, before)
    assert plus_diagonal(x.astype(np.float32), 2.5).dtype == np.float32
    assert plus_diagonal(x.astype(np.float32), np.float64(2.5)).dtype == np.float64
    assert np.array_equal(plus_diagonal(x, np.array(2.5)), expected)
    own = x.copy()
    assert plus_diagonal(own, 2.5, out=own) is own and np.array_equal(own, expected)
    other = np.empty((4, 4))
    assert plus_diagonal(x, 2.5, out=other) is other and np.array_equal(other, expected)
    assert np.array_equal(x, before)
    view = np.zeros((4, 8))[:, ::2]   # not C-contiguous: the einsum view of the diagonal
    view[...] = x
    assert plus_diagonal(view, -1.0, out=view) is view
    assert np.array_equal(view, x - np.eye(4))


def test_plus_diagonal_derivative_rules_match_finite_differences():
    """Its VJP (of x and of c), JVP and batched JVP (vmap), on a hand-built graph
    sum(sin(plus_diagonal(A, c)) * B), against two-sided differences."""
    from gradgen import ir
    from gradgen.autodiff.forward import batched_jvp, jvp
    from gradgen.autodiff.reverse import vjp
    from test_pass_golden import _raw, _run

    source = ("def f(A: Param[N, N], c: Param[()], B: Data[N, N], U: Data[N, N], "
              "u: Data[()], V: Data[2, N, N], v: Data[2]):\n    return A\n")
    rng = np.random.default_rng(11)
    n = 5   # test_pass_golden.SIZES
    values = {"A": rng.standard_normal((n, n)), "c": np.array(0.7),
              "B": rng.standard_normal((n, n)), "U": rng.standard_normal((n, n)),
              "u": np.array(-1.3), "V": rng.standard_normal((2, n, n)),
              "v": rng.standard_normal(2)}
    with ir.building(REGISTRY):
        entry, _ = _raw(source)
        a, c, b, t, s, bt, bs = (x.node for x in entry.args)
        out = ir.make("sum", ir.make("sin", ir.make("plus_diagonal", a, c)) * b,
                      axes=(0, 1), keepdims=False)
        grad_a, grad_c = vjp([out], [ir.const(1.0)], [a, c])[0]
        tangent = jvp([out], {id(a): t, id(c): s})[0][0]
        only_c = jvp([out], {id(c): s})[0][0]
        batched = batched_jvp([out], {id(a): bt, id(c): bs})[0]
        got = [_run(entry, ir.Graph(tuple(x.node for x in entry.args), (x,), {}), values)
               for x in (grad_a, grad_c, tangent, only_c, batched)]

    def f(m, k):
        return np.sum(np.sin(m + k * np.eye(n)) * values["B"])

    def fd(dm, dk, h=1e-6):
        return (f(values["A"] + h * dm, values["c"] + h * dk)
                - f(values["A"] - h * dm, values["c"] - h * dk)) / (2 * h)

    zero = np.zeros((n, n))
    assert_close(np.sum(got[0] * values["U"]), fd(values["U"], 0.0), "vjp of A . U")
    assert_close(got[1], fd(zero, 1.0), "vjp of c")
    assert_close(got[2], fd(values["U"], values["u"]), "jvp")
    assert_close(got[3], fd(zero, values["u"]), "jvp along c alone")
    assert_close(got[4], [fd(values["V"][k], values["v"][k]) for k in range(2)],
                 "batched jvp")


@pytest.fixture(scope="module")
def logistic():
    """examples/logistic compiled with its Hessian."""
    text = (ROOT / "examples" / "logistic" / "logistic.grad").read_text()
    source = gradgen.compile_source(text, filename="logistic.grad", hessian=True)
    namespace: dict = {}
    exec(compile(source, "logistic_grad.py", "exec"), namespace)  # noqa: S102
    return source, namespace


def test_logistic_hessian_adds_lam_to_the_diagonal_with_no_transpose(logistic):
    """The closed form X.T @ diag(s) @ X / N + lam * I: no identity built, no `.T` of the
    symmetric result; the same values as the closed form, float32 kept."""
    source, namespace = logistic
    body = source[source.index("def loss_hessian"):]
    assert "np.eye" not in body and "_plus_diagonal(" in body and ".T\n" not in body
    # chain_in_place_before_broadcast: the (N,) weight (1 - s) * y * (y * s) in one new
    # buffer (the second factor in s's), then broadcast into the (D, N) product
    assert "    y_mul2 = 1 - y_sigmoid_neg  # (N,)\n    y_mul2 *= y\n" in body
    assert "np.multiply(y, y_sigmoid_neg, out=y_sigmoid_neg)\n    y_mul2 *= y_mul3\n" in body
    assert "H = (y_mul2 * X.T) @ X" in body
    rng = np.random.default_rng(2)
    X = rng.standard_normal((50, 6))
    y = np.where(rng.random(50) < 0.5, -1.0, 1.0)
    w = rng.standard_normal(6) / 3
    s = 1 / (1 + np.exp(-y * (X @ w)))
    expected = X.T @ ((s * (1 - s))[:, None] * X) / 50 + 0.1 * np.eye(6)
    H = namespace["loss_hessian"](X, y, w, 0.1)
    assert_close(H, expected, "H", rtol=1e-12)
    H32 = namespace["loss_hessian"](X.astype(np.float32), y.astype(np.float32),
                                    w.astype(np.float32), 0.1)
    assert H32.dtype == np.float32
    assert_close(H32, expected, "H float32", rtol=1e-5)
