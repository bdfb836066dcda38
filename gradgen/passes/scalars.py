"""Scalar placement, a lowering: a scalar factor multiplies the smallest operand.

The canonical form keeps scalar constants outermost, `c * (p * Q)`, which makes equal
terms easy to find; but computed that way the constant costs one pass over the large
`p * Q`. Here `c * (p * Q)` becomes `(c * p) * Q` when `p` has fewer dimensions than
`Q` (in the Hessian of the logistic loss, `/ N` lands on an (N,) vector instead of the
(D, N) matrix). It runs once, after the passes that reach a fixed point, and builds its
nodes without rewrite rules, which would move the constant back out.
"""

from __future__ import annotations

from ..ir import Graph, Node, builder, make
from .rebuild import rebuild_graph


def place_scalars(graph: Graph) -> Graph:
    """The graph with scalar constant factors moved onto the smallest operand."""
    b = builder()

    def candidate(n: Node) -> bool:   # c * (p * Q), p and Q of different ranks
        if n.op != "mul" or not n.args[0].is_const or n.args[1].op != "mul":
            return False
        p, q = n.args[1].args
        return not p.is_const and p.ndim != q.ndim

    if not any(candidate(n) for n in graph.order):
        return graph

    def rule(n: Node, uses) -> Node | None:
        if not candidate(n):
            return None
        c, x = n.args
        if uses[id(x)] != 1:
            return None
        p, q = x.args
        if p.ndim < q.ndim:
            return make("mul", make("mul", c, p), q)
        if q.ndim < p.ndim:
            return make("mul", p, make("mul", c, q))
        return None

    with b.using(rules=()):
        return rebuild_graph(graph, rule, skip=lambda n: not candidate(n))
