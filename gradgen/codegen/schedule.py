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

from ..ir import Node, topo_order
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
             derivative_label: str = "grad", keep: frozenset = frozenset()) -> Body:
    """Statements computing `outputs`; `names` gives preferred names for some nodes.

    After the statement that reads an array temporary for the last time, a `del` releases
    it (as careful hand-written code does), so peak memory stays low; `keep` names
    variables never to release (the function's arguments).
    """
    order = topo_order(outputs)
    uses: Counter = Counter()
    for n in order:
        for a in n.args:
            uses[id(a)] += 1
    for o in outputs:
        uses[id(o)] += 1
    stmts_out: list[_Stmt] = []
    reads: dict[int, frozenset] = {}     # node -> variable names its printed code reads
    last_origin = None
    for n in order:
        opdef = REGISTRY[n.op]
        if opdef.has("leaf"):
            printer.code[id(n)] = printer.emit(n)
            reads[id(n)] = frozenset({printer.code[id(n)][0]}) if n.op == "input" else \
                frozenset()
            continue
        wanted = names.get(n)
        arg_reads = frozenset().union(*(reads[id(a)] for a in n.args))
        if opdef.stmt is not None:
            target = namer.fresh(wanted or temp_name(n, names))
            stmts = printer.emit_stmt(n, target)
            printer.set_name(n, target)
        else:
            text, prec = printer.emit(n)
            alias = _alias_of(n, text, printer)
            if alias is not None:
                printer.code[id(n)] = printer.code[id(alias)]
                reads[id(n)] = reads[id(alias)]
                continue
            text, prec, spilled = _shorten(n, text, prec, printer, namer, names)
            for arg, line in spilled:
                last_origin = _comment(stmts_out, arg, last_origin, derivative_label)
                stmts_out.append(_Stmt([line], arg.phase, reads[id(arg)],
                                       printer.code[id(arg)][0], arg))
                reads[id(arg)] = frozenset({printer.code[id(arg)][0]})
            arg_reads = frozenset().union(*(reads[id(a)] for a in n.args))
            if wanted is None and uses[id(n)] <= 1:
                printer.code[id(n)] = (text, prec)
                reads[id(n)] = arg_reads
                continue
            target = namer.fresh(wanted or temp_name(n, names))
            stmts = [f"{target} = {text}{_shape_comment(n)}"]
            printer.set_name(n, target)
        reads[id(n)] = frozenset({target})
        last_origin = _comment(stmts_out, n, last_origin, derivative_label)
        stmts_out.append(_Stmt(stmts, n.phase, arg_reads, target, n))
    returned = frozenset().union(*(reads[id(o)] for o in outputs))
    return _with_releases(stmts_out, returned | keep)


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
        if st.node is not None and st.node.ndim and not _is_view(st.node):
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
    while REGISTRY[n.op].has("transparent"):
        n = n.args[0]
    return REGISTRY[n.op].has("shape") or REGISTRY[n.op].has("leaf")


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
        if a in names and a.op != "input" or a.op == "input" and a.attr("role") in ("param",
                                                                                     "data"):
            return f"{names.get(a) or a.attr('name')}_{base}"
    return base


def _shape_comment(n: Node) -> str:
    return f"  # {fmt_shape(n.shape)}" if n.ndim else ""


def _comment(stmts: list[_Stmt], n: Node, last_origin, label: str):
    """Before the first backward statement of each source line, say what it differentiates."""
    if n.phase != "backward" or n.origin is None or n.origin == last_origin:
        return last_origin
    stmts.append(_Stmt([f"# {label} of line {n.origin.line}: {n.origin.text}"], "backward",
                       frozenset()))
    return n.origin
