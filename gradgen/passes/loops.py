"""Loops computing the same steps share one loop; a loop computes only what is read.

A derivative's loops contain the loop they differentiate: a VJP's forward loop is the
original body with writes of the saved values added (same index, carried and outside
inputs, same outputs), a JVP's loop the body with the tangents beside. `merge_loops` lets
the biggest such loop stand for the others (f_grad runs the forward loop once, not once
for the value and once for the residuals), then `prune_loops` drops the carried values no
one reads (`part`s unused, and no other kept value's next value reads them) and the
outside values the kept ones do not read: a function that needs no derivative saves no
residual, a gradient that needs no cotangent of X accumulates none; `drop_dead_row_writes`
then drops a step's write into the row it alone reads of a carried array whose final
value nobody reads (a backward loop's `dH[t] = 0`), `read_unpadded` lets a loop read
the rows of an array padded with zeros (`dS = zeros; dS[1:] = v`) from the array itself,
and `share_row_buffers` lets a loop write the rows of a new array into those of an array
it reads row by row and nothing reads after it (`dhs[t] = dh_mul`, not `dXWx[t] = ...`).
All run in the bodies of loops too.
Graphs without a loop are returned as they are at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from ..dims import as_expr, same_shape
from ..ir import Graph, Node, Region, builder, carry_names, make, topo_order, use_counts
from ..ops.control import REGIONS_BUILT
from ..ops.control import reads as _reads
from ..ops.dtypes import dtype_sources
from ..ops.indexing import row_read, row_write
from ..ops.stepwise import (
    index_shift,
    indexed_by,
    new_empty,
    placing_axes,
    taken_after_first,
    zero_padded,
)
from .rebuild import rebuild_graph

__all__ = ["drop_dead_row_writes", "loops", "merge_loops", "prune_loops", "read_unpadded",
           "share_row_buffers"]

SCAN, PART = "scan", "part"


def _loops() -> frozenset:
    """The ops that are loops (hold a region)."""
    return builder().with_trait("region")


def _parts() -> frozenset:
    """The ops that take one value of a loop's tuple."""
    return builder().with_trait("projection")


def _parts_read(graph: Graph, parts: frozenset) -> dict[int, set[int]]:
    """{id(loop): the indices of its values something in `graph` takes}."""
    used: dict[int, set[int]] = {}
    for n in graph.order:
        if n.op in parts:
            used.setdefault(id(n.args[0]), set()).add(n.attr("index"))
    return used


def loops(graph: Graph) -> Graph:
    """`merge_loops` then `prune_loops`, in the graph and in the bodies of its loops, until
    neither changes anything."""
    if not builder().memo.get(REGIONS_BUILT):   # no loop in this compilation
        return graph
    loops_ = _loops()
    if not any(n.op in loops_ for n in graph.order):
        return graph
    while True:
        new = share_row_buffers(read_unpadded(drop_dead_row_writes(
            prune_loops(_merged(_in_bodies(graph))))))
        if new is graph:
            return graph
        graph = new


def _merged(graph: Graph) -> Graph:
    """`merge_loops` until it changes nothing, before any loop is pruned: a merge rebuilds
    the loops reading the merged one (a backward loop reading a forward loop's buffers),
    and a loop one of them computes must be merged into it before prune_loops drops the
    values it computes for it (hmm's gradient loop and its JVP in f_hvp)."""
    while True:
        new = merge_loops(graph)
        if new is graph:
            return graph
        graph = new


def _in_bodies(graph: Graph) -> Graph:
    """The graph with `loops` applied to the body of each loop in it."""
    loops_ = _loops()

    def rule(n: Node, uses) -> Node | None:
        if n.op not in loops_:
            return None
        body = n.attr("body")
        inner = loops(Graph(body.inputs, body.outputs))
        if inner.outputs == body.outputs:
            return None
        return make(SCAN, *n.args, **{**n.kw, "body": Region(body.inputs, inner.outputs)})
    return rebuild_graph(graph, rule, skip=lambda n: n.op not in loops_)


def _carried(scan: Node) -> int:
    return len(scan.attr("body").outputs)


def _embedding(small: Node, big: Node) -> dict[int, int] | None:
    """Where each carried value of the loop `small` is one of `big`'s (k -> k'), if `big`
    computes all of it: the same steps, each body input of `small` one of `big`'s of the
    same kind given the same value, each carried value's next value the same node."""
    if small is big or {k: v for k, v in small.attrs if k != "body"} != \
            {k: v for k, v in big.attrs if k != "body"}:
        return None
    b1, b2 = small.attr("body"), big.attr("body")
    if b1.inputs[0] is not b2.inputs[0] or len(b1.inputs) > len(b2.inputs):
        return None
    where = {id(x): q for q, x in enumerate(b2.inputs)}
    c1, c2 = len(b1.outputs), len(b2.outputs)
    found = {}
    for p, x in enumerate(b1.inputs[1:], 1):
        q = where.get(id(x))
        if q is None or q == 0 or (p <= c1) != (q <= c2) \
                or small.args[p - 1] is not big.args[q - 1]:
            return None
        if p <= c1:
            if b1.outputs[p - 1] is not b2.outputs[q - 1]:
                return None
            found[p - 1] = q - 1
    return found


def merge_loops(graph: Graph) -> Graph:
    """Each loop that another loop of the graph computes entirely read from that one."""
    loops_, parts = _loops(), _parts()
    scans = [n for n in graph.order if n.op in loops_]
    if len(scans) < 2:
        return graph
    target: dict[int, tuple[Node, dict]] = {}
    for small in scans:
        for big in sorted(scans, key=lambda s: -len(s.args)):
            found = _embedding(small, big)
            if found is not None:
                target[id(small)] = big, found
                break
    if not target:
        return graph

    def rule(n: Node, uses) -> Node | None:
        if n.op not in parts or id(n.args[0]) not in target:
            return None
        big, found = target[id(n.args[0])]
        return make(PART, big, index=found[n.attr("index")])
    return rebuild_graph(graph, rule)


def prune_loops(graph: Graph) -> Graph:
    """Each loop without the carried values nobody reads and the outside values its kept
    values do not need."""
    loops_, parts = _loops(), _parts()
    used = _parts_read(graph, parts)
    smaller: dict[int, tuple[Node, dict]] = {}
    for n in graph.order:
        if n.op not in loops_:
            continue
        body = n.attr("body")
        c = len(body.outputs)
        cin = body.inputs[1:1 + c]
        keep = set(used.get(id(n), ()))
        while True:
            reads = frozenset().union(*(_reads(body.outputs[k]) for k in keep))
            more = keep | {k for k, x in enumerate(cin) if id(x) in reads}
            if more == keep:
                break
            keep = more
        kept = sorted(keep)
        outside = [q for q, x in enumerate(body.inputs[1 + c:]) if id(x) in reads]
        if len(kept) == c and len(outside) == len(body.inputs) - 1 - c:
            continue
        region = Region((body.inputs[0], *(cin[k] for k in kept),
                         *(body.inputs[1 + c + q] for q in outside)),
                        tuple(body.outputs[k] for k in kept))
        with builder().at(origin=n.origin, phase=n.phase):
            new = make(SCAN, *(n.args[k] for k in kept), *(n.args[c + q] for q in outside),
                       **{**n.kw, "body": region})
        smaller[id(n)] = new, {k: i for i, k in enumerate(kept)}
    if not smaller:
        return graph

    def rule(n: Node, uses) -> Node | None:
        if n.op not in parts or id(n.args[0]) not in smaller:
            return None
        new, found = smaller[id(n.args[0])]
        return make(PART, new, index=found[n.attr("index")])
    return rebuild_graph(graph, rule)


def drop_dead_row_writes(graph: Graph) -> Graph:
    """Each loop without the writes `A[t] = v` (t the loop's index) into a carried array A
    whose final value nobody reads and whose rows the body reads only at t (`A[t]`, before
    the write; or for its dtype): row t is read at step t only, so what the step writes
    there is never read (a backward loop's `dH[t] = 0`, the cotangent of the zeros a
    forward loop's `H[t] = h` wrote into). The array is then carried as it is."""
    loops_, parts = _loops(), _parts()
    used = _parts_read(graph, parts)
    smaller: dict[int, Node] = {}
    for n in graph.order:
        if n.op not in loops_:
            continue
        body = n.attr("body")
        dead = [k for k in range(len(body.outputs))
                if k not in used.get(id(n), ()) and _dead_row_write(body, k)]
        if not dead:
            continue
        outputs = tuple(body.inputs[1 + k] if k in dead else y
                        for k, y in enumerate(body.outputs))
        with builder().at(origin=n.origin, phase=n.phase):
            smaller[id(n)] = make(SCAN, *n.args,
                                  **{**n.kw, "body": Region(body.inputs, outputs)})
    return _parts_of(graph, smaller, parts)


def _parts_of(graph: Graph, smaller: dict[int, Node], parts: frozenset) -> Graph:
    """The graph with each value read from a loop in `smaller` ({id: its replacement,
    the same carried values}) read from the replacement instead."""
    if not smaller:
        return graph

    def rule(n: Node, uses) -> Node | None:
        if n.op not in parts or id(n.args[0]) not in smaller:
            return None
        return make(PART, smaller[id(n.args[0])], index=n.attr("index"))
    return rebuild_graph(graph, rule)


def _dead_row_write(body: Region, k: int) -> bool:
    """Whether the k-th next value of the loop body is `A[t] = v` for the carried A and
    the index t (or `A[t + k]`), and everything else in the body reads A only at that row
    or for its dtype."""
    x, t, y = body.inputs[1 + k], body.inputs[0], body.outputs[k]
    place = row_write(y)
    if place is None or place[0] is not x or any(o is x for o in body.outputs):
        return False
    row = place[1]   # (t, or t + k for an integer k: a row per step, each step its own)
    if row is not t and index_shift(row, t) is None:
        return False
    dtype_only = builder().with_trait("dtype_only")
    for n in topo_order(body.outputs):
        if n is y or not any(a is x for a in n.args):
            continue
        place = row_read(n)
        if n.op not in dtype_only and (place is None or place[0] is not x or place[1] is not row):
            return False
    return True


def read_unpadded(graph: Graph) -> Graph:
    """Each loop reading the array `A = scatter(v, like, [a:])` (zeros of like's shape, v
    in rows a to a + L) only as rows `A[t + a]` (t the loop's index, L its length; a
    carried A no step changes whose final value nobody reads, or an outside one) reads
    `v[t]` instead: the zeros and the copy are not made. The cotangent of the states a
    loop keeps in rows 1 to L of `h_steps` is such an array (`dh_steps[t + 1]`)."""
    loops_, parts = _loops(), _parts()
    used = _parts_read(graph, parts)
    smaller: dict[int, Node] = {}
    renumber: dict[int, dict[int, int]] = {}   # id(loop) -> {old carried index: new}
    for n in graph.order:
        if n.op not in loops_ or n.attr("start", 0) != 0 or n.attr("step", 1) != 1:
            continue
        body = n.attr("body")
        c = len(body.outputs)
        swap: dict[int, tuple[int, Node, int]] = {}   # id(input) -> (position, v, a)
        for j, x in enumerate(body.inputs[1:]):
            if j < c and (body.outputs[j] is not x or j in used.get(id(n), ())):
                continue
            found = _padded(n.args[j], n.attr("length"))
            if found is not None:
                swap[id(x)] = (j, *found)
        if not swap:
            continue
        t = body.inputs[0]
        order = topo_order(body.outputs)
        for m in order:   # (only row reads A[t + a])
            place = row_read(m)
            for x in m.args:
                if id(x) in swap and not (place is not None and place[0] is x
                                          and _shift(place[1], t) == swap[id(x)][2]):
                    swap.pop(id(x))
        if any(id(o) in swap for k, o in enumerate(body.outputs) if body.inputs[1 + k] is not o):
            continue
        if not swap:
            continue
        new_in = {}
        for x in body.inputs:   # (a carried one now read from outside: no longer carried)
            if id(x) in swap:
                v = swap[id(x)][1]
                new_in[id(x)] = make("input", **{**x.kw, "shape": tuple(v.shape),
                                                 "role": "outside"})
        new = _reading_rows(order, new_in, t)
        moved = {j for j, _, _ in swap.values() if j < c}
        keep = [k for k in range(c) if k not in moved]
        ins, outer = body.inputs[1:1 + c], body.inputs[1 + c:]
        inputs = (t, *(ins[k] for k in keep), *(new_in.get(id(x), x) for x in outer),
                  *(new_in[id(ins[k])] for k in sorted(moved)))
        outputs = tuple(new[id(body.outputs[k])] for k in keep)
        args = list(n.args)
        for j, v, _ in swap.values():
            args[j] = v
        args = [*(args[k] for k in keep), *args[c:], *(args[k] for k in sorted(moved))]
        with builder().at(origin=n.origin, phase=n.phase):
            smaller[id(n)] = make(SCAN, *args, **{**n.kw, "body": Region(inputs, outputs)})
        renumber[id(n)] = {k: p for p, k in enumerate(keep)}
    if not smaller:
        return graph

    def rule(n: Node, uses) -> Node | None:
        if n.op not in parts or id(n.args[0]) not in smaller:
            return None
        return make(PART, smaller[id(n.args[0])],
                    index=renumber[id(n.args[0])][n.attr("index")])
    return rebuild_graph(graph, rule)


def _reading_rows(order: list[Node], new_in: dict[int, Node], t: Node) -> dict[int, Node]:
    """{id(body value): its new value} of the body values in `order` with each row read of
    an input in `new_in` (by id) a read of row t of the new input."""
    new: dict[int, Node] = dict(new_in)
    for m in order:
        if id(m) in new:
            continue
        place = row_read(m)
        if place is not None and id(place[0]) in new_in:
            with builder().at(origin=m.origin, phase=m.phase):
                new[id(m)] = make(m.op, new_in[id(place[0])], t, **m.kw)
            continue
        args = [new.get(id(a), a) for a in m.args]
        if all(a is b for a, b in zip(args, m.args)):
            new[id(m)] = m
        else:
            with builder().at(origin=m.origin, phase=m.phase):
                new[id(m)] = make(m.op, *args, **m.kw)
            carry_names(m, new[id(m)])   # (`weights` stays weights)
    return new


def _padded(arg: Node, length) -> tuple[Node, int] | None:
    """(v, a) for `scatter(v, like, [a:a + L])` (rows a to a + L of zeros, L = `length`,
    written with v of L rows), else None."""
    found = zero_padded(arg)
    if found is None:
        return None
    v, part = found
    a, stop = as_expr(part[1]), as_expr(part[2])
    if not a.is_Integer or not v.shape \
            or not same_shape((stop - a, as_expr(v.shape[0])), (as_expr(length),) * 2):
        return None
    return v, int(a)


def _shift(row: Node, t: Node) -> int | None:
    """k for the row `t + k` (0 for t itself), else None."""
    return 0 if row is t else index_shift(row, t)


def loops_with_pairs(graph: Graph, pairs_of: Callable[[Node], list], also: int | None = None
                     ) -> Iterator[tuple[Node, list]]:
    """Each loop of `graph` with the pairs `pairs_of(loop)` finds (tuples whose item 1 is
    the position j of an outside array among the loop's arguments) whose array j only this
    loop reads, is no input of the graph and may not be a view (nor item `also`'s, if
    given, read elsewhere): (loop, those pairs), for the loops with some left. The
    candidates of the passes that give a loop an outside array's buffer."""
    loops_ = _loops()
    uses: dict[int, int] = {}
    inputs: set[int] = set()
    for n in graph.order:
        if n.op not in loops_:
            continue
        found = pairs_of(n)
        if not found:
            continue
        if not uses:
            uses = use_counts(graph.order, graph.outputs)
            inputs = {id(x) for x in graph.inputs}
        args = n.args
        found = [p for p in found if (uses[id(args[p[1]])] == 1 or _read_before(graph, n,
                                                                        args[p[1]]))
                 and id(args[p[1]]) not in inputs and not _may_view(args[p[1]], uses)
                 and (also is None or uses[id(args[p[also]])] == 1)]
        if found:
            yield n, found


def _read_before(graph: Graph, loop: Node, a: Node) -> bool:
    """Whether every other reader of `a` is computed before `loop` (one the loop depends
    on: hmm's forward loop reads log_B_transpose, the backward loop that reads its parts
    last), and `a` is no output of the graph."""
    if any(o is a for o in graph.outputs):
        return False
    before = {id(m) for m in topo_order([loop])}
    return all(id(m) in before for m in graph.order
               if m is not loop and any(x is a for x in m.args))


def share_row_buffers(graph: Graph) -> Graph:
    """Each loop that fills a new array row by row (`A = empty`, `A[r] = v` at step t, r the
    same row expression of t at every read, `dXWx[t] = dh_mul`) and reads an outside array B
    of the same shape and dtype (or a wider one) only as rows `B[r]` (`dhs[t]`), where
    nothing else reads B, fills B's buffer instead: A starts as B and the body reads `A[r]`
    for `B[r]` (row r of A is B's until step t writes it, after the reads). One array of the
    loop's size less at once: a backward loop's row cotangents written into the rows of the
    cotangents (or saved values) it has just read."""
    parts = _parts()
    smaller: dict[int, Node] = {}
    for n, found in loops_with_pairs(graph, _row_buffer_pairs):
        body = n.attr("body")
        new_in = {}
        args = list(n.args)
        for k, j in found:   # (B's reads: rows of A, under A's name: `dXWx = dhs`,
            x = body.inputs[1 + k]   # then `dXWx[t] = dh_mul`, not `dhs[t] = dh_mul`)
            a = make("input", **x.kw)
            new_in[id(body.inputs[1 + j])] = new_in[id(x)] = a
            args[k] = n.args[j]
        new = _substituted(topo_order(body.outputs), new_in)
        gone = {j for _, j in found}
        inputs_ = tuple(new_in.get(id(x), x) for q, x in enumerate(body.inputs)
                        if q - 1 not in gone)
        args = [a for q, a in enumerate(args) if q not in gone]
        outputs = tuple(new[id(y)] for y in body.outputs)
        with builder().at(origin=n.origin, phase=n.phase):
            smaller[id(n)] = make(SCAN, *args, **{**n.kw, "body": Region(inputs_, outputs)})
    return _parts_of(graph, smaller, parts)


def _row_buffer_pairs(n: Node) -> list[tuple[int, int]]:
    """[(k, j)]: the carried array k of the loop `n` that starts empty and is written one
    row per step (`A[r] = v`, r the index or the index plus a number, A read nowhere else
    but for its dtype), and the argument j >= c of an outside array B of A's shape whose
    dtype is A's or wider (its dtype sources include A's: no precision is lost; in a loop
    run forwards also one of fewer float arguments, `fits_one_dtype`: the function makes
    them one dtype, schedule._steady_dtypes) that the body reads only as `B[r]`, each B
    for one A."""
    body = n.attr("body")
    c = len(body.outputs)
    t = body.inputs[0]
    rows, other = row_reads(body)
    found: list[tuple[int, int]] = []
    taken: set[int] = set()
    forwards = not n.attr("reverse", False)
    for k, (x, y) in enumerate(zip(body.inputs[1:1 + c], body.outputs)):
        place = row_write(y)
        if place is None or place[0] is not x or not new_empty(n.args[k]) \
                or id(x) in rows or id(x) in other or any(o is x for o in body.outputs):
            continue
        r = place[1]
        if r is not t and index_shift(r, t) is None:
            continue
        a = n.args[k]
        behind = _rows_behind(n, r)
        for j in range(c, len(n.args)):
            b, arg = body.inputs[1 + j], n.args[j]
            if j in taken or id(b) in other or not rows.get(id(b)) \
                    or not rows[id(b)] <= behind \
                    or arg.dtype != a.dtype or not same_shape(tuple(arg.shape), tuple(a.shape)) \
                    or not (fits_one_dtype(arg, a) if forwards else
                            set(dtype_sources(arg)) >= set(dtype_sources(a))) \
                                        or id(r) in rows[id(b)] and not _read_before_written(
                        body, b, y, next_first=forwards):
                continue
            found.append((k, j))
            taken.add(j)
            break
    return found


def fits_one_dtype(s: Node, a: Node) -> bool:
    """Whether the array `a`'s values can be written into `s`'s buffer exactly: `s`'s
    dtype covers `a`'s, or `a` reads no float input but `s`'s and the function's
    arguments, which the emitted function makes one dtype where they differ (rule
    `one_dtype_at_entry`: the scheduler's write asks for it, codegen/buffer_dtypes'
    BufferDtypes.fits; the write is marked, ops/control.WIDER_WRITES)."""
    extra = set(dtype_sources(a)) - set(dtype_sources(s))
    return all(x.attr("role") in ("data", "param") for x in extra)


def _rows_behind(n: Node, r: Node) -> set[int]:
    """The ids of the row expressions of the loop `n`'s body that are the written row `r`
    or a row the loop has passed when it writes row r (`t - 2` beside `t - 1` in a
    reversed loop, `t + 1` in a loop run forwards): rows no later step writes, so that a
    step reading them from an array whose buffer the rows r are written into reads its own
    values (hmm's backward step reads log_B_transpose[t - 2] for the carried alpha made
    again, and writes dlog_B_transpose[t - 1]). A row of a reversed loop that is negative
    at its last step (`t - 2` at t = 1: the last row, written by then) only where what
    reads it there is discarded (`_discarded_at`)."""
    body = n.attr("body")
    t = body.inputs[0]
    reverse = bool(n.attr("reverse", False))
    at = 0 if r is t else index_shift(r, t)
    out = {id(r)}
    if at is None:
        return out
    start = as_expr(n.attr("start", 0))
    order = topo_order(body.outputs)
    for m in order:
        k = 0 if m is t else index_shift(m, t)
        if k is None or not (k < at if reverse else k > at):
            continue
        if reverse and not (start + k).is_nonnegative and not _discarded_at(order, body, m,
                                                                           start):
            continue
        out.add(id(m))
    return out


def _discarded_at(order: list[Node], body: Region, row: Node, start) -> bool:
    """Whether every value computed from the reads at `row` reaches the body's outputs only
    through the third argument of a `where(t == start, a, b)` (elementwise ops, views and
    gathers at indices so read between): at t = start its value is not used
    (autodiff/loops._previous_next)."""
    t = body.inputs[0]
    readers: dict[int, list[Node]] = {}
    for m in order:
        for a in m.args:
            readers.setdefault(id(a), []).append(m)
    outputs = {id(o) for o in body.outputs}
    ops = builder().ops
    stack = [m for m in order if (place := row_read(m)) is not None and place[1] is row]
    seen: set[int] = set()
    while stack:
        m = stack.pop()
        if id(m) in seen:
            continue
        seen.add(id(m))
        if id(m) in outputs:
            return False
        for u in readers.get(id(m), ()):
            if taken_after_first(u, m, t, start):
                continue
            if "elementwise" not in ops[u.op].traits and ops[u.op].view_of(u) is None \
                    and not indexed_by(u, m):   # (`log_B[:, obs_transpose[t - 2]]`: the
                return False                    # last row's indices, in range)
            stack.append(u)
    return True


def row_reads(body: Region) -> tuple[dict[int, set[int]], set[int]]:
    """({id(input): the ids of the row expressions r it is read at as `B[r]`}, the ids of
    the inputs the body reads otherwise: not as a row, as the array a next value writes a
    row of, or for its dtype)."""
    dtype_only = builder().with_trait("dtype_only")
    rows: dict[int, set[int]] = {}
    other: set[int] = set()
    writes = {id(y) for y in body.outputs}
    for m in topo_order(body.outputs):
        place = row_read(m)
        for q, a in enumerate(m.args):
            if not a.is_input or m.op in dtype_only:
                continue
            if place is not None and q == 0 and place[0] is a:
                rows.setdefault(id(a), set()).add(id(place[1]))
            elif not (q == 0 and id(m) in writes and row_write(m) is not None):
                other.add(id(a))
    return rows, other


def _read_before_written(body: Region, b: Node, y: Node, next_first: bool = False) -> bool:
    """Whether the code of the body can read the rows of the body input `b` before the
    write `y` (`A[r] = g`) into them, A then sharing b's buffer: no next value reads a row
    of b (or a view of one) itself, and each other value reading one is g's or is read
    more than once (a variable, computed before the write); with `next_first` (a loop run
    forwards) also a next value reading one through values read once, which the scheduler
    computes before the write (schedule._read_before_write: hmm's `alpha = lse +
    lse_steps[t - 1]`, then `lse_steps[t - 1] = lse`). Else the scheduler would copy A at
    every step to keep its old row (`A = A.copy()`)."""
    order = topo_order(body.outputs)
    ops = builder().ops
    rows: set[int] = set()
    for m in order:
        if m.args and (m.args[0] is b and row_read(m) is not None
                       or id(m.args[0]) in rows and ops[m.op].view_of(m) is not None):
            rows.add(id(m))
    outputs = {id(o) for o in body.outputs if o is not y}
    if rows & outputs:
        return False
    feeds_g = {id(m) for m in topo_order([y.args[1]])}
    uses = use_counts(order, body.outputs)
    first = outputs if next_first else set()
    for m in order:
        if id(m) not in rows and any(id(a) in rows for a in m.args) and \
                (id(m) in outputs - first
                 or not _kept_before(m, order, outputs, feeds_g, uses, first)):
            return False
    return True


def _kept_before(m: Node, order: list[Node], outputs: set[int], feeds_g: set[int],
                 uses: dict[int, int], first: set[int] = frozenset()) -> bool:
    """Whether the value `m` (reading a row) is g's or read more than once, or is read
    once by such a value through values read once (`weights = alpha[:, :, None] -
    lse_steps[t - 1][:, None]; weights += log_A; np.exp(weights, out=weights)`, the
    exponentials read twice), or is or reaches so a next value in `first`: the scheduler
    computes it into a variable, before the write."""
    reader: dict[int, Node] = {}
    for u in order:
        for a in u.args:
            reader[id(a)] = u
    while True:
        if id(m) in feeds_g or uses[id(m)] >= 2 or id(m) in first:
            return True   # (a next value computed first: schedule._read_before_write)
        if id(m) in outputs or uses[id(m)] != 1 or id(m) not in reader:
            return False
        m = reader[id(m)]


def _may_view(a: Node, uses: dict[int, int]) -> bool:
    """Whether the value `a` may be a view of another array (its buffer not its own): not
    where it places the axes (`transpose`) of a new array that nothing else reads (hmm's
    `np.transpose(log_B[:, obs_transpose], (1, 2, 0))`, the gather's own buffer)."""
    ops = builder().ops
    while not a.is_const and ops[a.op].view_of(a) is not None:
        if not placing_axes(a) or uses.get(id(a.args[0])) != 1:
            return True
        a = a.args[0]
    return a.is_const or a.is_input


def _substituted(order: list[Node], mapping: dict[int, Node]) -> dict[int, Node]:
    """{id(value): its new value} of the values in `order` with the inputs in `mapping`
    (by id) replaced."""
    new: dict[int, Node] = dict(mapping)
    for m in order:
        if id(m) in new:
            continue
        args = [new.get(id(a), a) for a in m.args]
        if all(a is b for a, b in zip(args, m.args)):
            new[id(m)] = m
        else:
            with builder().at(origin=m.origin, phase=m.phase):
                new[id(m)] = make(m.op, *args, **m.kw)
            carry_names(m, new[id(m)])   # (`weights` stays weights)
    return new
