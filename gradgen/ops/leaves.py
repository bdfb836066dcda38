"""Leaves of the graph: inputs (arguments of the generated function) and constants."""

from __future__ import annotations

from .dtypes import input_dtype
from .registry import PREC_ATOM, defop

__all__: list[str] = []

LEAF = frozenset({"leaf"})

# input[name, role, shape]: an argument; role is "param", "data", "index" (integers, never
# differentiated), "cotangent" or "tangent". A loop body's inputs (roles "index", "carry",
# "outside") also say which loop they belong to (`loop`, unique per loop built from the
# source) and, for a carried or outside value that is not floats, its `dtype`.
defop("input", 0, shape=lambda args, name, role, shape, loop=None, dtype=None: shape,
      traits=LEAF | {"argument"}, dtype=input_dtype,
      emit=lambda p, n: (n.attr("name"), PREC_ATOM))

# const[value]: a scalar number or an expression of dimension sizes (a sympy expression).
defop("const", 0, shape=lambda args, value: (), traits=LEAF | {"constant"},
      emit=lambda p, n: p.scalar(n.attr("value")))
