"""Neural-network functions, lowered to primitives in their numerically stable forms.

The shift by the maximum is wrapped in `stop_gradient`: it cancels mathematically, so
the derivative never touches it, and the shifted `exp` is shared by the value and the
gradient (softmax is `e / sum(e)` of the same `e`).
"""

from __future__ import annotations

from ..dims import normalize_axes
from ..ir import make
from .reductions import reducer
from .registry import defbuiltin


def _shifted_exp(x, axes):
    """(shift, exp(x - shift), sum of it over `axes` with keepdims)."""
    m = make("stop_gradient", make("max", x, axes=axes, keepdims=True))
    e = make("exp", x - m)
    return m, e, make("sum", e, axes=axes, keepdims=True)


def logsumexp(x, axis=None, keepdims=False):
    """log(sum(exp(x))) over `axis`, shifted by the maximum."""
    reducer("sum")(x, axis, keepdims)   # validates the arguments
    axes = normalize_axes(axis, x.ndim)
    m, _, s = _shifted_exp(x, axes)
    if not keepdims:
        m, s = make("squeeze", m, axes=axes), make("squeeze", s, axes=axes)
    return make("log", s) + m


def softmax(x, axis=-1):
    """exp(x) / sum(exp(x)) along `axis`, shifted by the maximum."""
    axes = normalize_axes(axis, x.ndim)
    _, e, s = _shifted_exp(x, axes)
    return e / s


def log_softmax(x, axis=-1):
    """x - logsumexp(x) along `axis`."""
    axes = normalize_axes(axis, x.ndim)
    m, _, s = _shifted_exp(x, axes)
    return x - m - make("log", s)


defbuiltin("logsumexp", ("x", "axis", "keepdims"), logsumexp, static=("axis", "keepdims"),
           defaults={"axis": None, "keepdims": False})
defbuiltin("softmax", ("x", "axis"), softmax, static=("axis",), defaults={"axis": -1})
defbuiltin("log_softmax", ("x", "axis"), log_softmax, static=("axis",), defaults={"axis": -1})
