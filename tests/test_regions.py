"""Regions in the IR: a node holding a body graph (the shape loops will take).

Built by hand here (no source construct makes one yet): the recurrence
h <- tanh(h @ W + x) run T times, as a `scan` node whose body reads the loop index, the
carried `h` and the outside values `W` and `x`.
"""

from __future__ import annotations

import numpy as np
import pytest

from gradgen.codegen.function import owned_results
from gradgen.codegen.naming import Namer
from gradgen.codegen.printer import NumpyPrinter
from gradgen.codegen.schedule import schedule
from gradgen.dims import dim_symbol
from gradgen.errors import InternalError
from gradgen.ir import Graph, Region, make, pretty, topo_order, verify
from gradgen.passes import building, lower, optimize

N, D, T = dim_symbol("N"), dim_symbol("D"), dim_symbol("T")


@pytest.fixture(autouse=True)
def _building():
    with building():
        yield


def _inp(name, shape, role="param"):
    return make("input", name=name, role=role, shape=tuple(shape))


def _body():
    t = _inp("t", (), "index")
    h = _inp("h", (N, D), "carry")
    w = _inp("W", (D, D), "outside")
    x = _inp("x", (N, D), "outside")
    return Region((t, h, w, x), (make("tanh", h @ w + x),))


def _loop():
    h0, w, x = _inp("h0", (N, D)), _inp("W0", (D, D), "data"), _inp("X", (N, D), "data")
    scan = make("scan", h0, w, x, body=_body(), length=T)
    return Graph((h0, w, x), (make("part", scan, index=0),)), scan


def test_a_loop_is_one_node_holding_its_body():
    graph, scan = _loop()
    verify(graph)
    outer = topo_order(graph.outputs)
    assert [n.op for n in outer].count("scan") == 1
    assert "tanh" not in {n.op for n in outer}          # the body is not in the outer graph
    (body,) = scan.regions
    assert {n.op for n in topo_order(body.outputs)} >= {"tanh", "matmul", "add"}
    assert graph.outputs[0].shape == (N, D)


def test_regions_built_alike_are_one_node():
    _, first = _loop()
    _, again = _loop()
    assert again is first
    assert Region(first.regions[0].inputs, first.regions[0].outputs) == first.regions[0]


def test_pretty_prints_the_body_indented_after_its_node():
    graph, _ = _loop()
    assert pretty(graph) == "\n".join([
        "%0 = input[name='h0', role='param', shape=(N, D)] : (N, D)",
        "%1 = input[name='W0', role='data', shape=(D, D)] : (D, D)",
        "%2 = input[name='X', role='data', shape=(N, D)] : (N, D)",
        "%3 = scan[length=T] %0 %1 %2 : () tuple",
        "  body(%4 t: () int, %5 h: (N, D), %6 W: (D, D), %7 x: (N, D)) {",
        "    %8 = matmul %5 %6 : (N, D)",
        "    %9 = add %8 %7 : (N, D)",
        "    %10 = tanh %9 : (N, D)",
        "    yield %10",
        "  }",
        "%11 = part[index=0] %3 : (N, D)",
        "return %11",
    ])


def test_verify_checks_the_body():
    h0, w, x = _inp("h0", (N, D)), _inp("W0", (D, D), "data"), _inp("X", (N, D), "data")
    t, h = _inp("t", (), "index"), _inp("h", (N, D), "carry")
    wrong = Region((t, h, _inp("W", (D, D), "outside"), _inp("x", (N, D), "outside")),
                   (make("sum", h, axes=(1,), keepdims=False),))
    scan = make("scan", h0, w, x, body=wrong, length=T)
    with pytest.raises(InternalError, match="does not match carried input"):
        verify(Graph((h0, w, x), (scan,)))
    stray = _inp("stray", (N, D))
    leaky = Region((t, h, _inp("W", (D, D), "outside"), _inp("x", (N, D), "outside")),
                   (h + stray,))
    scan = make("scan", h0, w, x, body=leaky, length=T)
    with pytest.raises(InternalError, match="not an input of the body"):
        verify(Graph((h0, w, x), (scan,)))
    short = make("scan", h0, w, body=_body(), length=T)
    with pytest.raises(InternalError, match="body inputs for 2 arguments"):
        verify(Graph((h0, w), (short,)))


# ---------------------------------------------------------------- emitted code of loops
# The scheduler and the printer turn a graph holding a scan into a Python `for` loop; the
# code runs and is compared with a NumPy loop written here.

SIZES = {"N": 3, "D": 4, "T": 5, "S": 3}
S = dim_symbol("S")


def _emit(graph: Graph, names: dict | None = None, printer=None) -> tuple[str, object]:
    """The source of `def f(<graph inputs>)` computing the graph's outputs (dimension sizes
    as globals), as the compiler schedules and prints a function, and the function."""
    verify(graph)
    args = [x.attr("name") for x in graph.inputs]
    printer = printer or NumpyPrinter()
    body = schedule(list(graph.outputs), dict(names or {}), Namer(set(args) | set(SIZES)),
                    printer, keep=frozenset(args))
    lines = body.lines + ["return " + ", ".join(owned_results(list(graph.outputs), printer))]
    source = f"def f({', '.join(args)}):\n" + "".join(f"    {line}\n" for line in lines)
    env = {"np": np, "xp": np, **SIZES}   # NumPy 2 has the array API's names
    for prelude in printer.preludes.values():
        exec(prelude, env)
    exec(compile(source, "<loop>", "exec"), env)
    return source, env["f"]


def _run(f, *args, sizes=None):
    """f(*args) with dimension sizes `sizes`; checks that no argument was modified and that
    no result shares memory with an argument."""
    saved = [a.copy() for a in args]
    f.__globals__.update(sizes or {})
    try:
        out = f(*args)
    finally:
        f.__globals__.update(SIZES)
    for a, before in zip(args, saved):
        assert np.array_equal(a, before), "an argument was modified"
    for r in out if isinstance(out, tuple) else (out,):
        assert not any(np.shares_memory(r, a) for a in args), "a result aliases an argument"
    return out


def _rnn(h0_name="h0"):
    h0, w, x = _inp(h0_name, (N, D)), _inp("W0", (D, D), "data"), _inp("X", (N, D), "data")
    scan = make("scan", h0, w, x, body=_body(), length=T)
    return Graph((h0, w, x), (make("part", scan, index=0),))


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_a_loop_prints_as_a_python_for_loop(rng):
    source, f = _emit(_rnn())
    assert source == "\n".join([
        "def f(h0, W0, X):",
        "    h = h0.copy()",
        "    for t in range(T):",
        "        h = np.tanh(h @ W0 + X)",
        "    return h",
        ""])
    h0, w, x = rng.normal(size=(3, 4)), 0.5 * rng.normal(size=(4, 4)), rng.normal(size=(3, 4))
    expected = h0
    for _ in range(SIZES["T"]):
        expected = np.tanh(expected @ w + x)
    np.testing.assert_allclose(_run(f, h0, w, x), expected, rtol=1e-14)
    # no step: the initial value, as a copy (the caller's array is never returned)
    np.testing.assert_array_equal(_run(f, h0, w, x, sizes={"T": 0}), h0)


def _carries(*outputs_of, outside=("W",)):
    """A scan carrying h and c (initial values h0, c0) with the outside value W (W0):
    `outputs_of(t, h, c, W)` gives the next h and c."""
    t, h, c = _inp("t", (), "index"), _inp("h", (N, D), "carry"), _inp("c", (N, D), "carry")
    w = _inp("W", (D, D), "outside")
    (outputs,) = outputs_of
    h0, c0, w0 = _inp("h0", (N, D)), _inp("c0", (N, D)), _inp("W0", (D, D), "data")
    scan = make("scan", h0, c0, w0, body=Region((t, h, c, w), outputs(t, h, c, w)), length=T)
    return Graph((h0, c0, w0), (make("part", scan, index=0), make("part", scan, index=1)))


def _values(rng):
    return rng.normal(size=(3, 4)), rng.normal(size=(3, 4)), 0.5 * rng.normal(size=(4, 4))


def _reference(step, h, c, w, steps=SIZES["T"]):
    for t in range(steps):
        h, c = step(t, h, c, w)
    return h, c


@pytest.mark.parametrize("case", ["shared", "each_reads_the_other", "swap", "same_value",
                                  "index", "unchanged"])
def test_two_carried_values(rng, case):
    """Updates that read each other's old values (one tuple assignment), a permutation (no
    copy), one value for both (a copy: two carried variables never share a buffer), the
    loop index in the body, a value carried unchanged."""
    steps = {
        "shared": (lambda t, h, c, w: (make("tanh", h @ w + c), c * 0.5 + (h @ w) * t),
                   lambda t, h, c, w: (np.tanh(h @ w + c), c * 0.5 + (h @ w) * t)),
        "each_reads_the_other": (lambda t, h, c, w: (h + c, c * h),
                                 lambda t, h, c, w: (h + c, c * h)),
        "swap": (lambda t, h, c, w: (c, h), lambda t, h, c, w: (c, h)),
        "same_value": (lambda t, h, c, w: (c, c), lambda t, h, c, w: (c, c)),
        "index": (lambda t, h, c, w: (h * t + c, c), lambda t, h, c, w: (h * t + c, c)),
        "unchanged": (lambda t, h, c, w: (h, make("sin", c) @ w),
                      lambda t, h, c, w: (h, np.sin(c) @ w)),
    }
    build, step = steps[case]
    source, f = _emit(_carries(build))
    h0, c0, w = _values(rng)
    got = _run(f, h0, c0, w)
    for g, e in zip(got, _reference(step, h0, c0, w)):
        np.testing.assert_allclose(g, e, rtol=1e-13)
    assert not np.shares_memory(*got)
    for g, e in zip(_run(f, h0, c0, w, sizes={"T": 0}), (h0, c0)):
        np.testing.assert_array_equal(g, e)
    if case == "each_reads_the_other":
        assert "        h, c = h + c, c * h\n" in source
    if case == "swap":
        assert "        h, c = c, h\n" in source
    if case == "same_value":
        assert "        h = c.copy()\n" in source
    if case == "shared":   # computed once per step, read by both updates
        assert source.count("@") == 1
    if case == "unchanged":   # no assignment to h in the loop
        assert "        h =" not in source


def test_a_statement_computing_the_next_value_assigns_the_carried_variable(rng):
    """`h = ...` in the body itself when nothing after it reads the old h; `del` releases
    the body's temporaries inside the loop; after the loop the carried variable is the
    function's own array, whose buffer later statements may reuse (`np.exp(h, out=h)`):
    with no step, that is a copy of the argument, which stays as it was."""
    names = {}

    def body(t, h, c, w):
        s = make("sum", h * h, axes=(1,), keepdims=True)
        n = make("tanh", (h * s + s) @ w)
        names[n] = "h_next"   # a statement of its own
        return n, c
    graph = _carries(body)
    h, c = graph.outputs
    v = make("exp", h)
    names[v] = "v"
    source, f = _emit(Graph(graph.inputs, (v * v, c)), names)
    loop = source.split("for t in range(T):\n")[1].split("    return")[0]
    assert loop == "\n".join([
        "        h_sum = (h * h).sum(axis=1, keepdims=True)  # (N, 1)",
        "        h = (h * h_sum + h_sum) @ W0  # (N, D)",   # (the product's new array)
        "        np.tanh(h, out=h)",
        "        del h_sum",
        "    v = np.exp(h, out=h)  # (N, D); reuses h's buffer",
        "    del h",
        ""])
    h0, c0, w = _values(rng)

    def step(t, h, c, w):
        s = (h * h).sum(axis=1, keepdims=True)
        return np.tanh((h * s + s) @ w), c
    eh, ec = _reference(step, h0, c0, w)
    got = _run(f, h0, c0, w)
    np.testing.assert_allclose(got[0], np.exp(eh) ** 2, rtol=1e-13)
    np.testing.assert_allclose(got[1], ec, rtol=1e-13)
    got = _run(f, h0, c0, w, sizes={"T": 0})
    np.testing.assert_allclose(got[0], np.exp(h0) ** 2, rtol=1e-13)


def test_outside_values_computed_once_before_the_loop(rng):
    """An outside value that is an expression is computed before the loop and released
    after it; an initial value that is an expression needs no copy."""
    graph, w0, x = _rnn(), None, None
    h0, w0, x = graph.inputs
    t, h = _inp("t", (), "index"), _inp("h", (N, D), "carry")
    w, xx = _inp("W", (D, D), "outside"), _inp("x", (N, D), "outside")
    body = Region((t, h, w, xx), (make("tanh", h @ w + xx),))
    scan = make("scan", h0 * 2.0, w0 * 3.0, make("exp", x), body=body, length=T)
    out = make("sum", make("part", scan, index=0), axes=(0, 1), keepdims=False)
    source, f = _emit(Graph((h0, w0, x), (out,)))
    assert source == "\n".join([
        "def f(h0, W0, X):",
        "    h = 2.0 * h0",
        "    W0_scaled = 3.0 * W0  # (D, D)",
        "    X_exp = np.exp(X)  # (N, D)",
        "    for t in range(T):",
        "        h = np.tanh(h @ W0_scaled + X_exp)",
        "    del W0_scaled, X_exp",
        "    return h.sum()",
        ""])
    a, b, c = rng.normal(size=(3, 4)), 0.2 * rng.normal(size=(4, 4)), rng.normal(size=(3, 4))
    expected = 2.0 * a
    for _ in range(SIZES["T"]):
        expected = np.tanh(expected @ (3.0 * b) + np.exp(c))
    assert _run(f, a, b, c) == pytest.approx(expected.sum(), rel=1e-13)


def _nested():
    """for t in range(T): g = h; for s in range(S): g = 0.5 * g + h * s; h = tanh(g @ W)."""
    t, h, w = _inp("t", (), "index"), _inp("h", (N, D), "carry"), _inp("W", (D, D), "outside")
    s, g = _inp("s", (), "index"), _inp("g", (N, D), "carry")
    hh = _inp("h_outer", (N, D), "outside")
    inner = make("scan", h, h, body=Region((s, g, hh), (g * 0.5 + hh * s,)), length=S)
    outer = Region((t, h, w), (make("tanh", make("part", inner, index=0) @ w),))
    h0, w0 = _inp("h0", (N, D)), _inp("W0", (D, D), "data")
    return Graph((h0, w0), (make("part", make("scan", h0, w0, body=outer, length=T), index=0),))


def test_nested_loops(rng):
    graph = _nested()
    source, f = _emit(graph)
    assert source == "\n".join([
        "def f(h0, W0):",
        "    h = h0.copy()",
        "    for t in range(T):",
        "        g = h.copy()",
        "        for s in range(S):",
        "            g = 0.5 * g + h * s",
        "        h = np.tanh(g @ W0)",
        "    return h",
        ""])
    h0, w0 = rng.normal(size=(3, 4)), 0.5 * rng.normal(size=(4, 4))
    expected = h0
    for _ in range(SIZES["T"]):
        g = expected
        for s in range(SIZES["S"]):
            g = 0.5 * g + expected * s
        expected = np.tanh(g @ w0)
    np.testing.assert_allclose(_run(f, h0, w0), expected, rtol=1e-13)
    np.testing.assert_allclose(_run(f, h0, w0, sizes={"S": 0}),
                               _reference(lambda t, h, c, w: (np.tanh(h @ w), c),
                                          h0, h0, w0)[0], rtol=1e-13)
    assert "body(" in pretty(graph) and pretty(graph).count("yield") == 2


def test_the_passes_keep_a_loop_working(rng):
    """`optimize` (simplify, fuse, dce, matchain) and `lower` on a graph holding a loop:
    the loop is kept as it is, the graph around it optimised, the names in its body kept."""
    graph = _rnn()
    h0, w0, x = graph.inputs
    (h,) = graph.outputs
    a, b = _inp("A", (D, D), "data"), _inp("B", (D, 1), "data")
    out = (h @ a) @ b                       # matchain: h @ (A @ B) is cheaper
    body_node = graph.outputs[0].args[0].regions[0].outputs[0]
    dead = make("exp", x)
    named = Graph((h0, w0, x, a, b), (out,), {body_node: "h_next", h: "h_last", dead: "e"})
    optimized = optimize(named)
    verify(optimized)
    assert optimized.names == {body_node: "h_next", h: "h_last"}   # dce: only `e` dropped
    (o,) = optimized.outputs
    assert o.args[0] is h and o.args[1].args == (a, b)
    lowered = lower(optimized)
    verify(lowered)
    source, f = _emit(lowered, dict(lowered.names))
    # the named next value is a statement of its own, computed in its own buffer, which
    # is the carried variable's: no `h = h_next` after it
    assert "    for t in range(T):\n        h = h @ W0 + X  # (N, D)\n" \
           "        np.tanh(h, out=h)\n    return h @ (A @ B)\n" in source
    hv, wv, xv = rng.normal(size=(3, 4)), 0.5 * rng.normal(size=(4, 4)), rng.normal(size=(3, 4))
    av, bv = rng.normal(size=(4, 4)), rng.normal(size=(4, 1))
    expected = hv
    for _ in range(SIZES["T"]):
        expected = np.tanh(expected @ wv + xv)
    np.testing.assert_allclose(_run(f, hv, wv, xv, av, bv), expected @ av @ bv, rtol=1e-12)


def test_the_loop_layout_is_the_printers(rng):
    """The loop's header and indentation come from the printer (`Printer.loop`), the
    copies and everything else from the target's constructs: a target without `out=`
    and `.copy()` (test_printer's array API toy) laying loops out as `while` loops."""
    from test_printer import ToyPrinter

    class WhileLoops(ToyPrinter):
        def loop(self, index, stop, body):
            return [f"{index} = 0", f"while {index} < {stop}:",
                    *(f"    {line}" for line in body), f"    {index} += 1"]

    graph = _nested()
    source, f = _emit(graph, printer=WhileLoops())
    assert "while t < T:" in source and "    while s < S:" in source
    assert "for " not in source and "np." not in source and ".copy()" not in source
    assert "h = xp.asarray(h0, copy=True)" in source
    _, reference = _emit(graph)
    h0, w0 = rng.normal(size=(3, 4)), 0.5 * rng.normal(size=(4, 4))
    np.testing.assert_allclose(_run(f, h0, w0), _run(reference, h0, w0), rtol=1e-15)


def test_a_region_is_printed_only_by_a_scheduler():
    with pytest.raises(InternalError, match="no scheduler to print its region"):
        NumpyPrinter().region(_rnn().outputs[0].args[0])


def test_a_statement_reading_the_old_value_after_its_first_line_keeps_its_variable(rng):
    """`v = np.exp(h @ W0); v *= h` must not become `h = np.exp(h @ W0); h *= h`."""
    t, h, w = _inp("t", (), "index"), _inp("h", (N, D), "carry"), _inp("W", (D, D), "outside")
    n = make("exp", h @ w) * h
    h0, w0 = _inp("h0", (N, D)), _inp("W0", (D, D), "data")
    scan = make("scan", h0, w0, body=Region((t, h, w), (n,)), length=T)
    source, f = _emit(Graph((h0, w0), (make("part", scan, index=0),)), {n: "h_next"})
    assert "        h_next *= h\n        h = h_next\n" in source
    h0, w0 = 0.3 * rng.normal(size=(3, 4)), 0.3 * rng.normal(size=(4, 4))
    expected = h0
    for _ in range(SIZES["T"]):
        expected = np.exp(expected @ w0) * expected
    np.testing.assert_allclose(_run(f, h0, w0), expected, rtol=1e-13)


def test_a_scalar_carry_a_literal_trip_count_and_a_carried_value_left_unused(rng):
    t, h, c = _inp("t", (), "index"), _inp("h", (N, D), "carry"), _inp("c", (), "carry")
    w = _inp("W", (D, D), "outside")
    h0, w0 = _inp("h0", (N, D)), _inp("W0", (D, D), "data")
    total = c + make("sum", h, axes=(0, 1), keepdims=False) * t
    body = Region((t, h, c, w), (make("tanh", h @ w), total))
    scan = make("scan", h0, make("const", value=0), w0, body=body, length=3)
    source, f = _emit(Graph((h0, w0), (make("part", scan, index=1),)))
    assert "    for t in range(3):\n        h, c = np.tanh(h @ W0), c + np.sum(h) * t\n" in source
    a, b = rng.normal(size=(3, 4)), rng.normal(size=(4, 4))
    expected_h, expected = a, 0.0
    for k in range(3):
        expected_h, expected = np.tanh(expected_h @ b), expected + expected_h.sum() * k
    assert f(a, b) == pytest.approx(expected, rel=1e-13)
