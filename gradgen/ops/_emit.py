"""Small emission helpers shared by the op families (printing only, no semantics)."""

from __future__ import annotations

from .registry import PREC_CALL, PREC_LOWEST


def infix(sym: str, prec: int, right_strict: bool = True, left_strict: bool = False):
    """Emit `a SYM b` with Python precedence `prec`."""
    def emit(p, node):
        left = p.arg(node, 0, prec + 1 if left_strict else prec)
        right = p.arg(node, 1, prec + 1 if right_strict else prec)
        return f"{left} {sym} {right}", prec
    return emit


def call(fn: str, *, ns: bool = True, kwargs=None):
    """Emit `np.fn(args..., key=value)`; `kwargs(p, node)` returns extra `key=value` strings."""
    def emit(p, node):
        args = [p.arg(node, i, PREC_LOWEST) for i in range(len(node.args))]
        if kwargs is not None:
            args += kwargs(p, node)
        name = f"{p.ns}.{fn}" if ns else p.ref(fn)
        return f"{name}({', '.join(args)})", PREC_CALL
    return emit


def axis_kwargs(p, node) -> list[str]:
    """`axis=...` and `keepdims=True` of a reduction, omitted when they are the defaults."""
    axes, keepdims = node.attr("axes"), node.attr("keepdims")
    out = []
    if axes != tuple(range(node.args[0].ndim)):
        out.append(f"axis={p.axes(axes)}")
    if keepdims:
        out.append("keepdims=True")
    return out


def reduction(fn: str):
    """Emit a reduction as the array method `x.sum(axis=1)`, which skips NumPy's function
    dispatch (a few microseconds a call), or as `np.sum(x, ...)` when `x` is an argument
    of the generated function (which may be a list or a Python number)."""
    as_function = call(fn, kwargs=axis_kwargs)

    def emit(p, node):
        if node.args[0].op == "input":
            return as_function(p, node)
        kwargs = ", ".join(axis_kwargs(p, node))
        return f"{p.arg(node, 0, PREC_CALL)}.{fn}({kwargs})", PREC_CALL
    return emit
