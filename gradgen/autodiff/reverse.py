"""Reverse mode: the topological order backwards, local gradient times upstream gradient,
summed over every consumer of a node."""

from __future__ import annotations

from collections.abc import Sequence

from ..dims import broadcast
from ..ir import Node, builder, topo_order
from ..ops.registry import REGISTRY
from .common import active_nodes, add_contribution, materialize, unbroadcast

__all__ = ["vjp"]

# The dtype of a loop's value: the tuple of its final carried values. Its cotangent (and
# tangent) is a dict {k: that of the k-th value} (gradgen/autodiff/loops.py).
TUPLE = "tuple"


def vjp(outputs: Sequence[Node], seeds: Sequence[Node], wrt: Sequence[Node],
        ) -> tuple[list[Node | None], dict[int, Node]]:
    """Cotangents of `wrt` for output cotangents `seeds`.

    Returns the cotangent of each node of `wrt` (None where it does not influence the
    outputs; lazy shapes are materialised) and the table of every node's cotangent.
    """
    order = topo_order(outputs)
    active = active_nodes(order, {id(w) for w in wrt})
    ct: dict[int, Node] = {}
    for out, seed in zip(outputs, seeds):
        if id(out) in active:
            add_contribution(ct, out, seed)
    b = builder()
    nondiff, elementwise = b.with_trait("nondiff"), b.with_trait("elementwise")
    reduction = b.with_trait("reduction")
    for node in reversed(order):
        g = ct.get(id(node))
        if g is None or not node.args or node.op in nondiff:
            continue
        opdef = REGISTRY[node.op]
        # b.at(origin=node.origin, phase="backward"), without a context manager per node
        saved = b.origin, b.phase
        if node.origin is not None:
            b.origin = node.origin
        b.phase = "backward"
        try:
            if node.dtype == TUPLE:   # a loop: {k: cotangent of its k-th carried value}
                if not g:
                    continue
            elif node.op not in elementwise and not (node.op in reduction and g.ndim == 0):
                made = materialize(g, node)
                if g.is_const and made is not g:   # the table holds the array (for its name)
                    ct[id(node)] = made
                g = made
            cts = opdef.vjp(g, node)
            pointwise = node.op in elementwise
            for arg, c in zip(node.args, cts):
                if c is None or id(arg) not in active:
                    continue
                if arg.dtype == TUPLE:   # `part` of a loop: a cotangent of one value of it
                    parts = ct.setdefault(id(arg), {})
                    for k, ck in c.items():
                        parts[k] = ck if k not in parts else parts[k] + ck
                    continue
                # An elementwise rule's cotangent stands for one of the node's full shape;
                # other rules return the argument's own (possibly batch-broadcast) shape.
                full = node.shape if pointwise else broadcast(c.shape, arg.shape)
                add_contribution(ct, arg, unbroadcast(c, arg.shape, full))
        finally:
            b.origin, b.phase = saved
    results = []
    for w in wrt:
        g = ct.get(id(w))
        if g is not None:
            with b.at(phase="backward"):
                g = materialize(g, w)
        results.append(g)
    return results, ct
