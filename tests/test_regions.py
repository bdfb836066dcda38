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
from gradgen.passes import building

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
        "  body(%4 t: (), %5 h: (N, D), %6 W: (D, D), %7 x: (N, D)) {",
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


def _emit(graph: Graph, names: dict | None = None) -> tuple[str, object]:
    """The source of `def f(<graph inputs>)` computing the graph's outputs (dimension sizes
    as globals), as the compiler schedules and prints a function, and the function."""
    verify(graph)
    args = [x.attr("name") for x in graph.inputs]
    printer = NumpyPrinter()
    body = schedule(list(graph.outputs), dict(names or {}), Namer(set(args) | set(SIZES)),
                    printer, keep=frozenset(args))
    lines = body.lines + ["return " + ", ".join(owned_results(list(graph.outputs), printer))]
    source = f"def f({', '.join(args)}):\n" + "".join(f"    {line}\n" for line in lines)
    env = {"np": np, **SIZES}
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
