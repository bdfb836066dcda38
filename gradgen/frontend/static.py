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
import dataclasses
import keyword
import math

import sympy

from ..dims import DIM_TEXT, Requirement, bind_sizes, dim_symbol, fmt_dim
from ..errors import InternalError
from ..ops import BUILTINS
from ..ops.registry import AXIS_ARG, DIM_ARG, FLAG_ARG, INT_ARG, SHAPE_ARG, SPEC_ARG, START_ARG
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


class Dims(dict):
    """The dimensions of an entry point (name -> sympy symbol), with what sizes may also
    be made of (`constants`: the module's constants, name -> value; the integer ones are
    sizes) and what the sizes written in it require at run time (`requirements`: exact
    divisions `C // H`, slice bounds within their axis), checked at entry."""

    def __init__(self, constants: dict | None = None):
        super().__init__()
        self.constants = constants if constants is not None else {}
        self.requirements: list[Requirement] = []

    def require(self, kind: str, left, right, node, right_node=None) -> None:
        """Check `left` divides by `right` (`divides`) or `left <= right` (`within`) at
        entry (once per condition); `node` (and `right_node`) are where they are written."""
        texts = tuple("" if n is None else ast.unparse(n) for n in (node, right_node))
        texts = tuple(t if DIM_TEXT.fullmatch(t) else "" for t in texts)
        if all((r.kind, r.left, r.right) != (kind, left, right) for r in self.requirements):
            self.requirements.append(Requirement(kind, left, right, node.lineno, texts))


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
    if kind == START_ARG and signed_int(node) == 0:
        return sympy.Integer(0)
    if kind in (DIM_ARG, START_ARG):
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


def index(node, dims: dict | None = None, shape: tuple | None = None) -> tuple:
    """The items of a subscript (`x[i, 1:-1, ...]`, `a[:, H:2 * H]`); () when it selects
    everything. Slice bounds are integer literals or, given the entry point's `dims`,
    dimension expressions; given the `shape` indexed, a bound that may be beyond its axis
    (`2 * H` of an axis `C`) is checked at entry (`Dims.require`)."""
    items = node.elts if isinstance(node, ast.Tuple) else [node]
    out = []
    for it in items:
        if isinstance(it, ast.Slice):
            start, stop = (None if part is None else _bound(part, dims)
                           for part in (it.lower, it.upper))
            step = None if it.step is None else _index_int(it.step)
            out.append(("slice", start, stop, 1 if step is None else step))
        elif isinstance(it, ast.Constant) and it.value is Ellipsis:
            if "..." in out:
                raise Located(it, "an index can only have a single ellipsis ('...')")
            out.append("...")
        else:
            out.append(_index_int(it))
    if all(o == ("slice", None, None, 1) for o in out):
        return ()
    if shape is not None and isinstance(dims, Dims):
        _within(items, out, shape, dims)
    return tuple(out)


def _bound(node, dims: dict | None) -> int | sympy.Expr:
    """A slice bound: an integer literal (`-1`) or a dimension expression (`N - 1`)."""
    if signed_int(node) is not None or dims is None:
        return _index_int(node)
    value = dimension(node, dims, create=False)[0]
    return int(value) if value.is_Integer else value


def _within(items, out, shape, dims: Dims) -> None:
    """Dimension-expression slice bounds beyond their axis for every size are an error;
    those that may be (`2 * H` of an axis `C`) are checked at entry."""
    consumed = sum(1 for it in out if it != "..." and it is not None)
    axis = 0
    for node, it in zip(items, out):
        if it is None:   # a new axis (x[:, None]) takes none of the array's
            continue
        if it == "...":
            axis += max(len(shape) - consumed, 0)
            continue
        if axis >= len(shape):
            return   # too many indices: the shape rule says so
        if isinstance(it, tuple):
            for part, b in ((node.lower, it[1]), (node.upper, it[2])):
                if isinstance(b, sympy.Expr):
                    _bound_within(part, b, shape[axis], axis, dims)
        axis += 1


def _bound_within(node, b, d, axis: int, dims: Dims) -> None:
    """`b` within the axis of size `d` (from 0: NumPy counts a negative bound from the end)
    for every size, or checked at entry; beyond it for every size, an error."""
    ok = [_nonnegative(sympy.expand(d - b)), _nonnegative(b)]
    if ok[0] is False:
        raise Located(node, f"slice bound {fmt_dim(b)} is beyond the size {fmt_dim(d)} of "
                            f"axis {axis} for every size")
    if None in ok:
        dims.require("within", b, d, node)


def _nonnegative(x) -> bool | None:
    """Whether `x` >= 0 for every size (None: for some sizes only); never Python's truth
    value of a sympy comparison, which a symbolic one does not have."""
    if x.is_number:
        return bool(x >= 0)
    return True if x.is_nonnegative else (False if x.is_negative else None)


def _index_int(node) -> int:
    value = signed_int(node)
    if value is None:
        raise Located(node, "indices must be integer literals or slices of them (slice "
                            "bounds may also be dimension expressions: x[:N - 1])")
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
            done.append(_dim_op(item, a, b, ta, tb, dims))
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
        constants = getattr(dims, "constants", {})
        if node.id in constants:   # H = 4 at the top level of the file
            value = constants[node.id]
            if type(value) is not int or value <= 0:
                raise Located(node, f"'{node.id}' = {value!r} (a module-level constant) is "
                                    "not a positive integer, so it cannot be a size")
            return sympy.Integer(value)
        if node.id in BUILTINS or node.id in CONSTANTS or keyword.iskeyword(node.id):
            raise Located(node, f"'{node.id}' cannot be used as a dimension name")
        if create:
            return dims.setdefault(node.id, dim_symbol(node.id))
        if node.id in getattr(dims, "loop_vars", ()):
            raise Located(node, f"the loop variable '{node.id}' cannot be a size: it changes "
                                "at every step, and an array's shape may not; use a fixed "
                                f"size (a dimension such as T) and select with {node.id} "
                                f"(x[{node.id}]) or mask with where(...)")
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


def _dim_op(node, a, b, ta: int, tb: int, dims: dict) -> tuple[sympy.Expr, int]:
    op = type(node.op)
    value = (a + b if op is ast.Add else a * b if op is ast.Mult else a - b
             if op is ast.Sub else a / b)
    terms = ta + tb if op in (ast.Add, ast.Sub) else ta * tb
    if op is ast.FloorDiv and value.is_integer is not True:
        # A size divides exactly (SPEC 1): `C // H` is C / H, so that H * (C // H) is C;
        # checked at entry where it is not known here.
        if a.is_Integer and b.is_Integer:
            raise Located(node, f"{fmt_dim(a)} // {fmt_dim(b)} is not an exact division "
                                f"({fmt_dim(a)} is not a multiple of {fmt_dim(b)}); sizes "
                                "divide exactly", part=OPERATOR)
        if not isinstance(dims, Dims):
            raise InternalError("an exact division of sizes outside an entry point")
        dims.require("divides", a, b, node.left, node.right)
    if value.is_positive is False:
        raise Located(node, "dimensions must be positive" + (
            f", got {value}" if value.is_Integer else ""), part=OPERATOR)
    if any(abs(n) > MAX_DIM_VALUE for n in value.atoms(sympy.Number)):
        raise Located(node, "this dimension is too large (at most 2**63 - 1)", part=OPERATOR)
    return value, terms


# ---------------------------------------------------------------- module-level constants

MAX_CONSTANT_LEAVES = 1000     # numbers and names in one module-level constant
_CONSTANT_OPS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow)
_NOT_A_CONSTANT = ("a module-level constant must be a number or an arithmetic expression "
                   "of numbers and earlier constants (EPS = 1e-8, H = 4, TAU = 2 * pi)")


def module_constant(node, constants: dict) -> int | float:
    """The value of the right side of `NAME = ...` at the top level of a file: numbers,
    `pi`, `e`, earlier constants and `+ - * / // % **` of them, folded here exactly as
    Python would (the source is never evaluated). Integers stay within 2**63 and floats
    finite; anything else is a located error. An explicit stack bounds the depth."""
    leaves = 0
    todo: list = [(node, False)]
    done: list = []
    while todo:
        item, ready = todo.pop()
        if isinstance(item, ast.BinOp) and type(item.op) in _CONSTANT_OPS:
            if not ready:
                todo.append((item, True))
                todo.extend(((item.right, False), (item.left, False)))
                continue
            b, a = done.pop(), done.pop()
            done.append(_fold(item, a, b))
            continue
        if isinstance(item, ast.UnaryOp) and isinstance(item.op, (ast.USub, ast.UAdd)):
            if not ready:
                todo.extend(((item, True), (item.operand, False)))
                continue
            done.append(-done.pop() if isinstance(item.op, ast.USub) else done.pop())
            continue
        leaves += 1
        if leaves > MAX_CONSTANT_LEAVES:
            raise Located(item, f"this constant is too long (at most {MAX_CONSTANT_LEAVES} "
                                "numbers and names)")
        done.append(_constant_leaf(item, constants))
    return done[0]


def _constant_leaf(node, constants: dict) -> int | float:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return _checked_number(node, node.value)
    if isinstance(node, ast.Name):
        if node.id in constants:
            return constants[node.id]
        if node.id in CONSTANTS:
            return float(CONSTANTS[node.id])
        raise Located(node, f"'{node.id}' is not a module-level constant defined above "
                            f"this line; {_NOT_A_CONSTANT}")
    if isinstance(node, ast.BinOp):
        raise Located(node, f"operator '{op_symbol(node.op)}' is not allowed in a "
                            "module-level constant", part=OPERATOR)
    raise Located(node, _NOT_A_CONSTANT)


def _fold(node, a, b) -> int | float:
    op = type(node.op)
    try:
        if op is ast.Pow and type(a) is int and type(b) is int and b > 64 and abs(a) > 1:
            raise OverflowError
        value = (a + b if op is ast.Add else a - b if op is ast.Sub else a * b
                 if op is ast.Mult else a / b if op is ast.Div else a // b
                 if op is ast.FloorDiv else a % b if op is ast.Mod else a ** b)
    except ZeroDivisionError:
        raise Located(node, "division by zero in a module-level constant",
                      part=OPERATOR) from None
    except OverflowError:
        raise Located(node, "this constant is too large", part=OPERATOR) from None
    if type(value) not in (int, float):   # (-8) ** 0.5 is complex
        raise Located(node, "this constant is not a real number", part=OPERATOR)
    return _checked_number(node, value)


def _checked_number(node, value: float) -> float:
    if type(value) is int and abs(value) > MAX_DIM_VALUE:
        raise Located(node, "this constant is too large (integers at most 2**63 - 1)")
    if type(value) is float and not math.isfinite(value):
        raise Located(node, "this constant is not a finite floating-point value")
    return value


# ---------------------------------------------------------------- sizes bound at entry

def sizes_bound(fn: ast.FunctionDef, args) -> dict:
    """How the entry point `fn` (its `args`: name and shape) binds each dimension at run
    time (`dims.bind_sizes`); a dimension no argument determines is an error at the
    first annotation that uses it, saying how to declare it."""
    bindings, missing = bind_sizes([(a.name, a.shape) for a in args])
    items = {a.name: _annotation_items(p.annotation) for a, p in zip(args, fn.args.args)}
    for name, b in bindings.items():
        if not b.direct:   # `N + 2 * K` as written, not as sympy orders it
            text = ast.unparse(items[b.arg][b.axis])
            bindings[name] = dataclasses.replace(b, text=text if DIM_TEXT.fullmatch(text)
                                                 else fmt_dim(b.declared))
    if not missing:
        return bindings
    name = missing[0]
    for a in args:
        for axis, d in enumerate(a.shape):
            if any(s.name == name for s in d.free_symbols):
                others = sorted(s.name for s in d.free_symbols if s.name not in bindings)
                why = ("together with " + ", ".join(f"'{o}'" for o in others if o != name)
                       if len(others) > 1 else "not linearly, so it cannot be solved for")
                raise Located(items[a.name][axis], (
                    f"dimension '{name}' cannot be determined from the arguments' sizes: it "
                    f"appears only in {fmt_dim(d)} (argument '{a.name}', axis {axis}), {why}; "
                    f"declare it alone in some argument's shape (Data[{name}]) or as a "
                    f"multiple (Param[3 * {name}])"))
    raise InternalError(f"dimension {name!r} of no argument")


def _annotation_items(ann) -> list:
    """The syntax of each axis of an annotation (`Param[N, 2 * M]`: N, 2 * M)."""
    if not isinstance(ann, ast.Subscript):
        return []
    return list(ann.slice.elts) if isinstance(ann.slice, ast.Tuple) else [ann.slice]
