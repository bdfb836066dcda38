"""Expressions to IR nodes, with an explicit stack (no recursion on nesting depth)."""

from __future__ import annotations

import ast
import math

import sympy

from ..dims import as_expr
from ..errors import ShapeError
from ..ir import Node, const, make
from ..ops import BUILTINS, REGISTRY
from ..ops.dtypes import INT, integer_closed
from ..ops.indexing import assign, assign_steps, gather, selection, to_float
from .calls import NOT_A_CONDITION, BoundCall, Calls
from .locations import OPERATOR, Located
from .loops import LoopLocal, loop_local_error
from .parse import BINOPS, CMPOPS, CONSTANTS, expression_error, op_symbol
from .scope import POISON, Budget, Poisoned, Scope
from .static import index, signed_int

# The integer operators (Index values and dimensions only).
INT_BINOPS = {ast.FloorDiv: "floordiv", ast.Mod: "mod"}
_FULL = ("slice", None, None, 1)   # the index item `:`
# A boolean array as an index: NumPy keeps the elements where it holds, a shape that
# depends on the data.
BOOLEAN_MASK = ("boolean-mask indexing (x[x > 0]) has a shape that depends on the data; "
                "use where(condition, x, 0) to zero the other elements")

_LEAF = ((), None)     # the operands of a name or a number: none


class Expressions:
    """Lowers the expressions of a program: operators, names, constants, indexing, calls."""

    def __init__(self, functions: dict, budget: Budget, calls: Calls):
        self.functions = functions     # name -> ast.FunctionDef, of the whole program
        self.budget = budget
        self.calls = calls
        self.constants: dict = {}      # module-level constants: name -> int or float

    def array(self, node, scope: Scope) -> Node:
        """The value of an expression that must be one array (not a helper's tuple)."""
        value = self.value(node, scope)
        if isinstance(value, tuple):
            raise Located(node, f"expected an array, got a tuple of {len(value)} arrays")
        return value

    def value(self, root, scope: Scope) -> Node | tuple:
        """The value of an expression: a node, or a tuple of them (a helper's result)."""
        todo: list = [(root, None, None)]
        done: list = []
        charge = self.budget.charge
        while todo:
            node, kids, call = todo.pop()
            if kids is None:
                kids, call = self.operands(node, scope)
                if kids:
                    todo.append((node, kids, call))
                    todo.extend((k, None, None) for k in reversed(kids))
                    continue
                # No operands (a name, a number): it is evaluated now rather than pushed
                # and popped again at once.
            if kids:
                vals = done[len(done) - len(kids):]
                del done[len(done) - len(kids):]
            else:
                vals = kids
            for v, sub in zip(vals, kids):
                if isinstance(v, tuple):
                    raise Located(sub, f"expected an array, got a tuple of {len(v)} arrays",
                                  context=True)
            charge(node, 0 if isinstance(node, (ast.Name, ast.Constant)) else 1)
            try:
                if call is not None:
                    done.append(self.calls.call(call, vals, scope))
                else:
                    done.append(self.apply(node, kids, vals, scope))
            except ShapeError as e:
                if isinstance(node, ast.Subscript):
                    raise Located(node.slice, str(e), context=True) from None
                raise Located(node, str(e), context=True, part=OPERATOR) from None
        return done[0]

    def operands(self, node, scope: Scope) -> tuple[list | tuple, BoundCall | None]:
        """The array-valued subexpressions of `node`, evaluated before it (and the binding
        of its arguments if it is a call)."""
        if isinstance(node, (ast.Name, ast.Constant)):
            return _LEAF
        if isinstance(node, ast.BinOp):
            if type(node.op) not in BINOPS and type(node.op) not in INT_BINOPS:
                raise Located(node, f"operator '{op_symbol(node.op)}' is not supported")
            return [node.left, node.right], None
        if isinstance(node, ast.UnaryOp):
            if not isinstance(node.op, (ast.USub, ast.UAdd)):
                raise Located(node, f"operator '{op_symbol(node.op)}' is not supported")
            return [node.operand], None
        if isinstance(node, ast.Compare):
            if len(node.ops) != 1:
                raise Located(node, "chained comparisons are not supported")
            if type(node.ops[0]) not in CMPOPS:
                raise Located(node, f"comparison '{op_symbol(node.ops[0])}' is not supported")
            return [node.left, node.comparators[0]], None
        if isinstance(node, ast.Attribute):
            if node.attr != "T":
                raise Located(node, f"attribute access '.{node.attr}' is not supported "
                                    "(only '.T')")
            return [node.value], None
        if isinstance(node, ast.Subscript):
            return [node.value, *_index_operands(node)], None
        if isinstance(node, ast.Call):
            call = self.calls.bind(node, scope)
            return call.operands, call
        if isinstance(node, (ast.Tuple, ast.List)):
            raise Located(node, "a tuple or list is not an array here")
        raise Located(*expression_error(node))

    def apply(self, node, kids, vals, scope: Scope) -> Node:
        """The node of an operator, name or constant, from the values of its operands."""
        if isinstance(node, ast.Name):
            return self.name(node, scope)
        if isinstance(node, ast.Constant):
            return _constant(node)
        for v, sub in zip(vals, kids):
            if v.dtype == "bool":
                if isinstance(node, ast.Subscript) and sub is not node.value:
                    raise Located(sub, BOOLEAN_MASK, context=True)
                raise Located(sub, NOT_A_CONDITION, context=True)
        if isinstance(node, ast.BinOp) and type(node.op) in INT_BINOPS and all(
                v.is_const for v in vals):   # `C // H` of sizes: a constant, as Python's
            return _size_op(node, *vals)
        if isinstance(node, ast.BinOp):
            return self.arithmetic(node, vals)
        if isinstance(node, ast.UnaryOp):
            return make("neg", vals[0]) if isinstance(node.op, ast.USub) else vals[0]
        if isinstance(node, ast.Compare):
            return make(CMPOPS[type(node.ops[0])], *vals)
        if isinstance(node, ast.Attribute):
            return vals[0].T
        if isinstance(node, ast.Subscript):
            return self.subscript(node, vals[0], kids[1:], vals[1:], scope)
        raise Located(node, "unsupported expression")  # unreachable: operands() checked

    def arithmetic(self, node: ast.BinOp, vals) -> Node:
        """`a OP b`: integers stay integers under `+ - * // %` (Index values and
        dimensions); an Index value meeting floats is converted to the computation's float
        dtype first (NumPy would make int64 with float32 float64)."""
        op = type(node.op)
        if op in INT_BINOPS:
            if integer_closed(vals, {}) != INT and not all(v.is_const for v in vals):
                raise Located(node, f"'{op_symbol(node.op)}' is for integers (Index values "
                                    "and dimensions)", part=OPERATOR)
            return make(INT_BINOPS[op], *vals)
        name = BINOPS[op]
        if any(v.dtype == INT for v in vals) and (
                REGISTRY[name].dtype is not integer_closed or integer_closed(vals, {}) != INT):
            vals = [to_float(v, self.calls.inputs) for v in vals]
        return make(name, *vals)

    def subscript(self, node: ast.Subscript, x: Node, kids, arrays, scope: Scope) -> Node:
        """`x[...]`: integers, slices, `...` and `None` (a new axis of length 1), or
        integer arrays (gathers: `E[idx]`, `S[arange(N), y]`, `x[:, idx]`, `x[..., idx]`)."""
        elts = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        arrays = dict(zip(map(id, kids), arrays))
        node, elts = _from_the_end(node, x, elts, arrays)
        # (a number or dimension among them is a static index: `index` reads it)
        advanced = [i for i, e in enumerate(elts) if id(e) in arrays and not arrays[id(e)].is_const]
        if advanced and not any(map(_is_none, elts)):
            for idx, items, axis in _steps(node, x, elts, advanced, arrays, scope):
                x = selection(x, idx, items, axis)
            return x
        if advanced:
            return self._gather(*self._integers_first(node, x, elts, advanced, scope), arrays)
        new_axes = [i for i, e in enumerate(elts) if _is_none(e)]
        if not new_axes:
            items = index(node.slice, scope.dims, x.shape)
            return make("index", x, index=items) if items else x
        rest = [e for e in elts if not _is_none(e)]
        items = index(ast.Tuple(elts=rest, ctx=ast.Load()), scope.dims, x.shape) if rest else ()
        if not items:
            items = (_FULL,) * len(rest)
        consumed = sum(1 for it in items if it != "...")
        out, axes, k = 0, [], 0
        for e in elts:
            if _is_none(e):
                axes.append(out)
                out += 1
                continue
            it = items[k]
            k += 1
            if it == "...":
                out += max(x.ndim - consumed, 0)
            elif not isinstance(it, int):
                out += 1
        y = make("index", x, index=items) if any(it != _FULL for it in items) else x
        return make("expand_dims", y, axes=tuple(axes))

    def _integers_first(self, node, x: Node, elts, advanced: list[int], scope: Scope):
        """`emit[0, tags[0]]`, `A[i, 2]`: integers next to index arrays (NumPy counts them
        as index arrays too) are applied first, as a plain index, when they and the arrays
        form one block; what is left is a subscript with index arrays only. Returns the
        (node, array, items) that `_gather` takes."""
        ints = [i for i, e in enumerate(elts) if i not in advanced and not (
            isinstance(e, ast.Slice) or _is_none(e) or _is_ellipsis(e))]
        block = sorted(ints + advanced)
        if not ints or any(map(_is_none, elts)) or block != list(range(block[0], block[-1] + 1)):
            return node, x, elts
        first = [e if i in ints else (e if _is_ellipsis(e) else
                                      ast.copy_location(ast.Slice(), e))
                 for i, e in enumerate(elts)]
        items = index(ast.copy_location(ast.Tuple(elts=first, ctx=ast.Load()), node.slice),
                      scope.dims, x.shape)
        rest = [e for i, e in enumerate(elts) if i not in ints]
        sliced = ast.copy_location(ast.Subscript(value=node.value, slice=ast.copy_location(
            ast.Tuple(elts=rest, ctx=ast.Load()), node.slice), ctx=ast.Load()), node)
        return sliced, make("index", x, index=items), rest

    def _gather(self, node, x: Node, elts, arrays: dict) -> Node:
        """A subscript with integer arrays (see `_advanced`), and `None`s before or after
        them (new axes, placed as NumPy places them: `x[i, None]`)."""
        kept = [e for e in elts if not _is_none(e)]
        advanced = [i for i, e in enumerate(kept) if id(e) in arrays
                    and not arrays[id(e)].is_const]
        idx, axis = _advanced(node, x, kept, advanced, arrays)
        y = gather(x, idx, axis)
        if len(kept) == len(elts):
            return y
        b = y.ndim - (x.ndim - len(idx))     # the axes of the broadcast index arrays
        inside = False
        for e in elts[elts.index(kept[advanced[0]]):elts.index(kept[advanced[-1]]) + 1]:
            inside = inside or _is_none(e)
        if inside:
            raise Located(node.slice, "None between index arrays is not supported; add the "
                                      "axis in a second subscript")
        n_ellipsis = x.ndim - sum(1 for e in kept if not _is_ellipsis(e))
        out, axes, done = 0, [], False
        for e in elts:
            if _is_none(e):
                axes.append(out)
                out += 1
            elif _is_ellipsis(e):
                out += n_ellipsis
            elif id(e) in arrays and not arrays[id(e)].is_const:
                out += 0 if done else b
                done = True
            else:
                out += 1
        return make("expand_dims", y, axes=tuple(axes))

    def assign_subscript(self, target: ast.Subscript, value: Node, scope: Scope,
                         accumulate: bool) -> Node:
        """The new value of `A` after `A[...] = value` (`accumulate`: `A[...] += value`),
        a functional update: any index form of `subscript` but `None`."""
        a = self.array(target.value, scope)
        elts = target.slice.elts if isinstance(target.slice, ast.Tuple) else [target.slice]
        for e in elts:
            if _is_none(e):
                raise Located(e, "None cannot be assigned to: it adds an axis")
        kids = _index_operands(target)
        arrays = {id(k): self.array(k, scope) for k in kids}
        for k in kids:
            if arrays[id(k)].dtype == "bool":
                raise Located(k, BOOLEAN_MASK, context=True)
        target, elts = _from_the_end(target, a, elts, arrays)   # H[T - 1] is H[-1]
        advanced = [i for i, e in enumerate(elts)
                    if id(e) in arrays and not arrays[id(e)].is_const]
        try:
            if advanced:
                steps = _steps(target, a, elts, advanced, arrays, scope)
                return assign_steps(a, value, steps, accumulate, self.calls.inputs)
            return assign(a, value, (), index(target.slice, scope.dims, a.shape), None, accumulate,
                          self.calls.inputs)
        except ShapeError as e:
            raise Located(target, str(e), context=True) from None

    def name(self, node: ast.Name, scope: Scope) -> Node:
        """The value a name stands for: a variable, a dimension or a constant."""
        name = node.id
        if name in scope.env:
            value = scope.env[name]
            if value is POISON:
                raise Poisoned   # its assignment failed and is reported
            if isinstance(value, LoopLocal):
                raise loop_local_error(node, value)
            return value
        if name in scope.dims:
            return const(scope.dims[name])
        if name in self.constants:   # EPS = 1e-8 at the top level
            return const(self.constants[name])
        if name in CONSTANTS:
            return const(CONSTANTS[name])
        if name in BUILTINS or name in self.functions:
            raise Located(node, f"'{name}' is a function; call it with arguments")
        raise Located(node, f"unknown name '{name}'")




def _size_op(node: ast.BinOp, a: Node, b: Node) -> Node:
    """`C // H` or `C % H` of two sizes, as a constant."""
    x, y = (v.attr("value") if v.is_const else None for v in (a, b))
    if not all(isinstance(v, sympy.Basic) and v.is_integer for v in (x, y)):
        raise Located(node, f"operator '{op_symbol(node.op)}' is only supported between "
                            "sizes (dimensions and integers): sqrt(C // H)", part=OPERATOR)
    if y.is_zero:
        raise Located(node, "division by zero", part=OPERATOR)
    op = type(node.op)
    return const(sympy.floor(x / y) if op is ast.FloorDiv else sympy.Mod(x, y))
def _from_the_end(node: ast.Subscript, x: Node, elts: list, arrays: dict):
    """`x[T - 1]`, `x[t, N - 2]`: an index that is the size of its axis minus a number is
    that negative number (`x[-1]`), as NumPy reads it. Returns the subscript and its items,
    new ones when an item was replaced."""
    out, axis, after = list(elts), 0, False
    for i, e in enumerate(elts):
        if _is_ellipsis(e):   # the items after it count their axes from the end
            after = True
            continue
        if _is_none(e):
            continue
        if after:
            axis = x.ndim - sum(1 for f in elts[i:] if not _is_none(f))
        v = arrays.get(id(e))
        if v is not None and v.is_const and 0 <= axis < x.ndim and signed_int(e) is None:
            back = sympy.expand(as_expr(v.attr("value")) - x.shape[axis])
            if back.is_Integer and back < 0:
                out[i] = ast.copy_location(ast.Constant(int(back)), e)
        axis += 1
    if out == elts:
        return node, elts
    item = out[0] if not isinstance(node.slice, ast.Tuple) else ast.copy_location(
        ast.Tuple(elts=out, ctx=ast.Load()), node.slice)
    return ast.copy_location(ast.Subscript(value=node.value, slice=item, ctx=ast.Load()),
                             node), out


def _is_none(e) -> bool:
    return isinstance(e, ast.Constant) and e.value is None


def _is_ellipsis(e) -> bool:
    return isinstance(e, ast.Constant) and e.value is Ellipsis


def _advanced(node, x: Node, elts, advanced: list[int], arrays: dict):
    """The index arrays and the axis of the first of a subscript with integer arrays:
    consecutive arrays after full slices (`:`) or one `...`, and only full slices
    after them."""
    lo, hi = advanced[0], advanced[-1] + 1
    if advanced != list(range(lo, hi)):
        raise Located(node.slice, "index arrays must be next to each other "
                                  "(x[:, i, j], not x[i, :, j])")
    for e in elts[:lo] + elts[hi:]:
        full = isinstance(e, ast.Slice) and e.lower is None and e.upper is None \
            and e.step is None
        if not (full or _is_ellipsis(e)):
            raise Located(e, "with index arrays, the other items of a subscript must be "
                             "full slices ':' or '...'; index in two steps")
    if sum(map(_is_ellipsis, elts)) > 1:
        raise Located(node.slice, "an index can only have a single ellipsis ('...')")
    idx = [arrays[id(elts[i])] for i in advanced]
    for i, v in zip(advanced, idx):
        if v.dtype != INT:
            raise Located(elts[i], "an index must be an integer literal, a slice or an "
                                   "Index value (integers)" + (
                                       "" if not v.is_const else
                                       ": a dimension is a number here"), context=True)
    k = len(idx)
    if any(_is_ellipsis(e) for e in elts[:lo]):
        axis = x.ndim - k - (len(elts) - hi)
    elif any(_is_ellipsis(e) for e in elts[hi:]):
        axis = lo
    else:
        axis = lo
    if axis < 0 or axis + k > x.ndim or len(elts) - sum(map(_is_ellipsis, elts)) > x.ndim:
        raise Located(node.slice, f"too many indices for an array of {x.ndim} "
                                  "dimensions")
    return idx, axis


def _steps(node: ast.Subscript, x: Node, elts, advanced: list[int], arrays: dict,
           scope: Scope) -> list[tuple]:
    """A subscript with integer values (and no `None`) as selections applied one after
    the other, each `(index arrays, static items, axis)` as `ops.indexing.selection`
    takes them: index values with only ':' or '...' around them are one gather; else
    the integers and slices come first (`A[0, idx]` is `A[0][idx]`), then scalar
    indices (a loop variable: `A[t, :, k]`) one at a time while they are apart, then
    the rest. NumPy moves the axes of index arrays to the front when integers or
    arrays are apart (`A[0, :, idx]`): that form is an error saying what to write,
    unless nothing is before them anyway (`A[0, idx, :, 1]`)."""
    def values(items):
        return [i for i, e in enumerate(items) if id(e) in arrays
                and not arrays[id(e)].is_const]

    def simple(items, at):
        return at == list(range(at[0], at[-1] + 1)) and all(
            i in at or _is_ellipsis(e) or _is_full(e) for i, e in enumerate(items))

    if simple(elts, advanced):   # x[idx], x[:, t], S[arange(N), y]: one gather
        idx, axis = _advanced(node, x, elts, advanced, arrays)
        return [(tuple(idx), (), axis)]
    if sum(map(_is_ellipsis, elts)) > 1:
        raise Located(node.slice, "an index can only have a single ellipsis ('...')")
    arrs = [i for i in advanced if arrays[id(elts[i])].ndim > 0]
    if arrs:
        block = [i for i, e in enumerate(elts)
                 if not (isinstance(e, ast.Slice) or _is_ellipsis(e))]
        apart = block != list(range(block[0], block[-1] + 1))
        if apart and any(isinstance(e, ast.Slice) or _is_ellipsis(e)
                         for e in elts[:arrs[0]]):
            raise Located(node.slice, "NumPy moves the axes of index arrays to the front "
                                      "when integers or index arrays are apart "
                                      "(A[0, :, idx]); put them next to each other "
                                      "(A[:, 0, idx]) or select in two steps")
    steps: list[tuple] = []
    first = [ast.copy_location(ast.Slice(), e) if i in advanced else e
             for i, e in enumerate(elts)]
    items = index(ast.copy_location(ast.Tuple(elts=first, ctx=ast.Load()), node.slice),
                  scope.dims, x.shape)
    if items:   # the integers and slices
        steps.append(((), items, None))
        x = make("index", x, index=items)
    left = [e if i in advanced or _is_ellipsis(e) else ast.copy_location(ast.Slice(), e)
            for i, e in enumerate(elts) if i in advanced or isinstance(e, ast.Slice)
            or _is_ellipsis(e)]
    at = values(left)
    while not simple(left, at):
        scalars = [i for i in at if arrays[id(left[i])].ndim == 0]
        if not scalars:
            break   # arrays apart: `_advanced` says so
        i = scalars[0]   # the axis it takes: one per item before it, or what '...' spans
        axis = sum(x.ndim - len(left) + 1 if _is_ellipsis(e) else 1 for e in left[:i])
        if len(left) - sum(map(_is_ellipsis, left)) > x.ndim:
            raise Located(node.slice, f"too many indices for an array of {x.ndim} "
                                      "dimensions")
        idx = _advanced(node, x, [left[i]], [0], arrays)[0]
        steps.append((tuple(idx), (), axis))
        x = gather(x, idx, axis)
        left = left[:i] + left[i + 1:]
        at = values(left)
    idx, axis = _advanced(node, x, left, at, arrays)
    steps.append((tuple(idx), (), axis))
    return steps


def _is_full(e) -> bool:
    """Whether a subscript item is the full slice ':'."""
    return isinstance(e, ast.Slice) and e.lower is None and e.upper is None and e.step is None


def _index_operands(node: ast.Subscript) -> list:
    """The items of a subscript that are expressions to evaluate (index arrays such as
    `idx` or `arange(N)`), not integer literals, slices, `...` or `None`."""
    elts = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
    return [e for e in elts if not (isinstance(e, (ast.Slice, ast.Constant))
                                    or signed_int(e) is not None)]


def _constant(node: ast.Constant) -> Node:
    """A number written in the source."""
    v = node.value
    if type(v) in (int, float):
        try:
            finite = math.isfinite(float(v))
        except OverflowError:
            finite = False
        if not finite:
            raise Located(node, "this number is too large: it is not a finite "
                                "floating-point value")
        return const(v)
    kind = "booleans" if isinstance(v, bool) else "strings" if isinstance(v, str) \
        else f"{type(v).__name__} constants"
    raise Located(node, f"{kind} are not supported here")
