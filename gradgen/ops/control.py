"""Control flow: a loop is one node holding its body as a region (`ir.Region`).

`scan(carried..., outside..., body, length)` runs `body` for the loop index 0, 1, ...,
length - 1: the body's inputs are the index, the carried values and the values it reads
from outside (the node's arguments after the carried ones); its outputs are the next
carried values. The node's value is the tuple of the final carried values, which `part`
takes apart. No source construct builds one yet (loops are issue 11); differentiation
rules come with them: a scan's VJP is a reversed scan over the body's VJP, its JVP a scan
over the body's JVP.

Emission: the scan is a statement, the carried variables given their initial values and
then a loop over the body, which the scheduler printing the scan schedules
(`Printer.region`) and the printer lays out (`Printer.loop`); `part` is the carried
variable after the loop.
"""

from __future__ import annotations

from ..errors import ShapeError
from .registry import PREC_ATOM, defop

__all__: list[str] = []


def _scan_shape(args, body, length):
    carried = len(body.outputs)
    if len(args) < carried:
        raise ShapeError(f"a loop carrying {carried} values got {len(args)} initial values")
    return ()


def _part_shape(args, index):
    scan = args[0]
    outputs = scan.attr("body").outputs
    if not 0 <= index < len(outputs):
        raise ShapeError(f"a loop carries {len(outputs)} values; there is no value {index}")
    return outputs[index].shape


def _scan_stmt(p, node, target):
    """`h = h0`, then `for t in range(T):` over the body (`target` names nothing)."""
    code = p.region(node)
    length = p.scalar(node.attr("length"), integer=True)[0]
    return code.init + p.loop(code.index, length, code.body)


# scan(carried..., outside..., body=Region, length=dim): the loop; its value is a tuple.
defop("scan", None, shape=_scan_shape, dtype="tuple", traits=frozenset({"region"}),
      hint="loop", stmt=_scan_stmt)

# part(scan, index): the index-th final carried value of a loop.
defop("part", 1, shape=_part_shape, hint="carried",
      emit=lambda p, n: (p.carried(n.args[0], n.attr("index")), PREC_ATOM))
