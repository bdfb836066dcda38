"""The dtype analysis, in one place: which arguments a node's dtype comes from.

A value's dtype is that of the function arguments it depends on, promoted: constants are
Python scalars (weakly typed), which never change a dtype. So a node whose numbers come
from constants only is *weak*: NumPy would give it an integer or default dtype, not the
arguments' (a derivative rule then casts it, the scheduler never reuses its buffer).
Every answer is a memoised bottom-up analysis of the IR (`ir.analysis`).

Dtypes of nodes (`Node.dtype`): "float" (the computation's floating-point dtype, that of
its float arguments), "bool" (comparisons), "int" (Index values: `Index[...]`/`int`
arguments, `arange`, and integer arithmetic of them), "tuple" (a loop). An op whose
dtype follows its arguments' names one of the rules below as its `dtype`. An integer
value never meets a float one in an op: the frontend converts it first (`to_float`),
since NumPy would promote int64 with float32 to float64.
"""

from __future__ import annotations

from collections.abc import Callable

from ..ir import Node, analysis, builder, memoised

__all__ = ["INT", "carried_dtype_sources", "dtype_sources", "input_dtype", "input_names",
           "input_names_of", "integer_closed", "integral", "like_first", "weak", "weak_of"]

INT = "int"


def input_dtype(args, attrs) -> str:
    """An argument: integers for the role "index" (`Index[...]`, `int`), else floats (or
    the `dtype` a loop body's input is given)."""
    if attrs.get("dtype") is not None:
        return attrs["dtype"]
    return INT if attrs["role"] == "index" else "float"


def integral(n) -> bool:
    """An integer value: an Index value or an integer constant (a dimension size)."""
    if n.is_const:
        v = n.value
        return bool(getattr(v, "is_integer", False))
    return n.dtype == INT


def integer_closed(args, attrs) -> str:
    """`+ - * // %` and negation: integers when every argument is (an Index value or an
    integer constant) and one is an Index value, else floats."""
    for a in args:   # (a loop, not any(): every sum and product made comes here)
        if a.dtype == INT:
            return INT if all(integral(a) for a in args) else "float"
    return "float"


def like_first(args, attrs) -> str:
    """Shape operations and gathers: the dtype of the array they rearrange (integers stay
    integers; a rearranged comparison counts as numbers, as before)."""
    return INT if args[0].dtype == INT else "float"


def dtype_sources(node: Node) -> tuple[Node, ...]:
    """The float inputs that `node`'s value depends on, in the order they were created: its
    dtype is theirs, promoted (Index inputs are left out: their integers are converted)."""
    return analysis("dtype_sources", node, _sources_rule)


def carried_dtype_sources(src: dict, carried, outputs) -> dict:
    """The dtype sources of a loop body's inputs, to a fixed point: `src` maps the id of
    each body input to its sources so far (those of the loop's argument for it); a carried
    value's grow by those of its next value in `outputs`, a body input's standing for its
    own. Updated in place and returned."""
    def of(v: Node) -> frozenset:
        out: frozenset = frozenset()
        for y in dtype_sources(v):
            out |= src.get(id(y), frozenset((y,)))
        return out
    grow = True
    while grow:
        grow = False
        for x, o in zip(carried, outputs):
            new = src[id(x)] | of(o)
            if new != src[id(x)]:
                src[id(x)], grow = new, True
    return src


def _sources_rule(n: Node, args: list) -> tuple:
    if n.is_input:   # an Index argument gives no float dtype (int64 would promote float32)
        return (n,) if n.dtype != INT else ()
    if len(args) <= 1:
        return args[0] if args else ()
    # Each argument's tuple is sorted already: when one holds all the others' sources (the
    # usual case: they are equal, or some are empty), it is the answer, with no sort.
    longest = max(args, key=len)
    if all(s is longest or all(x in longest for x in s) for s in args):
        return longest
    found: dict = {}
    for sources in args:
        found.update(dict.fromkeys(sources))
    return tuple(sorted(found, key=lambda x: x.serial))


def input_names(node: Node) -> frozenset[str]:
    """The names of the inputs `node` depends on (`dtype_sources`, as a set of names)."""
    return analysis("input_names", node, _names_rule)


def input_names_of() -> Callable[[Node], frozenset[str]]:
    """`input_names` with this compilation's memo looked up once (`ir.memoised`)."""
    return memoised("input_names", _names_rule)


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
    memo = _weak_memo()
    value = memo.get(node)
    return value if value is not None else _weak_walk(node, memo)


def weak_of() -> Callable[[Node], bool]:
    """`weak` with this compilation's memo looked up once."""
    memo = _weak_memo()
    get = memo.get

    def value(node: Node) -> bool:
        v = get(node)
        return v if v is not None else _weak_walk(node, memo)
    return value


def _weak_memo() -> dict:
    """The compilation's memo of `weak` (node -> bool), that of `ir.analysis("weak")`."""
    memos = builder().memo
    memo = memos.get("weak")
    if memo is None:
        memo = memos["weak"] = {}
    return memo


def _weak_walk(node: Node, memo: dict) -> bool:
    """`weak(node)`, worked out down to the known answers: a node is weak when every
    argument that is not boolean is (`_weak_rule`), so the first argument known not to be
    settles it and the others are not walked (a cotangent `g * y` is not weak because `g`
    is not: `y`, a forward value, need not be looked at). Iterative, for deep graphs."""
    stack = [node]
    push, pop, get = stack.append, stack.pop, memo.get
    while stack:
        n = stack[-1]
        if n in memo:   # (pushed twice: reached again through another path)
            pop()
            continue
        if n.is_input:
            value = False
        elif n.is_const or n.dtype == "bool":
            value = True
        else:
            value, unknown = True, None
            for a in n.args:
                if a.dtype == "bool":
                    continue
                w = get(a)
                if w is None:
                    if unknown is None:
                        unknown = a
                elif not w:
                    value = False
                    break
            if value and unknown is not None:
                push(unknown)
                continue
        memo[n] = value
        pop()
    return memo[node]


def _weak_rule(n: Node, args: list) -> bool:
    """The rule of `weak` as a bottom-up analysis (the specification `_weak_walk` follows)."""
    if n.is_input:
        return False
    if n.is_const or n.dtype == "bool":
        return True
    for a, w in zip(n.args, args):
        if not w and a.dtype != "bool":
            return False
    return True
