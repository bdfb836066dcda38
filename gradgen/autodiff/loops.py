"""The derivative rules of loops (`scan`, `part`): the derivative of a loop is a loop.

* VJP: the forward loop again, saving what the backward body needs per step in buffers
  of shape (L, ...) (`h_steps`), and a reversed loop over the body's VJP carrying the
  cotangents of the carried values and accumulating those of the values read from outside
  (`dW = dW + ...`, from zeros). A saved value is one that depends on a carried value;
  what depends only on the index and outside values is recomputed in the backward body,
  what depends only on outside values is computed once before the loop. With
  checkpointing (`checkpoint=K`) the forward loop saves the carried values every K steps
  only, and the backward loop recomputes each segment's residuals (`_checkpointed_vjp`);
  with K = 1 (every step a checkpoint) there are no segments: the forward loop saves the
  carried values and what `recompute_residuals` keeps, the backward step recomputes the
  rest from them.
* JVP: one loop over the body and its JVP, the tangents carried beside the values.
* Batched JVP (`vmap`, the Hessian's): the same with a batch of tangents.

A loop's value is the tuple of its final carried values: its cotangent (tangent) is a
dict {k: that of the k-th carried value}; `part` picks one. These rules live here, not in
gradgen/ops/control.py, because they differentiate the body (ops/ never imports autodiff/):
`registry.attach_rules` gives them to the ops. The forward loop of a VJP (or the loop of a
JVP) contains the original loop's body, inputs and outputs, so the pass
gradgen/passes/loops.py lets one loop compute both and drops what nobody reads.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import sympy

from ..dims import as_expr, nominal_size, same_shape
from ..ir import (
    TEMPORARY_NAMES,
    ById,
    Node,
    Region,
    analysis,
    builder,
    const,
    make,
    topo_order,
    unvisited,
)
from ..ops.control import iteration, loop_attrs, next_row
from ..ops.control import reads as _inputs_of
from ..ops.dtypes import carried_dtype_sources, dtype_sources
from ..ops.indexing import add_rows, added_row
from ..ops.nn import lse_form, lse_shifted, lse_weighted
from ..ops.registry import REGISTRY, attach_rules
from ..ops.stepwise import (
    first_row_set,
    gathered_row,
    gathered_rows,
    index_shift,
    row_read,
    row_written,
)
from .forward import batched_jvp, jvp
from .reverse import vjp

__all__ = ["checkpointing"]

FLOAT = "float"


@contextlib.contextmanager
def checkpointing(every: int | None, names: dict | None = None) -> Iterator[None]:
    """Build the VJPs of loops inside the block with checkpoints every `every` steps
    (None: save every step's residuals), naming the buffers of saved values after the
    source's names of them (`names`: node -> name) where it has some."""
    memo = builder().memo
    saved = memo.get("checkpoint"), memo.get("loop_names")
    memo["checkpoint"], memo["loop_names"] = every, names or {}
    try:
        yield
    finally:
        memo["checkpoint"], memo["loop_names"] = saved


# ---------------------------------------------------------------- helpers

def substitute(roots: Sequence[Node], mapping: dict[int, Node]) -> list[Node]:
    """`roots` rebuilt with the nodes (by id) in `mapping` replaced: what depends on them is
    made again (the same node where nothing below it changed)."""
    new = dict(mapping)
    b = builder()
    for root in roots:
        for n in unvisited(root, ById(new)):
            args = [new.get(id(a), a) for a in n.args]
            if all(x is y for x, y in zip(args, n.args)):
                new[id(n)] = n
                continue
            with b.at(origin=n.origin, phase=n.phase):
                new[id(n)] = make(n.op, *args, **n.kw)
    return [new.get(id(r), r) for r in roots]


class _Names:
    """Names of the new inputs of one loop's derivative bodies, unique among its inputs'."""

    def __init__(self, body: Region):
        self.taken = {x.attr("name") for x in body.inputs}

    def fresh(self, base: str) -> str:
        name, k = base, 1
        while name in self.taken:
            k += 1
            name = f"{base}{k}"
        self.taken.add(name)
        return name


def _input(names: _Names, base: str, role: str, shape) -> Node:
    return make("input", name=names.fresh(base), role=role, shape=tuple(shape))


def _zeros(like: Node) -> Node:
    """Zeros of `like`'s shape and dtype (a number for a number)."""
    return const(0) if like.is_const else make("zeros_like", like)


def _accumulators(likes: list[Node], carried: list[Node], others: dict[int, Node],
                  outs: list[Node]) -> list[Node]:
    """The initial values of a backward loop's cotangent accumulators (the carried body
    inputs `carried[:len(likes)]`, of the outside values `likes`): zeros of each one's
    shape in the dtype the sum of the steps takes, `like`'s when that is all
    (`zeros_like`), else the promoted dtype of the arguments the step reads (`others`:
    the loop's argument of each other body input, by id; the other carried values' next
    values in `outs` after the accumulators', to a fixed point). A buffer whose dtype no
    step changes: the steps add into it in place (`dW += ...`, codegen/schedule.py).
    The carried cotangents count as no dtype source (that of a loop's part is all its
    arguments' until prune_loops drops those it does not need); the scheduler, which sees
    the pruned loops, adds in place only where no step widens the dtype."""
    src = {k: frozenset(dtype_sources(a)) for k, a in others.items()}
    src.update((id(x), frozenset()) for x in carried[len(likes):] if id(x) not in src)
    for x, like in zip(carried, likes):
        src[id(x)] = frozenset(() if like.is_const else dtype_sources(like))
    carried_dtype_sources(src, carried, outs)
    inits = []
    for x, like in zip(carried, likes):
        own = frozenset(dtype_sources(like)) if not like.is_const else None
        if own is None:
            inits.append(const(0))
        elif src[id(x)] == own or not like.shape:   # (a number: never added in place)
            inits.append(make("zeros_like", like))
        else:
            inits.append(make("full", *sorted(src[id(x)], key=lambda n: n.serial),
                              value=sympy.Integer(0), shape=tuple(like.shape)))
    return inits


def _scan_parts(scan: Node, first: int, count: int) -> list[Node]:
    return [make("part", scan, index=first + k) for k in range(count)]


# ---------------------------------------------------------------- part

def _part_vjp(g, node):
    return ({node.attr("index"): g},)


def _part_jvp(ts, node):
    return None if ts[0] is None else ts[0].get(node.attr("index"))


# ---------------------------------------------------------------- VJP

def _scan_vjp(g: dict, node: Node) -> tuple:
    every = builder().memo.get("checkpoint")
    length = as_expr(node.attr("length"))
    if every and every > 1 and not (length.is_Integer and int(length) <= every):
        return _checkpointed_vjp(g, node, every)
    return _saved_vjp(g, node)   # (every step a checkpoint: what it recomputes, it saves)


class _BodyVJP:
    """The VJP of one loop body for the cotangents of some carried values: what the
    backward body computes, the body values it needs (`saved`: depend on a carried
    value; `hoisted`: on outside values only) and the new inputs it reads."""

    def __init__(self, node: Node, g: dict):
        body = node.attr("body")
        self.node, self.body = node, body
        c = self.C = len(body.outputs)
        self.t, self.cin, self.oin = body.inputs[0], body.inputs[1:1 + c], body.inputs[1 + c:]
        names = self.names = _Names(body)
        float_c = [k for k in range(c) if self.cin[k].dtype == FLOAT]
        self.do = [j for j, x in enumerate(self.oin) if x.dtype == FLOAT]
        ct_in = {k: _input(names, "d" + self.cin[k].attr("name"), "carry", self.cin[k].shape)
                 for k in float_c}
        self.acc_in = {j: _input(names, "d" + self.oin[j].attr("name"), "carry",
                                 self.oin[j].shape) for j in self.do}
        self.float_c, self.ct_all = float_c, ct_in
        self.wrt = [self.cin[k] for k in float_c] + [self.oin[j] for j in self.do]
        # With the softmax weights of the body's log-sum-exps recomputed (`_lse_weights`)
        # where that saves less per step than the plain VJP; the plain VJP otherwise.
        outputs = list(body.outputs)
        surrogates, unstop, self.weights = _lse_weights(body, self.cin)
        if surrogates:
            plain = self._differentiate(g, outputs)
            weighted = substitute(outputs, surrogates)
            if self._differentiate(g, weighted, unstop) < plain:
                return
        self.weights = []
        self._differentiate(g, outputs)

    def _differentiate(self, g: dict, outputs: list[Node],
                       unstop: dict[int, Node] | None = None) -> int:
        """Set the cotangents of the carried and outside values for the carried values'
        next values `outputs` (the body's, or with some values differentiated otherwise)
        and the residuals they read; return the residuals' nominal size saved per step.
        `unstop`: nodes of the cotangents replaced by others of the same value (by id)."""
        body, ct_in, wrt, float_c = self.body, self.ct_all, self.wrt, self.float_c
        # the carried values whose cotangent is not always zero: those with one given,
        # and those their body values read (to a fixed point)
        active = sorted(k for k in g if k in ct_in)
        while True:
            cts, _ = vjp([outputs[k] for k in active], [ct_in[k] for k in active], wrt)
            more = sorted(set(active) | {k for k, ct in zip(float_c, cts) if ct is not None})
            if more == active:
                break
            active = more
        ct_c = dict(zip(float_c, cts))
        ct_o = dict(zip(self.do, cts[len(float_c):]))
        ct_cl = _static_shapes([ct_c[k] for k in active], body)
        ct_ol = _static_shapes([ct_o[j] for j in self.do], body)
        roots = [x for x in ct_cl + ct_ol if x is not None]
        if unstop:
            it = iter(substitute(roots, unstop))
            ct_cl = [None if x is None else next(it) for x in ct_cl]
            ct_ol = [None if x is None else next(it) for x in ct_ol]
            roots = [x for x in ct_cl + ct_ol if x is not None]
        self.active, self.ct_in = active, [ct_in[k] for k in active]
        self.ct_c, self.ct_o = ct_cl, ct_ol
        self._frontier(roots)
        return sum(nominal_size(tuple(f.shape)) for f in self.saved)

    def _frontier(self, roots: list[Node]) -> None:
        """The body values the cotangents read, sorted into saved and hoisted ones; the
        values `recompute_residuals` chooses are recomputed from what they read instead."""
        body = self.body
        primal = {id(n) for n in topo_order(body.outputs)} | {id(x) for x in body.inputs}
        carried = {id(x) for x in self.cin}
        recomputed: set[int] = set()
        trade = builder().memo.get("checkpoint") is not None   # memory asked for, not speed
        while True:
            frontier = _reads_of_primal(roots, primal, recomputed)
            more = recompute_residuals(frontier, self.cin, recomputed) if trade \
                else recompute_cheap(frontier, self.cin) - recomputed
            if not more:
                break
            recomputed |= more
        views = _carried_views(frontier, self.cin)   # (after the policies: not a value
        if views:                                     # they recompute from)
            frontier = _reads_of_primal(roots, primal, recomputed | views)
        oin = {id(x) for x in self.oin}
        self.saved: list[Node] = []
        self.hoisted: list[Node] = []
        for f in frontier.values():
            # `deps`: the inputs its value depends on; `reach`: those its nodes read (a
            # part of an inner loop reads all the loop's initial values, also those of
            # other parts: its value does not depend on them, but computing it does)
            deps, reach = _inputs_of(f), _inputs_reached(f)
            if deps & carried:
                self.saved.append(f)
            elif deps and id(self.t) not in reach and id(f) not in oin:
                self.hoisted.append(f)   # (computed from the initial carried values)
            elif reach & carried:
                self.saved.append(f)
            # else: a number, an outside value, or computed from the index (recomputed)

    def saved_name(self, f: Node) -> str:
        """`h_steps` for the carried value h, `h_next_steps` for its next value, `z_steps`
        for a value the source names z, `lse_steps` for a log-sum-exp it does not name,
        `z_sigmoid_steps` for an op's value computed from it, else the op's hint
        (`tanh_steps`)."""
        for k, (x, y) in enumerate(zip(self.cin, self.body.outputs)):
            if f is x:
                return self.names.fresh(x.attr("name") + "_steps")
            if f is y:
                return self.names.fresh(x.attr("name") + "_next_steps")
        source = builder().memo.get("loop_names") or {}
        if f not in source and lse_form(f) is not None:   # (a log-sum-exp: `lse_steps`)
            return self.names.fresh("lse_steps")
        transparent = builder().with_trait("transparent")   # (named as what it shows)
        while f.op in transparent and f.args and f not in source:
            f = f.args[0]
        hint = REGISTRY[f.op].hint
        base = hint if isinstance(hint, str) else f.op
        named = source.get(f)
        if named is None:
            arg = next((source[a] for a in f.args if a in source), None)
            named = base if arg is None else f"{arg}_{base}"
        return self.names.fresh(named + "_steps")

    def backward(self, mapping: dict[int, Node]) -> tuple[list[Node], list[Node]]:
        """The backward body's next carried values (the accumulated cotangents of the
        outside values, then the cotangents of the carried values: the accumulations read
        the carried cotangents before a step writes into them, `dH[t] = ...`) with the
        saved and hoisted values read as `mapping` says; and the outside inputs of the
        body it reads."""
        subs = substitute([x for x in self.ct_o + self.ct_c if x is not None], mapping)
        if self.weights:   # (the softmax weights of `_lse_weights`, as the step reads them)
            soft = builder().memo.setdefault(TEMPORARY_NAMES, {})
            for w in substitute(self.weights, mapping):
                soft.setdefault(id(w), "weights")
        it = iter(subs)
        outs = [self.acc_in[j] if x is None else add_rows(self.acc_in[j], next(it))
                for j, x in zip(self.do, self.ct_o)]
        outs += [add_rows(None, next(it)) if x is not None else make("zeros_like", c)
                 for x, c in zip(self.ct_c, self.ct_in)]
        oin = {id(x) for x in self.oin}
        used = {id(n) for n in topo_order(outs) if id(n) in oin}
        return outs, [x for x in self.oin if id(x) in used]


def _lse_weights(body: Region, carried: Sequence[Node]
                 ) -> tuple[dict[int, Node], dict[int, Node], list[Node]]:
    """{id(L): L'} for the log-sum-exps L of the loop body (`ops.nn.lse_form`) whose
    exponentials are larger than the carried values they depend on: L' (`lse_weighted`)
    has L's value and the derivative `exp(x - L)`, the softmax weights, so that a step of
    the backward loop reads L (its own size) and recomputes the weights from x, instead of
    reading the exponentials and their sum saved per step (hmm's (N, K, K)
    `exp(alpha[:, :, None] + log_A - lse[:, None, :])`; alpha (N, K)); and {id: node}
    of the stopped L in the weights and of L' where the VJP reads its value, to be L
    itself in the VJP (for its derivatives; for the value, not the weights' sum); and
    the weights as the VJP computes them (to be named `weights` in the backward step)."""
    cin = {id(x): x for x in carried}
    out: dict[int, Node] = {}
    unstop: dict[int, Node] = {}
    weighted: list[Node] = []
    b = builder()
    for n in topo_order(body.outputs):
        form = lse_form(n) if n.shape else None
        if form is None:
            continue
        x = form[0]
        deps = [c for k, c in cin.items() if k in _inputs_of(x)]
        if deps and nominal_size(tuple(x.shape)) > sum(nominal_size(tuple(c.shape))
                                                       for c in deps):
            with b.at(origin=n.origin, phase=n.phase):
                out[id(n)], stopped, kept = lse_weighted(n, *form)
                # (named as what they are where the source names neither: `lse`, and
                # `weights` for those the backward step computes, as it would build them)
                weights = make("exp", lse_shifted(x, kept))
            unstop[id(stopped)] = kept
            unstop[id(out[id(n)])] = n   # (where its value is read: the same value)
            b.memo.setdefault(TEMPORARY_NAMES, {}).setdefault(id(n), "lse")
            weighted.append(weights)
    return out, unstop, weighted


def recompute_cheap(frontier: dict[int, Node], carried: Sequence[Node]) -> set[int]:
    """Policy `recompute_cheap` (every saving loop): the ids of the residuals in `frontier`
    (body values a loop's backward step reads) to recompute in the backward step rather
    than save per step: one larger than the carried values it depends on, computed by
    elementwise ops and views (`alpha[:, :, None] + log_A`) from values kept anyway or
    small: carried values, outside values, numbers, values of at most the size of the
    carried values they depend on (saved instead: a log-sum-exp's (N, K) result), with
    the views and elementwise values between (the ids of those come along). Recomputing
    costs one pass per op over the large value; saving it, its size per step. A value
    reached through a loop, a reduction or a contraction is never recomputed here
    (`recompute_residuals` trades those too, under --checkpoint)."""
    cin = {id(x): x for x in carried}
    elementwise = builder().with_trait("elementwise")
    more: set[int] = set()
    for f in frontier.values():
        if id(f) in cin or not f.shape:
            continue
        found = _cheap_closure(f, cin, elementwise)
        if found:
            more |= found
    return more


def _carried_views(frontier: dict[int, Node], carried: Sequence[Node]) -> set[int]:
    """The ids of the residuals in `frontier` that are views of a carried value
    (`alpha[:, :, None]`, read where the weights of `ops.nn.lse_shifted` subtract from it):
    made again from the carried value, which is saved anyway, at no cost."""
    cin = {id(x) for x in carried}
    return {k for k, f in frontier.items() if f.args and id(f.args[0]) in cin
            and REGISTRY[f.op].view_of(f) is not None}


def _carried_size(n: Node, cin: dict) -> int:
    return sum(nominal_size(tuple(c.shape)) for k, c in cin.items() if k in _inputs_of(n))


def _cheap_closure(f: Node, cin: dict, elementwise: frozenset) -> set[int]:
    """The ids of `f` and the values between it and what it is computed from, if `f` is
    larger than the carried values it depends on and is computed from values kept anyway
    or small by elementwise ops and views only (`recompute_cheap`); else the empty set."""
    if nominal_size(tuple(f.shape)) <= _carried_size(f, cin):
        return set()
    between: set[int] = set()
    stack = [f]
    while stack:
        n = stack.pop()
        if id(n) in between:
            continue
        if n.op not in elementwise and REGISTRY[n.op].view_of(n) is None:
            return set()
        between.add(id(n))
        for a in n.args:
            if a.is_const or a.is_input or not (cin.keys() & _inputs_of(a)):
                continue   # (a number, an input, or a value computed outside the loop)
            if nominal_size(tuple(a.shape)) <= _carried_size(a, cin) \
                    and REGISTRY[a.op].view_of(a) is None:
                continue   # (small: saved; a view of it is recomputed)
            stack.append(a)
    return between


def _reads_of_primal(roots: list[Node], primal: set[int], recomputed: set[int]
                     ) -> dict[int, Node]:
    """{id: value} of the forward body's values (`primal`) that the backward values
    `roots` read, in topological order, reading through the `recomputed` ones (made again
    from their arguments in the backward body)."""
    through: set[int] = set()
    stack = list(roots)
    while stack:   # (the values the backward body computes: reached without a stop)
        n = stack.pop()
        if id(n) in through or id(n) in primal and id(n) not in recomputed:
            continue
        through.add(id(n))
        stack.extend(n.args)
    frontier: dict[int, Node] = {}
    for n in topo_order(roots):
        if id(n) not in through:
            continue
        for a in n.args:
            if id(a) in primal and id(a) not in recomputed:
                frontier.setdefault(id(a), a)
    for r in roots:
        if id(r) in primal and id(r) not in recomputed:
            frontier.setdefault(id(r), r)
    return frontier


def recompute_residuals(frontier: dict[int, Node], carried: Sequence[Node],
                        recomputed: set[int]) -> set[int]:
    """Policy `recompute_residuals`: the ids of the residuals in `frontier` (body values a
    loop's backward step reads) to recompute in the backward step rather than save per
    step, when the loop is checkpointed (`--checkpoint K`: memory asked for, not speed;
    without it every residual is saved: recomputing hmm's costs its gradient 1.55x the
    time). A residual larger than the carried values it depends on (`nominal_size`) is
    recomputed from them: keeping it would cost more memory per step than keeping them
    (hmm's (N, K, K) exponentials of `alpha[:, :, None] + log_A`, alpha (N, K)); then,
    so that only carried values are kept for it, a view of a carried value as large as it
    (`alpha[:, :, None]`) and a residual computed elementwise from values recomputed
    anyway (with the values between). A reduction of a recomputed value (the max and the
    sum of those exponentials, (N, 1, K) and (N, K)) is kept instead (`_reduces`):
    recomputing it costs a pass over the large value per step, keeping it only its own
    size (hmm, run.py, the max laid out axis first: --checkpoint 1 1.39x jax.jit at
    3.6 MiB kept, 1.80x at 2.0 MiB recomputed; --checkpoint 10 2.45x at 1.3 MiB, 2.63x
    at 1.0 MiB; the hand-written gradient 1.4 MiB). Never a loop
    (recomputing it costs its steps). Applied until it chooses nothing more
    (`_BodyVJP._frontier`)."""
    loops_ = builder().with_trait("region")
    cin = {id(x): x for x in carried}
    more: set[int] = set()
    for f in frontier.values():
        if id(f) in cin or f.op in loops_ or not f.shape:
            continue
        deps = [x for k, x in cin.items() if k in _inputs_of(f)]
        if not deps:
            continue
        size = nominal_size(tuple(f.shape))
        if size > sum(nominal_size(tuple(x.shape)) for x in deps):
            more.add(id(f))
        elif recomputed:
            a = f.args[0] if f.args else None
            if REGISTRY[f.op].view_of(f) == "view" and id(a) in cin \
                    and size >= nominal_size(tuple(a.shape)):
                more.add(id(f))
            else:
                more |= _computed_from_recomputed(f, cin, frontier, recomputed, loops_)
    return more


def _computed_from_recomputed(f: Node, cin: dict, frontier: dict, recomputed: set[int],
                              loops_: frozenset) -> set[int]:
    """The ids of `f` and the body values between it and the `recomputed` ones, if every
    value `f` reads that depends on a carried value is one of them, a carried value kept
    anyway (in `frontier`) or (through no loop) computed from those; else the empty set."""
    between: set[int] = set()
    stack, found = [f], False
    while stack:
        n = stack.pop()
        if id(n) in between:
            continue
        between.add(id(n))
        for a in n.args:
            if id(a) in recomputed:
                if _reduces(n, a):
                    return set()
                found = True
            elif id(a) in cin:
                if id(a) not in frontier:
                    return set()
            elif cin.keys() & _inputs_of(a):
                if a.op in loops_:
                    return set()
                stack.append(a)
    return between if found else set()


def _reduces(n: Node, a: Node) -> bool:
    """Whether `n` is smaller than its argument `a` (a reduction or contraction of it):
    recomputing it costs a pass over `a`, where saving it costs only its own size."""
    return bool(a.shape) and nominal_size(tuple(n.shape)) < nominal_size(tuple(a.shape))


def _inputs_reached(node: Node) -> frozenset:
    """The ids of the input nodes that computing `node` reads (a loop: all its arguments),
    memoised per compilation. Unlike `reads`, a part of a loop reaches the initial values
    of the loop's other parts: hoisting it out of an outer loop takes them along."""
    return analysis("inputs_reached", node, _reached_rule)


def _reached_rule(n: Node, args: list) -> frozenset:
    if n.is_input:
        return frozenset((id(n),))
    return frozenset().union(*args) if len(args) != 1 else args[0]


def _static_shapes(roots: list, body: Region) -> list:
    """`roots` with each value of the body read for its shape only (`np.broadcast_to(g,
    z.shape)`) replaced by its static shape, so it is neither saved nor recomputed."""
    shape_of = builder().with_trait("shape_of_last")
    primal = {id(n) for n in topo_order(body.outputs)}
    live = [r for r in roots if r is not None]
    mapping = {}
    for n in topo_order(live):
        if n.op in shape_of and id(n.args[-1]) in primal and id(n) not in primal:
            with builder().at(origin=n.origin, phase=n.phase):
                mapping[id(n)] = make("broadcast_to", *n.args[:-1], shape=tuple(n.shape))
    if not mapping:
        return roots
    it = iter(substitute(live, mapping))
    return [None if r is None else next(it) for r in roots]


def _buffer_sources(node: Node, f: Node, body: Region) -> tuple[Node, ...]:
    """The arguments of the loop whose dtype a buffer of the body value `f` has (a carried
    value's: also those its next value reads, to a fixed point: its dtype may widen)."""
    deps = frozenset(_inputs_of(f))
    carried = body.inputs[1:1 + len(body.outputs)]
    while True:
        more = deps.union(*(_inputs_of(y) for x, y in zip(carried, body.outputs)
                            if id(x) in deps))
        if more == deps:
            break
        deps = more
    args = [a for x, a in zip(body.inputs[1:], node.args)
            if id(x) in deps and x.dtype == FLOAT and not a.is_const]
    found: dict = {}
    for a in args or [a for a in node.args if a.dtype == FLOAT and not a.is_const]:
        found.update(dict.fromkeys(dtype_sources(a)))
    return tuple(sorted(found, key=lambda x: x.serial))


def _row_per_step(node: Node, acc: Node, out: Node, index: Node, value: Node
                  ) -> Node | None:
    """`acc[t] = g` for the accumulation `acc[t] = acc[t] + g` of the cotangent of an
    outside value whose rows the loop reads one per step (row i at iteration i, `XW[t]`
    in a loop over range(len(XW))): each row is written once, so the buffer needs no
    zeros and no add. None for any other accumulation."""
    if not value.shape \
            or not same_shape((as_expr(node.attr("length")),), tuple(value.shape[:1])):
        return None
    index = iteration(index, node)   # (iteration i reads row i: each row once)
    g = added_row(acc, out, index)
    if g is None or id(acc) in {id(n) for n in topo_order([g])}:
        return None
    return make("update", acc, g, index, index=(), axis=0)


def _rows_once(node: Node, bv: _BodyVJP, outs: list, inits: list, acc: dict) -> None:
    """The accumulations of `outs` (and their zeros in `inits`) that write each row once
    (`_row_per_step`) made plain row writes into an empty buffer, in place."""
    c = bv.C
    for k, j in enumerate(bv.do):
        once = None if j in acc else _row_per_step(node, bv.acc_in[j], outs[k], bv.t,
                                                   node.args[c + j])
        if once is not None:
            outs[k] = once
            inits[k] = make("empty", *_empty_sources(inits[k]), shape=tuple(inits[k].shape),
                            name=bv.acc_in[j].attr("name"))


def _empty_sources(zeros: Node) -> tuple[Node, ...]:
    """The dtype sources of an accumulator's zeros (`zeros_like(x)`, `full(a, b, ...)`)."""
    return tuple(sorted(dict.fromkeys(dtype_sources(zeros)), key=lambda n: n.serial))


def _step_reads(bv: _BodyVJP, saved: list, names: list, bufs_in: list, nexts: dict,
                i: Node) -> tuple[list, dict, list]:
    """The backward body's inputs for the saved buffers (`reads`) and for the values
    hoisted out of it (`hoisted_in`), and the mapping of each saved or hoisted value of
    the forward body to what the backward body reads for it: the buffer's row at the
    step (the row after it for a carried value's next value)."""
    b = builder()
    reads = [make("input", name=n, role="outside", shape=buf.shape)
             for n, buf in zip(names, bufs_in)]
    mapping = {}
    for f, r in zip(saved, reads):   # (commented as the line of the value read)
        with b.at(origin=f.origin):
            mapping[id(f)] = make("gather", r, i, axis=0)
    for y in bv.body.outputs:
        if id(y) in nexts:
            r = reads[saved.index(nexts[id(y)])]
            with b.at(origin=y.origin):
                mapping[id(y)] = make("gather", r, next_row(i), axis=0)
    hoisted_in = [_input(bv.names, REGISTRY[f.op].hint if isinstance(REGISTRY[f.op].hint, str)
                         else f.op, "outside", f.shape) for f in bv.hoisted]
    mapping.update((id(f), x) for f, x in zip(bv.hoisted, hoisted_in))
    return reads, mapping, hoisted_in


def _kept_rows(node: Node, bv: _BodyVJP) -> dict[int, tuple[int, int]]:
    """{id(f): (k, r)} for each saved value f the loop keeps itself: row i + r of the
    carried buffer k holds f of iteration i after the loop. A buffer of L rows written
    `H[t] = f` (r = 0); one of L + 1 rows starting as `update(empty, x0)` at row 0 and
    written `S[t + 1] = y`, y the next value of the carried value x of initial value x0
    (sink_steps' `h_steps`): y at r = 1 and x at r = 0. The VJP reads that buffer
    instead of saving the value a second time."""
    body = bv.body
    length = as_expr(node.attr("length"))
    i = iteration(bv.t, node)
    saved = {id(f) for f in bv.saved}
    out: dict[int, tuple[int, int]] = {}
    for k, (x, o) in enumerate(zip(bv.cin, body.outputs)):
        if not x.shape:
            continue
        f, rows = row_written(o, x, i), as_expr(x.shape[0])
        if f is not None and same_shape((rows,), (length,)) and id(f) in saved:
            out.setdefault(id(f), (k, 0))
            continue
        f = row_written(o, x, next_row(i))
        if f is None or not same_shape((rows,), (length + 1,)):
            continue
        start = first_row_set(node.args[k])
        for kx, (x0, y) in enumerate(zip(bv.cin, body.outputs)):
            if y is f and x0 is not f and start is not None and start is node.args[kx]:
                if id(f) in saved:
                    out.setdefault(id(f), (k, 1))
                if id(x0) in saved:
                    out.setdefault(id(x0), (k, 0))
    return out


def _kept_reads(bv: _BodyVJP, kept: dict, mapping: dict, i: Node) -> dict[int, Node]:
    """{k: the backward body's input for the carried buffer k} of the buffers in `kept`
    (`_kept_rows`), with each saved value they hold mapped to its row read (in place)."""
    ks = sorted({k for k, _ in kept.values()})
    kept_in = {k: make("input", name=bv.names.fresh(bv.cin[k].attr("name")),
                       role="outside", shape=bv.cin[k].shape) for k in ks}
    for f in bv.saved:
        if id(f) in kept:
            k, off = kept[id(f)]
            with builder().at(origin=f.origin):
                mapping[id(f)] = make("gather", kept_in[k], next_row(i) if off else i,
                                      axis=0)
    return kept_in


def _rebuilt_carries(node: Node, bv: _BodyVJP, saved: list[Node]) -> dict[int, list[Node]]:
    """Policy `rebuild_carry` (every saving loop run forwards in steps of 1): {k: the saved
    step values its next value reads} for each saved carried value x_k (not a number)
    whose next value is computed by elementwise ops and views from saved step values
    (`saved`, none of them x_k), the index, outside values and values of the index and
    outside values only (hmm: `alpha = lse + log_B_transpose[t - 1]`, lse saved as
    `lse_steps`). x_k is then not saved: the backward step makes it again as the previous
    step's next value, from the previous row of each saved value (`_previous_next`), bit
    for bit the value the forward loop computed; the buffer of the carried values (the
    loop's length times x_k's size) is not kept."""
    if node.attr("reverse", False) or node.attr("step", 1) != 1:
        return {}
    cin = {id(x) for x in bv.cin}
    keep = {id(f): f for f in saved}
    elementwise = builder().with_trait("elementwise")
    out: dict[int, list[Node]] = {}
    for k, (x, y) in enumerate(zip(bv.cin, bv.body.outputs)):
        if id(x) not in keep or x.dtype != FLOAT or not x.shape or y is x or id(y) in keep:
            continue
        steps: dict[int, Node] = {}
        stack, seen, ok = [y], set(), True
        while stack and ok:
            n = stack.pop()
            if id(n) in seen:
                continue
            seen.add(id(n))
            if id(n) in keep and n is not x:
                steps[id(n)] = n
            elif n.is_const or not (cin & _inputs_of(n)):
                continue   # (a number, the index, an outside value or computed from those)
            elif n.is_input or n.op not in elementwise and REGISTRY[n.op].view_of(n) is None:
                ok = False   # (a carried value itself, or no cheap op)
            else:
                stack.extend(n.args)
        if ok and steps:
            out[k] = sorted(steps.values(), key=lambda f: saved.index(f))
    return out


def _rebuild(node: Node, bv: _BodyVJP, rebuilt: dict[int, list[Node]], i: Node,
             rows: dict[int, Node], mapping: dict[int, Node], outside: list[Node],
             inputs: list[Node]) -> None:
    """Map each carried value of `rebuilt` (`_rebuilt_carries`) to its value made again in
    the backward step (`_previous_next`; named as the carried value), from the buffers
    `rows` (id of a saved value -> the backward body's input) and the loop's initial value,
    a new outside input of the backward body (appended to `outside` and `inputs`)."""
    body, b = bv.body, builder()
    for k, steps in rebuilt.items():
        x0 = _input(bv.names, bv.cin[k].attr("name") + "_init", "outside", bv.cin[k].shape)
        with b.at(origin=body.outputs[k].origin, phase="forward"):
            again = _previous_next(body, k, i, {id(f): rows[id(f)] for f in steps}, x0)
            again = _gathered_again(node, bv, again, bv.cin[k], outside, inputs)
        mapping[id(bv.cin[k])] = again
        b.memo.setdefault(TEMPORARY_NAMES, {}).setdefault(id(again), bv.cin[k].attr("name"))
        outside.append(node.args[k])
        inputs.append(x0)


def _gathered_again(node: Node, bv: _BodyVJP, value: Node, x: Node, outside: list[Node],
                    inputs: list[Node]) -> Node:
    """Policy `regather_rows` (in a carried value made again, `_rebuild`): each row
    `B[r]` it reads of an outside array B that holds a small table's rows gathered for
    every step (`ops.stepwise.gathered_rows`; the table at most the size of the carried
    value `x`) gathered from the table again (`log_B[:, obs_transpose[t - 2]].T`, not
    `log_B_transpose[t - 2]`): a few us a step, and the backward loop no longer reads B,
    whose buffer the forward loop may then fill with its saved rows
    (passes/loops.share_row_buffers). Table and index are new outside inputs of the
    backward body (appended to `inputs`, their values to `outside`). No derivative is
    taken through the gather: it is part of the value made again."""
    c, b = bv.C, builder()
    outer = {id(o): a for o, a in zip(bv.oin, node.args[c:])}
    limit = nominal_size(tuple(x.shape))
    made: dict[int, Node] = {}
    mapping: dict[int, Node] = {}
    for n in topo_order([value]):
        if not (row_read(n) and len(n.args) == 2 and n.attr("axis") == 0
                and id(n.args[0]) in outer):
            continue
        form = gathered_rows(outer[id(n.args[0])])
        if form is None or form[1].dtype == FLOAT \
                or nominal_size(tuple(form[0].shape)) > limit:
            continue
        ins = []
        for a, base in zip(form[:2], ("table", "index")):
            if id(a) not in made:
                made[id(a)] = make("input", name=bv.names.fresh(base), role="outside",
                                   shape=tuple(a.shape), dtype=a.dtype)
                outside.append(a)
                inputs.append(made[id(a)])
            ins.append(made[id(a)])
        with b.at(origin=n.origin, phase=n.phase):
            mapping[id(n)] = gathered_row(ins[0], ins[1], form[2], form[3], n.args[1])
    return substitute([value], mapping)[0] if mapping else value


def _previous_next(body: Region, k: int, i: Node, rows: dict[int, Node], x0: Node) -> Node:
    """The carried value k at iteration `i` as the backward step makes it again
    (`_rebuilt_carries`): `x0` (the loop's initial value) at iteration 0, else the body's
    next value of it at iteration i - 1, each saved step value read from row i - 1 of its
    buffer (`rows`: id -> the buffer's input), the index one step back:
    `where(t == 1, alpha_init, lse_steps[t - 2] + log_B_transpose[t - 2])`. (Row i - 1 is
    the last row at iteration 0: read, not selected.)"""
    t = body.inputs[0]
    shift = 0 if i is t else index_shift(i, t)   # (t - 2 and t == 1 for i = t - 1, not
    if shift is None:                             # t - 1 - 1 and t - 1 == 0)
        before, first = i - const(1), make("eq", i, const(0))
    else:
        before = t + const(shift - 1) if shift > 1 else t - const(1 - shift)
        first = make("eq", t, const(-shift))
    mapping = {k_: make("gather", r, before, axis=0) for k_, r in rows.items()}
    mapping[id(t)] = t - const(1)
    mapping[id(i)] = before
    (prev,) = substitute([body.outputs[k]], mapping)
    return make("where", first, x0, prev)


def _saved_vjp(g: dict, node: Node, acc: dict | None = None) -> tuple:
    """The VJP saving every step's residuals: a forward loop writing them into buffers,
    a reversed loop reading them. `acc`: the cotangents (by outside value's position) the
    backward loop adds those of the outside values to (zeros by default)."""
    acc = acc or {}
    bv = _BodyVJP(node, g)
    body, c, b = bv.body, bv.C, builder()
    attrs = loop_attrs(node)
    length, index = as_expr(node.attr("length")), bv.t
    # A carried value and its next value both saved: one buffer of L + 1 rows, row e the
    # value before execution step e (so row e + 1 the value after it).
    kept = {} if attrs.get("reverse") else _kept_rows(node, bv)
    nexts = {id(y): x for x, y in zip(bv.cin, body.outputs)
             if x is not y and x in bv.saved and y in bv.saved and id(y) not in kept}
    saved = [f for f in bv.saved if id(f) not in nexts and id(f) not in kept]
    rebuilt = _rebuilt_carries(node, bv, saved)
    saved = [f for f in saved if not any(f is bv.cin[k] for k in rebuilt)]
    also_next = {id(x) for x in nexts.values()}
    # the forward loop: the body, and a write of each saved value into its buffer
    with b.at(phase="forward"):
        i = iteration(index, node)
        if node.attr("reverse", False):   # execution step e: rows in the order run
            i = const(length - 1) - i
        names = [bv.saved_name(f) for f in saved]
        bufs_in = [make("input", name=n, role="carry",
                        shape=(length + int(id(f) in also_next),) + tuple(f.shape))
                   for n, f in zip(names, saved)]
        writes, empties = [], []
        for n, buf, f in zip(names, bufs_in, saved):
            empty = make("empty", *_buffer_sources(node, f, body), shape=buf.shape, name=n)
            if id(f) in also_next:   # row 0 the initial value, row e + 1 written at step e
                k = bv.cin.index(f)
                empty = make("update", empty, node.args[k], index=(0,), axis=None)
                writes.append(make("update", buf, body.outputs[k], next_row(i), index=(),
                                   axis=0))
            else:
                writes.append(make("update", buf, f, i, index=(), axis=0))
            empties.append(empty)
        # (the buffers first: each step saves a value before it writes into a carried
        # array the value may be a view of, `H[t] = H[t] * x`)
        fwd = make("scan", *empties, *node.args,
                   body=Region((index, *bufs_in, *bv.cin, *bv.oin), (*writes, *body.outputs)),
                   **attrs)
        buffers = _scan_parts(fwd, 0, len(bufs_in))
    # the backward loop: the body's VJP, the saved values read at the step
    reads, mapping, hoisted_in = _step_reads(bv, saved, names, bufs_in, nexts, i)
    if kept:   # (rows of a buffer the loop fills itself: read that buffer)
        more = _kept_reads(bv, kept, mapping, i)
        reads += list(more.values())
        buffers += [make("part", fwd, index=len(bufs_in) + k) for k in more]
        empties += [node.args[k] for k in more]
    # (from the initial values of carried values it reaches but does not depend on)
    hoisted = substitute(bv.hoisted, {id(x): a for x, a in zip(body.inputs[1:], node.args)})
    _rebuild(node, bv, rebuilt, i, {id(f): r for f, r in zip(saved, reads)}, mapping,
             hoisted, hoisted_in)
    outs, oin_used = bv.backward(mapping)
    outer = dict(zip(map(id, bv.oin), node.args[c:]))
    ct_inits = [g[k] if k in g else _zeros(node.args[k]) for k in bv.active]
    others = {id(x): a for x, a in [*zip(reads, empties), *zip(hoisted_in, hoisted),
                                    *((x, outer[id(x)]) for x in oin_used)]}
    zeros = _accumulators([node.args[c + j] for j in bv.do],
                          [*(bv.acc_in[j] for j in bv.do), *bv.ct_in], others, outs)
    inits = [acc[j] if j in acc else z for j, z in zip(bv.do, zeros)] + ct_inits
    _rows_once(node, bv, outs, inits, acc)
    bwd_attrs = dict(attrs, reverse=True)
    if attrs.get("reverse"):
        del bwd_attrs["reverse"]
    bwd = make("scan", *inits, *buffers, *hoisted, *(outer[id(x)] for x in oin_used),
               body=Region((index, *(bv.acc_in[j] for j in bv.do), *bv.ct_in, *reads,
                            *hoisted_in, *oin_used), outs), **bwd_attrs)
    parts = _scan_parts(bwd, 0, len(outs))
    cts: list = [None] * len(node.args)
    for j, p in zip(bv.do, parts):
        cts[c + j] = p
    for k, p in zip(bv.active, parts[len(bv.do):]):
        cts[k] = p
    return tuple(cts)


# ---------------------------------------------------------------- checkpointing

def _checkpointed_vjp(g: dict, node: Node, every: int) -> tuple:
    """The VJP of a long loop saving only its carried values, once every E = `every`
    steps: the forward loop writes them into `h_checkpoints` (row ceil(e / E) at
    execution step e, so row j last holds the values at step j * E); the backward pass
    first differentiates the tail (the last L - n E steps, n = L // E: recomputed from row
    n, saving their residuals), then runs a reversed loop over the n segments whose body
    recomputes one segment's E steps from its row, saving their residuals, and runs the
    backward loop over them. Peak memory: (n + 2) carried values and one segment's
    residuals, instead of every step's."""
    body = node.attr("body")
    c = len(body.outputs)
    t, cin, oin = body.inputs[0], body.inputs[1:1 + c], body.inputs[1 + c:]
    if any(x.dtype != FLOAT for x in cin):   # (integer carried values: saved as usual)
        return _saved_vjp(g, node)
    inits, outer = node.args[:c], node.args[c:]
    length = as_expr(node.attr("length"))
    start, step = as_expr(node.attr("start", 0)), int(node.attr("step", 1))
    reverse = bool(node.attr("reverse", False))
    e_size = sympy.Integer(every)
    n = sympy.floor(length / e_size)
    names, b = _Names(body), builder()
    # the index value at execution step e: S + K i, with i = e (or L - 1 - e reversed)
    first, direction = (start + step * (length - 1), -step) if reverse else (start, step)
    # the forward loop: the body, and the carried values written at row ceil(e / E)
    with b.at(phase="forward"):
        i = iteration(t, node)
        e = (const(length - 1) - i) if reverse else i
        row = make("floordiv", e + const(every - 1), const(every))
        rows = (n + 2,)
        ckpt_in = [make("input", name=names.fresh(x.attr("name") + "_checkpoints"),
                        role="carry", shape=rows + tuple(x.shape)) for x in cin]
        writes = [make("update", buf, x, row, index=(), axis=0) for buf, x in zip(ckpt_in, cin)]
        empties = [make("empty", *_buffer_sources(node, x, body), shape=buf.shape,
                        name=buf.attr("name")) for x, buf in zip(cin, ckpt_in)]
        fwd = make("scan", *empties, *inits, *outer,
                   body=Region((t, *ckpt_in, *cin, *oin), (*writes, *body.outputs)),
                   **loop_attrs(node))
        ckpts = _scan_parts(fwd, 0, c)
    # the tail: its steps again from row n, saving their residuals, and their VJP
    tail_start = [make("squeeze", make("index", buf, index=(("slice", n, n + 1, 1),)),
                       axes=(0,)) for buf in ckpts]   # row n (a size: no Index value)
    tail_attrs = {"length": length - n * e_size}
    if first + direction * n * e_size != 0 or direction != 1:
        tail_attrs["start"] = first + direction * n * e_size
    if direction != 1:
        tail_attrs["step"] = direction
    tail = make("scan", *tail_start, *outer, body=body, **tail_attrs)
    tail_cts = _saved_vjp(g, tail)
    # the segments, last first: each recomputed from its row (an inner loop of E steps
    # whose index value is base + K u), and its VJP
    j = make("input", name=names.fresh("segment"), role="index", shape=())
    u = make("input", name=names.fresh(t.attr("name")), role="index", shape=())
    base_in = make("input", name=names.fresh(t.attr("name") + "0"), role="index", shape=())
    t_of_u = base_in + (u if direction == 1 else u * const(direction))
    inner_body = substitute(list(body.outputs), {id(t): t_of_u})
    ct_in = [_input(names, "d" + x.attr("name"), "carry", x.shape) for x in cin]
    do = [q for q, x in enumerate(oin) if x.dtype == FLOAT]
    acc_in = {q: _input(names, "d" + oin[q].attr("name"), "carry", oin[q].shape) for q in do}
    reads = [make("input", name=buf.attr("name"), role="outside", shape=buf.shape)
             for buf in ckpt_in]
    seg_oin = list(oin)
    base = const(first) + j * const(direction * every)
    seg_start = [make("gather", r, j, axis=0) for r in reads]
    inner = make("scan", *seg_start, *seg_oin, base,
                 body=Region((u, *cin, *oin, base_in), tuple(inner_body)), length=e_size)
    seg_cts = _saved_vjp({k: x for k, x in enumerate(ct_in)}, inner, acc_in)
    outs = [seg_cts[k] if seg_cts[k] is not None else make("zeros_like", x)
            for k, x in enumerate(ct_in)]
    outs += [acc_in[q] if seg_cts[c + q] is None else seg_cts[c + q] for q in do]
    ct_inits = [tail_cts[k] if tail_cts[k] is not None else _zeros(inits[k]) for k in range(c)]
    acc_inits = [tail_cts[c + q] if tail_cts[c + q] is not None else _zeros(outer[q])
                 for q in do]
    segs = make("scan", *ct_inits, *acc_inits, *ckpts, *outer,
                body=Region((j, *ct_in, *(acc_in[q] for q in do), *reads, *seg_oin),
                            tuple(outs)), length=n, reverse=True)
    parts = _scan_parts(segs, 0, len(outs))
    cts: list = list(parts[:c]) + [None] * len(oin)
    for q, p in zip(do, parts[c:]):
        cts[c + q] = p
    return tuple(cts)


# ---------------------------------------------------------------- JVP and batched JVP

def _loop_jvp(ts: list, node: Node, batched: bool):
    """A loop over the body and its (batched) JVP: the tangents carried beside the values."""
    body = node.attr("body")
    c = len(body.outputs)
    t, cin, oin = body.inputs[0], body.inputs[1:1 + c], body.inputs[1 + c:]
    inits, outer = node.args[:c], node.args[c:]
    names = _Names(body)
    lead = ()
    if batched:
        lead = next(x for x in ts if x is not None).shape[:1]
    suffix = "_dots" if batched else "_dot"
    tc_in = {k: _input(names, cin[k].attr("name") + suffix, "carry", lead + tuple(cin[k].shape))
             for k in range(c) if cin[k].dtype == FLOAT}
    to = [j for j in range(len(oin)) if ts[c + j] is not None and oin[j].dtype == FLOAT]
    to_in = {j: _input(names, oin[j].attr("name") + suffix, "outside", ts[c + j].shape)
             for j in to}
    active = sorted(k for k in tc_in if ts[k] is not None)
    while True:
        seeds = {id(cin[k]): tc_in[k] for k in active}
        seeds.update((id(oin[j]), to_in[j]) for j in to)
        if batched:
            outs = batched_jvp(list(body.outputs), seeds)
        else:
            outs, _ = jvp(list(body.outputs), seeds, phase="tangent")
        more = sorted(set(active) | {k for k in tc_in if outs[k] is not None})
        if more == active:
            break
        active = more
    if not active:
        return None
    nexts = [outs[k] if outs[k] is not None else make("zeros_like", tc_in[k]) for k in active]

    def zero_tangent(a: Node, k: int) -> Node:
        if not batched:
            return _zeros(a)
        like = next(x for x in ts if x is not None)
        return make("full", *dtype_sources(a if not a.is_const else like),
                    value=sympy.Integer(0), shape=lead + tuple(cin[k].shape))

    tinits = [ts[k] if ts[k] is not None else zero_tangent(inits[k], k) for k in active]
    loop = make("scan", *inits, *tinits, *outer, *(ts[c + j] for j in to),
                body=Region((t, *cin, *(tc_in[k] for k in active), *oin,
                             *(to_in[j] for j in to)), (*body.outputs, *nexts)),
                **loop_attrs(node))
    return {k: make("part", loop, index=c + n) for n, k in enumerate(active)}


attach_rules("scan", vjp=_scan_vjp, jvp=lambda ts, n: _loop_jvp(ts, n, False),
             vmap=lambda ts, n: _loop_jvp(ts, n, True))
attach_rules("part", vjp=_part_vjp, jvp=_part_jvp, vmap=_part_jvp)
