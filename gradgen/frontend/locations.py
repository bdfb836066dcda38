"""Places in the source: line splitting, AST positions, and the one way to make a diagnostic.

The lowering raises `Located` (an AST node, or a part of one, and a message); `SourceFile`
turns it, or any line and column, into a `Diagnostic` with the source line it points at.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

from ..errors import CompileError, Diagnostic
from ..ir import Origin

_LINE_END = re.compile(r"\r\n|\r|\n")
_DEF = re.compile(rb"def\s+")


def source_lines(text: str) -> list[str]:
    """The physical lines of a source as Python numbers them.

    Only CR LF, CR and LF end a line: unlike `str.splitlines`, a form feed or U+2028 inside
    a comment or string does not shift the line numbers of what follows.
    """
    return _LINE_END.split(text)


@dataclass(frozen=True)
class Loc:
    """A place in the source, as the AST gives it (`col_offset` counts UTF-8 bytes)."""

    lineno: int
    col_offset: int


# What part of the node a `Located` error points at (resolved by `SourceFile.place`).
NODE, OPERATOR, DEF_NAME, AT_SIGN = "node", "operator", "def name", "at sign"


class Located(Exception):
    """Internal: an error message with its place in the source."""

    def __init__(self, node, message: str, context: bool = False, part: str = NODE,
                 fatal: bool = False):
        super().__init__(message)
        self.node = node
        self.part = part
        self.message = message
        # Errors that depend on the arguments of a helper (shapes, tuples, comparisons)
        # also say which call of the helper led to them.
        self.context = context
        # A limit of the whole program (its size): no further error is looked for.
        self.fatal = fatal
        self.helpers: list[str] = []
        self.call_line = 0

    def full_message(self) -> str:
        """The message, with the helper call it happened in when it is inside a helper."""
        if not self.helpers or not self.context:
            return self.message
        via = "".join(f" via '{h}'" for h in self.helpers[1:])
        return (f"{self.message} (in helper '{self.helpers[0]}', inlined{via} from line "
                f"{self.call_line})")


class LocatedMany(Exception):
    """Internal: every independent error of a source (each a `Located`)."""

    def __init__(self, errors: list[Located]):
        super().__init__(f"{len(errors)} errors")
        self.errors = list(errors)


class SourceFile:
    """A source text split into lines, with its file name: positions and diagnostics."""

    def __init__(self, filename: str, lines: list[str]):
        self.filename = filename
        self.lines = lines

    def line(self, line: int) -> str:
        """The text of a 1-based line, or "" outside the source."""
        return self.lines[line - 1] if 0 < line <= len(self.lines) else ""

    def diagnostic(self, line: int, col: int, message: str) -> Diagnostic:
        """A diagnostic at a 1-based line and character column (at least 1)."""
        return Diagnostic(self.filename, line, max(col, 1), message, self.line(line))

    def error(self, line: int, col: int, message: str) -> CompileError:
        """`diagnostic` as the exception to raise."""
        return CompileError(self.diagnostic(line, col, message))

    def located(self, e: Located) -> CompileError:
        """The diagnostic of a `Located` error, at the place it names."""
        return CompileError(self.diagnostic_of(e))

    def diagnostic_of(self, e: Located) -> Diagnostic:
        """The diagnostic of a `Located` error, at the place it names."""
        line, col = self.position(self.place(e.node, e.part))
        return self.diagnostic(line, col, e.full_message())

    def located_all(self, errors: list[Located]) -> CompileError:
        """One error carrying the diagnostics of `errors`, in source order, each once."""
        found = {}
        for e in errors:
            d = self.diagnostic_of(e)
            found.setdefault((d.line, d.col, d.message), d)
        return CompileError([found[k] for k in sorted(found)])

    def position(self, node) -> tuple[int, int]:
        """1-based line and character column of an AST node (or a `Loc`)."""
        line = getattr(node, "lineno", 1) or 1
        offset = getattr(node, "col_offset", 0) or 0
        col = len(self.line(line).encode("utf-8")[:offset].decode("utf-8", "replace")) + 1
        return line, col

    def origin(self, stmt) -> Origin:
        """The statement IR nodes built for `stmt` record."""
        return Origin(stmt.lineno, self.line(stmt.lineno).strip())

    def place(self, node, part: str = NODE) -> ast.AST | Loc:
        """The node, or the part of it that `part` names, as something `position` reads."""
        if part == OPERATOR:
            return self.operator(node)
        if part == DEF_NAME:
            return self.def_name(node)
        if part == AT_SIGN:
            return self.at_sign(node)
        return node

    def operator(self, node) -> ast.AST | Loc:
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
                    return Loc(line, offset)
                offset += 1
            line, offset = line + 1, 0
        return node

    def def_name(self, fn: ast.FunctionDef) -> ast.AST | Loc:
        """The name in `def name(...)`."""
        m = _DEF.match(self.line(fn.lineno).encode("utf-8"), fn.col_offset)
        return Loc(fn.lineno, m.end()) if m else fn

    def at_sign(self, decorator) -> ast.AST | Loc:
        """The '@' in front of a decorator expression (on the same line, before it)."""
        at = self.line(decorator.lineno).encode("utf-8").rfind(b"@", 0, decorator.col_offset)
        return Loc(decorator.lineno, at) if at >= 0 else decorator
