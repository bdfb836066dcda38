"""Statement order and naming: turn the nodes a function needs into Python statements.

Nodes are printed in topological order (depth-first from the outputs, so the forward
pass comes first and each backward statement sits next to its use). A node becomes a
statement when the source named it, when it has a derived name (`dZ`), when several
consumers use it, or when inlining it would make a line too long; otherwise it is
inlined into its one consumer.

The bookkeeping is one walk over the nodes: each node's printed code reads some
variables, kept as a tuple with one entry per reference (inlining a node concatenates the
tuples of its arguments), and each variable counts the references to it not printed yet
(`Liveness.remaining`). A variable whose count is zero after a statement is not read by any
later statement, so the statement may overwrite its buffer.

A node holding a region (a loop) is a statement whose op asks the printer for its body
(`Printer.region`): a scheduler of its own schedules the body's nodes the same way, its
inputs bound to the loop index, the carried variables and the values from outside, which
it never overwrites; the loop's `part`s are then the carried variables.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from ..autodiff.forward import SECOND_ORDER
from ..dims import fmt_shape
from ..escape import comment_text
from ..ir import Node, Region, topo_order, use_counts
from ..ir import memo as ir_memo
from ..ops.control import REGIONS_BUILT, ROWS_REWRITTEN
from ..ops.dtypes import INT, carried_dtype_sources, dtype_sources
from ..ops.indexing import entries_taken, row_read, row_write, written_value
from ..ops.registry import PREC_ATOM, PREC_CALL, REGISTRY
from ..ops.stepwise import new_empty
from .buffer_dtypes import BufferDtypes
from .inplace import (
    MAX_LINE,
    TooLong,
    call_into,
    chain,
    in_place,
    shape_comment,
    workspace_into,
    write_into,
)
from .liveness import Liveness
from .naming import Namer, temp_name
from .printer import MAX_WIDTH, Printer, RegionCode, fit_line

MAX_EXPR = 80
MAX_HEADER = MAX_WIDTH   # a `# grad of line N: ...` comment, indented by 4: 100 columns
MAX_VIEW = 12   # the longest view of a variable spelled again at each use, its name left
#                 out (`W.T`, `U_sum[:, None]`): never a variable of its own


class Statement(NamedTuple):
    """Lines computing one variable (or a comment line), and what they read."""

    lines: list[str]
    phase: str            # "forward"/"backward"
    reads: tuple          # the variables read, one entry per reference
    release: str | None   # the variable a `del` may release after its last read
    target: str | None    # the variable assigned (None for a comment)
    expr: str | None = None   # the expression of a one-line `target = expr`
    temps: tuple = ()     # variables made and dead within the lines (released after them)
    node: Node | None = None   # the node computed, with `expr` (`_unary_statements`)


@dataclass
class Body:
    lines: list[str]
    phases: list[str]   # the phase ("forward"/"backward") of each line
    # (variable, expression) when the last line is `variable = expression` computing the
    # only output: the function may `return expression` instead
    result: tuple[str, str] | None = None
    scheduler: object = field(default=None, repr=False)   # what `with_value` continues
    forward: object = field(default=None, repr=False)
    outputs: list = field(default_factory=list, repr=False)   # what the body computes
    one_dtype: bool = False   # a statement relies on the arguments' one dtype (BufferDtypes)
    # the statements the lines were made of (before `_into_dead_arguments`) and the
    # variables never released, for a function continuing the forward part: `extend`
    # reuses the lines when it would make them of the same
    made_of: tuple | None = field(default=None, repr=False)


class Forward:
    """The forward part of an entry point, scheduled and named once: its statements and
    the scheduler's state after them, which every emitted function of the entry point
    continues from (`schedule(..., forward=...)`), so a forward statement reads the same
    in every function and is scheduled once.

    The nodes in `needed` (read by some function's own part) are always variables, and
    no forward statement overwrites their buffers; each function keeps the forward
    statements it needs and releases what it does not."""

    def __init__(self, output: Node, names: dict, namer: Namer, printer: Printer,
                 needed: set[int], keep: frozenset):
        order = topo_order([output])
        uses = use_counts(order, ())
        for nid in needed:
            uses[nid] += 1   # a use by the functions' own parts, counted once here
        self.output = output
        self.nodes = {id(n) for n in order}
        self.needed = needed
        self.sched = _Scheduler(printer, namer, names, keep, "grad", force=needed)
        self.sched.complete = False
        self.sched.run(order, uses)
        # its statements a function may compute in their argument's buffer, found once
        # (`_unary_statements`, `_into_dead_arguments`)
        self.unary: list[tuple] | None = None


def schedule(outputs: list[Node], names: dict, namer: Namer, printer: Printer,
             derivative_label: str = "grad", keep: frozenset = frozenset(),
             visit: list[Node] | None = None, forward: Forward | None = None,
             fold: bool = False, inputs_as: dict[int, str] | None = None,
             phase_of: dict[int, str] | None = None) -> Body:
    """Statements computing `outputs`; `names` gives preferred names for some nodes.

    After the statement that reads an array temporary for the last time, a `del` releases
    it (as careful hand-written code does), so peak memory stays low; `keep` names
    variables never to release or overwrite (the function's arguments). Chains of
    elementwise operations are computed in one buffer (`out=`, augmented assignment),
    reusing the buffer of a temporary that dies there when its dtype is certain to match.
    With `forward`, the statements of the forward part come from it (the nodes it
    scheduled are not scheduled again; `printer` and `namer` are forked from its own);
    with `fold`, a last `value = expression` may become the return (`Body.result`);
    `inputs_as` prints some inputs (by id) under other names than their own, and
    `phase_of` gives some nodes (by id) another phase than their own (the part of the
    function they are computed for: their comments and `Body.phases` say so).
    """
    order = topo_order(visit or outputs)
    if forward is None:
        sched = _Scheduler(printer, namer, names, keep, derivative_label, inputs_as=inputs_as)
        sched.phase_of = phase_of or {}
        sched.run(order, use_counts(order, outputs))
    else:
        own = [n for n in order if id(n) not in forward.nodes]
        sched = forward.sched.fork(printer, namer, names, keep, derivative_label, inputs_as)
        sched.phase_of = phase_of or {}
        uses = use_counts(own, outputs)
        sched.continue_with(forward, uses)
        sched.run(own, uses)
    return _finish(sched, forward, outputs, keep, fold)


def with_value(body: Body, outputs: list[Node], keep: frozenset) -> Body:
    """The statements of `body` (scheduled with `forward`) for `outputs`: the same
    statements and names, the forward ones now kept for the outputs added (the value, in
    `f_value_and_grad` built on `f_grad`), the releases again. No node of `outputs` may be
    outside the forward part and the outputs `body` was scheduled for."""
    return _finish(body.scheduler, body.forward, outputs, keep, False)


def extend(body: Body, outputs: list[Node], names: dict, namer: Namer, printer: Printer,
           keep: frozenset, derivative_label: str = "grad") -> Body | None:
    """The statements of `body` (scheduled with `forward`), then statements for the nodes
    of `outputs` it did not schedule: a function built on another one's statements and
    names (`f_vjp` of a scalar output on `f_grad`), not scheduled again. `printer` and
    `namer` are forked from `body`'s, as in `schedule`. None when a new node would read a
    variable whose buffer a statement of `body` overwrote (schedule on its own then)."""
    base = body.scheduler
    refs = base.refs
    order = topo_order(outputs)
    own = [n for n in order if id(n) not in refs]
    reads = use_counts(own, outputs)
    old = [nid for nid in reads if nid in refs]   # earlier nodes the new part reads
    if not all(base.st.live.intact(name) for nid in old for name in refs[nid]) \
            or any(nid in base.st.live.gone for nid in old):
        return None
    sched = base.fork(printer, namer, names, keep, derivative_label)
    remaining = sched.st.live.remaining
    for o in body.outputs:   # `body` counted one read of each of its outputs: the return
        for name in refs[id(o)]:
            remaining[name] -= 1
    for nid in old:
        for name in refs[nid]:
            remaining[name] += reads[nid]
    start = len(sched.stmts)
    sched.run(own, reads)
    if len(sched.stmts) == start and body.made_of is not None:   # (no statement of its own:
        # `return dx * g`) the lines of `body` when `_finish` would make them of the same
        # statements, keeping the same variables (an argument is none: `g`)
        made_of, kept = body.made_of
        returned = frozenset(name for o in outputs for name in sched.refs[id(o)])
        stmts = _live(sched.stmts, [], outputs, sched.refs)
        if stmts == made_of and sched.st.live.var_node.keys().isdisjoint(kept ^ (returned | keep)):
            return Body(list(body.lines), list(body.phases), None, sched, body.forward,
                        list(outputs), sched.st.dtypes.one_dtype_used, body.made_of)
    return _finish(sched, body.forward, outputs, keep, False, start)


def _finish(sched: _Scheduler, forward: Forward | None, outputs: list[Node], keep: frozenset,
            fold: bool, start: int | None = None) -> Body:
    """The body of the scheduler's statements for `outputs`: of those before `start` (by
    default the forward part's) only the ones the rest needs, then `del`s."""
    stmts = sched.stmts
    returned = frozenset(name for o in outputs for name in sched.refs[id(o)])
    if forward is not None:
        n = len(forward.sched.stmts) if start is None else start
        own = stmts[n:]
        stmts = _live(stmts[:n], own, outputs, sched.refs)
        made_of = (stmts, returned | keep)
        last_read = _last_reads(stmts)
        stmts = _into_dead_arguments(sched.st, forward, stmts, len(stmts) - len(own),
                                     returned | keep, last_read)
        body = _with_releases(stmts, returned | keep, last_read)
        body.made_of = made_of
    else:
        body = _with_releases(stmts, returned | keep)
    last = stmts[-1] if stmts else None
    if fold and last is not None and last.expr is not None and len(outputs) == 1 \
            and sched.refs[id(outputs[0])] == (last.target,):
        body.result = (last.target, last.expr)
    body.scheduler, body.forward, body.outputs = sched, forward, list(outputs)
    body.one_dtype = sched.st.dtypes.one_dtype_used
    return body


def _into_dead_arguments(st: _State, forward: Forward, stmts: list[Statement], prefix: int,
                         keep: frozenset, last_read: dict[str, int]) -> list[Statement]:
    """`stmts` with each of the first `prefix` that is one of the forward part's (scheduled
    once for all the functions of an entry point, `Forward`) applying a ufunc to one
    variable this function reads no more computed in that variable's buffer: `hs_exp =
    np.exp(hs_diff, out=hs_diff)` in `f_grad`, where `f` still reads `hs_diff` after it
    (for `logp`). The variable is an array of the function's own (`Liveness.buffers`) of the
    result's shape and dtype, not in `keep`, read by no later statement (`last_read`: the
    index of each variable's last reader) nor through a view (nor returned through one).
    Not with a workspace (`workspace_flows` follows `_State.reused`)."""
    if not st.ufunc or st.ws or not prefix:
        return stmts
    if forward.unary is None:
        forward.unary = _unary_statements(st, forward.sched.stmts)
    if not forward.unary:
        return stmts
    out = stmts
    views_of = st.live.views_of
    for s, a, n, one in forward.unary:
        i = last_read.get(a)   # (the statement kept here, and the last to read `a`)
        if i is None or i >= prefix or stmts[i] is not s or a in keep or any(
                v in keep or last_read.get(v, -1) > i for v in views_of.get(a, ())):
            continue
        if one:   # (this function's arguments are made one dtype at entry: `BufferDtypes.covers`)
            st.dtypes.one_dtype_used = True
        line = f"{s.target} = {call_into(st, n, a)}{shape_comment(n)}"
        if out is stmts:
            out = list(stmts)
        out[i] = s._replace(lines=[f"{line}; reuses {a}'s buffer"], expr=None)
    return out


def _unary_statements(st: _State, stmts: list[Statement]) -> list[tuple]:
    """The statements `target = ufunc(a)` of `stmts` where `a` is a variable holding an
    array of the function's own of the result's shape and dtype: (statement, a, node,
    whether that dtype relies on the arguments' one dtype, `BufferDtypes.covers`). A
    statement with an `expr` is the one line `target = expr  # shape` (`_plain`) computing
    its `node`: what it is is read off the statement, not its text."""
    found = []
    buffers, ufunc, code = st.live.buffers, st.ufunc, st.p.code
    used = st.dtypes.one_dtype_used   # (asked here, not relied on: restored below)
    for s in stmts:
        n = s.node
        if s.expr is None or n is None or len(s.reads) != 1 or n.op not in ufunc \
                or len(n.args) != 1:
            continue
        a = s.reads[0]
        owner = buffers.get(a)
        if owner is None or owner.shape != n.shape or code[id(n.args[0])][0] != a or \
                not st.dtypes.same(n, st.dtypes.deps(owner), owner):
            continue
        found.append((s, a, n, not st.dtypes.input_names(n) <= st.dtypes.deps(owner)))
    st.dtypes.one_dtype_used = used
    return found


def workspace_flows(body: Body) -> set[int]:
    """The nodes (by id) whose statements took a workspace buffer that reaches a result
    of `body`'s function: a statement computing a result reused it, or a result is a view
    of it. (They must not take one: `Printer.workspace_exclude`.)"""
    sched = body.scheduler
    st = sched.st
    todo = [name for o in body.outputs for name in sched.refs[id(o)]]
    seen: set[str] = set()
    flows = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        if name in st.ws_vars:
            flows.add(st.ws_vars[name])
        if name in st.reused:
            todo.append(st.reused[name])
        todo += st.live.view_bases.get(name, ())
    return flows


def _live(prefix: list[Statement], own: list[Statement], outputs, refs) -> list[Statement]:
    """The statements of `prefix` a function needs (those computing a variable its own
    statements or its outputs read, and what they read; a comment when a statement under
    it is kept), then its own statements."""
    live = {name for st in own for name in st.reads}
    live.update(name for o in outputs for name in refs[id(o)])
    kept = []
    headed = False   # a statement under the next comment up is kept
    for st in reversed(prefix):
        if st.target is None:
            if headed:
                kept.append(st)
            headed = False
        elif st.target in live:
            kept.append(st)
            live.update(st.reads)
            headed = True
    kept.reverse()
    return kept + own


class _Scheduler:
    """One walk over the nodes in topological order, making statements."""

    def __init__(self, printer: Printer, namer: Namer, names: dict, keep: frozenset,
                 label: str, force=frozenset(), inputs_as: dict[int, str] | None = None):
        self.st = _State(printer, namer, names, keep)
        self.inputs_as = inputs_as or {}   # input id -> the name it is printed as
        self.phase_of: dict[int, str] = {}   # node id -> its phase here, if not its own
        self.label = label
        self.force = force   # node ids always made variables
        self.stmts: list[Statement] = []
        # node -> the variables its printed code reads, one entry per reference (the
        # arguments of the function are left out: they are never released or overwritten)
        self.refs: dict[int, tuple] = {}
        self.last_origin = None
        # a loop's body: scheduled like the rest (through a weak reference: the printer
        # holding this scheduler would make a reference cycle of every function's
        # scheduling state, freed only by a full pass of the garbage collector)
        me = weakref.ref(self)
        printer.schedule_region = lambda node, body: me().region(node, body)
        # the nodes of the walk in progress, and whether no node outside them reads one of
        # them (not so for the forward part the functions of an entry point continue:
        # those of their nodes it does not schedule read the nodes of `force`)
        self.order: list[Node] = []
        self.complete = True

    def fork(self, printer: Printer, namer: Namer, names: dict, keep: frozenset,
             label: str, inputs_as: dict[int, str] | None = None) -> _Scheduler:
        """A scheduler continuing from this one's state in `printer` and `namer` (which
        take this one's printed code and names taken), for another set of names."""
        st = self.st
        printer.code.update(st.p.code)
        printer.dims_used |= st.p.dims_used
        printer.preludes.update(st.p.preludes)
        printer.scalars |= st.p.scalars
        printer.assigned.update(st.p.assigned)
        namer.taken |= st.namer.taken
        namer.next.update(st.namer.next)
        new = _Scheduler(printer, namer, names, keep, label, inputs_as=inputs_as)
        new.st.continue_from(st, keep)
        new.refs = dict(self.refs)
        new.stmts = list(self.stmts)
        new.last_origin = self.last_origin
        return new

    def continue_with(self, forward: Forward, reads) -> None:
        """Count the reads of the forward variables by this function's own nodes and
        outputs (`reads`: their `use_counts`), in place of the one use `Forward` reserved
        for every needed node."""
        remaining, refs = self.st.live.remaining, self.refs
        for nid in forward.needed:
            for name in refs[nid]:
                remaining[name] += reads.get(nid, 0) - 1

    def run(self, order: list[Node], uses) -> None:
        """Statements for the nodes of `order` (`uses`: consumers of each, by id)."""
        st, refs, stmts_out, self.order = self.st, self.refs, self.stmts, order
        names, namer, printer = st.names, st.namer, st.p
        code, inlined, ufunc, live = printer.code, st.inlined, st.ufunc, st.live
        leaf_ops, stmt_ops, cheap_views = st.ops.leaf, st.ops.stmt, st.ops.cheap_view
        force = _gathers_first(order, ufunc, uses, names, self.force)
        label, last_origin, phase_of = self.label, self.last_origin, self.phase_of
        handed, given, zeros = self._handed_names(order, uses), {}, _carried_zeros(order, st.ops)
        axis_first = _axis_first(order, st.ops) if st.ufunc else {}
        for n in order:
            nid = id(n)
            if n.op in leaf_ops:
                self._leaf(n)
                continue
            wanted = names.get(n)
            args = n.args
            if len(args) == 2:
                arg_refs = refs[id(args[0])] + refs[id(args[1])]
            elif len(args) == 1:
                arg_refs = refs[id(args[0])]
            else:
                arg_refs = tuple(name for a in args for name in refs[id(a)])
            expr = None
            if n.op in stmt_ops:
                target, stmts = self._statement(n, wanted, arg_refs, handed, given)
            else:
                text, prec, last_origin, arg_refs = _emitted(self, n, uses, last_origin, arg_refs) \
                    if len(args) == 2 and args[0].shape != args[1].shape and n.op in ufunc \
                    else (*printer.emit(n), last_origin, arg_refs)
                alias = _alias_of(args, text, code)
                if alias is not None:
                    code[nid] = code[id(alias)]
                    refs[nid] = refs[id(alias)]
                    live.share(text, uses[nid] - 1)
                    continue
                if text in st.assigned:   # a variable a loop assigned: the node is it
                    self._assigned(n, text, arg_refs, uses[nid])
                    continue
                view = wanted is None and (n.op in cheap_views and _cheap_view(text, args, code)
                                           or _index_arithmetic(n, text, args, code)
                                           or nid in zeros)
                if view:   # spelled again at each use
                    for name in arg_refs:
                        live.share(name, uses[nid] - 1)
                inline = view or wanted is None and uses[nid] <= 1 and nid not in force
                long = not view and len(text) > MAX_EXPR
                if long and (inline or not chain(st, n)):   # (a chain: short steps below)
                    text, prec, last_origin = _spill(n, text, prec, st, refs, uses, stmts_out,
                                                     last_origin, label)
                    arg_refs = tuple(name for a in args for name in refs[id(a)])
                    long = False
                if inline:
                    code[nid] = (text, prec)
                    inlined.add(nid)
                    refs[nid] = arg_refs
                    continue
                target = namer.fresh(wanted or temp_name(n, names))
                long = long or len(target) + len(text) + 7 > MAX_LINE   # `    target = text`
                live.read(arg_refs)
                stmts = in_place(st, n, target, refs, arg_refs)
                if not isinstance(stmts, list):
                    # not a chain after all (`long`), or its line into a dead buffer too
                    # long (a `TooLong`): spilled, then computed into the buffer
                    if long or stmts is not None:
                        live.unread(arg_refs)
                        text, prec, last_origin, arg_refs, long = self._spill_for(
                            n, text, prec, uses, long, stmts, last_origin, target)
                        stmts = None if long else in_place(st, n, target, refs, arg_refs)
                    if not isinstance(stmts, list):   # (still too long: computed as it is)
                        stmts, expr = _plain(st, n, target, text, axis_first.get(nid))
            release = st.define(n, target, uses[nid], arg_refs)
            refs[nid] = (target,)
            phase = n.phase if not phase_of else phase_of.get(nid, n.phase)
            if last_origin is None or n.origin is not last_origin[0] \
                    or phase != last_origin[1] or n.op in st.ops.loop:
                last_origin = _comment(stmts_out, n, last_origin, label, _said(st, phase))
            stmts_out.append(Statement(stmts, phase, arg_refs, release, target, expr,
                                       st.take_temps(), n))
        self.last_origin = last_origin

    def _leaf(self, n: Node) -> None:
        """A leaf (an input, a constant) printed as it is, or an input as `inputs_as`
        names it: no variable of the function's, never released."""
        nid = id(n)
        self.st.p.code[nid] = self.st.p.emit(n) if nid not in self.inputs_as else \
            (self.inputs_as[nid], PREC_ATOM)
        self.refs[nid] = ()
        if n.is_input and n.dtype == INT:
            self.st.dtypes.int_inputs.add(n.attr("name"))

    def _spill_for(self, n: Node, text: str, prec: int, uses, long: bool,
                   too_long: TooLong | None, last_origin, target: str):
        """`n`'s code shortened (`_spill`), the comment state, the variables it reads (now
        read) and whether it is still `long`: where `in_place` found its line into a dead
        buffer too long (`too_long`), first the arguments of its bottom step spilled (then
        `np.multiply(dlogp_div, hs_exp, out=hs_exp)` may fit); a `long` line to fit."""
        st, refs = self.st, self.refs
        if too_long is not None:
            text, prec, last_origin = self._spill_bottom(n, text, prec, uses, last_origin,
                                                         too_long)
            long = long and len(target) + len(text) + 7 > MAX_LINE
        if long:
            text, prec, last_origin = _spill(n, text, prec, st, refs, uses, self.stmts,
                                             last_origin, self.label, MAX_LINE - 7 - len(target))
        arg_refs = tuple(name for a in n.args for name in refs[id(a)])
        st.live.read(arg_refs)
        return text, prec, last_origin, arg_refs, long

    def _spill_bottom(self, n: Node, text: str, prec: int, uses, last_origin,
                      too_long: TooLong):
        """The arguments of the bottom of `in_place`'s steps (`too_long.spine`) spilled to
        make its line into a dead buffer short enough, the steps above spelled again."""
        st, refs, code = self.st, self.refs, self.st.p.code
        spine, excess = too_long
        bottom = spine[-1]
        b_text, b_prec = (text, prec) if bottom is n else code[id(bottom)]
        b_text, b_prec, last_origin = _spill(bottom, b_text, b_prec, st, refs, uses,
                                             self.stmts, last_origin, self.label,
                                             max(len(b_text) - excess, 1))
        if bottom is n:
            return b_text, b_prec, last_origin
        code[id(bottom)] = (b_text, b_prec)
        for s in reversed(spine[1:]):   # the inlined steps, bottom-up
            if s is not bottom:
                code[id(s)] = st.p.emit(s)
            refs[id(s)] = tuple(name for a in s.args for name in refs[id(a)])
        text, prec = st.p.emit(n)
        return text, prec, last_origin

    def _statement(self, n: Node, wanted: str | None, arg_refs: tuple, handed: dict,
                   given: dict) -> tuple[str, list[str]]:
        """The variable a statement op's node `n` is computed into, and the lines: the
        variable is the array it writes into when that was made under its name
        (`_handed_names`; `given`, by node id), else a fresh one, handed on to the write
        into it."""
        st = self.st
        st.live.read(arg_refs)
        target = given.pop(id(n), None)
        name, writer = handed.get(id(n), (None, None))
        if target is None:
            target = st.namer.fresh(wanted or name or temp_name(n, st.names))
        else:   # one buffer, one name: the array's value before the write is gone
            st.live.gone.add(id(n.args[0]))
            st.live.var_node[target] = n
        if writer is not None:   # the write into it takes its name too
            given[id(writer)] = target
        return target, _write_stmt(st, n, target, arg_refs, self.refs)

    def _handed_names(self, order: list[Node], uses) -> dict:
        """The arrays made by a statement only to be written into by a named one take its
        name (`dx = np.zeros_like(x); dx[:-1] = ...` then `dx[1:] += ...`, not `x_scatter`,
        then `dx = x_scatter  # reuses x_scatter's buffer`): the id of the made array's
        node -> (the name of the node written into it, that node)."""
        write, stmt, names, force = self.st.ops.write, self.st.ops.stmt, self.st.names, \
            self.force
        handed: dict = {}
        for n in reversed(order):   # (a chain of writes: the last one's name for all)
            if n.op in write and n.args and n.args[0].op in stmt:
                a, name = n.args[0], names.get(n) or handed.get(id(n), (None,))[0]
                # (read by the write alone; `A[i] = A[i] + w`, `A[i] += w`, reads it twice)
                own = 1 + (written_value(n) not in (None, n.args[1]))
                if name and uses.get(id(a)) == own and a not in names and id(a) not in force:
                    handed[id(a)] = name, n
        return handed

    def _assigned(self, n: Node, name: str, arg_refs: tuple, uses: int) -> None:
        """`n` is the variable `name` that a statement assigned besides its target (a
        loop's final carried value): defined like any other, by a statement of no line."""
        st = self.st
        st.live.read(arg_refs)
        release = st.define(n, name, uses, arg_refs)
        self.refs[id(n)] = (name,)
        self.stmts.append(Statement([], n.phase, arg_refs, release, name))

    def region(self, node: Node, region: Region) -> RegionCode:
        """The code of `region`, a body of `node` (a loop), which is being printed as a
        statement: the carried variables given their initial values, then the body's
        statements, scheduled by a scheduler of their own (its own printed code, the
        function's names) with the body's inputs bound to the loop index, the carried
        variables and the values from outside, and the carried variables' updates last.
        The body never writes into the buffer of one of its inputs."""
        st, p = self.st, self.st.p
        index = st.namer.fresh(region.inputs[0].attr("name") or "t")
        # (an initial value the body also reads from outside is copied: the loop may
        # write into its carried variable's buffer)
        read = {st.p.code[id(a)][0] for a in node.args[len(region.carried):]}
        # (and the variables an outside value spelled inline in the body reads: `h[0]` reads
        # h; one computed before the loop, `_outside_value`, reads them before any step)
        read |= {r for a in node.args[len(region.carried):] if _spelled_as_is(st, a)
                 for r in self.refs.get(id(a), ())}
        read |= {b for r in read for b in st.live.view_bases.get(r, ())}   # (r = H[0]: H)
        finals = _finals_read(self, node)
        carried, borrowed = _unchanged_borrowed(
            st, node, region, _carried_names(st, node, region, read), finals)
        init, copies = _initial_values(st, node.args, carried, read, node)
        outside = [_outside_value(st, a, init) for a in node.args[len(carried):]]
        bound = [(index, PREC_ATOM)] + [(c, PREC_ATOM) for c in carried] + outside
        names = dict(st.names)   # temporaries named after the variables the inputs are
        names.update((x, code) for x, (code, prec) in zip(region.inputs, bound)
                     if code.isidentifier())
        inner = type(p)(p.names)
        steady = _steady_dtypes(node, region, st) if st.ufunc else {}
        stands = _stands_for(st, node, region, steady) if st.ufunc else {}   # (by name)
        force, roots = _own_statements(st, node, region, steady)
        sched = _Scheduler(inner, st.namer, names, frozenset(), self.label, force=force)
        for x, code in zip(region.inputs, bound):
            inner.code[id(x)] = code
            sched.refs[id(x)] = ()   # like a function's arguments: never released
        order = [n for n in topo_order(roots) if id(n) not in sched.refs]
        uses = use_counts(order, region.outputs)
        _body_state(sched.st, node, steady, stands)
        for x, name in zip(region.carried, carried):
            # A carried variable holds an array the function owns (`_initial_values`,
            # `_updated`): once the step has read it for the last time, a statement may
            # write into its buffer (`H[t] = h` in place, `np.tanh(h, out=h)`).
            if x.shape:
                sched.st.live.own(x, name, uses[id(x)])
                sched.refs[id(x)] = (name,)
                if name in borrowed:   # (an array it does not own: never written into)
                    del sched.st.live.buffers[name]
        sched.run(order, uses)
        if copies:
            _uncopied(init, copies, finals, sched.st, order)
        body = _with_releases(_updated(sched, region, carried, node.phase), frozenset(carried))
        _mark_reused(st, init, body.lines)
        _from_body(st, sched.st)
        st.assigned.update(c for c in carried if c not in borrowed)
        st.namer.taken.discard(index)   # read in the loop only: a later loop may reuse it
        return RegionCode(index, carried, init, body.lines)


def _own_statements(st: _State, node: Node, region: Region, steady: Mapping
                    ) -> tuple[frozenset, list[Node]]:
    """The ids of the next values of a loop body computed as statements of their own: one
    adding to its carried value (`dW += ...`), one read before a row write
    (`_read_before_write`); and the body's roots in the order scheduled (those first)."""
    adds = frozenset(id(o) for x, o in zip(region.carried, region.outputs)
                     if id(x) in steady and o.op in st.ufunc and len(o.args) == 2
                     and any(a is x for a in o.args))
    early = _read_before_write(node, region)
    return adds | early, [*(o for o in region.outputs if id(o) in early), *region.outputs]


def _read_before_write(node: Node, region: Region) -> frozenset:
    """The ids of the next values of a loop body (a loop run forwards) that read a row of
    a carried array another next value writes a row of (`alpha = lse + lse_steps[t - 1]`
    beside `lse_steps[t - 1] = lse`, lse_steps filling log_B_transpose's buffer:
    passes/loops.share_row_buffers): computed first, each a statement of its own, so that
    the write finds the array's old rows read and writes in place (not into a copy of the
    array at every step)."""
    written = {id(p[0]) for o in region.outputs if (p := row_write(o)) is not None}
    if not written or node.attr("reverse", False):
        return frozenset()
    return frozenset(id(o) for o in region.outputs if row_write(o) is None and o.shape and any(
        (p := row_read(m)) is not None and id(p[0]) in written for m in topo_order([o])))


def _from_body(st: _State, body: _State) -> None:
    """What a loop's body (`body`: its scheduler's state) hands on to the function: the
    dimensions and helpers its code uses, whether a statement relies on the float
    arguments' one dtype."""
    st.p.dims_used |= body.p.dims_used
    st.p.preludes.update(body.p.preludes)
    st.dtypes.one_dtype_used |= body.dtypes.one_dtype_used


def _plain(st: _State, n: Node, target: str, text: str, axis: int | None = None
           ) -> tuple[list[str], str | None]:
    """`target = text`, or with a workspace `n` computed into its buffer (no expression
    then, which a function might return as it is), or into a buffer laid out with `axis`
    first (`_axis_first`)."""
    into = workspace_into(st, n, target) if st.ws else None
    if into is None and axis is not None:
        lines = _laid_out(st, n, target, axis)
        if lines is not None:
            return lines, None
    return [f"{target} = {into or text}{shape_comment(n)}{_rows_note(st, n, text)}"], \
        (None if into else text)


def _rows_note(st: _State, n: Node, text: str) -> str:
    """`; the rows the loop wrote into h_steps`: a view, under a name of its own, of
    the rows of an array a loop wrote other values into (ops/control.ROWS_REWRITTEN)."""
    rewritten = ir_memo().get(ROWS_REWRITTEN)
    if not rewritten or rewritten.get(id(n)) is not n:
        return ""
    base = text.partition("[")[0]
    return f"; the rows the loop wrote into {base}" if base.isidentifier() else ""


_VIEW_TEXT = re.compile(r"[A-Za-z_]\w*(\[[\w\s,:+\-]*\])*")   # `x`, `x[None]`, `h[t - 1]`


def _axis_first(order: list[Node], ops: _Ops) -> dict[int, int]:
    """{node id: axis} of the elementwise results of two arrays (of 3 axes or more) that a
    reduction over one middle axis reads. Laid out with that axis outermost (`_laid_out`),
    NumPy reduces over it in passes over whole rows, where in C order it runs one short
    inner loop per index before the axis: hmm's max over axis 1 of (N, K, K) = (64, 16, 16)
    takes 4 instead of 33 us, and the elementwise ops and einsum sums after it keep their
    speed (they follow the layout)."""
    found: dict[int, int] = {}
    for r in order:
        if r.op not in ops.reduction or not r.args:
            continue
        x, axes = r.args[0], r.attr("axes")
        if axes is None or len(axes) != 1 or not 0 < axes[0] < x.ndim - 1 \
                or x.op not in ops.ufunc or len(x.args) != 2 or x.dtype != "float" \
                or not all(a.shape for a in x.args):
            continue
        found[id(x)] = axes[0]
    return found


def _carried_zeros(order: list[Node], ops: _Ops) -> frozenset[int]:
    """The ids of the new arrays of zeros (`np.zeros_like(m0)`) that only loops read, each
    as the initial value of a carried variable (a derivative's accumulator): spelled again
    at each use, so each carried variable starts in an array of its own, not in a copy of
    one shared array named after what it is shaped like (`dq_dot = np.array(q_zeros_like)`
    was `dq_dot = np.zeros_like(q)`'s way round)."""
    found: dict[int, bool] = {}
    for n in order if ir_memo().get(REGIONS_BUILT) else ():   # (no loop: none)
        for i, a in enumerate(n.args):
            rule = ops.buffer.get(a.op)
            if rule is None or a.op in ops.stmt or rule(a) != "zeros":
                continue
            carried = n.op in ops.loop and n.regions and i < len(n.regions[0].carried)
            found[id(a)] = found.get(id(a), True) and bool(carried)
    return frozenset(k for k, only_carried in found.items() if only_carried)


def _gathers_first(order: list[Node], ufunc: dict, uses, names: dict, force: frozenset
                   ) -> frozenset[int]:
    """`force` (the ids of the nodes made variables) and those of the gathers that take
    fewer axes than their array has (`hs_diff[steps, rows, Y]`, the value's entries of a
    log-softmax) from an array that a unary ufunc later in `order` reads too, a statement
    of its own (read twice or named: `hs_exp = np.exp(hs_diff)`): made variables where
    they stand, before that op, which then computes in the array's buffer if nothing else
    reads it (`hs_exp = np.exp(hs_diff, out=hs_diff)`): the array is not kept alive for a
    few of its entries."""
    last_unary: dict[int, int] = {}   # (id of an array: where its last unary reader is)
    for i, n in enumerate(order if ufunc else ()):
        if n.op in ufunc and len(n.args) == 1 and n.args[0].shape == n.shape \
                and (uses[id(n)] > 1 or n in names):
            last_unary[id(n.args[0])] = i
    if not last_unary:
        return force
    return force | {id(n) for i, n in enumerate(order) if n.args
                    and last_unary.get(id(n.args[0]), -1) > i and entries_taken(n)}


def _emitted(sched: _Scheduler, n: Node, uses, last_origin, arg_refs: tuple):
    """The code of `n` (`Printer.emit`; an elementwise op of two arguments of two shapes),
    `last_origin` and the variables its arguments read, after rule
    chain_in_place_before_broadcast: an inlined argument of `n` of a
    smaller shape (`t` in `t * X.T`), computed by three or more elementwise steps
    (`(1 - s) * y * (y * s)`), is made a statement of its own first, so that `in_place`
    computes its steps into one buffer instead of a new array for each step (not for a
    last axis of a fixed size, `(K, 1)`: a few numbers, better read in one line)."""
    st = sched.st
    text, prec = st.p.emit(n)
    args, shape, inlined = n.args, n.shape, st.inlined
    for a in args:
        if a.shape != shape and a.ndim and id(a) in inlined and _three_steps(st, a) \
                and not a.shape[-1].is_number:
            last_origin = _chain_statement(sched, a, uses, last_origin)
            text, prec = st.p.emit(n)
            arg_refs = tuple(name for b in args for name in sched.refs[id(b)])
    return text, prec, last_origin, arg_refs


def _chain_statement(sched: _Scheduler, a: Node, uses, last_origin):
    """`a` (an inlined node) made a statement here, computed by `in_place` where it can."""
    st, refs = sched.st, sched.refs
    aid = id(a)
    reads = refs[aid]
    target = st.namer.fresh(temp_name(a, st.names))
    st.inlined.discard(aid)
    st.live.read(reads)
    stmts, expr = in_place(st, a, target, refs, reads), None
    if not isinstance(stmts, list):
        stmts, expr = _plain(st, a, target, st.p.code[aid][0])
    release = st.define(a, target, uses[aid], reads)
    refs[aid] = (target,)
    last_origin = _comment(sched.stmts, a, last_origin, sched.label, a.phase)
    sched.stmts.append(Statement(stmts, a.phase, reads, release, target, expr,
                                 st.take_temps()))
    return last_origin


def _three_steps(st: _State, n: Node) -> bool:
    """Whether `in_place` would chain three or more elementwise steps for `n`: it and its
    inlined arguments of its shape computed by a ufunc, down one spine."""
    ufunc, inlined, shape = st.ufunc, st.inlined, n.shape
    if n.op not in ufunc:
        return False
    k, bottom = 1, n
    while k < 3:
        for a in bottom.args:
            if id(a) in inlined and a.op in ufunc and a.shape == shape:
                k, bottom = k + 1, a
                break
        else:
            return False
    return True


def _laid_out(st: _State, n: Node, target: str, axis: int) -> list[str] | None:
    """`n` (an elementwise op of two arrays) computed into a new buffer whose axis `axis`
    is outermost: `x = np.empty((K, N, K), ...).transpose(1, 0, 2)` then `np.add(a, b,
    out=x)`, its dtype that of the variables the arguments view; None where an argument
    is an expression (its dtype would cost computing it twice)."""
    p = st.p
    bases = []
    for a in n.args:
        while a.op in st.ops.cheap_view and a.args:
            a = a.args[0]
        text, prec = p.code[id(a)]
        if prec < PREC_CALL or not _VIEW_TEXT.fullmatch(text):
            return None
        bases.append(text.split("[", 1)[0])   # (a view has its variable's dtype)
    perm = (axis, *(i for i in range(n.ndim) if i != axis))
    inverse = tuple(perm.index(i) for i in range(n.ndim))
    codes = [p.arg(n, 0, 0), p.arg(n, 1, 0)]
    buffer = p.creation("empty", p.shape(tuple(n.shape[i] for i in perm)),
                        p.result_type(list(dict.fromkeys(bases))))
    return [f"# {fmt_shape(n.shape)}, axis {axis} outermost: reduced over it in one pass",
            f"{target} = {buffer}.transpose{inverse}",
            p.into(st.ufunc[n.op], codes, target)]


def _write_stmt(st: _State, n: Node, target: str, stmt_refs: tuple, refs: dict) -> list[str]:
    """The lines of a statement op's node `n` computed into `target`: written into the
    buffer of its argument 0 where that dies (`inplace.write_into`), else its own statement
    form; for a node writing part of an array (`written_value`: a `scatter`, an `update`)
    first the value it writes, an inlined elementwise chain, computed in the buffer of a
    variable that dies here (`x_mul = np.multiply(200.0, x_diff, out=x_diff)`), so the
    write allocates nothing; that value is then read as a variable, released after."""
    first = []
    v = written_value(n) if st.ufunc else None
    if v is not None and id(v) in st.inlined and v.op in st.ufunc and v.shape:
        lines = in_place(st, v, "\0", refs, stmt_refs, need_buffer=True)
        if isinstance(lines, list):   # (a TooLong is not spilled here: computed as it is)
            name = st.namer.fresh(temp_name(v, st.names))
            st.p.set_name(v, name)
            st.temps.append(name)
            first = [line.replace("\0", name) for line in lines]
    lines = write_into(st, n, target) or st.p.emit_stmt(n, target)
    if st.ws and n.op in st.ops.buffer and lines[0].startswith(f"{target} = "):
        into = workspace_into(st, n, target, first_line=True)   # (a new buffer first)
        if into is not None:
            lines = [f"{target} = {into}", *lines[1:]]
    return first + lines


def _spill(n, text, prec, st, refs, uses, stmts_out, last_origin, label, limit=MAX_EXPR):
    """`_shorten` the code of `n`, each spilled argument a statement of its own."""
    text, prec, spilled = _shorten(n, text, prec, st.p, st.namer, st.names, limit)
    for arg, line in spilled:
        aid = id(arg)
        var = st.p.code[aid][0]
        refs[aid] = tuple(name for a in arg.args for name in refs[id(a)])   # after any spilled
        last_origin = _comment(stmts_out, arg, last_origin, label, _said(st, arg.phase))
        st.inlined.discard(aid)
        st.live.read(refs[aid])
        lines = in_place(st, arg, var, refs, refs[aid], need_buffer=True)   # into a buffer
        if not isinstance(lines, list):   # that dies here, as a statement of its own is
            lines = [line]
        release = st.define(arg, var, uses[aid], refs[aid])
        stmts_out.append(Statement(lines, arg.phase, refs[aid], release, var, None))
        refs[aid] = (var,)
    return text, prec, last_origin


_OPS: list = [None, 0]   # the _Ops of REGISTRY, and its size then (an op added: made again)


class _Ops:
    """What the scheduler asks of the registry about an op, as sets of op names."""

    def __init__(self):
        self.leaf = {op for op, d in REGISTRY.items() if "leaf" in d.traits}
        self.stmt = {op for op, d in REGISTRY.items() if d.stmt is not None}
        self.write = {op: d.write for op, d in REGISTRY.items() if d.write is not None}
        self.transparent = {op for op, d in REGISTRY.items() if "transparent" in d.traits}
        self.loop = {op for op, d in REGISTRY.items() if "region" in d.traits}
        self.part = {op for op, d in REGISTRY.items() if "projection" in d.traits}
        # the ops whose code may give a view of an argument (OpDef.view), and the leaves
        self.view = {op for op, d in REGISTRY.items() if d.view is not None or "leaf" in d.traits}
        self.view_rule = {op: d.view for op, d in REGISTRY.items() if callable(d.view)}
        self.ufunc = {op: d.ufunc for op, d in REGISTRY.items() if d.ufunc}
        # the workspace's forms (`OpDef.into`, `OpDef.buffer`)
        self.into = {op: d.into for op, d in REGISTRY.items() if d.into is not None}
        self.buffer = {op: d.buffer for op, d in REGISTRY.items() if d.buffer is not None}
        # the in-place function of division (the op of the operator `/`): a product by
        # 1/q is computed as a division by q, as the printer spells it
        self.divide = next(d.ufunc for d in REGISTRY.values() if d.operator == "/")
        # views that are no identity (those are aliases): transposes, axes added or taken
        # away, basic indexing
        self.cheap_view = {op for op, d in REGISTRY.items()
                           if d.view == "view" and op not in self.transparent}
        # the views that may be written into (basic indexing, not a broadcast)
        self.writable_view = {op for op, d in REGISTRY.items() if d.view == "view"}
        self.reduction = {op for op, d in REGISTRY.items() if d.has("reduction")}
        self.product = {op for op, d in REGISTRY.items() if d.has("product")}
        self.commutative = {op for op, d in REGISTRY.items() if d.has("commutative")}
        # the ops whose array may be narrower than their dtype: never a buffer to reuse
        self.narrow = {op for op, d in REGISTRY.items() if d.has("narrow")}
        # the ops with a form into a buffer that are no ufunc (a matrix product: `_fresh_bottom`)
        self.fresh_into = {op for op in self.into if op not in self.ufunc}

    @staticmethod
    def get() -> _Ops:
        """The sets of the op table (made once per table: a scheduler is made per
        function)."""
        if _OPS[0] is None or _OPS[1] != len(REGISTRY):
            _OPS[:] = [_Ops(), len(REGISTRY)]
        return _OPS[0]

    def is_view(self, n: Node) -> bool:
        """Whether `n` may share memory with another array (so `del` frees nothing)."""
        while n.op in self.transparent:
            n = n.args[0]
        if n.op not in self.view:
            return False
        rule = self.view_rule.get(n.op)   # (a view for some nodes only: `X[t]`)
        return rule is None or rule(n) is not None


class _State:
    """What the scheduler of one function (or loop body) knows besides its statements:
    the printed code, which nodes were inlined, the variables and their remaining reads
    (`live`), the dtypes of their buffers (`dtypes`), and the buffers statements reused."""

    def __init__(self, printer: Printer, namer: Namer, names: dict, keep: frozenset):
        self.p = printer
        self.namer = namer
        self.names = names
        self.keep = keep
        self.ops = _Ops.get()
        # in place only where the target can write into a buffer (Printer.supports_out)
        self.ufunc = self.ops.ufunc if printer.supports_out else {}
        self.inlined: set[int] = set()
        self.live = Liveness(keep)
        self.dtypes = BufferDtypes(printer.one_dtype, printer.workspace)
        self.temps: list[str] = []   # variables `in_place` made that die in its statement
        self.assigned: set[str] = set()   # variables a loop assigned (Printer.assigned)
        # with a workspace (`Printer.workspace`): the variables given one of its buffers
        # (-> node id), each variable whose statement reused another's buffer (-> it)
        self.ws = printer.workspace
        self.ws_vars: dict[str, int] = {}
        self.reused: dict[str, str] = {}
        self.recomputes = False   # a backward loop's body: its forward values recomputed

    def continue_from(self, st: _State, keep: frozenset) -> None:
        """Continue from the state `st` (a function built on another's statements, whose
        arguments are `keep`)."""
        self.inlined = set(st.inlined)
        self.live = st.live.fork(keep)
        self.dtypes.continue_from(st.dtypes)
        self.assigned = set(st.assigned)
        self.ws_vars, self.reused = dict(st.ws_vars), dict(st.reused)

    def define(self, n: Node, name: str, uses: int, reads=()) -> str | None:
        """`name` now holds `n`, which `uses` consumers will read; `reads` are the variables
        its statement read (a view keeps their buffers alive while it is needed). Returns
        `name` when a `del` may release it (no view, or a view of no variable), else None."""
        self.p.set_name(n, name)
        ops = self.ops
        if (n.op in ops.view or n.op in ops.transparent) and ops.is_view(n):
            fresh = _views_fresh(self, n)
            self.live.define(n, name, uses, () if fresh else reads)
            return name if fresh and n.shape else None   # (its array's only reference)
        if not n.shape:
            self.live.define(n, name, uses)
            return None
        self.live.define(n, name, uses, None,
                         not self.dtypes.weak(n) and n.op not in ops.narrow)
        return name

    def take_temps(self) -> tuple:
        """The temporaries made for the statement just printed (and forget them)."""
        if not self.temps:
            return ()
        temps, self.temps = tuple(self.temps), []
        return temps


def _views_fresh(st: _State, n: Node) -> bool:
    """Whether the view `n` is, below its chain of inlined views, of an array its own
    statement computes (not of a variable, a number or a leaf)."""
    ops, a = st.ops, n.args[0] if n.args else n
    while id(a) in st.inlined and (ops.is_view(a) or a.op in ops.transparent):
        a = a.args[0]
    return id(a) in st.inlined and a.op not in ops.leaf and a.op not in ops.transparent \
        and not a.is_const and not a.is_input and id(a) not in st.p.scalars \
        and not ops.is_view(a)


def _last_reads(stmts: list[Statement]) -> dict[str, int]:
    """Each variable read by `stmts` -> the index of the last statement reading it."""
    return {name: i for i, st in enumerate(stmts) for name in st.reads}


def _with_releases(stmts: list[Statement], keep: frozenset,
                   last_read: dict[str, int] | None = None) -> Body:
    """Insert `del` after the last statement reading each array temporary (`last_read`:
    `_last_reads(stmts)`, if worked out already)."""
    if last_read is None:
        last_read = _last_reads(stmts)
    releasable = {st.release for st in stmts}
    final = len(stmts) - 1
    dead_after: dict[int, list[str]] = {}
    for name, i in last_read.items():
        if i < final and name in releasable and name not in keep:
            dead_after.setdefault(i, []).append(name)
    lines: list[str] = []
    phases: list[str] = []
    add_line, add_phase = lines.append, phases.append
    for i, st in enumerate(stmts):
        phase = st.phase if st.phase == "forward" else "backward"
        st_lines = st.lines
        if len(st_lines) == 1:   # the usual statement
            add_line(st_lines[0])
            add_phase(phase)
        else:
            lines += st_lines
            phases += [phase] * len(st_lines)
        dead = dead_after.get(i)
        if st.temps and i < final:   # made and dead within the statement
            dead = [*(dead or ()), *st.temps]
        if dead is not None:
            line = "del " + ", ".join(sorted(dead))
            if len(line) <= MAX_WIDTH:   # (the usual `del`)
                add_line(line)
                add_phase(phase)
                continue
            for line in fit_line(line):
                add_line(line)
                add_phase(phase)
    return Body(lines, phases)


def _cheap_view(text: str, args: tuple, code: dict) -> bool:
    """Whether a view printed as `text` is of variables only and short besides their names
    (`W.T`, `U_sum[:, None]`): it costs nothing to spell again, so it is never a variable
    of its own (`code`: the printer's)."""
    return all(_is_name(code[id(a)]) for a in args) and \
        len(text) - sum(len(code[id(a)][0]) for a in args) <= MAX_VIEW


def _alias_of(args: tuple, text: str, code: dict):
    """The argument whose variable a node printed as `text` prints as (identity ops such
    as stop_gradient); `code` is the printer's."""
    for a in args:
        c = code[id(a)]
        if c[0] == text and c[1] == PREC_ATOM:
            return a
    return None


def _shorten(n, text, prec, printer, namer, names, limit: int = MAX_EXPR):
    """Spill the longest inlined arguments into statements until the line is short.

    Each argument is spilled at most once, and one already named (a variable, however long
    its name) never is: the loop ends after at most `len(n.args)` rounds.
    """
    spilled = []
    done: set[int] = set()
    while len(text) > limit:
        candidates = [a for a in n.args if id(a) not in done
                      and not _is_name(printer.code[id(a)])
                      and (printer.code[id(a)][1] < PREC_ATOM or len(printer.code[id(a)][0]) > 12)
                      and not REGISTRY[a.op].has("leaf")]
        if not candidates:
            break
        a = max(candidates, key=lambda a: len(printer.code[id(a)][0]))
        done.add(id(a))
        name = namer.fresh(temp_name(a, names))
        if len(printer.code[id(a)][0]) > MAX_LINE - 7 - len(name):   # its own line too long:
            *code_a, inner = _shorten(a, *printer.code[id(a)], printer, namer, names,
                                      MAX_LINE - 7 - len(name))   # its arguments spilled first
            printer.code[id(a)] = tuple(code_a)
            spilled.extend(inner)
        spilled.append((a, f"{name} = {printer.code[id(a)][0]}{shape_comment(a)}"))
        printer.set_name(a, name)
        text, prec = printer.emit(n)
    return text, prec, spilled


def _index_arithmetic(n: Node, text: str, args: tuple, code: dict) -> bool:
    """Whether `n` is short integer arithmetic of variables and numbers (`t - 1` of a
    loop's index): spelled again at each use, `sum_steps[t - 1]`, never a variable
    `t_diff` of its own (`code`: the printer's)."""
    return not n.shape and len(text) <= MAX_VIEW and n.dtype == INT and all(
        a.is_const or _is_name(code[id(a)]) for a in args)


def _is_name(code: tuple[str, int]) -> bool:
    """The printed code is a plain variable name (spilling it would only copy it)."""
    return code[1] == PREC_ATOM and code[0].isidentifier()


def _body_state(st: _State, node: Node, steady: dict, stands: dict) -> None:
    """The state of a loop body's scheduler: its steady carried values and the outer
    inputs its inputs stand for (`_steady_dtypes`, `_stands_for`), and whether its forward
    values are recomputed (a backward loop: `# recomputed:` headers, `_said`)."""
    st.dtypes.in_body(steady, stands)
    st.recomputes = node.phase == "backward"


def _said(st: _State, phase: str) -> str:
    """The phase a header names: RECOMPUTED for a forward value in a backward loop's body."""
    return RECOMPUTED if st.recomputes and phase == "forward" else phase


def _comment(stmts: list[Statement], n: Node, last_origin, label: str,
             phase: str | None = None):
    """Before the first derivative statement of each source line, say what it
    differentiates: `grad of` (reverse mode), `tangent of` (forward mode, the tangent
    nodes of a JVP or an HVP) or `tangent of grad of` (an HVP's tangents of the gradient's
    nodes). `last_origin` is (origin, phase) of the last comment; `phase` is `n`'s phase
    here (by default its own)."""
    phase = phase or n.phase
    origin = n.origin
    if phase not in _DERIVATIVE and phase != RECOMPUTED or origin is None:
        return last_origin
    regions = n.attrs and n.regions
    if last_origin is not None and phase == last_origin[1] and not regions:
        last = last_origin[0]   # (lines compared first: an Origin's == is a Python call)
        if origin is last or origin.line == last.line and origin == last:
            return last_origin
    label = label if phase == "backward" else phase
    if regions:   # a loop's derivative: one loop of statements (`# grad of` each inside)
        stmts.append(Statement([f"# {label} of the loop at line {origin.line}"],
                               "backward", (), None, None))
        return origin, phase
    stmts.append(_header(label, origin))
    return origin, phase


def _header(label: str, origin) -> Statement:
    """The comment statement `# grad of line N: <the source line>`, fitted in MAX_HEADER
    (memoised, the statement itself: every derivative function of an entry point has one
    per source line, and no statement is changed once made)."""
    key = (label, origin.line, origin.text)   # (an Origin's own hash is a Python call)
    stmt = _HEADERS.get(key)
    if stmt is None:
        head = f"# {label}{':' if label == RECOMPUTED else ' of'} line {origin.line}: "
        text = _HEADER_TEXTS.get(origin.text)   # (once per source line, whatever the label)
        if text is None:
            text = _ALIGNED_COMMENT.sub("  #", comment_text(origin.text))
            _HEADER_TEXTS[origin.text] = text
        if len(head) + len(text) > MAX_HEADER:   # (the source line is in the docstring's file)
            text = text[:max(MAX_HEADER - len(head) - 3, 0)].rstrip() + "..."
        if len(_HEADERS) > 65536:
            _HEADERS.clear()
            _HEADER_TEXTS.clear()
        stmt = _HEADERS[key] = Statement([head + text], "backward", (), None, None)
    return stmt


_HEADERS: dict[tuple, Statement] = {}   # (label, line, text) -> the comment statement
_HEADER_TEXTS: dict[str, str] = {}   # a source line -> its text in a header


# A source line's own comment, aligned with spaces in the source: two spaces before it here.
_ALIGNED_COMMENT = re.compile(r" {3,}#")


# The phases of derivative nodes: reverse mode ("grad", or what the function calls it),
# forward mode, and forward over reverse (an HVP's tangents of the gradient's nodes).
_DERIVATIVE = frozenset({"backward", "tangent", SECOND_ORDER})
# The header of the forward values a backward loop's step computes again (`# recomputed:
# line 14: ...`, autodiff/loops: the softmax weights, a carried value made again).
RECOMPUTED = "recomputed"


# ---------------------------------------------------------------- regions (loops)

def _steady_dtypes(node: Node, region: Region, st: _State | None = None
                   ) -> dict[int, frozenset]:
    """The carried values of a loop whose dtype no step changes (that of the initial
    value: no next value depends on an argument of another dtype source), each (by id)
    with the names of the body inputs no wider than it (whose values a step may add into
    its buffer). The dtype sources of a body input are those of the loop's argument for
    it, a carried value's also those of its next values (to a fixed point). With `st`
    (the function's scheduler state), in a loop run forwards: also a carried array
    starting in the buffer of an array of fewer dtype sources and written a row per step
    from more, all of them float arguments (hmm's lse_steps in log_B_transpose's buffer,
    passes/loops.share_row_buffers): the function makes them one dtype (rule
    `one_dtype_at_entry`), else NumPy would round the rows to the buffer's dtype."""
    one = st.dtypes.one_dtype if st is not None and st.ufunc and not node.attr("reverse", False) \
        else {}
    plain = _steady_of(node, region, {})
    if not one:
        return plain
    rows = {id(x) for x, o, a in zip(region.carried, region.outputs, node.args)
            if id(x) not in plain and (p := row_write(o)) is not None and p[0] is x
            and not new_empty(a)}
    if not rows:
        return plain
    found = _steady_of(node, region, one)
    more = {k: v for k, v in found.items() if k in rows}
    if more:
        st.dtypes.one_dtype_used = True
    return {**plain, **more}


_ONE = object()   # the float arguments made one dtype, as one dtype source


def _steady_of(node: Node, region: Region, one: Mapping[int, str]) -> dict[int, frozenset]:
    """`_steady_dtypes` with the arguments in `one` (by node id) as one source."""
    c = len(region.carried)
    inputs = region.inputs[1:]
    by_name = {x.attr("name"): x for x in region.inputs}
    if len(by_name) != len(region.inputs):
        return {}

    def sources(a: Node) -> frozenset:
        return frozenset(_ONE if id(y) in one else y for y in dtype_sources(a))

    src = {id(x): sources(a) for x, a in zip(inputs, node.args)}
    src[id(region.inputs[0])] = frozenset()
    carried_dtype_sources(src, region.carried, region.outputs)
    found = {}
    for x, a in zip(region.carried, node.args[:c]):
        own = sources(a)
        if not x.shape or x.dtype == INT or a.is_const or src[id(x)] != own:
            continue
        found[id(x)] = frozenset(y.attr("name") for y in region.inputs
                                 if y.dtype == INT or src[id(y)] <= own)
    return found


def _stands_for(st: _State, node: Node, region: Region, steady: Mapping[int, frozenset]
                ) -> dict[str, frozenset]:
    """{name: the outer values whose dtype it has, promoted} for the float inputs of the
    body `region` of the loop `node` whose dtype is known exactly (`_exact_sources` of the
    loop's argument for it; a carried value's only when no step changes its dtype, a key
    of `steady`): `alpha_steps` and `lse_steps`, saved with the dtype of (A, a0, obs),
    have one dtype in the body although each is a dtype source of its own to
    `input_names`. The outer values are function inputs, or the enclosing body's inputs
    as they stand (`st.dtypes.stands_for`: the body `region` is closed, so an input reached from
    the loop's arguments is one of the enclosing body's, by its name)."""
    c = len(region.carried)
    by_name = {x.attr("name") for x in region.inputs}
    if len(by_name) != len(region.inputs):
        return {}
    found: dict[str, frozenset] = {}
    for k, (x, a) in enumerate(zip(region.inputs[1:], node.args)):
        if x.dtype != "float" or (k < c and id(x) not in steady):
            continue
        s = _exact_sources(st, a, [16])
        if not s or k < c and s != frozenset(dtype_sources(a)):
            continue   # (a carried value's dtype is that of the sources of all its values)
        outer = st.dtypes.stands_for   # (an enclosing body's inputs as they stand)
        found[x.attr("name")] = frozenset().union(
            *(outer.get(y.attr("name")) or (y,) for y in s))
    return found


def _exact_sources(st: _State, a: Node, budget: list) -> frozenset | None:
    """The inputs whose dtype, promoted, is exactly that of `a`'s array, or None when not
    known within `budget[0]` nodes (counted down): a float input, views of it, a loop's
    final carried value whose dtype no step changes (that of its initial value, when its
    `dtype_sources` are exact), and float ops of those (constants and integers add no
    dtype). Not a narrow op's (its array may be narrower), nor a tuple's or a comparison's."""
    ops = st.ops
    while a.op in ops.cheap_view or a.op in ops.transparent:   # (a view keeps the dtype)
        if not a.args:
            break
        a = a.args[0]
    budget[0] -= 1
    if a.dtype != "float" or a.op in ops.narrow or budget[0] < 0:
        return None
    if a.is_input:
        return frozenset((a,))
    if a.op in ops.part:
        loop = a.args[0]
        if loop.op not in ops.loop or not loop.regions:
            return None
        body, k = loop.regions[0], a.attr("index")
        if not 0 <= k < len(body.carried) or \
                id(body.carried[k]) not in _steady_dtypes(loop, body, st):
            return None
        s = _exact_sources(st, loop.args[k], budget)
        if s != frozenset(dtype_sources(loop.args[k])):
            return None
        if id(body.carried[k]) not in _steady_of(loop, body, {}):   # (steady as the
            s |= {y for b in loop.args for y in dtype_sources(b)   # arguments' one dtype)
                  if id(y) in st.dtypes.one_dtype}
        return s
    if st.dtypes.weak(a):
        return None
    out: frozenset = frozenset()
    for b in a.args:
        if b.is_const or b.dtype == INT:
            continue
        s = _exact_sources(st, b, budget)
        if s is None:
            return None
        out |= s
    return out or None


def _carried_names(st: _State, node: Node, region: Region, read: set) -> tuple[str, ...]:
    """The carried variables of a loop: named as the source names them, or the variable
    holding the initial value itself when nothing else reads it and it has that name (or
    that name is taken): `H = np.zeros(...)` before the loop, then `H[t] = h` in it."""
    out: list[str] = []
    live = st.live
    for x, a in zip(region.carried, node.args):
        want = st.names.get(x) or x.attr("name") or "carry"
        text = st.p.code[id(a)][0]
        if (text == want or want in st.namer.taken) and text not in out and text not in read \
                and (a.shape and text in live.buffers and not _shared(st, a, text)
                or not a.shape and text in live.var_node and live.remaining.get(text, 0) == 0):
            out.append(text)   # the loop continues the variable
        else:
            out.append(st.namer.fresh(want))
    return tuple(out)


def _finals_read(sched: _Scheduler, loop: Node) -> Callable[[int], bool]:
    """Whether something may read the final value of `loop`'s k-th carried variable: a
    `part` of it among the nodes of the walk of `sched`, or, in the forward part the
    functions of an entry point continue, any part when one of their own nodes reads the
    loop (`force`: the forward nodes they read)."""
    if not sched.complete and id(loop) in sched.force:
        return lambda k: True
    parts = sched.st.ops.part
    read = {n.attr("index") for n in sched.order if n.op in parts and n.args[0] is loop}
    return read.__contains__


def _unchanged_borrowed(st: _State, node: Node, region: Region, carried: tuple,
                        finals: Callable[[int], bool]) -> tuple[tuple, frozenset]:
    """The carried variables (`carried`), those no step changes and whose final value
    nothing reads (`finals`) named as the variable or argument holding their initial
    value (`dFs[t]` in the loop, not `dFs2 = dFs.copy()` before it): no step writes into
    their buffers (the step's output reads them: never dead), so they need none of their
    own. Also those names (borrowed: no buffer of the body's, no variable of the loop's)."""
    out, borrowed = list(carried), set()
    for k, (x, o, a) in enumerate(zip(region.carried, region.outputs, node.args)):
        text = st.p.code[id(a)][0]
        if o is x and x.shape and text not in carried and text.isidentifier() \
                and (a.is_input or text in st.live.var_node) and not finals(k):
            out[k] = text
            borrowed.add(text)
    return (tuple(out), frozenset(borrowed)) if borrowed else (carried, frozenset())


def _initial_values(st: _State, args: tuple, carried: tuple, read: set,
                    loop: Node | None = None) -> tuple[list[str], dict[int, tuple]]:
    """`h = h0`: the carried variables set before the loop, each to a copy where its
    initial value is an argument of the function (never modified), a view, or a variable
    something later reads (or another carried variable starts from). With a workspace, a
    new buffer (`np.empty(...)`, zeros) whose final value is no result of the function
    (`loop`'s) is the workspace's (`h_steps = ws("h_steps", T + 1, B, H)`). Also, for
    each line that copies an array something else holds (by index), the carried value's
    index, the line without the copy and the carried variable holding that array
    uncopied, if one does (`_uncopied`)."""
    # (a variable a carried variable continues is taken whichever comes first: another
    # carried variable starting from it gets a copy, not the buffer the loop writes into)
    lines: list[str] = []
    # line index -> (carried index, the line uncopied, the carried variable holding the
    # same array uncopied, if one does)
    copies: dict[int, tuple] = {}
    taken = {name for name, a in zip(carried, args) if st.p.code[id(a)][0] == name}
    holder = {name: name for name in taken}
    for i, (name, a) in enumerate(zip(carried, args)):
        text, prec = st.p.code[id(a)]
        if text == name:   # the variable itself (`_carried_names`)
            continue
        # (an expression spelled twice is two arrays: `np.empty(...)` needs no copy; a
        # number needs none either: np.array(0.0) would be a float64 array)
        number = a.is_const or id(a) in st.p.scalars
        if text in taken and id(a) not in st.inlined and not number \
                or text in read and a.shape or _shared(st, a, text):
            if a.shape:
                copies[len(lines)] = i, f"{name} = {text}", holder.get(text)
            text = st.p.copy(text, prec, scalar=not a.shape)
        elif st.ws and id(a) in st.inlined and loop is not None and \
                (id(loop), i) not in st.p.workspace_parts:
            text = workspace_into(st, a, name) or text
        holder.setdefault(text, name)
        taken.add(text)
        lines.append(f"{name} = {text}")
    return lines, copies


def _uncopied(init: list[str], copies: dict[int, tuple], read: Callable[[int], bool],
              body: _State, order: list[Node]) -> None:
    """The initial values of a loop (`init`, changed in place) not copied where the copy
    buys nothing: the body (`body`: its scheduler's state after it, `order`: its nodes)
    never writes into the carried variable's buffer, so it may hold an array something
    else holds until a step rebinds it (`h = h0`, then `h = np.tanh(...)` at every step,
    not `h = h0.copy()` once per call), and nothing reads its value after the loop
    (`read(k)` says whether something may: after no step it would be that array)."""
    if any(n.op in body.ops.loop for n in order):   # (an inner loop has a state of its own)
        return
    for k, (i, line, holder) in copies.items():
        if line.partition(" = ")[0] not in body.live.overwritten and not read(i) \
                and holder not in body.live.overwritten:   # (nor the one holding it already)
            init[k] = line


def _mark_reused(st: _State, init: list[str], lines: list[str]) -> None:
    """`dXWx = dhs  # reuses dhs's buffer`: an initial value (`init`, changed in place)
    that is a variable of the function's own array, which the loop's body (`lines`)
    writes into under the carried variable's name (a row, or `out=`), says so: a reader
    sees that the loop overwrites that array (passes/loops.share_row_buffers)."""
    for i, line in enumerate(init):
        name, _, text = line.partition(" = ")
        if not text.isidentifier() or text == name or text not in st.live.buffers \
                and not _owned_view(st, text):
            continue
        row, out = f"{name}[", f"out={name})"
        if any(x.lstrip().startswith(row) or out in x for x in lines):
            init[i] = f"{line}  # reuses {text}'s buffer"
            # a step that reads rows of it reads what they hold: the other array's values
            # until the loop has written them, said where it does (hmm's backward step reads
            # the saved lse as `dlogE_rows[t - 2]`, a row of lse_steps, not a gradient)
            at = next((j for j, x in enumerate(lines) if row in x.partition(" = ")[2]), None)
            if at is not None:
                lines.insert(at, f"# a row of {name} holds {text}'s value until the loop "
                                 "writes it")


def _shared(st: _State, a: Node, text: str) -> bool:
    """Whether the code `text` of `a` may be an array something else holds: an argument
    of the function, a view, or a variable still read later (a number is not)."""
    if a.is_const or id(a) in st.p.scalars:
        return False
    if st.ops.is_view(a) and st.live.buffers.get(text) is not a:   # (a loop's carried
        return not _owned_view(st, text)                        # variable is its own buffer)
    if id(a) in st.inlined or not a.shape:   # a new array, or a computed 0-d value
        return False
    return text not in st.live.buffers or st.live.read_later(text)


def _owned_view(st: _State, text: str) -> bool:
    """Whether `text` is a variable holding a view of an array its own statement computed
    (`log_B_transpose = np.transpose(log_B[:, obs_transpose], (1, 2, 0))`): the array's
    only reference, which no later code reads (a loop may take it as its buffer)."""
    return text.isidentifier() and st.live.owned_view(text)


def _outside_value(st: _State, a: Node, init: list[str]) -> tuple[str, int]:
    """The code a body reads for the value `a` from outside: an expression is computed
    before the loop (a line appended to `init`) into a variable of its own, released after
    the loop, not at every step; a view of a variable or a number is spelled as it is (a
    view of an expression, `(B * u).sum(axis=1)[:, None]`, is computed before the loop)."""
    text, prec = st.p.code[id(a)]
    if _spelled_as_is(st, a):
        return text, prec
    name = st.namer.fresh(st.names.get(a) or temp_name(a, st.names))
    init.append(f"{name} = {text}{shape_comment(a)}")
    st.temps.append(name)
    return name, PREC_ATOM


def _spelled_as_is(st: _State, a: Node) -> bool:
    """Whether a body reads the value `a` from outside as its code (`_outside_value`)."""
    return id(a) not in st.inlined or id(a) in st.p.scalars \
        or st.ops.is_view(a) and not _views_an_expression(st, a)


def _views_an_expression(st: _State, a: Node, writable: bool = False) -> bool:
    """Whether the inlined view `a` is, below its chain of views, an expression its code
    computes (not a variable, a number or a leaf such as a new constant array); with
    `writable`, through views that may be written into only (`[:, :, 0]`, not
    `np.broadcast_to`): a new array no other variable holds."""
    ops = st.ops
    while id(a) in st.inlined and (a.op in ops.transparent
                                   or a.op in ops.view and a.op not in ops.leaf):
        if writable and a.op not in ops.writable_view:
            return False
        a = a.args[0]
    return id(a) in st.inlined and a.op not in ops.leaf and not a.is_const \
        and id(a) not in st.p.scalars


def _updated(sched: _Scheduler, region: Region, carried: tuple, phase: str,
             ) -> list[Statement]:
    """The body's statements with the carried variables' updates: a statement computing
    the next value assigns the carried variable itself (`h = np.tanh(h @ W + x)`) when no
    later code reads the value before, else an assignment after the statements does (one
    tuple assignment when an update reads a carried variable an earlier one set). A next
    value that is another array (an input of the body, a view) is copied, so that no two
    carried variables, and no carried variable and an argument, share a buffer; a view
    of an array its own code makes (`(W @ v[:, :, None])[:, :, 0]`) is not."""
    stmts, code, st = list(sched.stmts), sched.st.p.code, sched.st
    texts = [code[id(o)][0] for o in region.outputs]
    updates: list[tuple[str, str]] = []
    reads: list[str] = []
    for i, (name, o) in enumerate(zip(carried, region.outputs)):
        text, prec = code[id(o)]
        if text == name:   # carried unchanged
            continue
        once = texts.count(text) == 1
        fresh_view = _views_an_expression(st, o, writable=True)   # (of a new array: no copy)
        if not o.is_const and id(o) not in st.p.scalars and st.ops.is_view(o) \
                and not (text in carried and once) and not fresh_view \
                or not once and text in texts[:i]:
            text = st.p.copy(text, prec, scalar=not o.shape)
        elif once and sched.refs[id(o)] == (text,) and _assign_directly(
                stmts, text, name, texts[:i] + texts[i + 1:]):
            continue
        updates.append((name, text))
        reads += sched.refs[id(o)]
    if len(updates) > 1 and any(_mentions(later, name) for k, (name, _) in enumerate(updates)
                                for _, later in updates[k + 1:]):
        targets, values = ", ".join(n for n, _ in updates), [t for _, t in updates]
        lines = [f"{targets} = {', '.join(values)}"]
        if len(lines[0]) + 4 > MAX_LINE:   # (in a loop's body) one value a line, as
            lines = [f"{targets} = (", *(f"    {v}," for v in values), ")"]   # ruff formats
    else:
        lines = [f"{name} = {text}" for name, text in updates]
    # one statement last, so that what the body reads last is released inside the loop
    stmts.append(Statement(lines, phase, tuple(reads), None, None))
    return stmts


def _assign_directly(stmts: list[Statement], var: str, name: str, others: list[str]) -> bool:
    """Make the statement computing the variable `var` (a next value) compute the carried
    variable `name` instead (and the statements after it read `name` for `var`), if only
    its first line and nothing before it reads the carried variable's value before the
    step, and nothing after it does (`others`: the other updates' code)."""
    if any(_mentions(t, name) or _mentions(t, var) for t in others):
        return False
    for k in range(len(stmts) - 1, -1, -1):
        st = stmts[k]
        if st.target == var:
            if not st.lines:   # a variable a loop assigned (`_assigned`)
                return False
            break
        if any(_mentions(line, name) for line in st.lines):
            return False
    else:
        return False
    if not st.lines:   # `var` is a variable an inner loop assigned: `name = var` after it
        return False
    if not st.lines[0].startswith(f"{var} = {name}  # reuses") and \
            any(_mentions(line, name) for line in st.lines[1:]):   # (`var` is not `name`)
        return False
    rename = re.compile(rf"(?<![\w.]){re.escape(var)}(?!\w)")
    for j in range(k, len(stmts)):
        st = stmts[j]
        if j > k and var not in st.reads:
            continue
        lines = []
        for line in st.lines:
            code, hash_, comment = line.partition("#")
            code = rename.sub(name, code)
            if code.strip() != f"{name} = {name}":   # (`H = H  # reuses H's buffer`)
                lines.append(code + hash_ + comment)
        reads = tuple(name if r == var else r for r in st.reads)
        if j == k:
            stmts[j] = st._replace(lines=lines, target=name, release=None, reads=reads)
        else:
            stmts[j] = st._replace(lines=lines, reads=reads,
                                   release=None if st.release == var else st.release)
    return True


def _mentions(code: str, name: str) -> bool:
    """Whether the code (comments left out) reads the variable `name`."""
    return re.search(rf"(?<![\w.]){re.escape(name)}(?!\w)", code.split("#", 1)[0]) is not None
