"""The special functions of the array-API target (erf, gammaln, digamma, polygamma): the
NumPy target's series and coefficients (gradgen/ops/functions.py, special.py), each
branch evaluated on the whole array at inputs clamped into its range and the results
picked with `where` (the standard has no boolean-mask assignment, and JAX and Dask none
in place): the same numbers, in float64, with no floating-point error state.

The coefficient tables are read from the NumPy helpers' sources, so the two targets can
not drift apart."""

from __future__ import annotations

import re

from ..ops.functions import _ERF
from ..ops.special import _DIGAMMA, _GAMMALN, _POLYGAMMA


def _table(source: str, name: str) -> str:
    """The source text of the tuple `name = (...)` of a NumPy helper's source."""
    m = re.search(rf"\n(\s*){name} = \((.*?)\)\n", source, re.S)
    if m is None:
        raise ValueError(f"no table {name!r}")
    return m.group(0).strip()


def _erf_tables() -> list[str]:
    """The six coefficient tuples of _erf, in their order: P and Q of each of its three
    ranges."""
    number = r"\s*-?\d[\d.]*(?:e-?\d+)?"
    found = re.findall(rf"\(((?:{number},){{3,}}{number})\)", _ERF)
    if len(found) != 6:
        raise ValueError(f"_erf has {len(found)} coefficient tables, expected 6")
    return [_wrapped(re.sub(r"\s+", " ", t).strip()) for t in found]


def _wrapped(items: str) -> str:
    """A tuple's items on lines of at most 80 characters, indented by 8."""
    lines, line = [], ""
    for item in items.split(", "):
        if line and len(line) + len(item) + 2 > 80:
            lines.append(line + ",")
            line = ""
        line = f"{line}, {item}" if line else item
    return "\n        " + "\n        ".join(lines + [line]) + ",\n    "


def _erf() -> str:
    p1, q1, p2, q2, p3, q3 = _erf_tables()
    return f'''\
def _erf(xp, x):
    """The error function, elementwise; keeps the dtype of `x`. W. J. Cody's rational
    approximations in float64 (as the NumPy target's _erf), each range on the whole
    array and picked with where."""

    def poly(c, z):  # Horner's rule
        r = c[0] * z
        for k in c[1:-1]:
            r = (r + k) * z
        return r + c[-1]

    # fmt: off
    p1, q1 = ({p1}), ({q1})
    p2, q2 = ({p2}), ({q2})
    p3, q3 = ({p3}), ({q3})
    # fmt: on
    s = xp.astype(x, xp.float64)
    y = xp.abs(s)
    z = xp.where(y <= 0.46875, y, 0.0)  # erf(y) = y P(y^2) / Q(y^2)
    w = z * z
    small = z * poly(p1, w) / poly(q1, w)
    z = xp.clip(y, 0.46875, 4.0)  # erfc(y) = exp(-y^2) P(y) / Q(y)
    middle = 1.0 - xp.exp(-z * z) * poly(p2, z) / poly(q2, z)
    z = xp.clip(y, 4.0, 6.0)  # erfc(y) = exp(-y^2) / y (1/sqrt(pi) - R)
    w = 1.0 / (z * z)
    large = 1.0 - xp.exp(-z * z) / z * (5.6418958354775628695e-1 - w * poly(p3, w) / poly(q3, w))
    r = xp.where(y < 6.0, large, xp.sign(y))  # erf(y) rounds to 1 for y >= 6; nan stays nan
    r = xp.where(y <= 4.0, middle, r)
    r = xp.where(y <= 0.46875, small, r)
    return xp.astype(xp.copysign(r, s), x.dtype)'''


def _gammaln() -> str:
    tables = "\n    ".join(["# fmt: off"] + [_table(_GAMMALN, n) for n in (
        "about_1", "about_2", "stirling")] + ["# fmt: on"])
    return f'''\
def _gammaln(xp, x):
    """log|Gamma(x)|, elementwise, as math.lgamma (inf at 0 and the negative integers);
    keeps the dtype of `x`. The NumPy target's series in float64 (Taylor about 1 and 2,
    Stirling beyond 10, the reflection formula below 0), each range on the whole array
    and picked with where."""

    def poly(c, z):  # sum(c[k] * z ** (k + 1)), Horner's rule
        r = c[-1] * z
        for k in c[-2::-1]:
            r = (r + k) * z
        return r

    {tables}

    def positive(z):  # lgamma(z) for z > 0 (inf stays inf)
        w = xp.where(z < 0.5, z, 0.25)
        below = poly(about_1, w) - xp.log(w)
        near_1 = poly(about_1, xp.clip(z, 0.5, 1.5) - 1.0)
        w = xp.clip(z, 1.5, 10.0)
        n = xp.floor(w - 1.5)  # w - n in [1.5, 2.5), exactly
        p = xp.ones_like(w)
        for k in (1, 2, 3, 4, 5, 6, 7, 8):
            p = p * xp.where(n >= k, w - k, 1.0)
        near_2 = poly(about_2, (w - n) - 2.0) + xp.log(p)
        w = xp.clip(z, 10.0, None)
        beyond = (
            (w - 0.5) * (xp.log(w) - 1.0)
            + (0.9189385332046728 - 0.5)
            + (stirling[0] + poly(stirling[1:], 1.0 / (w * w))) / w
        )
        r = xp.where(z < 10.0, near_2, beyond)
        r = xp.where(z < 1.5, near_1, r)
        return xp.where(z < 0.5, below, r)

    y = xp.astype(x, xp.float64)
    reflected = (y < 0) & (xp.floor(y) != y)
    r = positive(xp.where(y > 0, y, 1.0))
    z = xp.where(reflected, y, -0.5)  # log|Gamma(z)| = log(pi / |sin(pi z)|) - lgamma(1 - z)
    r_neg = xp.log(xp.pi / xp.abs(xp.sin(xp.pi * (z - xp.round(z))))) - positive(1.0 - z)
    r = xp.where(y > 0, r, xp.where(reflected, r_neg, xp.inf))  # poles: inf
    r = xp.where(xp.isnan(y), y, r)
    return xp.astype(r, x.dtype)'''


def _digamma() -> str:
    tables = "\n    ".join(["# fmt: off"] + [_table(_DIGAMMA, n) for n in (
        "about_root", "asymptotic")] + ["# fmt: on"])
    root = re.search(r"\n\s*(root, root_low = [^#\n]*)", _DIGAMMA).group(1).strip()
    return f'''\
def _digamma(xp, x):
    """The digamma function psi = d/dx lgamma, elementwise; keeps the dtype of `x`. The
    NumPy target's series in float64 (Taylor about the root, the recurrence up to 10,
    the asymptotic series beyond, the reflection formula below 0), each range on the
    whole array and picked with where; -inf at 0, nan at the negative integers."""

    def poly(c, z):  # sum(c[k] * z ** (k + 1)), Horner's rule
        r = c[-1] * z
        for k in c[-2::-1]:
            r = (r + k) * z
        return r

    {tables}
    {root}

    def positive(z):  # psi(z) for z > 0 (inf stays inf)
        w = xp.where(z < 1.0, z, 0.5)  # t = (z + 1) - x0, without rounding z + 1
        below = poly(about_root, (w - (root - 1.0)) - root_low) - 1.0 / w
        w = xp.clip(z, 1.0, 10.0)
        n = xp.floor(w - 1.0)  # w - n in [1, 2), exactly
        s = xp.zeros_like(w)
        for k in (8, 7, 6, 5, 4, 3, 2, 1):
            s = s + xp.where(n >= k, 1.0 / xp.where(n >= k, w - k, 1.0), 0.0)
        middle = poly(about_root, ((w - n) - root) - root_low) + s
        w = xp.clip(z, 10.0, None)
        v = 1.0 / (w * w)
        beyond = xp.log(w) - 0.5 / w - v * (asymptotic[0] + poly(asymptotic[1:], v))
        return xp.where(z < 1.0, below, xp.where(z < 10.0, middle, beyond))

    y = xp.astype(x, xp.float64)
    reflected = (y < 0) & (xp.floor(y) != y)
    r = positive(xp.where(y > 0, y, 1.0))
    z = xp.where(reflected, y, -0.5)  # psi(z) = psi(1 - z) - pi / tan(pi z)
    r_neg = positive(1.0 - z) - xp.pi / xp.tan(xp.pi * (z - xp.round(z)))
    edge = xp.where(y == 0, -xp.inf, xp.full_like(y, xp.nan))  # nan stays nan
    r = xp.where(y > 0, r, xp.where(reflected, r_neg, edge))
    return xp.astype(r, x.dtype)'''


def _polygamma() -> str:
    table = _table(_POLYGAMMA, "bernoulli")
    return f'''\
def _polygamma(xp, n, x):
    """The n-th derivative of the digamma function (n >= 1), elementwise, for x > 0 (nan
    for x < 0, inf or -inf at 0); keeps the dtype of `x`. The NumPy target's recurrence
    up to x + m >= 10 + 2 n and asymptotic series, in float64, on the whole array."""
    y = xp.astype(x, xp.float64)
    factorial = 1.0  # n! (n <= 8)
    for k in (2, 3, 4, 5, 6, 7, 8)[: n - 1]:
        factorial *= k
    # the asymptotic series' terms B_2k (2k + n - 1)! / (2k)!
    # fmt: off
    {table}
    # fmt: on
    terms = ()
    for k, b in enumerate(bernoulli, 1):
        for j in (1, 2, 3, 4, 5, 6, 7)[: n - 1]:
            b *= 2 * k + j
        terms += (b,)
    z = xp.where(y >= 0, y, 1.0)
    far = 10.0 + 2 * n
    m = xp.ceil(xp.clip(far - z, 0.0, None))
    m = xp.where(z == xp.inf, 0.0, m)
    s = xp.zeros_like(z)
    down = (25, 24, 23, 22, 21, 20, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5)
    for j in (down + (4, 3, 2, 1, 0))[26 - int(far) :]:  # j < m, the smaller terms first
        s = s + xp.where(m > j, (z + j) ** (-n - 1.0), 0.0)
    w = z + m
    v = 1.0 / (w * w)
    tail = terms[-1] * v
    for t in terms[-2::-1]:
        tail = (tail + t) * v
    tail = tail + (factorial / n + factorial / 2 / w)
    r = (factorial * s + tail * w**-n) * (1.0 if n % 2 else -1.0)
    return xp.astype(xp.where(y >= 0, r, xp.nan), x.dtype)'''


HELPERS = {"_erf": _erf(), "_gammaln": _gammaln(), "_digamma": _digamma(),
           "_polygamma": _polygamma()}
