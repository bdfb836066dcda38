"""Graph-to-graph passes, each a pure function `Graph -> Graph` in its own file.

`optimize` runs simplify, fuse, cse, dce and matchain in turn until none changes the
graph (a fixed point); `lower` then makes the rewrites the canonical forms would undo.
The frontend builds the graph as the source is written, so on it every pass has work;
derivative graphs are built with the rewrite rules applied as each node is made (which
keeps them small while they are built), so on them the rule passes find a fixed point
at once, and only the whole-graph passes (matchain, and lower) change anything.
"""

from __future__ import annotations

from ..errors import InternalError
from ..ir import RULE_KINDS, Graph, builder, settle
from .cse import cse
from .dce import dce
from .fuse import fuse
from .matchain import matchain, reorder_matrix_chains
from .rebuild import rebuild
from .scalars import place_scalars
from .simplify import simplify

# The passes iterated to a fixed point, in order.
PIPELINE = (simplify, fuse, cse, dce)
MAX_ROUNDS = 50


def optimize(graph: Graph, hints: dict[str, int] | None = None) -> Graph:
    """The graph after every pass of `PIPELINE` and `matchain`, repeated until nothing
    changes."""
    known = builder().settled
    if all(known.get(id(n)) == RULE_KINDS for n in graph.order if n.args):
        steps = (dce,)   # built with every rule applied, and shared: only dce can apply
    else:
        steps = PIPELINE
    for _ in range(MAX_ROUNDS):
        before = graph
        for step in steps:
            graph = step(graph)
        graph = matchain(graph, hints)
        if graph is before:   # a fixed point: no rule applies to any node
            for n in graph.order if steps is PIPELINE else ():
                if n.args and known.get(id(n)) != RULE_KINDS:
                    for kind in RULE_KINDS:
                        settle(n, kind)
            return graph
    raise InternalError(f"the passes did not reach a fixed point in {MAX_ROUNDS} rounds")


def lower(graph: Graph) -> Graph:
    """The rewrites that come after optimisation (they leave canonical form)."""
    return place_scalars(graph)


__all__ = ["PIPELINE", "cse", "dce", "fuse", "lower", "matchain", "optimize", "place_scalars",
           "rebuild", "reorder_matrix_chains", "simplify"]
