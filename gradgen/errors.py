"""Diagnostics: the one place where source errors are represented and rendered."""

from __future__ import annotations

from dataclasses import dataclass

from .escape import terminal_text

__all__ = ["CompileError", "Diagnostic", "InternalError", "ShapeError", "WorkLimit", "render_all"]

MAX_SHOWN = 160   # characters of a source line shown in a rendered diagnostic


@dataclass(frozen=True)
class Diagnostic:
    """One error in a source file; `line` and `col` are 1-based and count characters."""

    file: str
    line: int
    col: int
    message: str
    source_line: str = ""

    def render(self) -> str:
        """`FILE:LINE:COL: error: MESSAGE`, then the source line and a caret under the place.

        A source line longer than `MAX_SHOWN` characters is shown as a window around the
        column, with `...` where it is cut.
        """
        # Text from the source (and its file name) is escaped: no control sequence reaches
        # the terminal, and a diagnostic is one line plus the source line and the caret.
        head = (f"{terminal_text(self.file)}:{self.line}:{self.col}: error: "
                f"{terminal_text(self.message)}")
        if not self.source_line:
            return head
        text, at = self.source_line, max(self.col - 1, 0)
        if len(text) > MAX_SHOWN:
            start = min(max(at - MAX_SHOWN // 2, 0), len(text) - MAX_SHOWN)
            end = start + MAX_SHOWN
            text = ("..." if start else "") + text[start:end] + ("..." if end < len(text) else "")
            at = at - start + (3 if start else 0)
        # Keep tabs in the caret line so the caret lines up under the offending character;
        # an escaped character takes the width of its escape.
        pad = "".join("\t" if ch == "\t" else " " * len(terminal_text(ch)) for ch in text[:at])
        return f"{head}\n{terminal_text(text, keep=chr(9))}\n{pad}^"


def render_all(diagnostics: list[Diagnostic] | tuple[Diagnostic, ...]) -> str:
    """Render several diagnostics, one block each."""
    return "\n".join(d.render() for d in diagnostics)


class CompileError(Exception):
    """A mistake in the user's source; carries one or more diagnostics."""

    def __init__(self, diagnostics: list[Diagnostic] | Diagnostic):
        if isinstance(diagnostics, Diagnostic):
            diagnostics = [diagnostics]
        self.diagnostics = tuple(diagnostics)
        super().__init__(render_all(self.diagnostics))

    def _render_traceback_(self) -> list[str]:
        """What IPython and Jupyter show for an uncaught CompileError: the diagnostics
        alone, without the frames of gradgen's compiler (the mistake is in the source)."""
        return str(self).splitlines()


class ShapeError(Exception):
    """Raised by shape rules without a location; the frontend attaches one."""


class InternalError(Exception):
    """A bug in gradgen, not in the user's source."""


class WorkLimit(Exception):
    """A compilation used up its work budget (`ir.Builder.limit`); the compiler turns it
    into a located diagnostic, so that no input takes minutes to compile or refuse."""
