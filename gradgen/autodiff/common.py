"""What both modes share: symbolic zeros, un-broadcasting and materialisation.

A derivative may be *lazy*: its shape broadcasts to its primal's shape without being
equal to it (a scalar `1 / N` standing for a full array of them). Elementwise rules take
lazy derivatives as they are; everything else gets them materialised first.
"""

from __future__ import annotations

from ..dims import ONE, same_shape
from ..ir import Node, builder, const, make
from ..ops.dtypes import dtype_sources, weak


def active_nodes(order: list[Node], wrt: set[int]) -> set[int]:
    """Ids of the nodes (in topological `order`) whose value depends on a node in `wrt`."""
    active = set(wrt)
    nondiff = builder().with_trait("nondiff")
    add = active.add
    for n in order:
        nid = id(n)
        if nid in active or n.op in nondiff:
            continue
        for a in n.args:   # (a loop, not any(): most nodes have one or two arguments)
            if id(a) in active:
                add(nid)
                break
    return active


def unbroadcast(g: Node, shape: tuple, full: tuple) -> Node:
    """Reduce the cotangent `g` of a value of shape `full` to an argument of shape `shape`
    that was broadcast to `full` (the one place this happens).

    `g` may be lazy: it stands for `broadcast_to(g, full)`. Axes of `full` that the argument
    lacks, or where it has size 1, are summed where `g` has them, and where `g` is itself
    broadcast along them the sum is a multiplication by their size. Axes where `g` has
    size 1 but the argument does not stay lazy.
    """
    if shape is full or len(shape) == len(full) and all(x is y for x, y in zip(shape, full)):
        return g   # nothing was broadcast: no axis to sum (the loop below keeps every one)
    F, lead = len(full), len(full) - len(shape)
    factor = ONE
    drop, keep = [], []          # axes of `full` to sum over: dropped, or kept as size 1
    for a in range(F):
        if a >= lead and not (shape[a - lead] == ONE and full[a] != ONE):
            continue
        j = a - F + g.ndim       # the same axis in g (negative: g lacks it)
        if j >= 0 and g.shape[j] != ONE:
            (drop if a < lead else keep).append(j)
        else:
            factor *= full[a]
            if j >= 0 and a < lead:
                drop.append(j)   # a size-1 axis the argument lacks: sum = squeeze
    if keep:
        g = make("sum", g, axes=tuple(keep), keepdims=True)
    if drop:
        g = make("sum", g, axes=tuple(drop), keepdims=False)
    if factor != ONE:
        g = const(factor) * g
    return g


def materialize(g: Node, like: Node) -> Node:
    """`g` with exactly the shape of `like` (and `like`'s dtype, if `g` is a constant)."""
    if not g.is_const and weak(g):
        if g.ndim == 0:   # a Python number such as float(np.log(N)): scale ones
            return g * make("full", *dtype_sources(like), value=1, shape=tuple(like.shape))
        g = make("cast", g, like)   # e.g. where(x > 0, 1, 0): give it `like`'s dtype
    if same_shape(g.shape, like.shape) and not g.is_const:
        return g
    if g.is_const:   # np.full in the dtype of the inputs `like` depends on: computing
        # `like` itself (np.full_like(u @ v, 2)) would redo forward work for a shape
        return make("full", *dtype_sources(like), value=g.value, shape=tuple(like.shape))
    return make("expand_like", g, like)


def floating(t: Node, like: Node) -> Node:
    """A derivative computed from constants only (`where(x > 0, 1, 0)`, from a tangent
    that is still the seed 1) cast to the dtype of the float inputs `like` reads: NumPy
    would make it an integer array, which turns float32 results into float64. A constant
    itself stays (a Python number is weak), as does what reads an array."""
    if t.is_const or not weak(t):
        return t
    sources = dtype_sources(like)
    return make("cast", t, sources[0]) if sources else t


def add_contribution(table: dict, node: Node, g: Node) -> None:
    """Accumulate derivative `g` for `node` (summed over every consumer)."""
    prev = table.get(id(node))
    table[id(node)] = g if prev is None else prev + g
