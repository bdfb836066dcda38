"""Constant arrays: `zeros(shape)`, `ones(shape)`, `eye(n)`.

A constant array needs a dtype, and a float64 array would turn a float32 computation into
float64. So these ops take as arguments the nodes whose dtype they take, and nothing else
of them: the inputs (arguments of the generated function, so always at hand) that the
array meets. The built-ins take one argument of the entry point (the frontend passes the
entry point's arguments as `inputs`; see `dtype_witness`); derivative rules take the inputs
their primal depends on (`dtype_sources`, `eye_like`). `ones((N, 1))` is emitted as
`np.ones((N, 1), dtype=X.dtype)`; with several sources, `dtype=np.result_type(X, y)`
(as the printer spells them: `Printer.creation`, `dtype_of`, `result_type`).
"""

from __future__ import annotations

import sympy

from ..dims import as_expr, fmt_dim
from ..errors import ShapeError
from ..ir import const, make
from ._emit import call
from .dtypes import INT, dtype_sources
from .registry import PREC_CALL, PREC_LOWEST, REAL, defbuiltin, defop, rewrite
from .shape_ops import as_shape

# (`dtype_only`: the arguments are read for their dtype only, never for their values)
CONST = frozenset({"nondiff", "dtype_only"})


def dtype_of(p, node) -> str:
    """Code for the dtype that the arguments of `node` promote to."""
    args = node.args
    if len(args) == 1 and args[0].ndim:
        return p.dtype_of(p.arg(node, 0, PREC_CALL))
    return p.result_type(p.args(node, PREC_LOWEST))


def _emit_full(p, node):
    value, shape = node.attr("value"), p.shape(node.attr("shape"))
    dtype = dtype_of(p, node)
    if value in (0, 1):
        return p.creation("zeros" if value == 0 else "ones", shape, dtype), PREC_CALL
    return p.creation("full", shape, dtype, p.scalar(value)[0]), PREC_CALL


# full(sources..., value, shape): an array of `shape` filled with the number `value`, in
# the dtype of its arguments.
defop("full", None, shape=lambda args, value, shape: shape, emit=_emit_full, traits=CONST,
      domain=(REAL,), hint="full", buffer=lambda n: "zeros" if n.attr("value") == 0 else None)


def _emit_eye(p, node):
    n, m = node.attr("n"), node.attr("m")
    dims = p.scalar(n, integer=True)[0] + ("" if m == n else f", {p.scalar(m, integer=True)[0]}")
    return p.creation("eye", dims, dtype_of(p, node)), PREC_CALL


# eye(sources..., n, m): the n x m identity matrix (ones on the diagonal), in the dtype of
# its arguments.
defop("eye", None, shape=lambda args, n, m: (n, m), emit=_emit_eye, traits=CONST, domain=(REAL,),
      hint="I")


def eye_like(x, n, m=None):
    """The identity matrix of size n x m (m = n by default) for multiplying with arrays
    derived from `x`: in the dtype of one array input of `x` (it meets the others in that
    product, which promotes as `x` does), or of all its inputs when they are scalars (which
    may be Python floats)."""
    sources = dtype_sources(x)
    arrays = [s for s in sources if s.ndim]
    return make("eye", *(arrays[:1] or sources), n=n, m=n if m is None else m)


def dtype_witness(inputs):
    """The argument whose dtype the constant arrays of an entry point take: the first
    array Param, else the first float array argument, else the first float argument (an
    Index argument's integers are no float dtype), else the first argument."""
    for ok in (lambda a: a.ndim and a.attr("role") == "param",
               lambda a: a.ndim and a.dtype != INT, lambda a: a.dtype != INT,
               lambda a: True):
        for a in inputs:
            if ok(a):
                return a
    raise ShapeError("constant arrays need an entry point with arguments")


def scalar_array(c, inputs):
    """A number (a scalar constant node) as a 0-d array in the dtype of the entry point's
    constant arrays, for built-ins that treat their arguments as arrays."""
    return make("full", dtype_witness(inputs), value=c.value, shape=())


def _fill(value):
    def build(shape, inputs):
        return make("full", dtype_witness(inputs), value=sympy.Integer(value),
                    shape=as_shape(shape))
    return build


def _eye_builtin(n, inputs):
    if isinstance(n, bool) or not isinstance(n, (int, sympy.Basic)):
        raise ShapeError("the size of eye(n) must be a dimension or a positive integer")
    n = as_expr(n)
    if n.is_number and n <= 0:
        raise ShapeError(f"the size of eye(n) must be positive, got {fmt_dim(n)}")
    return make("eye", dtype_witness(inputs), n=n, m=n)


defbuiltin("zeros", ("shape",), _fill(0), static=("shape",), needs_inputs=True)
defbuiltin("ones", ("shape",), _fill(1), static=("shape",), needs_inputs=True)
defbuiltin("eye", ("n",), _eye_builtin, static=("n",), needs_inputs=True)


# ---------------------------------------------------------------- zeroing the diagonal

_ZERO_DIAGONAL = '''\
def _zero_diagonal(x, out=None):
    """x with the diagonal of its last two axes set to 0 (into `out` if given)."""
    if out is None:
        out = x.copy()
    elif out is not x:
        out[...] = x
    i = np.arange(min(out.shape[-2:]))
    out[..., i, i] = 0
    return out
'''


def _is_one(node) -> bool:
    return node.is_const and node.value == 1


# zero_diagonal(x): x with the diagonal of its last two axes set to 0, what `x * (1 - eye(N))`
# computes without building the (N, N) mask. Made by the lower rule `mul_off_diagonal` only
# (internal); linear, so its derivatives are itself.
defop("zero_diagonal", 1, shape=lambda args: args[0].shape, emit=call("_zero_diagonal"),
      prelude=_ZERO_DIAGONAL, ufunc="_zero_diagonal", traits=frozenset({"linear"}),
      domain=(REAL,), dtype="float",
      vjp=lambda g, n: (make("zero_diagonal", g),),
      jvp=lambda ts, n: make("zero_diagonal", ts[0]),
      vmap=lambda ts, n: make("zero_diagonal", ts[0]))


def _off_diagonal_mask(m) -> bool:
    """`m` is `1 - eye(N)` (square)."""
    return (m.op == "sub" and _is_one(m.args[0]) and m.args[1].op == "eye"
            and m.args[1].attr("n") == m.args[1].attr("m"))


def _same_dtype(x, mask) -> bool:
    """The product of `x` and `mask` has x's dtype: the eye's dtype source is one of x's."""
    return x.ndim >= 2 and all(a in dtype_sources(x) for a in mask.args[1].args)


@rewrite("mul", tag="lower", inspects=("sub",))
def mul_off_diagonal(a, b):
    """`x * (1 - eye(N))` is x with its diagonal set to 0 (`np.fill_diagonal`-like, in
    place where x's buffer dies): no (N, N) identity and mask built, no multiplication. The
    diagonal is 0 also where x is inf or NaN there (the product gave NaN)."""
    for x, m in ((a, b), (b, a)):
        if _off_diagonal_mask(m) and x.shape == m.shape and _same_dtype(x, m):
            return make("zero_diagonal", x)
    return None


@rewrite("div", tag="lower", inspects=("sub",))
def div_off_diagonal(a, b):
    """`(1 - eye(N)) / d` is `1 / d` with its diagonal set to 0 (the canonical form of
    `(1 / d) * (1 - eye(N))`)."""
    if _off_diagonal_mask(a) and b.shape == a.shape and _same_dtype(b, a):
        return make("zero_diagonal", make("div", a.args[0], b))
    return None



# ---------------------------------------------------------------- adding to the diagonal

_PLUS_DIAGONAL = '''\
def _plus_diagonal(x, c, out=None):
    """x + c * I for a square matrix x: c added to its diagonal (into `out` if given), with
    no identity matrix built."""
    if not isinstance(x, np.ndarray):  # a SciPy sparse product, say: a new dense array
        return x + c * np.eye(x.shape[-1], dtype=x.dtype)
    if out is None:
        out = np.array(x, dtype=np.result_type(x, c))
    elif out is not x:
        out[...] = x
    a = np.ascontiguousarray(out)  # out itself, unless it is a strided view
    diagonal = a.reshape(-1)[:: a.shape[-1] + 1]  # a view: every (n + 1)-th entry
    diagonal += c
    if a is not out:
        out[...] = a
    return out
'''


def _plus_diagonal_vjp(g, n):
    """The adjoint of x is g; of c, the trace of g."""
    return g, make("sum", make("diagonal", g), axes=(0,), keepdims=False)


def _plus_diagonal_jvp(ts, n):
    tx, tc = ts
    if tc is None:
        return tx
    if tx is None:
        return tc * eye_like(tc, n.shape[0])
    return make("plus_diagonal", tx, tc)


def _plus_diagonal_vmap(ts, n):
    """A batch of tangents (leading axis): tx + tc[:, None, None] * I."""
    tx, tc = ts
    if tc is not None:
        tc = make("expand_dims", tc, axes=(1, 2)) * eye_like(tc, n.shape[0])
    return tc if tx is None else tx if tc is None else tx + tc


# plus_diagonal(x, c): a square matrix x (n, n) plus c * I for a scalar c, what
# `x + c * eye(n)` computes without building the identity: c added to the diagonal, in place
# where x's buffer dies (`ufunc`: the scheduler passes `out=`). Made by the lower rule
# `add_scaled_identity` only (internal). "number_arg": c may be a Python number (its
# helpers give what a 0-d array of x's dtype gives), so a scalar argument needs no `_weak`.
defop("plus_diagonal", 2, shape=lambda args: args[0].shape, emit=call("_plus_diagonal"),
      prelude=_PLUS_DIAGONAL, ufunc="_plus_diagonal", traits=frozenset({"linear", "number_arg"}),
      domain=(REAL, REAL), dtype="float", hint="diag_add",
      vjp=_plus_diagonal_vjp, jvp=_plus_diagonal_jvp, vmap=_plus_diagonal_vmap)


def _scaled_identity(m):
    """c for m = c * I (`c * eye(n)`, `c * basis(v)` of a vector v, `c * (d * eye(n))`; the
    number 1 for the identity itself), else None."""
    if _identity(m):
        return 1
    if m.op == "mul":
        c, e = m.args
        if e.ndim == 0:
            c, e = e, c
        inner = _scaled_identity(e) if c.ndim == 0 else None   # (c * (d * I): c * d)
        if inner is not None:
            return c if isinstance(inner, int) else make("mul", c, inner)
    return None


def _identity(m) -> bool:
    return m.op == "eye" and m.attr("n") == m.attr("m") or m.op == "basis" and m.ndim == 2


def _diagonal_term(x, m):
    """c when `x + m` is `x + c * I`: m = c * I of x's shape (square), with no dtype that x
    does not have (the identity's); else None."""
    c = _scaled_identity(m)
    if c is None or x.ndim != 2 or x.shape != m.shape:
        return None
    sources = dtype_sources(x)
    if not all(s in sources for s in dtype_sources(m) if s.ndim):   # (the eye's dtype)
        return None
    return c


@rewrite("add", tag="lower", inspects=("mul", "eye", "basis"))
def add_scaled_identity(a, b):
    """`x + c * eye(n)` (x a square matrix, c a scalar) adds c to the diagonal of x, in place
    where x's buffer dies: no (n, n) identity built, scaled and added."""
    for x, m in ((a, b), (b, a)):
        c = _diagonal_term(x, m)
        if c is not None:
            return make("plus_diagonal", x, const(1) if isinstance(c, int) else c)
    return None


@rewrite("sub", tag="lower", inspects=("mul", "eye", "basis"))
def sub_scaled_identity(x, m):
    """`x - c * eye(n)` adds -c to the diagonal of x (as add_scaled_identity)."""
    c = _diagonal_term(x, m)
    if c is None:
        return None
    return make("plus_diagonal", x, const(-1) if isinstance(c, int) else make("neg", c))


@rewrite("sum", inspects=("mul",))
def sum_times_identity(x, axes, keepdims):
    """The sum of all elements of `A * eye(n)` is the trace of A, `np.trace(A)`: no identity
    built, no (n, n) product (the cotangent of c in `A + c * eye(n)`)."""
    if x.op != "mul" or x.ndim != 2 or len(axes) != 2 or keepdims:
        return None
    for a, m in (x.args, x.args[::-1]):
        if m.op == "eye" and m.attr("n") == m.attr("m") and a.shape == m.shape \
                and a.dtype == "float" and all(w in dtype_sources(a) for w in m.args):
            return make("trace", a)
    return None

