"""Symbolic shapes: dimensions are sympy expressions of positive-integer symbols.

Dimensions with different names are different (SPEC §1): `N` never broadcasts against
`M`, and a symbolic dimension is never treated as 1.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence

import sympy

from .errors import InternalError, ShapeError

Dim = sympy.Expr
Shape = tuple  # tuple[Dim, ...]

ONE = sympy.Integer(1)


def dim_symbol(name: str) -> sympy.Symbol:
    """The symbol for a named dimension (a positive integer)."""
    return sympy.Symbol(name, integer=True, positive=True)


def as_expr(value: int | float | sympy.Basic) -> sympy.Expr:
    """A Python number or a sympy object as a sympy expression; anything else is refused.

    This replaces `sympy.sympify`, which parses (and so evaluates) strings: no text from a
    source may ever reach it, so only values that already are numbers get converted.
    """
    if isinstance(value, sympy.Basic):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return sympy.Integer(value)
    if isinstance(value, float):
        return sympy.Float(value)
    raise InternalError(f"expected a number or a sympy expression, got {type(value).__name__}")


@functools.lru_cache(maxsize=4096, typed=True)
def fmt_dim(d: Dim) -> str:
    """A dimension as Python source (`N`, `3`, `2 * D`)."""
    from .codegen.sympy_print import print_expr

    return print_expr(d)


def fmt_shape(shape: Sequence[Dim]) -> str:
    """A shape as Python source: `()`, `(3,)`, `(N, D)`."""
    inner = ", ".join(fmt_dim(d) for d in shape)
    return f"({inner},)" if len(shape) == 1 else f"({inner})"


def dims_equal(a: Dim, b: Dim) -> bool:
    """True when two dimensions are the same for every assignment of sizes."""
    return a == b or sympy.expand(a - b) == 0


def broadcast(*shapes: Shape) -> Shape:
    """NumPy broadcasting of symbolic shapes; raises ShapeError naming both shapes."""
    # Fast path: every shape is () or the same dimensions (the same objects) as the
    # others; the answer is then those dimensions, as the general loop below would give.
    first = None
    for s in shapes:
        if not s:
            continue
        if first is None:
            first = s
        elif s is not first and (len(s) != len(first)
                                 or any(x is not y for x, y in zip(s, first))):
            break
    else:
        return tuple(first) if first is not None else ()
    out: list[Dim] = []
    ndim = max((len(s) for s in shapes), default=0)
    for axis in range(-ndim, 0):
        cur: Dim | None = None
        for s in shapes:
            if -axis > len(s):
                continue
            d = s[axis]
            if cur is None or cur == ONE:
                cur = d
            elif d == ONE or dims_equal(d, cur):
                continue
            else:
                raise ShapeError("shapes " + " and ".join(fmt_shape(x) for x in shapes)
                                 + " cannot be broadcast together")
        out.append(cur if cur is not None else ONE)
    return tuple(out)


def broadcastable_to(src: Shape, dst: Shape) -> bool:
    """True when `src` broadcasts to exactly `dst`."""
    if len(src) > len(dst):
        return False
    return all(s == ONE or dims_equal(s, d) for s, d in zip(reversed(src), reversed(dst)))


def same_shape(a: Shape, b: Shape) -> bool:
    """Equal rank and equal dimensions."""
    return len(a) == len(b) and all(dims_equal(x, y) for x, y in zip(a, b))


def size(shape: Shape) -> Dim:
    """Number of elements, as a dimension expression."""
    return sympy.Mul(*shape) if shape else ONE


def normalize_axes(axis: int | Iterable[int] | None, ndim: int) -> tuple[int, ...]:
    """Axis argument (None, int or tuple, negatives allowed) to sorted non-negative axes."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    out = []
    for a in axes:
        if not -ndim <= a < ndim:
            raise ShapeError(f"axis {a} is out of range for an array of {ndim} dimension"
                             f"{'' if ndim == 1 else 's'}")
        a = a % ndim if ndim else a
        if a in out:
            raise ShapeError(f"axis {a} is repeated")
        out.append(a)
    return tuple(sorted(out))


def reduce_shape(shape: Shape, axes: tuple[int, ...], keepdims: bool) -> Shape:
    """Shape after reducing over `axes`."""
    if keepdims:
        return tuple(ONE if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def matmul_shape(a: Shape, b: Shape) -> Shape:
    """Shape of `a @ b` with NumPy's rules for 1-D, 2-D and batched operands."""
    if not a or not b:
        raise ShapeError("matrix product needs arrays of at least one dimension, "
                         f"got {fmt_shape(a)} and {fmt_shape(b)}")
    ka = a[-1]
    kb = b[-2] if len(b) >= 2 else b[0]
    if not dims_equal(ka, kb):
        raise ShapeError(f"matrix product of shapes {fmt_shape(a)} and {fmt_shape(b)}: "
                         f"inner dimensions {fmt_dim(ka)} and {fmt_dim(kb)} differ")
    if len(a) == 1 and len(b) == 1:
        return ()
    if len(a) == 1:
        return tuple(b[:-2]) + (b[-1],)
    if len(b) == 1:
        return tuple(a[:-1])
    try:
        batch = broadcast(tuple(a[:-2]), tuple(b[:-2]))
    except ShapeError:
        raise ShapeError(f"matrix product of shapes {fmt_shape(a)} and {fmt_shape(b)}: "
                         "batch dimensions cannot be broadcast together") from None
    return batch + (a[-2], b[-1])
