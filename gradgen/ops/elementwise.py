"""Elementwise operations: arithmetic, comparisons, transcendental functions."""

from __future__ import annotations

import functools
import math
import operator

import numpy as np
import sympy

from ..dims import broadcast, size, unary_operand
from ..ir import builder, const, make
from ._emit import call, infix, scaled_hint, unit_fraction
from .constants import dtype_witness
from .dtypes import dtype_sources, integer_closed, weak
from .registry import (
    NONZERO,
    POSITIVE,
    PREC_ADD,
    PREC_CALL,
    PREC_CMP,
    PREC_LOWEST,
    PREC_MUL,
    PREC_NEG,
    PREC_POW,
    REAL,
    UNIT,
    defbuiltin,
    defop,
    rewrite,
)

EW = frozenset({"elementwise"})
NONDIFF = frozenset({"elementwise", "nondiff"})


def _bshape(args, **_):
    if len(args) <= 2:   # broadcast's answer for one shape, for equal ones and for ()
        first = args[0].shape
        if len(args) == 1:
            return first
        other = args[1].shape
        if other is first or not other:
            return first
        if not first:
            return other
        if len(other) == len(first):   # (a loop, not all() over a generator)
            for x, y in zip(first, other):
                if x is not y:
                    break
            else:
                return first
    return broadcast(*(a.shape for a in args))


def _total(*terms):
    """Sum of the non-None terms (None means a symbolic zero)."""
    out = None
    for t in terms:
        if t is not None:
            out = t if out is None else out + t
    return out


def _is(node, value) -> bool:
    """`node` is the constant `value` (a float constant too: SymPy's Float(1.0) != 1)."""
    return node.is_const and _const_is(node, value)


@functools.lru_cache(maxsize=1024)
def _const_is(node, value) -> bool:
    # memoised per constant node (nodes hash by identity): sympy's `==` with a Python
    # number converts the number at every call, a Float's hash converts it to a float, and
    # the rules ask this of the same few constants on most nodes they see
    v = node.value
    return v == value or bool(getattr(v, "is_Float", False)) and float(v) == value


# ---------------------------------------------------------------- constant folding
#
# Scalar constants are numbers or expressions of dimension sizes (sympy). Folding them
# follows NumPy's float64 (IEEE): exact sympy arithmetic is kept only while it is cheap and
# its value a finite real of bounded size; otherwise numbers are folded in float64 (so
# `1 / 0` is inf, `0 / 0` nan, `(-8) ** (1/3)` nan, `9 ** 9 ** 9` inf, in microseconds),
# and expressions of dimensions are left for run time.

MAX_EXACT_BITS = 1000      # exact integers and fractions stay below float64's range
MAX_EXACT_ROOT = 64        # exact powers p/q: |p| and q at most this
MAX_FOLDED_NODES = 64      # size of a folded expression of dimensions
# Folds of expressions of dimensions per compilation: each costs sympy about a millisecond
# (its assumption system), so beyond this they are left for run time.
MAX_SYMBOLIC_FOLDS = 2000

_SYMPY_OPS = {"add": operator.add, "sub": operator.sub, "mul": operator.mul,
              "div": operator.truediv, "pow": operator.pow, "neg": operator.neg}
_IEEE_OPS = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide,
             "pow": np.power, "neg": np.negative}


def fold(op: str, *values):
    """The constant `op(*values)` for scalar constant values, or None to leave it unfolded."""
    if all(v.is_number for v in values):
        if all(_tame(v) for v in values) and _exact_is_cheap(op, values) \
                and not (op == "div" and values[1].is_zero):
            r = _sympy(op, values)
            if r is not None and _tame(r):
                return r
        return _ieee(op, values)
    # Expressions of dimensions: sympy, unless a number in them is not finite or exact
    # work would grow; division by zero of a dimension (positive) is inf.
    if not all(_tame(v) and _small(v) for v in values) or not _exact_is_cheap(op, values):
        return None
    memo = builder().memo
    memo["symbolic_folds"] = memo.get("symbolic_folds", 0) + 1
    if memo["symbolic_folds"] > MAX_SYMBOLIC_FOLDS:
        return None
    if op == "div" and values[1].is_zero:
        return (sympy.oo if values[0].is_positive else -sympy.oo if values[0].is_negative
                else None)
    r = _sympy(op, values)
    return r if r is not None and _tame(r) and _small(r) else None


def _sympy(op: str, values):
    """op in sympy, or None where sympy raises (mpmath's division of floats by zero)."""
    try:
        return _SYMPY_OPS[op](*values)
    except (ZeroDivisionError, OverflowError, ValueError):
        return None


def _small(v) -> bool:
    """At most MAX_FOLDED_NODES nodes (counted with an early exit): sympy's work on an
    expression grows with its size, and a chain of operations would fold into one
    expression that each step copies."""
    for count, _ in enumerate(sympy.preorder_traversal(v)):
        if count >= MAX_FOLDED_NODES:
            return False
    return True


def _bits(v) -> int:
    return max(int(v.p).bit_length(), int(v.q).bit_length()) if v.is_Rational else 64


def _tame(v) -> bool:
    """A finite real value whose exact numbers are of bounded size."""
    if v.is_Rational:   # the common case, an exact number: what the checks below find
        return _bits(v) <= MAX_EXACT_BITS
    if v.has(sympy.zoo, sympy.nan, sympy.oo, -sympy.oo, sympy.I):
        return False
    for n in v.atoms(sympy.Number):
        if n.is_Rational and _bits(n) > MAX_EXACT_BITS:
            return False
        if n.is_Float and not math.isfinite(float(n)):
            return False
    if v.is_number and not v.is_Rational:
        try:
            return math.isfinite(float(v))
        except (TypeError, OverflowError):
            return False
    return True


def _exact_is_cheap(op: str, values) -> bool:
    """Exact (sympy) work on these values is small: powers are the only operation whose
    result can be much larger than its arguments."""
    if op != "pow":
        return True
    base, exp = values
    if not exp.is_number:      # 2 ** N: printed in float64 (sympy_print)
        return True
    if not exp.is_Rational:    # N ** 2.5 symbolic; numbers in float64
        return not base.is_number
    if exp.is_Integer:
        return abs(int(exp)) * _bits(base) <= MAX_EXACT_BITS if base.is_number \
            else abs(int(exp)) <= 2 ** 64
    return abs(int(exp.p)) <= MAX_EXACT_ROOT and int(exp.q) <= MAX_EXACT_ROOT \
        and (_bits(base) <= MAX_EXACT_BITS // MAX_EXACT_ROOT if base.is_number else True)


def _ieee(op: str, values) -> float:
    """op in float64, as NumPy computes it (inf and nan included, no warnings)."""
    with np.errstate(all="ignore"):
        return float(_IEEE_OPS[op](*(np.float64(_as_float(v)) for v in values)))


def _as_float(v) -> float:
    try:
        return float(v)
    except OverflowError:
        return math.inf if v > 0 else -math.inf


def _is_result(x, args) -> bool:
    """x has the shape of the elementwise result of `args` (nothing broadcasts it)."""
    return tuple(broadcast(*(a.shape for a in args))) == tuple(x.shape)


def _keeps_shape(x, result_args) -> bool:
    return all(a.ndim == 0 for a in result_args if a is not x) and len(
        broadcast(*(a.shape for a in result_args))) == x.ndim


# ---------------------------------------------------------------- arithmetic

def _scaled(x):
    """(c, y) when x is `c * y` with a scalar constant c, else (None, x)."""
    if x.op == "mul" and x.args[0].is_const and not x.args[1].is_const:
        return x.args[0].value, x.args[1]
    return None, x


def _smaller(x, than) -> bool:
    """x has fewer dimensions than `than` (so multiplying by it first is cheaper)."""
    return x.ndim < than.ndim


def _negative(c) -> bool:
    return c is not None and c.could_extract_minus_sign()


# Canonical forms, applied as nodes are built (each rule makes the graph simpler or moves a
# scalar constant outwards; the engine, passes/rules.py, bounds the rewriting and names the
# rules of a cycle):
#   scalar constants are folded, and a constant factor stands first: `c * x`;
#   division by a constant is multiplication by its inverse; `c / y` is `c * (1 / y)`;
#   `(1 / y) * x` is `x / y`; `c * a + c * b` is `c * (a + b)`; `a + (-c) * b` is `a - c * b`.

_ZEROS = frozenset({"zeros_like", "full"})   # the ops that may be arrays of zeros


def _drop_zero(a, b):
    """For `a + b` (or `a - b`): the one that is left when the other is zeros, or None."""
    if _zero_of(b, a) and _is_result(a, (a, b)):
        return a
    if _zero_of(a, b) and _is_result(b, (a, b)):
        return b
    return None


def _zero_of(x, other) -> bool:
    """x is an array of zeros (`zeros_like(...)`, `zeros(...)`) of no other dtype than
    `other` has: adding it changes nothing (a constant 0 is handled by the folding rules)."""
    return (x.op == "zeros_like" or x.op == "full" and x.attr("value") == 0) \
        and set(dtype_sources(x)) <= set(dtype_sources(other))


def _common_factor(a, b):
    """`A @ C + B @ C` is `(A + B) @ C` (and `C @ A + C @ B` is `C @ (A + B)`): one matrix
    product instead of two, when A and B have the same shape (nothing broadcasts)."""
    if a.op != "matmul" or b.op != "matmul" or a.shape != b.shape:
        return None
    (a1, a2), (b1, b2) = a.args, b.args
    if a2 is b2 and a1.shape == b1.shape:
        return make("matmul", a1 + b1, a2)
    if a1 is b1 and a2.shape == b2.shape:
        return make("matmul", a1, a2 + b2)
    return None


def _fold_constants(op: str, doc: str):
    """Register the rule `<op>_fold`: `op` of two scalar constants, folded (`fold`)."""
    def rule(a, b):
        if a.is_const and b.is_const:
            value = fold(op, a.value, b.value)
            return None if value is None else const(value)
        return None
    rule.__doc__ = doc
    return rewrite(op, name=f"{op}_fold", operands=(("const",), ("const",)))(rule)


# ---- add

_fold_constants("add", "The sum of two scalar constants, folded.")


@rewrite("add", inspects=("zeros_like", "full"))
def add_zeros(a, b):
    """Adding an array of zeros changes nothing: `a + zeros` is `a`."""
    if a.op in _ZEROS or b.op in _ZEROS:
        return _drop_zero(a, b)
    return None


@rewrite("add", inspects=("const",))
def add_zero(a, b):
    """`a + 0` and `0 + a` are `a` (when 0 broadcasts nothing)."""
    if _is(b, 0) and _keeps_shape(a, (a, b)):
        return a
    if _is(a, 0) and _keeps_shape(b, (a, b)):
        return b
    return None


@rewrite("add", operands=(None, ("neg",)))
def add_neg(a, b):
    """`a + (-b)` is `a - b`."""
    return a - b.args[0] if b.op == "neg" else None


@rewrite("add", inspects=("matmul",))
def add_common_factor(a, b):
    """`A @ C + B @ C` is `(A + B) @ C`: one matrix product instead of two."""
    return _common_factor(a, b)


@rewrite("add")
def add_like_terms(a, b):
    """Like terms add up: `x + x` is `2 * x` and `c1 * x + c2 * x` is `(c1 + c2) * x`, one
    pass instead of two (the gradient of `0.5 * reg * sum(W * W)` is `reg * W`)."""
    (ca, xa), (cb, xb) = _scaled(a), _scaled(b)
    if xa is not xb or xa.is_const:
        return None
    total = (1 if ca is None else ca) + (1 if cb is None else cb)
    return None if total == 0 else const(total) * xa


@rewrite("add", operands=(("mul",), ("mul",)))
def add_common_scalar(a, b):
    """`c * x + c * y` is `c * (x + y)`, and `c * x + (-c) * y` is `c * (x - y)`."""
    if a.op != "mul" or b.op != "mul":   # neither is scaled (`_scaled`)
        return None
    (ca, xa), (cb, xb) = _scaled(a), _scaled(b)
    if ca is not None and cb is not None:
        if ca == cb:
            return const(ca) * (xa + xb)
        if ca == -cb:
            return const(cb) * (xb - xa) if _negative(ca) else const(ca) * (xa - xb)
    return None


@rewrite("add", inspects=("mul",))
def add_negative_scaled(a, b):
    """`a + (-c) * y` is `a - c * y`: a subtraction instead of a negative factor."""
    if a.op != "mul" and b.op != "mul":   # neither is scaled (`_scaled`)
        return None
    (ca, xa), (cb, xb) = _scaled(a), _scaled(b)
    if _negative(cb):
        return a - const(-cb) * xb
    if _negative(ca):
        return b - const(-ca) * xa
    return None


# ---- sub

_fold_constants("sub", "The difference of two scalar constants, folded.")


@rewrite("sub", inspects=("zeros_like", "full"))
def sub_zeros(a, b):
    """Subtracting an array of zeros changes nothing; from one, it negates."""
    if a.op in _ZEROS or b.op in _ZEROS:
        zero = _drop_zero(a, b)
        if zero is not None:
            return zero if zero is a else -b
    return None


@rewrite("sub", inspects=("const",))
def sub_zero(a, b):
    """`a - 0` is `a` and `0 - b` is `-b` (when 0 broadcasts nothing)."""
    if _is(b, 0) and _keeps_shape(a, (a, b)):
        return a
    if _is(a, 0) and _keeps_shape(b, (a, b)):
        return -b
    return None


@rewrite("sub", operands=(None, ("neg",)))
def sub_neg(a, b):
    """`a - (-b)` is `a + b`."""
    return a + b.args[0] if b.op == "neg" else None


@rewrite("sub", inspects=("mul",))
def sub_like_terms(a, b):
    """Like terms subtract: `3 * x - x` is `2 * x` (`x - x` is left to the zero rules)."""
    (ca, xa), (cb, xb) = _scaled(a), _scaled(b)
    if xa is not xb or xa.is_const or (ca is None and cb is None):
        return None
    total = (1 if ca is None else ca) - (1 if cb is None else cb)
    return None if total == 0 else const(total) * xa


@rewrite("sub", operands=(("mul",), ("mul",)))
def sub_common_scalar(a, b):
    """`c * x - c * y` is `c * (x - y)`."""
    if a.op != "mul" or b.op != "mul":   # neither is scaled (`_scaled`)
        return None
    (ca, xa), (cb, xb) = _scaled(a), _scaled(b)
    return const(ca) * (xa - xb) if ca is not None and ca == cb else None


@rewrite("sub", operands=(None, ("mul",)))
def sub_negative_scaled(a, b):
    """`a - (-c) * y` is `a + c * y`."""
    cb, xb = _scaled(b)
    return a + const(-cb) * xb if _negative(cb) else None


# ---- mul

_fold_constants("mul", "The product of two scalar constants, folded.")


@rewrite("mul", operands=(None, ("const",)))
def mul_constant_first(a, b):
    """A scalar constant factor stands first: `x * 2` is `2 * x`."""
    return b * a if b.is_const and not a.is_const else None


@rewrite("mul", operands=(("const",), None))
def mul_one(a, b):
    """`1 * x` is `x` and `-1 * x` is `-x` (when the constant broadcasts nothing)."""
    if a.is_const and (_is(a, 1) or _is(a, -1)) and _keeps_shape(b, (a, b)):
        return b if _is(a, 1) else -b
    return None


@rewrite("mul", operands=(("const",), None))
def mul_zero(a, b):
    """`0 * x` is an array of zeros like `x`."""
    if _is(a, 0) and b.ndim and _keeps_shape(b, (a, b)):
        return make("zeros_like", b)
    return None


@rewrite("mul", inspects=("zeros_like", "full"))
def mul_zeros(a, b):
    """A product with an array of zeros is that array (when nothing broadcasts it)."""
    if b.op in _ZEROS and _zero_of(b, a) and _is_result(b, (a, b)):
        return b
    if a.op in _ZEROS and _zero_of(a, b) and _is_result(a, (a, b)):
        return a
    return None


@rewrite("mul", operands=(("const",), ("mul",)))
def mul_constants_together(a, b):
    """`c1 * (c2 * x)` is `(c1 * c2) * x`: the constants fold."""
    if a.is_const and b.op == "mul" and b.args[0].is_const:
        return (a * b.args[0]) * b.args[1]
    return None


@rewrite("mul", inspects=("mul",))
def mul_scalar_outwards(a, b):
    """A scalar constant factor moves out of a product: `(c * x) * y` is `c * (x * y)`."""
    if a.is_const or a.op != "mul" and b.op != "mul":   # neither is scaled (`_scaled`)
        return None
    (ca, xa), (cb, xb) = _scaled(a), _scaled(b)
    if ca is not None:
        return const(ca) * (xa * b)
    if cb is not None:
        return const(cb) * (a * xb)
    return None


@rewrite("mul", inspects=("div",))
def mul_reciprocal(a, b):
    """`(1 / y) * x` is `x / y`."""
    if a.is_const:
        return None
    if a.op == "div" and _is(a.args[0], 1):
        return b / a.args[1]
    if b.op == "div" and _is(b.args[0], 1):
        return a / b.args[1]
    return None


@rewrite("mul", inspects=("mul",))
def mul_small_first(a, b):
    """Of three factors the two small ones multiply first: `(p * Q) * b` is `(p * b) * Q`
    when `p` and `b` have fewer dimensions than `Q`."""
    if a.is_const or b.is_const:
        return None                             # scalar constants: the rules above
    if a.op == "mul" and _smaller(b, a):
        if _any_const(a.args + b.args):
            return None
        p, q = a.args
        if _smaller(p, a) and not _smaller(q, a):
            return (p * b) * q
        if _smaller(q, a) and not _smaller(p, a):
            return (q * b) * p
    elif b.op == "mul" and _smaller(a, b):
        if _any_const(a.args + b.args):
            return None
        p, q = b.args
        if _smaller(p, b) and not _smaller(q, b):
            return (a * p) * q
    return None


def _any_const(nodes) -> bool:
    return any(x.is_const for x in nodes)


@rewrite("mul", inspects=("neg",))
def mul_signs(a, b):
    """Signs move outwards: `(-x) * (-y)` is `x * y`, `c * (-y)` is `(-c) * y`, and
    `(-x) * y` is `-(x * y)`."""
    if a.op == "neg":
        return a.args[0] * b.args[0] if b.op == "neg" else -(a.args[0] * b)
    if b.op == "neg":
        return const(-a.value) * b.args[0] if a.is_const else -(a * b.args[0])
    return None


# ---- div

_fold_constants("div", "The quotient of two scalar constants, folded (IEEE: `1 / 0` is inf).")


def _filled(x):
    """The number an array of one repeated constant holds (`full`, with axes added), or
    None."""
    while x.op == "expand_dims":
        x = x.args[0]
    return x.attr("value") if x.op == "full" else None


@rewrite("mul", inspects=("div",))
def mul_cancel_div(a, b):
    """A division undone: `(x / y) * y` is `x` (when y broadcasts x to nothing larger)."""
    for q, y in ((a, b), (b, a)):
        if q.op == "div" and q.args[1] is y and q.args[0].shape == broadcast(a.shape, b.shape):
            return q.args[0]
    return None


@rewrite("div", inspects=("mul",))
def div_cancel_mul(a, b):
    """A product undone: `(x * y) / y` and `(y * x) / y` are `x` (when y broadcasts x to
    nothing larger)."""
    if a.op == "mul" and b in a.args:
        x = a.args[0] if a.args[1] is b else a.args[1]
        if x.shape == broadcast(a.shape, b.shape):
            return x
    return None


@rewrite("mul", inspects=("expand_dims", "full"))
def mul_filled(a, b):
    """A product with an array filled with one number c is `c * x` when it broadcasts
    nothing: `np.full((N,), c)[:, None] * x` is `c * x`, no array of copies of c."""
    for f, x in ((a, b), (b, a)):
        c = _filled(f)
        if c is not None and x.shape == broadcast(a.shape, b.shape):
            return const(c) * x
    return None


@rewrite("div", inspects=("expand_dims", "full"))
def div_filled(a, b):
    """An array filled with one number c over y is `c / y` when it broadcasts nothing."""
    c = _filled(a)
    if c is not None and b.shape == broadcast(a.shape, b.shape):
        return const(c) / b
    return None


@rewrite("div", inspects=("const",))
def div_by_constant(a, b):
    """Division by a constant is multiplication by its inverse: `x / c` is `(1/c) * x`."""
    if b.is_const:
        inverse = fold("div", sympy.Integer(1), b.value)
        return None if inverse is None else const(inverse) * a
    return None


@rewrite("div", inspects=("const",))
def div_constant_numerator(a, b):
    """`c / y` is `c * (1 / y)`: the constant factor stands outside."""
    if b.is_const:                      # div_by_constant's case
        return None
    return a * (const(1) / b) if a.is_const and not _is(a, 1) else None


@rewrite("div", inspects=("mul",))
def div_scalar_outwards(a, b):
    """`(c * x) / y` is `c * (x / y)`."""
    ca, xa = _scaled(a)
    return const(ca) * (xa / b) if ca is not None and not b.is_const else None


@rewrite("div", inspects=("neg",))
def div_sign_outwards(a, b):
    """`(-x) / y` is `-(x / y)`."""
    return -(a.args[0] / b) if a.op == "neg" and not b.is_const else None


@rewrite("div", "fuse", inspects=("const",))
def div_logistic(a, b):
    """The logistic function written out, `1 / (1 + exp(-z))`, is `sigmoid(z)`."""
    if (_is(a, 1) and b.op == "add" and _is(b.args[0], 1) and b.args[1].op == "exp"
            and b.args[1].args[0].op == "neg" and b.args[1].args[0].shape == b.shape):
        return make("sigmoid", b.args[1].args[0].args[0])
    return None


# ---- neg

@rewrite("neg", inspects=("const",))
def neg_fold(x):
    """The negation of a scalar constant, folded."""
    if x.is_const:
        value = fold("neg", x.value)
        return None if value is None else const(value)
    return None


@rewrite("neg", inspects=("zeros_like", "full"))
def neg_zeros(x):
    """The negation of an array of zeros is that array."""
    return x if x.op in _ZEROS and _zero_of(x, x) else None


@rewrite("neg", inspects=("neg",))
def neg_neg(x):
    """`--x` is `x`."""
    return x.args[0] if x.op == "neg" else None


@rewrite("neg", inspects=("mul",))
def neg_scaled(x):
    """`-(c * y)` is `(-c) * y`: the sign joins the constant factor."""
    c, y = _scaled(x)
    return const(-c) * y if c is not None else None


# ---- pow

_fold_constants("pow", "A power of two scalar constants, folded.")


@rewrite("pow", operands=(None, ("const",)))
def pow_one(a, b):
    """`x ** 1` is `x`."""
    return a if _is(b, 1) else None


# Small integer powers NumPy computes with its general `pow` loop (measured about 1.6 ms
# for 10^6 float64 elements against 0.1 ms for a product): `x**2` has NumPy's own fast
# path (`np.square`), the others are lowered to it, products and a reciprocal.
SMALL_POWERS = (-4, -3, -2, -1, 2, 3, 4)


def _small_power(x, n: int):
    """`x ** n` for a small n of SMALL_POWERS, as squares, products and a reciprocal."""
    if n < 0:
        return make("div", const(1), _small_power(x, -n))
    if n == 1:
        return x
    if n == 2:
        return make("pow", x, const(2))
    if n == 3:
        return make("mul", make("mul", x, x), x)
    return make("pow", make("pow", x, const(2)), const(2))


@rewrite("pow", tag="lower", operands=(None, ("const",)))
def pow_small_integer(a, b):
    """A small integer power of a float array is squares and products: `x ** 3` is
    `x * x * x`, `x ** 4` is `(x**2) ** 2`, `x ** -1` is `1 / x` (NumPy's `pow` is ~15x
    slower); an integral float exponent `x ** 2.0` is `x**2` (NumPy's square)."""
    if not b.is_const or b.shape != () or a.dtype != "float" or not a.shape:
        return None
    v = b.value
    if getattr(v, "is_Integer", False):   # (`x ** 2` mostly: float(Integer(2)) takes 1.5 us)
        n = int(v)
    elif not getattr(v, "is_number", False) or not v.is_real or float(v) != int(float(v)):
        return None
    else:
        n = int(float(v))
    if n not in SMALL_POWERS or (n == 2 and v.is_Integer):
        return None
    return _small_power(a, n)


defop("add", 2, shape=_bshape, emit=infix("+", PREC_ADD), operator="+",
      dtype=integer_closed, ufunc="add",
      traits=EW | {"linear", "commutative"}, domain=(REAL, REAL),
      vjp=lambda g, n: (g, g),
      jvp=lambda ts, n: _total(*ts))

defop("sub", 2, shape=_bshape, emit=infix("-", PREC_ADD), operator="-", hint="diff",
      dtype=integer_closed, ufunc="subtract",
      traits=EW | {"linear"}, domain=(REAL, REAL),
      vjp=lambda g, n: (g, -g),
      jvp=lambda ts, n: ts[0] if ts[1] is None else (-ts[1] if ts[0] is None else ts[0] - ts[1]))

def _emit_mul(p, node):
    """`c * x`, spelled `x / q` or `-x / q` when the constant factor is 1/q or -1/q."""
    a = node.args[0]
    if a.is_const and (u := unit_fraction(a)) is not None:
        num, den = u
        sign = "-" if num == -1 else ""
        text, _ = p.scalar(den)
        den_text = text if den.is_Atom else f"({text})"
        x = unary_operand(p.code_of(node.args[1])) if sign else p.arg(node, 1, PREC_MUL)
        return f"{sign}{x} / {den_text}", PREC_MUL
    return infix("*", PREC_MUL)(p, node)


defop("mul", 2, shape=_bshape, emit=_emit_mul, operator="*",
      dtype=integer_closed, ufunc="multiply", hint=scaled_hint,
      traits=EW | {"product", "commutative"}, domain=(REAL, REAL),
      vjp=lambda g, n: (g * n.args[1], g * n.args[0]),
      jvp=lambda ts, n: _total(ts[0] and ts[0] * n.args[1], ts[1] and n.args[0] * ts[1]))

defop("div", 2, shape=_bshape, emit=infix("/", PREC_MUL), operator="/",
      ufunc="divide", hint=scaled_hint,
      traits=EW, domain=(REAL, NONZERO),
      vjp=lambda g, n: (g / n.args[1], -(g * n) / n.args[1]),
      jvp=lambda ts, n: _total(ts[0] and ts[0] / n.args[1], ts[1] and -(ts[1] * n) / n.args[1]))


def _pow_vjp(g, n):
    a, b = n.args
    return (g * b * a ** (b - 1), None if b.is_const else g * make("log", a) * n)


def _pow_jvp(ts, n):
    a, b = n.args
    return _total(ts[0] and ts[0] * b * a ** (b - 1),
                  ts[1] and ts[1] * make("log", a) * n)


defop("pow", 2, shape=_bshape, emit=infix("**", PREC_POW, right_strict=False, left_strict=True),
      operator="**",
      ufunc="power", traits=EW, domain=(POSITIVE, REAL), vjp=_pow_vjp, jvp=_pow_jvp,
      # (into a buffer, `x ** 2` as NumPy computes it: its own fast path, not `pow`)
      into=lambda p, n, out: p.into("square", [p.arg(n, 0, 0)], out)
      if n.args[1].is_const and n.args[1].value == 2 else None)


def _emit_neg(p, node):
    return "-" + unary_operand(p.code_of(node.args[0])), PREC_NEG


defop("neg", 1, shape=_bshape, emit=_emit_neg, operator="-x", traits=EW | {"linear"},
      dtype=integer_closed, ufunc="negative",
      domain=(REAL,), vjp=lambda g, n: (-g,), jvp=lambda ts, n: -ts[0])


# ---------------------------------------------------------------- comparisons and selection

for _name, _sym in (("lt", "<"), ("le", "<="), ("gt", ">"), ("ge", ">="), ("eq", "=="),
                    ("ne", "!=")):
    defop(_name, 2, shape=_bshape, emit=infix(_sym, PREC_CMP, left_strict=True),
          traits=NONDIFF, dtype="bool", domain=(REAL, REAL))


def _where_jvp(ts, n):
    _, ta, tb = ts
    if ta is None and tb is None:
        return None
    return make("where", n.args[0], ta if ta is not None else const(0),
                tb if tb is not None else const(0))


def _emit_where_xp(p, node):
    """The standard's where takes an array condition: a 0-d one (`t == 1` of a loop's
    index, a Python bool: autodiff/loops._previous_next) made one with `asarray`."""
    if node.args[0].shape:
        return call("where")(p, node)
    cond = p.arg(node, 0, PREC_LOWEST)
    args = [p.call("asarray", [cond]), *(p.arg(node, i, PREC_LOWEST) for i in (1, 2))]
    return p.call("where", args), PREC_CALL


defop("where", 3, shape=_bshape, emit={"numpy": call("where"), "default": _emit_where_xp},
      traits=EW, domain=(REAL, REAL, REAL),
      vjp=lambda g, n: (None, select(n.args[0], g, const(0), n),
                        select(n.args[0], const(0), g, n)),
      jvp=_where_jvp)


def select(cond, a, b, like):
    """where(cond, a, b) for derivative rules. With constant branches (a cotangent that is
    still the seed 1) NumPy would make an integer array, which then turns float32 results
    into float64: such a selection is cast to the dtype of the arrays `like` reads."""
    w = make("where", cond, a, b)
    if weak(w):
        sources = dtype_sources(like)
        if sources:
            w = make("cast", w, sources[0])
    return w


def _choose_vjp(first_wins: str):
    """maximum/minimum: the gradient goes to the chosen argument; ties split it equally."""
    def vjp(g, n):
        a, b = n.args
        half = make("where", make("eq", a, b), g / 2, const(0))
        return (select(make(first_wins, a, b), g, half, n),
                select(make(first_wins, b, a), g, half, n))

    def jvp(ts, n):
        a, b = n.args
        ta = ts[0] if ts[0] is not None else const(0)
        tb = ts[1] if ts[1] is not None else const(0)
        tie = make("where", make("eq", a, b), (ta + tb) / 2, tb)
        return make("where", make(first_wins, a, b), ta, tie)
    return vjp, jvp


_TIE_SPLIT = '''\
def _tie_split(cond, tie, dtype):
    """1 where cond, 1/2 where tie, 0 elsewhere: the weights of maximum's and minimum's
    adjoints, float32 for `dtype` float64 or wider (0, 1/2 and 1 are exact in it, and a
    product with them keeps the other factor's dtype) at half float64's memory."""
    half = np.asarray(0.5, dtype if np.can_cast(dtype, np.float32) else np.float32)
    return cond + tie * half
'''


def _emit_tie_split(numpy: bool):
    """tie_split(cond, tie, like): `cond + tie / 2` as numbers of `like`'s dtype. NumPy
    (`_tie_split`) makes them float32 for float32 and wider (exact; the product with them
    has the other factor's dtype): the (N, N) weights of t-SNE's clipping held a float64
    array more at its peak. The array API has no arithmetic on booleans, so it casts each
    first."""
    def emit(p, node):
        cond, tie = p.arg(node, 0, 0), p.arg(node, 1, 0)
        dtype = p.dtype_of(p.arg(node, 2, PREC_CALL))
        if numpy:
            return p.helper("_tie_split", [cond, tie, dtype]), PREC_CALL
        as_num = [p.call("astype", [p.arg(node, i, 0), dtype]) for i in (0, 1)]
        return f"{as_num[0]} + {as_num[1]} / 2", PREC_ADD
    return emit


# tie_split(cond, tie, like): 1 where cond, 1/2 where tie, 0 elsewhere (cond and tie never
# hold together), in like's dtype: the weights of maximum's and minimum's adjoint (float32
# in NumPy for a wider like: "narrow", its buffer never takes a float64 product).
defop("tie_split", 3, shape=lambda args: broadcast(args[0].shape, args[1].shape),
      emit={"numpy": _emit_tie_split(True), "default": _emit_tie_split(False)},
      prelude=_TIE_SPLIT, traits=frozenset({"nondiff", "narrow"}), domain=(REAL, REAL, REAL))


def _half_of(h, a) -> bool:
    """`h` is `a / 2` (canonically `1/2 * a`, or `-1/2 * b` when `a` is `-b`)."""
    if h.op == "mul" and h.args[1] is a:
        return _is(h.args[0], sympy.Rational(1, 2))
    if h.op == "mul" and a.op == "neg" and h.args[1] is a.args[0]:
        return _is(h.args[0], sympy.Rational(-1, 2))
    return h.op == "div" and h.args[0] is a and _is(h.args[1], 2)


@rewrite("where", tag="lower")
def where_tie_split(cond, a, b):
    """The adjoint of maximum/minimum, `where(x > y, g, where(x == y, g / 2, 0))`, is
    `g * tie_split(x > y, x == y)`: the same tie rule (half the gradient to each argument
    of a tie) as a product with the weights `(x > y) + (x == y) / 2`, where NumPy's two
    `where`s take ~3x as long. Where neither comparison holds (also where x or y is NaN)
    the result is `g * 0`: 0 as before, but NaN where g is NaN or infinite (JAX's
    convention too; `where` gave 0). The weights have g's dtype (float32 stays)."""
    if cond.op not in ("gt", "lt") or b.op != "where" or not _is(b.args[2], 0):
        return None
    tie, half = b.args[0], b.args[1]
    x, y = cond.args
    if tie.op != "eq" or tie.args not in ((x, y), (y, x)):
        return None
    if a.dtype != "float" or a.shape != cond.shape or not _half_of(half, a):
        return None
    sources = dtype_sources(a)
    if not sources:
        return None
    return make("mul", a, make("tie_split", cond, tie, sources[0]))


_max_vjp, _max_jvp = _choose_vjp("gt")
_min_vjp, _min_jvp = _choose_vjp("lt")
defop("maximum", 2, shape=_bshape, emit=call("maximum"), traits=EW, domain=(REAL, REAL),
      ufunc="maximum",
      vjp=_max_vjp, jvp=_max_jvp)
defop("minimum", 2, shape=_bshape, emit=call("minimum"), traits=EW, domain=(REAL, REAL),
      ufunc="minimum",
      vjp=_min_vjp, jvp=_min_jvp)


# ---------------------------------------------------------------- unary functions

def _unary(name, *, emit=None, vjp=None, jvp=None, domain=REAL, traits=EW, prelude=None,
           ufunc=None, fold=None):
    """An elementwise function of one argument; `vjp`/`jvp` give the local derivative.
    Emitted as `np.<name>(x)` (a NumPy ufunc) unless `emit` says otherwise. `fold`
    evaluates it on a scalar constant, which must stay a Python number: NumPy's own
    `np.log(2)` is a float64 that would turn float32 arrays into float64."""
    ufunc = ufunc if emit else (ufunc or name)
    if fold is not None:   # the op's first rule
        rewrite(name, name=f"{name}_fold")(_folding(fold, ufunc))
    return defop(name, 1, shape=_bshape, emit=emit or call(name), vjp=vjp, jvp=jvp,
                 domain=(domain,), traits=traits, prelude=prelude, ufunc=ufunc)


# Functions kept symbolic when applied to an exact number that sympy leaves unevaluated
# (log(2 * pi), exp(2)): the constant then prints as the expression the source wrote
# (`D * float(np.log(2 * np.pi))`, a Python float in float64) rather than as a magic number.
_SYMBOLIC = {"log": sympy.log, "exp": sympy.exp, "sin": sympy.sin, "cos": sympy.cos,
             "tan": sympy.tan, "tanh": sympy.tanh, "arctan": sympy.atan}


def _symbolic(ufunc, value):
    """`ufunc(value)` as an exact sympy expression, or None where sympy would evaluate it
    (sin(pi) is exactly 0 where float64 gives 1.2e-16: folding follows float64) or the
    value is not a finite real."""
    fn = _SYMBOLIC.get(ufunc)
    if fn is None or value.has(sympy.Float) or not _small(value):
        return None
    r = fn(value)
    return r if type(r) is fn and _tame(r) else None


def _folding(fold, ufunc):
    """The rule folding the function of a numeric constant: kept exact where sympy has it
    (`_symbolic`), else with `fold` (a Python function), and where that raises (outside its
    domain, overflow) as NumPy's ufunc does in float64 (nan, inf). Without a NumPy ufunc the
    constant stays unfolded."""
    def rule(x):
        """The function of a numeric scalar constant, folded."""
        if x.is_const and x.value.is_number:
            exact = _symbolic(ufunc, x.value)
            if exact is not None:
                return const(exact)
            v = _as_float(x.value)
            if math.isnan(v):
                return const(math.nan)
            try:
                return const(float(fold(v)))
            except (ValueError, OverflowError, ZeroDivisionError):
                f = getattr(np, ufunc, None) if ufunc else None
                if isinstance(f, np.ufunc):
                    with np.errstate(all="ignore"):
                        return const(float(f(np.float64(v))))
                return None
        return None
    return rule


def _from_local(local):
    """VJP and JVP rules from `local(node)`, the derivative of f at the node's argument."""
    return dict(vjp=lambda g, n: (g * local(n),), jvp=lambda ts, n: ts[0] * local(n))


@rewrite("log")
def log_exp(x):
    """`log(exp(x))` is `x`."""
    return x.args[0] if x.op == "exp" else None


@rewrite("log", "stabilize")
def log_sigmoid(x):
    """`log(sigmoid(z))` is `-softplus(-z)`, `log(sigmoid_neg(z))` is `-softplus(z)`:
    finite for large |z|."""
    if x.op == "sigmoid":
        return -make("softplus", -x.args[0])
    return -make("softplus", x.args[0]) if x.op == "sigmoid_neg" else None


@rewrite("log", "stabilize")
def log_one_minus_sigmoid(x):
    """`log(1 - sigmoid(z))` is `log(sigmoid(z)) - z`, i.e. `-softplus(-z) - z`, finite for
    large z where `1 - sigmoid(z)` rounds to 0: the second term of a binary cross-entropy
    written out by hand, `x * log(p) + (1 - x) * log(1 - p)` with `p = sigmoid(a)`
    (PyTorch's VAE example). Written with `softplus(-z)`, not as `-softplus(z)`, so both
    terms share one logaddexp (NumPy's logaddexp costs about as much as the sigmoid, the
    subtraction and the log it replaces together)."""
    if x.op == "sub" and _is(x.args[0], 1) and x.args[1].op == "sigmoid":
        z = x.args[1].args[0]
        return -make("softplus", -z) - z
    return None


@rewrite("log", "stabilize")
def log_softmax(x):
    """`log(exp(z) / s)` is `z - log(s)` (where the left side is defined, s > 0): the
    log-softmax, finite where the softmax underflows to 0."""
    if x.op == "div" and x.args[0].op == "exp":
        return x.args[0].args[0] - make("log", x.args[1])
    return None


@rewrite("exp")
def exp_log(x):
    """`exp(log(x))` is `x` (where the left side is defined, x > 0)."""
    return x.args[0] if x.op == "log" else None


@rewrite("sqrt")
def sqrt_dimension(x):
    """The square root of a constant expression of dimensions is `D ** 0.5`."""
    if x.is_const:
        value = fold("pow", x.value, sympy.Rational(1, 2))
        return None if value is None else const(value)
    return None


_unary("exp", vjp=lambda g, n: (g * n,), jvp=lambda ts, n: ts[0] * n, fold=math.exp)
_unary("log", vjp=lambda g, n: (g / n.args[0],), jvp=lambda ts, n: ts[0] / n.args[0],
       domain=POSITIVE, fold=math.log)
_unary("log1p", vjp=lambda g, n: (g / (1 + n.args[0]),),
       jvp=lambda ts, n: ts[0] / (1 + n.args[0]), domain=POSITIVE, fold=math.log1p)
_unary("sqrt", vjp=lambda g, n: (g / (2 * n),), jvp=lambda ts, n: ts[0] / (2 * n),
       domain=POSITIVE, fold=math.sqrt)
_unary("sign", traits=NONDIFF, domain=NONZERO, fold=lambda x: float((x > 0) - (x < 0)))
_unary("abs", **_from_local(lambda n: make("sign", n.args[0])), domain=NONZERO, fold=abs,
       ufunc="absolute")
_unary("tanh", **_from_local(lambda n: 1 - n ** 2), fold=math.tanh)

_SIGMOID = '''\
@np.errstate(over="ignore")  # exp(-x) overflows below -709: 1 / (1 + inf) is exactly 0
def _sigmoid(x, out=None):
    """The logistic function 1 / (1 + exp(-x)) (into `out` if given)."""
    if not getattr(x, "ndim", 0):  # a number or a 0-d array
        return 1 / (1 + np.exp(-x))
    z = np.negative(x, out=out)
    np.exp(z, out=z)
    z += 1
    return np.reciprocal(z, out=z)
'''
# The VJP multiplies the cotangent by the saved output first, `(g * s) * (1 - s)`, so the
# scheduler can do it in the cotangent's buffer when that dies there.
def _sigmoid_of(x: float) -> float:
    return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))


_unary("sigmoid", emit=call("_sigmoid"), prelude=_SIGMOID, ufunc="_sigmoid",
       fold=_sigmoid_of,
       vjp=lambda g, n: (g * n * (1 - n),), jvp=lambda ts, n: ts[0] * n * (1 - n))

_SIGMOID_NEG = '''\
@np.errstate(over="ignore")  # exp(x) overflows above 709: 1 / (1 + inf) is exactly 0
def _sigmoid_neg(x, out=None):
    """The logistic function of -x, 1 / (1 + exp(x)), with no pass to negate x (into
    `out` if given)."""
    if not getattr(x, "ndim", 0):  # a number or a 0-d array
        return 1 / (1 + np.exp(x))
    z = np.exp(x, out=out)
    z += 1
    return np.reciprocal(z, out=z)
'''


@rewrite("sigmoid", "fuse", inspects=("neg",))
def sigmoid_of_negation(x):
    """`sigmoid(-z)` is `sigmoid_neg(z)`, `1 / (1 + exp(z))`: the same numbers (negation is
    exact) with no pass over the data to negate z. The derivative of `softplus(-z)`."""
    return make("sigmoid_neg", x.args[0]) if x.op == "neg" else None


@rewrite("sigmoid_neg", inspects=("neg",))
def sigmoid_neg_of_negation(x):
    """`sigmoid_neg(-z)` is `sigmoid(z)`."""
    return make("sigmoid", x.args[0]) if x.op == "neg" else None


# sigmoid_neg(z) = sigmoid(-z), made only by the rules above (not a function of the
# language); its slope is -s (1 - s) for s = sigmoid_neg(z), the cotangent taken first as
# for sigmoid.
_unary("sigmoid_neg", emit=call("_sigmoid_neg"), prelude=_SIGMOID_NEG, ufunc="_sigmoid_neg",
       fold=lambda x: _sigmoid_of(-x),
       vjp=lambda g, n: (-(g * n * (1 - n)),), jvp=lambda ts, n: -(ts[0] * n * (1 - n)))


def _emit_relu(p, node):
    return p.call("maximum", [p.arg(node, 0, 0), "0"]), PREC_CALL


def _relu_mask(x, t):
    """relu's derivative applied to `t`: `t * (x > 0)` with the mask as numbers of x's
    dtype, not `where(x > 0, t, 0)`: NumPy's `where` branches per element and mispredicts
    on a mask like a hidden layer's (half the units active, in no order), ~7x as slow as
    the product (1.15 vs 0.17 ms on 5000 x 64). Where t is infinite or NaN at an inactive
    unit the product is NaN, not 0: the convention of max's and maximum's adjoints here."""
    return t * make("cast", make("gt", x, const(0)), x)


_unary("relu", emit=_emit_relu, domain=NONZERO, fold=lambda x: max(x, 0.0),
       vjp=lambda g, n: (_relu_mask(n.args[0], g),),
       jvp=lambda ts, n: _relu_mask(n.args[0], ts[0]))


def _softplus_of(x: float) -> float:
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


def _emit_softplus(p, node):
    return p.call("logaddexp", ["0", p.arg(node, 0, 0)]), PREC_CALL


_unary("softplus", emit=_emit_softplus, **_from_local(lambda n: make("sigmoid", n.args[0])),
       fold=lambda x: _softplus_of(x))

_SOFTPLUS_NEG = '''\
def _softplus_neg(x, out=None):
    """softplus(-x) = log(1 + exp(-x)), `np.logaddexp(0, -x)` computed in one new array (or
    `out` if given) for both steps."""
    if not getattr(x, "ndim", 0):  # a number or a 0-d array
        return np.logaddexp(0, -x)
    z = np.negative(x, out=out)
    return np.logaddexp(0, z, out=z)
'''


@rewrite("softplus", "fuse", inspects=("neg",))
def softplus_of_negation(x):
    """`softplus(-z)` is `softplus_neg(z)`: the negation and `logaddexp` in one array, where
    the sigmoid of the negation its derivative takes reads z (`sigmoid_neg`) and keeps it."""
    return make("softplus_neg", x.args[0]) if x.op == "neg" else None


@rewrite("softplus_neg", inspects=("neg",))
def softplus_neg_of_negation(x):
    """`softplus_neg(-z)` is `softplus(z)`."""
    return make("softplus", x.args[0]) if x.op == "neg" else None


def _emit_softplus_neg(p, node):
    return p.call("logaddexp", ["0", "-" + unary_operand(p.code_of(node.args[0]))]), PREC_CALL


# softplus_neg(z) = softplus(-z), made only by the rules above (not a function of the
# language); its slope is -sigmoid(-z), `-sigmoid_neg(z)`. NumPy: the helper; other
# targets `logaddexp(0, -z)` as written.
_unary("softplus_neg", emit={"numpy": call("_softplus_neg"), "default": _emit_softplus_neg},
       prelude=_SOFTPLUS_NEG, ufunc="_softplus_neg", fold=lambda x: _softplus_of(-x),
       **_from_local(lambda n: -make("sigmoid_neg", n.args[0])))


def _emit_identity(p, node):
    return p.code_of(node.args[0])


defop("stop_gradient", 1, shape=_bshape, emit=_emit_identity, traits=NONDIFF | {"transparent"},
      view="view", domain=(REAL,))


def _emit_cast(p, node):
    dtype = p.dtype_of(p.arg(node, 1, PREC_CALL))
    if not node.shape:   # a Python int (a loop's index) has no astype
        return p.call("asarray", [p.arg(node, 0, 0)], [f"dtype={dtype}"]), PREC_CALL
    return p.method(p.arg(node, 0, PREC_CALL), "astype", [dtype]), PREC_CALL


# cast(mask, like): a boolean mask as numbers of `like`'s dtype.
defop("cast", 2, shape=lambda args: args[0].shape, emit=_emit_cast, traits=frozenset({"nondiff"}),
      domain=(REAL, REAL))


# ---------------------------------------------------------------- built-in functions

def _fn(name, op=None, params=("x",), **fields):
    defbuiltin(name, params, lambda **kw: make(op or name, *(kw[p] for p in params)),
               elementwise=True, **fields)


for _name in ("exp", "log", "log1p", "sqrt", "abs", "tanh", "sigmoid", "relu", "softplus",
              "sign"):
    _fn(_name)
_fn("neg")
_fn("maximum", params=("x", "y"))
_fn("minimum", params=("x", "y"))


def _where_builtin(condition, x, y, inputs):
    """where(condition, x, y). With numbers in both branches (`where(x >= 0, 1.0, 0.0)`)
    the value is *weak* (`dtypes.weak`: its numbers come from constants only), but NumPy
    makes it an array of its default dtype, float64 (int64 for integers), which then turns
    float32 results into float64. So it is cast to the dtype of the entry point's
    constant arrays (`dtype_witness`, as `zeros` and `ones`); derivative rules cast their
    selections the same way (`select`, `autodiff.common.materialize`)."""
    w = make("where", condition, x, y)
    return make("cast", w, dtype_witness(inputs)) if weak(w) else w


defbuiltin("where", ("condition", "x", "y"), _where_builtin, needs_inputs=True,
           elementwise=True, condition="condition")
defbuiltin("square", ("x",), lambda x: x ** 2, elementwise=True)
defbuiltin("reciprocal", ("x",), lambda x: 1 / x, elementwise=True)

__all__ = ["UNIT"]  # re-exported domain name used by tests


# ---------------------------------------------------------------- the order of a sum's terms

def _broadcast_only(x) -> bool:
    """`x` is `u + v` of two terms each smaller than `x` (they broadcast to its shape)."""
    return x.op == "add" and all(size(t.shape) != size(x.shape) for t in x.args)


def _minus(m):
    """`-m`, with the sign on the left operand of a matrix product (`(-2 * Y) @ Y.T`)."""
    if m.op == "neg":
        return m.args[0]
    if m.op == "matmul":   # the sign on the left operand, smaller than the product
        c, y = _scaled(m.args[0])
        left = make("neg", y) if c is None else make("mul", const(-c), y)
        return make("matmul", left, m.args[1])
    return make("neg", m)


@rewrite("sub", tag="lower", inspects=("matmul",))
def sub_broadcast_terms_last(a, b):
    """`u + v - M` with u and v broadcast (`1 + s[:, None] + s[None, :] - 2 * Y @ Y.T`, a
    pairwise squared distance) is `-M + u + v`: the full-size product first, the small
    terms added into its buffer, one (N, N) array instead of two (once the scheduler takes
    a product's result as a buffer). The terms add in another order (last bits differ)."""
    if b.op != "matmul" or b.shape != a.shape or not _broadcast_only(a):
        return None
    return make("add", make("add", _minus(b), a.args[0]), a.args[1])
