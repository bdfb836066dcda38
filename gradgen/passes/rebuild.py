"""Rebuilding a graph bottom-up with a rewrite rule: the machinery every pass shares."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

from ..ir import Node, builder, make, topo_order, use_counts


def rebuild(outputs: Sequence[Node], rule: Callable[[Node, Counter], Node | None],
            names: dict | None = None) -> list[Node]:
    """New outputs where every node, once its arguments are rebuilt, may be replaced by
    `rule(node, uses)` (None keeps it). `uses` counts each node's consumers in the original
    graph. Nodes are rebuilt through `make`, so canonical forms and sharing are kept;
    `names` (Node -> name) is updated in place so replaced nodes keep their names."""
    order = topo_order(outputs)
    uses = use_counts(order, outputs)
    new: dict[int, Node] = {}
    b = builder()
    for n in order:
        args = [new[id(a)] for a in n.args]
        with b.at(origin=n.origin, phase=n.phase):
            m = n if all(x is y for x, y in zip(args, n.args)) else make(n.op, *args, **n.kw)
            r = rule(m, uses) if m.args else None
        new[id(n)] = r if r is not None else m
        if names is not None and new[id(n)] is not n and n in names:
            names.setdefault(new[id(n)], names[n])
    return [new[id(o)] for o in outputs]
