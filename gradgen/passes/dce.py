"""Dead-code elimination: only what the outputs need.

A graph is the set of nodes its outputs reach, so an unused computation is never emitted;
what this pass removes is the record of it: names of source variables whose values the
outputs do not need (`t = exp(x)` never used). Scheduling then sees only live nodes. The
nodes of a live node's region (a loop body) are live.
"""

from __future__ import annotations

from ..ir import Graph, builder, topo_order


def dce(graph: Graph) -> Graph:
    """The graph without names of nodes the outputs do not need (arguments keep theirs)."""
    live = {id(n) for n in graph.order} | {id(n) for n in graph.inputs}
    holders = {name for name, d in builder().ops.items() if d.has("region")}
    pending = [graph.order]
    while pending:   # the bodies of the loops, and of the loops in them
        for n in pending.pop():
            if n.op in holders:
                for region in n.regions:
                    order = topo_order(region.outputs)
                    live.update(map(id, order))
                    live.update(map(id, region.inputs))
                    pending.append(order)
    names = {n: s for n, s in graph.names.items() if id(n) in live}
    if len(names) == len(graph.names):
        return graph
    return graph.with_outputs(graph.outputs, names)
