"""`sink_steps`: per-step work that feeds no carried value computed after the loop, for all
steps at once.

A loop that accumulates a sum (`loss += f(h, t)`, the carried `loss` read by nothing else)
of values computed from the carried values (`h`) runs `f` at every step although no
carried value needs it: a recurrent model's output layer, softmax and loss. The pass keeps
in the loop only what the other carried values need, writes the values `f` reads from it
(`h` after the step) into a buffer of one row per step (`hs[t] = h`), and computes `f` for
all the steps at once after the loop, batched along a leading axis of steps (`hs @ Wy` as
one (T, N, H) @ (H, C) product), the sum then one reduction over the steps
(`loss = 0.0 - sum(F)`). Differentiating the result gives the batched backward work outside
the backward loop too. It runs on the primal graph, before differentiation
(`compiler.optimize_entry`), as `hoist_steps` does, and like it not with checkpoints every
K > 1 steps (`compiler._batch_steps`).

The float sum is added in another order (NumPy's pairwise sum over the steps, not one term
after the other): the value changes in the last bits.

What is sunk is the accumulated term's part outside the work the other carried values need,
when every op on it has a batched form (`ops/stepwise.py`), it holds a matrix product or
at least two floating-point ops that are not row reads or axis placements (one stacked
`exp` saves nothing over one per step), and the values it saves per step are floats
computed in the step, arrays or scalars (a Kalman filter's F and v: its log-likelihood
terms and their cotangents become vector operations, the backward loop reads `dFs[t]`;
the dead `dvs[t] = 0` that once made the scheduler copy the buffer at every step is
dropped by passes/loops.drop_dead_row_writes).

A value the loop already writes a row per step (`H[t] = h`, a backward loop's `dXW[t]`) is
read from that buffer, not saved twice. A carried value's next value (`h` after the step)
is kept in the layout the loop's VJP saves states in (`h_steps`, row 0 the initial value,
row t + 1 the value after step t; the batched value the view `h_steps[1:]`), so the VJP
reads that buffer (autodiff/loops._kept_rows) and the states are stored once.

The gradient functions run the pass on their graphs too (`compiler._optimized`): a backward
loop's per-step `dW = dW + h_steps[t].T @ dh` becomes one product after it, over the
saved states and the stacked `dh` (rule `sum_batched_product`).
"""

from __future__ import annotations

import sympy

from ..dims import as_expr, same_shape
from ..ir import Graph, Node, Region, builder, make, make_as_is, topo_order, use_counts
from ..ops.control import REGIONS_BUILT, STEP_INDICES, iteration, loop_attrs, next_row, reads
from ..ops.dtypes import carried_dtype_sources, dtype_sources
from ..ops.stepwise import accumulation, placing, product, row_written
from .rebuild import rebuild
from .regions import in_regions
from .steps import _Batcher, _slot_name

__all__ = ["sink_steps"]


def sink_steps(graph: Graph) -> Graph:
    """Every loop's accumulated per-step terms that feed no carried value computed after
    the loop for all steps at once (innermost loops first), over a buffer of the values
    they read from the loop."""
    return in_regions(_sink_steps)(graph)


def _sink_steps(graph: Graph) -> Graph:
    b = builder()
    if not b.memo.get(REGIONS_BUILT):   # no loop in this compilation
        return graph
    loops, parts = b.with_trait("region"), b.with_trait("projection")
    if not any(n.op in loops for n in graph.order):
        return graph
    names = dict(graph.names)
    # id(new scan) -> {carried index: its value after the loop}
    sunk: dict[int, dict[int, Node]] = {}

    def rule(n: Node, uses) -> Node | None:
        if n.op in loops:
            found = _sunk(n, names)
            if found is None:
                return None
            scan, finals = found
            sunk[id(scan)] = finals
            return scan
        if n.op in parts and id(n.args[0]) in sunk:
            return sunk[id(n.args[0])].get(n.attr("index"))
        return None
    outputs = rebuild(graph.outputs, rule, names, graph.order,
                      skip=lambda n: n.op not in loops and n.op not in parts)
    if all(a is c for a, c in zip(outputs, graph.outputs)):
        return graph
    return graph.with_outputs(outputs, names)


class _Body:
    """A loop body's analysis: the accumulated carried values, the nodes the others
    need (`core`), what depends on a carried value or on the index."""

    def __init__(self, holder: Node):
        body = self.body = holder.attr("body")
        c = self.c = len(body.outputs)
        self.index, self.cin = body.inputs[0], body.inputs[1:1 + c]
        self.order = topo_order(body.outputs)
        uses = use_counts(self.order, body.outputs)
        self.accs: dict[int, tuple[Node, str]] = {}
        for k, (x, o) in enumerate(zip(self.cin, body.outputs)):
            term = accumulation(x, o)
            if term is not None and uses[id(x)] == 1 and uses[id(o)] == 1 \
                    and x.dtype == "float" and same_shape(tuple(term[0].shape), tuple(x.shape)):
                self.accs[k] = term
        keep = [o for k, o in enumerate(body.outputs) if k not in self.accs]
        self.core = {id(m) for m in topo_order(keep)} | \
            {id(x) for k, x in enumerate(self.cin) if k not in self.accs}
        carried = {id(x) for x in self.cin}
        self.by_carry: dict[int, bool] = {}
        self.by_index: dict[int, bool] = {}
        for m in self.order:
            self.by_carry[id(m)] = id(m) in carried or any(self.by_carry[id(a)] for a in m.args)
            self.by_index[id(m)] = m is self.index or any(self.by_index[id(a)] for a in m.args)

    def written_rows(self, holder: Node) -> dict[int, int]:
        """{id(f): k} for each body value f that the loop writes as row i of the carried
        buffer k at iteration i (`dXW[t] = f`, `H[t] = h`): every row written, the buffer
        after the loop holds f of every step."""
        i = iteration(self.index, holder)
        length = as_expr(holder.attr("length"))
        out: dict[int, int] = {}
        for k, (x, o) in enumerate(zip(self.cin, self.body.outputs)):
            f = row_written(o, x, i)
            if k not in self.accs and f is not None \
                    and same_shape(tuple(x.shape[:1]), (length,)):
                out.setdefault(id(f), k)
        return out

    def varies(self, m: Node) -> bool:
        return self.by_carry[id(m)] or self.by_index[id(m)]

    def sunk_part(self, term: Node) -> tuple[list[Node], list[Node]]:
        """The nodes of `term` outside the core that vary per step, and the core values
        that depend on a carried value they read (the frontier: saved per step)."""
        part = [m for m in topo_order([term]) if id(m) not in self.core and self.varies(m)]
        frontier: dict[int, Node] = {}
        for m in part:
            for a in m.args:
                if id(a) in self.core and self.by_carry[id(a)]:
                    frontier.setdefault(id(a), a)
        if id(term) in self.core and self.by_carry[id(term)]:
            frontier.setdefault(id(term), term)
        return part, list(frontier.values())


def _worth(part: list[Node], saved: bool) -> bool:
    """Whether computing `part` after the loop saves work: a matrix product (one
    stacked product, not one per step), or at least two floating-point ops that are not
    row reads or axis placements, or one when the values it reads are `saved` in a buffer
    already (`dbh = dbh + dh.sum(axis=0)`: no write added, two calls per step fewer)."""
    ops = [m for m in part if m.dtype == "float" and m.args and not placing(m)]
    return len(ops) >= 2 - saved or any(product(m) for m in ops)


def _sunk(holder: Node, names: dict) -> tuple[Node, dict[int, Node]] | None:
    """The loop `holder` with its accumulated terms sunk: (the new loop, {carried index:
    its value after the loop}); None when no term is worth it or can be batched."""
    if not isinstance(holder.attr("body"), Region):   # (a region op other than scan)
        return None
    an = _Body(holder)
    if not an.accs:
        return None
    written = an.written_rows(holder)
    terms, frontier = {}, {}
    for k, (term, _) in an.accs.items():
        part, front = an.sunk_part(term)
        saved = all(id(f) in written for f in front)
        if not _worth(part, saved) or any(f.dtype != "float" or f.is_input
                                          for f in front):
            continue
        terms[k] = term
        for f in front:
            frontier.setdefault(id(f), f)
    if not terms or not frontier:
        return None
    fronts = [f for f in frontier.values() if id(f) not in written]
    scan, bufs = _with_buffers(holder, an, fronts, names)
    batcher = _Batcher(holder, an.body)
    for j, f in enumerate(fronts):
        batcher.batched[id(f)] = bufs[j]
    for key, k in written.items():   # (a buffer the loop fills already: its rows)
        batcher.batched[key] = make("part", scan, index=k)
    dep: dict[int, bool] = {}
    for m in an.order:
        dep[id(m)] = id(m) in frontier or an.by_index[id(m)] or \
            any(dep[id(a)] for a in m.args)
    finals: dict[int, Node] = {}
    with builder().at(origin=holder.origin, phase=holder.phase):
        for k, term in terms.items():
            got = batcher.get(term, dep)
            if got is None or not got[1]:
                continue
            total = make("sum", got[0], axes=(0,), keepdims=False)
            finals[k] = make(an.accs[k][1], holder.args[k], total)
    if not finals:
        return None
    steps = batcher.batched.get(id(an.index))
    if steps is not None and not steps.args:   # the loop's index at every step: `steps`
        builder().memo.setdefault(STEP_INDICES, set()).add(id(steps))
    for m in an.order:   # (the steps' values of a named body value: its name)
        if m in names and id(m) not in frontier and batcher.batched.get(id(m)) is not None:
            names.setdefault(batcher.batched[id(m)], names[m])
    return scan, finals


def _with_buffers(holder: Node, an: _Body, fronts: list[Node], names: dict
                  ) -> tuple[Node, list[Node]]:
    """The loop `holder` also writing each value of `fronts` into a buffer of one row per
    step (carried after its carried values), and those buffers after the loop."""
    b = builder()
    body, c = an.body, an.c
    length = as_expr(holder.attr("length"))
    loop_id = an.index.attr("loop")
    taken = {x.attr("name") for x in body.inputs}
    with b.at(origin=holder.origin, phase=holder.phase):
        i = iteration(an.index, holder)
        bufs_in, writes, empties, states = [], [], [], []
        for f in fronts:
            k = _next_of(an, f)   # (a carried value's next value: row 0 its initial value)
            states.append(k is not None)
            name = f"{an.cin[k].attr('name')}_steps" if k is not None \
                else f"{_slot_name(f, names)}s"
            while name in taken:
                name += "_"
            taken.add(name)
            attrs = {"loop": loop_id} if loop_id is not None else {}
            rows = length + int(k is not None)
            buf = make("input", name=name, role="carry", shape=(rows, *f.shape), **attrs)
            bufs_in.append(buf)
            empty = make("empty", *_sources(holder, f, body), shape=buf.shape, name=name)
            if k is not None:
                empty = make("update", empty, holder.args[k], index=(0,), axis=None)
                writes.append(make("update", buf, f, next_row(i), index=(), axis=0))
            else:
                writes.append(make("update", buf, f, i, index=(), axis=0))
            empties.append(empty)
        scan = make_as_is("scan", *holder.args[:c], *empties, *holder.args[c:],
                          body=Region((an.index, *an.cin, *bufs_in, *body.inputs[1 + c:]),
                                      (*body.outputs, *writes)),
                          **loop_attrs(holder))
        outs = [make("part", scan, index=c + j) for j in range(len(fronts))]
        for e, o in zip(bufs_in, outs):
            names.setdefault(o, e.attr("name"))
        for j, f in enumerate(fronts):   # (the states after each step: rows 1 to L)
            if states[j]:
                outs[j] = make("index", outs[j],
                               index=(("slice", sympy.Integer(1), length + 1, 1),))
                names.setdefault(outs[j], f"{_slot_name(f, names)}s")
    return scan, outs


def _next_of(an: _Body, f: Node) -> int | None:
    """k when `f` is the next value of the carried array k (not an accumulated one): its
    buffer holds the initial value in row 0 and f of step i in row i + 1, the layout of
    the states the loop's VJP saves (`h_steps`), which then reads this buffer
    (autodiff/loops.py `_kept_rows`) instead of saving the states again."""
    for k, (x, o) in enumerate(zip(an.cin, an.body.outputs)):
        if o is f and x is not f and k not in an.accs and x.dtype == "float" \
                and same_shape(tuple(x.shape), tuple(f.shape)):
            return k
    return None


def _sources(holder: Node, f: Node, body: Region) -> tuple[Node, ...]:
    """The loop's arguments whose dtype a buffer of the body value `f` has: those of the
    body inputs it reads, a carried value's grown by its next values' to a fixed point
    (kalman's `v = y[t] - m` is as wide as theta where `m` starts from m0 and steps by
    `k * v`, k from theta: a buffer of y's and m0's dtype would round it)."""
    deps = reads(f)
    src = {id(x): frozenset(() if a.is_const else dtype_sources(a))
           for x, a in zip(body.inputs[1:], holder.args) if x.dtype == "float"}
    src.update((id(x), frozenset()) for x in body.carried if id(x) not in src)
    carried_dtype_sources(src, body.carried, body.outputs)
    found: dict = {}
    read = [src[id(x)] for x in body.inputs[1:] if id(x) in deps and id(x) in src]
    for sources in read if any(read) else src.values():
        found.update(dict.fromkeys(sources))
    return tuple(sorted(found, key=lambda x: x.serial))
