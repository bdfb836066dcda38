"""Reductions over axes: sum, mean, max, min, prod, norm, var (and logsumexp, lowered in
nn.py)."""

from __future__ import annotations

from .. import ir
from ..dims import normalize_axes, reduce_shape, size
from ..errors import ShapeError
from ..ir import const, make, make_as_is
from ._emit import axis_kwargs, call, reduction
from .registry import NONZERO, PREC_CALL, PREC_MUL, REAL, defbuiltin, defop, read_by, rewrite

RED = frozenset({"reduction"})


def _red_shape(args, axes, keepdims):
    return reduce_shape(args[0].shape, axes, keepdims)


def keep(g, node):
    """A reduction's output (or cotangent) `g` with the reduced axes kept as size 1."""
    axes, keepdims = node.attr("axes"), node.attr("keepdims")
    if keepdims or g.ndim == 0:
        return g
    return make("expand_dims", g, axes=axes)


def count(node):
    """Number of elements each output element of a reduction combines."""
    x = node.args[0]
    return const(size(tuple(x.shape[a] for a in node.attr("axes"))))


def _over_no_axes(op):
    """The rule: a reduction over no axes (without keepdims) is its argument."""
    def over_no_axes(x, axes, keepdims):
        """A reduction over no axes is its argument."""
        return x if not axes and not keepdims else None
    rewrite(op, name=f"{op}_over_no_axes")(over_no_axes)


def _linear_reduction(op):
    """The canonical forms of a linear reduction (sum, mean), as rules of `op`: a sign or
    a scalar factor moves outside, where it multiplies the smaller result (`-sum(x)`,
    `c * sum(x)`); nested ones are one (`sum(sum(x, axis=0))` is `sum(x)`); and over every
    axis of a broadcast array it reduces what was broadcast (`sum(broadcast_to(c, (N,)))`
    is `N * c`; the mean of it is `c`)."""
    def neg_outwards(x, axes, keepdims):
        """The sign of a negated argument moves outside: `sum(-x)` is `-sum(x)`."""
        return -make(op, x.args[0], axes=axes, keepdims=keepdims) if x.op == "neg" else None

    def scalar_outwards(x, axes, keepdims):
        """A scalar factor moves outside: `sum(c * x)` is `c * sum(x)`."""
        if x.op == "mul" and x.args[0].is_const and x.args[1].shape == x.shape:
            return x.args[0] * make(op, x.args[1], axes=axes, keepdims=keepdims)
        return None

    def nested(x, axes, keepdims):
        """Nested reductions are one: `sum(sum(y, axis=0))` is `sum(y)`."""
        if x.op == op and not x.attr("keepdims") and not keepdims:
            inner = x.attr("axes")
            kept = [i for i in range(x.args[0].ndim) if i not in inner]
            both = tuple(sorted(set(inner) | {kept[a] for a in axes}))
            return make(op, x.args[0], axes=both, keepdims=False)
        return None

    def of_broadcast(x, axes, keepdims):
        """Over every axis of a broadcast array it reduces what was broadcast:
        `sum(broadcast_to(c, (N,)))` is `N * c`."""
        if x.op == "broadcast_to" and len(axes) == x.ndim and not keepdims:
            y = x.args[0]
            whole = make(op, y, axes=tuple(range(y.ndim)), keepdims=False)
            return const(size(x.shape) / size(y.shape)) * whole if op == "sum" else whole
        return None

    for rule in (neg_outwards, scalar_outwards, nested, of_broadcast):
        rewrite(op, name=f"{op}_{rule.__name__}")(rule)
    _over_no_axes(op)


_linear_reduction("sum")
_linear_reduction("mean")


defop("sum", 1, shape=_red_shape, emit=reduction("sum"),
      traits=RED | {"linear"}, domain=(REAL,),
      vjp=lambda g, n: (keep(g, n),),
      jvp=lambda ts, n: make("sum", ts[0], **n.kw),
      vmap=lambda ts, n: make("sum", ts[0], **shifted(n)))

def _emit_vdot_xp(p, node):
    """The array API has no vdot: the sum of the product, as written."""
    a, b = p.arg(node, 0, PREC_MUL), p.arg(node, 1, PREC_MUL + 1)
    return p.call("sum", [f"{a} * {b}"]), PREC_CALL


# vdot(a, b): the sum of all elements of a * b (a and b of one shape), NumPy's np.vdot for
# float arrays: one pass through BLAS, no temporary of the product. Made by the lower rule
# `sum_product_vdot` only, after differentiation; its derivatives are those of sum(a * b).
defop("vdot", 2, shape=lambda args: (), emit={"numpy": call("vdot"), "default": _emit_vdot_xp},
      domain=(REAL, REAL),
      vjp=lambda g, n: (g * n.args[1], g * n.args[0]),
      jvp=lambda ts, n: _total(*(make("vdot", t, n.args[1 - i]) for i, t in enumerate(ts)
                                 if t is not None)))


def _total(*terms):
    """The sum of the terms (None for none)."""
    out = None
    for t in terms:
        out = t if out is None else out + t
    return out


@rewrite("sum", tag="lower")
def sum_product_vdot(x, axes, keepdims):
    """The sum of all elements of a product is a dot product: `sum(a * b)` is
    `np.vdot(a, b)` (of vectors the simplify rule linalg.sum_product_dot has made it
    `a @ b` already where it saw it) and `sum(a ** 2)` is `np.vdot(a, a)` (one pass through BLAS, no
    temporary of the product's size); `sum(a * b / s)` with a scalar s is that over s.
    The dot adds in another order than NumPy's pairwise sum (the last bits differ)."""
    # One idea, two stages, so two rules. The vectors' `a @ b` is canonical: made before
    # differentiation, the derivative and the matmul rules see a product (`broadcast_to(c,
    # (N,)) @ u` is `c * sum(u)`, dot_of_broadcast_scalar). `vdot` comes after (it has no
    # batching rule, and would hide sum(a * b) from the canonical rules of sums). Folded
    # into this lower rule for all ranks, the vectors' case changed emitted code for the
    # worse: rosen's gradient `np.multiply(-2.0, ...)` spilled over two lines, negbin's
    # f_hvp `(tr * a_exp).sum()` (a temporary of a_exp's size) for `tr * a_exp.sum()`.
    if len(axes) != x.ndim or keepdims or x.ndim == 0:
        return None
    scale = None
    if x.op == "div" and x.args[1].shape == () and x.args[0].op in ("mul", "pow"):
        x, scale = x.args[0], x.args[1]
    if x.op == "pow" and x.args[1].is_const and x.args[1].value == 2:
        a = b = x.args[0]           # sum(a ** 2) is vdot(a, a)
    elif x.op == "mul":
        a, b = x.args
    else:
        return None
    if a.shape != x.shape or b.shape != x.shape or a.dtype != "float" or b.dtype != "float":
        return None
    dot = make("vdot", a, b)
    return dot if scale is None else make("div", dot, scale)


_LETTERS = "ijklmnopqrstuvw"


@rewrite("sum", tag="lower")
def sum_inner_einsum(x, axes, keepdims):
    """A sum over inner axes that keeps the first one (row sums, `sum(e, axis=1)` of a
    softmax, `sum(s, axis=1)` of a batch of matrices) is `np.einsum("ijk->ik", s)`:
    NumPy's `sum` runs one short inner loop per row (4-5x slower for rows of 10-16
    elements, 1.5x for rows of 100), einsum one loop over the whole array. The sum of a
    product (or a square) is the einsum of its factors, `np.einsum("ijk,ik->ij", U, h)`:
    no temporary of the product's size (also over the first axis: 0.3-0.7x). A sum of one
    array that reduces the first axis stays `sum` (its loop runs along the long rows:
    faster than einsum there). einsum adds plainly, not pairwise (the last bits differ on
    long rows)."""
    if x.ndim < 2 or not axes or len(axes) == x.ndim or x.dtype != "float" \
            or x.ndim > len(_LETTERS):
        return None
    labels = _LETTERS[:x.ndim]
    out = "".join(c for i, c in enumerate(labels) if i not in axes)
    # A product that a matrix product reads too (relu's `db1 = sum(dh * mask, axis=0)`
    # beside `dW1 = x.T @ (dh * mask)`) is computed anyway: sum it, do not multiply again.
    factors = None if read_by(x, ("matmul",), ir.memo()) else _einsum_factors(x, labels)
    if factors is None and 0 in axes:
        return None
    operands = [f for f, _ in factors] if factors else [x]
    spec = ",".join(lab for _, lab in factors) if factors else labels
    # built as is: the canonical rule einsum_one_operand would make it this sum again
    total = make_as_is("einsum", *operands, spec=f"{spec}->{out}")
    return make("expand_dims", total, axes=axes) if keepdims else total


def _einsum_factors(x, labels):
    """[(operand, its einsum labels)] of a product `a * b` (or a square `a ** 2`) of float
    arrays broadcast to x's shape (labels aligned from the right, size-1 broadcast axes
    squeezed out); None when x is no such product."""
    if x.op == "pow" and x.args[1].is_const and x.args[1].value == 2:
        pair = (x.args[0], x.args[0])
    elif x.op == "mul":
        pair = x.args
    else:
        return None
    factors = []
    for a in pair:
        if a.dtype != "float" or a.ndim == 0:
            return None
        own = labels[x.ndim - a.ndim:]
        unit = tuple(i for i, d in enumerate(a.shape)
                     if d == 1 and x.shape[x.ndim - a.ndim + i] != 1)
        if unit:
            a = make("squeeze", a, axes=unit)
            own = "".join(c for i, c in enumerate(own) if i not in unit)
        if not own:
            return None
        factors.append((a, own))
    return factors


def _emit_mean(p, node):
    """A mean over all axes as `x.sum() / N`, which is what NumPy's mean computes, without
    the few microseconds of its Python wrapper; over some axes `x.mean(axis=1)`, which
    divides the sums in place."""
    if node.ndim:
        return _mean_method(p, node)
    n, prec = p.scalar(count(node).value)
    return f"{_sum_method(p, node)[0]} / {n if prec > PREC_MUL else f'({n})'}", PREC_MUL


_mean_method, _sum_method = reduction("mean"), reduction("sum")
defop("mean", 1, shape=_red_shape, emit=_emit_mean,
      traits=RED | {"linear"}, domain=(REAL,),
      vjp=lambda g, n: (keep(g, n) / count(n),),
      jvp=lambda ts, n: make("mean", ts[0], **n.kw),
      vmap=lambda ts, n: make("mean", ts[0], **shifted(n)))


def shifted(n, by: int = 1) -> dict:
    """A reduction's attributes with the axes moved by `by` (for a leading batch axis)."""
    return dict(n.kw, axes=tuple(a + by for a in n.attr("axes")))


def _chooser(cmp):
    """max/min: the gradient goes to the extreme elements, split equally among ties."""
    def weights(n):
        x = n.args[0]
        mask = make("cast", make("eq", x, keep(n, n)), x)
        return mask / make("sum", mask, axes=n.attr("axes"), keepdims=True)

    return dict(vjp=lambda g, n: (keep(g, n) * weights(n),),
                jvp=lambda ts, n: make("sum", ts[0] * weights(n), **n.kw),
                vmap=lambda ts, n: make("sum", ts[0] * weights(n), **shifted(n)))


_over_no_axes("max")
_over_no_axes("min")
defop("max", 1, shape=_red_shape, emit=reduction("max"),
      traits=RED, domain=(REAL,), **_chooser("gt"))
defop("min", 1, shape=_red_shape, emit=reduction("min"),
      traits=RED, domain=(REAL,), **_chooser("lt"))


def reducer(op):
    """The built-in `op(x, axis=None, keepdims=False)`."""
    def build(x, axis=None, keepdims=False):
        if axis is not None and not isinstance(axis, (int, tuple)):
            raise ShapeError("axis must be an integer, a tuple of integers or None")
        if not isinstance(keepdims, bool):
            raise ShapeError("keepdims must be True or False")
        return make(op, x, axes=normalize_axes(axis, x.ndim), keepdims=keepdims)
    return build


for _op in ("sum", "mean", "max", "min"):
    defbuiltin(_op, ("x", "axis", "keepdims"), reducer(_op), static=("axis", "keepdims"),
               defaults={"axis": None, "keepdims": False})


# ---------------------------------------------------------------- prod, norm, var

# prod: d prod / d x_i is the product of the other elements, computed as prod / x_i. That
# is exact for nonzero inputs; where an element is 0 the derivative is nan (documented).
_over_no_axes("prod")
defop("prod", 1, shape=_red_shape, emit=reduction("prod"),
      traits=RED, domain=(NONZERO,),
      vjp=lambda g, n: (keep(g * n, n) / n.args[0],),
      jvp=lambda ts, n: n * make("sum", ts[0] / n.args[0], **n.kw),
      vmap=lambda ts, n: n * make("sum", ts[0] / n.args[0], **shifted(n)))


def _nonzero(n):
    """The norm `n` with its zeros replaced by 1: x / that is x / n, and 0 where n is 0."""
    return make("where", make("eq", n, const(0)), const(1), n)


def _emit_norm(p, node):
    """np.linalg.norm (the 2-norm of the flattened array, or over one or two axes), or the
    square root of the sum of squares over more axes, which np.linalg.norm does not take."""
    axes, x = node.attr("axes"), node.args[0]
    if axes == tuple(range(x.ndim)) and node.attr("keepdims"):   # all of them, flattened
        return call("linalg.norm", kwargs=lambda p, n: ["axis=None", "keepdims=True"])(p, node)
    if axes == tuple(range(x.ndim)) or len(axes) <= 2:
        return call("linalg.norm", kwargs=axis_kwargs)(p, node)
    x2 = f"{p.arg(node, 0, PREC_MUL)} * {p.arg(node, 0, PREC_MUL + 1)}"
    return p.call("sqrt", [p.call("sum", [x2], axis_kwargs(p, node))]), PREC_CALL


@rewrite("norm")
def norm_over_no_axes(x, axes, keepdims):
    """The norm over no axes is the absolute value."""
    return make("abs", x) if not axes else None


# norm: the 2-norm sqrt(sum(x ** 2)) over `axes`; its derivative x / norm is taken as 0
# where the norm is 0 (x is 0 there: 0 is a subgradient; JAX gives nan).
defop("norm", 1, shape=_red_shape, emit=_emit_norm,
      traits=RED, domain=(REAL,),
      vjp=lambda g, n: (n.args[0] * keep(g / _nonzero(n), n),),
      jvp=lambda ts, n: make("sum", n.args[0] * ts[0], **n.kw) / _nonzero(n),
      vmap=lambda ts, n: make("sum", n.args[0] * ts[0], **shifted(n)) / _nonzero(n))


def _centered(n):
    """x minus its mean over the axes of the reduction `n` (kept as size-1 axes)."""
    x = n.args[0]
    return x - make("mean", x, axes=n.attr("axes"), keepdims=True)


@rewrite("var")
def var_over_no_axes(x, axes, keepdims):
    """The variance over no axes is zero."""
    return make("zeros_like", x) if not axes else None


# var: the population variance (ddof=0, as NumPy's default), mean((x - mean(x)) ** 2).
# Its derivative 2 (x - mean(x)) / n uses the real mean, so second derivatives are exact.
defop("var", 1, shape=_red_shape, emit=reduction("var"),
      traits=RED, domain=(REAL,),
      vjp=lambda g, n: (keep(g, n) * _centered(n) * (2 / count(n)),),
      jvp=lambda ts, n: 2 * make("mean", _centered(n) * ts[0], **n.kw),
      vmap=lambda ts, n: 2 * make("mean", _centered(n) * ts[0], **shifted(n)))

for _op in ("prod", "norm", "var"):
    defbuiltin(_op, ("x", "axis", "keepdims"), reducer(_op), static=("axis", "keepdims"),
               defaults={"axis": None, "keepdims": False})
