"""Batched forms of ops for values computed for all steps of a loop at once
(`passes/steps.py hoist_steps`): a body value's op applied to arguments some of which carry
a leading axis of steps (row i: the value at iteration i), giving its value at every step
along a leading axis. Elementwise ops broadcast; reductions, transposes and unit axes shift
their axes by one; a product of a batch and a matrix is NumPy's stacked `@`; a row read
at the loop index is the rows themselves (`X[t]` for all t of range(len(X)) is X).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..dims import as_expr, same_shape
from ..ir import Node, make
from .registry import REGISTRY

__all__ = ["Steps", "accumulation", "batched_op", "batched_product", "empty_with_rows",
           "gathered_row", "gathered_rows", "index_shift", "indexed_by", "new_empty", "placing",
           "placing_axes", "product", "row_read", "row_written", "stacked_rows",
           "transposed_matrix"]

# The ops that only read rows or place axes: moving them alone out of a loop saves nothing.
_PLACING = frozenset({"gather", "transpose", "reshape", "expand_dims", "squeeze",
                      "broadcast_to", "stop_gradient"})


@dataclass(frozen=True)
class Steps:
    """A loop's steps: its body's index input, trip count, start and step."""

    index: Node
    length: object
    start: int
    step: int


def placing(n: Node) -> bool:
    """Whether `n` only reads rows or places axes (no arithmetic)."""
    return n.op in _PLACING


def index_shift(n: Node, index: Node) -> int | None:
    """k when `n` is `index + k` or `index - k` for an integer k, else None."""
    if len(n.args) != 2 or n.op not in ("add", "sub"):
        return None
    a, b = n.args
    if n.op == "add" and b is index:
        a, b = b, a
    if a is not index or not b.is_const or not b.value.is_integer or not b.value.is_number:
        return None   # (an integer literal, not a dimension such as `T - 1 - t`'s)
    return int(b.value) if n.op == "add" else -int(b.value)


def product(n: Node) -> bool:
    """Whether `n` is a matrix product (stacked over the steps, one BLAS call)."""
    return REGISTRY[n.op].has("matrix_product")


def accumulation(x: Node, out: Node) -> tuple[Node, str] | None:
    """(term, "add" or "sub") when `out`, the next value of a loop's carried value `x`, is
    `x + term`, `term + x` or `x - term`; else None."""
    if out.op not in ("add", "sub") or len(out.args) != 2:
        return None
    a, c = out.args
    if a is x and c is not x:
        return c, out.op
    if out.op == "add" and c is x and a is not x:
        return a, "add"
    return None


def row_written(out: Node, buf: Node, row: Node) -> Node | None:
    """The value `out` writes as row `row` of the array `buf` (`buf[row] = f`), else None."""
    if out.op == "update" and len(out.args) == 3 and out.args[0] is buf \
            and out.args[2] is row and out.attr("axis") == 0 and not out.attr("index"):
        return out.args[1]
    return None


def row_read(n: Node) -> bool:
    """Whether `n` reads entries of an array (a gather): a NumPy call even on integers."""
    return n.op == "gather"


def _lift(x: Node, rank: int) -> Node:
    """A batched value (leading axis) with unit axes after the batch axis up to `rank`
    axes per step (so it broadcasts against per-step values of that rank)."""
    missing = rank + 1 - x.ndim
    return make("expand_dims", x, axes=tuple(range(1, 1 + missing))) if missing > 0 else x


def batched_op(n: Node, args: list[Node], flags: list[bool], steps: Steps) -> Node | None:
    """Node `n` applied to `args`, those flagged batched having a leading axis of steps
    (row i: the value at iteration i of the loop `steps` describes); None when `n` has no
    batched form here."""
    opdef = REGISTRY[n.op]
    kw = n.kw
    if opdef.has("elementwise"):
        return make(n.op, *(_lift(a, n.ndim) if f else a for a, f in zip(args, flags)), **kw)
    if n.op == "cast" and not flags[1]:
        return make("cast", args[0], args[1], **kw)
    # (a reduction over named axes: det, logdet and trace count as reductions, of no axes)
    if opdef.has("reduction") and "axes" in kw and set(kw) <= {"axes", "keepdims"} \
            and flags == [True]:
        return make(n.op, args[0], **{**kw, "axes": tuple(a + 1 for a in kw["axes"])})
    if n.op == "transpose":
        return make("transpose", args[0], axes=(0, *(a + 1 for a in kw["axes"])))
    if n.op in ("expand_dims", "squeeze"):
        return make(n.op, args[0], axes=tuple(a + 1 for a in kw["axes"]))
    if n.op == "reshape":
        return make("reshape", args[0], shape=(steps.length, *kw["shape"]))
    if n.op == "matmul":
        return _batched_matmul(n, args, flags)
    if n.op == "gather":
        return _batched_gather(n, args, flags, steps)
    return None


def _batched_matmul(n: Node, args: list[Node], flags: list[bool]) -> Node | None:
    a, b = n.args
    x, y = args
    if flags[0] and not flags[1] and b.ndim <= 2:
        return make("matmul", x, y)   # (L, ..., D) @ (D, H): NumPy's broadcasting
    if flags[1] and not flags[0] and a.ndim == 2:
        if b.ndim >= 2:
            return make("matmul", x, y)   # (N, D) @ (L, D, K)
        return make("matmul", y, make("transpose", x, axes=(1, 0)))   # A @ v[t]: V @ A.T
    if flags[0] and flags[1] and a.ndim >= 2 and b.ndim >= 2:
        return make("matmul", _lift(x, max(a.ndim, b.ndim)), _lift(y, max(a.ndim, b.ndim)))
    return None


def _batched_gather(n: Node, args: list[Node], flags: list[bool], steps: Steps
                    ) -> Node | None:
    axis = n.attr("axis")
    data, index = args[0], args[1:]
    if flags[0]:
        if not any(flags[1:]):
            return make("gather", data, *index, axis=axis + 1)
        if axis:
            return None
        # both batched (`P[t][rows, y[t]]`): row i of the data at the index arrays' row i
        rank = max(i.ndim for i in n.args[1:])
        steps_ = _lift(make("arange", start=as_expr(0), stop=as_expr(steps.length)), rank)
        index = [_lift(i, rank) if f else i for i, f in zip(index, flags[1:])]
        return make("gather", data, steps_, *index, axis=0)
    # the data is loop-invariant, the index arrays (some) batched
    if (len(index) == 1 and axis == 0 and n.args[1] is steps.index
            and steps.start == 0 and steps.step == 1
            and same_shape((steps.length,), tuple(data.shape[:1]))):
        return data   # X[t] for t in range(len(X)): the rows of X are X
    if len(index) == 1 and axis == 0 and index[0].op == "arange":
        start, stop = as_expr(index[0].attr("start")), as_expr(index[0].attr("stop"))
        spare = as_expr(data.shape[0]) - stop
        if start.is_number and start >= 0 and spare.is_number and spare >= 0:
            # rows start, ..., stop - 1 of a longer array (`h_steps[t]`): a view of them
            return make("index", data, index=(("slice", start, stop, 1),))
    rank = max(i.ndim for i in n.args[1:])
    index = [_lift(i, rank) if f else i for i, f in zip(index, flags[1:])]
    out = make("gather", data, *index, axis=axis)
    if axis:   # the steps' axis is at `axis`: first
        order = (axis, *range(axis), *range(axis + 1, out.ndim))
        out = make("transpose", out, axes=order)
    return out


def first_row_set(n: Node) -> Node | None:
    """v for `update(empty(...), v)` at row 0 (a buffer whose row 0 is v, the rest to be
    written: the states a loop keeps, `h_steps[0] = h0`), else None."""
    if n.op == "update" and len(n.args) == 2 and n.args[0].op == "empty" \
            and n.attr("index") == (0,) and n.attr("axis") is None:
        return n.args[1]
    return None


def new_empty(n: Node) -> bool:
    """Whether `n` is a new array of unset values (`np.empty(...)`)."""
    return n.op == "empty"


def empty_with_rows(n: Node) -> tuple[Node, list[int]] | None:
    """(the `np.empty` under `n`, the rows that static single-row writes on it set:
    `h_steps[0] = h0`), or None when `n` is not such an array."""
    rows = []
    while n.op == "update" and n.attr("axis") is None:
        index = n.attr("index")
        if len(index) != 1 or not isinstance(index[0], int) or index[0] < 0:
            return None
        rows.append(index[0])
        n = n.args[0]
    return (n, rows) if new_empty(n) else None


def zero_padded(n: Node) -> tuple[Node, tuple] | None:
    """(v, ("slice", a, b, 1)) for `scatter(v, like, [a:b])` (zeros shaped like `like`
    with v in rows a to b), else None."""
    index = n.attr("index") if n.op == "scatter" else None
    if not index or len(index) != 1:
        return None
    part = index[0]
    if not isinstance(part, tuple) or len(part) != 4 or part[0] != "slice" or part[3] != 1:
        return None
    return n.args[0], part


def batched_product(n: Node) -> tuple[Node, Node] | None:
    """(P, M) when `n` is `P @ M`, P stacked rows (3-D) times the matrix M: row t of `n` is
    `P[t] @ M` (passes/rows.reuse_state_rows computes it in a loop's step)."""
    if n.op == "matmul" and n.ndim == 3 and n.args[0].ndim == 3 and n.args[1].ndim == 2:
        return n.args[0], n.args[1]
    return None


def stacked_rows(n: Node) -> tuple[Node, Node] | None:
    """(X, the rows of X it reads: `X[a:b]` or X) when `n` merges the two leading axes of
    X's rows into one (`X[a:b].reshape((N * T, H))`, the rows stacked as one matrix)."""
    if n.op != "reshape" or n.args[0].ndim != 3 or n.ndim != 2 \
            or not same_shape((n.shape[1],), (n.args[0].shape[2],)):
        return None
    x = n.args[0]
    if x.op == "index":
        index = x.attr("index")
        if len(index) == 1 and isinstance(index[0], tuple) and index[0][0] == "slice" \
                and index[0][3] == 1:
            return x.args[0], x
    return x, x


def transposed_matrix(n: Node) -> Node | None:
    """A when `n` is the transpose `A.T` of a matrix A, else None."""
    if n.op == "transpose" and n.attr("axes") == (1, 0):
        return n.args[0]
    return None


def taken_after_first(u: Node, m: Node, t: Node, start) -> bool:
    """Whether `u` is `where(t == start, a, m)`: it takes `m` at every step of a loop of
    index `t` but the one at `start` (where what `m` reads may be out of its rows:
    autodiff/loops._previous_next, passes/loops._discarded_at)."""
    if u.op != "where" or u.args[2] is not m or u.args[1] is m:
        return False
    cond = u.args[0]
    return cond.op == "eq" and cond.args[0] is t and cond.args[1].is_const \
        and as_expr(cond.args[1].value) == as_expr(start)


def gathered_rows(n: Node) -> tuple[Node, Node, int, tuple[int, ...] | None] | None:
    """(table, index, axis, order) when `n` holds, along its leading axis, the rows of a
    table gathered at an index array's rows: `transpose(gather(table, index, axis),
    order)` with order[0] == axis (hoist_steps' `log_B[:, obs_transpose]` laid out steps
    first: hmm's `log_B_transpose`), or `gather(table, index, axis=0)` (order None);
    else None. Row r of `n` is `gathered_row(...)`: the table gathered at index[r]."""
    order = None
    if n.op == "transpose":
        order, n = tuple(n.attr("axes")), n.args[0]
    if n.op != "gather" or len(n.args) != 2 or n.args[1].ndim < 1:
        return None
    axis = n.attr("axis")
    if order is None and axis != 0 or order is not None and order[0] != axis:
        return None
    return n.args[0], n.args[1], axis, order


def gathered_row(table: Node, index: Node, axis: int, order: tuple[int, ...] | None,
                 r: Node) -> Node:
    """Row `r` of the rows `gathered_rows` found: `table` gathered at `index[r]` along
    `axis`, its axes placed as `order` places them but the first (`log_B[:,
    obs_transpose[t - 2]].T` for row t - 2 of hmm's `log_B_transpose`)."""
    out = make("gather", table, make("gather", index, r, axis=0), axis=axis)
    if order is None:
        return out
    rest = tuple(a - (a > axis) for a in order[1:])
    return out if rest == tuple(range(len(rest))) else make("transpose", out, axes=rest)


def indexed_by(u: Node, m: Node) -> bool:
    """Whether `u` gathers entries of an array at the indices `m` (`log_B[:, m]`)."""
    return u.op == "gather" and any(a is m for a in u.args[1:])


def placing_axes(n: Node) -> bool:
    """Whether `n` only places the axes of its argument (a transpose: a view of all of it)."""
    return n.op == "transpose"
