"""Small emission helpers shared by the op families (printing only, no semantics).

They build code through the printer's methods (`p.call`, `p.reduction`, ...), never by
spelling a library's names, so every target's printer can print them."""

from __future__ import annotations

from ..dims import power_code
from ..ir import memo
from .registry import PREC_CALL, PREC_LOWEST


def unit_fraction(c) -> tuple | None:
    """(num, q) when the scalar constant node `c` is num/q with num 1 or -1 and q not 1
    (`c * x` is then printed `x / q` or `-x / q`), else None. Looked up once per constant
    node in a compilation: sympy's comparisons are Python calls, and the printer and the
    scheduler ask for every product with a constant they print."""
    found = memo().get(UNIT_FRACTIONS)
    if found is None:
        found = memo().setdefault(UNIT_FRACTIONS, {})
    u = found.get(c, False)
    if u is False:
        num, den = c.value.as_numer_denom()
        u = found[c] = (num, den) if den != 1 and num in (1, -1) else None
    return u


UNIT_FRACTIONS = "unit fractions"   # the builder's memo key of `unit_fraction`


def infix(sym: str, prec: int, right_strict: bool = True, left_strict: bool = False):
    """Emit `a SYM b` with Python precedence `prec`."""
    def emit(p, node):
        left = p.arg(node, 0, prec + 1 if left_strict else prec)
        right = p.arg(node, 1, prec + 1 if right_strict else prec)
        if sym == "**":
            return power_code(left, right), prec
        return f"{left} {sym} {right}", prec
    return emit


def call(fn: str, *, kwargs=None):
    """Emit the library function `fn(args..., key=value)` (`np.fn` for NumPy), or the
    module's private helper when `fn` starts with `_`; `kwargs(p, node)` returns extra
    `key=value` strings."""
    def emit(p, node):
        args = p.args(node, PREC_LOWEST)
        extra = kwargs(p, node) if kwargs is not None else ()
        if fn.startswith("_"):
            return p.helper(fn, args, extra), PREC_CALL
        return p.call(fn, args, extra), PREC_CALL
    return emit


# ---------------------------------------------------------------- names of temporaries
# `OpDef.hint` functions: (node, the source names of its arguments, None for unnamed) ->
# a name for the node's temporary, or None for the default (`<source>_<op>`).

def scaled_hint(node, labels) -> str | None:
    """`Q_scaled` for a named value times or divided by a scalar constant."""
    args = node.args
    if len(args) == 2 and args[0].is_const and labels[1]:
        return f"{labels[1]}_scaled"
    if len(args) == 2 and args[1].is_const and labels[0]:
        return f"{labels[0]}_scaled"
    return None


def product_hint(node, labels) -> str | None:
    """`XV` for `X @ V` (`Z_W` when a name is longer than two characters)."""
    a, b = labels
    if not (a and b):
        return None
    return a + b if len(a) <= 2 and len(b) <= 2 else f"{a}_{b}"


def axis_kwargs(p, node) -> list[str]:
    """`axis=...` and `keepdims=True` of a reduction, omitted when they are the defaults
    (but the axes kept are always named: NumPy's type stubs give `np.sum(x, keepdims=True)`
    the type of a scalar or an array, `np.sum(x, axis=(0, 1), keepdims=True)` none)."""
    axes, keepdims = node.attr("axes"), node.attr("keepdims")
    out = []
    if axes != tuple(range(node.args[0].ndim)) or keepdims:
        out.append(f"axis={p.axes(axes)}")
    if keepdims:
        out.append("keepdims=True")
    return out


def reduction(fn: str):
    """Emit the reduction `fn` (sum, max, ...) as the printer spells it (NumPy: the array
    method `x.sum(axis=1)`, or `np.sum(x, ...)` of a function argument)."""
    def emit(p, node):
        return p.reduction(fn, node, axis_kwargs(p, node)), PREC_CALL
    return emit
