"""Dead-code elimination: only what the outputs need.

A graph is the set of nodes its outputs reach, so an unused computation is never emitted;
what this pass removes is the record of it: names of source variables whose values the
outputs do not need (`t = exp(x)` never used). Scheduling then sees only live nodes. The
nodes of a live node's region (a loop body) are live.
"""

from __future__ import annotations

from ..ir import Graph, builder, topo_order
from ..ops.control import REGIONS_BUILT


def dce(graph: Graph) -> Graph:
    """The graph without names of nodes the outputs do not need (arguments keep theirs)."""
    live = set(graph.order)   # (nodes hash by identity)
    live.update(graph.inputs)
    memo = builder().memo
    holders = memo.get("region_ops")
    if holders is None:
        holders = memo["region_ops"] = {op for op, d in builder().ops.items() if d.has("region")}
    # (no loop built in this compilation: no node holds a region)
    pending = [n for n in graph.order if n.op in holders] if memo.get(REGIONS_BUILT) else []
    while pending:   # the bodies of the loops, and of the loops in them
        for region in pending.pop().regions:
            order = topo_order(region.outputs)
            live.update(order)
            live.update(region.inputs)
            pending += [n for n in order if n.op in holders]
    names = {n: s for n, s in graph.names.items() if n in live}
    if len(names) == len(graph.names):
        return graph
    return graph.with_outputs(graph.outputs, names)
