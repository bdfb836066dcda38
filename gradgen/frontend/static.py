"""Compile-time values written in the source: dimension arithmetic, shapes, axes, indices.

The one place where the frontend reads numbers and dimensions out of the syntax tree: the
shapes of annotations (`Param[N, 2 * M]`), the static arguments of built-ins (`axis=`,
`reshape(x, (N, M))`, `eye(N)`, einsum's subscripts) and the integers of an index
(`x[1:-1]`). Each is checked structurally, and only bounded, positive dimension
expressions get through, so that comparing shapes (sympy expansion of their sizes) stays
cheap whatever the source says.
"""

from __future__ import annotations

import ast
import keyword

import sympy

from ..dims import dim_symbol
from ..errors import InternalError
from ..ops import BUILTINS
from ..ops.registry import AXIS_ARG, DIM_ARG, FLAG_ARG, INT_ARG, SHAPE_ARG, SPEC_ARG
from .locations import OPERATOR, Located
from .parse import CONSTANTS, op_symbol

# Static arguments (SPEC §5 limits).
MAX_NDIM = 64                  # dimensions of a shape (NumPy's own limit)
MAX_DIM_LEAVES = 16            # names and numbers in one dimension expression
MAX_SHAPE_TERMS = 64           # terms the size of a written shape may expand to
MAX_DIM_VALUE = 2 ** 63 - 1    # no array has more elements than an int64 counts
MAX_SPEC_CHARS = 10_000        # einsum subscripts
_DIM_OPS = (ast.Add, ast.Sub, ast.Mult, ast.FloorDiv)
_NOT_A_DIMENSION = "a dimension must be a name, a positive integer or an arithmetic " \
                   "expression of them"


def signed_int(node) -> int | None:
    """The value of an integer literal, possibly negated (`3`, `-1`), else None."""
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    if (isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub)
            and isinstance(node.operand, ast.Constant) and type(node.operand.value) is int):
        return -node.operand.value
    return None


def static_argument(node, kind: str, dims: dict) -> object:
    """A compile-time argument of a built-in, checked structurally against its kind
    (registry `STATIC_KINDS`): nothing but the values listed there reaches a built-in."""
    if kind == FLAG_ARG:
        if isinstance(node, ast.Constant) and type(node.value) is bool:
            return node.value
        raise Located(node, "this argument must be True or False")
    if kind == SPEC_ARG:
        if isinstance(node, ast.Constant) and type(node.value) is str:
            if len(node.value) > MAX_SPEC_CHARS:
                raise Located(node, f"this string is too long (at most "
                                    f"{MAX_SPEC_CHARS:,} characters)")
            return node.value
        raise Located(node, 'this argument must be a string literal such as "ij,jk->ik"')
    if kind == AXIS_ARG:
        if isinstance(node, ast.Constant) and node.value is None:
            return None
        if isinstance(node, (ast.Tuple, ast.List)):
            if len(node.elts) > MAX_NDIM:
                raise Located(node, f"too many axes (at most {MAX_NDIM})")
            return tuple(axis(e, dims) for e in node.elts)
        return axis(node, dims)
    if kind == DIM_ARG:
        return dimension(node, dims, create=False)[0]
    if kind == INT_ARG:
        value = signed_int(node)
        if value is None:
            raise Located(node, "this argument must be an integer literal")
        return _index_int(node)
    if kind == SHAPE_ARG:
        if isinstance(node, (ast.Tuple, ast.List)):
            return shape(node, node.elts, dims, create=False)
        return shape(node, [node], dims, create=False)[0]
    raise InternalError(f"unknown kind of static argument {kind!r}")


def axis(node, dims: dict) -> int:
    """An axis: an integer literal, possibly negative."""
    value = signed_int(node)
    if value is not None:
        return value
    if isinstance(node, ast.Name) and node.id in dims:
        raise Located(node, f"an axis must be an integer literal, and '{node.id}' is a "
                            "dimension")
    raise Located(node, "an axis must be an integer literal (axis arguments are an "
                        "integer, a tuple of integers or None)")


def index(node) -> tuple:
    """The items of a subscript (`x[i, 1:-1, ...]`); () when it selects everything."""
    items = node.elts if isinstance(node, ast.Tuple) else [node]
    out = []
    for it in items:
        if isinstance(it, ast.Slice):
            start, stop, step = (None if part is None else _index_int(part)
                                 for part in (it.lower, it.upper, it.step))
            out.append(("slice", start, stop, 1 if step is None else step))
        elif isinstance(it, ast.Constant) and it.value is Ellipsis:
            if "..." in out:
                raise Located(it, "an index can only have a single ellipsis ('...')")
            out.append("...")
        else:
            out.append(_index_int(it))
    if all(o == ("slice", None, None, 1) for o in out):
        return ()
    return tuple(out)


def _index_int(node) -> int:
    value = signed_int(node)
    if value is None:
        raise Located(node, "indices must be integer literals or slices of them")
    if abs(value) > MAX_DIM_VALUE:
        raise Located(node, f"index {value} is too large (at most 2**63 - 1 either way)")
    return value


def shape(node, items, dims: dict, create: bool) -> tuple:
    """The dimensions `items` of a shape written at `node`, each checked by `dimension`."""
    if len(items) > MAX_NDIM:
        raise Located(node, f"a shape may have at most {MAX_NDIM} dimensions")
    out, terms = [], 1
    for item in items:
        d, t = dimension(item, dims, create)
        out.append(d)
        terms *= t
        if terms > MAX_SHAPE_TERMS:
            raise Located(item, "this shape is too complex: its size would expand to "
                                f"more than {MAX_SHAPE_TERMS} terms")
    return tuple(out)


def dimension(node, dims: dict, create: bool) -> tuple[sympy.Expr, int]:
    """A dimension expression: names, positive integer literals and `+ - * //` of them.

    Names are dimensions (`create`: new ones are declared in `dims`, as in an annotation;
    else they must exist, as in a shape argument). Returns the value and a bound on the
    number of terms it expands to. Only structurally valid, small, positive expressions get
    through: at most MAX_DIM_LEAVES names and numbers, each number at most MAX_DIM_VALUE.
    The traversal uses an explicit stack.
    """
    leaves = 0
    todo: list = [(node, False)]
    done: list = []
    while todo:
        item, ready = todo.pop()
        if isinstance(item, ast.BinOp) and type(item.op) in _DIM_OPS:
            if not ready:
                todo.append((item, True))
                todo.extend(((item.right, False), (item.left, False)))
                continue
            (b, tb), (a, ta) = done.pop(), done.pop()
            done.append(_dim_op(item, a, b, ta, tb))
            continue
        leaves += 1
        if leaves > MAX_DIM_LEAVES:
            raise Located(item, "dimension expression is too long (at most "
                                f"{MAX_DIM_LEAVES} names and numbers)")
        done.append((_dim_leaf(item, dims, create), 1))
    return done[0]


def _dim_leaf(node, dims: dict, create: bool) -> sympy.Expr:
    if isinstance(node, ast.Name):
        if node.id in dims:
            return dims[node.id]
        if node.id in BUILTINS or node.id in CONSTANTS or keyword.iskeyword(node.id):
            raise Located(node, f"'{node.id}' cannot be used as a dimension name")
        if create:
            return dims.setdefault(node.id, dim_symbol(node.id))
        raise Located(node, f"'{node.id}' is not a dimension: a shape is made of the "
                            "dimensions of the entry point's arguments and positive integers")
    value = signed_int(node)
    if isinstance(node, ast.Constant) and value is not None:
        if value <= 0:
            raise Located(node, f"dimensions must be positive, got {value}")
        if value > MAX_DIM_VALUE:
            raise Located(node, f"dimension {value} is too large (at most 2**63 - 1)")
        return sympy.Integer(value)
    if value is not None:    # a negated integer literal
        raise Located(node, f"dimensions must be positive, got -{node.operand.value}")
    if isinstance(node, ast.BinOp):
        raise Located(node, f"operator '{op_symbol(node.op)}' is not allowed in a dimension "
                            "(only +, -, * and //)", part=OPERATOR)
    if isinstance(node, (ast.Tuple, ast.List)):
        raise Located(node, f"{_NOT_A_DIMENSION}, not a tuple")
    if isinstance(node, ast.Constant):
        what = "None" if node.value is None else type(node.value).__name__
        raise Located(node, f"{_NOT_A_DIMENSION}, not {what}")
    raise Located(node, _NOT_A_DIMENSION)


def _dim_op(node, a, b, ta: int, tb: int) -> tuple[sympy.Expr, int]:
    op = type(node.op)
    value = (a + b if op is ast.Add else a * b if op is ast.Mult else a - b
             if op is ast.Sub else sympy.floor(a / b))
    terms = ta + tb if op in (ast.Add, ast.Sub) else ta * tb
    if value.is_positive is False:
        raise Located(node, "dimensions must be positive" + (
            f", got {value}" if value.is_Integer else ""), part=OPERATOR)
    if any(abs(n) > MAX_DIM_VALUE for n in value.atoms(sympy.Number)):
        raise Located(node, "this dimension is too large (at most 2**63 - 1)", part=OPERATOR)
    return value, terms
