"""Control flow: a loop is one node holding its body as a region (`ir.Region`).

THE SCAN CONTRACT (shared by the loop frontend and the loop derivatives):
`scan(*carried_init, *outside, body=Region, length=L, start=S, step=K, reverse=False)`.
L is the trip count (an int or a sympy dimension expression, >= 0 at run time: a zero-trip
loop leaves the carried values unchanged), S the value of the loop index at the first
iteration (default 0), K a nonzero int literal (default 1): iteration i (0 <= i < L) has
the index value S + i * K; with `reverse=True` the iterations run i = L - 1, ..., 0
(emitted `for t in reversed(range(...))`, as lax.scan(reverse=True)). The attributes
`start`, `step` and `reverse` are left out when they have their default values (so that
loops built alike are one node). The body's inputs are (index, *carried, *outside) as
`input` nodes (roles "index" (int, shape ()), "carry", "outside"), its outputs the next
carried values, each of the shape and dtype of its carried input; the node's arguments are
(*carried_init, *outside). `part(scan, index=k)` is the k-th final carried value.
Per-step outputs (`H[t] = h` in the source) are carried buffers written by the `update`
op at the loop index.
Additions to the contract (h-loopfront): the attributes `start`, `step`, `reverse` are left
out at their defaults; the body inputs the frontend builds also carry `loop=<k>` (a number
per loop, so that the inputs of two loops are never one interned node) and, for a carried or
outside value that is not floats, `dtype=` (`ops/dtypes.input_dtype` reads it). Nothing
needs them: a hand-built body without them is as valid.

`for t in range(...)` in the source builds one (gradgen/frontend/loops.py), its body
closed over the values it reads from outside and its loop-invariant code computed before
the loop. Differentiation rules come with the loop derivatives: a scan's VJP is a
reversed scan over the body's VJP, its JVP a scan over the body's JVP.

Emission: the scan is a statement, the carried variables given their initial values and
then a loop over the body, which the scheduler printing the scan schedules
(`Printer.region`) and the printer lays out (`Printer.loop`); `part` is the carried
variable after the loop.
"""

from __future__ import annotations

import sympy

from ..dims import as_expr
from ..errors import ShapeError
from ..ir import builder
from .registry import PREC_ATOM, defop

__all__ = ["REGIONS_BUILT", "loop_range"]


# The builder's memo key set once a compilation builds a loop: the passes look into loop
# bodies only then (passes/regions.py), at no cost to the programs without loops.
REGIONS_BUILT = "regions built"


def _scan_shape(args, body, length, start=0, step=1, reverse=False):
    builder().memo[REGIONS_BUILT] = True
    carried = len(body.outputs)
    if len(args) < carried:
        raise ShapeError(f"a loop carrying {carried} values got {len(args)} initial values")
    if not isinstance(step, int) or step == 0:
        raise ShapeError(f"a loop's step must be a nonzero integer, not {step!r}")
    return ()


def loop_range(p, node) -> tuple[str, str, str]:
    """The printed `range(start, stop, step)` of a scan: iteration i has the index
    start + i * step, for i < length (the stop is start + length * step)."""
    start, step = as_expr(node.attr("start", 0)), node.attr("step", 1)
    length = as_expr(node.attr("length"))
    stop = start + length * step
    if step not in (1, -1) and isinstance(length, sympy.floor):
        # length = floor((span + k - 1) / k) steps of k = |step| cover a span of `span`:
        # range(0, T, 2), not range(0, 2 * ((T + 1) // 2), 2)
        k = abs(step)
        span = sympy.expand(length.args[0] * k - (k - 1))
        if span.is_integer:
            stop = start + span if step > 0 else start - span
    return (p.scalar(start, integer=True)[0], p.scalar(stop, integer=True)[0], str(step))


def _part_shape(args, index):
    scan = args[0]
    outputs = scan.attr("body").outputs
    if not 0 <= index < len(outputs):
        raise ShapeError(f"a loop carries {len(outputs)} values; there is no value {index}")
    return outputs[index].shape


def _scan_stmt(p, node, target):
    """`h = h0`, then `for t in range(T):` over the body (`target` names nothing)."""
    code = p.region(node)
    start, stop, step = loop_range(p, node)
    if start == "0" and step == "1" and not node.attr("reverse", False):
        return code.init + p.loop(code.index, stop, code.body)   # the usual loop
    return code.init + p.loop(code.index, stop, code.body, start=start, step=step,
                              reverse=node.attr("reverse", False))


# scan(carried..., outside..., body=Region, length=dim[, start=dim, step=int, reverse=bool]):
# the loop; its value is a tuple.
defop("scan", None, shape=_scan_shape, dtype="tuple", traits=frozenset({"region"}),
      hint="loop", stmt=_scan_stmt)

# part(scan, index): the index-th final carried value of a loop.
defop("part", 1, shape=_part_shape, hint="carried",
      emit=lambda p, n: (p.carried(n.args[0], n.attr("index")), PREC_ATOM))
