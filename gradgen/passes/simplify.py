"""Algebraic simplification: every node in its canonical form.

The rules are the ops' `canon` entries (`gradgen/ops/`): constants folded, `x * 1`,
`x + 0`, `--x`, double transposes, `exp(log x)` and `log(exp x)`, zeros propagated, sums of
broadcast arrays turned into a multiplication by the number of copies, scalar factors
collected in front (`c * (a + b)`). The pass applies them to a graph built as written
(the frontend's); derivative graphs are built with them applied already.
"""

from __future__ import annotations

from ..ir import Graph
from .rebuild import apply_rules


def simplify(graph: Graph) -> Graph:
    """The graph with every node in canonical form."""
    return apply_rules(graph, "simplify")
