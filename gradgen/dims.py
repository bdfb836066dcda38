"""Symbolic sizes: dimensions are sympy expressions of positive-integer symbols, and their
printing as Python source (the ground floor: no gradgen imports but `errors`).

Dimensions with different names are different (SPEC §1): `N` never broadcasts against
`M`, and a symbolic dimension is never treated as 1.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import sympy

from .errors import InternalError, ShapeError

Dim = sympy.Expr
Shape = tuple  # tuple[Dim, ...]

ONE = sympy.Integer(1)
# What a dimension expression looks like as text (`fmt_dim`): names, numbers, operators.
DIM_TEXT = re.compile(r"[\w ()+\-*/%]+")


def dim_symbol(name: str) -> sympy.Symbol:
    """The symbol for a named dimension (a positive integer)."""
    return sympy.Symbol(name, integer=True, positive=True)


def as_expr(value: int | float | sympy.Basic) -> sympy.Expr:
    """A Python number or a sympy object as a sympy expression; anything else is refused.

    This replaces `sympy.sympify`, which parses (and so evaluates) strings: no text from a
    source may ever reach it, so only values that already are numbers get converted.
    """
    if isinstance(value, sympy.Basic):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return sympy.Integer(value)
    if isinstance(value, float):
        return sympy.Float(value)
    raise InternalError(f"expected a number or a sympy expression, got {type(value).__name__}")


@functools.lru_cache(maxsize=4096, typed=True)
def fmt_dim(d: Dim) -> str:
    """A dimension as a person writes it, for messages, docstrings and comments (`N`, `3`,
    `2 * D`, `C // H`, `ceil(N / 2)`, never `-(-N // 2)`)."""
    return _print(as_expr(d), _HUMAN)[0]


def fmt_shape(shape: Sequence[Dim]) -> str:
    """A shape as Python source: `()`, `(3,)`, `(N, D)`."""
    inner = ", ".join(fmt_dim(d) for d in shape)
    return f"({inner},)" if len(shape) == 1 else f"({inner})"


def dims_equal(a: Dim, b: Dim) -> bool:
    """True when two dimensions are the same for every assignment of sizes."""
    return a is b or a == b or sympy.expand(a - b) == 0


def broadcast(*shapes: Shape) -> Shape:
    """NumPy broadcasting of symbolic shapes; raises ShapeError naming both shapes."""
    # Fast path: every shape is () or the same dimensions (the same objects) as the
    # others; the answer is then those dimensions, as the general loop below would give.
    first = None
    for s in shapes:
        if not s:
            continue
        if first is None:
            first = s
        elif s is not first and (len(s) != len(first)
                                 or any(x is not y for x, y in zip(s, first))):
            break
    else:
        return tuple(first) if first is not None else ()
    out: list[Dim] = []
    ndim = max((len(s) for s in shapes), default=0)
    for axis in range(-ndim, 0):
        cur: Dim | None = None
        for s in shapes:
            if -axis > len(s):
                continue
            d = s[axis]
            if cur is None or cur == ONE:
                cur = d
            elif d == ONE or dims_equal(d, cur):
                continue
            else:
                raise ShapeError("shapes " + " and ".join(fmt_shape(x) for x in shapes)
                                 + " cannot be broadcast together" + _rounding_hint(shapes))
        out.append(cur if cur is not None else ONE)
    return tuple(out)


def _rounding_hint(shapes) -> str:
    """How to fix lengths that differ only for some sizes because a strided slice rounds
    (`x[::2]` of N has ceil(N / 2) elements)."""
    if any(d.has(sympy.ceiling, sympy.floor) for s in shapes for d in s):
        return ("; a strided slice has ceil(N / k) elements for a length N: declare the "
                "length as a multiple of the step (2 * M, whose x[::2] and x[1::2] both "
                "have M elements)")
    return ""


def broadcastable_to(src: Shape, dst: Shape) -> bool:
    """True when `src` broadcasts to exactly `dst`."""
    if len(src) > len(dst):
        return False
    return all(s == ONE or dims_equal(s, d) for s, d in zip(reversed(src), reversed(dst)))


def same_shape(a: Shape, b: Shape) -> bool:
    """Equal rank and equal dimensions."""
    return a is b or len(a) == len(b) and all(x is y or dims_equal(x, y) for x, y in zip(a, b))


def size(shape: Shape) -> Dim:
    """Number of elements, as a dimension expression."""
    return sympy.Mul(*shape) if shape else ONE


# The size a named dimension counts as where the compiler compares costs of shapes whose
# sizes are not known (the declared shapes are compared, not the data's).
NOMINAL_SIZE = 100


def nominal_size(shape: Shape, hints: Mapping[str, int] | None = None) -> int:
    """The number of elements of `shape` with each named dimension counted as its size in
    `hints` (`--hint N=5000`), else NOMINAL_SIZE: an estimate for choosing between forms."""
    return _nominal_size(tuple(shape), tuple(sorted(hints.items())) if hints else ())


@functools.lru_cache(maxsize=1024)
def _nominal_size(shape: Shape, hints: tuple) -> int:
    # memoised: a rule asks on every matrix product it sees (sympy's subs is ~50 us).
    # Each dimension evaluated, then the numbers multiplied: the size of the shape
    # evaluated, without building the symbolic product (`size`: a sympy Mul of symbols,
    # whose first Add imports sympy.tensor, ~65 ms of a compilation that needs no other).
    sizes = dict(hints)
    n = ONE
    for d in shape:
        if getattr(d, "free_symbols", None):
            d = d.subs({s: sizes.get(str(s), NOMINAL_SIZE) for s in d.free_symbols})
        n = n * d
    return int(n)


def normalize_axes(axis: int | Iterable[int] | None, ndim: int) -> tuple[int, ...]:
    """Axis argument (None, int or tuple, negatives allowed) to sorted non-negative axes."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    out = []
    for a in axes:
        if not -ndim <= a < ndim:
            raise ShapeError(f"axis {a} is out of range for an array of {ndim} dimension"
                             f"{'' if ndim == 1 else 's'}")
        a = a % ndim if ndim else a
        if a in out:
            raise ShapeError(f"axis {a} is repeated")
        out.append(a)
    return tuple(sorted(out))


def reduce_shape(shape: Shape, axes: tuple[int, ...], keepdims: bool) -> Shape:
    """Shape after reducing over `axes`."""
    if keepdims:
        return tuple(ONE if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def matmul_shape(a: Shape, b: Shape) -> Shape:
    """Shape of `a @ b` with NumPy's rules for 1-D, 2-D and batched operands."""
    if not a or not b:
        raise ShapeError("matrix product needs arrays of at least one dimension, "
                         f"got {fmt_shape(a)} and {fmt_shape(b)}")
    ka = a[-1]
    kb = b[-2] if len(b) >= 2 else b[0]
    if not dims_equal(ka, kb):
        raise ShapeError(f"matrix product of shapes {fmt_shape(a)} and {fmt_shape(b)}: "
                         f"inner dimensions {fmt_dim(ka)} and {fmt_dim(kb)} differ")
    if len(a) == 1 and len(b) == 1:
        return ()
    if len(a) == 1:
        return tuple(b[:-2]) + (b[-1],)
    if len(b) == 1:
        return tuple(a[:-1])
    try:
        batch = broadcast(tuple(a[:-2]), tuple(b[:-2]))
    except ShapeError:
        raise ShapeError(f"matrix product of shapes {fmt_shape(a)} and {fmt_shape(b)}: "
                         "batch dimensions cannot be broadcast together") from None
    return batch + (a[-2], b[-1])


# ---------------------------------------------------------------- sizes bound at run time

@dataclass(frozen=True)
class Binding:
    """How an entry point's prologue gets a dimension: from axis `axis` of argument `arg`,
    declared there as `declared` (the dimension alone, or an expression that is linear in
    it, `3 * M`, solved for it)."""

    arg: str
    axis: int
    declared: Dim
    text: str = ""   # the declaration as written (`N + 2 * K`), for messages

    @property
    def direct(self) -> bool:
        """The dimension alone: `N = x.shape[0]`."""
        return self.declared.is_Symbol


@dataclass(frozen=True)
class Requirement:
    """A condition on the sizes that an entry point checks at run time: `divides` (`left`
    is a multiple of `right`: the exact division `left // right` written on line `line`)
    or `within` (`0 <= left <= right`: a slice bound and the size of its axis)."""

    kind: str
    left: Dim
    right: Dim
    line: int
    texts: tuple = ("", "")   # left and right as written (`C`, `H` where H = 4), if known

    def holds(self, sizes: Mapping) -> bool:
        """Whether it holds for these sizes (symbol -> int)."""
        sizes = {s: as_expr(v) for s, v in sizes.items()}
        a, b = self.left.xreplace(sizes), self.right.xreplace(sizes)
        if self.kind == "divides":
            return bool(a.is_integer and b.is_integer and int(b) != 0 and int(a) % int(b) == 0)
        return bool(0 <= a <= b)


def linear_in(d: Dim, s: sympy.Symbol) -> tuple[Dim, Dim] | None:
    """(a, b) with d == a * s + b and neither depending on `s`, or None (`s * s`)."""
    e = sympy.expand(d)
    a = e.coeff(s, 1)
    b = sympy.expand(e - a * s)
    if a == 0 or a.has(s) or b.has(s):
        return None
    return a, b


def bind_sizes(shapes: Sequence[tuple[str, Shape]]) -> tuple[dict[str, Binding], list[str]]:
    """How each dimension of the argument shapes `(name, shape)` is bound at run time, in
    the order the prologue binds them, and the names of those that cannot be: first from
    the axes where a dimension appears alone, then from an axis whose declaration has one
    unknown dimension, linearly (`3 * M`, `N - 1`, `M // 2`; solved at run time, checked
    there: `Param[3 * M]` of length 12 gives M = 4, of length 13 a ValueError)."""
    bound: dict[str, Binding] = {}
    names: set[str] = set()
    for arg, shape in shapes:
        for axis, d in enumerate(shape):
            names |= {x.name for x in d.free_symbols}
            if d.is_Symbol and d.name not in bound:
                bound[d.name] = Binding(arg, axis, d)
    progress = len(bound) < len(names)
    while progress:
        progress = False
        for arg, shape in shapes:
            for axis, d in enumerate(shape):
                unknown = [x for x in d.free_symbols if x.name not in bound]
                if len(unknown) == 1 and linear_in(d, unknown[0]) is not None:
                    bound[unknown[0].name] = Binding(arg, axis, d)
                    progress = True
    return bound, sorted(names - set(bound))


# ---------------------------------------------------------------- printing

# Precedences of emitted Python expressions (higher binds tighter): the one table, used
# here and by the array printer (through `ops.registry`).
PREC_LOWEST, PREC_CMP, PREC_ADD, PREC_MUL, PREC_NEG, PREC_POW, PREC_CALL, PREC_ATOM = (
    0, 5, 10, 20, 30, 40, 50, 60)
# `ruff format` (as black) writes a power without spaces when both operands are simple: a
# name, an attribute chain or a number, each with unary signs, or such a power (`x**2`,
# `x**-1`, `np.pi**2`), and parenthesises a power under a unary operator (`-(x**2)`). The
# emitted code is written so, that formatting it changes nothing.
_SIMPLE = (r"[-+~]*(?:[^\W\d]\w*(?:\.[^\W\d]\w*)*"
           r"|(?:\d[\d_]*(?:\.[\d_]*)?|\.\d[\d_]*)(?:[eE][-+]?\d+)?[jJ]?)")
_SIMPLE_POWER = re.compile(rf"{_SIMPLE}(?:\*\*{_SIMPLE})*")


def power_code(base: str, exponent: str) -> str:
    """`base ** exponent` (both already parenthesised as needed), spaced as `ruff format`
    spaces it: `x**2` for simple operands, `(a + b) ** 2` otherwise."""
    if _SIMPLE_POWER.fullmatch(base) and _SIMPLE_POWER.fullmatch(exponent):
        return f"{base}**{exponent}"
    return f"{base} ** {exponent}"


_SIMPLE_BOUND = re.compile(r"[-+~]*(?:[^\W\d]\w*|\d[\w.]*)")


def slice_code(bounds: Sequence[str]) -> str:
    """`start:stop` or `start:stop:step` from the bounds' code ("" where left out), spaced
    as `ruff format` spaces it: `x[2:N]`, but `x[2 : N + 2]` and `x[N + 2 :]` when a bound
    is more than a name or a number."""
    if all(not b or _SIMPLE_BOUND.fullmatch(b) for b in bounds):
        return ":".join(bounds)
    out = bounds[0]
    for before, after in zip(bounds, bounds[1:]):
        out += (" :" if before else ":") + (f" {after}" if after else "")
    return out


def unary_operand(code_prec: tuple[str, int]) -> str:
    """The operand of a unary minus: parenthesised below PREC_NEG, and a power too (as
    `ruff format` writes `-(x**2)`)."""
    code, prec = code_prec
    return f"({code})" if prec < PREC_NEG or prec == PREC_POW else code


# Powers of dimensions with exponents up to this are exact Python arithmetic (`D ** 2`;
# a size below 2**40 to the 16th still fits a float64); beyond, float64.
MAX_EXACT_EXPONENT = 16
_NON_FINITE = (sympy.oo, -sympy.oo, sympy.nan)


def print_expr(expr: sympy.Expr, names: Mapping[str, str] | None = None,
               integer: bool = False) -> str:
    """Python source of a scalar sympy expression, e.g. `2 * D`, `1 / N`, `0.5`; with
    `integer`, a size (`C // H`, `(N + 1) // 2`: integer arithmetic, see `print_scalar`)."""
    return print_scalar(expr, names, integer)[0]


def print_scalar(expr: sympy.Expr, names: Mapping[str, str] | None = None,
                 integer: bool = False) -> tuple[str, int]:
    """Like `print_expr`, with the precedence of the printed expression. `names` maps the
    module's canonical names (`np`, `float`) to the ones it uses (`numpy`, `float_`) where
    a user name took them. With `integer` the expression is a size (a shape, a slice
    bound): its divisions are exact (`C // H` was checked at entry), so they are printed
    as integer divisions of the whole (`(C + D) // 2`), never as floats.

    Memoised (printing is a pure function of these, and a compilation prints the same few
    constants and sizes thousands of times); keyed by the value's type too, so 1 and 1.0
    (equal, printed differently) never share an entry."""
    refs = names or {}
    e = as_expr(expr)   # (anything but a number or a sympy object is refused here)
    key = (type(expr), e, refs.get("np", "np"), refs.get("float", "float"), integer)
    found = _PRINTED.get(key)
    if found is None:
        if len(_PRINTED) > 8192:
            _PRINTED.clear()
        found = _PRINTED[key] = _print(e, _Refs(refs, "integer" if integer else "value"))
    return found


_PRINTED: dict[tuple, tuple[str, int]] = {}   # print_scalar's memo


class _Refs:
    """The emitted module's names for NumPy (`np`) and the built-in `float`, and how
    divisions are printed: `value` (Python's `/`), `integer` (sizes: `//`) or `human`
    (messages: `//`, and `ceil(N / 2)`)."""

    def __init__(self, names: Mapping[str, str], mode: str = "value"):
        self.np = names.get("np", "np")
        self.float = names.get("float", "float")
        self.mode = mode
        # A target that computes numbers with Python's `math` (the array API: its
        # functions take arrays, which jax.jit traces) names it here: `np` is then that
        # module and numbers are Python floats (a division by zero raises there).
        self.math = "math" in names

    def float64(self, code: str) -> str:
        """A number as a float64 value (IEEE arithmetic: inf, not OverflowError)."""
        return f"{self.float}({code})" if self.math else f"{self.np}.float64({code})"


_HUMAN = _Refs({}, "human")


def _paren(code_prec: tuple[str, int], need: int) -> str:
    code, prec = code_prec
    return f"({code})" if prec < need else code


def _print(e: sympy.Expr, r: _Refs) -> tuple[str, int]:
    # Dimension expressions are small (a handful of terms), so recursion depth is tiny.
    if r.mode != "value" and (e.is_Add or e.is_Mul or e.is_Rational) and not e.is_Integer \
            and _has_fraction(e):
        return _print_exact(e, r)
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
            return "-" + unary_operand(_print(-e, r)), PREC_NEG
        factors = sorted(e.args, key=lambda t: (not t.is_Number, sympy.default_sort_key(t)))
        # A later factor that is itself a `//` or `%` (of the same precedence as `*`) is
        # parenthesised: `2 * ((T + 1) // 2)`, not `2 * (T + 1) // 2`.
        return " * ".join(_paren(_print(f, r), PREC_MUL + (k > 0))
                          for k, f in enumerate(factors)), PREC_MUL
    if e.is_Pow:
        base, exp = e.args
        if exp == -1:
            return _divide(sympy.Integer(1), base, r)
        if not (exp.is_Rational and abs(exp) <= MAX_EXACT_EXPONENT and base.is_integer
                and base.is_positive):
            # A large or non-constant exponent, or a base that is not a size (Python's
            # float ** raises on overflow): in float64 (inf if it overflows), not as an exact
            # Python integer of millions of digits.
            if exp == sympy.S.Half:   # sqrt(C // H): nan where negative, as NumPy's
                base_code = _print(base, r)[0]
                return f"{r.float}({r.np}.sqrt({base_code}))", PREC_ATOM
            power = power_code(r.float64(_print(base, r)[0]),
                               _paren(_print(exp, r), PREC_NEG))
            return f"{r.float}({power})", PREC_ATOM
        if exp.is_Rational and not exp.is_Integer:   # D ** 0.5: a Python float
            return power_code(_paren(_print(base, r), PREC_POW + 1), repr(float(exp))), PREC_POW
        base_code = _paren(_print(base, r), PREC_POW + 1)
        return power_code(base_code, _paren(_print(exp, r), PREC_NEG)), PREC_POW
    if isinstance(e, sympy.exp):   # e ** N, as sympy writes it
        return f"{r.float}({r.np}.exp({r.float64(_print(e.args[0], r)[0])}))", PREC_ATOM
    name = _FUNCTIONS.get(type(e))
    if name is not None and e.is_number:   # log(2 * pi): in float64, as a Python float
        arg = e.args[0]
        code = _print(arg, r)[0]
        if arg.is_Integer and abs(int(arg)) > 2 ** 53:   # not an int64 for NumPy
            code = r.float64(code)
        if r.math:   # Python's math spells some the standard's way (atan)
            name = _MATH_NAMES.get(name, name)
        return f"{r.float}({r.np}.{name}({code}))", PREC_ATOM
    if isinstance(e, (sympy.floor, sympy.ceiling, sympy.Mod)):
        return _print_integer_op(e, r)
    if e.is_number:   # exp(2), sqrt(2), log(3) inside an expression of dimensions
        return _float(float(e), r)
    raise ValueError(f"cannot print dimension expression {e}")


def _print_exact(e: sympy.Expr, r: _Refs) -> tuple[str, int]:
    """A size with exact divisions (`C // H` is C / H): the terms that divide, as one
    integer division (`(C + D) // 2`, whose parts need not be integers), then the rest."""
    whole = [t for t in sympy.Add.make_args(e) if not _has_fraction(t)]
    num, den = _together(sympy.Add(*(t for t in sympy.Add.make_args(e) if t not in whole)))
    n, d = _paren(_print(num, r), PREC_MUL), _paren(_print(den, r), PREC_MUL + 1)
    if not whole:
        return f"{n} // {d}", PREC_MUL
    rest = _print(sympy.Add(*whole), r)[0]
    return f"{n} // {d}" + (f" - {rest[1:]}" if rest.startswith("-") else f" + {rest}"), \
        PREC_ADD


def _print_integer_op(e: sympy.Expr, r: _Refs) -> tuple[str, int]:
    """floor, ceiling and Mod: integer arithmetic, never floats (`N // 2`, `(N + 1) // 2`
    for ceil(N / 2), as messages write it, `C % H`)."""
    if isinstance(e, sympy.Mod):
        a, b = e.args
        return f"{_paren(_print(a, r), PREC_MUL)} % {_paren(_print(b, r), PREC_MUL + 1)}", \
            PREC_MUL
    num, den = sympy.fraction(sympy.together(e.args[0]))
    if isinstance(e, sympy.ceiling) and r.mode == "human" and not (
            den.is_Integer and (num + den - 1).as_coeff_Add()[0] == 0):
        # as a person writes it: ceil(N / 2), but N // 2 for ceil((N - 1) / 2)
        n, d = _paren(_print(num, r), PREC_MUL), _paren(_print(den, r), PREC_MUL + 1)
        return f"ceil({n} / {d})", PREC_CALL
    floor = isinstance(e, sympy.floor)
    if not floor and den.is_Integer and den > 0:   # ceil(N / 2) as (N + 1) // 2
        num, floor = num + den - 1, True
    n, d = _paren(_print(num, r), PREC_MUL), _paren(_print(den, r), PREC_MUL + 1)
    if floor:
        return f"{n} // {d}", PREC_MUL
    return f"-(-{n} // {d})", PREC_NEG


@functools.lru_cache(maxsize=1024)
def _together(e: sympy.Expr) -> tuple[sympy.Expr, sympy.Expr]:
    """(numerator, denominator) of a sum of fractions: `(C + D, 2)` for `C / 2 + D / 2`."""
    num, den = sympy.fraction(sympy.together(e))
    return sympy.expand(num), den


def _has_fraction(e: sympy.Expr) -> bool:
    """Whether `e` divides outside a function (`C / H`, `N / 2`; not `floor(N / 2)`)."""
    todo = [e]
    while todo:
        x = todo.pop()
        if x.is_Rational and not x.is_Integer:
            return True
        if x.is_Pow and x.args[1].is_negative:
            return True
        if x.is_Add or x.is_Mul or x.is_Pow:
            todo.extend(x.args)
    return False


# sympy's functions of numbers that the ops keep exact, and NumPy's name for each.
_MATH_NAMES = {"arctan": "atan"}
_FUNCTIONS = {sympy.log: "log", sympy.sin: "sin", sympy.cos: "cos", sympy.tan: "tan",
              sympy.tanh: "tanh", sympy.atan: "arctan"}


def _divide(num: sympy.Expr, den: sympy.Expr, r: _Refs) -> tuple[str, int]:
    """`num / den`; in float64 unless `den` is known to be positive (a size), since Python
    raises ZeroDivisionError where NumPy gives inf or nan (`1 / (N - M)` with N == M)."""
    if den.is_positive:
        num_code = _paren(_print(num, r), PREC_MUL)
        return f"{num_code} / {_paren(_print(den, r), PREC_MUL + 1)}", PREC_MUL
    if r.math:
        num_code = _paren(_print(num, r), PREC_MUL)
        return f"{r.float}({num_code}) / {_paren(_print(den, r), PREC_MUL + 1)}", PREC_MUL
    return f"{r.float}({r.np}.divide({_print(num, r)[0]}, {_print(den, r)[0]}))", PREC_ATOM


def _float(v: float, r: _Refs) -> tuple[str, int]:
    """A float as a Python expression: always valid code (`np.inf`, `-np.inf`, `np.nan`
    rather than the bare names that `repr` gives)."""
    if math.isnan(v):
        return f"{r.np}.nan", PREC_ATOM
    if math.isinf(v):
        return (f"{r.np}.inf", PREC_ATOM) if v > 0 else (f"-{r.np}.inf", PREC_NEG)
    return repr(v), (PREC_NEG if v < 0 else PREC_ATOM)
