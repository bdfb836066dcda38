"""Print sympy scalar expressions (dimensions, folded constants) as Python source."""

from __future__ import annotations

import sympy

# Python precedence levels shared with the array printer.
PREC_ADD, PREC_MUL, PREC_NEG, PREC_POW, PREC_ATOM = 10, 20, 30, 40, 60


def print_expr(expr: sympy.Expr, ns: str = "np") -> str:
    """Python source of a scalar sympy expression, e.g. `2 * D`, `1 / N`, `0.5`."""
    return _print(sympy.sympify(expr), ns)[0]


def print_scalar(expr: sympy.Expr, ns: str = "np") -> tuple[str, int]:
    """Like `print_expr`, with the precedence of the printed expression (`ns`: the name
    of NumPy in the emitted module, for `np.pi`)."""
    return _print(sympy.sympify(expr), ns)


def _paren(code_prec: tuple[str, int], need: int) -> str:
    code, prec = code_prec
    return f"({code})" if prec < need else code


def _print(e: sympy.Expr, ns: str) -> tuple[str, int]:
    # Dimension expressions are small (a handful of terms), so recursion depth is tiny.
    if e.is_Integer:
        v = int(e)
        return str(v), (PREC_NEG if v < 0 else PREC_ATOM)
    if e.is_Rational:
        p, q = int(e.p), int(e.q)
        code = f"{abs(p)} / {q}"
        return (f"-{code}", PREC_NEG) if p < 0 else (code, PREC_MUL)
    if e.is_Float:
        v = float(e)
        return repr(v), (PREC_NEG if v < 0 else PREC_ATOM)
    if e.is_Symbol:
        return e.name, PREC_ATOM
    if e is sympy.pi:
        return f"{ns}.pi", PREC_ATOM
    if e is sympy.E:
        return f"{ns}.e", PREC_ATOM
    if e.is_Add:
        terms = sorted(e.args, key=lambda t: (bool(t.as_coeff_Mul()[0].is_negative), t.is_Number,
                                              sympy.default_sort_key(t)))
        out = _print(terms[0], ns)[0]
        for t in terms[1:]:
            coeff = t.as_coeff_Mul()[0]
            if coeff.is_negative:
                out += " - " + _paren(_print(-t, ns), PREC_ADD + 1)
            else:
                out += " + " + _paren(_print(t, ns), PREC_ADD + 1)
        return out, PREC_ADD
    if e.is_Mul:
        num, den = sympy.fraction(e)
        if den != 1:
            n = _paren(_print(num, ns), PREC_MUL)
            return f"{n} / {_paren(_print(den, ns), PREC_MUL + 1)}", PREC_MUL
        if e.as_coeff_Mul()[0].is_negative:
            return "-" + _paren(_print(-e, ns), PREC_NEG + 1), PREC_NEG
        factors = sorted(e.args, key=lambda t: (not t.is_Number, sympy.default_sort_key(t)))
        return " * ".join(_paren(_print(f, ns), PREC_MUL) for f in factors), PREC_MUL
    if e.is_Pow:
        base, exp = e.args
        if exp == -1:
            return f"1 / {_paren(_print(base, ns), PREC_MUL + 1)}", PREC_MUL
        if exp.is_Rational and not exp.is_Integer:   # D ** 0.5: a Python float
            return f"{_paren(_print(base, ns), PREC_POW + 1)} ** {float(exp)!r}", PREC_POW
        return f"{_paren(_print(base, ns), PREC_POW + 1)} ** {_paren(_print(exp, ns), PREC_NEG)}", PREC_POW
    if isinstance(e, (sympy.floor, sympy.ceiling)):   # integer division, never floats
        num, den = sympy.fraction(sympy.together(e.args[0]))
        n, d = _paren(_print(num, ns), PREC_MUL), _paren(_print(den, ns), PREC_MUL + 1)
        if isinstance(e, sympy.floor):
            return f"{n} // {d}", PREC_MUL
        return f"-(-{n} // {d})", PREC_NEG
    if e.is_number:   # exp(2), sqrt(2), log(3) inside an expression of dimensions
        v = float(e)
        return repr(v), (PREC_NEG if v < 0 else PREC_ATOM)
    raise ValueError(f"cannot print dimension expression {e}")
