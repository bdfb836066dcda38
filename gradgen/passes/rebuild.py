"""Rebuilding a graph bottom-up with a rewrite rule: the machinery whole-graph passes share."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

from ..ir import Graph, Node, builder, carry_names, make, topo_order, use_counts


def rebuild(outputs: Sequence[Node], rule: Callable[[Node, Counter], Node | None],
            names: dict | None = None, order: list[Node] | None = None,
            skip: Callable[[Node], bool] | None = None,
            construct: Callable[..., Node] = make) -> list[Node]:
    """New outputs where every node, once its arguments are rebuilt, may be replaced by
    `rule(node, uses)` (None keeps it). `uses` counts each node's consumers in the original
    graph. Nodes whose arguments changed are rebuilt with `construct` (`make`: the
    builder's rules have their say; `ir.make_as_is`: they do not); a node whose arguments
    did not change and for which `skip(node)` is true is kept as it is. `names`
    (Node -> name) is updated in place so replaced nodes keep their names (and their
    temporaries' names: `ir.carry_names`); `order` is the outputs' topological order, if
    known."""
    order = topo_order(outputs) if order is None else order
    uses = use_counts(order, outputs)
    new: dict[int, Node] = {}
    b = builder()
    for n in order:
        args = [new[id(a)] for a in n.args]
        unchanged = all(x is y for x, y in zip(args, n.args))
        if not n.args or unchanged and skip is not None and skip(n):
            new[id(n)] = n
            continue
        with b.at(origin=n.origin, phase=n.phase):
            m = n if unchanged else construct(n.op, *args, **n.kw)
            r = rule(m, uses)
        m = m if r is None else r
        new[id(n)] = m
        if m is not n:
            carry_names(n, m, names)
    return [new[id(o)] for o in outputs]


def rebuild_graph(graph: Graph, rule: Callable[[Node, Counter], Node | None],
                  skip: Callable[[Node], bool] | None = None,
                  construct: Callable[..., Node] = make) -> Graph:
    """`rebuild` of a whole graph: the same graph when nothing changed."""
    if skip is not None and all(skip(n) for n in graph.order):
        return graph
    names = dict(graph.names)
    outputs = rebuild(graph.outputs, rule, names, graph.order, skip, construct)
    if all(a is b for a, b in zip(outputs, graph.outputs)):
        return graph
    return graph.with_outputs(outputs, names)
