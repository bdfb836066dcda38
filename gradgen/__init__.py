"""gradgen: compile cost functions to standalone, readable NumPy gradient code."""

from __future__ import annotations

from .errors import CompileError, Diagnostic
from .version import __version__

__all__ = ["CompileError", "Diagnostic", "__version__", "compile_source", "load", "load_source"]


def __getattr__(name: str):
    # The API (and with it NumPy, SymPy and the compiler) is imported on first use, so that
    # `gradgen` starts quickly and a Ctrl-C while it loads reaches the command line's handler.
    if name in ("compile_source", "load", "load_source", "GeneratedModule"):
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'gradgen' has no attribute {name!r}")
