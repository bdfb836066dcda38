"""The IR: hash-consing, canonical forms, the verifier, the printed form, deep graphs."""

from __future__ import annotations

import pytest
import sympy

from gradgen import ir
from gradgen.errors import InternalError, ShapeError
from gradgen.ir import Graph, const, make, pretty, topo_order, verify
from gradgen.passes import building
from gradgen.dims import broadcast, dim_symbol, fmt_shape, matmul_shape, normalize_axes

N, D, M = dim_symbol("N"), dim_symbol("D"), dim_symbol("M")


@pytest.fixture(autouse=True)
def _building():
    with building():
        yield


def _inp(name, shape, role="param"):
    return make("input", name=name, role=role, shape=tuple(shape))


def test_identical_subexpressions_are_one_node():
    x = _inp("x", (N, D))
    a = make("exp", x) * 2
    b = make("exp", x) * 2
    assert a is b
    assert make("exp", x) is a.args[1]


def test_nodes_are_immutable():
    x = _inp("x", (N,))
    with pytest.raises(AttributeError):
        x.op = "exp"


def test_canonical_scalar_factors():
    x, y = _inp("x", (N,)), _inp("y", (N,))
    assert (x * 1) is x and (x + 0) is x and (-(-x)) is x
    assert (x / 2).op == "mul" and (x / 2).args[0].value == sympy.Rational(1, 2)
    # c * a + c * b is c * (a + b); a + (-c) * b is a - c * b
    s = 3 * x + 3 * y
    assert s.op == "mul" and s.args[1].op == "add"
    t = x + (-2) * y
    assert t.op == "sub"
    assert (const(2) * const(3)).value == 6


def test_logistic_written_out_is_sigmoid():
    z = _inp("z", (N,))
    assert (1 / (1 + make("exp", -z))).op == "sigmoid"
    # of a negation: sigmoid_neg(z), 1 / (1 + exp(z)); and back for a negated argument
    assert make("sigmoid", -z).op == "sigmoid_neg" and make("sigmoid", -z).args[0] is z
    assert make("sigmoid_neg", -z).op == "sigmoid" and make("sigmoid_neg", -z).args[0] is z
    assert make("log", make("sigmoid", -z)) is -make("softplus", z)
    assert make("softplus", -z).op == "softplus_neg" and make("softplus", -z).args[0] is z
    assert make("softplus_neg", -z).op == "softplus" and make("softplus_neg", -z).args[0] is z
    assert make("log", make("sigmoid", z)) is -make("softplus_neg", z)


def test_shape_rules_and_mismatch_messages():
    x, w = _inp("x", (N, D)), _inp("w", (D, M))
    assert (x @ w).shape == (N, M)
    with pytest.raises(ShapeError, match=r"inner dimensions M and D differ"):
        _ = w @ w
    with pytest.raises(ShapeError, match=r"shapes \(N, D\) and \(D, M\) cannot be broadcast"):
        _ = x + w
    assert broadcast((N, sympy.Integer(1)), (D,)) == (N, D)
    assert matmul_shape((D,), (D, M)) == (M,)
    assert matmul_shape((sympy.Integer(5), N, D), (D, M)) == (5, N, M)
    assert normalize_axes(-1, 3) == (2,)
    assert normalize_axes((0, -1), 3) == (0, 2)
    with pytest.raises(ShapeError, match="out of range"):
        normalize_axes(3, 3)
    assert fmt_shape(()) == "()" and fmt_shape((N,)) == "(N,)" and fmt_shape((N, 2 * D)) == \
        "(N, 2 * D)"


def test_verify_accepts_built_graphs_and_rejects_stray_inputs():
    x, w = _inp("x", (N, D), "data"), _inp("w", (D,))
    out = make("sum", make("tanh", x @ w), axes=(0,), keepdims=False)
    verify(Graph((x, w), (out,)))
    with pytest.raises(InternalError, match="not an input of the graph"):
        verify(Graph((x,), (out,)))


def test_printed_form_is_stable():
    x, w = _inp("x", (N, D), "data"), _inp("w", (D,))
    out = make("sum", make("exp", x @ w), axes=(0,), keepdims=False)
    text = pretty(Graph((x, w), (out,), {x: "x", w: "w"}))
    assert text == (
        "%0 = input[name='x', role='data', shape=(N, D)] : (N, D)  # x\n"
        "%1 = input[name='w', role='param', shape=(D,)] : (D,)  # w\n"
        "%2 = matmul %0 %1 : (N,)\n"
        "%3 = exp %2 : (N,)\n"
        "%4 = sum[axes=(0,), keepdims=False] %3 : ()\n"
        "return %4"
    )


def test_deep_graphs_need_no_recursion():
    x = _inp("x", ())
    y = x
    for _ in range(50_000):   # a chain (x + x is 2 * x, so no sums of x)
        y = make("exp", y)
    order = topo_order([y])
    assert len(order) == 50_001
    assert order[0] is x and order[-1] is y


def test_nodes_need_a_builder():
    saved = list(ir._current)
    ir._current.clear()
    try:
        with pytest.raises(InternalError, match="inside ir.building"):
            make("const", value=sympy.Integer(1))
    finally:
        ir._current.extend(saved)
