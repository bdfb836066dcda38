"""gradgen: compile cost functions to standalone, readable NumPy gradient code."""

from __future__ import annotations

from .version import __version__

__all__ = ["CompileError", "Diagnostic", "GeneratedModule", "__version__", "compile_source",
           "graph", "load", "load_source"]

_API = ("compile_source", "graph", "load", "load_source", "GeneratedModule")


def __getattr__(name: str):
    # Everything but the version is imported on first use: the API (and with it NumPy,
    # SymPy and the compiler), and the errors (dataclasses, which imports inspect), so that
    # `import gradgen` is quick and a Ctrl-C while it loads reaches the command line's
    # handler.
    if name in ("CompileError", "Diagnostic"):
        from . import errors

        return getattr(errors, name)
    if name in _API:
        from .gcpause import gc_paused

        with gc_paused():   # (the compiler, imported without the collector's passes)
            from . import api
        return getattr(api, name)
    if name == "load_ipython_extension":   # `%load_ext gradgen`: the `%%gradgen` cell magic
        from . import notebook

        return notebook.load_ipython_extension
    raise AttributeError(f"module 'gradgen' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
