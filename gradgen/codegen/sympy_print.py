"""Print sympy scalar expressions (dimensions, folded constants) as Python source."""

from __future__ import annotations

import math
from collections.abc import Mapping

import sympy

from ..shapes import as_expr

# Python precedence levels shared with the array printer.
PREC_ADD, PREC_MUL, PREC_NEG, PREC_POW, PREC_ATOM = 10, 20, 30, 40, 60
# Powers of dimensions with exponents up to this are exact Python arithmetic (`D ** 2`;
# a size below 2**40 to the 16th still fits a float64); beyond, float64.
MAX_EXACT_EXPONENT = 16
_NON_FINITE = (sympy.oo, -sympy.oo, sympy.nan)


def print_expr(expr: sympy.Expr, names: Mapping[str, str] | None = None) -> str:
    """Python source of a scalar sympy expression, e.g. `2 * D`, `1 / N`, `0.5`."""
    return _print(as_expr(expr), _Refs(names or {}))[0]


def print_scalar(expr: sympy.Expr, names: Mapping[str, str] | None = None
                 ) -> tuple[str, int]:
    """Like `print_expr`, with the precedence of the printed expression. `names` maps the
    module's canonical names (`np`, `float`) to the ones it uses (`numpy`, `float_`) where
    a user name took them."""
    return _print(as_expr(expr), _Refs(names or {}))


class _Refs:
    """The emitted module's names for NumPy (`np`) and the built-in `float`."""

    def __init__(self, names: Mapping[str, str]):
        self.np = names.get("np", "np")
        self.float = names.get("float", "float")


def _paren(code_prec: tuple[str, int], need: int) -> str:
    code, prec = code_prec
    return f"({code})" if prec < need else code


def _print(e: sympy.Expr, r: _Refs) -> tuple[str, int]:
    # Dimension expressions are small (a handful of terms), so recursion depth is tiny.
    if e.is_Integer:
        v = int(e)
        return str(v), (PREC_NEG if v < 0 else PREC_ATOM)
    if e.is_Rational:
        p, q = int(e.p), int(e.q)
        code = f"{abs(p)} / {q}"
        return (f"-{code}", PREC_NEG) if p < 0 else (code, PREC_MUL)
    if e.is_Float or e in _NON_FINITE:
        return _float(float(e), r)
    if e.is_Symbol:
        return e.name, PREC_ATOM
    if e is sympy.pi:
        return f"{r.np}.pi", PREC_ATOM
    if e is sympy.E:
        return f"{r.np}.e", PREC_ATOM
    if e.is_Add:
        terms = sorted(e.args, key=lambda t: (bool(t.as_coeff_Mul()[0].is_negative), t.is_Number,
                                              sympy.default_sort_key(t)))
        out = _print(terms[0], r)[0]
        for t in terms[1:]:
            coeff = t.as_coeff_Mul()[0]
            if coeff.is_negative:
                out += " - " + _paren(_print(-t, r), PREC_ADD + 1)
            else:
                out += " + " + _paren(_print(t, r), PREC_ADD + 1)
        return out, PREC_ADD
    if e.is_Mul:
        num, den = sympy.fraction(e)
        if den != 1:
            return _divide(num, den, r)
        if e.as_coeff_Mul()[0].is_negative:
            return "-" + _paren(_print(-e, r), PREC_NEG + 1), PREC_NEG
        factors = sorted(e.args, key=lambda t: (not t.is_Number, sympy.default_sort_key(t)))
        return " * ".join(_paren(_print(f, r), PREC_MUL) for f in factors), PREC_MUL
    if e.is_Pow:
        base, exp = e.args
        if exp == -1:
            return _divide(sympy.Integer(1), base, r)
        if not (exp.is_Rational and abs(exp) <= MAX_EXACT_EXPONENT and base.is_integer
                and base.is_positive):
            # A large or non-constant exponent, or a base that is not a size (Python's
            # float ** raises on overflow): in float64 (inf if it overflows), not as an exact
            # Python integer of millions of digits.
            power = f"{r.np}.float64({_print(base, r)[0]}) ** {_paren(_print(exp, r), PREC_NEG)}"
            return f"{r.float}({power})", PREC_ATOM
        if exp.is_Rational and not exp.is_Integer:   # D ** 0.5: a Python float
            return f"{_paren(_print(base, r), PREC_POW + 1)} ** {float(exp)!r}", PREC_POW
        return f"{_paren(_print(base, r), PREC_POW + 1)} ** {_paren(_print(exp, r), PREC_NEG)}", PREC_POW
    if isinstance(e, sympy.exp):   # e ** N, as sympy writes it
        return f"{r.float}({r.np}.exp({r.np}.float64({_print(e.args[0], r)[0]})))", PREC_ATOM
    if isinstance(e, (sympy.floor, sympy.ceiling)):   # integer division, never floats
        num, den = sympy.fraction(sympy.together(e.args[0]))
        n, d = _paren(_print(num, r), PREC_MUL), _paren(_print(den, r), PREC_MUL + 1)
        if isinstance(e, sympy.floor):
            return f"{n} // {d}", PREC_MUL
        return f"-(-{n} // {d})", PREC_NEG
    if e.is_number:   # exp(2), sqrt(2), log(3) inside an expression of dimensions
        return _float(float(e), r)
    raise ValueError(f"cannot print dimension expression {e}")


def _divide(num: sympy.Expr, den: sympy.Expr, r: _Refs) -> tuple[str, int]:
    """`num / den`; in float64 unless `den` is known to be positive (a size), since Python
    raises ZeroDivisionError where NumPy gives inf or nan (`1 / (N - M)` with N == M)."""
    if den.is_positive:
        return f"{_paren(_print(num, r), PREC_MUL)} / {_paren(_print(den, r), PREC_MUL + 1)}", PREC_MUL
    return f"{r.float}({r.np}.divide({_print(num, r)[0]}, {_print(den, r)[0]}))", PREC_ATOM


def _float(v: float, r: _Refs) -> tuple[str, int]:
    """A float as a Python expression: always valid code (`np.inf`, `-np.inf`, `np.nan`
    rather than the bare names that `repr` gives)."""
    if math.isnan(v):
        return f"{r.np}.nan", PREC_ATOM
    if math.isinf(v):
        return (f"{r.np}.inf", PREC_ATOM) if v > 0 else (f"-{r.np}.inf", PREC_NEG)
    return repr(v), (PREC_NEG if v < 0 else PREC_ATOM)
