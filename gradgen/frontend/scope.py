"""What the lowering keeps while it works: the names of a function body, the work budget."""

from __future__ import annotations

import ast
from dataclasses import dataclass, field

from .locations import Located


class Poisoned(Exception):
    """Internal: a statement reads a name whose assignment failed (already reported), so
    it is skipped without a second diagnostic (no cascade of "unknown name" errors)."""


# The value of a name whose assignment failed: reading it raises `Poisoned`.
POISON = object()


@dataclass
class Scope:
    """The names visible in one function body (an entry point's or an inlined helper's).

    A name means its latest binding (`env`): names may be reassigned, and a variable or
    argument may shadow a built-in function from its first binding on (`shadows`).
    """

    env: dict                  # name -> Node (or a tuple of them, from a helper), or POISON
    names: dict                # Node -> the name it was first given (entry points only)
    dims: dict                 # dimension name -> sympy symbol, of the entry point
    function: str
    helper: bool = False       # the body of a helper, inlined into an entry point
    lines: dict = field(default_factory=dict)    # name -> line of its first assignment
    bindings: dict = field(default_factory=dict)  # name -> how many values it named
    last_target: dict = field(default_factory=dict)  # name -> its latest assignment target

    def shadowing(self, name: str) -> str | None:
        """What binds `name` in this body, if it does (for "the built-in is shadowed")."""
        if name not in self.env:
            return None
        line = self.lines.get(name)
        if line is None:
            return f"'{name}' is an argument of '{self.function}'"
        return f"'{name}' is a variable of '{self.function}' (assigned on line {line})"


class Budget:
    """The operations a program builds (after inlining helpers), against a limit."""

    def __init__(self, limit: int):
        self.limit = limit
        self.used = 0

    def charge(self, node, operations: int) -> None:
        """Count operations; refuse the program at `node` beyond the limit."""
        self.used += operations
        if self.used > self.limit:
            raise Located(node, f"the program is too large: it builds more than "
                                f"{self.limit:,} operations (after inlining helpers); "
                                "split it into several smaller programs", context=True,
                          fatal=True)


def poison_statement(stmt, scope: Scope) -> None:
    """The names a statement in error would have assigned: reading them later is skipped
    (`Poisoned`), not reported again as unknown. A subscript assignment in error leaves
    its array as it was (an update never changes its shape), so later uses are checked."""
    targets = getattr(stmt, "targets", None) or [getattr(stmt, "target", None)]
    if isinstance(stmt, ast.For):   # every name a failed loop assigns
        targets = [stmt.target, *stmt.body]
    for t in targets:
        if t is None or isinstance(t, ast.Subscript):
            continue
        for node in ast.walk(t):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store) \
                    and node.id not in scope.dims:      # a dimension keeps its meaning
                scope.env[node.id] = POISON
