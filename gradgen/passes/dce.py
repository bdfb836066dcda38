"""Dead-code elimination: only what the outputs need.

A graph is the set of nodes its outputs reach, so an unused computation is never emitted;
what this pass removes is the record of it: names of source variables whose values the
outputs do not need (`t = exp(x)` never used). Scheduling then sees only live nodes.
"""

from __future__ import annotations

from ..ir import Graph


def dce(graph: Graph) -> Graph:
    """The graph without names of nodes the outputs do not need (arguments keep theirs)."""
    live = {id(n) for n in graph.order} | {id(n) for n in graph.inputs}
    names = {n: s for n, s in graph.names.items() if id(n) in live}
    if len(names) == len(graph.names):
        return graph
    return graph.with_outputs(graph.outputs, names)
