"""Forward mode: tangents pushed through the topological order by the same rule table,
one direction at a time (`jvp`) or a batch of directions at once (`batched_jvp`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..errors import ShapeError
from ..ir import Node, builder, make, topo_order
from ..ops.registry import REGISTRY
from .common import active_nodes, floating, materialize
from .reverse import TUPLE

__all__ = ["SECOND_ORDER", "batched_jvp", "jvp"]

# The phase of the tangents of derivative nodes (`# tangent of grad of line N`).
SECOND_ORDER = "tangent of grad"


def jvp(outputs: Sequence[Node], tangents: dict[int, Node], phase: str = "backward"
        ) -> tuple[list[Node | None], dict[int, Node]]:
    """Tangents of `outputs` given tangents (by node id) of some input nodes.

    Returns one tangent per output (None for a zero tangent) and the table of all tangents.
    The nodes made are of `phase` ("tangent": the comments call them so), those of the
    tangent of a derivative node (an HVP's, forward over reverse) of `SECOND_ORDER`. A node
    that already has a tangent in `tangents` keeps it (a sweep may go on from another's
    table).
    """
    elementwise = builder().with_trait("elementwise")

    def step(opdef, ts, node):
        if node.op in elementwise:   # lazy tangents as they are; the seed 1 of a scalar
            t = opdef.jvp(ts, node)  # Param's Hessian column may make a where(c, 1, 0)
            return t if t is None else floating(t, node)
        ts = [t if t is None or a.dtype == TUPLE else materialize(t, a)   # (a loop's
              for t, a in zip(ts, node.args)]                             # tangent: a dict)
        return opdef.jvp(ts, node)

    return _sweep(outputs, tangents, step, materialize, phase)


def batched_jvp(outputs: Sequence[Node], tangents: dict[int, Node]) -> list[Node | None]:
    """Forward mode for a batch of directions at once: every tangent has one extra leading
    axis. Elementwise rules broadcast over it unchanged (tangents are kept at full rank so
    the batch axis never lines up with a data axis); other ops use their `vmap` rule.

    Raises ShapeError for an op that has no batched rule yet.
    """
    def lift(t: Node, ndim: int) -> Node:
        missing = 1 + ndim - t.ndim
        return make("expand_dims", t, axes=tuple(range(1, 1 + missing))) if missing else t

    def full(t: Node, like: Node) -> Node:
        shape = t.shape[:1] + tuple(like.shape)
        return t if tuple(t.shape) == shape else make("broadcast_to", t, shape=shape)

    def step(opdef, ts, node):
        if opdef.has("elementwise"):
            t = opdef.jvp([None if t is None else lift(t, node.ndim) for t in ts], node)
            return None if t is None else lift(t, node.ndim)
        if opdef.vmap is None:
            raise ShapeError(f"'{node.op}' has no batched derivative rule yet, so its "
                             "Hessian cannot be formed in closed form")
        return opdef.vmap([t if t is None or a.dtype == TUPLE else full(t, a)
                           for t, a in zip(ts, node.args)], node)

    return _sweep(outputs, tangents, step, full)[0]


def _sweep(outputs: Sequence[Node], tangents: dict[int, Node], step: Callable,
           finish: Callable, phase: str = "backward",
           ) -> tuple[list[Node | None], dict[int, Node]]:
    """The forward sweep: `step(opdef, arg tangents, node)` for every node that depends on
    a seeded one, then `finish(tangent, output)` on each output's tangent."""
    order = topo_order(outputs)
    active = active_nodes(order, set(tangents))
    tan: dict[int, Node] = dict(tangents)
    b = builder()
    get = tan.get
    nondiff = b.with_trait("nondiff")
    for node in order:
        nid = id(node)
        if nid in tan or nid not in active:
            continue
        ts = list(map(get, map(id, node.args)))   # (no comprehension's frame per node)
        # Skip nondifferentiable ops, and nodes active only through a shape (expand_like).
        if node.op in nondiff or ts.count(None) == len(ts):
            continue
        opdef = REGISTRY[node.op]
        # b.at(origin=node.origin, phase="backward"), without a context manager per node
        saved = b.origin, b.phase
        if node.origin is not None:
            b.origin = node.origin
        b.phase = phase if phase != "tangent" or node.phase == "forward" else SECOND_ORDER
        try:
            t = step(opdef, ts, node)
        finally:
            b.origin, b.phase = saved
        if t is not None and not (isinstance(t, dict) and not t):
            tan[id(node)] = t
    results = []
    for out in outputs:
        t = tan.get(id(out))
        if t is not None:
            with b.at(phase=_phase(phase, out)):
                t = finish(t, out)
        results.append(t)
    return results, tan


def _phase(phase: str, primal: Node) -> str:
    """The phase of the nodes of `primal`'s tangent in a sweep of `phase`."""
    return phase if phase != "tangent" or primal.phase == "forward" else SECOND_ORDER
