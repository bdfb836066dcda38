"""Expressions to IR nodes, with an explicit stack (no recursion on nesting depth)."""

from __future__ import annotations

import ast
import math

import sympy

from ..errors import ShapeError
from ..ir import Node, const, make
from ..ops import BUILTINS
from .calls import NOT_A_CONDITION, BoundCall, Calls
from .locations import OPERATOR, Located
from .parse import BINOPS, CMPOPS, CONSTANTS, expression_error, op_symbol
from .scope import POISON, Budget, Poisoned, Scope
from .static import index

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
            if type(node.op) not in BINOPS and type(node.op) not in _SIZE_OPS:
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
            return [node.value], None
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
                raise Located(sub, NOT_A_CONDITION, context=True)
        if isinstance(node, ast.BinOp) and type(node.op) in _SIZE_OPS:
            return _size_op(node, *vals)
        if isinstance(node, ast.BinOp):
            return make(BINOPS[type(node.op)], *vals)
        if isinstance(node, ast.UnaryOp):
            return make("neg", vals[0]) if isinstance(node.op, ast.USub) else vals[0]
        if isinstance(node, ast.Compare):
            return make(CMPOPS[type(node.ops[0])], *vals)
        if isinstance(node, ast.Attribute):
            return vals[0].T
        if isinstance(node, ast.Subscript):
            items = index(node.slice, scope.dims, vals[0].shape)
            return make("index", vals[0], index=items) if items else vals[0]
        raise Located(node, "unsupported expression")  # unreachable: operands() checked

    def name(self, node: ast.Name, scope: Scope) -> Node:
        """The value a name stands for: a variable, a dimension or a constant."""
        name = node.id
        if name in scope.env:
            value = scope.env[name]
            if value is POISON:
                raise Poisoned   # its assignment failed and is reported
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


# `//` and `%` of sizes (dimensions, integer literals and constants) in a value
# expression: `sqrt(C // H)`, a constant as Python computes it.
_SIZE_OPS = {ast.FloorDiv: sympy.floor, ast.Mod: sympy.Mod}


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
