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

import sympy

from ..dims import as_expr, dim_symbol, same_shape
from ..ir import Graph, Node, Region, builder, const, make, make_as_is, topo_order
from ..ops.control import REGIONS_BUILT, ROWS_REWRITTEN, WIDER_WRITES
from ..ops.dtypes import dtype_sources
from ..ops.indexing import row_read, row_write
from ..ops.stepwise import (
    batched_product,
    empty_with_rows,
    index_shift,
    product,
    stacked_rows,
    transposed_matrix,
)
from .loops import _read_before_written, fits_one_dtype, loops_with_pairs, row_reads
from .rebuild import rebuild

__all__ = ["fill_shifted_rows", "reuse_state_rows"]


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


# --------------------------------------------------------------------------- reuse_state_rows

# The fewest rows a step's products must have (a dimension the hints or the shapes give)
# for `reuse_state_rows` to make them per step: at one row per step (min-char-rnn's batch
# of 1) the per-step `h_steps[t].T @ da` is an outer product whose call and (H, H) add
# cost about as much as the whole batched gradient (25 x 17 us against one 12 us product,
# measured), at 32 rows a step the per-step products cost no more than the batched one.
MIN_STEP_ROWS = 16


def reuse_state_rows(graph: Graph, hints: dict[str, int] | None = None) -> Graph:
    """A loop that fills an array A row by row (A[t] = g, A starting as a matrix product
    `P @ M` of all the steps whose row t the step reads first: `dXWx = dhs`, then
    `dXWx[t] = ...`), where an outside array S (the saved states `h_steps`) is read only
    as rows and A's final value is read after the loop by products over S's rows
    (`h_steps[:T].reshape(...).T @ dXWx.reshape(...)`, the gradient sum_batched_product
    made one product), writes A's rows into the rows of S it no longer reads:
    - row t of `P @ M` is computed in the step (`dhsWy[t] @ Wy.T`): no (T, N, H) dhs;
    - each product over S's rows and A is accumulated per step (`dWh += h_steps[t].T @
      dh_mul`), before S's row is written: the reverse of sum_batched_product;
    - A's row t goes into the row of S the step reads last (`h_steps[t + 1] = dh_mul` in a
      backward loop reading rows t and t + 1), S carried through the loop; A after the
      loop is the view of those rows (`h_steps[1:]`, dWx's product over it).
    Two arrays of the loop's size alive with S, not three (rnn T=50: 4.05 -> 2.4 MiB).
    Only where each step's products have at least MIN_STEP_ROWS rows by the shapes or the
    `hints` (`--hint N=32`): with fewer they cost time (see MIN_STEP_ROWS)."""
    b = builder()
    if not b.memo.get(REGIONS_BUILT):   # no loop in this compilation
        return graph
    loops_ = b.with_trait("region")
    if not any(n.op in loops_ for n in graph.order):
        return graph
    parts = b.with_trait("projection")
    users: dict[int, list[Node]] = {}
    for n in graph.order:
        for a in n.args:
            users.setdefault(id(a), []).append(n)
    inputs = {id(x) for x in graph.inputs}
    replace: dict[int, Node] = {}
    for n in graph.order:
        if n.op not in loops_ or any(id(a) in replace for a in n.args):
            continue
        taken = [u for u in users.get(id(n), ()) if u.op in parts]
        found = _state_rows(n, taken, users, inputs, hints or {})
        if found is not None:
            replace.update(_rewritten(n, *found, taken, graph.names))
    if not replace:
        return graph
    names = dict(graph.names)
    new: dict[int, Node] = {}
    for n in graph.order:
        if id(n) in replace:
            m = replace[id(n)]
            if n in names:
                names.setdefault(m, names[n])
        else:
            args = [new[id(a)] for a in n.args]
            if all(x is y for x, y in zip(args, n.args)):
                m = n
            else:
                with builder().at(origin=n.origin, phase=n.phase):
                    m = make_as_is(n.op, *args, **n.kw)
                if n in names:
                    names.setdefault(m, names[n])
        new[id(n)] = m
    return graph.with_outputs([new[id(o)] for o in graph.outputs], names)


def _row_offset(view: Node, base: Node, length) -> int | None:
    """e when `view` is rows e, ..., e + length - 1 of `base` (`base[e:e + length]`)."""
    if view is base:
        return 0 if same_shape((base.shape[0],), (length,)) else None
    start, stop = view.attr("index")[0][1:3]
    start = as_expr(start)
    stop = as_expr(base.shape[0] if stop is None else stop)
    if not start.is_Integer or not same_shape((stop - start,), (length,)):
        return None
    return int(start)


def _known_at_least(dim, least: int, hints: dict[str, int]) -> bool:
    """Whether the dimension `dim` is at least `least` by its value or the hints."""
    e = as_expr(dim).subs({dim_symbol(k): v for k, v in hints.items()})
    return bool(e.is_number and e >= least)


def _state_rows(n: Node, parts: list[Node], users: dict, inputs: set, hints: dict):
    """What `reuse_state_rows` rewrites in the loop `n` (its values read: `parts`):
    (k, j, d, products), k the
    carried array A, j the outside array S, d the row shift of A's rows in S, products
    [(the product node after the loop, e: S's rows it reads start at e)]; else None."""
    body = n.attr("body")
    if not isinstance(body, Region) or n.attr("start", 0) != 0 or n.attr("step", 1) != 1:
        return None
    c = len(body.outputs)
    t = body.inputs[0]
    length = as_expr(n.attr("length"))
    reverse = bool(n.attr("reverse", False))
    rows, other = row_reads(body)
    for k, (x, y) in enumerate(zip(body.inputs[1:1 + c], body.outputs)):
        place = row_write(y)
        init = n.args[k]
        if place is None or place[0] is not x or place[1] is not t or id(x) in other \
                or rows.get(id(x), set()) - {id(t)} or batched_product(init) is None \
                or not same_shape((init.shape[0],), (length,)) \
                or any(o is x for o in body.outputs) or id(init) in inputs:
            continue
        if not _known_at_least(init.shape[1], MIN_STEP_ROWS, hints):
            continue
        finals = [u for u in parts if u.attr("index") == k]
        if len(finals) != 1:
            continue
        final = finals[0]
        flats = [f for f in users.get(id(final), ())
                 if (r := stacked_rows(f)) is not None and r[1] is final]
        if not flats:
            continue
        for j in range(c, len(n.args)):
            s, sx = n.args[j], body.inputs[1 + j]
            if id(sx) in other or id(s) in inputs or s.is_const \
                    or builder().ops[s.op].view_of(s) is not None \
                    or s.ndim != 3 or not same_shape(tuple(s.shape[1:]), tuple(init.shape[1:])) \
                    or s.dtype != final.dtype or not fits_one_dtype(s, final):
                continue
            shifts = []
            for r in _row_reads_of(body, sx):
                e = _shift(r.args[1], t)
                if e is None:
                    break
                shifts.append(e)
            else:
                products = []
                for f in flats:
                    for p in users.get(id(f), []):
                        e = _product_over_rows(p, f, s, length)
                        if e is not None:
                            products.append((p, e))
                if not products:
                    continue
                shifts += [e for _, e in products]
                d = max(shifts) if reverse else min(shifts)
                room = as_expr(s.shape[0]) - d - length
                if d < 0 or room.is_nonnegative is not True:
                    continue
                return k, j, d, products
    return None


def _product_over_rows(p: Node, flat: Node, s: Node, length) -> int | None:
    """e when `p` is `S[e:e + L]` stacked, transposed, times `flat` (`h_steps[:T].reshape(
    (N * T, H)).T @ dXWx.reshape((N * T, H))`), else None."""
    if not product(p) or len(p.args) != 2 or p.args[1] is not flat \
            or transposed_matrix(p.args[0]) is None:
        return None
    rows = stacked_rows(transposed_matrix(p.args[0]))
    if rows is None or rows[0] is not s:
        return None
    return _row_offset(rows[1], s, length)


def _rewritten(n: Node, k: int, j: int, d: int, products: list, parts: list[Node],
               names: dict) -> dict[int, Node]:
    """{id(old node): its replacement} for the loop `n` rewritten by reuse_state_rows
    (`_state_rows`' findings k, j, d, products; `parts`: the values read from `n`). The
    carried S and sums are named as the values they continue (`h_steps`, `dWh`)."""
    body = n.attr("body")
    c = len(body.outputs)
    t = body.inputs[0]
    x, y = body.inputs[1 + k], body.outputs[k]
    sx = body.inputs[1 + j]
    init, s = n.args[k], n.args[j]
    pm, m = batched_product(init)
    with builder().at(origin=n.origin, phase=n.phase):
        loop_id = t.attr("loop")
        extra = {"loop": loop_id} if loop_id is not None else {}
        taken = {i.attr("name") for i in body.inputs}

        def fresh(name: str, shape, role: str) -> Node:
            while name in taken:
                name += "_"
            taken.add(name)
            return make_as_is("input", name=name, role=role, shape=tuple(shape), **extra)
        taken.discard(sx.attr("name"))
        s_in = fresh(names.get(s, sx.attr("name")), s.shape, "carry")
        p_in = fresh(names.get(pm, "dz"), pm.shape, "outside")
        m_in = fresh(names.get(m, "w"), m.shape, "outside")
        acc_ins = [fresh(names.get(p, f"acc{q}"), p.shape, "carry")
                   for q, (p, _) in enumerate(products)]
        new: dict[int, Node] = {id(sx): s_in}
        for node in topo_order(body.outputs):
            if id(node) in new or node.is_input:
                continue
            place = row_read(node)
            args = [new.get(id(a), a) for a in node.args]
            if not (place is not None and place[0] is x) \
                    and all(a is b for a, b in zip(args, node.args)):
                new[id(node)] = node
                continue
            with builder().at(origin=node.origin, phase=node.phase):
                if place is not None and place[0] is x:   # (row t of P @ M, in the step)
                    new[id(node)] = make_as_is("matmul", make_as_is("gather", p_in, t, axis=0),
                                               m_in)
                else:
                    new[id(node)] = make_as_is(node.op, *args, **node.kw)
        g = new.get(id(y.args[1]), y.args[1])
        accs = []
        for (p, e), a in zip(products, acc_ins):   # (read S's row before the write below)
            row = make_as_is("gather", s_in, make("add", t, const(e)) if e else t, axis=0)
            accs.append(make_as_is("add", a, make_as_is(
                "matmul", make_as_is("transpose", row, axes=(1, 0)), g)))
        write = make_as_is("update", s_in, g, make("add", t, const(d)) if d else t,
                           index=(), axis=0)
        final_k = next(u for u in parts if u.attr("index") == k)
        if not set(dtype_sources(s)) >= set(dtype_sources(final_k)):   # (Wy: not the states')
            builder().memo.setdefault(WIDER_WRITES, {})[id(write)] = write
        keep = [q for q in range(c) if q != k]
        inputs = (t, *(body.inputs[1 + q] for q in keep), *acc_ins, s_in,
                  *(body.inputs[1 + q] for q in range(c, len(n.args)) if q != j), p_in, m_in)
        outputs = (*(new.get(id(body.outputs[q]), body.outputs[q]) for q in keep), *accs, write)
        zeros = [make_as_is("full", *dtype_sources(p), value=sympy.Integer(0),
                            shape=tuple(p.shape)) for p, _ in products]
        args = (*(n.args[q] for q in keep), *zeros, s,
                *(n.args[q] for q in range(c, len(n.args)) if q != j), pm, m)
        scan = make_as_is(n.op, *args, **{**n.kw, "body": Region(inputs, outputs)})
        out: dict[int, Node] = {}
        renumber = {q: i for i, q in enumerate(keep)}
        rows_of = make_as_is("part", scan, index=len(keep) + len(products))
        stop = as_expr(n.attr("length")) + d
        if same_shape((stop,), (s.shape[0],)):
            stop = None
        final = make_as_is("index", rows_of, index=(("slice", d, stop, 1),))
        builder().memo.setdefault(ROWS_REWRITTEN, {})[id(final)] = final
        for u in parts:
            q = u.attr("index")
            out[id(u)] = final if q == k else make_as_is("part", scan, index=renumber[q])
        for i, (p, _) in enumerate(products):
            out[id(p)] = make_as_is("part", scan, index=len(keep) + i)
    return out
