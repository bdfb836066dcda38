"""Shape operations: transpose, reshape, expand_dims, squeeze, broadcast, indexing,
concatenate and stack."""

from __future__ import annotations

import sympy

from ..dims import (
    ONE,
    as_expr,
    broadcast,
    dims_equal,
    fmt_dim,
    fmt_shape,
    normalize_axes,
    print_expr,
    same_shape,
    size,
    slice_code,
)
from ..errors import ShapeError
from ..ir import make
from ._emit import call
from .dtypes import like_first
from .registry import PREC_CALL, REAL, REGISTRY, defbuiltin, defop, rewrite

SHAPE = frozenset({"linear", "shape"})
# Views that only add or remove axes of length 1: a temporary of one is named after the
# value it views (`U_sum` for `U_exp.sum(axis=1)[:, None]`).
UNIT_AXES = SHAPE | {"unit_axes"}
_ALL = ("slice", None, None, 1)   # the index item `:`


def _plus1(axes):
    return tuple(a + 1 for a in axes)


def _batched_to(t, shape):
    """A batched tangent `t` broadcast to `(batch,) + shape` (its axes line up first)."""
    missing = 1 + len(shape) - t.ndim
    if missing > 0:
        t = make("expand_dims", t, axes=tuple(range(1, 1 + missing)))
    return make("broadcast_to", t, shape=t.shape[:1] + tuple(shape))


# ---------------------------------------------------------------- transpose

def _transpose_shape(args, axes):
    return tuple(args[0].shape[a] for a in axes)


@rewrite("transpose")
def transpose_identity(x, axes):
    """A transpose that keeps every axis in place is its argument."""
    return x if axes == tuple(range(x.ndim)) else None


@rewrite("transpose")
def transpose_transpose(x, axes):
    """Two transposes are one: the permutations compose."""
    if x.op == "transpose":
        inner = x.attr("axes")
        return make("transpose", x.args[0], axes=tuple(inner[a] for a in axes))
    return None


@rewrite("transpose", "fuse")
def transpose_product(x, axes):
    """A transposed product of transposes is a product: `(A.T @ B).T` is `B.T @ A` and
    `(A.T @ B.T).T` is `B @ A`, so fewer transposes are left around products."""
    if x.op != "matmul" or axes != (1, 0) or any(a.ndim != 2 for a in x.args):
        return None
    flipped = [a.op == "transpose" and a.attr("axes") == (1, 0) for a in x.args]
    if not any(flipped):
        return None
    a, b = (t.args[0] if f else make("transpose", t, axes=(1, 0))
            for t, f in zip(x.args, flipped))
    return make("matmul", b, a)


def _emit_transpose(p, node):
    axes = node.attr("axes")
    if axes == tuple(reversed(range(len(axes)))):
        return p.full_transpose(p.arg(node, 0, PREC_CALL), len(axes)), PREC_CALL
    return p.call("transpose", [p.arg(node, 0, 0), p.axes(axes)]), PREC_CALL


def _inverse(perm):
    inv = [0] * len(perm)
    for i, a in enumerate(perm):
        inv[a] = i
    return tuple(inv)


defop("transpose", 1, dtype=like_first, shape=_transpose_shape, emit=_emit_transpose, operator=".T",
      traits=SHAPE, view="view", domain=(REAL,),
      vjp=lambda g, n: (make("transpose", g, axes=_inverse(n.attr("axes"))),),
      jvp=lambda ts, n: make("transpose", ts[0], **n.kw),
      vmap=lambda ts, n: make("transpose", ts[0],
                              axes=(0,) + tuple(a + 1 for a in n.attr("axes"))))


def swap_last(x):
    """`x` with its last two axes swapped (the matrix transpose of a batch)."""
    perm = list(range(x.ndim))
    perm[-1], perm[-2] = perm[-2], perm[-1]
    return make("transpose", x, axes=tuple(perm))


def _transpose_builtin(x, axes=None):
    if axes is None:
        axes = tuple(reversed(range(x.ndim)))
    if not isinstance(axes, tuple) or sorted(normalize_axes(axes, x.ndim)) != list(range(x.ndim)):
        raise ShapeError(f"axes must be a permutation of the {x.ndim} axes of the array")
    return make("transpose", x, axes=tuple(a % x.ndim for a in axes))


defbuiltin("transpose", ("x", "axes"), _transpose_builtin, static=("axes",),
           defaults={"axes": None}, keeps_index=True)


# ---------------------------------------------------------------- reshape

def _reshape_shape(args, shape):
    old = args[0].shape
    if sympy.expand(size(old) - size(shape)) != 0:
        raise ShapeError(f"cannot reshape an array of shape {fmt_shape(old)} "
                         f"into shape {fmt_shape(shape)}")
    return shape


@rewrite("reshape")
def reshape_same(x, shape):
    """A reshape to the shape the array has is the array."""
    return x if tuple(x.shape) == tuple(shape) else None


@rewrite("reshape")
def reshape_reshape(x, shape):
    """Two reshapes are one."""
    return make("reshape", x.args[0], shape=shape) if x.op == "reshape" else None


def _emit_reshape(p, node):
    return p.method(p.arg(node, 0, PREC_CALL), "reshape", [p.shape(node.attr("shape"))]), PREC_CALL


defop("reshape", 1, dtype=like_first, shape=_reshape_shape, emit=_emit_reshape,
      traits=SHAPE, view="view", domain=(REAL,),
      vjp=lambda g, n: (make("reshape", g, shape=n.args[0].shape),),
      jvp=lambda ts, n: make("reshape", ts[0], **n.kw),
      vmap=lambda ts, n: make("reshape", ts[0], shape=ts[0].shape[:1] + n.attr("shape")))


def as_shape(shape) -> tuple:
    """A static shape argument (an int, a dimension or a tuple of them) as a shape."""
    if isinstance(shape, (int, sympy.Basic)):
        shape = (shape,)
    if not isinstance(shape, tuple):
        raise ShapeError("a shape must be a tuple of dimensions")
    dims = tuple(sympy.Integer(d) if isinstance(d, int) else d for d in shape)
    if any(not isinstance(d, sympy.Basic) or (d.is_number and d <= 0) for d in dims):
        raise ShapeError(f"the shape {fmt_shape(dims)} must consist of positive dimensions")
    return dims


def _reshape_builtin(x, shape):
    return make("reshape", x, shape=as_shape(shape))


defbuiltin("reshape", ("x", "shape"), _reshape_builtin, static=("shape",), keeps_index=True)


# ---------------------------------------------------------------- expand_dims, squeeze

def _expand_shape(args, axes):
    shape = list(args[0].shape)
    for a in axes:
        shape.insert(a, ONE)
    return tuple(shape)


def _emit_expand(p, node):
    axes = node.attr("axes")
    items = ["None" if i in axes else ":" for i in range(node.ndim)]
    return p.subscript(p.arg(node, 0, PREC_CALL), items, node.args[0].ndim), PREC_CALL


@rewrite("expand_dims")
def expand_dims_none(x, axes):
    """Adding no axes is the array itself."""
    return x if not axes else None


@rewrite("expand_dims")
def expand_dims_squeeze(x, axes):
    """Adding back the axes a squeeze removed is the squeezed array."""
    return x.args[0] if x.op == "squeeze" and x.attr("axes") == axes else None


@rewrite("expand_dims")
def expand_dims_scaled(x, axes):
    """Scalar factors stay outermost: `(c * y)[:, None]` is `c * y[:, None]`, and
    `(c / s)[:, None]` is `c / s[:, None]`."""
    if x.op in ("mul", "div") and x.args[0].is_const:
        return make(x.op, x.args[0], make("expand_dims", x.args[1], axes=axes))
    return None


defop("expand_dims", 1, dtype=like_first, shape=_expand_shape, emit=_emit_expand,
      traits=UNIT_AXES, view="view", domain=(REAL,),
      vjp=lambda g, n: (make("squeeze", g, axes=n.attr("axes")),),
      jvp=lambda ts, n: make("expand_dims", ts[0], **n.kw),
      vmap=lambda ts, n: make("expand_dims", ts[0], axes=_plus1(n.attr("axes"))))


def _squeeze_shape(args, axes):
    shape = args[0].shape
    for a in axes:
        if shape[a] != ONE:
            raise ShapeError(f"cannot squeeze axis {a} of shape {fmt_shape(shape)}: "
                             "its size is not 1")
    return tuple(d for i, d in enumerate(shape) if i not in axes)


@rewrite("squeeze")
def squeeze_none(x, axes):
    """Removing no axes is the array itself."""
    return x if not axes else None


@rewrite("squeeze")
def squeeze_expand_dims(x, axes):
    """Removing the axes an expand_dims added is its argument."""
    return x.args[0] if x.op == "expand_dims" and x.attr("axes") == axes else None


@rewrite("squeeze")
def squeeze_scaled(x, axes):
    """Signs and scalar factors stay outermost: `(-s)[:, 0]` is `-s[:, 0]` and
    `(c * s)[:, 0]` is `c * s[:, 0]`, so a squeezed kept-axes reduction is the plain one
    (`(-x.sum(axis=1, keepdims=True))[:, 0]` is `-x.sum(axis=1)`)."""
    if x.op == "neg":
        return -make("squeeze", x.args[0], axes=axes)
    if x.op == "mul" and x.args[0].is_const:
        return x.args[0] * make("squeeze", x.args[1], axes=axes)
    return None


@rewrite("squeeze")
def squeeze_kept_reduction(x, axes):
    """Squeezing the kept axes of a reduction is the reduction without keepdims."""
    if REGISTRY[x.op].has("reduction") and x.attr("keepdims") and x.attr("axes") == axes:
        return make(x.op, x.args[0], axes=axes, keepdims=False)
    return None


def _emit_squeeze(p, node):
    """`x[:, 0]`: indexing the size-1 axes is a view, like np.squeeze, and 6x cheaper."""
    axes = node.attr("axes")
    items = ["0" if i in axes else ":" for i in range(node.args[0].ndim)]
    return p.subscript(p.arg(node, 0, PREC_CALL), items, node.args[0].ndim), PREC_CALL


defop("squeeze", 1, dtype=like_first, shape=_squeeze_shape, emit=_emit_squeeze,
      traits=UNIT_AXES, view="view", domain=(REAL,),
      vjp=lambda g, n: (make("expand_dims", g, axes=n.attr("axes")),),
      jvp=lambda ts, n: make("squeeze", ts[0], **n.kw),
      vmap=lambda ts, n: make("squeeze", ts[0], axes=_plus1(n.attr("axes"))))


def _expand_builtin(x, axis):
    if not isinstance(axis, (int, tuple)):
        raise ShapeError("axis must be an integer or a tuple of integers")
    return make("expand_dims", x, axes=normalize_axes(axis, x.ndim + (
        1 if isinstance(axis, int) else len(axis))))


def _squeeze_builtin(x, axis=None):
    if axis is None:
        axes = tuple(i for i, d in enumerate(x.shape) if d == ONE)
    else:
        axes = normalize_axes(axis, x.ndim)
    return make("squeeze", x, axes=axes)


defbuiltin("expand_dims", ("x", "axis"), _expand_builtin, static=("axis",), keeps_index=True)
defbuiltin("squeeze", ("x", "axis"), _squeeze_builtin, static=("axis",), defaults={"axis": None},
           keeps_index=True)


# ---------------------------------------------------------------- broadcasting

def _broadcast_shape(args, shape):
    x = args[0].shape
    try:
        ok = len(x) <= len(shape) and same_shape(broadcast(x, shape), shape)
    except ShapeError:
        ok = False
    if not ok:
        raise ShapeError(f"cannot broadcast shape {fmt_shape(x)} to {fmt_shape(shape)}")
    return shape


@rewrite("broadcast_to")
def broadcast_to_same(x, shape):
    """Broadcasting to the shape the array has is the array."""
    return x if tuple(x.shape) == tuple(shape) else None


defop("broadcast_to", 1, dtype=like_first, shape=_broadcast_shape, traits=SHAPE, view="readonly",
      domain=(REAL,),
      emit=lambda p, n: (p.call("broadcast_to", [p.arg(n, 0, 0), p.shape(n.attr("shape"))]),
                         PREC_CALL),
      vjp=lambda g, n: (g,),   # the differentiator sums it back to the argument's shape
      jvp=lambda ts, n: make("broadcast_to", ts[0], **n.kw),
      vmap=lambda ts, n: _batched_to(ts[0], n.attr("shape")))


def _broadcast_builtin(x, shape):
    return make("broadcast_to", x, shape=as_shape(shape))


defbuiltin("broadcast_to", ("x", "shape"), _broadcast_builtin, static=("shape",))


def _expand_like_shape(args):
    g, like = args
    if not all(s == ONE or dims_equal(s, d) for s, d in zip(reversed(g.shape),
                                                             reversed(like.shape))):
        raise ShapeError(f"cannot broadcast shape {fmt_shape(g.shape)} "
                         f"to {fmt_shape(like.shape)}")
    return like.shape


def _emit_expand_like(p, node):
    g, like = node.args
    if g.is_const:
        return p.call("full_like", [p.arg(node, 1, 0), p.arg(node, 0, 0)]), PREC_CALL
    shape = p.shape_of(p.arg(node, 1, PREC_CALL))
    return p.call("broadcast_to", [p.arg(node, 0, 0), shape]), PREC_CALL


# expand_like(g, like): `g` broadcast to the shape (and, for a constant, the dtype) of `like`.
@rewrite("expand_like")
def expand_like_same(g, like):
    """An array already of `like`'s shape needs no broadcasting (a constant still takes
    `like`'s dtype)."""
    return g if tuple(g.shape) == tuple(like.shape) and not g.is_const else None


# ("shape_of_last": its last argument is read for its shape only, which a loop's backward
# body takes from the static shape instead of saving the value per step)
defop("expand_like", 2, shape=_expand_like_shape, emit=_emit_expand_like,
      traits=frozenset({"linear", "shape", "shape_of_last"}), domain=(REAL, REAL),
      view=lambda n: None if n.args[0].is_const else "readonly",
      vjp=lambda g, n: (g, None),
      jvp=lambda ts, n: None if ts[0] is None else make("expand_like", ts[0], n.args[1]),
      vmap=lambda ts, n: None if ts[0] is None else _batched_to(ts[0], n.shape))

defop("zeros_like", 1, shape=lambda args: args[0].shape,
      traits=frozenset({"nondiff", "dtype_only"}),
      emit=call("zeros_like"), domain=(REAL,), buffer=lambda n: "zeros")


@rewrite("zeros_like")
def zeros_of_zeros(x):
    """Zeros shaped like zeros are those zeros (a loop's zero tangent of a zero cotangent,
    or of a backward loop's accumulator, `np.zeros(shape, dtype=...)`); zeros shaped like
    a new buffer (`np.empty(...)`: the tangent of one) are zeros of its shape and dtype."""
    if x.op == "empty":
        return make("full", *x.args, value=sympy.Integer(0), shape=x.attr("shape"))
    return x if x.op == "zeros_like" or x.op == "full" and x.attr("value") == 0 else None


# ---------------------------------------------------------------- indexing

def _index_shape(args, index):
    shape = args[0].shape
    consumed = sum(1 for it in index if it != "...")
    if consumed > len(shape):
        raise ShapeError(f"too many indices ({consumed}) for an array of shape "
                         f"{fmt_shape(shape)}")
    out, axis = [], 0
    for it in index:
        if it == "...":
            n = len(shape) - consumed
            out.extend(shape[axis:axis + n])
            axis += n
            continue
        d = shape[axis]
        if isinstance(it, int):
            if d.is_number and not -int(d) <= it < int(d):
                raise ShapeError(f"index {it} is out of bounds for axis {axis} "
                                 f"of size {int(d)}")
        else:
            out.append(_slice_len(d, *it[1:], axis=axis))
        axis += 1
    out.extend(shape[axis:])
    return tuple(out)


def _slice_len(d, start, stop, step, axis):
    if step == 0:
        raise ShapeError("slice step cannot be zero")
    if d.is_number and not any(isinstance(b, sympy.Basic) for b in (start, stop)):
        n = len(range(*slice(start, stop, step).indices(int(d))))
        if n == 0:
            raise ShapeError(f"slice selects no elements of axis {axis} (size {int(d)})")
        return sympy.Integer(n)
    if step < 0:
        raise ShapeError(f"negative slice steps need a literal size on axis {axis}")
    # A bound is an integer (negative from the end) or a dimension expression (`N - 1`,
    # `2 * H`: never negative, and within the axis, checked by the frontend or at entry;
    # the derivative of concatenate makes such offsets too). Symbolic sizes are never
    # compared with Python truthiness (`N - 2 >= 0` has no truth value): only the length
    # is asked whether it is positive, where it is not plainly so (a sympy query costs a
    # millisecond).
    lo = 0 if start is None else (d + start if isinstance(start, int) and start < 0 else start)
    hi = d if stop is None else (d + stop if isinstance(stop, int) and stop < 0 else stop)
    # x[1::2] of 2 * M: ceil((2 * M - 1) / 2) is M (sympy knows M is an integer)
    n = as_expr(hi - lo if step == 1 else sympy.ceiling(as_expr(hi - lo) / step))
    if not _grows(n) and n.is_positive is False:   # x[5:2] or x[N:] of Param[N]: empty
        raise ShapeError(f"slice selects no elements of axis {axis} (size {fmt_dim(d)})")
    return n


def _grows(n) -> bool:
    """`N` or `N - 3`: a dimension plus numbers, positive for large sizes, so never empty
    for every size. (The sympy query it spares costs milliseconds; a chain of 2,000 slices
    asks it thousands of times.)"""
    if n.is_Symbol:
        return True
    return bool(n.is_Add and all(a.is_Number or a.is_Symbol for a in n.args)
                and any(a.is_Symbol for a in n.args))


def _emit_index(p, node):
    items = format_index(_open_bounds(node.attr("index"), node.args[0].shape), p)
    if items == "()":
        return f"{p.arg(node, 0, PREC_CALL)}[()]", PREC_CALL
    return p.subscript(p.arg(node, 0, PREC_CALL), items.split(", "), node.args[0].ndim,
                       trim=False), \
        PREC_CALL


def _open_bounds(index: tuple, shape: tuple) -> tuple:
    """The index with a slice's bound left out where it is the axis's own (`h[1:]`, not
    `h[1 : T + 1]` of an array of T + 1 rows; `h[:T]`, not `h[0:T]`): the same view."""
    if len(index) > len(shape) or not all(isinstance(it, tuple) or isinstance(it, int)
                                          for it in index):
        return index
    out = []
    for it, d in zip(index, shape):
        if isinstance(it, tuple) and it[3] == 1:
            _, start, stop, step = it
            start = None if start is not None and dims_equal(start, 0) else start
            stop = None if stop is not None and dims_equal(stop, d) else stop
            it = ("slice", start, stop, step)
        out.append(it)
    return tuple(out)


def format_index(index, p=None) -> str:
    """Python source of a static index tuple. Slice bounds may be dimension expressions
    (`g[N:]`, from the derivative of concatenate); printer `p` records the sizes used."""
    def bound(v):
        if v is None:
            return ""
        if isinstance(v, sympy.Basic):   # a size: exact integer arithmetic (`C // H`)
            return p.scalar(v, integer=True)[0] if p is not None else print_expr(v, integer=True)
        return str(v)

    parts = []
    for it in index:
        if it == "...":
            parts.append("...")
        elif isinstance(it, int):
            parts.append(str(it))
        else:
            _, start, stop, step = it
            bounds = [bound(start), bound(stop)] + ([str(step)] if step != 1 else [])
            parts.append(slice_code(bounds))
    return ", ".join(parts) if parts else "()"


def _scatter_stmt(p, node, target):
    g, like = node.args
    where = format_index(node.attr("index"), p)
    value = p.arg(node, 0, 0)
    write = f"{target}[()] = {value}" if where == "()" else p.setitem(
        target, where.split(", "), node.ndim, value)
    return [f"{target} = {p.call('zeros_like', [p.arg(node, 1, 0)])}", write]


defop("index", 1, dtype=like_first, shape=_index_shape, emit=_emit_index, traits=SHAPE, view="view",
      domain=(REAL,),
      vjp=lambda g, n: (make("scatter", g, n.args[0], index=n.attr("index")),),
      jvp=lambda ts, n: make("index", ts[0], **n.kw),
      vmap=lambda ts, n: make("index", ts[0], index=(_ALL,) + n.attr("index")))

# scatter(g, like, index): zeros shaped like `like`, with `g` written at `index`.
defop("scatter", 2, shape=lambda args, index: args[1].shape, stmt=_scatter_stmt,
      buffer=lambda n: "zeros",   # (the statement's first line: np.zeros_like(like))
      traits=frozenset({"linear"}), domain=(REAL, REAL),
      vjp=lambda g, n: (make("index", g, index=n.attr("index")), None),
      jvp=lambda ts, n: None if ts[0] is None else make("scatter", ts[0], n.args[1], **n.kw),
      vmap=lambda ts, n: None if ts[0] is None else make(
          "scatter", ts[0], make("broadcast_to", n.args[1], shape=ts[0].shape[:1] + n.shape),
          index=(_ALL,) + n.attr("index")))


# ---------------------------------------------------------------- concatenate, stack

def _concat_shape(args, axis):
    first = args[0].shape
    for a in args[1:]:
        if len(a.shape) != len(first) or not all(
                dims_equal(d, e) for i, (d, e) in enumerate(zip(a.shape, first)) if i != axis):
            raise ShapeError("cannot concatenate shapes "
                             + ", ".join(fmt_shape(b.shape) for b in args)
                             + f" along axis {axis}: the other dimensions differ")
    return first[:axis] + (sympy.Add(*(a.shape[axis] for a in args)),) + first[axis + 1:]


def _stack_shape(args, axis):
    first = args[0].shape
    if not all(same_shape(a.shape, first) for a in args[1:]):
        raise ShapeError("cannot stack arrays of different shapes "
                         + ", ".join(fmt_shape(a.shape) for a in args))
    return first[:axis] + (sympy.Integer(len(args)),) + first[axis:]


def _emit_join(fn):
    """`np.concatenate([a, b], axis=1)` (and stack); axis 0 is NumPy's default."""
    def emit(p, node):
        items = f"[{', '.join(p.args(node))}]"
        axis = node.attr("axis")
        return p.call(fn, [items], [] if axis == 0 else [f"axis={axis}"]), PREC_CALL
    return emit


def _as_index(d):
    return int(d) if d.is_Integer else d


def _concat_blocks(n):
    """The index of each argument's block in the result of concatenate `n` (`g[:, N:]`)."""
    axis, start, out = n.attr("axis"), sympy.Integer(0), []
    for k, a in enumerate(n.args):
        stop = start + a.shape[axis]
        lo = None if k == 0 else _as_index(start)
        hi = None if k == len(n.args) - 1 else _as_index(stop)
        out.append((_ALL,) * axis + (("slice", lo, hi, 1),))
        start = stop
    return out


def _join_jvp(op, batched=False):
    """concatenate/stack of the tangents (zeros for arguments without one)."""
    def rule(ts, n):
        present = [t for t in ts if t is not None]
        if not present:
            return None
        lead = present[0].shape[:1] if batched else ()

        def zero(a):
            full = a if not lead else make("broadcast_to", a, shape=lead + tuple(a.shape))
            return make("zeros_like", full)

        parts = [t if t is not None else zero(a) for t, a in zip(ts, n.args)]
        return make(op, *parts, axis=n.attr("axis") + (1 if batched else 0))
    return rule


@rewrite("concatenate")
def concatenate_one(*args, axis):
    """A concatenation of one array is that array."""
    return args[0] if len(args) == 1 else None


defop("concatenate", None, shape=_concat_shape, dtype=like_first,
      emit={"default": _emit_join("concatenate"), "array_api": _emit_join("concat")},
      traits=frozenset({"linear"}), domain=(REAL, REAL), hint="joined",
      vjp=lambda g, n: tuple(make("index", g, index=ix) for ix in _concat_blocks(n)),
      jvp=_join_jvp("concatenate"), vmap=_join_jvp("concatenate", batched=True))

defop("stack", None, shape=_stack_shape, emit=_emit_join("stack"),
      traits=frozenset({"linear"}), domain=(REAL, REAL), hint="stacked",
      vjp=lambda g, n: tuple(make("index", g, index=(_ALL,) * n.attr("axis") + (k,))
                             for k in range(len(n.args))),
      jvp=_join_jvp("stack"), vmap=_join_jvp("stack", batched=True))


def _axis_arg(axis):
    if isinstance(axis, bool) or not isinstance(axis, int):
        raise ShapeError("axis must be an integer")
    return axis


def _concatenate_builtin(arrays, axis=0):
    for a in arrays:
        if a.ndim == 0:
            raise ShapeError("zero-dimensional arrays cannot be concatenated; use stack")
    (axis,) = normalize_axes(_axis_arg(axis), arrays[0].ndim)
    return make("concatenate", *arrays, axis=axis)


def _stack_builtin(arrays, axis=0):
    (axis,) = normalize_axes(_axis_arg(axis), arrays[0].ndim + 1)
    like = next((a for a in arrays if not a.is_const), None)
    if like is not None and like.ndim == 0:
        # A number among scalar arrays: as a 0-d array of their dtype (np.stack would make
        # it float64, turning a float32 result into float64).
        arrays = tuple(make("expand_like", a, like) if a.is_const else a for a in arrays)
    return make("stack", *arrays, axis=axis)


defbuiltin("concatenate", ("arrays", "axis"), _concatenate_builtin, static=("axis",),
           defaults={"axis": 0}, list_param="arrays")
defbuiltin("stack", ("arrays", "axis"), _stack_builtin, static=("axis",),
           defaults={"axis": 0}, list_param="arrays")


# ---------------------------------------------------------------- split

def _split_builtin(x, k, axis=0):
    """split(x, k, axis): the k equal parts of x along `axis`, as a tuple of slices (views)
    to unpack, `a, b = split(x, 2)`. The axis's length must be a multiple of k: a literal
    size, or a dimension expression such as `2 * M` (declare `Param[2 * M]`)."""
    if x.ndim == 0:
        raise ShapeError("split needs an array of at least one dimension, not a scalar")
    if k < 1:
        raise ShapeError(f"the number of parts must be positive, got {k}")
    (axis,) = normalize_axes(_axis_arg(axis), x.ndim)
    d = x.shape[axis]
    part = sympy.expand(d / k)
    if not part.is_integer:
        hint = "" if d.is_number else f"; declare it as a multiple, such as {k} * M"
        raise ShapeError(f"cannot split axis {axis} of length {fmt_dim(d)} into {k} equal "
                         f"parts{hint}")
    return tuple(make("index", x, index=(_ALL,) * axis + (
        ("slice", None if i == 0 else _as_index(i * part),
         None if i == k - 1 else _as_index((i + 1) * part), 1),)) for i in range(k))


defbuiltin("split", ("x", "k", "axis"), _split_builtin, static=("k", "axis"),
           defaults={"axis": 0})
