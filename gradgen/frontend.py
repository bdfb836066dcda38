"""Frontend: whitelisted Python `ast` nodes to IR builder calls, helpers inlined.

The source is parsed, never executed, imported or evaluated. Every construct that the
language does not allow is reported with a file, line and column. Expression traversal
uses an explicit stack, so deeply nested sources cannot exhaust Python's recursion limit.
"""

from __future__ import annotations

import ast
import gc
import keyword
import math
import re
import sys
import threading
import warnings
from dataclasses import dataclass, field

import sympy

from . import ir
from .dims import dim_symbol
from .errors import CompileError, Diagnostic, InternalError, ShapeError
from .ir import Node, Origin, const, make
from .ops import BUILTINS
from .ops.constants import scalar_array
from .ops.registry import AXIS_ARG, DIM_ARG, FLAG_ARG, SHAPE_ARG, SPEC_ARG, STATIC_KINDS

__all__ = ["MAX_OPERATIONS", "MAX_SOURCE_BYTES", "Argument", "EntryPoint", "Program",
           "parse_program", "source_lines"]

MAX_SOURCE_BYTES = 16 * 1024 * 1024
# Operations (operators, calls, indexing; after inlining helpers) per program, each entry
# point counting as ENTRY_COST more. Differentiating and emitting cost about 0.3 ms per
# operation: far beyond this a compilation would take minutes, so the source is refused
# with a diagnostic instead (20,000 chained additions are well within it).
MAX_OPERATIONS = 50_000
ENTRY_COST = 10
# Each array in a list argument (concatenate, stack, einsum) counts as this many: the
# derivatives slice them at offsets that are dimension expressions (about 3 ms each).
LIST_ITEM_COST = 10
MAX_HELPER_DEPTH = 64
# Static arguments (SPEC §5 limits): dimension expressions stay small, so that comparing
# shapes (sympy expansion of their sizes) is cheap whatever the source says.
MAX_NDIM = 64                  # dimensions of a shape (NumPy's own limit)
MAX_DIM_LEAVES = 16            # names and numbers in one dimension expression
MAX_SHAPE_TERMS = 64           # terms the size of a written shape may expand to
MAX_DIM_VALUE = 2 ** 63 - 1    # no array has more elements than an int64 counts
MAX_SPEC_CHARS = 10_000        # einsum subscripts
_DIM_OPS = (ast.Add, ast.Sub, ast.Mult, ast.FloorDiv)
PARSE_STACK_BYTES = 512 * 1024 * 1024
PARSE_RECURSION_LIMIT = 400_000

CONSTANTS = {"pi": sympy.pi, "e": sympy.E}
ANNOTATIONS = ("Param", "Data")

_BINOPS = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.Div: "div", ast.Pow: "pow",
           ast.MatMult: "matmul"}
_CMPOPS = {ast.Lt: "lt", ast.LtE: "le", ast.Gt: "gt", ast.GtE: "ge", ast.Eq: "eq",
           ast.NotEq: "ne"}
_UNSUPPORTED_STMT = {
    ast.For: "loops are not supported; write vectorized operations",
    ast.AsyncFor: "loops are not supported; write vectorized operations",
    ast.While: "loops are not supported; write vectorized operations",
    ast.If: "'if' statements are not supported; use where(condition, a, b)",
    ast.Import: "imports are not supported (the source is never executed)",
    ast.ImportFrom: "imports are not supported (the source is never executed)",
    ast.AnnAssign: "annotated assignments are not supported; annotate function arguments only",
    ast.ClassDef: "classes are not supported",
    ast.With: "'with' statements are not supported",
    ast.Try: "'try' statements are not supported",
    ast.Raise: "'raise' is not supported",
    ast.Assert: "'assert' is not supported",
    ast.Delete: "'del' is not supported",
    ast.Global: "'global' is not supported",
    ast.Nonlocal: "'nonlocal' is not supported",
    ast.Pass: "'pass' is not supported",
    ast.Break: "'break' is not supported",
    ast.Continue: "'continue' is not supported",
    ast.AsyncFunctionDef: "async functions are not supported",
}
_UNSUPPORTED_EXPR = {
    ast.IfExp: "conditional expressions are not supported; use where(condition, a, b)",
    ast.Lambda: "lambda expressions are not supported",
    ast.BoolOp: "'and'/'or' are not supported; combine conditions with where",
    ast.Dict: "dictionaries are not supported",
    ast.Set: "sets are not supported",
    ast.ListComp: "comprehensions are not supported; write vectorized operations",
    ast.SetComp: "comprehensions are not supported; write vectorized operations",
    ast.DictComp: "comprehensions are not supported; write vectorized operations",
    ast.GeneratorExp: "comprehensions are not supported; write vectorized operations",
    ast.Await: "'await' is not supported",
    ast.Yield: "'yield' is not supported",
    ast.YieldFrom: "'yield' is not supported",
    ast.NamedExpr: "assignment expressions (':=') are not supported",
    ast.JoinedStr: "strings are not supported here",
    ast.Starred: "'*' unpacking is not supported",
}
if hasattr(ast, "Match"):
    _UNSUPPORTED_STMT[ast.Match] = "'match' statements are not supported; use where"


@dataclass
class Argument:
    """A parameter of an entry point."""

    name: str
    role: str                  # "param" or "data"
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
        return [a for a in self.args if a.role == "param"]


@dataclass
class Program:
    filename: str
    source: str
    entries: list[EntryPoint]

    def diagnostic(self, line: int, col: int, message: str) -> Diagnostic:
        lines = source_lines(self.source)
        text = lines[line - 1] if 0 < line <= len(lines) else ""
        return Diagnostic(self.filename, line, col, message, text)


def source_lines(text: str) -> list[str]:
    """The physical lines of a source as Python numbers them.

    Only CR LF, CR and LF end a line: unlike `str.splitlines`, a form feed or U+2028 inside
    a comment or string does not shift the line numbers of what follows.
    """
    return _LINE_END.split(text)


_LINE_END = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True)
class _Loc:
    """A place in the source, as the AST gives it (`col_offset` counts UTF-8 bytes)."""

    lineno: int
    col_offset: int


class _Located(Exception):
    """Internal: an error message with its AST location."""

    def __init__(self, node, message: str, context: bool = False):
        super().__init__(message)
        self.node = node
        self.message = message
        # Errors that depend on the arguments of a helper (shapes, tuples, comparisons)
        # also say which call of the helper led to them.
        self.context = context
        self.helpers: list[str] = []
        self.call_line = 0

    def full_message(self) -> str:
        """The message, with the helper call it happened in when it is inside a helper."""
        if not self.helpers or not self.context:
            return self.message
        via = "".join(f" via '{h}'" for h in self.helpers[1:])
        return (f"{self.message} (in helper '{self.helpers[0]}', inlined{via} from line "
                f"{self.call_line})")


def parse_program(text: str, filename: str = "<string>") -> Program:
    """Parse and lower a source text. Must be called inside `ir.building()`."""
    text = text.removeprefix("\ufeff")
    lines = source_lines(text)

    def diag(line: int, col: int, message: str) -> CompileError:
        src = lines[line - 1] if 0 < line <= len(lines) else ""
        return CompileError(Diagnostic(filename, line, max(col, 1), message, src))

    if len(text.encode("utf-8", "surrogatepass")) > MAX_SOURCE_BYTES:
        raise diag(1, 1, f"source is larger than {MAX_SOURCE_BYTES // (1024 * 1024)} MB")
    # The syntax tree of a large source is millions of objects, none of them garbage:
    # letting the cyclic collector walk them again and again would cost more than the rest
    # of the work (half the time of parsing, most of the time of lowering).
    collecting = gc.isenabled()
    gc.disable()
    try:
        tree = _parse(text, filename, diag, lines)
        lowering = _Lowering(filename, lines, diag)
        try:
            return lowering.program(tree, text)
        except _Located as e:
            line, col = lowering.position(e.node)
            raise diag(line, col, e.full_message()) from None
    finally:
        if collecting:
            gc.enable()


def _parse(text: str, filename: str, diag, lines: list[str]) -> ast.Module:
    """`ast.parse` on a thread with a large stack, so deep nesting parses or fails cleanly."""
    bad = _BAD_CHAR.search(text)
    if bad:
        at = bad.start()
        line = len(source_lines(text[:at]))
        col = at - max(text.rfind("\n", 0, at), text.rfind("\r", 0, at))
        what = "a null character" if bad.group() == "\0" else \
            f"a lone surrogate (U+{ord(bad.group()):04X}), which is not valid Unicode"
        raise diag(line, col, f"the source contains {what}")
    result: dict = {}

    def run(big_stack: bool = True):
        old = sys.getrecursionlimit()
        try:
            if big_stack:
                sys.setrecursionlimit(max(old, PARSE_RECURSION_LIMIT))
            with warnings.catch_warnings():
                # Python's remarks on odd but valid syntax (`1if`, invalid escapes) are not
                # ours to print; what the language rejects is reported below.
                warnings.simplefilter("ignore")
                # The file name only labels our own diagnostics: Python never sees it
                # (it may hold a NUL or anything else a file system allows).
                result["tree"] = ast.parse(text, type_comments=False)
        except SyntaxError as e:
            result["syntax"] = e
        except (RecursionError, MemoryError) as e:
            result["deep"] = e
            result["deep_line"] = _deep_line(lines)
        except Exception as e:  # noqa: BLE001 - re-raised below, on the calling thread
            result["error"] = e
        finally:
            sys.setrecursionlimit(old)

    try:
        old_size = threading.stack_size()
        try:
            threading.stack_size(PARSE_STACK_BYTES)
            t = threading.Thread(target=run, name="gradgen-parse")
        finally:
            threading.stack_size(old_size)
        t.start()
    except (RuntimeError, ValueError, MemoryError):
        # No thread with a large stack on this system: parse here, on the usual stack
        # (deep nesting is then refused a little earlier, still without a crash).
        result.clear()
        run(big_stack=False)
    else:
        t.join()
    if "error" in result:
        raise result["error"]
    if "syntax" in result:
        e = result["syntax"]
        msg = e.msg or "invalid syntax"
        if msg.startswith("too many nested parentheses"):
            msg = "too many nested parentheses (Python's parser allows at most 200 levels)"
        line = e.lineno or 1
        text_line = lines[line - 1] if 0 < line <= len(lines) else ""
        col = e.offset or 1
        if isinstance(e, IndentationError) and msg in _AT_FIRST_NON_BLANK:
            col = len(text_line) - len(text_line.lstrip(" \t\f")) + 1   # the first non-blank
        col = min(max(col, 1), len(text_line) + 1)
        raise diag(line, col, f"syntax error: {msg}")
    if "deep" in result:
        found = result.get("deep_line")
        if found is None:
            raise diag(1, 1, "the source is too large or too deeply nested to parse")
        line, col = found
        raise diag(line, col, "expression is nested too deeply to parse; split it into "
                              "several assignments")
    return result["tree"]


# Python puts the column of these at the end of the indentation or of the line.
_AT_FIRST_NON_BLANK = ("unexpected indent", "unindent does not match any outer indentation level")
_BAD_CHAR = re.compile("[\0\ud800-\udfff]")
DEEP_LINE_CHARS = 1000   # nesting deep enough to overflow the parser needs a line this long
DEEP_LINE_PROBES = 200


def _deep_line(lines: list[str]) -> tuple[int, int] | None:
    """Where the parser gave up on deep nesting: the first long line that alone fails."""
    probes = 0
    for i, line in enumerate(lines):
        if len(line) < DEEP_LINE_CHARS:
            continue
        probes += 1
        if probes > DEEP_LINE_PROBES:
            break
        stripped = line.lstrip(" \t\f")
        try:
            ast.parse(stripped)
        except (RecursionError, MemoryError):
            return i + 1, len(line) - len(stripped) + 1
        except (SyntaxError, ValueError):
            continue
    return None


class _Lowering:
    def __init__(self, filename: str, lines: list[str], diag):
        self.filename = filename
        self.lines = lines
        self.diag = diag
        self.functions: dict[str, ast.FunctionDef] = {}
        self.helper_stack: list[str] = []
        self.entry_dims: dict = {}
        self.entry_inputs: tuple = ()
        self.inlined: dict = {}        # (helper, argument nodes) -> result, per entry point
        self.operations = 0            # IR operations built so far (see MAX_OPERATIONS)

    # ------------------------------------------------------------ locations

    def position(self, node) -> tuple[int, int]:
        """1-based line and character column of an AST node."""
        line = getattr(node, "lineno", 1) or 1
        offset = getattr(node, "col_offset", 0) or 0
        text = self.lines[line - 1] if 0 < line <= len(self.lines) else ""
        col = len(text.encode("utf-8")[:offset].decode("utf-8", "replace")) + 1
        return line, col

    def operator(self, node):
        """Where the operator of a binary operation or comparison is written.

        The AST only locates the whole expression (which starts with its left operand, the
        same place for every `+` of `a + b + c`); the operator is the first character
        after the left operand that is not a space, a bracket or a comment.
        """
        if isinstance(node, ast.BinOp):
            left, right = node.left, node.right
        elif isinstance(node, ast.Compare):
            left, right = node.left, node.comparators[0]
        else:
            return node
        line, offset = left.end_lineno, left.end_col_offset
        while line and line <= min(right.lineno, len(self.lines)):
            data = self.lines[line - 1].encode("utf-8")
            stop = right.col_offset if line == right.lineno else len(data)
            while offset < stop:
                ch = data[offset:offset + 1]
                if ch == b"#":
                    break
                if ch not in b" \t\f()\\":
                    return _Loc(line, offset)
                offset += 1
            line, offset = line + 1, 0
        return node

    def origin(self, stmt) -> Origin:
        line = stmt.lineno
        text = self.lines[line - 1].strip() if 0 < line <= len(self.lines) else ""
        return Origin(line, text)

    # ------------------------------------------------------------ module

    def program(self, tree: ast.Module, text: str) -> Program:
        body = list(tree.body)
        if body and _is_docstring(body[0]):
            body = body[1:]
        for stmt in body:
            if isinstance(stmt, ast.FunctionDef):
                if stmt.name in self.functions:
                    raise _Located(self._def_name(stmt), f"function '{stmt.name}' is defined "
                                   f"twice (first on line {self.functions[stmt.name].lineno})")
                if stmt.name in BUILTINS or stmt.name in ANNOTATIONS or stmt.name in CONSTANTS:
                    raise _Located(self._def_name(stmt), f"'{stmt.name}' is a built-in name and "
                                                         "cannot be redefined")
                self._check_signature(stmt)
                self.functions[stmt.name] = stmt
            else:
                raise _Located(stmt, _statement_error(stmt, top_level=True))
        entries = [self.entry(fn) for fn in self.functions.values() if _is_entry(fn)]
        for fn in self.functions.values():
            if _is_entry(fn) and fn.name.startswith("__") and fn.name.endswith("__"):
                # `def __builtins__` or `def __getattr__` in the emitted module would change
                # how Python runs it; Python reserves these names for itself.
                raise _Located(self._def_name(fn), f"entry point '{fn.name}': names of the "
                                                   "form __name__ are reserved by Python")
        if not entries:
            raise _Located(tree.body[0] if tree.body else tree,
                           "no entry point: annotate the arguments of at least one function "
                           "with Param[...] or Data[...]")
        return Program(self.filename, text, entries)

    def _check_signature(self, fn: ast.FunctionDef) -> None:
        a = fn.args
        if fn.decorator_list:
            raise _Located(self._at_sign(fn.decorator_list[0]), "decorators are not supported")
        if a.vararg is not None:
            raise _Located(a.vararg, f"'*{a.vararg.arg}' is not supported: a function takes a "
                                     "fixed list of plain arguments")
        if a.kwarg is not None:
            raise _Located(a.kwarg, f"'**{a.kwarg.arg}' is not supported: a function takes a "
                                    "fixed list of plain arguments")
        if a.kwonlyargs:
            raise _Located(a.kwonlyargs[0], "keyword-only arguments are not supported: a "
                                            "function takes a fixed list of plain arguments")
        if a.posonlyargs:
            raise _Located(a.posonlyargs[0], "positional-only arguments ('/') are not supported: "
                                             "a function takes a fixed list of plain arguments")
        if a.defaults:
            raise _Located(a.defaults[0], "default argument values are not supported")
        annotated = [p.annotation is not None for p in a.args]
        if any(annotated) and not all(annotated):
            missing = next(p for p in a.args if p.annotation is None)
            raise _Located(missing, f"argument '{missing.arg}' of entry point '{fn.name}' has "
                                    "no annotation: annotate every argument (Param[...], "
                                    "Data[...] or float) or none")
        seen = set()
        for p in a.args:
            if p.arg in seen:
                raise _Located(p, f"duplicate argument '{p.arg}'")
            seen.add(p.arg)

    def _def_name(self, fn):
        """The name in `def name(...)`."""
        line = fn.lineno
        data = self.lines[line - 1].encode("utf-8") if 0 < line <= len(self.lines) else b""
        m = re.compile(rb"def\s+").match(data, fn.col_offset)
        return _Loc(line, m.end()) if m else fn

    def _at_sign(self, decorator):
        """The '@' in front of a decorator expression (on the same line, before it)."""
        line = decorator.lineno
        data = self.lines[line - 1].encode("utf-8") if 0 < line <= len(self.lines) else b""
        at = data.rfind(b"@", 0, decorator.col_offset)
        return _Loc(line, at) if at >= 0 else decorator

    # ------------------------------------------------------------ entry points

    def entry(self, fn: ast.FunctionDef) -> EntryPoint:
        dims: dict[str, sympy.Symbol] = {}
        bindings: dict[str, tuple[str, int]] = {}
        args: list[Argument] = []
        for p in fn.args.args:
            role, shape, decl = self.annotation(p.annotation, dims)
            node = make("input", name=p.arg, role=role, shape=shape)
            args.append(Argument(p.arg, role, shape, node, decl))
            for axis, d in enumerate(shape):
                if d.is_Symbol and d.name not in bindings:
                    bindings[d.name] = (p.arg, axis)
        for name in dims:
            if name not in bindings:
                raise _Located(fn, f"dimension '{name}' is used only inside expressions; "
                                   "it must also appear alone in some argument's shape")
        for a, p in zip(args, fn.args.args):
            if a.name in dims:
                raise _Located(p, f"argument '{a.name}' has the same name as a dimension")
            self._check_new_name(p, a.name)
        env = {a.name: a.node for a in args}
        names = {a.node: a.name for a in args}
        scope = _Scope(env, names, dims, fn.name)
        self.entry_dims = dims
        self.entry_inputs = tuple(a.node for a in args)
        self.inlined = {}
        self.operations += ENTRY_COST
        doc, ret, ret_stmt = self.body(fn, scope)
        if isinstance(ret, tuple):
            raise _Located(ret_stmt.value, f"entry point '{fn.name}' must return a single "
                                           f"array, not a tuple of {len(ret)}")
        if ret.dtype == "bool":
            raise _Located(ret_stmt.value, "an entry point must return numbers, not a "
                                           "comparison; use where(condition, a, b)")
        ret_line, ret_col = self.position(ret_stmt.value)
        return EntryPoint(fn.name, doc, args, ret, names, fn.lineno, ret_line, ret_col, bindings)

    def annotation(self, ann, dims) -> tuple[str, tuple, str]:
        decl = ast.unparse(ann) if ann is not None else ""
        if isinstance(ann, ast.Name) and ann.id == "float":
            return "data", (), decl
        if not (isinstance(ann, ast.Subscript) and isinstance(ann.value, ast.Name)
                and ann.value.id in ANNOTATIONS):
            raise _Located(ann, f"unknown annotation '{decl}': use Param[...], Data[...] "
                                "or float")
        role = "param" if ann.value.id == "Param" else "data"
        items = ann.slice.elts if isinstance(ann.slice, ast.Tuple) else [ann.slice]
        return role, self.shape(ann.slice, items, dims, create=True), decl

    def shape(self, node, items, dims, create: bool) -> tuple:
        """The dimensions `items` of a shape written at `node`, each checked by `dim`."""
        if len(items) > MAX_NDIM:
            raise _Located(node, f"a shape may have at most {MAX_NDIM} dimensions")
        shape, terms = [], 1
        for item in items:
            d, t = self.dim(item, dims, create)
            shape.append(d)
            terms *= t
            if terms > MAX_SHAPE_TERMS:
                raise _Located(item, "this shape is too complex: its size would expand to "
                                     f"more than {MAX_SHAPE_TERMS} terms")
        return tuple(shape)

    def dim(self, node, dims, create: bool) -> tuple[sympy.Expr, int]:
        """A dimension expression: names, positive integer literals and `+ - * //` of them.

        Names are dimensions (`create`: new ones are declared, as in an annotation; else
        they must exist, as in a shape argument). Returns the value and a bound on the
        number of terms it expands to. Only structurally valid, small, positive
        expressions get through: at most MAX_DIM_LEAVES names and numbers, each number at
        most MAX_DIM_VALUE.
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
                done.append(self._dim_op(item, a, b, ta, tb))
                continue
            leaves += 1
            if leaves > MAX_DIM_LEAVES:
                raise _Located(item, "dimension expression is too long (at most "
                                     f"{MAX_DIM_LEAVES} names and numbers)")
            done.append((self._dim_leaf(item, dims, create), 1))
        return done[0]

    def _dim_leaf(self, node, dims, create: bool) -> sympy.Expr:
        if isinstance(node, ast.Name):
            if node.id in dims:
                return dims[node.id]
            if node.id in BUILTINS or node.id in CONSTANTS or keyword.iskeyword(node.id):
                raise _Located(node, f"'{node.id}' cannot be used as a dimension name")
            if create:
                return dims.setdefault(node.id, dim_symbol(node.id))
            raise _Located(node, f"'{node.id}' is not a dimension: a shape is made of the "
                                 "dimensions of the entry point's arguments and positive "
                                 "integers")
        if isinstance(node, ast.Constant) and type(node.value) is int:
            if node.value <= 0:
                raise _Located(node, f"dimensions must be positive, got {node.value}")
            if node.value > MAX_DIM_VALUE:
                raise _Located(node, f"dimension {node.value} is too large (at most "
                                     "2**63 - 1)")
            return sympy.Integer(node.value)
        if (isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub)
                and isinstance(node.operand, ast.Constant) and type(node.operand.value) is int):
            raise _Located(node, f"dimensions must be positive, got -{node.operand.value}")
        if isinstance(node, ast.BinOp):
            raise _Located(self.operator(node), f"operator '{_op_symbol(node.op)}' is not "
                           "allowed in a dimension (only +, -, * and //)")
        if isinstance(node, (ast.Tuple, ast.List)):
            raise _Located(node, "a dimension must be a name, a positive integer or an "
                                 "arithmetic expression of them, not a tuple")
        if isinstance(node, ast.Constant):
            what = "None" if node.value is None else type(node.value).__name__
            raise _Located(node, f"a dimension must be a name, a positive integer or an "
                                 f"arithmetic expression of them, not {what}")
        raise _Located(node, "a dimension must be a name, a positive integer or an arithmetic "
                             "expression of them")

    def _dim_op(self, node, a, b, ta: int, tb: int) -> tuple[sympy.Expr, int]:
        op = type(node.op)
        value = (a + b if op is ast.Add else a * b if op is ast.Mult else a - b
                 if op is ast.Sub else sympy.floor(a / b))
        terms = ta + tb if op in (ast.Add, ast.Sub) else ta * tb
        if value.is_positive is False:
            raise _Located(self.operator(node), "dimensions must be positive" + (
                f", got {value}" if value.is_Integer else ""))
        if any(abs(n) > MAX_DIM_VALUE for n in value.atoms(sympy.Number)):
            raise _Located(self.operator(node), "this dimension is too large (at most "
                                                "2**63 - 1)")
        return value, terms

    # ------------------------------------------------------------ function bodies

    def body(self, fn: ast.FunctionDef, scope: _Scope):
        stmts = list(fn.body)
        doc = None
        if stmts and _is_docstring(stmts[0]):
            doc = stmts[0].value.value
            stmts = stmts[1:]
        for i, stmt in enumerate(stmts):
            # Nodes of an inlined helper are attributed to the statement that calls it.
            origin = None if self.helper_stack else self.origin(stmt)
            with ir.builder().at(origin=origin):
                if isinstance(stmt, ast.Return):
                    if i != len(stmts) - 1:
                        raise _Located(stmts[i + 1], "unreachable statement after 'return'")
                    if stmt.value is None:
                        raise _Located(stmt, "'return' needs a value")
                    if isinstance(stmt.value, ast.Tuple):
                        value = tuple(self.array(e, scope) for e in stmt.value.elts)
                    else:
                        value = self.value(stmt.value, scope)
                    return doc, value, stmt
                if isinstance(stmt, ast.Assign):
                    self.assign(stmt, scope)
                else:
                    raise _Located(stmt, _statement_error(stmt, top_level=False))
        raise _Located(fn, f"function '{fn.name}' has no 'return' statement")

    def assign(self, stmt: ast.Assign, scope: _Scope) -> None:
        if len(stmt.targets) != 1:
            raise _Located(stmt, "chained assignment is not supported")
        target = stmt.targets[0]
        value = self.value(stmt.value, scope)
        if isinstance(target, ast.Name):
            if isinstance(value, tuple):
                raise _Located(stmt.value, f"this returns a tuple of {len(value)} arrays; "
                                           "unpack it: a, b = ...")
            self.bind(target, value, scope)
        elif isinstance(target, ast.Tuple) and all(isinstance(t, ast.Name) for t in target.elts):
            if not isinstance(value, tuple):
                raise _Located(stmt.value, f"cannot unpack a single array into "
                                           f"{len(target.elts)} names; only a helper that "
                                           "returns a tuple can be unpacked")
            if len(value) != len(target.elts):
                raise _Located(stmt, f"cannot unpack {len(value)} values into "
                                     f"{len(target.elts)} names")
            for t, v in zip(target.elts, value):
                self.bind(t, v, scope)
        else:
            raise _Located(target, "can only assign to a name (or unpack into names)")

    def bind(self, target: ast.Name, value: Node, scope: _Scope) -> None:
        name = target.id
        self._check_new_name(target, name)
        if name in scope.env:
            first = scope.lines.get(name)
            what = (f"is already assigned on line {first}" if first is not None
                    else f"is an argument of '{scope.function}'")
            raise _Located(target, f"'{name}' {what}; names cannot be reassigned")
        if name in scope.dims:
            raise _Located(target, f"'{name}' is a dimension; a variable may not share its name")
        scope.env[name] = value
        scope.lines[name] = target.lineno
        scope.names.setdefault(value, name)

    def _check_new_name(self, node, name: str) -> None:
        if name in BUILTINS or name in CONSTANTS or name in ANNOTATIONS:
            raise _Located(node, f"'{name}' is a built-in name and cannot be assigned")
        if name in self.functions:
            raise _Located(node, f"'{name}' is a function and cannot be assigned")
        # Any other Python identifier is fine, `np` and `_sigmoid` included: the emitted
        # module renames its own names around the user's (codegen/naming.ModuleNamer).

    # ------------------------------------------------------------ expressions

    def array(self, node, scope) -> Node:
        value = self.value(node, scope)
        if isinstance(value, tuple):
            raise _Located(node, f"expected an array, got a tuple of {len(value)} arrays")
        return value

    def value(self, root, scope):
        """Evaluate an expression with an explicit stack (no recursion on nesting depth)."""
        todo: list = [(root, None)]
        done: list = []
        while todo:
            node, kids = todo.pop()
            if kids is None:
                kids = self.operands(node, scope)
                todo.append((node, kids))
                todo.extend((k, None) for k in reversed(kids))
                continue
            vals = done[len(done) - len(kids):] if kids else []
            if kids:
                del done[len(done) - len(kids):]
            for v, sub in zip(vals, kids):
                if isinstance(v, tuple):
                    raise _Located(sub, f"expected an array, got a tuple of {len(v)} arrays",
                                   context=True)
            self.charge(node, 0 if isinstance(node, (ast.Name, ast.Constant)) else 1)
            try:
                done.append(self.apply(node, vals, scope))
            except ShapeError as e:
                where = (node.slice if isinstance(node, ast.Subscript)
                         else self.operator(node))
                raise _Located(where, str(e), context=True) from None
        return done[0]

    def charge(self, node, operations: int) -> None:
        """Count operations against MAX_OPERATIONS; refuse the program at `node` beyond."""
        self.operations += operations
        if self.operations > MAX_OPERATIONS:
            raise _Located(node, f"the program is too large: it builds more than "
                                 f"{MAX_OPERATIONS:,} operations (after inlining helpers); "
                                 "split it into several smaller programs", context=True)

    def operands(self, node, scope) -> list:
        """The array-valued subexpressions of `node`, evaluated before it."""
        if isinstance(node, (ast.Name, ast.Constant)):
            return []
        if isinstance(node, ast.BinOp):
            if type(node.op) not in _BINOPS:
                raise _Located(node, f"operator '{_op_symbol(node.op)}' is not supported")
            return [node.left, node.right]
        if isinstance(node, ast.UnaryOp):
            if not isinstance(node.op, (ast.USub, ast.UAdd)):
                raise _Located(node, f"operator '{_op_symbol(node.op)}' is not supported")
            return [node.operand]
        if isinstance(node, ast.Compare):
            if len(node.ops) != 1:
                raise _Located(node, "chained comparisons are not supported")
            if type(node.ops[0]) not in _CMPOPS:
                raise _Located(node, f"comparison '{_op_symbol(node.ops[0])}' is not supported")
            return [node.left, node.comparators[0]]
        if isinstance(node, ast.Attribute):
            if node.attr != "T":
                raise _Located(node, f"attribute access '.{node.attr}' is not supported "
                                     "(only '.T')")
            return [node.value]
        if isinstance(node, ast.Subscript):
            return [node.value]
        if isinstance(node, ast.Call):
            return self.call_operands(node, scope)
        if isinstance(node, (ast.Tuple, ast.List)):
            raise _Located(node, "a tuple or list is not an array here")
        message = _UNSUPPORTED_EXPR.get(type(node),
                                        f"unsupported expression ({type(node).__name__})")
        if isinstance(node, ast.GeneratorExp):
            node = node.elt     # its parentheses may be those of the call around it
        raise _Located(node, message)

    def apply(self, node, vals, scope):
        """Build the IR for `node` from its evaluated operands."""
        if isinstance(node, ast.Name):
            return self.name(node, scope)
        if isinstance(node, ast.Constant):
            v = node.value
            if type(v) in (int, float):
                try:
                    finite = math.isfinite(float(v))
                except OverflowError:
                    finite = False
                if not finite:
                    raise _Located(node, "this number is too large: it is not a finite "
                                         "floating-point value")
                return const(v)
            kind = "booleans" if isinstance(v, bool) else "strings" if isinstance(v, str) \
                else f"{type(v).__name__} constants"
            raise _Located(node, f"{kind} are not supported here")
        for v, sub in zip(vals, self.operands_of(node)):
            if v.dtype == "bool":
                raise _Located(sub, "a comparison can only be the condition of where(...)",
                               context=True)
        if isinstance(node, ast.BinOp):
            return make(_BINOPS[type(node.op)], *vals)
        if isinstance(node, ast.UnaryOp):
            return make("neg", vals[0]) if isinstance(node.op, ast.USub) else vals[0]
        if isinstance(node, ast.Compare):
            return make(_CMPOPS[type(node.ops[0])], *vals)
        if isinstance(node, ast.Attribute):
            return vals[0].T
        if isinstance(node, ast.Subscript):
            index = self.index(node.slice)
            if not index:
                return vals[0]
            return make("index", vals[0], index=index)
        if isinstance(node, ast.Call):
            return self.call(node, vals, scope)
        raise _Located(node, "unsupported expression")  # unreachable: operands() checked

    def operands_of(self, node) -> list:
        if isinstance(node, ast.BinOp):
            return [node.left, node.right]
        if isinstance(node, (ast.UnaryOp,)):
            return [node.operand]
        if isinstance(node, ast.Compare):
            return [node.left, node.comparators[0]]
        if isinstance(node, (ast.Attribute, ast.Subscript)):
            return [node.value]
        return []

    def name(self, node: ast.Name, scope):
        name = node.id
        if name in scope.env:
            return scope.env[name]
        if name in scope.dims:
            return const(scope.dims[name])
        if name in CONSTANTS:
            return const(CONSTANTS[name])
        if name in BUILTINS or name in self.functions:
            raise _Located(node, f"'{name}' is a function; call it with arguments")
        raise _Located(node, f"unknown name '{name}'")

    # ------------------------------------------------------------ calls

    def callee(self, node: ast.Call):
        if not isinstance(node.func, ast.Name):
            if isinstance(node.func, ast.Attribute):
                raise _Located(node.func, f"method calls are not supported: write "
                                          f"{node.func.attr}(x, ...) instead of "
                                          f"x.{node.func.attr}(...)")
            raise _Located(node.func, "only named functions can be called")
        name = node.func.id
        if name in self.functions:
            return name, self.functions[name]
        if name in BUILTINS:
            return name, BUILTINS[name]
        raise _Located(node.func, f"unknown function '{name}'")

    def call_operands(self, node: ast.Call, scope) -> list:
        for a in node.args:
            if isinstance(a, ast.Starred):
                raise _Located(a, "'*' unpacking is not supported")
        for k in node.keywords:
            if k.arg is None:
                raise _Located(k, "'**' unpacking is not supported")
        name, target = self.callee(node)
        bound = self.bind_call(node, name, target)
        if isinstance(target, ast.FunctionDef):
            return [bound[p.arg] for p in target.args.args]
        out = []
        for p in target.params:
            if p not in bound or p in target.static:
                continue
            if p == target.list_param:
                if not isinstance(bound[p], (ast.List, ast.Tuple)) or not bound[p].elts:
                    raise _Located(bound[p], f"{name}() expects a non-empty list of arrays, "
                                             "e.g. [a, b]")
                out.extend(bound[p].elts)
                self.charge(node, LIST_ITEM_COST * len(bound[p].elts))
            else:
                out.append(bound[p])
        return out

    def bind_call(self, node: ast.Call, name: str, target) -> dict:
        """Map a call's arguments to the callee's parameter names."""
        if isinstance(target, ast.FunctionDef):
            params = [p.arg for p in target.args.args]
            required = set(params)
        else:
            params = list(target.params)
            required = {p for p in params if p not in target.defaults}
        positional = list(node.args)
        if not isinstance(target, ast.FunctionDef) and target.variadic:
            # The last parameter collects the remaining positional arrays (einsum).
            rest = positional[len(params) - 1:]
            positional = positional[:len(params) - 1]
            if rest:
                positional.append(ast.copy_location(ast.List(elts=rest, ctx=ast.Load()),
                                                    rest[0]))
        if len(positional) > len(params):
            raise _Located(node.args[len(params)],
                           f"{name}() takes {_count(len(params), 'argument')} but "
                           f"{len(node.args)} were given")
        bound = dict(zip(params, positional))
        for k in node.keywords:
            if k.arg not in params:
                raise _Located(k, f"{name}() got an unexpected keyword argument '{k.arg}'")
            if k.arg in bound:
                raise _Located(k, f"{name}() got multiple values for argument '{k.arg}'")
            bound[k.arg] = k.value
        missing = [p for p in params if p in required and p not in bound]
        if missing:
            raise _Located(node, f"{name}() missing required argument '{missing[0]}'")
        return bound

    def call(self, node: ast.Call, vals, scope):
        name, target = self.callee(node)
        bound = self.bind_call(node, name, target)
        if isinstance(target, ast.FunctionDef):
            return self.inline(node, target, vals)
        arrays = iter(vals)
        kwargs = {}
        for p in target.params:
            if p not in bound:
                continue
            if p in target.static:
                kwargs[p] = self.static(bound[p], scope, STATIC_KINDS[p])
            elif p == target.list_param:
                kwargs[p] = tuple(next(arrays) for _ in bound[p].elts)
                for item, v in zip(bound[p].elts, kwargs[p]):
                    if v.dtype == "bool":
                        raise _Located(item, "a comparison can only be the condition of "
                                             "where(...)", context=True)
            else:
                kwargs[p] = next(arrays)
                if kwargs[p].dtype == "bool" and not (name == "where" and p == "condition"):
                    raise _Located(bound[p], "a comparison can only be the condition of "
                                             "where(...)", context=True)
        if name == "where" and kwargs["condition"].dtype != "bool":
            raise _Located(bound["condition"], "the condition of where(...) must be a "
                                               "comparison such as x > 0", context=True)
        try:
            if not target.elementwise:
                for p in target.params:
                    if p in kwargs and p not in target.static:
                        v = kwargs[p]
                        kwargs[p] = (tuple(self._as_array(a) for a in v) if isinstance(v, tuple)
                                     else self._as_array(v))
            if target.needs_inputs:
                kwargs["inputs"] = self.entry_inputs
            return target.build(**kwargs)
        except ShapeError as e:
            raise _Located(node, f"{name}(): {e}", context=True) from None

    def _as_array(self, v: Node) -> Node:
        return scalar_array(v, self.entry_inputs) if v.is_const else v

    def inline(self, node: ast.Call, fn: ast.FunctionDef, vals):
        if fn.name in self.helper_stack:
            cycle = self.helper_stack[self.helper_stack.index(fn.name):] + [fn.name]
            how = ("calls itself" if len(cycle) == 2
                   else "is recursive: " + " -> ".join(cycle))
            raise _Located(node, f"helper '{fn.name}' {how}; helpers are inlined, so "
                                 "recursion is not allowed")
        if len(self.helper_stack) >= MAX_HELPER_DEPTH:
            raise _Located(node, f"helpers nested more than {MAX_HELPER_DEPTH} deep")
        # Helpers are pure and nodes are hash-consed: the same helper applied to the same
        # nodes gives the same nodes, so it is lowered once (a chain of helpers that each
        # call the previous one twice would otherwise take exponential time).
        key = (fn.name, tuple(vals))
        if key in self.inlined:
            return self.inlined[key]
        params = [p.arg for p in fn.args.args]
        env = dict(zip(params, vals))
        scope = _Scope(env, {}, self.entry_dims, fn.name)
        self.helper_stack.append(fn.name)
        try:
            _, value, _ = self.body(fn, scope)
        except _Located as e:
            e.helpers.append(fn.name)
            e.call_line = node.lineno
            raise
        finally:
            self.helper_stack.pop()
        self.inlined[key] = value
        return value

    # ------------------------------------------------------------ static arguments

    def static(self, node, scope, kind: str):
        """A compile-time argument, checked structurally against its kind (registry
        `STATIC_KINDS`): nothing but the values listed there reaches a built-in."""
        if kind == FLAG_ARG:
            if isinstance(node, ast.Constant) and type(node.value) is bool:
                return node.value
            raise _Located(node, "this argument must be True or False")
        if kind == SPEC_ARG:
            if isinstance(node, ast.Constant) and type(node.value) is str:
                if len(node.value) > MAX_SPEC_CHARS:
                    raise _Located(node, f"this string is too long (at most "
                                         f"{MAX_SPEC_CHARS:,} characters)")
                return node.value
            raise _Located(node, 'this argument must be a string literal such as "ij,jk->ik"')
        if kind == AXIS_ARG:
            if isinstance(node, ast.Constant) and node.value is None:
                return None
            if isinstance(node, (ast.Tuple, ast.List)):
                if len(node.elts) > MAX_NDIM:
                    raise _Located(node, f"too many axes (at most {MAX_NDIM})")
                return tuple(self._axis(e, scope) for e in node.elts)
            return self._axis(node, scope)
        if kind == DIM_ARG:
            return self.dim(node, scope.dims, create=False)[0]
        if kind == SHAPE_ARG:
            if isinstance(node, (ast.Tuple, ast.List)):
                return self.shape(node, node.elts, scope.dims, create=False)
            return self.shape(node, [node], scope.dims, create=False)[0]
        raise InternalError(f"unknown kind of static argument {kind!r}")

    def _axis(self, node, scope) -> int:
        """An axis: an integer literal, possibly negative."""
        if isinstance(node, ast.Constant) and type(node.value) is int:
            return node.value
        if (isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub)
                and isinstance(node.operand, ast.Constant) and type(node.operand.value) is int):
            return -node.operand.value
        if isinstance(node, ast.Name) and node.id in scope.dims:
            raise _Located(node, f"an axis must be an integer literal, and '{node.id}' is a "
                                 "dimension")
        raise _Located(node, "an axis must be an integer literal (axis arguments are an "
                             "integer, a tuple of integers or None)")

    def index(self, node) -> tuple:
        items = node.elts if isinstance(node, ast.Tuple) else [node]
        out = []
        for it in items:
            if isinstance(it, ast.Slice):
                parts = []
                for part in (it.lower, it.upper, it.step):
                    parts.append(None if part is None else self._index_int(part))
                start, stop, step = parts
                out.append(("slice", start, stop, 1 if step is None else step))
            elif isinstance(it, ast.Constant) and it.value is Ellipsis:
                if "..." in out:
                    raise _Located(it, "an index can only have a single ellipsis ('...')")
                out.append("...")
            else:
                out.append(self._index_int(it))
        if all(o == ("slice", None, None, 1) for o in out):
            return ()
        return tuple(out)

    def _index_int(self, node) -> int:
        if isinstance(node, ast.Constant) and type(node.value) is int:
            value = node.value
        elif (isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub)
                and isinstance(node.operand, ast.Constant) and type(node.operand.value) is int):
            value = -node.operand.value
        else:
            raise _Located(node, "indices must be integer literals or slices of them")
        if abs(value) > MAX_DIM_VALUE:
            raise _Located(node, f"index {value} is too large (at most 2**63 - 1 either way)")
        return value


@dataclass
class _Scope:
    env: dict
    names: dict
    dims: dict
    function: str
    lines: dict = field(default_factory=dict)    # name -> line of its assignment


def _is_docstring(stmt) -> bool:
    return (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)
            and isinstance(stmt.value.value, str))


def _is_entry(fn: ast.FunctionDef) -> bool:
    return bool(fn.args.args) and all(p.annotation is not None for p in fn.args.args)


def _statement_error(stmt, top_level: bool) -> str:
    if isinstance(stmt, ast.AugAssign):
        symbol = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**",
                  ast.MatMult: "@"}.get(type(stmt.op)) or _op_symbol(stmt.op)
        return (f"augmented assignment ('{symbol}=') is not supported: names cannot be "
                "reassigned; assign the result to a new name")
    if type(stmt) in _UNSUPPORTED_STMT:
        return _UNSUPPORTED_STMT[type(stmt)]
    if isinstance(stmt, ast.FunctionDef):
        return "nested functions are not supported; define helpers at the top level"
    if top_level:
        return "only function definitions are allowed at the top level"
    if isinstance(stmt, ast.Expr):
        return "this expression has no effect; assign it to a name or return it"
    return f"unsupported statement ({type(stmt).__name__})"


def _op_symbol(op) -> str:
    return {ast.FloorDiv: "//", ast.Pow: "**", ast.Div: "/", ast.MatMult: "@", ast.Mod: "%",
            ast.LShift: "<<", ast.RShift: ">>",
            ast.BitOr: "|", ast.BitXor: "^", ast.BitAnd: "&", ast.Not: "not",
            ast.Invert: "~", ast.Is: "is", ast.IsNot: "is not", ast.In: "in",
            ast.NotIn: "not in"}.get(type(op), type(op).__name__)


def _count(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")

