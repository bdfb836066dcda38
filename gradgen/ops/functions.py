"""More elementwise functions: expm1, the circular functions, arctan, erf, and clip.

Each derivative is built from the saved output where that is cheaper (`tan`'s is
`1 + tan(x) ** 2`, `expm1`'s is `expm1(x) + 1`), so the emitted backward pass calls no
extra transcendental function, and from ops that have rules of their own, so that
second derivatives come from the same table.
"""

from __future__ import annotations

import math

from ..ir import const, make
from ._emit import call
from .elementwise import _from_local, _unary
from .registry import UNIT, defbuiltin

# ---------------------------------------------------------------- exponential and circular

_unary("expm1", **_from_local(lambda n: n + 1), fold=math.expm1)
_unary("sin", **_from_local(lambda n: make("cos", n.args[0])), fold=math.sin)
_unary("cos", **_from_local(lambda n: -make("sin", n.args[0])), fold=math.cos)
# tan is smooth on (-pi/2, pi/2); its tests stay inside (-0.9, 0.9).
_unary("tan", **_from_local(lambda n: 1 + n ** 2), fold=math.tan, domain=UNIT)
_unary("arctan", **_from_local(lambda n: 1 / (1 + n.args[0] ** 2)), fold=math.atan)

# ---------------------------------------------------------------- the error function

# NumPy has no erf. The emitted module carries this one: W. J. Cody, "Rational Chebyshev
# approximations for the error function", Math. Comp. 23 (1969) 631-637, with the
# coefficients of his CALERF (netlib specfun). It is evaluated in float64 (within 5e-16
# relative, 4 ulp, of math.erf over the whole line: tests/test_ops_extra.py), vectorized
# with one index set per range, and returned in the dtype of the argument (float32 stays
# float32).
_ERF = '''\
def _erf(x):
    """The error function, elementwise (W. J. Cody's rational Chebyshev approximations,
    Math. Comp. 23 (1969), accurate to float64 precision); keeps the dtype of `x`."""

    def poly(c, z):  # Horner's rule, in place
        r = c[0] * z
        for k in c[1:-1]:
            r += k
            r *= z
        r += c[-1]
        return r

    x = np.asarray(x)
    y = np.abs(x.ravel(), dtype=np.float64)
    r = np.sign(y)  # erf(y) rounds to 1 for y >= 6; nan stays nan
    i = np.flatnonzero(y <= 0.46875)  # erf(y) = y P(y^2) / Q(y^2)
    z = y[i]
    w = z * z
    # fmt: off
    r[i] = z * poly((1.85777706184603153e-1, 3.16112374387056560e0, 1.13864154151050156e2,
                     3.77485237685302021e2, 3.20937758913846947e3), w) / poly(
        (1.0, 2.36012909523441209e1, 2.44024637934444173e2, 1.28261652607737228e3,
         2.84423683343917062e3), w)
    # fmt: on
    i = np.flatnonzero((y > 0.46875) & (y <= 4.0))  # erfc(y) = exp(-y^2) P(y) / Q(y)
    z = y[i]
    # fmt: off
    r[i] = 1.0 - np.exp(-z * z) * poly(
        (2.15311535474403846e-8, 5.64188496988670089e-1, 8.88314979438837594e0,
         6.61191906371416295e1, 2.98635138197400131e2, 8.81952221241769090e2,
         1.71204761263407058e3, 2.05107837782607147e3, 1.23033935479799725e3), z) / poly(
        (1.0, 1.57449261107098347e1, 1.17693950891312499e2, 5.37181101862009858e2,
         1.62138957456669019e3, 3.29079923573345963e3, 4.36261909014324716e3,
         3.43936767414372164e3, 1.23033935480374942e3), z)
    # fmt: on
    # erfc(y) = exp(-y^2) / y (1/sqrt(pi) - R)
    i = np.flatnonzero((y > 4.0) & (y < 6.0))
    z = y[i]
    w = 1.0 / (z * z)
    # fmt: off
    r[i] = 1.0 - np.exp(-z * z) / z * (5.6418958354775628695e-1 - w * poly(
        (1.63153871373020978e-2, 3.05326634961232344e-1, 3.60344899949804439e-1,
         1.25781726111229246e-1, 1.60837851487422766e-2, 6.58749161529837803e-4), w) / poly(
        (1.0, 2.56852019228982242e0, 1.87295284992346047e0, 5.27905102951428412e-1,
         6.05183413124413191e-2, 2.33520497626869185e-3), w))
    # fmt: on
    r = np.copysign(r, x.ravel()).reshape(x.shape)
    r = r.astype(x.dtype if x.dtype.kind == "f" else np.float64, copy=False)
    return r if r.ndim else r[()]
'''

# d/dx erf(x) = 2 / sqrt(pi) * exp(-x ** 2)
_TWO_OVER_SQRT_PI = 2 / math.sqrt(math.pi)
_unary("erf", emit=call("_erf"), prelude=_ERF, fold=math.erf,
       **_from_local(lambda n: const(_TWO_OVER_SQRT_PI) * make("exp", -n.args[0] ** 2)))

# ---------------------------------------------------------------- built-in functions

for _name in ("expm1", "sin", "cos", "tan", "arctan", "erf"):
    defbuiltin(_name, ("x",), lambda x, _op=_name: make(_op, x), elementwise=True)


def clip(x, lo, hi):
    """x limited to [lo, hi], as NumPy's clip: minimum(maximum(x, lo), hi), as JAX writes it.

    The derivative is that of maximum and minimum: 1 for x strictly inside (lo, hi), 0
    outside; at a bound (x == lo or x == hi) the cotangent is split equally between x and
    that bound. lo and hi may be arrays (they get the rest of the cotangent) or numbers.
    """
    return make("minimum", make("maximum", x, lo), hi)


defbuiltin("clip", ("x", "lo", "hi"), clip, elementwise=True)
