"""Differentiation of IR graphs: reverse mode (VJP) and forward mode (JVP)."""

from .forward import batched_jvp, jvp
from .reverse import vjp

__all__ = ["batched_jvp", "jvp", "vjp"]

from . import loops  # noqa: E402,F401  (the rules of loops, attached to the op table)
