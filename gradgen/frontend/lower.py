"""A syntax tree to entry points: functions, signatures, statements and names.

Every function of the source is a helper (inlined where it is called) or, when its
arguments are annotated, an entry point: its arguments become `input` nodes and its body
is lowered statement by statement into the IR (expressions by `expressions.Expressions`).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field

import sympy

from .. import ir
from ..errors import Diagnostic
from ..ir import Node, make
from ..ops import BUILTINS
from ..ops.dtypes import INT
from .calls import Calls
from .expressions import Expressions
from .locations import AT_SIGN, DEF_NAME, Located, SourceFile, source_lines
from .parse import ANNOTATIONS, CONSTANTS, ENTRY_COST, is_docstring, statement_error
from .scope import Budget, Scope
from .static import shape

_FIXED_ARGUMENTS = "a function takes a fixed list of plain arguments"


@dataclass
class Argument:
    """A parameter of an entry point."""

    name: str
    role: str                  # "param", "data" or "index" (Index[...] and int)
    shape: tuple               # sympy dimensions
    node: Node
    decl: str                  # the annotation as written, for docstrings


@dataclass
class EntryPoint:
    """A function with annotated parameters: it gets generated code."""

    name: str
    doc: str | None
    args: list[Argument]
    output: Node
    names: dict                # Node -> source name
    line: int
    return_line: int
    return_col: int
    dims: dict = field(default_factory=dict)     # name -> (arg name, axis) binding it

    @property
    def params(self) -> list[Argument]:
        """The arguments that are differentiated (Param[...])."""
        return [a for a in self.args if a.role == "param"]


@dataclass
class Program:
    """The entry points of a source text."""

    filename: str
    source: str
    entries: list[EntryPoint]

    def diagnostic(self, line: int, col: int, message: str) -> Diagnostic:
        """A diagnostic at a place in this program's source."""
        return SourceFile(self.filename, source_lines(self.source)).diagnostic(line, col, message)


def _is_entry(fn: ast.FunctionDef) -> bool:
    return bool(fn.args.args) and all(p.annotation is not None for p in fn.args.args)


class Lowering:
    """Lowers one program: its functions, entry points and statements."""

    def __init__(self, src: SourceFile, max_operations: int):
        self.src = src
        self.functions: dict[str, ast.FunctionDef] = {}
        budget = Budget(max_operations)
        self.budget = budget
        self.calls = Calls(self.functions, budget, self.body)
        self.expressions = Expressions(self.functions, budget, self.calls)

    # ------------------------------------------------------------ module

    def program(self, tree: ast.Module, text: str) -> Program:
        """The entry points of a module (raises `Located`)."""
        body = list(tree.body)
        if body and is_docstring(body[0]):
            body = body[1:]
        for stmt in body:
            if not isinstance(stmt, ast.FunctionDef):
                raise Located(stmt, statement_error(stmt, top_level=True))
            if stmt.name in self.functions:
                raise Located(stmt, f"function '{stmt.name}' is defined twice (first on line "
                                    f"{self.functions[stmt.name].lineno})", part=DEF_NAME)
            if stmt.name in BUILTINS or stmt.name in ANNOTATIONS or stmt.name in CONSTANTS:
                raise Located(stmt, f"'{stmt.name}' is a built-in name and cannot be "
                                    "redefined", part=DEF_NAME)
            self._check_signature(stmt)
            self.functions[stmt.name] = stmt
        entries = [self.entry(fn) for fn in self.functions.values() if _is_entry(fn)]
        for fn in self.functions.values():
            if _is_entry(fn) and fn.name.startswith("__") and fn.name.endswith("__"):
                # `def __builtins__` or `def __getattr__` in the emitted module would change
                # how Python runs it; Python reserves these names for itself.
                raise Located(fn, f"entry point '{fn.name}': names of the form __name__ are "
                                  "reserved by Python", part=DEF_NAME)
        if not entries:
            raise Located(tree.body[0] if tree.body else tree,
                          "no entry point: annotate the arguments of at least one function "
                          "with Param[...] or Data[...]")
        return Program(self.src.filename, text, entries)

    def _check_signature(self, fn: ast.FunctionDef) -> None:
        a = fn.args
        if fn.decorator_list:
            raise Located(fn.decorator_list[0], "decorators are not supported", part=AT_SIGN)
        if a.vararg is not None:
            raise Located(a.vararg, f"'*{a.vararg.arg}' is not supported: {_FIXED_ARGUMENTS}")
        if a.kwarg is not None:
            raise Located(a.kwarg, f"'**{a.kwarg.arg}' is not supported: {_FIXED_ARGUMENTS}")
        if a.kwonlyargs:
            raise Located(a.kwonlyargs[0], "keyword-only arguments are not supported: "
                                           + _FIXED_ARGUMENTS)
        if a.posonlyargs:
            raise Located(a.posonlyargs[0], "positional-only arguments ('/') are not "
                                            "supported: " + _FIXED_ARGUMENTS)
        if a.defaults:
            raise Located(a.defaults[0], "default argument values are not supported")
        annotated = [p.annotation is not None for p in a.args]
        if any(annotated) and not all(annotated):
            missing = next(p for p in a.args if p.annotation is None)
            raise Located(missing, f"argument '{missing.arg}' of entry point '{fn.name}' has "
                                   "no annotation: annotate every argument (Param[...], "
                                   "Data[...] or float) or none")
        seen = set()
        for p in a.args:
            if p.arg in seen:
                raise Located(p, f"duplicate argument '{p.arg}'")
            seen.add(p.arg)

    # ------------------------------------------------------------ entry points

    def entry(self, fn: ast.FunctionDef) -> EntryPoint:
        """An entry point: its arguments as input nodes, its body as their function."""
        dims: dict[str, sympy.Symbol] = {}
        bindings: dict[str, tuple[str, int]] = {}
        args: list[Argument] = []
        for p in fn.args.args:
            role, arg_shape, decl = self.annotation(p.annotation, dims)
            node = make("input", name=p.arg, role=role, shape=arg_shape)
            args.append(Argument(p.arg, role, arg_shape, node, decl))
            for axis, d in enumerate(arg_shape):
                if d.is_Symbol and d.name not in bindings:
                    bindings[d.name] = (p.arg, axis)
        for name in dims:
            if name not in bindings:
                raise Located(fn, f"dimension '{name}' is used only inside expressions; "
                                  "it must also appear alone in some argument's shape")
        for a, p in zip(args, fn.args.args):
            if a.name in dims:
                raise Located(p, f"argument '{a.name}' has the same name as a dimension")
            self._check_new_name(p, a.name)
        names = {a.node: a.name for a in args}
        scope = Scope({a.name: a.node for a in args}, names, dims, fn.name)
        self.calls.start_entry(dims, tuple(a.node for a in args))
        self.budget.used += ENTRY_COST
        doc, ret, ret_stmt = self.body(fn, scope)
        if isinstance(ret, tuple):
            raise Located(ret_stmt.value, f"entry point '{fn.name}' must return a single "
                                          f"array, not a tuple of {len(ret)}")
        if ret.dtype == "bool":
            raise Located(ret_stmt.value, "an entry point must return numbers, not a "
                                          "comparison; use where(condition, a, b)")
        if ret.dtype == INT:
            raise Located(ret_stmt.value, "an entry point must return floating-point "
                                          "numbers, not integers; use float(...)")
        ret_line, ret_col = self.src.position(ret_stmt.value)
        return EntryPoint(fn.name, doc, args, ret, names, fn.lineno, ret_line, ret_col, bindings)

    def annotation(self, ann, dims: dict) -> tuple[str, tuple, str]:
        """The role, shape and written form of an argument's annotation."""
        decl = ast.unparse(ann) if ann is not None else ""
        if isinstance(ann, ast.Name) and ann.id in ("float", "int"):
            return ("data" if ann.id == "float" else "index"), (), decl
        if not (isinstance(ann, ast.Subscript) and isinstance(ann.value, ast.Name)
                and ann.value.id in ANNOTATIONS):
            raise Located(ann, f"unknown annotation '{decl}': use Param[...], Data[...], "
                               "Index[...], float or int")
        role = {"Param": "param", "Index": "index"}.get(ann.value.id, "data")
        items = ann.slice.elts if isinstance(ann.slice, ast.Tuple) else [ann.slice]
        return role, shape(ann.slice, items, dims, create=True), decl

    # ------------------------------------------------------------ function bodies

    def body(self, fn: ast.FunctionDef,
             scope: Scope) -> tuple[str | None, Node | tuple, ast.Return]:
        """Lower the statements of a function: (docstring, returned value, return statement)."""
        stmts = list(fn.body)
        doc = None
        if stmts and is_docstring(stmts[0]):
            doc = stmts[0].value.value
            stmts = stmts[1:]
        for i, stmt in enumerate(stmts):
            # Nodes of an inlined helper are attributed to the statement that calls it.
            origin = None if scope.helper else self.src.origin(stmt)
            with ir.builder().at(origin=origin):
                if isinstance(stmt, ast.Return):
                    if i != len(stmts) - 1:
                        raise Located(stmts[i + 1], "unreachable statement after 'return'")
                    return doc, self._returned(stmt, scope), stmt
                if isinstance(stmt, ast.Assign):
                    self.assign(stmt, scope)
                elif isinstance(stmt, ast.AugAssign) and isinstance(stmt.target, ast.Subscript):
                    self.update(stmt.target, stmt, scope)
                else:
                    raise Located(stmt, statement_error(stmt, top_level=False))
        raise Located(fn, f"function '{fn.name}' has no 'return' statement")

    def _returned(self, stmt: ast.Return, scope: Scope) -> Node | tuple:
        if stmt.value is None:
            raise Located(stmt, "'return' needs a value")
        if isinstance(stmt.value, ast.Tuple):
            return tuple(self.expressions.array(e, scope) for e in stmt.value.elts)
        return self.expressions.value(stmt.value, scope)

    def assign(self, stmt: ast.Assign, scope: Scope) -> None:
        """`name = value` or `a, b = helper(...)`."""
        if len(stmt.targets) != 1:
            raise Located(stmt, "chained assignment is not supported")
        target = stmt.targets[0]
        value = self.expressions.value(stmt.value, scope)
        if isinstance(target, ast.Name):
            if isinstance(value, tuple):
                raise Located(stmt.value, f"this returns a tuple of {len(value)} arrays; "
                                          "unpack it: a, b = ...")
            self.bind(target, value, scope)
        elif isinstance(target, ast.Tuple) and all(isinstance(t, ast.Name) for t in target.elts):
            if not isinstance(value, tuple):
                raise Located(stmt.value, f"cannot unpack a single array into "
                                          f"{len(target.elts)} names; only a helper that "
                                          "returns a tuple can be unpacked")
            if len(value) != len(target.elts):
                raise Located(stmt, f"cannot unpack {len(value)} values into "
                                    f"{len(target.elts)} names")
            for t, v in zip(target.elts, value):
                self.bind(t, v, scope)
        elif isinstance(target, ast.Subscript):
            self.update(target, stmt, scope, value)
        else:
            raise Located(target, "can only assign to a name (or unpack into names)")

    def update(self, target: ast.Subscript, stmt, scope: Scope, value=None) -> None:
        """`A[...] = v` or `A[...] += v` (`-=` too): `A` names a new value (arrays are values,
        nothing is mutated)."""
        if not (isinstance(target.value, ast.Name) and target.value.id in scope.env):
            raise Located(target.value, "only a variable or argument can be assigned into: "
                                        "A[...] = v")
        accumulate = isinstance(stmt, ast.AugAssign)
        if accumulate and not isinstance(stmt.op, (ast.Add, ast.Sub)):
            raise Located(stmt, "only A[...] = v, A[...] += v and A[...] -= v update a "
                                "subscript")
        if value is None:
            value = self.expressions.array(stmt.value, scope)
            if isinstance(stmt.op, ast.Sub):
                value = -value
        if isinstance(value, tuple):
            raise Located(stmt.value, f"expected an array, got a tuple of {len(value)} arrays")
        name = target.value.id
        scope.env[name] = self.expressions.assign_subscript(target, value, scope, accumulate)
        scope.names.setdefault(scope.env[name], name)

    def bind(self, target: ast.Name, value: Node, scope: Scope) -> None:
        """Give `value` the name `target` in `scope` (names are assigned once)."""
        name = target.id
        self._check_new_name(target, name)
        if name in scope.env:
            first = scope.lines.get(name)
            what = (f"is already assigned on line {first}" if first is not None
                    else f"is an argument of '{scope.function}'")
            raise Located(target, f"'{name}' {what}; names cannot be reassigned")
        if name in scope.dims:
            raise Located(target, f"'{name}' is a dimension; a variable may not share its name")
        scope.env[name] = value
        scope.lines[name] = target.lineno
        scope.names.setdefault(value, name)

    def _check_new_name(self, node, name: str) -> None:
        if name in BUILTINS or name in CONSTANTS or name in ANNOTATIONS:
            raise Located(node, f"'{name}' is a built-in name and cannot be assigned")
        if name in self.functions:
            raise Located(node, f"'{name}' is a function and cannot be assigned")
        # Any other Python identifier is fine, `np` and `_sigmoid` included: the emitted
        # module renames its own names around the user's (codegen/naming.ModuleNamer).
