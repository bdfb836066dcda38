"""The dtype analysis, in one place: which arguments a node's dtype comes from.

A value's dtype is that of the function arguments it depends on, promoted: constants are
Python scalars (weakly typed), which never change a dtype. So a node whose numbers come
from constants only is *weak*: NumPy would give it an integer or default dtype, not the
arguments' (a derivative rule then casts it, the scheduler never reuses its buffer).
Every answer is a memoised bottom-up analysis of the IR (`ir.analysis`).
"""

from __future__ import annotations

from ..ir import Node, analysis

__all__ = ["dtype_sources", "input_names", "weak"]


def dtype_sources(node: Node) -> tuple[Node, ...]:
    """The inputs that `node`'s value depends on, in the order they were created: its
    dtype is theirs, promoted."""
    return analysis("dtype_sources", node, _sources_rule)


def _sources_rule(n: Node, args: list) -> tuple:
    if n.is_input:
        return (n,)
    if len(args) == 1:
        return args[0]
    found: dict = {}
    for sources in args:
        found.update(dict.fromkeys(sources))
    return tuple(sorted(found, key=lambda x: x.serial))


def input_names(node: Node) -> frozenset[str]:
    """The names of the inputs `node` depends on (`dtype_sources`, as a set of names)."""
    return analysis("input_names", node, _names_rule)


def _names_rule(n: Node, args: list) -> frozenset:
    if n.is_input:
        return frozenset((n.attr("name"),))
    out: frozenset = frozenset()
    for names in args:
        if names is not out and not names <= out:
            out = names if not out else out | names
    return out


def weak(node: Node) -> bool:
    """True when `node`'s numbers come from constants only."""
    return analysis("weak", node, _weak_rule)


def _weak_rule(n: Node, args: list) -> bool:
    if n.is_input:
        return False
    if n.is_const or n.dtype == "bool":
        return True
    for a, w in zip(n.args, args):
        if not w and a.dtype != "bool":
            return False
    return True
