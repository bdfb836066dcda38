"""Forward mode: tangents pushed through the topological order by the same rule table."""

from __future__ import annotations

from collections.abc import Sequence

from ..ir import Node, builder, topo_order
from ..ops.registry import REGISTRY
from .common import active_nodes, materialize

__all__ = ["jvp"]


def jvp(outputs: Sequence[Node], tangents: dict[int, Node], wrt: Sequence[Node],
        ) -> tuple[list[Node | None], dict[int, Node]]:
    """Tangents of `outputs` given tangents (by node id) of the nodes in `wrt`.

    Returns one tangent per output (None for a zero tangent) and the table of all tangents.
    """
    order = topo_order(outputs)
    active = active_nodes(order, {id(w) for w in wrt})
    tan: dict[int, Node] = dict(tangents)
    b = builder()
    for node in order:
        if id(node) in tan or id(node) not in active:
            continue
        opdef = REGISTRY[node.op]
        if opdef.has("nondiff") or opdef.jvp is None:
            continue
        ts = [tan.get(id(a)) for a in node.args]
        with b.at(origin=node.origin, phase="backward"):
            if not opdef.has("elementwise"):
                ts = [None if t is None else materialize(t, a) for t, a in zip(ts, node.args)]
            t = opdef.jvp(ts, node)
        if t is not None:
            tan[id(node)] = t
    results = []
    for out in outputs:
        t = tan.get(id(out))
        if t is not None:
            with b.at(phase="backward"):
                t = materialize(t, out)
        results.append(t)
    return results, tan
