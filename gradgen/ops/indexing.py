"""Integer values and integer-array indexing: `arange`, gathers (`E[idx]`,
`S[arange(N), y]`, `x[:, idx]`, `take_along_axis`), their scatter-add, `one_hot`,
`segment_sum`, `float`, and integer `//` and `%`.

Index values (`Index[...]`/`int` arguments, `arange`, integer arithmetic of them) have the
dtype "int" (ops/dtypes.py). They are never differentiated: every op here is linear in its
float argument and takes no derivative with respect to its integer ones.

gather(x, i1, ..., ik, axis=a) is NumPy's advanced indexing `x[:, ..., :, i1, ..., ik]`
(`a` full slices first): the index arrays broadcast together to a shape B, and the result
has shape `x.shape[:a] + B + x.shape[a + k:]`. Its VJP is scatter_add, which adds the
cotangent into zeros of x's shape at those indices, repeated indices accumulating; the VJP
of scatter_add is the gather again, so both are closed under differentiation (JVP: the
same op of the tangent; batching: the same op one axis further right).

Indices follow NumPy in both directions: a negative index counts from the end, and one
out of range raises IndexError (the gather by NumPy itself, the scatter by its helper,
with NumPy's message).
"""

from __future__ import annotations

import sympy

from ..dims import ONE, as_expr, broadcast, dims_equal, fmt_dim, fmt_shape, same_shape, size
from ..errors import ShapeError
from ..ir import const, make, memo
from ._emit import infix
from .constants import dtype_witness
from .dtypes import INT, integer_closed, integral, like_first
from .registry import PREC_CALL, PREC_MUL, READERS, REAL, Builtin, defbuiltin, defop, rewrite

__all__ = ["CONVERSIONS", "gather", "to_float"]

NONDIFF = frozenset({"nondiff"})
LINEAR = frozenset({"linear"})


def to_float(x, inputs):
    """An Index value as numbers of the computation's float dtype (`float(y)`): NumPy would
    make int64 with float32 float64, so the cast names the dtype of an argument."""
    if x.dtype != INT:
        return x
    return make("cast", x, dtype_witness(inputs))


def _check_indices(idx) -> None:
    for i in idx:
        if i.dtype != INT:
            raise ShapeError("an index array must hold integers (an Index value, arange or "
                             "integer arithmetic of them)")


# ---------------------------------------------------------------- arange

def _arange_shape(args, start, stop, axis=0, ndim=1):
    return (ONE,) * axis + (as_expr(stop - start),) + (ONE,) * (ndim - 1 - axis)


def _emit_arange(p, node):
    start, stop = node.attr("start"), node.attr("stop")
    args = [p.scalar(stop)[0]] if start == 0 else [p.scalar(start)[0], p.scalar(stop)[0]]
    code = p.call("arange", args)
    axis, ndim = node.attr("axis", 0), node.attr("ndim", 1)
    if ndim > 1:   # a grid for the other axes of take_along_axis: np.arange(N)[:, None]
        items = ["None"] * axis + [":"] + ["None"] * (ndim - 1 - axis)
        code = p.subscript(code, items, 1)
    return code, PREC_CALL


# arange[start, stop, axis, ndim]: the integers start, ..., stop - 1 (dimension expressions),
# along `axis` of an array of `ndim` axes, the others of length 1 (ndim 1 by default).
defop("arange", 0, shape=_arange_shape, emit=_emit_arange, traits=NONDIFF, dtype=INT,
      hint="arange")


def _arange_builtin(start, stop=None):
    if stop is None:
        start, stop = sympy.Integer(0), start
    n = as_expr(stop - start)
    if n.is_positive is False or n.is_zero:
        raise ShapeError(f"arange({fmt_dim(start)}, {fmt_dim(stop)}) would be empty")
    return make("arange", start=as_expr(start), stop=as_expr(stop))


defbuiltin("arange", ("start", "stop"), _arange_builtin, static=("start", "stop"),
           defaults={"stop": None})


# ---------------------------------------------------------------- gather, scatter_add

def _gather_shape(args, axis):
    x, idx = args[0], args[1:]
    _check_indices(idx)
    if axis + len(idx) > x.ndim:
        raise ShapeError(f"too many indices ({axis + len(idx)}) for an array of shape "
                         f"{fmt_shape(x.shape)}")
    b = ()
    for i in idx:
        b = broadcast(b, i.shape)
    return tuple(x.shape[:axis]) + tuple(b) + tuple(x.shape[axis + len(idx):])


def _emit_gather(p, node):
    items = [":"] * node.attr("axis") + p.args(node, 0)[1:]
    return f"{p.arg(node, 0, PREC_CALL)}[{', '.join(items)}]", PREC_CALL


def _gather_vjp(g, n):
    x, idx = n.args[0], n.args[1:]
    return (make("scatter_add", g, *idx, shape=tuple(x.shape), axis=n.attr("axis")),
            *(None for _ in idx))


def _gather_view(n):
    """`x[t]` at 0-d indices (a loop's `X[t]`) is basic indexing: a view of x."""
    return "view" if all(i.ndim == 0 for i in n.args[1:]) else None


def _python_int(n) -> bool:
    """Whether the 0-d integer node `n` is a Python int in emitted code: a number, a loop's
    variable (`t`), or integer arithmetic of them (`t - 1`)."""
    if n.ndim != 0:
        return False
    if n.is_const:
        return True
    if n.op == "input":
        return n.attr("role") == "index" and n.attr("loop") is not None
    return n.op in _INT_ARITHMETIC and all(_python_int(a) for a in n.args)


_INT_ARITHMETIC = frozenset({"add", "sub", "mul", "neg", "floordiv", "mod"})


def _emit_gather_xp(p, node):
    """The standard's form: `x[:, t]` at Python ints (a loop's variable), `take` of one
    1-D index array, else the module's `_gather`."""
    x, *index = p.args(node, 0)
    if all(_python_int(i) for i in node.args[1:]):
        items = [":"] * node.attr("axis") + [p.arg(node, k, 0) for k in range(1, len(node.args))]
        return p.subscript(p.arg(node, 0, PREC_CALL), items, node.args[0].ndim), PREC_CALL
    if len(index) == 1 and node.args[1].ndim == 1:
        return p.call("take", [x, index[0]], [f"axis={node.attr('axis')}"]), PREC_CALL
    return p.helper("_gather", [x, str(node.attr("axis")), *index]), PREC_CALL


defop("gather", None, shape=_gather_shape, emit={"numpy": _emit_gather,
                                                 "array_api": _emit_gather_xp},
      dtype=like_first, traits=LINEAR, domain=(REAL,), hint="rows", view=_gather_view,
      vjp=_gather_vjp,
      jvp=lambda ts, n: None if ts[0] is None else make("gather", ts[0], *n.args[1:], **n.kw),
      vmap=lambda ts, n: None if ts[0] is None else make(
          "gather", ts[0], *n.args[1:], axis=n.attr("axis") + 1))


def _scatter_shape(args, shape, axis):
    g, idx = args[0], args[1:]
    _check_indices(idx)
    b = ()
    for i in idx:
        b = broadcast(b, i.shape)
    expected = tuple(shape[:axis]) + tuple(b) + tuple(shape[axis + len(idx):])
    if len(expected) != g.ndim or not all(dims_equal(d, e) for d, e in zip(g.shape, expected)):
        raise ShapeError(f"cannot scatter an array of shape {fmt_shape(g.shape)} into shape "
                         f"{fmt_shape(shape)} at indices of shape {fmt_shape(b)}")
    return shape


_SCATTER_ADD = '''\
def _scatter_add(g, shape, axis, *index):
    """Zeros of `shape` with `g` added at [:, ..., :, *index] (`axis` full slices first;
    the index arrays broadcast together), repeated indices accumulating: the VJP of the
    gather x[:, ..., *index] (np.add.at(out, index, g), faster). An index out of range
    raises IndexError as the gather does; a negative one counts from the end."""
    g = np.asarray(g)
    sizes = shape[axis : axis + len(index)]
    flat = np.zeros((), dtype=np.intp)  # (an array from the start, for type checkers)
    for k, (i, n) in enumerate(zip(index, sizes)):
        i = np.asarray(i).astype(np.intp, copy=False)
        if i.size and (i.min() < -n or i.max() >= n):
            b, ax = (i.min() if i.min() < -n else i.max()), axis + k
            raise IndexError(f"index {b} is out of bounds for axis {ax} with size {n}")
        if i.size and i.min() < 0:
            i = np.where(i < 0, i + n, i)
        flat = flat * n + i
    flat = flat.ravel()
    lead = int(np.prod(shape[:axis]))
    rest = int(np.prod(shape[axis + len(index) :]))
    m, width = int(np.prod(sizes)), lead * rest
    if g.dtype == np.float64 and 1 < width <= 32 and flat.size >= 2048:
        cols = g.reshape(lead, flat.size, rest)  # a bincount per column: no index array
        out = np.empty((lead, m, rest))  # (and no copy of g) of g's size; each long
        for j in range(lead):  # enough that the calls cost little
            for k in range(rest):
                out[j, :, k] = np.bincount(flat, weights=cols[j, :, k], minlength=m)
        return out.reshape(shape)
    rows = g.reshape(lead, flat.size, rest).transpose(1, 0, 2).reshape(flat.size, width)
    if g.dtype == np.float64:  # one bincount over the raveled (row, column) positions
        at = flat if width == 1 else (flat[:, None] * width + np.arange(width)).ravel()
        out = np.bincount(at, weights=rows.ravel(), minlength=m * width)
    else:  # bincount sums in float64: np.add.at keeps float32 (and is as fast there)
        out = np.zeros((m, width), g.dtype)
        np.add.at(out, flat, rows)
    return out.reshape(m, lead, rest).transpose(1, 0, 2).reshape(shape)
'''


def _emit_scatter_add(p, node):
    args = p.args(node, 0)
    return p.helper("_scatter_add", [args[0], p.shape(node.attr("shape")),
                                     str(node.attr("axis")), *args[1:]]), PREC_CALL


def _scatter_vmap(ts, n):
    if ts[0] is None:
        return None
    t = ts[0]
    return make("scatter_add", t, *n.args[1:], shape=t.shape[:1] + tuple(n.attr("shape")),
                axis=n.attr("axis") + 1)


@rewrite("sum")
def sum_scattered_rows(x, axes, keepdims):
    """Row sums of values scattered one per row are the values: with `M` zeros of (N, C)
    and `g[i]` added at `[i, y[i]]` for i in `arange(N)`, `sum(M, axis=1)` is `g` (the
    gradient of `mean(logp[arange(N), y])` summed again by log_softmax's rule)."""
    if x.op != "scatter_add" or x.attr("axis") != 0 or len(x.args) != 3 or x.ndim != 2:
        return None
    g, rows, cols = x.args
    if g.ndim != 1 or not dims_equal(g.shape[0], x.shape[0]):
        return None
    for kept, index in ((0, rows), (1, cols)):
        if axes == (1 - kept,) and index.op == "arange" and index.attr("start") == 0 \
                and index.attr("axis", 0) == 0 and index.attr("ndim", 1) == 1 \
                and dims_equal(index.attr("stop"), x.shape[kept]):
            return make("expand_dims", g, axes=(1 - kept,)) if keepdims else g
    return None


@rewrite("sum", inspects=("scatter_add",))
def sum_scattered_grid(x, axes, keepdims):
    """Sums over the last scattered axis of values scattered one per row of a grid are the
    values: `g` (T, N) added into zeros of (T, N, C) at `[steps, rows, y]`, steps and rows
    every index of their axes (`np.arange(T)[:, None]`, `np.arange(N)`), summed over C is
    `g` (the gradient of a loop's `mean(logp[arange(N), y[t]])` for all steps at once,
    summed again by log_softmax's rule): no pass over the (T, N, C) array."""
    if x.op != "scatter_add" or x.dtype == INT or len(x.args) < 3:
        return None
    g, idx, a = x.args[0], x.args[1:], x.attr("axis")
    if axes != (a + len(idx) - 1,) or not _identity_grid(x, idx[:-1], a):
        return None
    kept = tuple(d for q, d in enumerate(x.shape) if q not in axes)
    if not same_shape(tuple(g.shape), kept):
        return None
    return make("expand_dims", g, axes=axes) if keepdims else g


def _scattered_into(s, m, negate_m: bool, negate_g: bool, op: str):
    """`m + s` (signs as asked) for `s` a scatter of values one per row of a grid (no index
    repeats) into zeros of m's shape: the values added at those entries of m's buffer."""
    if s.op != "scatter_add" or len(s.args) < 3 or m.dtype == INT or s.dtype == INT \
            or tuple(m.shape) != tuple(s.shape):
        return None
    g, idx, a = s.args[0], s.args[1:], s.attr("axis")
    readers = memo().get(READERS)
    if not readers or readers.get(id(m)) != [op] or not _identity_grid(s, idx[:-1], a):
        return None
    kept = tuple(d for q, d in enumerate(s.shape) if q != a + len(idx) - 1)
    if not same_shape(tuple(g.shape), kept):   # (one value per row of the grid)
        return None
    base = _negated(m) if negate_m else m
    rows = make("gather", base, *idx, axis=a)
    if g.op == "full" and base.dtype == g.dtype:   # (a constant fill: its number)
        c = as_expr(g.attr("value"))
        if c.could_extract_minus_sign():   # (`- 1 / (N * T)`, not `+ -1 / (N * T)`)
            c, negate_g = -c, not negate_g
        g = const(c)
    value = rows - g if negate_g else rows + g
    return make("update", base, value, *idx, index=(), axis=a)


def _negated(m):
    """-m, the sign on a broadcast factor of a product where there is one (`-(d * e)`
    with d of shape (T, N, 1) is `(-d) * e`: no pass over the product's size)."""
    if m.op == "mul":
        for q in (0, 1):
            f, other = m.args[q], m.args[1 - q]
            if tuple(other.shape) == tuple(m.shape) and tuple(f.shape) != tuple(m.shape):
                return make("mul", -f, other)
    return -m


@rewrite("sub", "lower", inspects=("scatter_add",))
def scatter_into_difference(a, b):
    """A scatter of one value per row of a grid minus a full array, or the other way
    round, is the array (negated) with the values added at their entries in its buffer
    (`dz = -(d * p); dz[steps, rows, y] += g`, log_softmax's cotangent): not a fresh
    zero-filled array of its size, when the difference is the array's only reader."""
    return _scattered_into(a, b, True, False, "sub") or _scattered_into(b, a, False, True, "sub")


@rewrite("add", "lower", inspects=("scatter_add",))
def scatter_into_sum(a, b):
    """A scatter of one value per row of a grid plus a full array is the array with the
    values added at their entries in its buffer, when the sum is its only reader."""
    return _scattered_into(a, b, False, False, "add") or _scattered_into(b, a, False, False, "add")


# scatter_add(g, i1, ..., ik, shape, axis): zeros of `shape` with g added at
# [:, ..., :, i1, ..., ik] (`axis` full slices first), repeated indices accumulating.
defop("scatter_add", None, shape=_scatter_shape, emit=_emit_scatter_add, traits=LINEAR,
      domain=(REAL,), prelude=_SCATTER_ADD, hint="scattered",
      vjp=lambda g, n: (make("gather", g, *n.args[1:], axis=n.attr("axis")),
                        *(None for _ in n.args[1:])),
      jvp=lambda ts, n: None if ts[0] is None else make("scatter_add", ts[0], *n.args[1:],
                                                         **n.kw),
      vmap=_scatter_vmap)


def gather(x, idx, axis):
    """`x[:, ..., :, *idx]` with `axis` full slices first (the frontend's subscripts)."""
    return make("gather", x, *idx, axis=axis)


# ---------------------------------------------------------------- take_along_axis

def _axis(axis, ndim, what):
    if isinstance(axis, bool) or not isinstance(axis, int):
        raise ShapeError(f"{what} must be an integer")
    if not -ndim <= axis < ndim:
        raise ShapeError(f"{what} {axis} is out of bounds for an array of {ndim} dimensions")
    return axis % ndim


def _take_along_builtin(x, indices, axis):
    """As np.take_along_axis: a gather whose other axes are indexed by aranges."""
    if indices.ndim != x.ndim:
        raise ShapeError(f"the indices must have as many dimensions as the array "
                         f"({x.ndim}), got shape {fmt_shape(indices.shape)}")
    axis = _axis(axis, x.ndim, "axis")
    grids = []
    for j, d in enumerate(x.shape):
        if j == axis:
            grids.append(indices)
            continue
        e = indices.shape[j]
        if not (e == ONE or dims_equal(e, d)):
            raise ShapeError(f"the indices' shape {fmt_shape(indices.shape)} does not match "
                             f"the array's {fmt_shape(x.shape)} on axis {j}")
        grids.append(make("arange", start=sympy.Integer(0), stop=d, axis=j, ndim=x.ndim))
    return make("gather", x, *grids, axis=0)


defbuiltin("take_along_axis", ("x", "indices", "axis"), _take_along_builtin,
           static=("axis",), index_params=("indices",))


# ---------------------------------------------------------------- one_hot, segment_sum

def _one_hot_builtin(y, num_classes, inputs):
    c = as_expr(num_classes)
    classes = make("arange", start=sympy.Integer(0), stop=c)
    hit = make("eq", make("expand_dims", y, axes=(y.ndim,)), classes)
    return make("cast", hit, dtype_witness(inputs))


defbuiltin("one_hot", ("y", "num_classes"), _one_hot_builtin, static=("num_classes",),
           needs_inputs=True, index_params=("y",))


def _segment_sum_builtin(x, segment_ids, num_segments):
    k = segment_ids.ndim
    if k > x.ndim or not all(dims_equal(a, b) for a, b in zip(segment_ids.shape, x.shape)):
        raise ShapeError(f"the segment ids' shape {fmt_shape(segment_ids.shape)} must be the "
                         f"leading axes of the data's {fmt_shape(x.shape)}")
    shape = (as_expr(num_segments),) + tuple(x.shape[k:])
    return make("scatter_add", x, segment_ids, shape=shape, axis=0)


defbuiltin("segment_sum", ("x", "segment_ids", "num_segments"), _segment_sum_builtin,
           static=("num_segments",), index_params=("segment_ids",))


# ---------------------------------------------------------------- float(y)

def _float_builtin(x):
    """`float(y)`: the frontend converts an Index argument of a built-in that does not take
    one as it is to the computation's float dtype (`to_float`), which is all float does."""
    return x


# `float(...)` is Python's own conversion, as `float` and `int` are annotations: not a
# reserved name of the language (an argument or a dimension may be called `float`), so it
# is looked up after the functions and built-ins (frontend/calls.py).
CONVERSIONS = {"float": Builtin("float", ("x",), _float_builtin, elementwise=True)}


# ---------------------------------------------------------------- integer // and %

def _int_args(args):
    if not all(integral(a) for a in args):
        raise ShapeError("// and % are for integers (Index values and dimensions)")


def _int_shape(args):
    _int_args(args)
    return broadcast(args[0].shape, args[1].shape)


@rewrite("floordiv")
def floordiv_fold(a, b):
    """The floor quotient of two integer numbers is a number (of dimensions: printed as
    written, `C // H`)."""
    if a.is_const and b.is_const and a.value.is_Integer and b.value.is_Integer and b.value:
        return const(sympy.floor(a.value / b.value))
    return None


@rewrite("mod")
def mod_fold(a, b):
    """The remainder of two integer numbers is a number."""
    if a.is_const and b.is_const and a.value.is_Integer and b.value.is_Integer and b.value:
        return const(sympy.Mod(a.value, b.value))
    return None


# (elementwise: of dimension sizes, a Python number, as the printer makes such arithmetic)
defop("floordiv", 2, shape=lambda args: _int_shape(args), dtype=integer_closed,
      emit=infix("//", PREC_MUL, left_strict=True), traits=NONDIFF | {"elementwise"},
      domain=(REAL, REAL), hint="quot")
defop("mod", 2, shape=lambda args: _int_shape(args), dtype=integer_closed,
      emit=infix("%", PREC_MUL, left_strict=True), traits=NONDIFF | {"elementwise"},
      domain=(REAL, REAL), hint="rem")


# ---------------------------------------------------------------- subscript assignment

# update(A, v, i1, ..., ik, index, axis): a copy of A with the entries a subscript selects
# replaced by v (the functional `A[...] = v`). Either `axis` is None and `index` a static
# index (ints, slices, `...`: the `index` op's), or `index` is () and the index arrays
# i1..ik select as gather(A, i1, ..., ik, axis) does. v has the shape of the selection.
# (`A[...] += v` is A plus a scatter, no op of its own.) With repeated indices NumPy keeps
# the last write, and the derivative with respect to v would count every copy: indices
# written to must be distinct (README).

def selection(a, idx, index, axis):
    """The node of what `A[...]` selects: a gather, an index, or `a` itself."""
    if axis is not None:
        return make("gather", a, *idx, axis=axis)
    return make("index", a, index=index) if index else a


def _update_shape(args, index, axis):
    a, v, idx = args[0], args[1], args[2:]
    _check_indices(idx)
    sel = _selection_shape(a, idx, index, axis)
    if len(sel) != v.ndim or not all(dims_equal(d, e) for d, e in zip(sel, v.shape)):
        raise ShapeError(f"cannot assign an array of shape {fmt_shape(v.shape)} to a "
                         f"selection of shape {fmt_shape(sel)}")
    return a.shape


def _selection_shape(a, idx, index, axis):
    from .shape_ops import _index_shape  # the index op's own rule

    if axis is not None:
        return _gather_shape((a, *idx), axis)
    return _index_shape((a,), index) if index else tuple(a.shape)


def _update_write(p, node, target):
    """The write of `update` into `target`, a buffer holding argument 0."""
    from .shape_ops import format_index

    if node.attr("axis") is None:
        where = format_index(node.attr("index"), p)
        items = where.split(", ")
    else:
        items = [":"] * node.attr("axis") + p.args(node, 0)[2:]
        where = ", ".join(items)
    v = node.args[1]
    if where != "()" and node.attr("axis") is None and v.op == "add" \
            and _reads_own_place(v.args[0], node) and not p.code_of(v)[0].isidentifier():
        # `A[i] = A[i] + w`, A the buffer written: `target[i] += w` where the target can
        # (not where a variable holds the sum: w may be gone, its buffer reused by the sum)
        line = p.augmented(p.subscript(target, items, node.ndim, trim=False), "add",
                           p.arg(v, 1, 0))
        if line is not None:
            return [line]
    if v.op == "matmul" and p.target == "numpy" and where != "()" \
            and node.attr("axis") is None and not p.code_of(v)[0].isidentifier():
        # a product computed into the entries it fills (`np.matmul(X, Wx, out=h[1:])`),
        # not into a temporary of their size copied there (the same values: NumPy picks
        # the product's loop by its operands' dtypes, and casts into the buffer)
        out = "out=" + p.subscript(target, items, node.ndim, trim=False)
        return [p.call("matmul", [p.arg(v, 0, 0), p.arg(v, 1, 0), out])]
    # a constant fill is written as its number (`margins[rows, y] = 0`)
    value = p.scalar(v.attr("value"))[0] if v.op == "full" else p.arg(node, 1, 0)
    if p.target == "array_api" and node.attr("axis") is not None and \
            not all(_python_int(i) for i in node.args[2:]):   # no setitem at arrays there
        index = p.args(node, 0)[2:]
        call = p.helper("_scatter_set", [target, value, str(node.attr("axis")), *index])
        return [f"{target} = {call}"]
    if where != "()":
        return [p.setitem(target, items, node.ndim, value)]
    return [f"{target}[{where}] = {value}"]


def written_value(n):
    """The array a `scatter` writes, or an `update` of a static index writes (for
    `A[i] = A[i] + w`, adds: w); None for other nodes. (The scheduler computes it in a
    dead buffer before the write: `codegen/schedule._write_stmt`.)"""
    if n.op == "scatter":
        return n.args[0]
    if n.op != "update" or n.attr("axis") is not None or len(n.args) != 2:
        return None
    v = n.args[1]
    return v.args[1] if v.op == "add" and _reads_own_place(v.args[0], n) else v


def _reads_own_place(x, node) -> bool:
    """Whether `x` reads the entries the static-index `update` node writes, of the array
    it writes into (`A[1:]` in `A[1:] = A[1:] + w`)."""
    # (and the sum is of the array's dtype: `+=` casts only within a kind, `=` any way)
    return x.op == "index" and x.args[0] is node.args[0] and node.dtype == node.args[1].dtype \
        and x.attr("index") == node.attr("index") and tuple(x.shape) == tuple(node.args[1].shape)


def _update_stmt(p, node, target):
    return [f"{target} = {p.method(p.arg(node, 0, PREC_CALL), 'copy')}",
            *_update_write(p, node, target)]


def _zeros_of(x, shape):
    """Zeros of `shape` in the dtype of `x` (a float node)."""
    return make("full", x, value=sympy.Integer(0), shape=tuple(shape))


def _update_vjp(g, n):
    v, idx = n.args[1], n.args[2:]
    index, axis = n.attr("index"), n.attr("axis")
    return (make("update", g, _zeros_of(g, v.shape), *idx, **n.kw),
            selection(g, idx, index, axis), *(None for _ in idx))


def _update_jvp(ts, n):
    a, v, idx = n.args[0], n.args[1], n.args[2:]
    ta, tv = ts[0], ts[1]
    if ta is None and tv is None:
        return None
    ta = ta if ta is not None else make("zeros_like", a)
    tv = tv if tv is not None else _zeros_of(ta, v.shape)
    return make("update", ta, tv, *idx, **n.kw)


def _update_vmap(ts, n):
    a, v, idx = n.args[0], n.args[1], n.args[2:]
    ta, tv = ts[0], ts[1]
    if ta is None and tv is None:
        return None
    lead = (ta if ta is not None else tv).shape[:1]
    if ta is None:
        ta = _zeros_of(tv, lead + tuple(a.shape))
    if tv is None:
        tv = _zeros_of(ta, lead + tuple(v.shape))
    index, axis = n.attr("index"), n.attr("axis")
    if axis is None:
        from .shape_ops import _ALL

        return make("update", ta, tv, index=(_ALL,) + index if index else (), axis=None)
    return make("update", ta, tv, *idx, index=(), axis=axis + 1)


defop("update", None, shape=_update_shape, stmt=_update_stmt, write=_update_write,
      traits=LINEAR,
      domain=(REAL, REAL), hint="updated",
      vjp=_update_vjp, jvp=_update_jvp, vmap=_update_vmap)


def _same_place(a, idx, index, axis) -> bool:
    """Whether the `update` node `a` wrote at the place `idx`/`index`/`axis` selects."""
    return a.op == "update" and a.attr("axis") == axis and a.attr("index") == index and \
        len(a.args) == 2 + len(idx) and all(x is y for x, y in zip(a.args[2:], idx))


def entries_taken(n) -> bool:
    """Whether `n` gathers entries by index arrays into fewer axes than its array has
    (`logp[steps, rows, Y]`: a few entries of each row, not rows or a permutation)."""
    return n.op == "gather" and n.ndim < n.args[0].ndim and any(i.ndim for i in n.args[1:])


def row_read(n):
    """(array, index) for a read of one row of an array at a scalar index (`H[t]`: a
    `gather` on axis 0), else None."""
    if n.op == "gather" and n.attr("axis") == 0 and len(n.args) == 2 and n.args[1].ndim == 0:
        return n.args[0], n.args[1]
    return None


def row_write(n):
    """(array, index) for a write of one row of an array at a scalar index (`H[t] = v`: an
    `update` on axis 0), else None."""
    if n.op == "update" and n.attr("axis") == 0 and n.attr("index") == () \
            and len(n.args) == 3 and n.args[2].ndim == 0:
        return n.args[0], n.args[2]
    return None


@rewrite("gather")
def read_after_write(a, *idx, axis):
    """Reading the entries at scalar indices just written is the value written
    (`H[t] = v; H[t]` is v: a loop's cotangent of `H[t] = f(H[t])`)."""
    if all(i.ndim == 0 for i in idx) and _same_place(a, idx, (), axis):
        return a.args[1]
    return None


@rewrite("index")
def read_after_write_static(a, index):
    """Reading the entries a static subscript just wrote is the value written."""
    if _same_place(a, (), index, None):
        return a.args[1]
    return None


@rewrite("update")
def write_after_write(a, v, *idx, index, axis):
    """Writing the entries just written replaces that write (`H[t] = 0; H[t] = v` is
    `H[t] = v`)."""
    if _same_place(a, idx, index, axis):
        return make("update", a.args[0], v, *idx, index=index, axis=axis)
    return None


def assign(a, v, idx, index, axis, accumulate: bool, inputs):
    """The value of `A` after `A[...] = v` (`accumulate`: `A[...] += v`): v converted to
    floats and broadcast to the selection."""
    sel = selection(a, idx, index, axis)
    v = to_float(v, inputs)
    if v.is_const:
        v = make("full", a, value=v.value, shape=tuple(sel.shape))
    elif tuple(v.shape) != tuple(sel.shape):
        v = make("broadcast_to", v, shape=tuple(sel.shape))
    if accumulate:
        # (index arrays may repeat an entry: each adds; single integers, such as a loop's
        # index, select each entry once and are updated in place below)
        if axis is not None and any(i.shape for i in idx):
            return a + make("scatter_add", v, *idx, shape=tuple(a.shape), axis=axis)
        if not index and axis is None:
            return a + v
        v = sel + v   # each entry selected once: written in place
    return make("update", a, v, *idx, index=index, axis=axis)


def assign_steps(a, v, steps, accumulate: bool, inputs):
    """`assign` through selections applied one after the other (`steps` of
    `(idx, index, axis)`): `A[0, idx] = v` is `B = A[0]; B[idx] = v; A[0] = B`."""
    if len(steps) == 1:
        return assign(a, v, *steps[0], accumulate, inputs)
    idx, index, axis = steps[0]
    inner = assign_steps(selection(a, idx, index, axis), v, steps[1:], accumulate, inputs)
    return make("update", a, inner, *idx, index=index, axis=axis)


def add_rows(acc, c):
    """`acc + c`, where a term of `c` that scatters rows into zeros at scalar indices (the
    VJP of reading `X[t]` in a loop body) is added to those rows of `acc` instead
    (`dX[t] = dX[t] + g`, written in place where `acc` dies): not an array of X's size per
    step. (A loop's backward body accumulating the cotangent of an outside value, or
    computing that of a carried one: `acc` None, the other terms of `c` are the sum.)"""
    terms, rest, pending = [], [], [c]
    while pending:
        x = pending.pop()
        if x.op == "add" and tuple(x.shape) == tuple(c.shape):
            pending += x.args
        elif x.op == "scatter_add" and all(i.ndim == 0 for i in x.args[1:]) \
                and tuple(x.shape) == tuple(c.shape):
            terms.append(x)
        else:
            rest.append(x)
    if acc is None:
        if not terms or not rest:
            return c
        acc, rest = rest[0], rest[1:]
    for r in rest:
        acc = acc + r
    for s in terms:
        g, idx, axis = s.args[0], s.args[1:], s.attr("axis")
        rows = make("gather", acc, *idx, axis=axis)
        acc = make("update", acc, rows + g, *idx, index=(), axis=axis)
    return acc


def added_row(acc, out, index):
    """`g` when `out` is `add_rows`' `acc[i] = acc[i] + g` at the 0-d index `i` (`index`),
    else None."""
    if out.op != "update" or len(out.args) != 3 or out.args[0] is not acc \
            or out.args[2] is not index or out.kw != {"index": (), "axis": 0}:
        return None
    total, row = out.args[1], make("gather", acc, index, axis=0)
    if total.op != "add":
        return None
    a, b = total.args
    return b if a is row else a if b is row else None


# ---------------------------------------------------------------- gathers first

_GATHERED_THROUGH = frozenset({"add", "sub", "mul", "div"})


@rewrite("gather", "lower", inspects=_GATHERED_THROUGH)
def gather_before_elementwise(x, *idx, axis):
    """Entries gathered from an elementwise sum, difference, product or quotient of a full
    array and one broadcast along an indexed axis are that op of the entries gathered
    from each (`(z - log(s))[steps, rows, y]`, s of shape (T, N, 1), is `z[steps, rows, y]
    - log(s)[:, :, 0][steps, rows]`): no temporary of z's size, when the gather is the
    op's only reader."""
    if x.op not in _GATHERED_THROUGH or x.dtype == INT or not idx:
        return None
    readers = memo().get(READERS)
    if not readers or readers.get(id(x)) != ["gather"]:
        return None
    shape, k = tuple(x.shape), len(idx)
    full = [a for a in x.args if tuple(a.shape) == shape]
    if len(full) != 1:
        return None
    b = x.args[1] if x.args[0] is full[0] else x.args[0]
    if b.ndim != 0 and b.ndim != len(shape):
        return None
    unit = [q for q in range(axis, axis + k) if b.ndim and b.shape[q] == ONE
            and not dims_equal(shape[q], ONE)]
    if b.ndim and not unit:   # (b as big along the indexed axes: nothing saved)
        return None
    want = _gather_shape((x, *idx), axis)
    if b.ndim:
        rest = [i for q, i in enumerate(idx) if axis + q not in unit]
        b = make("squeeze", b, axes=tuple(unit)) if unit else b
        if not rest and len(want) > b.ndim:   # (the same entries for every index taken)
            b = make("expand_dims", b, axes=tuple(range(axis, axis + len(want) - b.ndim)))
        elif rest and not _identity_grid(b, rest, axis):   # (b[arange(N)] is b)
            b = make("gather", b, *rest, axis=axis)
        if b.ndim != len(want) or not all(d == ONE or dims_equal(d, e)
                                          for d, e in zip(b.shape, want)):
            return None
    a = make("gather", full[0], *idx, axis=axis)
    args = (a, b) if x.args[0] is full[0] else (b, a)
    return make(x.op, *args)


def _identity_grid(b, idx, axis) -> bool:
    """Whether gathering `idx` from `b` on axes `axis`, ... selects every entry in place:
    index q is arange over all of axis `axis + q`, laid out along position q of the
    broadcast index shape (`b[:, arange(N)]`, `b[arange(T)[:, None], arange(N)]`)."""
    m = len(idx)
    for q, i in enumerate(idx):
        while i.op == "expand_dims":
            i = i.args[0]
        if i.op != "arange" or i.attr("start") != 0 \
                or not dims_equal(as_expr(i.attr("stop")), b.shape[axis + q]):
            return False
    for q, i in enumerate(idx):   # (right-aligned: only position q is not 1)
        shape = (ONE,) * (m - i.ndim) + tuple(i.shape)
        if len(shape) != m or any(p != q and d != ONE for p, d in enumerate(shape)):
            return False
    return True


# ---------------------------------------------------------------- fusing scatter-adds

def _scattered(a):
    """Whether `a` is a `scatter` (zeros with a slice written) or static-index updates of
    one: a buffer of zeros with parts written, which one more slice may be added into."""
    while a.op == "update" and a.attr("axis") is None and a.attr("index"):
        a = a.args[0]
    return a.op == "scatter"


@rewrite("add", "fuse", inspects=("scatter",))
def scatters_one_buffer(a, b):
    """Scatters of slices into zeros of one shape, summed, are one buffer: the second
    slice added into the first's (`dx = np.zeros_like(x); dx[:-1] = u; dx[1:] += v`, the
    gradient of several slices of x), not a zero-filled array per slice and their sum."""
    for s, t in ((a, b), (b, a)):
        if t.op == "scatter" and s.dtype == t.dtype and tuple(s.shape) == tuple(t.shape) \
                and _scattered(s):
            index = t.attr("index")
            part = make("index", s, index=index)
            if tuple(part.shape) != tuple(t.args[0].shape):
                return None
            return make("update", s, part + t.args[0], index=index, axis=None)
    return None


def _rows(g, i, rest):
    """A scatter-add's cotangent and indices as (n, *rest) rows and n indices."""
    n = size(i.shape) if i.ndim else ONE
    return make("reshape", g, shape=(n,) + tuple(rest)), make("reshape", i, shape=(n,))


@rewrite("add", "fuse", inspects=("scatter_add",))
def scatter_add_sum(a, b):
    """Two scatter-adds of rows into one shape are one over both sets of indices (the
    gradient of a table read at several places, `U[ctx]` and `U[noise]`): one array of
    the table's shape is made instead of three."""
    if a.op != "scatter_add" or b.op != "scatter_add" or len(a.args) != 2 \
            or len(b.args) != 2 or a.attrs != b.attrs or a.attr("axis") != 0:
        return None
    rest = a.attr("shape")[1:]
    ga, ia = _rows(*a.args, rest)
    gb, ib = _rows(*b.args, rest)
    return make("scatter_add", make("concatenate", ga, gb, axis=0),
                make("concatenate", ia, ib, axis=0), shape=a.attr("shape"), axis=0)
