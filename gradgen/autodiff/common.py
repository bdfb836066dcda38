"""What both modes share: symbolic zeros, un-broadcasting and materialisation.

A derivative may be *lazy*: its shape broadcasts to its primal's shape without being
equal to it (a scalar `1 / N` standing for a full array of them). Elementwise rules take
lazy derivatives as they are; everything else gets them materialised first.
"""

from __future__ import annotations

from ..ir import Node, make
from ..ops.registry import REGISTRY
from ..shapes import ONE, dims_equal, same_shape


def active_nodes(order: list[Node], wrt: set[int]) -> set[int]:
    """Ids of the nodes (in topological `order`) whose value depends on a node in `wrt`."""
    active = set(wrt)
    for n in order:
        if id(n) in active or REGISTRY[n.op].has("nondiff"):
            continue
        if any(id(a) in active for a in n.args):
            active.add(id(n))
    return active


def unbroadcast(g: Node, shape: tuple) -> Node:
    """Sum `g` down to something that broadcasts to `shape` (the one place this happens).

    Axes that `g` has and `shape` lacks, and axes where `shape` is 1 but `g` is not, are
    summed; axes where `g` is 1 but `shape` is not stay lazy.
    """
    lead = g.ndim - len(shape)
    if lead > 0:
        g = make("sum", g, axes=tuple(range(lead)), keepdims=False)
    offset = len(shape) - g.ndim
    axes = tuple(i for i, d in enumerate(g.shape)
                 if shape[i + offset] == ONE and d != ONE)
    if axes:
        g = make("sum", g, axes=axes, keepdims=True)
    return g


def materialize(g: Node, like: Node) -> Node:
    """`g` with exactly the shape of `like` (and `like`'s dtype, if `g` is a constant)."""
    if same_shape(g.shape, like.shape) and not g.is_const:
        return g
    if g.ndim == like.ndim and all(dims_equal(a, b) for a, b in zip(g.shape, like.shape)):
        return g
    return make("expand_like", g, like)


def add_contribution(table: dict, node: Node, g: Node) -> None:
    """Accumulate derivative `g` for `node` (summed over every consumer)."""
    prev = table.get(id(node))
    table[id(node)] = g if prev is None else prev + g
