"""Shortcuts of the graph side's analyses give the answers of the plain definitions:
`weak` (which stops at the first argument known not to be weak) against the bottom-up
analysis of its rule, and `topo_order` (which takes memoised orders of single roots
whole) against a fresh depth-first walk."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from gradgen import ir
from gradgen.autodiff.derivatives import EntryDerivatives
from gradgen.frontend import parse_program
from gradgen.ops import dtypes
from gradgen.passes import building

ROOT = Path(__file__).resolve().parent.parent
# (comparisons and where: bool nodes; constants; loops: a body's inputs)
SOURCES = ["tests/corpus/ordinal.grad", "tests/corpus/svm.grad", "tests/corpus/seq_gru.grad",
           "examples/mlp/mlp.grad"]


def _graphs(path: str) -> list[list[ir.Node]]:
    """Roots of the forward graph, the gradient and the JVP of each entry point of a source
    (built in the current builder)."""
    program = parse_program((ROOT / path).read_text(), path)
    out = []
    for e in program.entries:
        d = EntryDerivatives(e.output, [p.node for p in e.params])
        roots = [e.output]
        if e.output.ndim == 0 and e.params:
            roots += d.gradient().outputs
        t = [ir.make("input", name=f"t{k}", role="tangent", shape=tuple(p.node.shape))
             for k, p in enumerate(e.params)]
        roots += [x for x in d.jvp(t).outputs]
        out.append(roots)
    return out


@pytest.mark.parametrize("path", SOURCES)
def test_weak_agrees_with_its_rule_on_every_node(path):
    with building():
        nodes = [n for roots in _graphs(path) for n in ir.topo_order(roots)]
        for region_holder in [n for n in nodes if n.regions]:
            for r in region_holder.regions:
                nodes += ir.topo_order(r.outputs)
        rng = random.Random(0)
        asked = nodes[::-1]   # users first: the walk then stops early most
        rng.shuffle(asked[len(asked) // 2:])
        got = {n: dtypes.weak(n) for n in asked}
        want = {n: ir.analysis("weak, by its rule", n, dtypes._weak_rule) for n in nodes}
        assert got == want
        assert any(want.values()) and not all(want.values())


@pytest.mark.parametrize("path", SOURCES)
def test_topo_order_with_memoised_roots_is_the_plain_walk(path):
    with building():
        nodes = [n for roots in _graphs(path) for n in ir.topo_order(roots)]
        rng = random.Random(1)
        for _ in range(40):
            k = rng.randint(1, 4)
            roots = tuple(rng.sample(nodes, min(k, len(nodes))))
            if rng.random() < 0.5:   # some of the roots' orders known alone
                for r in roots[:-1]:
                    ir.topo_order([r])
            got = ir.topo_order(roots)
            assert got == ir._walk(roots, {})
            assert len(set(got)) == len(got)
