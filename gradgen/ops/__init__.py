"""The operation table. Importing this package registers every op and built-in."""

from . import batching, constants, elementwise, functions, linalg, nn, reductions, shape_ops  # noqa: F401
from .leaves import *
from .registry import BUILTINS, REGISTRY, Builtin, OpDef

__all__ = ["BUILTINS", "REGISTRY", "Builtin", "OpDef"]
