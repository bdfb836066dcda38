"""Special functions: log_sigmoid, logaddexp, xlogy, gammaln, digamma and polygamma; and the
stabilizing rewrites of the unstable forms users write literally (`log(1 + exp(z))`,
`log1p(exp(z))`, `log(sum(exp(z)))`).

NumPy has no gammaln, digamma or polygamma: the emitted module carries its own, vectorized
and evaluated in float64 (float32 stays float32 on return), from series whose coefficients
are exact formulas (zeta(k) / k, Bernoulli numbers; computed with mpmath to 60 digits and
rounded once), documented in each helper. Accuracy is tested against `math.lgamma` and an
mpmath reference in tests/test_special.py.

Derivatives come from the same table, so every order exists: d gammaln = digamma,
d digamma = polygamma(1, .), d polygamma(n, .) = polygamma(n + 1, .).
"""

from __future__ import annotations

import math

import mpmath
import numpy as np

from ..errors import ShapeError
from ..ir import const, make
from ._emit import call
from .elementwise import EW, _bshape, _from_local, _is, _total, _unary
from .nn import logsumexp
from .registry import POSITIVE, PREC_CALL, PREC_LOWEST, REAL, defbuiltin, defop, rewrite

# ---------------------------------------------------------------- log_sigmoid

def log_sigmoid(x):
    """log(sigmoid(x)) in its stable form `-softplus(-x)` (NumPy: `-np.logaddexp(0, -x)`),
    finite for every finite x; its derivative is sigmoid(-x)."""
    return -make("softplus", -x)


# ---------------------------------------------------------------- logaddexp


@rewrite("logaddexp", name="logaddexp_fold")
def _logaddexp_fold(a, b):
    """logaddexp of two numeric scalar constants, folded (in float64, as NumPy)."""
    if a.is_const and b.is_const and a.value.is_number and b.value.is_number:
        return const(float(np.logaddexp(float(a.value), float(b.value))))
    return None


# logaddexp(a, b) = log(exp(a) + exp(b)) (NumPy's ufunc: stable). Its derivatives come from
# the saved output n: d/da = exp(a - n), d/db = exp(b - n) (a - n <= 0: no overflow; an
# argument of -inf gets 0; both -inf gives nan, as in NumPy's value -inf - -inf).
defop("logaddexp", 2, shape=_bshape, emit=call("logaddexp"), ufunc="logaddexp",
      traits=EW | {"commutative"}, domain=(REAL, REAL),
      vjp=lambda g, n: (g * make("exp", n.args[0] - n), g * make("exp", n.args[1] - n)),
      jvp=lambda ts, n: _total(ts[0] and ts[0] * make("exp", n.args[0] - n),
                               ts[1] and ts[1] * make("exp", n.args[1] - n)))

# ---------------------------------------------------------------- xlogy

_XLOGY = '''\
@np.errstate(divide="ignore", invalid="ignore")
def _xlogy(x, y):
    """x * log(y), elementwise, with 0 where x == 0 and y is not nan (so 0 * log(0) = 0),
    as scipy.special.xlogy. The log is taken in the result's dtype: np.log of a Python
    number is a float64 scalar, which would promote float32 x."""
    r = np.multiply(x, np.log(np.asarray(y, dtype=np.result_type(x, y, 0.0))))
    r = np.where((x == 0) & ~np.isnan(y), 0, r)
    return r if r.ndim else r[()]
'''


@rewrite("xlogy", name="xlogy_fold")
def _xlogy_fold(x, y):
    """xlogy of two numeric scalar constants, folded."""
    if x.is_const and y.is_const and x.value.is_number and y.value.is_number:
        a, b = float(x.value), float(y.value)
        if a == 0 and not math.isnan(b):
            return const(0)
        return const(float(a * np.log(b)))
    return None


# xlogy(x, y) = x * log(y) with 0 * log(0) = 0. Derivatives as JAX's xlogy: d/dx = log(y),
# d/dy = x / y (so at x = 0 the gradient in x is log(y), -inf at y = 0; in y it is 0 for
# y != 0 and nan at x = y = 0).
defop("xlogy", 2, shape=_bshape, emit=call("_xlogy"), prelude=_XLOGY, traits=EW,
      domain=(REAL, POSITIVE),
      vjp=lambda g, n: (g * make("log", n.args[1]), g * n.args[0] / n.args[1]),
      jvp=lambda ts, n: _total(ts[0] and ts[0] * make("log", n.args[1]),
                               ts[1] and ts[1] * n.args[0] / n.args[1]))

# ---------------------------------------------------------------- gammaln

# The coefficients (mpmath, 60 digits, rounded once to float64):
#   about 1: lgamma(1 + t) = -euler t + sum_{k>=2} (-1)^k zeta(k) / k t^k, |t| <= 1/2;
#   about 2: lgamma(2 + t) = (1 - euler) t + sum_{k>=2} (-1)^k (zeta(k) - 1) / k t^k;
# each truncated where the next term is below 1e-18 at |t| = 1/2.
_GAMMALN = '''\
@np.errstate(all="ignore")
def _gammaln(x):
    """log|Gamma(x)|, elementwise, as math.lgamma (inf at 0 and the negative integers); keeps
    the dtype of `x`. Evaluated in float64, within a few ulp for x > 0: Taylor series of
    lgamma about 1 (for 0 < x < 1.5, with lgamma(x) = lgamma(1 + x) - log(x) below 1/2)
    and about 2 (after lgamma(x) = lgamma(x - 1) + log(x - 1) below 10), Stirling's series
    beyond 10; the reflection formula for x < 0."""

    def poly(c, z):  # sum(c[k] * z ** (k + 1)), Horner's rule
        r = c[-1] * z
        for k in c[-2::-1]:
            r += k
            r *= z
        return r

    # fmt: off
    about_1 = (
        -0.5772156649015329, 0.8224670334241132, -0.40068563438653143, 0.27058080842778454,
        -0.20738555102867398, 0.1695571769974082, -0.1440498967688461, 0.12550966952474304,
        -0.11133426586956469, 0.1000994575127818, -0.09095401714582904, 0.083353840546109,
        -0.0769325164113522, 0.07143294629536133, -0.06666870588242046, 0.06250095514121304,
        -0.058823978658684585, 0.055555767627403614, -0.05263167937961666,
        0.05000004769810169, -0.047619070330142226, 0.04545455629320467,
        -0.04347826605304026, 0.04166666915034121, -0.04000000119214014,
        0.03846153903467518, -0.037037037312989324, 0.035714285847333355,
        -0.034482758684919304, 0.03333333336437758, -0.03225806453115042,
        0.03125000000727597, -0.030303030306558044, 0.029411764707594344,
        -0.02857142857226011, 0.027777777778181998, -0.027027027027223673,
        0.02631578947377995, -0.025641025641072283, 0.025000000000022737,
        -0.024390243902450117, 0.023809523809529224, -0.023255813953491015,
        0.02272727272727402, -0.022222222222222855, 0.021739130434782917,
        -0.021276595744681003, 0.02083333333333341, -0.02040816326530616,
        0.020000000000000018, -0.019607843137254912, 0.019230769230769235,
        -0.01886792452830189, 0.01851851851851852, -0.01818181818181818,
        0.017857142857142856)
    # fmt: on
    # fmt: off
    about_2 = (
        0.42278433509846713, 0.3224670334241132, -0.0673523010531981, 0.020580808427784546,
        -0.007385551028673986, 0.0028905103307415234, -0.001192753911703261,
        0.0005096695247430425, -0.00022315475845357939, 9.945751278180853e-05,
        -4.492623673813314e-05, 2.050721277567069e-05, -9.439488275268397e-06,
        4.374866789907488e-06, -2.039215753801366e-06, 9.55141213040742e-07,
        -4.492469198764566e-07, 2.1207184805554665e-07, -1.0043224823968099e-07,
        4.7698101693639804e-08, -2.2711094608943164e-08, 1.0838659214896955e-08,
        -5.183475041970047e-09, 2.4836745438024785e-09, -1.1921401405860912e-09,
        5.731367241678862e-10, -2.7595228851242334e-10)
    # fmt: on
    # Stirling: B_2k / (2k (2k - 1)), the Bernoulli numbers B_2 ... B_16
    # fmt: off
    stirling = (1 / 12, -1 / 360, 1 / 1260, -1 / 1680, 1 / 1188, -691 / 360360, 1 / 156,
                -3617 / 122400)
    # fmt: on

    def positive(z):  # lgamma(z) for z > 0 (inf stays inf)
        r = np.zeros_like(z)
        i = np.flatnonzero(z < 0.5)
        r[i] = poly(about_1, z[i]) - np.log(z[i])
        i = np.flatnonzero((z >= 0.5) & (z < 1.5))
        r[i] = poly(about_1, z[i] - 1.0)
        i = np.flatnonzero((z >= 1.5) & (z < 10.0))
        w = z[i]
        n = np.floor(w - 1.5)  # w - n in [1.5, 2.5), exactly
        p = np.full_like(w, 1.0)
        for k in (1, 2, 3, 4, 5, 6, 7, 8)[: int(n.max()) if n.size else 0]:
            p *= np.where(n >= k, w - k, 1.0)
        r[i] = poly(about_2, (w - n) - 2.0) + np.log(p)
        i = np.flatnonzero(z >= 10.0)
        w = z[i]
        r[i] = (
            (w - 0.5) * (np.log(w) - 1.0)
            + (0.9189385332046728 - 0.5)
            + (stirling[0] + poly(stirling[1:], 1.0 / (w * w))) / w
        )
        return r

    x = np.asarray(x)
    y = x.astype(np.float64).ravel()
    r = np.full(y.shape, np.inf)  # at 0 and the negative integers (poles)
    r[np.isnan(y)] = np.nan
    i = np.flatnonzero(y > 0)
    r[i] = positive(y[i])
    i = np.flatnonzero((y < 0) & (np.floor(y) != y))
    z = y[i]  # log|Gamma(z)| = log(pi / |sin(pi z)|) - lgamma(1 - z)
    r[i] = np.log(np.pi / np.abs(np.sin(np.pi * (z - np.rint(z))))) - positive(1.0 - z)
    dtype = x.dtype if x.dtype.kind == "f" else np.float64
    r = r.reshape(x.shape).astype(dtype, copy=False)
    return r if r.ndim else r[()]
'''

# ---------------------------------------------------------------- digamma

# The coefficients of digamma about its positive root x0 = 1.4616321449683622...:
# psi(x0 + t) = sum_{k>=1} polygamma(k, x0) / k! t^k (mpmath, 60 digits), |t| <= 0.54,
# truncated where the next term is below 1e-18.
_DIGAMMA = '''\
@np.errstate(all="ignore")
def _digamma(x):
    """The digamma function psi = d/dx lgamma, elementwise; keeps the dtype of `x`.
    Evaluated in float64, within a few ulp for x > 0: its Taylor series about its root
    x0 = 1.46163... on [0, 2) (with psi(x) = psi(x + 1) - 1 / x below 1), the recurrence
    psi(x) = psi(x - 1) + 1 / (x - 1) up to 10 and the asymptotic series from 10 on;
    -inf at 0, nan at the negative integers, the reflection formula elsewhere below 0."""

    def poly(c, z):  # sum(c[k] * z ** (k + 1)), Horner's rule
        r = c[-1] * z
        for k in c[-2::-1]:
            r += k
            r *= z
        return r

    # fmt: off
    about_root = (
        0.9676722454476212, -0.4427631689835921, 0.258499760955651, -0.16394270544240652,
        0.10782405069126237, -0.07219956125645471, 0.04880428816414311, -0.03316112647484736,
        0.022597648232218104, -0.01542476590494896, 0.010538791616612175,
        -0.007204534386356869, 0.004926781395729853, -0.003369801655439328,
        0.002305126326734928, -0.0015769367714301972, 0.0010788252019162967,
        -0.0007380709389960052, 0.000504953265834602, -0.0003454680251063077,
        0.00023635601564027053, -0.00016170622091974803, 0.0001106337276874741,
        -7.569179582195066e-05, 5.178575795222081e-05, -3.5430070947659604e-05,
        2.424006611860132e-05, -1.6584242271854135e-05, 1.134638458466385e-05,
        -7.762817668462094e-06, 5.3110609208898636e-06, -3.6336507898010456e-06,
        2.486022733129538e-06, -1.7008538854332607e-06, 1.1636675363548843e-06,
        -7.96142543124197e-07, 5.446941930669446e-07, -3.7266161283438227e-07,
        2.549626552021554e-07, -1.7443695117727745e-07, 1.1934394829830244e-07)
    # fmt: on
    root, root_low = 1.4616321449683622, 9.549995429965697e-17  # x0 = root + root_low
    # asymptotic: B_2k / (2k), the Bernoulli numbers B_2 ... B_16
    # fmt: off
    asymptotic = (1 / 12, -1 / 120, 1 / 252, -1 / 240, 1 / 132, -691 / 32760, 1 / 12,
                  -3617 / 8160)
    # fmt: on

    def positive(z):  # psi(z) for z > 0 (inf stays inf)
        r = np.zeros_like(z)
        i = np.flatnonzero(z < 1.0)  # t = (z + 1) - x0, without rounding z + 1
        r[i] = poly(about_root, (z[i] - (root - 1.0)) - root_low) - 1.0 / z[i]
        i = np.flatnonzero((z >= 1.0) & (z < 10.0))
        w = z[i]
        n = np.floor(w - 1.0)  # w - n in [1, 2), exactly
        s = np.zeros_like(w)
        for k in (8, 7, 6, 5, 4, 3, 2, 1)[8 - (int(n.max()) if n.size else 0) :]:
            s += np.where(n >= k, 1.0 / (w - k), 0.0)
        r[i] = poly(about_root, ((w - n) - root) - root_low) + s
        i = np.flatnonzero(z >= 10.0)
        w = z[i]
        v = 1.0 / (w * w)
        r[i] = np.log(w) - 0.5 / w - v * (asymptotic[0] + poly(asymptotic[1:], v))
        return r

    x = np.asarray(x)
    y = x.astype(np.float64).ravel()
    r = np.full(y.shape, np.nan)  # nan stays nan; nan at the negative integers
    r[y == 0] = -np.inf
    i = np.flatnonzero(y > 0)
    r[i] = positive(y[i])
    i = np.flatnonzero((y < 0) & (np.floor(y) != y))
    z = y[i]  # psi(z) = psi(1 - z) - pi / tan(pi z)
    r[i] = positive(1.0 - z) - np.pi / np.tan(np.pi * (z - np.rint(z)))
    dtype = x.dtype if x.dtype.kind == "f" else np.float64
    r = r.reshape(x.shape).astype(dtype, copy=False)
    return r if r.ndim else r[()]
'''

# ---------------------------------------------------------------- polygamma

_POLYGAMMA = '''\
@np.errstate(all="ignore")
def _polygamma(n, x):
    """The n-th derivative of the digamma function (n >= 1), elementwise, for x > 0 (nan
    for x < 0, inf or -inf at 0); keeps the dtype of `x`. Evaluated in float64, within a
    few ulp: psi_n(x) = psi_n(x + m) + (-1)^(n+1) n! sum_{j<m} (x + j)^-(n+1) up to
    x + m >= 10 + 2 n, then the asymptotic series (Bernoulli numbers B_2 ... B_20)."""
    x = np.asarray(x)
    y = x.astype(np.float64).ravel()
    r = np.full(y.shape, np.nan)
    factorial = 1.0  # n! (n <= 8)
    for k in (2, 3, 4, 5, 6, 7, 8)[: n - 1]:
        factorial *= k
    # the asymptotic series' terms B_2k (2k + n - 1)! / (2k)!
    # fmt: off
    bernoulli = (1 / 6, -1 / 30, 1 / 42, -1 / 30, 5 / 66, -691 / 2730, 7 / 6, -3617 / 510,
                 43867 / 798, -174611 / 330)
    # fmt: on
    terms = []
    for k, b in enumerate(bernoulli, 1):
        for j in (1, 2, 3, 4, 5, 6, 7)[: n - 1]:
            b *= 2 * k + j
        terms += [b]
    i = np.flatnonzero(y >= 0)
    z = y[i]
    far = 10.0 + 2 * n
    m = np.ceil(np.maximum(far - z, 0.0))
    m[z == np.inf] = 0.0
    s = np.zeros_like(z)
    for j in np.flatnonzero(np.full(int(m.max()) if m.size else 0, 1.0))[::-1]:  # j < m
        k = np.flatnonzero(m > j)  # the smaller terms first
        s[k] += (z[k] + j) ** (-n - 1.0)
    w = z + m
    v = 1.0 / (w * w)
    tail = terms[-1] * v
    for t in terms[-2::-1]:
        tail += t
        tail *= v
    tail += factorial / n + factorial / 2 / w
    r[i] = (factorial * s + tail * w**-n) * (1.0 if n % 2 else -1.0)
    dtype = x.dtype if x.dtype.kind == "f" else np.float64
    r = r.reshape(x.shape).astype(dtype, copy=False)
    return r if r.ndim else r[()]
'''


def _special_fold(fn):
    """Folding of a special function of a numeric constant with mpmath (the emitted helper
    of a number would return a NumPy float64, which makes float32 arrays float64)."""
    def fold(v: float) -> float:
        out = fn(v)
        if not isinstance(out, mpmath.mpf):
            raise ValueError("not real")
        return float(out)
    return fold


def _lgamma(v: float) -> float:
    if v <= 0 and v == math.floor(v):
        return math.inf
    return math.lgamma(v)


_unary("gammaln", emit=call("_gammaln"), prelude=_GAMMALN, fold=_lgamma, domain=POSITIVE,
       **_from_local(lambda n: make("digamma", n.args[0])))
_unary("digamma", emit=call("_digamma"), prelude=_DIGAMMA, domain=POSITIVE,
       fold=_special_fold(mpmath.digamma),
       **_from_local(lambda n: make("polygamma", n.args[0], n=1)))


@rewrite("polygamma", name="polygamma_fold")
def _polygamma_fold(x, n):
    """polygamma of a positive numeric constant, folded (mpmath)."""
    if x.is_const and x.value.is_number and float(x.value) > 0:
        return const(float(mpmath.polygamma(n, float(x.value))))
    return None


def _emit_polygamma(p, node):
    return p.helper("_polygamma", [str(node.attr("n")), p.arg(node, 0, PREC_LOWEST)]), PREC_CALL


def _polygamma_local(n):
    return make("polygamma", n.args[0], n=n.attr("n") + 1)


# polygamma(x, n): the n-th derivative of digamma (n >= 1): the derivatives of digamma,
# and the built-in `polygamma(n, x)` (n a literal from 1 to MAX_POLYGAMMA).
defop("polygamma", 1, shape=_bshape, emit=_emit_polygamma, prelude=_POLYGAMMA, traits=EW,
      domain=(POSITIVE,), **_from_local(_polygamma_local))

# ---------------------------------------------------------------- stable rewrites


@rewrite("log", "stabilize", name="log_one_plus_exp")
def _log_one_plus_exp(x):
    """`log(1 + exp(z))` and `log(exp(z) + 1)` are `softplus(z)`, finite for large z."""
    if x.op == "add":
        a, b = x.args
        if _is(a, 1) and b.op == "exp":
            return make("softplus", b.args[0])
        if _is(b, 1) and a.op == "exp":
            return make("softplus", a.args[0])
    return None


@rewrite("log1p", "stabilize", name="log1p_exp")
def _log1p_exp(x):
    """`log1p(exp(z))` is `softplus(z)`, finite for large z."""
    return make("softplus", x.args[0]) if x.op == "exp" else None


def _shifted(z) -> bool:
    """z is `x - stop_gradient(max(x))`: the form logsumexp itself builds."""
    return z.op == "sub" and z.args[1].op == "stop_gradient"


@rewrite("log", "stabilize", name="log_sum_exp")
def _log_sum_exp(x):
    """`log(sum(exp(z)))` (any axis, keepdims) is `logsumexp(z)`, finite for large z."""
    if x.op == "sum" and x.args[0].op == "exp" and not _shifted(x.args[0].args[0]):
        return logsumexp(x.args[0].args[0], x.attr("axes"), x.attr("keepdims"))
    return None


# ---------------------------------------------------------------- built-in functions

MAX_POLYGAMMA = 8   # orders whose accuracy tests/test_special.py measures


def polygamma(n, x):
    """The n-th derivative of digamma, for an integer literal n from 0 to MAX_POLYGAMMA
    (`polygamma(1, x)` is the trigamma function; `polygamma(0, x)` is `digamma(x)`)."""
    value = n.value if n.is_const else None
    if value is None or not value.is_Integer or not 0 <= int(value) <= MAX_POLYGAMMA:
        raise ShapeError(f"the order n of polygamma(n, x) must be an integer literal from 0 "
                         f"to {MAX_POLYGAMMA}, such as polygamma(1, x) for the trigamma "
                         f"function")
    return make("digamma", x) if int(value) == 0 else make("polygamma", x, n=int(value))


defbuiltin("polygamma", ("n", "x"), polygamma, elementwise=True)

defbuiltin("log_sigmoid", ("x",), log_sigmoid, elementwise=True)
for _name in ("gammaln", "digamma"):
    defbuiltin(_name, ("x",), lambda x, _op=_name: make(_op, x), elementwise=True)
for _name in ("logaddexp", "xlogy"):
    defbuiltin(_name, ("x", "y"), lambda x, y, _op=_name: make(_op, x, y), elementwise=True)
