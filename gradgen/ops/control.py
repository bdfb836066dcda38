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
reversed scan over the body's VJP, its JVP a scan over the body's JVP; they are
gradgen/autodiff/loops.py's, attached to these ops from the autodiff layer
(`registry.attach_rules`: ops/ never imports autodiff/).

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
from .registry import PREC_ATOM, PREC_CALL, defop

__all__ = ["REGIONS_BUILT", "ROWS_REWRITTEN", "STEP_INDICES", "WIDER_WRITES", "loop_range"]


# The builder's memo key set once a compilation builds a loop: the passes look into loop
# bodies only then (passes/regions.py), at no cost to the programs without loops.
REGIONS_BUILT = "regions built"

# The builder's memo key of the ids of the index vectors (`np.arange(T)`) that stand for a
# loop's index at every step (sink_steps batched the steps): codegen names them `steps`.
STEP_INDICES = "step indices"

# The builder's memo key of {id(view): the view} for the views of an array's rows
# that a loop wrote other values into (passes/rows.reuse_state_rows: a backward loop's row
# gradients in the saved states' rows): codegen's comment says so where they are named.
ROWS_REWRITTEN = "rows rewritten"

# The builder's memo key of {id(write): the write} for the row writes of values that may
# read a float argument the array's dtype does not (reuse_state_rows: the row gradients
# read Wy, the saved states do not): the function makes its float arguments one dtype
# where they differ (rule `one_dtype_at_entry`), so that NumPy rounds nothing.
WIDER_WRITES = "wider writes"


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


def loop_attrs(node) -> dict:
    """The loop attributes of a scan but its body: length, and start, step, reverse where
    they are not the defaults (build another scan over the same steps with them)."""
    return {k: v for k, v in node.attrs if k != "body"}


def reads(node) -> frozenset:
    """The ids of the input nodes the value of `node` depends on, through loops exactly:
    a loop's k-th final value depends on its initial value, the initial values and outside
    values that the k-th next value reads, and those of the carried values it reads (memoised per
    compilation; a loop's own entry is a tuple of them, one per carried value)."""
    from ..ir import analysis

    return analysis("loop_reads", node, _reads_rule)


def _reads_rule(n, args):
    if n.is_input:
        return frozenset((id(n),))
    if n.op == "part":
        return args[0][n.attr("index")]
    if n.op == "scan":
        body = n.attr("body")
        c = len(body.outputs)
        where = {id(x): q for q, x in enumerate(body.inputs)}   # (arg q - 1)
        each = []
        for k in range(c):
            chain, ids = {k}, frozenset()
            while True:
                ids = frozenset().union(*(reads(body.outputs[j]) for j in chain))
                more = chain | {where[i] - 1 for i in ids if 1 <= where.get(i, 0) <= c}
                if more == chain:
                    break
                chain = more
            # and the initial values of the chain: they are the final values when the loop
            # runs no step, and the loop node reads them whatever its body does
            each.append(frozenset().union(*(args[where[i] - 1] for i in ids
                                            if where.get(i, 0) >= 1),
                                          *(args[j] for j in chain)))
        return tuple(each)
    if len(args) == 1:
        return args[0]
    out: frozenset = frozenset()
    for a in args:
        out |= a
    return out


def iteration(index, node):
    """The iteration number i of the loop `node` at the body's index value `index`
    (S + i*K): the index itself for start 0 and step 1 (an int node)."""
    from ..ir import const, make

    start, step = node.attr("start", 0), node.attr("step", 1)
    i = index if start == 0 else index - const(start)
    return i if step == 1 else make("floordiv", i, const(step))


def next_row(i):
    """The row after row `i` (an int node), `i + 1`, with a constant folded: `t - 1 + 1`
    is `t` (the row of a loop from 1 whose buffer holds each carried value and its next)."""
    from ..ir import const

    if i.op == "sub" and i.args[1].is_const and i.args[1].value.is_Integer:
        c = int(i.args[1].value) - 1
        return i.args[0] if c == 0 else i.args[0] - const(c) if c > 0 else i.args[0] + const(-c)
    return i + const(1)


def _scan_stmt(p, node, target):
    """`h = h0`, then `for t in range(T):` over the body (`target` names nothing); `for t
    in reversed(range(T)):` for a reversed loop (a loop's backward pass)."""
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

def _emit_empty(p, node):
    from .constants import dtype_of

    return p.creation("empty", p.shape(node.attr("shape")), dtype_of(p, node)), PREC_CALL


# empty(sources..., shape, name): an uninitialised array of `shape` in the dtype of its
# arguments: a loop's per-step buffer (saved residuals `h_steps`), every entry of which the
# loop writes before anything reads it. `name` names the buffer (and keeps two buffers of
# one shape apart: they are never one node).
defop("empty", None, shape=lambda args, shape, name: shape, emit=_emit_empty,
      buffer=lambda n: "empty",
      traits=frozenset({"nondiff", "buffer"}), hint=lambda node, names: node.attr("name"))

# part(scan, index): the index-th final carried value of a loop.
defop("part", 1, shape=_part_shape, hint="carried", traits=frozenset({"projection"}),
      emit=lambda p, n: (p.carried(n.args[0], n.attr("index")), PREC_ATOM))
