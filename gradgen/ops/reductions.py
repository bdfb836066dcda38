"""Reductions over axes: sum, mean, max, min (and logsumexp, lowered in nn.py)."""

from __future__ import annotations

from ..errors import ShapeError
from ..ir import const, make
from ..shapes import normalize_axes, reduce_shape, size
from ._emit import axis_kwargs, call
from .registry import REAL, defbuiltin, defop

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


def _canon_reduce(x, axes, keepdims):
    if not axes and not keepdims:
        return x
    return None


defop("sum", 1, shape=_red_shape, emit=call("sum", kwargs=axis_kwargs), canon=_canon_reduce,
      traits=RED | {"linear"}, domain=(REAL,),
      vjp=lambda g, n: (keep(g, n),),
      jvp=lambda ts, n: make("sum", ts[0], **n.kw),
      vmap=lambda ts, n: make("sum", ts[0], **shifted(n)))

defop("mean", 1, shape=_red_shape, emit=call("mean", kwargs=axis_kwargs), canon=_canon_reduce,
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


defop("max", 1, shape=_red_shape, emit=call("max", kwargs=axis_kwargs), canon=_canon_reduce,
      traits=RED, domain=(REAL,), **_chooser("gt"))
defop("min", 1, shape=_red_shape, emit=call("min", kwargs=axis_kwargs), canon=_canon_reduce,
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
