"""Compilations shared by the tests of one process (an xdist worker): `compile_text(text,
filename, **options)` is `gradgen.compile_source`, but a source compiled before with the
same file name and options returns the module text of that compilation (a str: nothing
can change it). The suite compiled the examples four or five times a worker (the golden
test, determinism, CSE, the verifier, names); every compile is verified (conftest) the
first time either way.

Only for tests that compile as the user does: a test that patches the compiler, or that
tests compiling itself (its errors, determinism), calls `gradgen.compile_source`. A result
compiled with `rules.CHECK_INDEX` off is compiled again for a test that has it on
(tests/conftest.py, CHECK_INDEX_FILES), so that test's check does run."""

from __future__ import annotations

import types

import gradgen
from gradgen.passes import rules

_TEXTS: dict[tuple, tuple[str, bool]] = {}   # key -> (module text, compiled with CHECK_INDEX)


def _key(text: str, filename: str, options: dict) -> tuple:
    return (text, filename, tuple(sorted(
        (k, tuple(v) if isinstance(v, list) else
         tuple(sorted(v.items())) if isinstance(v, dict) else v)
        for k, v in options.items())))


def compile_text(text: str, filename: str = "<string>", **options) -> str:
    """`gradgen.compile_source(text, filename, **options)`, shared (see above)."""
    key = _key(text, filename, options)
    hit = _TEXTS.get(key)
    if hit is not None and (hit[1] or not rules.CHECK_INDEX):
        return hit[0]
    source = gradgen.compile_source(text, filename, **options)
    _TEXTS[key] = (source, rules.CHECK_INDEX)
    return source


def fresh_module(source: str, name: str = "generated") -> types.ModuleType:
    """The emitted `source` executed as a new module (a test that changes a module's
    globals changes only its own)."""
    mod = types.ModuleType(name)
    exec(compile(source, name, "exec"), mod.__dict__)  # noqa: S102 (the module under test)
    return mod
