"""Differentiation of IR graphs: reverse mode (VJP) and forward mode (JVP)."""

from .forward import jvp
from .reverse import vjp

__all__ = ["jvp", "vjp"]
