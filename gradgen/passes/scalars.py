"""Scalar placement, a lowering: a scalar factor multiplies the smallest operand.

The canonical form keeps scalar constants outermost, `c * (p * Q)`, which makes equal
terms easy to find; but computed that way the constant costs one pass over the large
`p * Q`. Here `c * (p * Q)` becomes `(c * p) * Q` when `p` has fewer dimensions than
`Q` (in the Hessian of the logistic loss, `/ N` lands on an (N,) vector instead of the
(D, N) matrix). It runs once, after the passes that reach a fixed point, as a final
whole-graph pass whose output is not rebuilt through the rules (`ir.make_as_is`), which
would move the constant back out. The op it moves constants across is the op table's
"product" (elementwise multiplication: associative, commutative).
"""

from __future__ import annotations

from ..ir import Graph, Node, any_made, builder, make_as_is
from .rebuild import rebuild_graph


def place_scalars(graph: Graph) -> Graph:
    """The graph with scalar constant factors moved onto the smallest operand."""
    products = builder().with_trait("product")

    def product(n: Node) -> bool:
        return n.op in products

    def candidate(n: Node) -> bool:   # c * (p * Q), p and Q of different ranks
        if not product(n) or not n.args[0].is_const or not product(n.args[1]):
            return False
        p, q = n.args[1].args
        return not p.is_const and p.ndim != q.ndim

    def found(nodes) -> bool:
        return any(candidate(n) for n in nodes if n.op in products)

    # (none made in the compilation: `graph` is not walked; see `any_made`)
    if not any_made("place_scalars", graph, found) or not found(graph.order):
        return graph

    def rule(n: Node, uses) -> Node | None:
        if not candidate(n):
            return None
        c, x = n.args
        if uses[id(x)] != 1:
            return None
        p, q = x.args
        if p.ndim < q.ndim:
            return make_as_is(n.op, make_as_is(n.op, c, p), q)
        if q.ndim < p.ndim:
            return make_as_is(n.op, p, make_as_is(n.op, c, q))
        return None

    return rebuild_graph(graph, rule, skip=lambda n: not candidate(n), construct=make_as_is)
