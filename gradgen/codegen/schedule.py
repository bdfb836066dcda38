"""Statement order and naming: turn the nodes a function needs into Python statements.

Nodes are printed in topological order (depth-first from the outputs, so the forward
pass comes first and each backward statement sits next to its use). A node becomes a
statement when the source named it, when it has a derived name (`dZ`), when several
consumers use it, or when inlining it would make a line too long; otherwise it is
inlined into its one consumer.
"""

from __future__ import annotations

from collections import Counter
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
    stmts_out: list[_Stmt] = []
    reads: dict[int, frozenset] = {}     # node -> variable names its printed code reads
    refs: dict[int, dict] = {}           # node -> how often its printed code reads each one
    code = printer.code
    inlined = st.inlined
    last_origin = None
    empty: frozenset = frozenset()
    for n in order:
        opdef = REGISTRY[n.op]
        nid = id(n)
        if "leaf" in opdef.traits:
            code[nid] = printer.emit(n)
            reads[nid] = frozenset({code[nid][0]}) if n.op == "input" else empty
            refs[nid] = {}
            continue
        wanted = names.get(n)
        args = n.args
        if opdef.stmt is not None:
            arg_refs = _merge([refs[id(a)] for a in args])
            st.read(arg_refs)
            target = namer.fresh(wanted or temp_name(n, names))
            stmts = printer.emit_stmt(n, target)
            st.define(n, target, uses[nid], arg_refs)
        else:
            text, prec = printer.emit(n)
            alias = _alias_of(n, text, printer)
            if alias is not None:
                code[nid] = code[id(alias)]
                reads[nid] = reads[id(alias)]
                refs[nid] = refs[id(alias)]
                st.remaining[code[id(alias)][0]] += uses[nid] - 1
                continue
            if len(text) > MAX_EXPR:
                text, prec, spilled = _shorten(n, text, prec, printer, namer, names)
                for arg, line in spilled:
                    last_origin = _comment(stmts_out, arg, last_origin, derivative_label)
                    stmts_out.append(_Stmt([line], arg.phase, reads[id(arg)],
                                           code[id(arg)][0], arg))
                    inlined.discard(id(arg))
                    st.read(refs[id(arg)])
                    st.define(arg, code[id(arg)][0], uses[id(arg)], refs[id(arg)])
                    reads[id(arg)] = frozenset({code[id(arg)][0]})
                    refs[id(arg)] = {code[id(arg)][0]: 1}
            arg_reads = _union([reads[id(a)] for a in args])
            arg_refs = _merge([refs[id(a)] for a in args])
            if wanted is None and uses[nid] <= 1:
                code[nid] = (text, prec)
                inlined.add(nid)
                reads[nid] = arg_reads
                refs[nid] = arg_refs
                continue
            st.read(arg_refs)
            target = namer.fresh(wanted or temp_name(n, names))
            stmts = st.in_place(n, target, refs, arg_refs) or \
                [f"{target} = {text}{_shape_comment(n)}"]
            st.define(n, target, uses[nid], arg_refs)
            stmts_out_reads = arg_reads
        if opdef.stmt is not None:
            stmts_out_reads = _union([reads[id(a)] for a in args])
        var = code[nid][0]
        reads[nid] = frozenset({var})
        refs[nid] = {var: 1}
        if n.origin is not last_origin:
            last_origin = _comment(stmts_out, n, last_origin, derivative_label)
        stmts_out.append(_Stmt(stmts, n.phase, stmts_out_reads, var, n))
    returned = frozenset().union(*(reads[id(o)] for o in outputs))
    return _with_releases(stmts_out, returned | keep)


_EMPTY: frozenset = frozenset()


def _union(sets: list) -> frozenset:
    """The union of frozensets (one of them itself when the others add nothing)."""
    out = None
    for s in sets:
        if not s or s is out:
            continue
        out = s if out is None else out | s
    return _EMPTY if out is None else out


def _merge(counts) -> dict:
    """The sum of several {name: count} tables (plain dicts: Counter addition is slow).
    The result is a new dict, except for one table that is returned as it is (tables are
    never changed once made)."""
    out = None
    shared = True
    for c in counts:
        if not c:
            continue
        if out is None:
            out = c
            continue
        if shared:
            out, shared = dict(out), False
        for k, v in c.items():
            out[k] = out.get(k, 0) + v
    return {} if out is None else out


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
        self.inlined: set[int] = set()
        self.weak_memo: dict | None = None   # the memo of autodiff.common.weak, once it exists
        self.var_node: dict[str, Node] = {}
        self.remaining: Counter = Counter()   # variable -> consumers not yet printed
        self.view_bases: dict[str, set] = {}  # view variable -> variables it may alias
        self.views_of: dict[str, dict] = {}   # variable -> the view variables that may alias
        #                                       it (the inverse of view_bases; dicts as
        #                                       ordered sets)

    def define(self, n: Node, name: str, uses: int, reads=()) -> None:
        """`name` now holds `n`, which `uses` consumers will read; `reads` are the variables
        its statement read (a view keeps their buffers alive while it is needed)."""
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

    def weak(self, n: Node) -> bool:
        """`_weak(n)`, looked up first in its per-compilation memo."""
        memo = self.weak_memo
        if memo is None:
            memo = self.weak_memo = ir.builder().memo.get("weak") if ir._current else None
        w = memo.get(id(n)) if memo is not None else None
        return _weak(n) if w is None else w

    def read(self, refs: Counter) -> None:
        """A statement is printed that reads these variables (so many times each)."""
        var_node, remaining = self.var_node, self.remaining
        for name, k in refs.items():
            if name in var_node:
                remaining[name] = remaining.get(name, 0) - k

    def in_place(self, n: Node, target: str, refs: dict, stmt_refs: Counter,
                 ) -> list[str] | None:
        """Statements computing `n` into one buffer, or None when that would not help."""
        if not n.shape or not REGISTRY[n.op].ufunc:
            return None
        inlined = self.inlined
        shape = tuple(n.shape)
        spine = [n]
        while True:
            for a in spine[-1].args:
                if id(a) in inlined and REGISTRY[a.op].ufunc and tuple(a.shape) == shape:
                    spine.append(a)
                    break
            else:
                break
        bottom = spine[-1]
        # Only a variable that no later step of this statement reads may be overwritten.
        bottom_refs = None

        def only_bottom_reads(name):
            nonlocal bottom_refs
            if bottom_refs is None:
                bottom_refs = _merge([refs[id(a)] for a in bottom.args])
            return bottom_refs.get(name, 0) == stmt_refs.get(name, 0)

        buf = self._dead_buffer(bottom, n, only_bottom_reads)
        if buf is None and len(spine) < 2:
            return None
        alloc = self.var_node[buf] if buf else bottom
        deps = self.deps
        alloc_deps = deps[id(alloc)]
        for s in spine:
            if not deps[id(s)] <= alloc_deps:
                return None
        if self.weak(alloc):
            return None
        p = self.p
        if buf:
            args = ", ".join(p.arg(bottom, j, 0) for j in range(len(bottom.args)))
            lines = [f"{target} = {self._ufunc(bottom)}({args}, out={buf})"]
        else:
            lines = [f"{target} = {p.code[id(bottom)][0]}"]
        lines[0] += _shape_comment(n)
        child = bottom
        steps = list(reversed(spine[:-1]))
        for k, s in enumerate(steps):
            i = next(m for m, a in enumerate(s.args) if a is child)
            lines += self._operand_in_place(s, 1 - i, steps[k + 1:], refs) if len(s.args) == 2 \
                else []
            lines.append(self._step(s, i, target))
            child = s
        return lines

    def _operand_in_place(self, s: Node, j: int, later: list, refs: dict) -> list[str]:
        """Compute the other operand of step `s` (like `1 - Z`) into the buffer of a variable
        that dies here, so the step allocates nothing: `Z_diff = np.subtract(1, Z, out=Z)`."""
        o = s.args[j]
        if id(o) not in self.inlined or not REGISTRY[o.op].ufunc or \
                tuple(o.shape) != tuple(s.shape):
            return []
        later_refs = _merge([refs[id(a)] for t in later for a in t.args])
        buf = self._dead_buffer(o, s, lambda name: later_refs.get(name, 0) == 0)
        if buf is None:
            return []
        p = self.p
        name = self.namer.fresh(temp_name(o, self.names))
        args = ", ".join(p.arg(o, m, 0) for m in range(len(o.args)))
        p.code[id(o)] = (name, PREC_ATOM)
        return [f"{name} = {self._ufunc(o)}({args}, out={buf})"]

    def _dead_buffer(self, bottom: Node, n: Node, only_bottom_reads) -> str | None:
        """A variable read by `bottom` that nothing reads later and that may be overwritten."""
        # The conditions are independent tests; the cheap ones come first.
        remaining, deps = self.remaining, self.deps
        for a in bottom.args:
            if id(a) in self.inlined or a.op == "const":
                continue
            name = self.p.code[id(a)][0]
            owner = self.var_node.get(name)
            if (owner is not None and name not in self.keep
                    and tuple(owner.shape) == tuple(n.shape)
                    and all(remaining[w] <= 0 for w in self._aliases(name))
                    and not _is_view(owner) and not self.weak(owner)
                    and all(deps[id(b)] <= deps[id(owner)] for b in bottom.args)
                    and all(only_bottom_reads(w) for w in self._aliases(name))):
                return name
        return None

    def _aliases(self, name: str) -> list[str]:
        """`name` and the view variables that may share its buffer."""
        views = self.views_of.get(name)
        return [name, *views] if views else [name]

    def _step(self, s: Node, i: int, target: str) -> str:
        """`s` computed in place, where its argument `i` is already in `target`."""
        p, uf = self.p, REGISTRY[s.op].ufunc
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
        uf = REGISTRY[n.op].ufunc
        return uf if uf.startswith("_") else f"{self.p.ns}.{uf}"


@dataclass
class _Stmt:
    lines: list[str]
    phase: str
    reads: frozenset
    defines: str | None = None
    node: Node | None = None


def _with_releases(stmts: list[_Stmt], keep: frozenset) -> Body:
    """Insert `del` after the last statement reading each array temporary."""
    last_read: dict[str, int] = {}
    releasable: set[str] = set()
    for i, st in enumerate(stmts):
        for name in st.reads:
            last_read[name] = i
        node = st.node
        if node is not None and node.shape and not _is_view(node):
            releasable.add(st.defines)
    dead_after: dict[int, list[str]] = {}
    for name, i in last_read.items():
        if name in releasable and name not in keep and i < len(stmts) - 1:
            dead_after.setdefault(i, []).append(name)
    lines: list[str] = []
    phases: list[str] = []
    for i, st in enumerate(stmts):
        lines.extend(st.lines)
        phases.extend([st.phase] * len(st.lines))
        if i in dead_after:
            lines.append("del " + ", ".join(sorted(dead_after[i])))
            phases.append(st.phase)
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
    (`U_max`, `U_exp`); ops that pass their argument through take the argument's name, and
    so does a view of a computed value (`U_sum` for `U_exp.sum(axis=1)[:, None]`)."""
    while n.args and (REGISTRY[n.op].has("transparent") or REGISTRY[n.op].has("unit_axes")
                      and n.args[0].args):
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


def _comment(stmts: list[_Stmt], n: Node, last_origin, label: str):
    """Before the first backward statement of each source line, say what it differentiates."""
    if n.phase != "backward" or n.origin is None or n.origin == last_origin:
        return last_origin
    stmts.append(_Stmt([f"# {label} of line {n.origin.line}: {n.origin.text}"], "backward",
                       frozenset()))
    return n.origin
