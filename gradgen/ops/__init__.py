"""The operation table. Importing this package registers every op and built-in."""

from . import (  # noqa: F401  (importing a family registers its ops)
    batching,
    constants,
    control,
    elementwise,
    functions,
    indexing,
    leaves,
    linalg,
    nn,
    reductions,
    scans,
    shape_ops,
    special,
)
from .registry import BUILTINS, REGISTRY, RULES, Builtin, OpDef, Rule, check_rules

check_rules()

__all__ = ["BUILTINS", "REGISTRY", "RULES", "Builtin", "OpDef", "Rule"]
