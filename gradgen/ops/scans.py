"""Scans along one axis: cumsum, cumprod, logcumsumexp, each with `reverse=`.

The scan axis is kept as a negative attribute `axis` (counted from the last axis), so a
batch of tangents with extra leading axes scans along the same attribute: the batching
rule of every scan is its JVP rule. `reverse=True` scans from the end of the axis (the
emitted code flips the axis on the way in and on the way out, both views).

Rules (as JAX's cumulative reductions, written for the NumPy we emit):
  cumsum: linear; its transpose is the cumsum in the other direction.
  cumprod: dy = y * cumsum(dx / x), x_bar = cumsum_rev(g * y) / x. Exact for nonzero x; at
    an x that is 0 they are nan (as prod's: documented, domain NONZERO).
  logcumsumexp: y_j = log sum_{i <= j} exp(x_i), emitted as np.logaddexp.accumulate (exact
    to rounding at any magnitude, -inf entries allowed). Its derivatives are sums
    `sum_{i <= j} v_i exp(a_i + b_j)` with every exponent a_i + b_j <= 0 (dy = expscan(dx,
    x, -y); x_bar = expscan_rev(g, -y, x)); the op `expscan` computes them in log space
    split by the sign of v, as TensorFlow and PyTorch compute logcumsumexp's gradient, so
    nothing overflows and -inf entries of x get a zero derivative, never nan.
"""

from __future__ import annotations

from ..dims import broadcast, normalize_axes, size
from ..errors import ShapeError
from ..ir import make
from .registry import NONZERO, PREC_CALL, REAL, defbuiltin, defop, rewrite

SCAN_ATTRS = ("axis", "reverse")


def _scan_shape(args, axis, reverse):
    x = args[0]
    if not -x.ndim <= axis < 0:
        raise ShapeError(f"axis {axis} is out of range for an array of {x.ndim} dimensions")
    return x.shape


def _flip(code: str, axis: int) -> str:
    """`code` reversed along the non-negative `axis` (a view): `x[:, ::-1]`."""
    return f"{code}[{', '.join([':'] * axis + ['::-1'])}]"


def _emit_scan(fn: str, default_axis: int | None):
    """`np.<fn>(x, axis=a)`, inside flips for reverse=True; `axis=` is left out where it is
    `default_axis` (NumPy's cumsum flattens without it, so it is only left out of 1-D
    arrays; logaddexp.accumulate scans axis 0 by default)."""
    def emit(p, node):
        axis = node.attr("axis") % node.ndim
        rev = node.attr("reverse")
        x = p.arg(node, 0, PREC_CALL if rev else 0)
        if rev:
            x = _flip(x, axis)
        implicit = axis == default_axis or (default_axis is None and node.ndim == 1)
        text = p.call(fn, [x], [] if implicit else [f"axis={axis}"])
        return (_flip(text, axis) if rev else text), PREC_CALL
    return emit


def _emit_scan_xp(fn: str):
    """The array API target's scan: `xp.cumulative_sum(x, axis=a)` inside `xp.flip`s for
    reverse=True (torch takes no negative slice steps); the module's helper `_fn(xp, x,
    axis=a)` where the standard has no such function (logcumsumexp)."""
    def emit(p, node):
        axis, rev = node.attr("axis") % node.ndim, node.attr("reverse")
        x = p.arg(node, 0, 0)
        if fn.startswith("_"):
            return p.helper(fn, [x], [f"axis={axis}"] + (["reverse=True"] if rev else [])), \
                PREC_CALL
        flip = [f"axis={axis}"]
        text = p.call(fn, [p.call("flip", [x], flip) if rev else x], flip)
        return (p.call("flip", [text], flip) if rev else text), PREC_CALL
    return emit


def _other_way(n) -> dict:
    return {"axis": n.attr("axis"), "reverse": not n.attr("reverse")}


# ---------------------------------------------------------------- cumsum

def _cumsum_jvp(ts, n):
    return make("cumsum", ts[0], **n.kw)


# cumsum(x, axis, reverse): running sums along `axis` (from the end with reverse=True).
defop("cumsum", 1, shape=_scan_shape, emit={"numpy": _emit_scan("cumsum", None),
                                             "array_api": _emit_scan_xp("cumsum")},
      traits=frozenset({"linear"}), domain=(REAL,), hint="cumsum",
      vjp=lambda g, n: (make("cumsum", g, **_other_way(n)),),
      jvp=_cumsum_jvp, vmap=_cumsum_jvp)


# ---------------------------------------------------------------- cumprod

def _cumprod_jvp(ts, n):
    return n * make("cumsum", ts[0] / n.args[0], **n.kw)


# cumprod(x, axis, reverse): running products; derivatives need x nonzero (nan at a 0).
defop("cumprod", 1, shape=_scan_shape, emit={"numpy": _emit_scan("cumprod", None),
                                              "array_api": _emit_scan_xp("cumprod")},
      domain=(NONZERO,), hint="cumprod",
      vjp=lambda g, n: (make("cumsum", g * n, **_other_way(n)) / n.args[0],),
      jvp=_cumprod_jvp, vmap=_cumprod_jvp)


# ---------------------------------------------------------------- logcumsumexp

def _lcse_jvp(ts, n):
    return make("expscan", ts[0], n.args[0], -n, **n.kw)


# logcumsumexp(x, axis, reverse): log(cumsum(exp(x))), computed without overflow.
defop("logcumsumexp", 1, shape=_scan_shape, emit={
    "numpy": _emit_scan("logaddexp.accumulate", 0),
    "array_api": _emit_scan_xp("_logcumsumexp")},
      domain=(REAL,), hint="lcse",
      vjp=lambda g, n: (make("expscan", g, -n, n.args[0], **_other_way(n)),),
      jvp=_lcse_jvp, vmap=_lcse_jvp)


_EXPSCAN = '''\
@np.errstate(divide="ignore")
def _expscan(v, a, b, axis, reverse=None):
    """sum over i up to j (from j to the end with reverse=True) along `axis` of
    v[i] * exp(a[i] + b[j]), in log space by the sign of v: no overflow where every
    a[i] + b[j] <= 0 (the derivatives of logcumsumexp), and 0 where a or b is -inf."""

    def lcse(s):
        if reverse:
            return np.flip(np.logaddexp.accumulate(np.flip(s, axis), axis=axis), axis)
        return np.logaddexp.accumulate(s, axis=axis)

    vs, bs = np.broadcast_arrays(v, a, b)[::2]
    log_v = np.log(np.abs(vs)) + a  # log(0) = -inf: those terms add nothing
    negative = vs < 0
    if not negative.any():
        return np.exp(lcse(log_v) + bs)
    out = np.exp(lcse(np.where(negative, -np.inf, log_v)) + bs)
    out -= np.exp(lcse(np.where(negative, log_v, -np.inf)) + bs)
    return out
'''


def _expscan_shape(args, axis, reverse):
    shape = broadcast(*(a.shape for a in args))
    if not -len(shape) <= axis < 0:
        raise ShapeError(f"axis {axis} is out of range for an array of {len(shape)} "
                         "dimensions")
    return shape


def _emit_expscan(p, node):
    kwargs = [f"axis={node.attr('axis') % node.ndim}"] + (
        ["reverse=True"] if node.attr("reverse") else [])
    return p.helper("_expscan", p.args(node), kwargs), PREC_CALL


def _expscan_jvp(ts, n):
    """Linear in v; d/da multiplies v; d/db multiplies the result:
    expscan(dv + v da, a, b) + expscan(v, a, b) db."""
    v, a, b = n.args
    tv, ta, tb = ts
    inner = tv if ta is None else (v * ta if tv is None else tv + v * ta)
    terms = []
    if inner is not None:
        terms.append(make("expscan", inner, a, b, **n.kw))
    if tb is not None:
        terms.append(n * tb)
    if not terms:
        return None
    return terms[0] if len(terms) == 1 else terms[0] + terms[1]


def _expscan_vjp(g, n):
    """v_bar_i = sum over the j whose scan holds i of g_j exp(a_i + b_j) (the scan the other
    way with the roles of a and b swapped); a_bar = v * v_bar; b_bar = g * out."""
    v, a, b = n.args
    v_bar = make("expscan", g, b, a, **_other_way(n))
    return v_bar, v * v_bar, g * n


# expscan(v, a, b, axis, reverse): sum_{i in scan(j)} v_i exp(a_i + b_j), stably; only the
# derivatives of logcumsumexp build it (a module helper, `_expscan`).
defop("expscan", 3, shape=_expscan_shape, emit=_emit_expscan, prelude=_EXPSCAN,
      domain=(REAL, REAL, REAL), vjp=_expscan_vjp, jvp=_expscan_jvp, vmap=_expscan_jvp)


# ---------------------------------------------------------------- built-ins

def scanner(op: str):
    """The built-in `op(x, axis=None, reverse=False)`: axis None scans the flattened array,
    as NumPy's cumsum does."""
    def build(x, axis=None, reverse=False):
        if x.ndim == 0:
            raise ShapeError(f"{op} needs an array of at least one dimension, not a scalar")
        if axis is None:
            if x.ndim > 1:
                x = make("reshape", x, shape=(size(x.shape),))
            axis = 0
        elif not isinstance(axis, int):
            raise ShapeError("axis must be an integer (or None for the flattened array)")
        (axis,) = normalize_axes(axis, x.ndim)
        return make(op, x, axis=axis - x.ndim, reverse=reverse)
    return build


for _op in ("cumsum", "cumprod", "logcumsumexp"):
    defbuiltin(_op, ("x", "axis", "reverse"), scanner(_op), static=("axis", "reverse"),
               defaults={"axis": None, "reverse": False})


@rewrite("log", "stabilize")
def log_cumsum_exp(x):
    """`log(cumsum(exp(z)))` is `logcumsumexp(z)`, finite where exp overflows."""
    if x.op == "cumsum" and x.args[0].op == "exp":
        return make("logcumsumexp", x.args[0].args[0], **x.kw)
    return None
