"""gradgen: compile cost functions to standalone, readable NumPy gradient code."""

from __future__ import annotations

__version__ = "0.1.0"

from .api import compile_source, load
from .errors import CompileError, Diagnostic

__all__ = ["CompileError", "Diagnostic", "__version__", "compile_source", "load"]
