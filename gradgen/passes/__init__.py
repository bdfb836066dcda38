"""Graph-to-graph passes, each a pure function `Graph -> Graph` in its own file, and the
rule engine (`rules.py`) that applies the ops' named rewrite rules.

A compilation's builder (`building()`) applies the canonical rules (tags `canonicalize`,
`stabilize`, `fuse`) as every node is made, and interns every node: its graphs are in
canonical form and shared by construction, whoever builds them (the frontend, autodiff,
a pass). `optimize` runs simplify, fuse, dce and matchain until none changes the graph (a
fixed point); on a compilation's graphs simplify and fuse have nothing to do, and they
rewrite a graph built without the rules (the golden tests build the source as written).
`lower` then makes the rewrites the canonical forms would undo. Every pass also runs on the
bodies of the loops (`regions.in_regions`), and `hoist` moves loop-invariant code out.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from .. import ir
from ..errors import InternalError
from ..ir import Graph
from ..ops import REGISTRY
from .dce import dce
from .fuse import fuse
from .horner import horner
from .loops import loops
from .matchain import matchain, reorder_matrix_chains
from .rebuild import rebuild
from .regions import hoist, in_regions
from .rows import fill_shifted_rows, reuse_state_rows
from .rules import CANONICAL, RuleEngine, apply, recording
from .scalars import place_scalars
from .simplify import simplify
from .sink import sink_steps
from .steps import hoist_steps

# The passes iterated to a fixed point, in order.
PIPELINE = (simplify, fuse, dce, loops)
MAX_ROUNDS = 50
# The passes whose result they leave unchanged: dce removes the names of nodes the outputs
# do not need, and its result has none left; loops runs to its own fixed point.
IDEMPOTENT = frozenset({dce, loops})


@contextlib.contextmanager
def building() -> Iterator[ir.Builder]:
    """The builder of one compilation: the op table, and the canonical rules applied as
    every node is made."""
    with ir.building(REGISTRY, RuleEngine(REGISTRY, CANONICAL)) as b:
        yield b


def optimize(graph: Graph, hints: dict[str, int] | None = None) -> Graph:
    """The graph after every pass of `PIPELINE` and `matchain`, repeated until nothing
    changes."""
    # (each also on the bodies of the loops; dce keeps what a live loop's body needs, and
    # hoist moves what a pass made loop-invariant out of its loop)
    steps = (*(step if step in IDEMPOTENT else in_regions(step) for step in PIPELINE),
             in_regions(lambda g: matchain(g, hints)), hoist)
    # Per step, a graph it is known to leave as it is, so it is not run on it again: the
    # passes are pure functions, so one that returned its input unchanged would again,
    # and an idempotent one would return its own result unchanged (a fixed point needs a
    # second round, which then re-checks only the passes that can still do something).
    settled: list[Graph | None] = [None] * len(steps)
    for _ in range(MAX_ROUNDS):
        before = graph
        for i, step in enumerate(steps):
            if graph is settled[i]:
                continue
            new = step(graph)
            if new is graph or step in IDEMPOTENT or step is hoist:
                settled[i] = new
            graph = new
        if graph is before:   # a fixed point: no pass changes anything
            return graph
    raise InternalError(f"the passes did not reach a fixed point in {MAX_ROUNDS} rounds")


def lower(graph: Graph, hints: dict[str, int] | None = None, state_rows: bool = True
          ) -> Graph:
    """The rewrites that come after optimisation (they leave canonical form): the ops'
    rules tagged `lower` (built as is, so the canonical rules do not undo them), after
    polynomials are put in Horner's form (whose `sum(h * x)` they make a dot product), then
    scalar placement, loops' row buffers filled before them (`fill_shifted_rows`), and a
    backward loop's row gradients written into the saved states' rows (`reuse_state_rows`,
    where the `hints` or the shapes say a step's products are big enough; `state_rows`:
    the target writes into arrays in place)."""
    def lowered(g: Graph) -> Graph:
        g = fill_shifted_rows(place_scalars(apply(horner(g), ("lower",))))
        return reuse_state_rows(g, hints) if state_rows else g
    return hoist(in_regions(lowered)(graph))


__all__ = ["PIPELINE", "building", "dce", "fill_shifted_rows", "fuse", "hoist", "hoist_steps",
           "horner", "in_regions", "loops", "lower", "matchain", "optimize", "place_scalars",
           "rebuild", "recording", "reuse_state_rows",
           "reorder_matrix_chains", "simplify", "sink_steps"]
