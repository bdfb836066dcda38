"""Source text to a Python syntax tree, within limits, and the whitelist of the tree's nodes.

`ast.parse` runs on a thread with a large stack, so that deep nesting parses or fails with
a diagnostic (never a crash). The source is parsed only: never executed, imported or
evaluated. The tables below say which statements, operators and expressions the language
has, and what to tell the user about the others.
"""

from __future__ import annotations

import ast
import re
import sys
import threading
import warnings

import sympy

from .locations import SourceFile, source_lines

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
PARSE_STACK_BYTES = 512 * 1024 * 1024
PARSE_RECURSION_LIMIT = 400_000
DEEP_LINE_CHARS = 1000   # nesting deep enough to overflow the parser needs a line this long
DEEP_LINE_PROBES = 200
# A source this short is parsed on the calling (main) thread: it cannot nest deeper than
# that thread's stack and the usual recursion limit take (about one syntax-tree level a
# character at most; Python's tokenizer stops brackets at 200 levels). Starting the parse
# thread costs more than parsing a short program (0.16 ms of CPU against 0.07 ms, and a
# wait for the new thread to be scheduled: ~1 ms of wall on a busy machine).
SMALL_SOURCE_CHARS = 1000

# The names of the language besides the built-in functions (ops.BUILTINS).
CONSTANTS = {"pi": sympy.pi, "e": sympy.E, "inf": sympy.oo}
ANNOTATIONS = ("Param", "Data", "Index")

BINOPS = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.Div: "div", ast.Pow: "pow",
          ast.MatMult: "matmul"}
CMPOPS = {ast.Lt: "lt", ast.LtE: "le", ast.Gt: "gt", ast.GtE: "ge", ast.Eq: "eq",
          ast.NotEq: "ne"}
_NO_LOOPS = "loops are not supported; write vectorized operations"
_NO_WHILE = ("'while' loops are not supported: write a loop over range(...) (for t in "
             "range(T)), whose number of steps is known from the sizes")
_NO_EXIT = ("'{}' is not supported: a loop runs all its steps; mask the steps that should "
            "not count with where(...)")
_NO_IMPORTS = "imports are not supported (the source is never executed)"
_NO_COMPREHENSIONS = "comprehensions are not supported; write vectorized operations"
UNSUPPORTED_STMT = {
    ast.For: "a loop is only allowed in a function body",
    ast.AsyncFor: _NO_LOOPS,
    ast.While: _NO_WHILE,
    ast.If: "'if' statements are not supported; use where(condition, a, b)",
    ast.Import: _NO_IMPORTS,
    ast.ImportFrom: _NO_IMPORTS,
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
    ast.Break: _NO_EXIT.format("break"),
    ast.Continue: _NO_EXIT.format("continue"),
    ast.AsyncFunctionDef: "async functions are not supported",
}
UNSUPPORTED_EXPR = {
    ast.IfExp: "conditional expressions are not supported; use where(condition, a, b)",
    ast.Lambda: "lambda expressions are not supported",
    ast.BoolOp: "'and'/'or' are not supported; combine conditions with where",
    ast.Dict: "dictionaries are not supported",
    ast.Set: "sets are not supported",
    ast.ListComp: _NO_COMPREHENSIONS,
    ast.SetComp: _NO_COMPREHENSIONS,
    ast.DictComp: _NO_COMPREHENSIONS,
    ast.GeneratorExp: _NO_COMPREHENSIONS,
    ast.Await: "'await' is not supported",
    ast.Yield: "'yield' is not supported",
    ast.YieldFrom: "'yield' is not supported",
    ast.NamedExpr: "assignment expressions (':=') are not supported",
    ast.JoinedStr: "strings are not supported here",
    ast.Starred: "'*' unpacking is not supported",
}
if hasattr(ast, "Match"):
    UNSUPPORTED_STMT[ast.Match] = "'match' statements are not supported; use where"

_OP_SYMBOLS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**",
               ast.MatMult: "@", ast.FloorDiv: "//", ast.Mod: "%", ast.LShift: "<<",
               ast.RShift: ">>", ast.BitOr: "|", ast.BitXor: "^", ast.BitAnd: "&",
               ast.Not: "not", ast.Invert: "~", ast.Is: "is", ast.IsNot: "is not",
               ast.In: "in", ast.NotIn: "not in"}
# Python puts the column of these at the end of the indentation or of the line.
_AT_FIRST_NON_BLANK = ("unexpected indent", "unindent does not match any outer indentation level")
_BAD_CHAR = re.compile("[\0\ud800-\udfff]")


def parse(text: str, src: SourceFile) -> ast.Module:
    """The syntax tree of `text` (without its BOM), or a `CompileError` located in it."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_SOURCE_BYTES:
        raise src.error(1, 1, f"source is larger than {MAX_SOURCE_BYTES // (1024 * 1024)} MB")
    bad = _BAD_CHAR.search(text)
    if bad:
        at = bad.start()
        line = len(source_lines(text[:at]))
        col = at - max(text.rfind("\n", 0, at), text.rfind("\r", 0, at))
        what = "a null character" if bad.group() == "\0" else \
            f"a lone surrogate (U+{ord(bad.group()):04X}), which is not valid Unicode"
        raise src.error(line, col, f"the source contains {what}")
    result = _parse_on_big_stack(text, src.lines)
    if "error" in result:
        raise result["error"]
    if "syntax" in result:
        raise _syntax_error(result["syntax"], src)
    if "deep" in result:
        found = result.get("deep_line")
        if found is None:
            raise src.error(1, 1, "the source is too large or too deeply nested to parse")
        line, col = found
        raise src.error(line, col, "expression is nested too deeply to parse; split it into "
                                   "several assignments")
    return result["tree"]


def _parse_on_big_stack(text: str, lines: list[str]) -> dict:
    """`ast.parse` on a thread with a large stack: {"tree": ...} or what went wrong.
    A short source is tried on the main thread first (`SMALL_SOURCE_CHARS`); anything but
    a tree or a syntax error there (a `RecursionError`, a `MemoryError`) is parsed again
    on the large stack, so the outcome is the same either way."""
    if len(text) <= SMALL_SOURCE_CHARS and threading.current_thread() is threading.main_thread():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")   # (as in `run` below)
                return {"tree": ast.parse(text, type_comments=False)}
        except SyntaxError as e:
            return {"syntax": e}
        except Exception:  # noqa: BLE001, S110 - parsed again below, on the large stack
            pass
    result: dict = {}

    def run(big_stack: bool = True) -> None:
        old = sys.getrecursionlimit()
        try:
            if big_stack:
                sys.setrecursionlimit(max(old, PARSE_RECURSION_LIMIT))
            with warnings.catch_warnings():
                # Python's remarks on odd but valid syntax (`1if`, invalid escapes) are not
                # ours to print; what the language rejects is reported by `parse`.
                warnings.simplefilter("ignore")
                # The file name only labels our own diagnostics: Python never sees it
                # (it may hold a NUL or anything else a file system allows).
                result["tree"] = ast.parse(text, type_comments=False)
        except SyntaxError as e:
            result["syntax"] = e
        except (RecursionError, MemoryError) as e:
            result["deep"] = e
            result["deep_line"] = _deep_line(lines)
        except Exception as e:  # noqa: BLE001 - re-raised by `parse`, on the calling thread
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
    return result


def _syntax_error(e: SyntaxError, src: SourceFile):
    """Python's syntax error as our diagnostic."""
    msg = e.msg or "invalid syntax"
    if msg.startswith("too many nested parentheses"):
        msg = "too many nested parentheses (Python's parser allows at most 200 levels)"
    line = e.lineno or 1
    text_line = src.line(line)
    col = e.offset or 1
    if isinstance(e, IndentationError) and msg in _AT_FIRST_NON_BLANK:
        col = len(text_line) - len(text_line.lstrip(" \t\f")) + 1   # the first non-blank
    col = min(max(col, 1), len(text_line) + 1)
    return src.error(line, col, f"syntax error: {msg}")


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


def statement_error(stmt, top_level: bool) -> str:
    """What to tell the user about a statement the language does not have here."""
    if type(stmt) in UNSUPPORTED_STMT:
        return UNSUPPORTED_STMT[type(stmt)]
    if isinstance(stmt, ast.FunctionDef):
        return "nested functions are not supported; define helpers at the top level"
    if top_level:
        return ("only function definitions and constants (EPS = 1e-8) are allowed at the "
                "top level")
    if isinstance(stmt, ast.Expr):
        return "this expression has no effect; assign it to a name or return it"
    return f"unsupported statement ({type(stmt).__name__})"


def expression_error(node) -> tuple[ast.AST, str]:
    """Where and what to tell the user about an expression the language does not have."""
    message = UNSUPPORTED_EXPR.get(type(node),
                                   f"unsupported expression ({type(node).__name__})")
    if isinstance(node, ast.GeneratorExp):
        node = node.elt     # its parentheses may be those of the call around it
    return node, message


def op_symbol(op) -> str:
    """How an operator of the AST is written."""
    return _OP_SYMBOLS.get(type(op), type(op).__name__)


def is_docstring(stmt) -> bool:
    """Whether a statement is a string literal alone (a docstring, if it comes first)."""
    return (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)
            and isinstance(stmt.value.value, str))


def count(n: int, word: str) -> str:
    """`1 argument`, `2 arguments`."""
    return f"{n} {word}" + ("" if n == 1 else "s")
