"""Readable, unique Python names: source names, `dZ` for cotangents, `tZ` for tangents."""

from __future__ import annotations

import builtins
import keyword

RESERVED = frozenset(keyword.kwlist) | frozenset(dir(builtins)) | {"np"}


class Namer:
    """Hands out names that are unique within one generated function."""

    def __init__(self, taken=()):
        self.taken: set[str] = set(RESERVED) | set(taken)
        self.next: dict[str, int] = {}   # base -> next suffix to try (keeps this linear)

    def reserve(self, name: str) -> None:
        self.taken.add(name)

    def fresh(self, base: str) -> str:
        """`base` if free, else `base2`, `base3`, ..."""
        base = base if base.isidentifier() else "tmp"
        if base not in self.taken:
            self.taken.add(base)
            return base
        k = self.next.get(base, 2)
        while f"{base}{k}" in self.taken:
            k += 1
        name = f"{base}{k}"
        self.next[base] = k + 1
        self.taken.add(name)
        return name


def cotangent_name(name: str) -> str:
    """The name of the cotangent (reverse-mode derivative) of `name`: `Z` -> `dZ`."""
    return "d" + name


def tangent_name(name: str) -> str:
    """The name of the tangent (forward-mode derivative) of `name`: `Z` -> `tZ`."""
    return "t" + name
