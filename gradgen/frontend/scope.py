"""What the lowering keeps while it works: the names of a function body, the work budget."""

from __future__ import annotations

from dataclasses import dataclass, field

from .locations import Located


@dataclass
class Scope:
    """The names visible in one function body (an entry point's or an inlined helper's)."""

    env: dict                  # name -> Node (or a tuple of them, from a helper)
    names: dict                # Node -> the name it was first given (entry points only)
    dims: dict                 # dimension name -> sympy symbol, of the entry point
    function: str
    helper: bool = False       # the body of a helper, inlined into an entry point
    lines: dict = field(default_factory=dict)    # name -> line of its assignment


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
                                "split it into several smaller programs", context=True)
