"""Common-subexpression elimination: structurally equal nodes become one node.

Nodes are shared through the builder's table, which is per compilation: the forward
graph, the gradient, the HVP and the Hessian of an entry point all draw from it, so a
subexpression they have in common is one node, computed once in each emitted function.
Derivative graphs are built shared already; this pass shares a graph built without it
(the frontend transcribes the source as written, `exp(x) + exp(x)` with two `exp`).
"""

from __future__ import annotations

from ..ir import Graph, builder, make, shared


def cse(graph: Graph) -> Graph:
    """The graph with structurally equal nodes merged (the first one's name kept)."""
    b = builder()
    if all(not n.args or id(n) in b.settled for n in graph.order):
        return graph   # every node was found in the table by `make`: nothing is duplicated
    new: dict[int, object] = {}
    names = dict(graph.names)
    changed = False
    inputs = {id(n) for n in graph.inputs}   # arguments are never merged with others
    with b.using(rules=(), intern=True):
        # In creation order (a topological order too: arguments exist before their users),
        # so of equal nodes the first one written in the source is kept, with its line.
        for n in sorted(graph.order, key=lambda n: n.serial):
            args = [new[id(a)] for a in n.args]
            if id(n) in inputs:
                m = n
            elif all(x is y for x, y in zip(args, n.args)):
                m = shared(n)
            else:
                with b.at(origin=n.origin, phase=n.phase):
                    m = make(n.op, *args, **n.kw)
            new[id(n)] = m
            if m is not n:
                changed = True
                if n in names:
                    names.setdefault(m, names[n])
    if not changed:
        return graph
    return graph.with_outputs([new[id(o)] for o in graph.outputs], names)
