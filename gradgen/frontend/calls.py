"""Calls: binding the arguments of a call once, building built-ins, inlining helpers.

A call is bound when the expression walk reaches it (`Calls.bind`): its arguments are
matched to the callee's parameters, and the array-valued ones become the operands that
the walk evaluates first. `Calls.call` then builds the call from the same binding and
those values: a built-in from the registry (`ops.BUILTINS`), with its static arguments
read by `static.static_argument`; a helper (a function of the source without annotations)
by lowering its body once per distinct argument nodes.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..errors import ShapeError
from ..ir import Node
from ..ops import BUILTINS
from ..ops.constants import scalar_array
from ..ops.dtypes import INT
from ..ops.indexing import CONVERSIONS, to_float
from ..ops.registry import STATIC_KINDS, Builtin
from .locations import Located
from .parse import LIST_ITEM_COST, MAX_HELPER_DEPTH, count
from .scope import POISON, Budget, Poisoned, Scope
from .static import static_argument

# A comparison gives booleans: only the parameter a built-in declares as its condition
# (registry `Builtin.condition`) takes one.
NOT_A_CONDITION = "a comparison can only be the condition of where(...)"


@dataclass
class BoundCall:
    """A call's arguments matched to the callee's parameters."""

    node: ast.Call
    name: str
    target: Builtin | ast.FunctionDef
    bound: dict                # parameter name -> argument expression
    operands: list             # the array-valued argument expressions, in order


class Calls:
    """Binds and builds the calls of one program."""

    def __init__(self, functions: dict, budget: Budget,
                 lower_body: Callable[[ast.FunctionDef, Scope], tuple],
                 broken: set[str] | frozenset[str] = frozenset()):
        self.functions = functions     # name -> ast.FunctionDef, of the whole program
        self.broken = broken           # functions whose definition is in error (reported)
        self.budget = budget
        self.lower_body = lower_body   # (helper, scope) -> (doc, value, return statement)
        self.helper_stack: list[str] = []
        self.dims: dict = {}           # the dimensions of the entry point being lowered
        self.inputs: tuple = ()        # its argument nodes
        self.inlined: dict = {}        # (helper, argument nodes) -> result, per entry point

    def start_entry(self, dims: dict, inputs: tuple) -> None:
        """Lower the calls of a new entry point with these dimensions and arguments."""
        self.dims = dims
        self.inputs = inputs
        self.inlined = {}

    # ------------------------------------------------------------ binding

    def bind(self, node: ast.Call, scope: Scope) -> BoundCall:
        """Match the arguments of `node` to its callee's parameters."""
        for a in node.args:
            if isinstance(a, ast.Starred):
                raise Located(a, "'*' unpacking is not supported")
        for k in node.keywords:
            if k.arg is None:
                raise Located(k, "'**' unpacking is not supported")
        name, target = self.callee(node, scope)
        if isinstance(target, ast.FunctionDef):
            params = [p.arg for p in target.args.args]
            bound = _bind(node, name, params, set(params), variadic=False)
            return BoundCall(node, name, target, bound, [bound[p] for p in params])
        required = {p for p in target.params if p not in target.defaults}
        bound = _bind(node, name, list(target.params), required, target.variadic)
        operands = []
        for p in target.params:
            if p not in bound or p in target.static:
                continue
            if p == target.list_param:
                if not isinstance(bound[p], (ast.List, ast.Tuple)) or not bound[p].elts:
                    raise Located(bound[p], f"{name}() expects a non-empty list of arrays, "
                                            "e.g. [a, b]")
                operands.extend(bound[p].elts)
                self.budget.charge(node, LIST_ITEM_COST * len(bound[p].elts))
            else:
                operands.append(bound[p])
        return BoundCall(node, name, target, bound, operands)

    def callee(self, node: ast.Call, scope: Scope) -> tuple[str, Builtin | ast.FunctionDef]:
        """The name and the definition (a helper's or a built-in's) of what is called; a
        variable or argument of that name shadows a built-in from its first binding on."""
        if not isinstance(node.func, ast.Name):
            if isinstance(node.func, ast.Attribute):
                raise Located(node.func, f"method calls are not supported: write "
                                         f"{node.func.attr}(x, ...) instead of "
                                         f"x.{node.func.attr}(...)")
            raise Located(node.func, "only named functions can be called")
        name = node.func.id
        if name in scope.env:
            if scope.env[name] is POISON or name in self.broken:
                raise Poisoned
            what = scope.shadowing(name)
            if name in BUILTINS:
                raise Located(node.func, f"{what}, which shadows the built-in {name}() "
                                         "from there on; rename the variable to call "
                                         f"{name}()")
            raise Located(node.func, f"{what}, not a function")
        if name in self.broken:
            raise Poisoned       # its definition is in error (reported)
        if name in self.functions:
            return name, self.functions[name]
        if name in BUILTINS:
            return name, BUILTINS[name]
        if name in CONVERSIONS:
            return name, CONVERSIONS[name]
        raise Located(node.func, f"unknown function '{name}'")

    # ------------------------------------------------------------ building

    def call(self, call: BoundCall, vals: Sequence[Node], scope: Scope) -> Node | tuple:
        """The value of a bound call, given the values of its operands."""
        if isinstance(call.target, ast.FunctionDef):
            return self.inline(call.node, call.target, vals)
        target, name = call.target, call.name
        kwargs = self._arguments(call, vals, scope)
        if target.condition is not None and kwargs[target.condition].dtype != "bool":
            raise Located(call.bound[target.condition],
                          f"the {target.condition} of {name}(...) must be a comparison "
                          "such as x > 0", context=True)
        self._index_arguments(call, kwargs)
        try:
            if not target.elementwise:
                for p in target.params:
                    if p in kwargs and p not in target.static:
                        v = kwargs[p]
                        kwargs[p] = (tuple(self._as_array(a) for a in v)
                                     if isinstance(v, tuple) else self._as_array(v))
            if target.needs_inputs:
                kwargs["inputs"] = self.inputs
            return target.build(**kwargs)
        except ShapeError as e:
            raise Located(call.node, f"{name}(): {e}", context=True) from None

    def _arguments(self, call: BoundCall, vals: Sequence[Node], scope: Scope) -> dict:
        """The keyword arguments of a built-in: static values and operand values."""
        target, bound = call.target, call.bound
        arrays = iter(vals)
        kwargs = {}
        for p in target.params:
            if p not in bound:
                continue
            if p in target.static:
                kwargs[p] = static_argument(bound[p], STATIC_KINDS[p], scope.dims)
            elif p == target.list_param:
                kwargs[p] = tuple(next(arrays) for _ in bound[p].elts)
                for item, v in zip(bound[p].elts, kwargs[p]):
                    if v.dtype == "bool":
                        raise Located(item, NOT_A_CONDITION, context=True)
            else:
                kwargs[p] = next(arrays)
                if kwargs[p].dtype == "bool" and p != target.condition:
                    raise Located(bound[p], NOT_A_CONDITION, context=True)
        return kwargs

    def _index_arguments(self, call: BoundCall, kwargs: dict) -> None:
        """Index values where the built-in takes them (`index_params`, which must get
        one), converted to floats everywhere else (`sum(y)`: NumPy would promote int64
        with float32 to float64)."""
        target = call.target
        for p, v in kwargs.items():
            if p in target.static:
                continue
            if p in target.index_params:
                if v.dtype != INT:
                    raise Located(call.bound[p], f"the {p} of {call.name}(...) must be an "
                                                 "Index value (integers)", context=True)
            elif target.keeps_index and not isinstance(v, tuple):
                continue   # reshape(y, ...) of an Index value is one too
            elif isinstance(v, tuple):
                kwargs[p] = tuple(to_float(a, self.inputs) for a in v)
            else:
                kwargs[p] = to_float(v, self.inputs)

    def _as_array(self, v: Node) -> Node:
        return scalar_array(v, self.inputs) if v.is_const else v

    def inline(self, node: ast.Call, fn: ast.FunctionDef, vals: Sequence[Node]) -> Node | tuple:
        """The value of a helper applied to `vals`: its body, lowered with them."""
        if fn.name in self.helper_stack:
            cycle = self.helper_stack[self.helper_stack.index(fn.name):] + [fn.name]
            how = ("calls itself" if len(cycle) == 2
                   else "is recursive: " + " -> ".join(cycle))
            raise Located(node, f"helper '{fn.name}' {how}; helpers are inlined, so "
                                "recursion is not allowed")
        if len(self.helper_stack) >= MAX_HELPER_DEPTH:
            raise Located(node, f"helpers nested more than {MAX_HELPER_DEPTH} deep")
        # Helpers are pure and nodes are hash-consed: the same helper applied to the same
        # nodes gives the same nodes, so it is lowered once (a chain of helpers that each
        # call the previous one twice would otherwise take exponential time).
        key = (fn.name, tuple(vals))
        if key in self.inlined:
            return self.inlined[key]
        env = dict(zip((p.arg for p in fn.args.args), vals))
        scope = Scope(env, {}, self.dims, fn.name, helper=True)
        self.helper_stack.append(fn.name)
        try:
            _, value, _ = self.lower_body(fn, scope)
        except Located as e:
            e.helpers.append(fn.name)
            e.call_line = node.lineno
            raise
        finally:
            self.helper_stack.pop()
        self.inlined[key] = value
        return value


def _bind(node: ast.Call, name: str, params: list, required: set, variadic: bool) -> dict:
    """Map a call's arguments to the parameter names `params`."""
    positional = list(node.args)
    if variadic:
        # The last parameter collects the remaining positional arrays (einsum).
        rest = positional[len(params) - 1:]
        positional = positional[:len(params) - 1]
        if rest:
            positional.append(ast.copy_location(ast.List(elts=rest, ctx=ast.Load()), rest[0]))
    if len(positional) > len(params):
        raise Located(node.args[len(params)],
                      f"{name}() takes {count(len(params), 'argument')} but "
                      f"{len(node.args)} were given")
    bound = dict(zip(params, positional))
    for k in node.keywords:
        if k.arg not in params:
            raise Located(k, f"{name}() got an unexpected keyword argument '{k.arg}'")
        if k.arg in bound:
            raise Located(k, f"{name}() got multiple values for argument '{k.arg}'")
        bound[k.arg] = k.value
    missing = [p for p in params if p in required and p not in bound]
    if missing:
        raise Located(node, f"{name}() missing required argument '{missing[0]}'")
    return bound
