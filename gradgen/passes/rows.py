"""`fill_shifted_rows`: a loop that fills a new array row by row, rows shifted from its
steps (`h_steps[t + 1] = h`, row 0 the initial state), and reads a precomputed array only
row by row (`XWx[t]`, the input projection `X @ Wx` of all steps that hoist_steps made)
finds that array in the rows it is about to fill: it is computed into them before the
loop (`np.matmul(X, Wx, out=h_steps[1:])`), and step t reads row t + 1 before writing it.
Of the two arrays of the loop's size only one is alive during the loop.

It runs after differentiation, with the lowering (`passes.lower`): the loop's derivative
is taken of the loop as written (the VJP's forward loop saves its states in `h_steps`;
`X @ Wx` stays an input of it), and only the code that computes the states changes.

The array B moves into rows d, ..., d + L - 1 of the array A the loop fills (L its rows),
d = the shift between the row of A a step writes and the row of B it reads, when:
- A starts as `np.empty` with only rows before d set (`h_steps[0] = h0`), and the body
  reads it nowhere but for its writes of one row per step (`A[t + s] = v`);
- the body reads B only at one row expression of the index (`B[t]`, or `B[t + k]`), each
  read before the write into that row (`passes/loops._read_before_written`), B has A's
  row shape, fits in A's rows from d, nothing else reads it and it is no view;
- A's dtype is B's or wider (A's dtype sources include B's): B's values are written into
  A exactly;
- B is a matrix product, which NumPy computes into the rows (`np.matmul(..., out=)`).
  Another B (charrnn's `Wxh[x]`, `X @ Wx + b` before `+= b` in place) would be computed
  into a temporary of its size and copied there: no less memory at the copy, one more
  pass over the rows.
"""

from __future__ import annotations

from ..dims import as_expr, same_shape
from ..ir import Graph, Node, Region, builder, const, make, make_as_is, topo_order
from ..ops.control import REGIONS_BUILT
from ..ops.dtypes import dtype_sources
from ..ops.indexing import row_read, row_write
from ..ops.stepwise import empty_with_rows, index_shift, product
from .loops import _read_before_written, loops_with_pairs, row_reads
from .rebuild import rebuild

__all__ = ["fill_shifted_rows"]


def fill_shifted_rows(graph: Graph) -> Graph:
    """Each loop's array B read row by row computed into the rows of the new array A the
    loop fills, shifted by the rows A's initial value sets (see the module's docstring)."""
    b = builder()
    if not b.memo.get(REGIONS_BUILT):   # no loop in this compilation
        return graph
    parts = b.with_trait("projection")
    smaller: dict[int, Node] = {}
    filled: dict[Node, str] = {}
    moved: list[Node] = []
    # (A's first value, item 0, for this loop alone too)
    for n, found in loops_with_pairs(graph, _shifted_pairs, also=0):
        smaller[id(n)], named = _filled(n, found)
        filled.update(named)
        moved += [n.args[j] for _, j, _ in found]
    if not smaller:
        return graph
    names = dict(graph.names)

    def rule(m: Node, uses) -> Node | None:
        if m.op not in parts or id(m.args[0]) not in smaller:
            return None
        return make_as_is("part", smaller[id(m.args[0])], index=m.attr("index"))
    # (built as is: a lowering, which the canonical rules would undo, stays)
    outputs = rebuild(graph.outputs, rule, names, graph.order, construct=make_as_is)
    for m in moved:   # (B is now spelled where it is written: `np.matmul(X, Wx, out=...)`)
        names.pop(m, None)
    for m, name in filled.items():   # (A under its name from the start)
        names.setdefault(m, name)
    return graph.with_outputs(outputs, names)


def _filled(n: Node, found: list[tuple[int, int, int]]) -> tuple[Node, dict[Node, str]]:
    """The loop `n` with each outside array j of `found` written into rows d, ... of the
    initial value of its carried array k, and the body reading those rows instead; and
    {the initial value with those rows written: the carried array's name}."""
    body = n.attr("body")
    args = list(n.args)
    reads: dict[int, Node] = {}
    gone = set()
    named: dict[Node, str] = {}
    with builder().at(origin=n.origin, phase=n.phase):
        for k, j, d in found:
            a, b = body.inputs[1 + k], body.inputs[1 + j]
            stop = as_expr(n.args[j].shape[0]) + d
            if same_shape((stop,), (n.args[k].shape[0],)):
                stop = None   # (`h_steps[1:]`)
            args[k] = make_as_is("update", args[k], n.args[j], index=(("slice", d, stop, 1),),
                           axis=None)
            named[args[k]] = a.attr("name")
            for m in _row_reads_of(body, b):   # (B[r] is A[r + d])
                r = m.args[1]
                reads[id(m)] = make_as_is("gather", a, make("add", r, const(d)) if d else r,
                                          axis=0)
            gone.add(j)
    new: dict[int, Node] = dict(reads)
    for m in topo_order(body.outputs):
        if id(m) not in new:
            args_m = [new.get(id(a), a) for a in m.args]
            new[id(m)] = m if all(a is b for a, b in zip(args_m, m.args)) else \
                make_as_is(m.op, *args_m, **m.kw)
    inputs = tuple(x for q, x in enumerate(body.inputs) if q - 1 not in gone)
    args = [x for q, x in enumerate(args) if q not in gone]
    outputs = tuple(new[id(y)] for y in body.outputs)
    with builder().at(origin=n.origin, phase=n.phase):
        return make_as_is("scan", *args, **{**n.kw, "body": Region(inputs, outputs)}), named


def _row_reads_of(body: Region, b: Node) -> list[Node]:
    """The body's nodes reading a row of the input `b`."""
    out = []
    for m in topo_order(body.outputs):
        place = row_read(m)
        if place is not None and place[0] is b:
            out.append(m)
    return out


def _shift(r: Node, t: Node) -> int | None:
    """k when the row expression `r` is the index `t` plus the integer k, else None."""
    return 0 if r is t else index_shift(r, t)


def _shifted_pairs(n: Node) -> list[tuple[int, int, int]]:
    """[(k, j, d)]: the carried array k of the loop `n` filled one row per step at a row
    d rows after the row of the outside array j the body reads (see the module's
    docstring for the conditions), each array j for one k."""
    body = n.attr("body")
    if not isinstance(body, Region):
        return []
    c = len(body.outputs)
    t = body.inputs[0]
    rows, other = row_reads(body)
    found: list[tuple[int, int, int]] = []
    taken: set[int] = set()
    for k, (x, y) in enumerate(zip(body.inputs[1:1 + c], body.outputs)):
        place = row_write(y)
        init = empty_with_rows(n.args[k])
        if place is None or place[0] is not x or init is None or id(x) in rows \
                or id(x) in other or any(o is x for o in body.outputs):
            continue
        sa = _shift(place[1], t)
        if sa is None:
            continue
        a = n.args[k]
        for j in range(c, len(n.args)):
            b, arg = body.inputs[1 + j], n.args[j]
            reads = rows.get(id(b))
            if j in taken or id(b) in other or not reads or len(reads) != 1 \
                    or not product(arg):
                continue
            r = next(m.args[1] for m in _row_reads_of(body, b))
            sb = _shift(r, t)
            if sb is None or sa - sb < 0 or arg.dtype != a.dtype or arg.ndim != a.ndim:
                continue
            d = sa - sb
            room = as_expr(a.shape[0]) - d - as_expr(arg.shape[0])
            if d == 0 and room == 0 \
                    or any(i >= d for i in init[1]) or room.is_nonnegative is not True \
                    or not same_shape(tuple(arg.shape[1:]), tuple(a.shape[1:])) \
                    or not set(dtype_sources(a)) >= set(dtype_sources(arg)) \
                    or not _read_before_written(body, b, y):
                continue   # (d = 0, same shape: share_row_buffers' case)
            found.append((k, j, d))
            taken.add(j)
            break
    return found
