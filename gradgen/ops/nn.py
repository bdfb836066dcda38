"""Neural-network functions, lowered to primitives in their numerically stable forms.

The shift by the maximum is wrapped in `stop_gradient`: it cancels mathematically, so
the derivative never touches it, and the shifted `exp` is shared by the value and the
gradient (softmax is `e / sum(e)` of the same `e`).
"""

from __future__ import annotations

from ..dims import normalize_axes
from ..ir import make
from .linalg import parse_einsum
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


# ---------------------------------------------------------------- the softmax weights

def _summed(s):
    """(x, axes) if `s` is x summed over `axes` (`sum`, a one-operand einsum keeping the
    order of the other axes, either with the summed axes kept as size 1), else None."""
    kept = None
    if s.op == "expand_dims":
        kept, s = s.attr("axes"), s.args[0]
    if s.op == "sum":
        x, axes = s.args[0], s.attr("axes")
        if s.attr("keepdims") and kept is not None:
            return None
    elif s.op == "einsum" and len(s.args) == 1:
        (labels,), out = parse_einsum(s.attr("spec"), 1)
        if out != "".join(c for c in labels if c in out):
            return None
        x, axes = s.args[0], tuple(i for i, c in enumerate(labels) if c not in out)
    else:
        return None
    return (x, axes) if kept is None or kept == axes else None


def lse_form(node):
    """(x, axes, keepdims) if `node` is the log-sum-exp of x over `axes` in the form
    `logsumexp` builds: `log(sum(exp(x - m))) + m`, m `stop_gradient(max(x))`; else None."""
    if node.op != "add":
        return None
    for lg, m in (node.args, node.args[::-1]):
        if lg.op != "log" or m.op not in ("stop_gradient", "squeeze"):
            continue
        found = _summed(lg.args[0])
        sg = m.args[0] if m.op == "squeeze" else m
        if found is None or sg.op != "stop_gradient":
            continue
        e, axes = found
        if e.op != "exp" or e.args[0].op != "sub" or e.args[0].args[1] is not sg:
            continue
        x, mx = e.args[0].args[0], sg.args[0]
        if mx.op == "max" and mx.args[0] is x and mx.attr("axes") == axes \
                and mx.attr("keepdims") and node.ndim in (x.ndim, x.ndim - len(axes)):
            return x, axes, node.ndim == x.ndim
    return None


def lse_shifted(x, m):
    """x - m for the weights `exp(x - m)` of `lse_weighted`, as `(a - m) + b` where x is
    `a + b`: the full-size difference made from the two broadcast operands, then b added in
    place (hmm's step, (N, K, K) from (N, K, 1), (N, 1, K) and (1, K, K): ~13% faster
    than subtracting m from `a + b` in place). The same value up to rounding."""
    if x.op == "add" and len(x.args) == 2:
        a, b = x.args
        return (a - m) + b
    return x - m


def lse_weighted(node, x, axes, keepdims):
    """The log-sum-exp `node` of x (`lse_form`) as a value equal to it whose derivative
    reads the softmax weights `exp(x - node)` (finite: x - node <= 0) instead of the
    exponentials and their sum: `stop_gradient(node) + (s - stop_gradient(s))`, s the sum
    of the weights; and the stopped node in the weights with what it stops (a derivative
    of the weights must see the node's own: put it back in the VJP's graph). For a loop's
    VJP (gradgen/autodiff/loops.py): the weights are recomputed from x and the node,
    where saving them costs x's size per step."""
    kept = node if keepdims else make("expand_dims", node, axes=axes)
    stopped = make("stop_gradient", kept)
    s = make("sum", make("exp", lse_shifted(x, stopped)), axes=axes, keepdims=keepdims)
    return make("stop_gradient", node) + (s - make("stop_gradient", s)), stopped, kept
