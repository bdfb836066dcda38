"""A syntax tree to entry points: functions, signatures, statements and names.

Every function of the source is a helper (inlined where it is called) or, when its
arguments are annotated, an entry point: its arguments become `input` nodes and its body
is lowered statement by statement into the IR (expressions by `expressions.Expressions`).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field

from .. import ir
from ..errors import Diagnostic, ShapeError
from ..ir import Node, make
from ..ops import BUILTINS
from ..ops.dtypes import INT
from .calls import NOT_A_CONDITION, Calls
from .expressions import Expressions
from .locations import AT_SIGN, DEF_NAME, Located, LocatedMany, SourceFile, source_lines
from .loops import LoopLocal, lower_loop
from .parse import (
    ANNOTATIONS,
    BINOPS,
    CONSTANTS,
    ENTRY_COST,
    is_docstring,
    op_symbol,
    statement_error,
)
from .scope import Budget, Poisoned, Scope, poison_statement
from .static import Dims, module_constant, shape, sizes_bound

_FIXED_ARGUMENTS = "a function takes a fixed list of plain arguments"
# The most diagnostics one run reports (SPEC §5: all independent errors, up to 20).
MAX_ERRORS = 20


class _TooMany(Exception):
    """Internal: MAX_ERRORS diagnostics are collected; the lowering stops."""


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
    dims: dict = field(default_factory=dict)     # name -> dims.Binding (arg, axis, declared)
    requirements: list = field(default_factory=list)   # dims.Requirement, checked at entry

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


def _constant(stmt, constants: dict, check_new_name) -> bool:
    """`EPS = 1e-8` at the top level: a module-level constant, folded into `constants` here
    (never evaluated), usable in every function (and as a size when it is an integer)."""
    if not (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1
            and isinstance(stmt.targets[0], ast.Name)):
        return False
    target = stmt.targets[0]
    check_new_name(target, target.id)
    constants[target.id] = module_constant(stmt.value, constants)
    return True


def _is_entry(fn: ast.FunctionDef) -> bool:
    return bool(fn.args.args) and all(p.annotation is not None for p in fn.args.args)


class Lowering:
    """Lowers one program: its functions, entry points and statements."""

    def __init__(self, src: SourceFile, max_operations: int):
        self.src = src
        self.functions: dict[str, ast.FunctionDef] = {}
        budget = Budget(max_operations)
        self.budget = budget
        # Functions whose definition is in error (reported once): calls of them are
        # skipped silently, as are statements reading a name whose assignment failed.
        self.broken: set[str] = set()
        self.errors: list[Located] = []
        self._seen: set = set()
        self.calls = Calls(self.functions, budget, self.body, self.broken)
        self.expressions = Expressions(self.functions, budget, self.calls)
        self.constants: dict[str, int | float] = {}   # module-level: name -> value
        self.expressions.constants = self.constants

    def fail(self, e: Located) -> None:
        """Record an error and go on with the next independent part of the source (up to
        MAX_ERRORS; an error of the whole program, such as its size, ends the run)."""
        key = (getattr(e.node, "lineno", 0), getattr(e.node, "col_offset", 0), e.part,
               e.full_message())
        if key not in self._seen:
            self._seen.add(key)
            self.errors.append(e)
        if e.fatal or len(self.errors) >= MAX_ERRORS:
            raise _TooMany

    # ------------------------------------------------------------ module

    def program(self, tree: ast.Module, text: str) -> Program:
        """The entry points of a module. Every independent error is collected (up to
        MAX_ERRORS) and raised together as `LocatedMany`."""
        try:
            entries = self._entries(tree)
        except _TooMany:
            entries = []
        if self.errors:
            raise LocatedMany(self.errors)
        if not entries:
            raise Located(tree.body[0] if tree.body else tree,
                          "no entry point: annotate the arguments of at least one function "
                          "with Param[...] or Data[...]")
        return Program(self.src.filename, text, entries)

    def _entries(self, tree: ast.Module) -> list[EntryPoint]:
        body = list(tree.body)
        if body and is_docstring(body[0]):
            body = body[1:]
        for stmt in body:
            try:
                self._define(stmt)
            except Located as e:
                self.fail(e)
        entries = []
        for fn in self.functions.values():
            if not _is_entry(fn) or fn.name in self.broken:
                continue
            try:
                if fn.name.startswith("__") and fn.name.endswith("__"):
                    # `def __builtins__` or `def __getattr__` in the emitted module would
                    # change how Python runs it; Python reserves these names for itself.
                    raise Located(fn, f"entry point '{fn.name}': names of the form __name__ "
                                      "are reserved by Python", part=DEF_NAME)
                entries.append(self.entry(fn))
            except Located as e:
                self.fail(e)
            except Poisoned:
                pass     # its error is reported already
        return entries

    def _define(self, stmt) -> None:
        """Register a top-level function (its signature checked) or module constant."""
        if _constant(stmt, self.constants, self._check_new_name):
            return
        if not isinstance(stmt, ast.FunctionDef):
            raise Located(stmt, statement_error(stmt, top_level=True))
        if stmt.name in self.constants:
            raise Located(stmt, f"'{stmt.name}' is a module-level constant and cannot "
                                "also be a function", part=DEF_NAME)
        if stmt.name in self.functions:
            raise Located(stmt, f"function '{stmt.name}' is defined twice (first on line "
                                f"{self.functions[stmt.name].lineno})", part=DEF_NAME)
        if stmt.name in BUILTINS or stmt.name in ANNOTATIONS or stmt.name in CONSTANTS:
            raise Located(stmt, f"'{stmt.name}' is a built-in name and cannot be "
                                "redefined", part=DEF_NAME)
        self.functions[stmt.name] = stmt
        try:
            _check_signature(stmt)
        except Located:
            self.broken.add(stmt.name)
            raise

    # ------------------------------------------------------------ entry points

    def entry(self, fn: ast.FunctionDef) -> EntryPoint:
        """An entry point: its arguments as input nodes, its body as their function."""
        dims = Dims(self.constants)
        args: list[Argument] = []
        broken = False      # an annotation is in error (reported; the others are checked)
        for p in fn.args.args:
            try:
                role, arg_shape, decl = self.annotation(p.annotation, dims)
            except Located as e:
                self.fail(e)
                broken = True
                continue
            node = make("input", name=p.arg, role=role, shape=arg_shape)
            args.append(Argument(p.arg, role, arg_shape, node, decl))
        if broken:
            # The body is not checked: the dimensions it may use are not all known.
            raise Poisoned
        bindings = sizes_bound(fn, args)
        for a, p in zip(args, fn.args.args):
            if a.name in dims:
                raise Located(p, f"argument '{a.name}' has the same name as a dimension")
            self._check_new_name(p, a.name)
        names = {a.node: a.name for a in args}
        scope = Scope({a.name: a.node for a in args}, names, dims, fn.name,
                      bindings={a.name: 1 for a in args})
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
        return EntryPoint(fn.name, doc, args, ret, names, fn.lineno, ret_line, ret_col, bindings,
                          list(dims.requirements))

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
        """Lower the statements of a function: (docstring, returned value, return statement).

        In an entry point, a statement in error is recorded (`fail`) and the names it
        assigns are poisoned, so that the statements after it are still checked; in a
        helper the first error is raised (to the statement calling it).
        """
        stmts = list(fn.body)
        doc = None
        if stmts and is_docstring(stmts[0]):
            doc = stmts[0].value.value
            stmts = stmts[1:]
        collect = not scope.helper
        for i, stmt in enumerate(stmts):
            # Nodes of an inlined helper are attributed to the statement that calls it.
            origin = None if scope.helper else self.src.origin(stmt)
            try:
                with ir.builder().at(origin=origin):
                    if isinstance(stmt, ast.Return):
                        if i != len(stmts) - 1:
                            unreachable = Located(stmts[i + 1],
                                                  "unreachable statement after 'return'")
                            if not collect:
                                raise unreachable
                            self.fail(unreachable)
                        return doc, self._returned(stmt, scope), stmt
                    self.statement(stmt, scope)
            except (Located, Poisoned) as e:
                if not collect or getattr(e, "fatal", False):
                    raise
                if isinstance(e, Located):
                    self.fail(e)
                if isinstance(stmt, ast.Return):
                    raise Poisoned from None     # the entry point has no value to compile
                poison_statement(stmt, scope)
        raise Located(fn, f"function '{fn.name}' has no 'return' statement")

    def statement(self, stmt, scope: Scope) -> None:
        """An assignment or a loop (a `return` is the caller's)."""
        kind = {ast.Assign: self.assign, ast.AugAssign: self.augmented}.get(type(stmt))
        if kind is None and not isinstance(stmt, ast.For):
            raise Located(stmt, statement_error(stmt, top_level=False))
        kind(stmt, scope) if kind is not None else lower_loop(self, stmt, scope)

    def _returned(self, stmt: ast.Return, scope: Scope) -> Node | tuple:
        if stmt.value is None:
            raise Located(stmt, "'return' needs a value")
        if isinstance(stmt.value, ast.Tuple):
            return tuple(self.expressions.array(e, scope) for e in stmt.value.elts)
        return self.expressions.value(stmt.value, scope)

    def assign(self, stmt: ast.Assign, scope: Scope) -> None:
        """`name = value`, `a, b = helper(...)` or `A[index] = value`."""
        if len(stmt.targets) != 1:
            raise Located(stmt, "chained assignment is not supported")
        target = stmt.targets[0]
        if isinstance(target, ast.Subscript):
            self.update(target, None, stmt.value, scope)
            return
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
        else:
            raise Located(target, "can only assign to a name, unpack into names, or "
                                  "assign to a subscript of a name (A[i] = v)")

    def augmented(self, stmt: ast.AugAssign, scope: Scope) -> None:
        """`x op= v` is `x = x op v` (a new value; nothing is mutated), and `A[index] op= v`
        the functional update of those entries."""
        target = stmt.target
        if type(stmt.op) not in BINOPS:
            raise Located(stmt, f"augmented assignment '{op_symbol(stmt.op)}=' is not "
                                "supported (only += -= *= /= **= @=)")
        if isinstance(target, ast.Subscript):
            self.update(target, stmt.op, stmt.value, scope)
            return
        if not isinstance(target, ast.Name):
            raise Located(target, "can only assign to a name or to a subscript of a name")
        # The expression `x op v`, located where the statement writes it (an error in
        # the operator points at `op=`).
        read = ast.copy_location(ast.Name(id=target.id, ctx=ast.Load()), target)
        expr = ast.copy_location(ast.BinOp(left=read, op=stmt.op, right=stmt.value), stmt)
        self.bind(target, self.expressions.array(expr, scope), scope)

    def update(self, target: ast.Subscript, op, rhs, scope: Scope) -> None:
        """`A[index] = v` (op None) or `A[index] op= v`: a new value of `A` with those
        entries replaced (or incremented), bound to the name `A` (SPEC §1, subscript
        assignment). `+=` and `-=` add into the entries; other operators replace them with
        `A[index] op v`."""
        base = target.value
        if not isinstance(base, ast.Name):
            raise Located(target, "can only assign to a subscript of a name (A[i] = v)")
        how = {None: "=", ast.Add: "+=", ast.Sub: "-="}.get(None if op is None else type(op))
        if how is not None:
            value = self.expressions.array(rhs, scope)
        else:
            # `A[index] op v`, written where the statement writes it.
            read = ast.copy_location(ast.Subscript(value=base, slice=target.slice,
                                                   ctx=ast.Load()), target)
            expr = ast.copy_location(ast.BinOp(left=read, op=op, right=rhs), target)
            value = self.expressions.array(expr, scope)
            how = "="
        if value.dtype == "bool":
            raise Located(rhs, NOT_A_CONDITION, context=True)
        if how == "-=":
            value = -value
        try:
            new = self.expressions.assign_subscript(target, value, scope, how != "=")
        except ShapeError as e:
            raise Located(target.slice, str(e), context=True) from None
        self.bind(base, new, scope)

    def bind(self, target: ast.Name, value: Node, scope: Scope) -> None:
        """Give `value` the name `target` in `scope`. A name means its latest binding; the
        emitted code names the k-th value bound to `x` `x_k` (the first one `x`)."""
        name = target.id
        self._check_new_name(target, name)
        if name in scope.dims:
            raise Located(target, f"'{name}' is a dimension; a variable may not share its name")
        if name not in scope.env or isinstance(scope.env[name], LoopLocal):
            scope.lines[name] = target.lineno
        scope.env[name], scope.last_target[name] = value, target
        if value not in scope.names:   # (`c = b` gives b's node no second name)
            k = scope.bindings.get(name, 0) + 1
            scope.bindings[name] = k
            scope.names[value] = name if k == 1 else f"{name}_{k}"

    def _check_new_name(self, node, name: str) -> None:
        # A built-in function or constant may be shadowed (`mean = mean(x)`): from there
        # on the name is the variable (`Calls.callee` says so if it is called).
        if name in ANNOTATIONS:
            raise Located(node, f"'{name}' is a built-in name and cannot be assigned")
        if name in self.functions:
            raise Located(node, f"'{name}' is a function and cannot be assigned")
        # Any other Python identifier is fine, `np` and `_sigmoid` included: the emitted
        # module renames its own names around the user's (codegen/naming.ModuleNamer).


def _check_signature(fn: ast.FunctionDef) -> None:
    """Only plain arguments, all annotated or none, each named once."""
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

