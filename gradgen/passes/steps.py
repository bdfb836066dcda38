"""`hoist_steps`: the non-recurrent part of a loop computed for all steps at once, before it.

A loop body's value that depends on the loop index and on loop-invariant values but on no
carried value (`X[t] @ Wx`, `x[t] * a`, `Wxh[x[t]]`) is the same function of the index at
every step: it is computed once for all the steps, batched along a new leading axis, before
the loop (`X @ Wx`, `x * a`, `Wxh[x]`), and the body reads its row of the step
(`XW[t]`). The loop then does fewer NumPy calls per step, and its derivative does the
batched work once too: the backward loop writes the row's cotangent `dXW[t]` and one
matrix product after it gives `dWx` (not one product per step). The pass runs on the
primal graph, before differentiation (`compiler.optimize_entry`), but not with checkpoints
every K > 1 steps (`compiler._batch_steps`: a buffer of all the steps is what they save).

What is moved is the largest such part whose every op has a batched form here (elementwise
ops, casts, reductions, gathers, transposes and other axis-placing ops, matrix products),
and only where it saves work: it holds a floating-point op that is not a row read or an
axis placement, or at least two ops. A lone `X[t]` (a view) stays as it is, and so does
integer index arithmetic (`t - 1`, `y[t]`).
"""

from __future__ import annotations

from ..dims import as_expr
from ..ir import Graph, Node, Region, builder, const, make, topo_order
from ..ops.control import iteration
from ..ops.stepwise import Steps, batched_op, index_shift, placing, row_read
from .regions import _with_bodies, in_regions, reading

__all__ = ["hoist_steps"]

def hoist_steps(graph: Graph) -> Graph:
    """Every loop's per-step values that read no carried value computed before the loop
    for all steps at once (innermost loops first), the body reading each step's row."""
    return in_regions(_hoist_steps)(graph)


def _hoist_steps(graph: Graph) -> Graph:
    def body_pass(holder: Node, body: Region, names: dict):
        return _batched(holder, body, names)
    return _with_bodies(graph, body_pass)


class _Batcher:
    """Values of one loop body built outside the loop: an index-free one as it is (the
    body's outside inputs replaced by the loop's arguments), an index-dependent one with a
    leading axis of the loop's length (row i: its value at iteration i)."""

    def __init__(self, holder: Node, body: Region):
        c = len(body.outputs)
        self.holder, self.index = holder, body.inputs[0]
        self.length = as_expr(holder.attr("length"))
        self.start, self.step = holder.attr("start", 0), holder.attr("step", 1)
        self.outer: dict[int, Node] = {id(x): a for x, a in zip(body.inputs[1 + c:],
                                                                holder.args[c:])}
        self.batched: dict[int, Node | None] = {}

    def plain(self, n: Node) -> Node:
        """An index-free (and carry-free) body value, built outside the loop."""
        if id(n) in self.outer:
            return self.outer[id(n)]
        if not n.args:
            return n
        with builder().at(origin=n.origin, phase=n.phase):
            m = make(n.op, *(self.plain(a) for a in n.args), **n.kw)
        self.outer[id(n)] = m
        return m

    def steps(self) -> Node:
        """The index's values at the iterations 0, ..., L - 1, as an int vector."""
        if self.step == 1:
            return make("arange", start=as_expr(self.start), stop=self.start + self.length)
        i = make("arange", start=as_expr(0), stop=self.length)
        if self.step != 1:
            i = make("mul", i, const(self.step))
        return i if self.start == 0 else make("add", i, const(self.start))

    def _shift(self, n: Node) -> int | None:
        """k for the index plus or minus an integer k (step 1 only), else None."""
        return None if self.step != 1 else index_shift(n, self.index)

    def get(self, n: Node, dep: dict[int, bool]) -> tuple[Node, bool] | None:
        """(value outside, batched?) of body value `n`; None if some op on the way has no
        batched form here."""
        if not dep[id(n)]:
            return self.plain(n), False
        if id(n) not in self.batched:
            self.batched[id(n)] = self._batch(n, dep)
        b = self.batched[id(n)]
        return None if b is None else (b, True)

    def _batch(self, n: Node, dep: dict[int, bool]) -> Node | None:
        if n is self.index:
            return self.steps()
        shift = self._shift(n)
        if shift is not None:   # t + k, t - k: arange(start + k, stop + k)
            start = as_expr(self.start + shift)
            return make("arange", start=start, stop=start + self.length)
        if not n.args:
            return None
        got = [self.get(a, dep) for a in n.args]
        if any(g is None for g in got):
            return None
        args = [g[0] for g in got]
        flags = [g[1] for g in got]
        with builder().at(origin=n.origin, phase=n.phase):
            return batched_op(n, args, flags, Steps(self.index, self.length, self.start,
                                                    self.step))


def _slot_name(value: Node, names: dict) -> str:
    """A name for the steps' values `value`: its source name, else what its op's hint
    makes of its operands' names (`XW` for `X @ W`), else `<nearest named value>_<hint>`
    (`X_add`), else `steps`."""
    def label(a: Node) -> str | None:
        return names.get(a) or (a.attr("name") if a.is_input else None)

    if label(value):
        return label(value)
    hint = builder().ops[value.op].hint
    if callable(hint):
        found = hint(value, [label(a) for a in value.args])
        if found:
            return found
        hint = None
    base = hint or value.op
    queue = list(value.args)   # the nearest named value it is computed from
    for a in queue:
        if label(a):
            return f"{label(a)}_{base}"
        if len(queue) < 64:
            queue += a.args
    return "steps"


def _worth(n: Node, dep: dict[int, bool]) -> bool:
    """Whether computing `n` for all steps at once saves work: it is floats and its
    index-dependent part has a floating-point op that is not a row read or an axis
    placement, or at least two NumPy calls (`Wxh[x[t]]`; not `x[t - 1]`)."""
    if n.dtype != "float":
        return False
    ops, count = 0, False
    for m in topo_order([n]):
        if not dep[id(m)] or not m.args or m.dtype != "float" and not row_read(m):
            continue   # (integer arithmetic `t - 1` is Python's, not a NumPy call)
        ops += 1
        if m.dtype == "float" and not placing(m):
            count = True
    return count or ops >= 2


def _batched(holder: Node, body: Region, names: dict) -> tuple[Region, list[Node]] | None:
    """The body reading its index-dependent, carry-free values from arrays computed before
    the loop for all steps (new outside inputs), and those arrays; None when none is."""
    c = len(body.outputs)
    order = topo_order(body.outputs)
    carried = {id(x) for x in body.inputs[1:1 + c]}
    index = body.inputs[0]
    by_carry: dict[int, bool] = {}
    by_index: dict[int, bool] = {}
    for m in order:
        by_carry[id(m)] = id(m) in carried or any(by_carry[id(a)] for a in m.args)
        by_index[id(m)] = m is index or any(by_index[id(a)] for a in m.args)
    dep = {k: v and not by_carry[k] for k, v in by_index.items()}
    batcher = _Batcher(holder, body)
    chosen: list[Node] = []
    seen: set[int] = set()

    def cut(a: Node) -> None:
        if id(a) in seen or not dep[id(a)] or a is index:
            return
        seen.add(id(a))
        if _worth(a, dep) and batcher.get(a, dep) is not None:
            chosen.append(a)
            return
        for x in a.args:
            cut(x)

    for m in order:
        if by_carry[id(m)]:
            for a in m.args:
                cut(a)
    if not chosen:
        return None
    loop_id = index.attr("loop")
    taken = {x.attr("name") for x in body.inputs}
    b = builder()
    row: dict[int, Node] = {}
    extra: list[Node] = []
    slots: list[Node] = []
    with b.at(origin=holder.origin, phase=holder.phase):
        step = iteration(index, holder)
    for k, n in enumerate(chosen):
        value = batcher.batched[id(n)]
        name = _slot_name(value, names)
        while name in taken:
            name += "_"
        taken.add(name)
        names.setdefault(value, name)
        attrs = {"loop": loop_id} if loop_id is not None else {}
        slot = make("input", name=name, role="outside", shape=tuple(value.shape), **attrs)
        with b.at(origin=n.origin, phase=n.phase):
            row[id(n)] = make("gather", slot, step, axis=0)
        if n in names:
            names.setdefault(row[id(n)], names[n])
        extra.append(value)
        slots.append(slot)
    read = reading(order, lambda m: by_carry[id(m)], row, names)
    outputs = [read(o) for o in body.outputs]
    return Region([*body.inputs, *slots], outputs), extra
