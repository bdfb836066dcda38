"""The public Python API: `compile_source`, `load` and `load_source`."""

from __future__ import annotations

import hashlib
import linecache
import os
import re
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from .compiler import compile_source as _compile

if TYPE_CHECKING:
    from .graphviz import Drawing

__all__ = ["GeneratedModule", "compile_source", "graph", "load", "load_source"]

_LOADED: dict[str, GeneratedModule] = {}


def compile_source(text: str, filename: str = "<string>", *, modes: Iterable[str] | None = None,
                   hessian: bool = False, wrt: Iterable[str] | None = None,
                   checks: bool = True, hints: dict[str, int] | None = None,
                   checkpoint: int | None = None, target: str = "numpy",
                   jacobian: bool = False, workspace: bool = False) -> str:
    """Compile gradgen source text to the source of a NumPy module.

    `hints` gives sizes of dimensions (`{"N": 10000}`) for choosing the order of matrix
    products; `checkpoint=K` makes the gradients of loops save their carried values every
    K steps only and recompute the rest (less memory, some more work).
    `target="array-api"` writes the module against the Python array API standard
    instead (it then runs on NumPy, CuPy, PyTorch, JAX and Dask arrays);
    `jacobian=True` adds `f_jacobian` for non-scalar outputs; `workspace=True` makes
    every function take `workspace=ws` (`ws = module.Workspace()`: buffers reused across
    calls; NumPy target only). Raises
    `gradgen.CompileError` (carrying the diagnostics) for mistakes in the source.
    """
    return _compile(text, filename, modes=modes, hessian=hessian, wrt=wrt, checks=checks,
                    hints=hints, checkpoint=checkpoint, target=target, jacobian=jacobian,
                    workspace=workspace)


class GeneratedModule(ModuleType):
    """A module compiled by gradgen (`load`, `load_source`): an ordinary module whose
    source `inspect.getsource` and tracebacks show, and which a notebook displays as its
    source, highlighted."""

    __gradgen_source__: str   # the module's source text

    def _repr_markdown_(self) -> str:
        source = self.__dict__.get("__gradgen_source__", "")
        fence = "```"
        while fence in source:   # a fence the source cannot close
            fence += "`"
        return f"{fence}python\n{source}{fence}\n"

    def _repr_html_(self) -> str:
        import html

        source = self.__dict__.get("__gradgen_source__", "")
        try:   # Pygments is there wherever IPython is; gradgen does not need it
            from pygments import highlight  # type: ignore[import-untyped]
            from pygments.formatters import HtmlFormatter  # type: ignore[import-untyped]
            from pygments.lexers import PythonLexer  # type: ignore[import-untyped]
        except ImportError:
            body = f"<pre>{html.escape(source)}</pre>"
        else:
            body = highlight(source, PythonLexer(), HtmlFormatter(noclasses=True))
        names = [k for k, v in self.__dict__.items()
                 if not k.startswith("_") and callable(v) and not isinstance(v, ModuleType)]
        summary = html.escape(f"{self.__doc__ or self.__name__} Functions: {', '.join(names)}.")
        return f"<details open><summary>{summary}</summary>{body}</details>"


def graph(source: str | os.PathLike[str], *, backward: bool = False, function: str | None = None,
          filename: str = "<string>", **options: Any) -> Drawing:
    """The computation graph of an entry point (the first, or `function`): forward, or with
    `backward` forward and backward (`f_value_and_grad`'s), as a `Drawing` that a notebook
    shows inline (SVG, when Graphviz's `dot` is installed); `.source` is its DOT text,
    `.save(path)` writes it. `source` is a path (`os.PathLike`, or a str ending in `.grad`
    with no line break) or source text; `options` are those of `compile_source`."""
    from .compiler import compile_module, make_options
    from .graphviz import Drawing, module_dot

    if isinstance(source, os.PathLike) or (source.endswith(".grad") and "\n" not in source):
        from .io import read_source

        filename = str(source)
        source = read_source(Path(source))
    module = compile_module(str(source), filename, make_options(**options))
    dot = module_dot(module, backward, function)
    if dot is None:
        raise ValueError(f"no entry point {function!r} to draw" if function
                         else "no entry point to draw")
    return Drawing(dot)


def load(path: str | os.PathLike, **options) -> GeneratedModule:
    """Compile the file at `path` and import the result (cached by content and options).

    `options` are those of `compile_source`.
    """
    from .io import read_source

    path = Path(path)
    return _load(read_source(path), str(path), path.stem, options)


def load_source(text: str, filename: str = "<string>", **options) -> GeneratedModule:
    """Compile gradgen source text and import the result, as `load` does for a file
    (cached by content and options). `filename` names the source in diagnostics and in
    the module's header; `options` are those of `compile_source`."""
    stem = re.sub(r"\W", "_", Path(filename).stem).strip("_") or "source"
    return _load(text, filename, stem, options)


def _load(text: str, filename: str, stem: str, options: dict) -> GeneratedModule:
    from .version import __version__

    # The same text, file name and options give the same module: no need to compile again.
    ident = hashlib.sha256(repr((__version__, filename, text, sorted(
        (k, tuple(v) if isinstance(v, (list, tuple)) else v)
        for k, v in options.items()))).encode("utf-8", "surrogatepass")).hexdigest()
    if ident in _LOADED:
        return _LOADED[ident]
    source = compile_source(text, filename=filename, **options)
    key = hashlib.sha256(source.encode()).hexdigest()[:20]
    if key in _LOADED:
        _LOADED[ident] = _LOADED[key]
        return _LOADED[key]
    # The file is written so that tools outside this process can show the generated code
    # too; what runs is the source compiled here, never what happens to be in the cache.
    target = None
    try:
        cache = Path(os.environ.get("GRADGEN_CACHE")
                     or Path(tempfile.gettempdir()) / "gradgen-cache")
        cache.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not _private_directory(cache):
            raise OSError(f"{cache} is not a private directory")   # -> write nothing
        target = cache / f"{stem}_{key}.py"
        if not (target.is_file() and not target.is_symlink()
                and target.read_bytes() == source.encode("utf-8")):
            from .io import atomic_write
            atomic_write(target, source)
    except OSError:
        target = None
    name = f"gradgen_generated_{stem}_{key}"
    module = GeneratedModule(name, f"Generated by gradgen from {Path(filename).name}.")
    module.__file__ = str(target) if target is not None else f"<gradgen {name}>"
    # `inspect.getsource` and tracebacks read the source through linecache: registered
    # there (with no modification time, so that `linecache.checkcache` keeps it), they show
    # the code that runs even when no file could be written or the file changes later.
    linecache.cache[module.__file__] = (len(source), None, source.splitlines(True),
                                        module.__file__)
    sys.modules[name] = module
    try:
        exec(compile(source, module.__file__, "exec"), module.__dict__)  # noqa: S102 - our own output
    except BaseException:
        del sys.modules[name]
        raise
    module.__gradgen_source__ = source
    _LOADED[key] = _LOADED[ident] = module
    return module


def _private_directory(path: Path) -> bool:
    """True for a real directory (not a symlink) that only its owner, the current user, can
    write: the cache is written only where nobody else can plant files or links."""
    import stat

    try:
        st = os.lstat(path)
    except OSError:
        return False
    if not stat.S_ISDIR(st.st_mode):
        return False
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        return False
    return not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
