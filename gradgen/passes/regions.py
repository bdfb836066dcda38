"""Passes and loop bodies: every pass also runs on the bodies of the loops (`in_regions`),
and loop-invariant code is moved out of a loop (`hoist`).

A loop body is a small graph (`ir.Region`: inputs, outputs), so a whole-graph pass runs on
it as on any graph; the loop node is then rebuilt around the new body, and the graph
around the loop node. `hoist` moves the body nodes that depend on neither the loop index
nor a carried value out of the loop: computed once before it, read by the body as new
"outside" inputs. The frontend builds loops that way already (`frontend/loops.py`); this
pass keeps it so after the other passes rewrote a body (matchain turning `(h @ A) @ B` into
`h @ (A @ B)` makes `A @ B` invariant).
"""

from __future__ import annotations

from collections.abc import Callable

from ..ir import Graph, Node, Region, builder, make, make_as_is, topo_order
from ..ops.control import REGIONS_BUILT
from .rebuild import rebuild

Pass = Callable[[Graph], Graph]


def _with_bodies(graph: Graph, body_pass: Callable) -> Graph:
    """The graph with the body of every loop node `n` (one region) replaced:
    `body_pass(n, body, names)` gives the new body and the values of its new outside
    inputs (or None: no change); the loop node is rebuilt around it, and the graph around
    the loop node. `names` (the graph's) takes the names of the nodes a pass replaced."""
    b = builder()
    if not b.memo.get(REGIONS_BUILT):   # no loop in this compilation: nothing to walk
        return graph
    ops = b.with_trait("region")
    holders = [n for n in graph.order if n.op in ops]
    if not holders:
        return graph
    names = dict(graph.names)

    def rule(n: Node, uses) -> Node | None:
        # (on the node as rebuilt: a loop after another reads the new loop's values)
        if n.op not in ops:
            return None
        keys = [k for k, v in n.attrs if isinstance(v, Region)]
        if len(keys) != 1:
            return None
        found = body_pass(n, n.attr(keys[0]), names)
        if found is None:
            return None
        body, extra = found
        with builder().at(origin=n.origin, phase=n.phase):
            return make_as_is(n.op, *n.args, *extra, **dict(n.kw, **{keys[0]: body}))
    outputs = rebuild(graph.outputs, rule, names, graph.order,
                      skip=lambda n: n.op not in ops)
    if all(a is b for a, b in zip(outputs, graph.outputs)):
        return graph
    return graph.with_outputs(outputs, names)


def in_regions(step: Pass) -> Pass:
    """`step` run on the bodies of the loops (innermost first), then on the graph."""
    def run(graph: Graph) -> Graph:
        def body_pass(holder: Node, body: Region, names: dict):
            g = run(Graph(body.inputs, body.outputs, names))
            if all(a is b for a, b in zip(g.outputs, body.outputs)):
                return None
            for k, v in g.names.items():
                names.setdefault(k, v)
            return Region(body.inputs, g.outputs), ()
        return step(_with_bodies(graph, body_pass))
    run.__name__ = getattr(step, "__name__", "pass")
    return run


def hoist(graph: Graph) -> Graph:
    """Every loop's invariant body nodes computed before the loop (innermost loops first:
    what an inner loop hoists into the outer body may be invariant there too)."""
    def body_pass(holder: Node, body: Region, names: dict):
        inner = hoist(Graph(body.inputs, body.outputs, names))
        for k, v in inner.names.items():
            names.setdefault(k, v)
        changed = any(a is not b for a, b in zip(inner.outputs, body.outputs))
        body = Region(body.inputs, inner.outputs) if changed else body
        found = _hoisted(holder, body, names)
        return found if found is not None else ((body, ()) if changed else None)
    return _with_bodies(graph, body_pass)


def _hoisted(holder: Node, body: Region, names: dict) -> tuple[Region, list[Node]] | None:
    """The body with its invariant nodes read from new outside inputs, and the values of
    those inputs (built outside, from the loop node's arguments); None when none is."""
    n_carried = len(body.outputs)
    varying = {id(x) for x in body.inputs[:1 + n_carried]}
    outside = {id(x): a for x, a in zip(body.inputs[1 + n_carried:],
                                        holder.args[n_carried:])}
    order = topo_order(body.outputs)
    variant: dict[int, bool] = {}
    for n in order:
        variant[id(n)] = id(n) in varying or any(variant[id(a)] for a in n.args)
    # The invariant nodes a varying node reads (or the body yields), not inputs or numbers.
    frontier: list[Node] = []
    seen: set[int] = set()
    for n in order:
        if not variant[id(n)]:
            continue
        for a in n.args:
            if not variant[id(a)] and not a.is_const and id(a) not in outside \
                    and id(a) not in seen:
                seen.add(id(a))
                frontier.append(a)
    for o in body.outputs:
        if not variant[id(o)] and not o.is_const and id(o) not in outside \
                and id(o) not in seen:
            seen.add(id(o))
            frontier.append(o)
    if not frontier:
        return None
    # Each frontier node rebuilt outside: the body's outside inputs replaced by the loop
    # node's arguments.
    outer: dict[int, Node] = dict(outside)
    b = builder()
    for n in topo_order(frontier):
        if id(n) in outer:
            continue
        if not n.args:   # a constant or an input of the body (not the index: invariant)
            outer[id(n)] = n
            continue
        with b.at(origin=n.origin, phase=n.phase):
            outer[id(n)] = make(n.op, *(outer[id(a)] for a in n.args), **n.kw)
        if n in names:
            names.setdefault(outer[id(n)], names[n])
    loop_id = body.inputs[0].attr("loop")
    taken = {x.attr("name") for x in body.inputs}
    slot: dict[int, Node] = {}
    for k, n in enumerate(frontier):
        name = names.get(n)
        if not name or name in taken:
            name = f"hoisted{len(body.inputs) + k}"
        taken.add(name)
        extra = {} if n.dtype == "float" else {"dtype": n.dtype}
        if loop_id is not None:
            extra["loop"] = loop_id
        slot[id(n)] = make("input", name=name, role="outside", shape=tuple(n.shape), **extra)
    read = reading(order, lambda n: variant[id(n)], slot, names)
    outputs = [read(o) for o in body.outputs]
    inputs = [*body.inputs, *(slot[id(n)] for n in frontier)]
    return Region(inputs, outputs), [outer[id(n)] for n in frontier]


def reading(order: list[Node], changes: Callable[[Node], bool], replaced: dict[int, Node],
            names: dict) -> Callable[[Node], Node]:
    """A body rebuilt with some of its nodes `replaced` (node id -> new node, such as an
    input that now holds a value computed outside): each node of `order` (the body's
    topological order) for which `changes` is true is made again (`make_as_is`) where one
    of its arguments changed; the result maps a node of the old body to its node in the
    new one. `names` (Node -> name) gains the names of the rebuilt nodes."""
    b = builder()
    new: dict[int, Node] = {}

    def read(a: Node) -> Node:
        return replaced.get(id(a)) or new.get(id(a), a)

    for n in order:
        if not changes(n) or not n.args:
            continue
        args = [read(a) for a in n.args]
        if any(x is not y for x, y in zip(args, n.args)):
            with b.at(origin=n.origin, phase=n.phase):
                new[id(n)] = make_as_is(n.op, *args, **n.kw)
            if n in names:
                names.setdefault(new[id(n)], names[n])
    return read
