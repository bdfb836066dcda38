"""The public Python API: `compile_source` and `load`."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

from .compiler import compile_source as _compile

__all__ = ["compile_source", "load"]

_LOADED: dict[str, ModuleType] = {}


def compile_source(text: str, filename: str = "<string>", *, modes: Iterable[str] | None = None,
                   hessian: bool = False, wrt: Iterable[str] | None = None,
                   checks: bool = True) -> str:
    """Compile gradgen source text to the source of a NumPy module.

    Raises `gradgen.CompileError` (carrying the diagnostics) for mistakes in the source.
    """
    return _compile(text, filename, modes=modes, hessian=hessian, wrt=wrt, checks=checks)


def load(path: str | os.PathLike, **options) -> ModuleType:
    """Compile the file at `path` and import the result (cached by content and options)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8-sig")
    source = compile_source(text, filename=str(path), **options)
    key = hashlib.sha256(source.encode()).hexdigest()[:20]
    if key in _LOADED:
        return _LOADED[key]
    cache = Path(os.environ.get("GRADGEN_CACHE") or Path(tempfile.gettempdir()) / "gradgen-cache")
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / f"{path.stem}_{key}.py"
    if not target.exists():
        from .io import atomic_write
        atomic_write(target, source)
    name = f"gradgen_generated_{path.stem}_{key}"
    spec = importlib.util.spec_from_file_location(name, target)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    _LOADED[key] = module
    return module
