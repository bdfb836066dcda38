"""Graphs (issue 14, item 5): `gradgen graph` and `gradgen.graph` label the outputs with
their names, draw no internal node (`stop_gradient`), carry a legend and each node's
source line in its tooltip, draw a loop (a node holding a region) as one node, and return a
drawing a notebook shows as SVG when Graphviz is installed."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

import gradgen
from gradgen.dims import dim_symbol
from gradgen.graphviz import Drawing, to_dot
from gradgen.ir import Graph, Region, make
from gradgen.passes import building

ROOT = Path(__file__).resolve().parents[1]
MLP = ROOT / "examples" / "mlp" / "mlp.grad"


@pytest.fixture(scope="module")
def backward() -> Drawing:
    return gradgen.graph(MLP, backward=True)


def _labels(dot: str) -> dict[str, str]:
    return dict(re.findall(r'^\s+(\w+) \[label="([^"]*)"', dot, re.MULTILINE))


def test_outputs_are_named_and_no_internal_node_is_drawn(backward):
    dot = backward.source
    labels = _labels(dot)
    outputs = sorted(v for k, v in labels.items() if k.startswith("out"))
    assert outputs == ["dV", "dW", "value"]
    assert "stop_gradient" not in dot   # the mlp's logsumexp has one in its graph
    assert "output 0" not in dot
    # each output hangs off the node that computes it
    assert re.search(r'n(\d+) \[label="dV = matmul', dot)
    forward = gradgen.graph(MLP).source
    assert sorted(v for k, v in _labels(forward).items() if k.startswith("out")) == ["value"]


def test_legend_and_source_lines_in_tooltips(backward):
    dot = backward.source
    assert "subgraph cluster_legend" in dot
    legend = dot[dot.index("cluster_legend"):]
    for word in ("argument", "forward", "backward", "result"):
        assert word in legend
    assert re.search(r'label="Q = matmul\\n\(N, M\)".*tooltip="line 8: Q = X @ V"', dot)
    assert 'tooltip="line 11: return -mean(sum(U * Y, axis=1) - logsumexp(U, axis=1))"' in dot


def test_source_text_is_escaped_in_the_dot():
    src = ('def f(x: Param[N]):\n'
           '    """A \\"quoted\\" doc."""\n'
           '    y = x * 2  # a "comment" with a \\\\ backslash\n'
           '    return sum(y)\n')
    dot = gradgen.graph(src, backward=True).source
    for line in dot.splitlines():   # every string closed on its line: quotes escaped
        assert len(re.findall(r'(?<!\\)"', line)) % 2 == 0, line


def test_a_loop_is_drawn_as_one_node():
    N, D, T = dim_symbol("N"), dim_symbol("D"), dim_symbol("T")
    with building():
        def inp(name, shape, role):
            return make("input", name=name, role=role, shape=tuple(shape))
        h, w = inp("h", (N, D), "carry"), inp("W", (D, D), "outside")
        body = Region((inp("t", (), "index"), h, w), (make("tanh", h @ w),))
        h0, w0 = inp("h0", (N, D), "param"), inp("W0", (D, D), "data")
        scan = make("scan", h0, w0, body=body, length=T)
        graph = Graph((h0, w0), (make("part", scan, index=0),))
    dot = to_dot(graph, "rnn", ["h"])
    labels = _labels(dot)
    assert "loop\\n" in "".join(labels.values())
    assert "tanh" not in dot   # the body is inside the one node


def test_api_drawing_saves_and_shows_svg(backward, tmp_path):
    backward.save(str(tmp_path / "g.dot"))
    assert (tmp_path / "g.dot").read_text(encoding="utf-8") == backward.source
    with pytest.raises(ValueError, match=r"\.dot, \.svg or \.png"):
        backward.save(str(tmp_path / "g.txt"))
    if shutil.which("dot") is None:
        assert backward._repr_svg_() is None   # the notebook shows the text repr
        return
    svg = backward._repr_svg_()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg and ">dV<" in svg
    assert "<title>line 8: Q = X @ V</title>" in svg or "line 8: Q = X @ V" in svg
