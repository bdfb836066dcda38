"""Statement order and naming: turn the nodes a function needs into Python statements.

Nodes are printed in topological order (depth-first from the outputs, so the forward
pass comes first and each backward statement sits next to its use). A node becomes a
statement when the source named it, when it has a derived name (`dZ`), when several
consumers use it, or when inlining it would make a line too long; otherwise it is
inlined into its one consumer.

The bookkeeping is one walk over the nodes: each node's printed code reads some
variables, kept as a tuple with one entry per reference (inlining a node concatenates the
tuples of its arguments), and each variable counts the references to it not printed yet
(`_State.remaining`). A variable whose count is zero after a statement is not read by any
later statement, so the statement may overwrite its buffer.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..autodiff.common import weak as _weak
from .. import ir
from ..ir import Node, topo_order, use_counts
from ..ops.registry import PREC_ATOM, REGISTRY
from ..shapes import fmt_shape
from .naming import Namer
from .printer import Printer

MAX_EXPR = 80


@dataclass
class Body:
    lines: list[str]
    phases: list[str]   # the phase ("forward"/"backward") of each line


def schedule(outputs: list[Node], names: dict, namer: Namer, printer: Printer,
             derivative_label: str = "grad", keep: frozenset = frozenset(),
             visit: list[Node] | None = None) -> Body:
    """Statements computing `outputs`; `names` gives preferred names for some nodes.

    After the statement that reads an array temporary for the last time, a `del` releases
    it (as careful hand-written code does), so peak memory stays low; `keep` names
    variables never to release or overwrite (the function's arguments). Chains of
    elementwise operations are computed in one buffer (`out=`, augmented assignment),
    reusing the buffer of a temporary that dies there when its dtype is certain to match.
    """
    order = topo_order(visit or outputs)
    uses = use_counts(order, outputs)
    st = _State(printer, namer, names, keep, _dependencies(order))
    # Statements as (lines, phase, variables read, variable a `del` may release or None).
    stmts_out: list[tuple] = []
    # node -> the variables its printed code reads, one entry per reference (the arguments
    # of the function are left out: they are never released or overwritten)
    refs: dict[int, tuple] = {}
    code = printer.code
    inlined = st.inlined
    last_origin = None
    for n in order:
        opdef = REGISTRY[n.op]
        nid = id(n)
        if "leaf" in opdef.traits:
            code[nid] = printer.emit(n)
            refs[nid] = ()
            continue
        wanted = names.get(n)
        args = n.args
        if len(args) == 2:
            arg_refs = refs[id(args[0])] + refs[id(args[1])]
        elif len(args) == 1:
            arg_refs = refs[id(args[0])]
        else:
            arg_refs = tuple(name for a in args for name in refs[id(a)])
        if opdef.stmt is not None:
            st.read(arg_refs)
            target = namer.fresh(wanted or temp_name(n, names))
            stmts = printer.emit_stmt(n, target)
        else:
            text, prec = printer.emit(n)
            alias = _alias_of(n, text, printer)
            if alias is not None:
                code[nid] = code[id(alias)]
                refs[nid] = refs[id(alias)]
                st.share(code[nid][0], uses[nid] - 1)
                continue
            if len(text) > MAX_EXPR:
                text, prec, spilled = _shorten(n, text, prec, printer, namer, names)
                for arg, line in spilled:
                    aid = id(arg)
                    var = code[aid][0]
                    last_origin = _comment(stmts_out, arg, last_origin, derivative_label)
                    inlined.discard(aid)
                    st.read(refs[aid])
                    release = st.define(arg, var, uses[aid], refs[aid])
                    stmts_out.append(([line], arg.phase, refs[aid], release))
                    refs[aid] = (var,)
                if len(args) == 1:
                    arg_refs = refs[id(args[0])]
                else:
                    arg_refs = tuple(name for a in args for name in refs[id(a)])
            if wanted is None and uses[nid] <= 1:
                code[nid] = (text, prec)
                inlined.add(nid)
                refs[nid] = arg_refs
                continue
            st.read(arg_refs)
            target = namer.fresh(wanted or temp_name(n, names))
            stmts = st.in_place(n, target, refs, arg_refs) or \
                [f"{target} = {text}{_shape_comment(n)}"]
        release = st.define(n, target, uses[nid], arg_refs)
        refs[nid] = (target,)
        if n.origin is not last_origin:
            last_origin = _comment(stmts_out, n, last_origin, derivative_label)
        stmts_out.append((stmts, n.phase, arg_refs, release))
    returned = frozenset(name for o in outputs for name in refs[id(o)])
    return _with_releases(stmts_out, returned | keep)


def _dependencies(order: list[Node]) -> dict[int, frozenset]:
    """The arguments (input names) each node's value depends on: its dtype is theirs,
    promoted (constants are Python scalars, which never change a dtype). A node's answer
    never changes, so one table serves every function of a compilation."""
    deps: dict[int, frozenset] = (ir._current[-1].memo.setdefault("dependencies", {})
                                  if ir._current else {})
    empty: frozenset = frozenset()
    for n in order:
        nid = id(n)
        if nid in deps:
            continue
        if n.op == "input":
            deps[nid] = frozenset({n.attr("name")})
            continue
        d = empty
        for a in n.args:
            da = deps[id(a)]
            if da is not d and not da <= d:
                d = da if d is empty else d | da
        deps[nid] = d
    return deps


_AUGMENTED = {"add": "+=", "subtract": "-=", "multiply": "*=", "divide": "/=", "power": "**="}


class _State:
    """Which variables exist, which are still needed, and which nodes were inlined."""

    def __init__(self, printer: Printer, namer: Namer, names: dict, keep: frozenset, deps):
        self.p = printer
        self.namer = namer
        self.names = names
        self.keep = keep
        self.deps = deps
        self.ufunc = {op: d.ufunc for op, d in REGISTRY.items() if d.ufunc}
        self.inlined: set[int] = set()
        self.weak_memo: dict | None = None   # the memo of autodiff.common.weak, once it exists
        self.var_node: dict[str, Node] = {}
        self.remaining: dict[str, int] = {}   # variable -> references not printed yet
        # variable -> its node, for the arrays a statement may overwrite once they are dead
        # (not an argument, not a view, not of a weak dtype)
        self.buffers: dict[str, Node] = {}
        self.view_bases: dict[str, set] = {}  # view variable -> variables it may alias
        self.views_of: dict[str, dict] = {}   # variable -> the view variables that may alias
        #                                       it (the inverse of view_bases; dicts as
        #                                       ordered sets)

    def define(self, n: Node, name: str, uses: int, reads=()) -> str | None:
        """`name` now holds `n`, which `uses` consumers will read; `reads` are the variables
        its statement read (a view keeps their buffers alive while it is needed).
        Returns `name` when a `del` may release it (an array that is no view), else None."""
        self.p.code[id(n)] = (name, PREC_ATOM)   # p.set_name(n, name)
        self.var_node.setdefault(name, n)
        remaining = self.remaining
        remaining[name] = remaining.get(name, 0) + uses
        if self.view_bases:
            old = self.view_bases.pop(name, None)
            if old is not None:
                for b in old:
                    self.views_of[b].pop(name, None)
        if _is_view(n):
            bases = set(reads)
            for r in reads:
                bases |= self.view_bases.get(r, set())
            self.view_bases[name] = bases
            for b in bases:
                self.views_of.setdefault(b, {})[name] = None
            return None
        if not n.shape:
            return None
        if name not in self.keep and not self.weak(n):
            self.buffers[name] = n
        return name

    def share(self, name: str, uses: int) -> None:
        """`uses` more consumers read variable `name` (through a node printed as it)."""
        if name in self.var_node:
            self.remaining[name] += uses

    def weak(self, n: Node) -> bool:
        """`_weak(n)`, looked up first in its per-compilation memo."""
        memo = self.weak_memo
        if memo is None:
            memo = self.weak_memo = ir.builder().memo.get("weak") if ir._current else None
        w = memo.get(id(n)) if memo is not None else None
        return _weak(n) if w is None else w

    def read(self, refs: tuple) -> None:
        """A statement is printed that reads these variables (an entry per reference)."""
        remaining = self.remaining
        for name in refs:
            remaining[name] -= 1

    def in_place(self, n: Node, target: str, refs: dict, stmt_refs: tuple,
                 ) -> list[str] | None:
        """Statements computing `n` into one buffer, or None when that would not help."""
        shape = n.shape
        ufunc = self.ufunc
        if not shape or n.op not in ufunc:
            return None
        inlined = self.inlined
        spine = [n]
        bottom = n
        while True:
            for a in bottom.args:
                if id(a) in inlined and a.op in ufunc and a.shape == shape:
                    spine.append(a)
                    bottom = a
                    break
            else:
                break
        # Only a variable that no later step of this statement reads may be overwritten.
        buf = self._dead_buffer(
            bottom, shape,
            lambda name: sum(refs[id(a)].count(name) for a in bottom.args)
            == stmt_refs.count(name))
        if buf is None and len(spine) < 2:
            return None
        alloc = self.var_node[buf] if buf else bottom
        deps = self.deps
        alloc_deps = deps[id(alloc)]
        for s in spine:
            if not deps[id(s)] <= alloc_deps:
                return None
        if buf is None and self.weak(alloc):   # a buffer is never weak (see `buffers`)
            return None
        p = self.p
        if buf:
            args = ", ".join(p.arg(bottom, j, 0) for j in range(len(bottom.args)))
            lines = [f"{target} = {self._ufunc(bottom)}({args}, out={buf})"]
        else:
            lines = [f"{target} = {p.code[id(bottom)][0]}"]
        lines[0] += _shape_comment(n)
        child = bottom
        for k in range(len(spine) - 2, -1, -1):   # the steps, bottom-up
            s = spine[k]
            i = s.args.index(child)
            if len(s.args) == 2:
                lines += self._operand_in_place(s, 1 - i, spine[:k], refs)
            lines.append(self._step(s, i, target))
            child = s
        return lines

    def _operand_in_place(self, s: Node, j: int, later: list, refs: dict) -> list[str]:
        """Compute the other operand of step `s` (like `1 - Z`) into the buffer of a variable
        that dies here, so the step allocates nothing: `Z_diff = np.subtract(1, Z, out=Z)`."""
        o = s.args[j]
        if id(o) not in self.inlined or o.op not in self.ufunc or o.shape != s.shape:
            return []
        buf = self._dead_buffer(
            o, s.shape,
            lambda name: not any(name in refs[id(a)] for t in later for a in t.args))
        if buf is None:
            return []
        p = self.p
        name = self.namer.fresh(temp_name(o, self.names))
        args = ", ".join(p.arg(o, m, 0) for m in range(len(o.args)))
        p.code[id(o)] = (name, PREC_ATOM)
        return [f"{name} = {self._ufunc(o)}({args}, out={buf})"]

    def _dead_buffer(self, bottom: Node, shape: tuple, unread_later) -> str | None:
        """A variable read by `bottom`, of this shape, that nothing reads later and that may
        be overwritten; `unread_later(name)` says whether the rest of the statement does
        not read it."""
        inlined, code, buffers, remaining = self.inlined, self.p.code, self.buffers, \
            self.remaining
        for a in bottom.args:
            if id(a) in inlined or a.op == "const":
                continue
            name = code[id(a)][0]
            owner = buffers.get(name)
            if owner is None or owner.shape != shape or remaining[name] > 0:
                continue
            views = self.views_of.get(name)
            if views and any(remaining[w] > 0 for w in views):
                continue
            deps = self.deps
            owner_deps = deps[id(owner)]
            if any(not deps[id(b)] <= owner_deps for b in bottom.args):
                continue
            if unread_later(name) and (not views or all(unread_later(w) for w in views)):
                return name
        return None

    def _step(self, s: Node, i: int, target: str) -> str:
        """`s` computed in place, where its argument `i` is already in `target`."""
        p, uf = self.p, self.ufunc[s.op]
        if len(s.args) == 1:
            return f"{self._ufunc(s)}({target}, out={target})"
        j = 1 - i
        other = s.args[j]
        if uf == "multiply" and other.is_const:
            num, den = other.value.as_numer_denom()
            if num == 1 and den != 1:
                text, prec = p.scalar(den)
                return f"{target} /= {text}"
        if uf in _AUGMENTED and (i == 0 or uf in ("add", "multiply")):
            return f"{target} {_AUGMENTED[uf]} {p.arg(s, j, 0)}"
        args = ", ".join(target if k == i else p.arg(s, k, 0) for k in range(2))
        return f"{self._ufunc(s)}({args}, out={target})"

    def _ufunc(self, n: Node) -> str:
        """The in-place capable function of `n`: a NumPy ufunc, or a private helper of the
        module (names starting with `_`) that takes `out=` the same way."""
        uf = self.ufunc[n.op]
        return uf if uf.startswith("_") else f"{self.p.ns}.{uf}"


def _with_releases(stmts: list[tuple], keep: frozenset) -> Body:
    """Insert `del` after the last statement reading each array temporary."""
    last_read = {name: i for i, st in enumerate(stmts) for name in st[2]}
    releasable = {st[3] for st in stmts}
    final = len(stmts) - 1
    dead_after: dict[int, list[str]] = {}
    for name, i in last_read.items():
        if i < final and name in releasable and name not in keep:
            dead_after.setdefault(i, []).append(name)
    lines: list[str] = []
    phases: list[str] = []
    for i, (stmt_lines, phase, _, _) in enumerate(stmts):
        lines += stmt_lines
        phases += [phase] * len(stmt_lines)
        dead = dead_after.get(i)
        if dead is not None:
            lines.append("del " + ", ".join(sorted(dead)))
            phases.append(phase)
    return Body(lines, phases)


def _is_view(n: Node) -> bool:
    """Whether `n` may share memory with another array (so `del` frees nothing)."""
    traits = REGISTRY[n.op].traits
    while "transparent" in traits:
        n = n.args[0]
        traits = REGISTRY[n.op].traits
    return "shape" in traits or "leaf" in traits


def _alias_of(n: Node, text: str, printer: Printer):
    """The argument whose variable `n` prints as (identity ops such as stop_gradient)."""
    for a in n.args:
        code, prec = printer.code[id(a)]
        if code == text and prec == PREC_ATOM:
            return a
    return None


def _shorten(n, text, prec, printer, namer, names):
    """Spill the longest inlined arguments into statements until the line is short."""
    spilled = []
    while len(text) > MAX_EXPR:
        candidates = [a for a in n.args if printer.code[id(a)][1] < PREC_ATOM
                      or len(printer.code[id(a)][0]) > 12]
        candidates = [a for a in candidates if not REGISTRY[a.op].has("leaf")]
        if not candidates:
            break
        a = max(candidates, key=lambda a: len(printer.code[id(a)][0]))
        name = namer.fresh(temp_name(a, names))
        spilled.append((a, f"{name} = {printer.code[id(a)][0]}{_shape_comment(a)}"))
        printer.set_name(a, name)
        text, prec = printer.emit(n)
    return text, prec, spilled


def temp_name(n: Node, names: dict, depth: int = 3) -> str:
    """A name for a temporary: its op, after the source variable it is computed from
    (`U_max`, `U_exp`); ops that pass their argument through take the argument's name."""
    while REGISTRY[n.op].has("transparent") and n.args:
        n = n.args[0]
    base = REGISTRY[n.op].hint or n.op
    a = n
    for _ in range(depth):
        if not a.args:
            break
        a = next((x for x in a.args if not x.is_const), a.args[0])
        if a in names or a.op == "input":
            return f"{names.get(a) or a.attr('name')}_{base}"
    return base


def _shape_comment(n: Node) -> str:
    if not n.shape:
        return ""
    text = _SHAPE_COMMENTS.get(n.shape)
    if text is None:
        if len(_SHAPE_COMMENTS) > 4096:
            _SHAPE_COMMENTS.clear()
        text = _SHAPE_COMMENTS[n.shape] = f"  # {fmt_shape(n.shape)}"
    return text


_SHAPE_COMMENTS: dict[tuple, str] = {}   # shape -> its comment (dimensions print alike
#                                          wherever they are used)


def _comment(stmts: list[tuple], n: Node, last_origin, label: str):
    """Before the first backward statement of each source line, say what it differentiates."""
    if n.phase != "backward" or n.origin is None or n.origin == last_origin:
        return last_origin
    stmts.append(([f"# {label} of line {n.origin.line}: {n.origin.text}"], "backward", (), None))
    return n.origin
