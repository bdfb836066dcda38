"""Elementwise operations: arithmetic, comparisons, transcendental functions."""

from __future__ import annotations

import math
import operator

import numpy as np
import sympy

from ..dims import broadcast
from ..ir import builder, const, make
from ._emit import call, infix, scaled_hint
from .dtypes import dtype_sources, weak
from .registry import (
    NONZERO,
    POSITIVE,
    PREC_ADD,
    PREC_CALL,
    PREC_CMP,
    PREC_MUL,
    PREC_NEG,
    PREC_POW,
    REAL,
    UNIT,
    defbuiltin,
    defop,
)

EW = frozenset({"elementwise"})
NONDIFF = frozenset({"elementwise", "nondiff"})


def _bshape(args, **_):
    return broadcast(*(a.shape for a in args))


def _total(*terms):
    """Sum of the non-None terms (None means a symbolic zero)."""
    out = None
    for t in terms:
        if t is not None:
            out = t if out is None else out + t
    return out


def _is(node, value) -> bool:
    return node.is_const and node.value == value


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
    return len(broadcast(*(a.shape for a in result_args))) == x.ndim and all(
        a.ndim == 0 for a in result_args if a is not x)


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


# Canonical forms, applied as nodes are built (each rule makes the graph strictly simpler
# or moves a scalar constant outwards, so rewriting terminates):
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


def _canon_add(a, b):
    if a.is_const and b.is_const:
        value = fold("add", a.value, b.value)
        return None if value is None else const(value)
    if (a.op in _ZEROS or b.op in _ZEROS) and (zero := _drop_zero(a, b)) is not None:
        return zero
    if _is(b, 0) and _keeps_shape(a, (a, b)):
        return a
    if _is(a, 0) and _keeps_shape(b, (a, b)):
        return b
    if b.op == "neg":
        return a - b.args[0]
    shared = _common_factor(a, b)
    if shared is not None:
        return shared
    (ca, xa), (cb, xb) = _scaled(a), _scaled(b)
    if ca is not None and cb is not None:
        if ca == cb:
            return const(ca) * (xa + xb)
        if ca == -cb:
            return const(cb) * (xb - xa) if _negative(ca) else const(ca) * (xa - xb)
    if _negative(cb):
        return a - const(-cb) * xb
    if _negative(ca):
        return b - const(-ca) * xa
    return None


def _canon_sub(a, b):
    if a.is_const and b.is_const:
        value = fold("sub", a.value, b.value)
        return None if value is None else const(value)
    if (a.op in _ZEROS or b.op in _ZEROS) and (zero := _drop_zero(a, b)) is not None:
        return zero if zero is a else -b
    if _is(b, 0) and _keeps_shape(a, (a, b)):
        return a
    if _is(a, 0) and _keeps_shape(b, (a, b)):
        return -b
    if b.op == "neg":
        return a + b.args[0]
    (ca, xa), (cb, xb) = _scaled(a), _scaled(b)
    if ca is not None and ca == cb:
        return const(ca) * (xa - xb)
    if _negative(cb):
        return a + const(-cb) * xb
    return None


def _canon_mul(a, b):
    if a.is_const and b.is_const:
        value = fold("mul", a.value, b.value)
        return None if value is None else const(value)
    if b.is_const and not a.is_const:  # constants go first: `2 * x`
        return b * a
    if _is(a, 1) and _keeps_shape(b, (a, b)):
        return b
    if _is(a, -1) and _keeps_shape(b, (a, b)):
        return -b
    if _is(a, 0) and b.ndim and _keeps_shape(b, (a, b)):   # zeros propagate
        return make("zeros_like", b)
    if b.op in _ZEROS and _zero_of(b, a) and _is_result(b, (a, b)):
        return b
    if a.op in _ZEROS and _zero_of(a, b) and _is_result(a, (a, b)):
        return a
    if a.is_const and b.op == "mul" and b.args[0].is_const:  # c1 * (c2 * x)
        return (a * b.args[0]) * b.args[1]
    if not a.is_const:
        (ca, xa), (cb, xb) = _scaled(a), _scaled(b)
        if ca is not None:                      # (c * x) * y -> c * (x * y)
            return const(ca) * (xa * b)
        if cb is not None:                      # x * (c * y) -> c * (x * y)
            return const(cb) * (a * xb)
        if a.op == "div" and _is(a.args[0], 1):  # (1 / y) * x -> x / y
            return b / a.args[1]
        if b.op == "div" and _is(b.args[0], 1):
            return a / b.args[1]
    if a.is_const or b.is_const or any(x.is_const for x in a.args + b.args):
        pass                                    # scalar constants are handled above
    elif a.op == "mul" and _smaller(b, a):      # (p * Q) * b -> (p * b) * Q for small p, b
        p, q = a.args
        if _smaller(p, a) and not _smaller(q, a):
            return (p * b) * q
        if _smaller(q, a) and not _smaller(p, a):
            return (q * b) * p
    elif b.op == "mul" and _smaller(a, b):      # a * (p * Q) -> (a * p) * Q
        p, q = b.args
        if _smaller(p, b) and not _smaller(q, b):
            return (a * p) * q
    if a.op == "neg" and b.op == "neg":
        return a.args[0] * b.args[0]
    if a.is_const and b.op == "neg":
        return const(-a.value) * b.args[0]
    if a.op == "neg":                           # signs move outwards: -(a * b)
        return -(a.args[0] * b)
    if b.op == "neg":
        return -(a * b.args[0])
    return None


def _canon_div(a, b):
    if a.is_const and b.is_const:
        value = fold("div", a.value, b.value)
        return None if value is None else const(value)
    if b.is_const:                              # x / c -> (1 / c) * x
        inverse = fold("div", sympy.Integer(1), b.value)
        return None if inverse is None else const(inverse) * a
    if a.is_const and not _is(a, 1):            # c / y -> c * (1 / y)
        return a * (const(1) / b)
    ca, xa = _scaled(a)
    if ca is not None:                          # (c * x) / y -> c * (x / y)
        return const(ca) * (xa / b)
    if a.op == "neg":                           # (-x) / y -> -(x / y)
        return -(a.args[0] / b)
    return None


def _fuse_div(a, b):
    # The logistic function written out: 1 / (1 + exp(-z)) is sigmoid(z).
    if (_is(a, 1) and b.op == "add" and _is(b.args[0], 1) and b.args[1].op == "exp"
            and b.args[1].args[0].op == "neg" and b.args[1].args[0].shape == b.shape):
        return make("sigmoid", b.args[1].args[0].args[0])
    return None


def _canon_neg(x):
    if x.is_const:
        value = fold("neg", x.value)
        return None if value is None else const(value)
    if x.op in _ZEROS and _zero_of(x, x):
        return x
    if x.op == "neg":
        return x.args[0]
    c, y = _scaled(x)
    if c is not None:
        return const(-c) * y
    return None


def _canon_pow(a, b):
    if a.is_const and b.is_const:
        value = fold("pow", a.value, b.value)
        return None if value is None else const(value)
    if _is(b, 1):
        return a
    return None


defop("add", 2, shape=_bshape, emit=infix("+", PREC_ADD), canon=_canon_add,
      ufunc="add",
      traits=EW | {"linear"}, domain=(REAL, REAL),
      vjp=lambda g, n: (g, g),
      jvp=lambda ts, n: _total(*ts))

defop("sub", 2, shape=_bshape, emit=infix("-", PREC_ADD), canon=_canon_sub, hint="diff",
      ufunc="subtract",
      traits=EW | {"linear"}, domain=(REAL, REAL),
      vjp=lambda g, n: (g, -g),
      jvp=lambda ts, n: ts[0] if ts[1] is None else (-ts[1] if ts[0] is None else ts[0] - ts[1]))

def _emit_mul(p, node):
    """`c * x`, spelled `x / q` or `-x / q` when the constant factor is 1/q or -1/q."""
    a = node.args[0]
    if a.is_const:
        num, den = a.value.as_numer_denom()
        if den != 1 and num in (1, -1):
            sign = "-" if num == -1 else ""
            text, _ = p.scalar(den)
            den_text = text if den.is_Atom else f"({text})"
            return f"{sign}{p.arg(node, 1, PREC_MUL if not sign else PREC_NEG)} / {den_text}", \
                PREC_MUL
    return infix("*", PREC_MUL)(p, node)


defop("mul", 2, shape=_bshape, emit=_emit_mul, canon=_canon_mul,
      ufunc="multiply", hint=scaled_hint,
      traits=EW, domain=(REAL, REAL),
      vjp=lambda g, n: (g * n.args[1], g * n.args[0]),
      jvp=lambda ts, n: _total(ts[0] and ts[0] * n.args[1], ts[1] and n.args[0] * ts[1]))

defop("div", 2, shape=_bshape, emit=infix("/", PREC_MUL), canon=_canon_div, fuse=_fuse_div,
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
      canon=_canon_pow, ufunc="power", traits=EW, domain=(POSITIVE, REAL), vjp=_pow_vjp, jvp=_pow_jvp)


def _emit_neg(p, node):
    return "-" + p.arg(node, 0, PREC_NEG), PREC_NEG


defop("neg", 1, shape=_bshape, emit=_emit_neg, canon=_canon_neg, traits=EW | {"linear"},
      ufunc="negative",
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


defop("where", 3, shape=_bshape, emit=call("where"), traits=EW, domain=(REAL, REAL, REAL),
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
           canon=None, fuse=None, ufunc=None, fold=None):
    """An elementwise function of one argument; `vjp`/`jvp` give the local derivative.
    Emitted as `np.<name>(x)` (a NumPy ufunc) unless `emit` says otherwise. `fold`
    evaluates it on a scalar constant, which must stay a Python number: NumPy's own
    `np.log(2)` is a float64 that would turn float32 arrays into float64."""
    return defop(name, 1, shape=_bshape, emit=emit or call(name), vjp=vjp, jvp=jvp,
                 domain=(domain,), traits=traits, prelude=prelude,
                 canon=_folding(fold, canon, ufunc if emit else (ufunc or name)) if fold
                 else canon, fuse=fuse,
                 ufunc=ufunc if emit else (ufunc or name))


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


def _folding(fold, canon, ufunc):
    """A canon rule that first folds the function of a numeric constant: kept exact where
    sympy has it (`_symbolic`), else with `fold` (a Python function), and where that raises
    (outside its domain, overflow) as NumPy's ufunc does in float64 (nan, inf). Without a
    NumPy ufunc the constant stays unfolded."""
    def rule(x):
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
        return canon(x) if canon else None
    return rule


def _from_local(local):
    """VJP and JVP rules from `local(node)`, the derivative of f at the node's argument."""
    return dict(vjp=lambda g, n: (g * local(n),), jvp=lambda ts, n: ts[0] * local(n))


def _canon_log(x):
    if x.op == "exp":
        return x.args[0]
    return None


def _fuse_log(x):
    if x.op == "sigmoid":  # log(sigmoid(z)) = -softplus(-z), stable for large |z|
        return -make("softplus", -x.args[0])
    if x.op == "div" and x.args[0].op == "exp":
        # log(exp(z) / s) = z - log(s) wherever the left side is defined (then s > 0):
        # log(softmax(x)) becomes log_softmax(x), finite where softmax underflows to 0.
        return x.args[0].args[0] - make("log", x.args[1])
    return None


def _canon_exp(x):
    if x.op == "log":   # exp(log(x)) = x wherever the left side is defined (x > 0)
        return x.args[0]
    return None


def _canon_sqrt(x):
    if x.is_const:   # sqrt(D) of a dimension: `D ** 0.5`, a Python float
        value = fold("pow", x.value, sympy.Rational(1, 2))
        return None if value is None else const(value)
    return None


_unary("exp", vjp=lambda g, n: (g * n,), jvp=lambda ts, n: ts[0] * n, fold=math.exp,
       canon=_canon_exp)
_unary("log", vjp=lambda g, n: (g / n.args[0],), jvp=lambda ts, n: ts[0] / n.args[0],
       domain=POSITIVE, canon=_canon_log, fuse=_fuse_log, fold=math.log)
_unary("log1p", vjp=lambda g, n: (g / (1 + n.args[0]),),
       jvp=lambda ts, n: ts[0] / (1 + n.args[0]), domain=POSITIVE, fold=math.log1p)
_unary("sqrt", vjp=lambda g, n: (g / (2 * n),), jvp=lambda ts, n: ts[0] / (2 * n),
       domain=POSITIVE, fold=math.sqrt, canon=_canon_sqrt)
_unary("sign", traits=NONDIFF, domain=NONZERO, fold=lambda x: float((x > 0) - (x < 0)))
_unary("abs", **_from_local(lambda n: make("sign", n.args[0])), domain=NONZERO, fold=abs,
       ufunc="absolute")
_unary("tanh", **_from_local(lambda n: 1 - n ** 2), fold=math.tanh)

_SIGMOID = '''\
@np.errstate(over="ignore")   # exp(-x) overflows below -709: 1 / (1 + inf) is exactly 0
def _sigmoid(x, out=None):
    """The logistic function 1 / (1 + exp(-x)) (into `out` if given)."""
    if np.ndim(x) == 0:
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


def _emit_relu(p, node):
    return p.call("maximum", [p.arg(node, 0, 0), "0"]), PREC_CALL


def _relu_mask(x, t):
    return select(make("gt", x, const(0)), t, const(0), x)


_unary("relu", emit=_emit_relu, domain=NONZERO, fold=lambda x: max(x, 0.0),
       vjp=lambda g, n: (_relu_mask(n.args[0], g),),
       jvp=lambda ts, n: _relu_mask(n.args[0], ts[0]))


def _emit_softplus(p, node):
    return p.call("logaddexp", ["0", p.arg(node, 0, 0)]), PREC_CALL


_unary("softplus", emit=_emit_softplus, **_from_local(lambda n: make("sigmoid", n.args[0])),
       fold=lambda x: max(x, 0.0) + math.log1p(math.exp(-abs(x))))


def _emit_identity(p, node):
    return p.code_of(node.args[0])


defop("stop_gradient", 1, shape=_bshape, emit=_emit_identity, traits=NONDIFF | {"transparent"},
      view="view", domain=(REAL,))


def _emit_cast(p, node):
    dtype = p.dtype_of(p.arg(node, 1, PREC_CALL))
    return p.method(p.arg(node, 0, PREC_CALL), "astype", [dtype]), PREC_CALL


# cast(mask, like): a boolean mask as numbers of `like`'s dtype.
defop("cast", 2, shape=lambda args: args[0].shape, emit=_emit_cast, traits=frozenset({"nondiff"}),
      domain=(REAL, REAL))


# ---------------------------------------------------------------- built-in functions

def _fn(name, op=None, params=("x",)):
    defbuiltin(name, params, lambda **kw: make(op or name, *(kw[p] for p in params)),
               elementwise=True)


for _name in ("exp", "log", "log1p", "sqrt", "abs", "tanh", "sigmoid", "relu", "softplus",
              "sign"):
    _fn(_name)
_fn("neg")
_fn("maximum", params=("x", "y"))
_fn("minimum", params=("x", "y"))
_fn("where", params=("condition", "x", "y"))
defbuiltin("square", ("x",), lambda x: x ** 2, elementwise=True)
defbuiltin("reciprocal", ("x",), lambda x: 1 / x, elementwise=True)

__all__ = ["UNIT"]  # re-exported domain name used by tests
