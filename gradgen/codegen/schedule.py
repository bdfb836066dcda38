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
             derivative_label: str = "grad") -> Body:
    """Statements computing `outputs`; `names` gives preferred names for some nodes."""
    order = topo_order(outputs)
    uses: Counter = Counter()
    for n in order:
        for a in n.args:
            uses[id(a)] += 1
    for o in outputs:
        uses[id(o)] += 1
    lines: list[str] = []
    phases: list[str] = []
    last_origin = None
    for n in order:
        opdef = REGISTRY[n.op]
        if opdef.has("leaf"):
            printer.code[id(n)] = printer.emit(n)
            continue
        wanted = names.get(n)
        if opdef.stmt is not None:
            target = namer.fresh(wanted or temp_name(n, names))
            stmts = printer.emit_stmt(n, target)
            printer.set_name(n, target)
        else:
            text, prec = printer.emit(n)
            alias = _alias_of(n, text, printer)
            if alias is not None:
                printer.code[id(n)] = printer.code[id(alias)]
                continue
            text, prec, spilled = _shorten(n, text, prec, printer, namer, names)
            for arg, line in spilled:
                last_origin = _comment(lines, phases, arg, last_origin, derivative_label)
                lines.append(line)
                phases.append(arg.phase)
            if wanted is None and uses[id(n)] <= 1:
                printer.code[id(n)] = (text, prec)
                continue
            target = namer.fresh(wanted or temp_name(n, names))
            stmts = [f"{target} = {text}{_shape_comment(n)}"]
            printer.set_name(n, target)
        last_origin = _comment(lines, phases, n, last_origin, derivative_label)
        lines.extend(stmts)
        phases.extend([n.phase] * len(stmts))
    return Body(lines, phases)


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


def _comment(lines, phases, n: Node, last_origin, label: str):
    """Before the first backward statement of each source line, say what it differentiates."""
    if n.phase != "backward" or n.origin is None or n.origin == last_origin:
        return last_origin
    lines.append(f"# {label} of line {n.origin.line}: {n.origin.text}")
    phases.append("backward")
    return n.origin
