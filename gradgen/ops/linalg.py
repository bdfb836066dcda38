"""Linear algebra: matmul, dot, outer, trace, diag, inv, det, logdet, solve, tril, triu,
solve_triangular, cho_solve, cholesky, einsum (and eye, in constants.py).

The rules of the matrix functions are the classical ones (Giles, "An extended collection of
matrix derivative results", 2008): d inv(A) = -inv(A) dA inv(A), d logdet(A) =
trace(inv(A) dA), d det(A) = det(A) trace(inv(A) dA), dx = solve(A, db - dA x); they are
written with ops that have rules of their own, so second derivatives come from the table.
"""

from __future__ import annotations

from ..dims import ONE, broadcast, dims_equal, fmt_dim, fmt_shape, matmul_shape, nominal_size, size
from ..errors import ShapeError
from ..ir import const, make, make_as_is
from ._emit import call, infix, product_hint
from .constants import eye_like
from .elementwise import _emit_identity, _is, _scaled, _total
from .registry import INVERTIBLE, PREC_CALL, PREC_MUL, REAL, SPD, defbuiltin, defop, rewrite
from .shape_ops import swap_last


def _matmul_vjp(g, n):
    a, b = n.args
    if a.ndim == 1 and b.ndim == 1:          # inner product
        if a is b:                           # u @ u: one term, 2 g u (not g u + g u)
            return const(2) * g * a, None
        return g * b, g * a
    if a.ndim == 1:                          # (k,) @ (..., k, m)
        if b.ndim == 2:
            return b @ g, make("expand_dims", a, axes=(1,)) * g
        g2 = make("expand_dims", g, axes=(g.ndim - 1,))
        return make("squeeze", g2 @ swap_last(b), axes=(g2.ndim - 2,)), \
            make("expand_dims", a, axes=(1,)) * g2
    if b.ndim == 1:                          # (..., n, k) @ (k,)
        g1 = make("expand_dims", g, axes=(g.ndim,))
        if a.ndim == 2:
            return g1 * b, a.T @ g
        return g1 * b, make("squeeze", swap_last(a) @ g1, axes=(g1.ndim - 1,))
    return g @ swap_last(b), swap_last(a) @ g


def _matmul_jvp(ts, n):
    a, b = n.args
    ta, tb = ts
    if a is b and a.ndim == 1 and ta is not None:   # u @ u: 2 (tu @ u), one product
        return const(2) * (ta @ a)
    left = None if ta is None else ta @ b
    right = None if tb is None else a @ tb
    if left is None:
        return right
    return left if right is None else left + right


def _matmul_vmap(ts, n):
    """Batched JVP: tangents have a leading batch axis."""
    a, b = n.args
    ta, tb = ts
    terms = []
    if ta is not None:
        if a.ndim == 1 and b.ndim > 2:     # (B, k) -> (B, 1.., 1, k) @ b -> squeeze
            t = _pad(ta, b.ndim - 1) @ b
            terms.append(make("squeeze", t, axes=(t.ndim - 2,)))
        else:
            pad = max(0, b.ndim - a.ndim) if a.ndim >= 2 else 0
            terms.append(_pad(ta, pad) @ b)
    if tb is not None:
        if b.ndim >= 2:
            terms.append(a @ _pad(tb, max(0, a.ndim - b.ndim)))
        elif a.ndim == 1:
            terms.append(tb @ a)
        elif a.ndim == 2:
            terms.append(tb @ a.T)
        else:                              # a @ (B, 1.., k, 1) -> squeeze the last axis
            t = _pad(make("expand_dims", tb, axes=(tb.ndim,)), a.ndim - 2)
            t = a @ t
            terms.append(make("squeeze", t, axes=(t.ndim - 1,)))
    return terms[0] if len(terms) == 1 else terms[0] + terms[1]


def _pad(t, k):
    """Insert `k` axes after the batch axis, so batch dimensions line up."""
    return make("expand_dims", t, axes=tuple(range(1, 1 + k))) if k else t


def _emit_matmul(p, node):
    """`a @ b`, parenthesised inside (and around) `*` and `/` for the reader's sake."""
    text, _ = infix("@", PREC_MUL + 1, left_strict=True)(p, node)
    return text, PREC_MUL - 1


@rewrite("matmul", inspects=("basis",))
def matmul_identity(a, b):
    """A product with the identity matrix is the other factor: `I @ b` is `b`."""
    if a.op == "basis" and a.ndim == 2:
        return b
    if b.op == "basis" and b.ndim == 2:
        return a
    return None


@rewrite("matmul")
def matmul_outer_unit(a, b):
    """A product whose contracted axis has length 1 is an outer product: `a @ b` with a
    of shape (N, 1) and b of shape (1, H) is the broadcast product `a * b` (the same
    values, no sum; batch axes broadcast alike). The gradient of a network with one
    output, `dout @ W2.T` for W2 of shape (H, 1), is one: BLAS takes ~1.8x as long as the
    broadcast product (0.38 vs 0.21 ms at N, H = 5000, 64)."""
    if a.ndim < 2 or b.ndim < 2 or not _is_unit(a.shape[-1]) or not _is_unit(b.shape[-2]):
        return None
    if a.dtype != "float" or b.dtype != "float":
        return None
    return make("mul", a, b)


def _is_unit(d) -> bool:
    """The size `d` is 1 (a named dimension never is: no sympy comparison for it; every
    product of a compilation asks)."""
    return d is ONE or not getattr(d, "is_Symbol", False) and d == 1


@rewrite("matmul", inspects=("transpose", "inv"))
def triangular_inverse_product(a, b):
    """A product with the inverse of a triangular matrix (a Cholesky factor) is a
    triangular solve: `inv(L) @ x` is `solve_triangular(L, x)` and `x @ inv(L)` is
    `solve_triangular(L.T, x.T).T`, O(n^2) per column and no explicit inverse."""
    if b.ndim >= 2 and (t := _inverse_of_triangle(a)) is not None:
        return make("solve_triangular", t[0], b, lower=t[1])
    if a.ndim >= 2 and b.ndim >= 2 and (t := _inverse_of_triangle(b)) is not None:
        m, lower = t
        return swap_last(make("solve_triangular", swap_last(m), swap_last(a), lower=not lower))
    return None


@rewrite("matmul")
def matmul_scalar_outwards(a, b):
    """A scalar constant factor of a vector, or a sign, moves out of a matrix product:
    `A @ (c * x)` is `c * (A @ x)` and `A @ (-X)` is `-(A @ X)` (the same on the left),
    unless the product is larger than the factor (dimension names read as one size): the
    scaling is a pass over the product, the factor needs no temporary copy (the
    least-squares gradient `X.T @ (-r / N)`: one (D,) scaling instead of two (N,)
    temporaries), and a sign outside meets a sum or a difference that absorbs it. A
    scaled matrix keeps its factor: the scheduler scales it in a buffer it reuses."""
    for i, x in enumerate((a, b)):
        if x.ndim != 1 and x.op != "neg":
            continue
        c, inner = (None, x.args[0]) if x.op == "neg" else _scaled(x)
        if inner is x or nominal_size(matmul_shape(a.shape, b.shape)) > nominal_size(x.shape):
            continue
        product = make("matmul", inner, b) if i == 0 else make("matmul", a, inner)
        return -product if x.op == "neg" else const(c) * product
    return None


def _inverse_of_triangle(x):
    """(T, lower) when x is inv(T) (or its transpose, inv(T.T)) for a matrix T known to be
    lower (lower=True) or upper triangular; else None."""
    if x.op == "transpose" and x.ndim >= 2 and x.attr("axes") == swap_last_axes(x.ndim):
        x, flip = x.args[0], True
    else:
        flip = False
    if x.op != "inv":
        return None
    m = x.args[0]
    lower = _triangle_of(m)
    if lower is None:
        return None
    return (swap_last(m), not lower) if flip else (m, lower)


def _triangle_of(m):
    """True when m is known lower triangular, False when upper, else None: a Cholesky
    factor, tril/triu of the main diagonal or below/above, and their transposes."""
    if m.op == "cholesky":
        return True
    if m.op == "tril" and m.attr("k") <= 0:
        return True
    if m.op == "triu" and m.attr("k") >= 0:
        return False
    if m.op == "transpose" and m.ndim >= 2 and m.attr("axes") == swap_last_axes(m.ndim):
        inner = _triangle_of(m.args[0])
        return None if inner is None else not inner
    return None


def swap_last_axes(ndim: int) -> tuple:
    """The permutation that swaps the last two of `ndim` axes."""
    return tuple(range(ndim - 2)) + (ndim - 1, ndim - 2)


@rewrite("transpose")
def transpose_symmetric(x, axes):
    """The transpose of a matrix known to be symmetric is the matrix: `(A @ A.T + c * I).T`
    is `A @ A.T + c * I`, so `solve(S.T, b)` and `solve(S, b)` are one solve."""
    if x.ndim >= 2 and axes == swap_last_axes(x.ndim) and _symmetric(x, 6):
        return x
    return None


def _symmetric(x, depth: int) -> bool:
    """x (a matrix, or a batch of them) is symmetric by construction: `A @ A.T`, `A.T @ A`
    (also weighted, `(v * A.T) @ A`), the identity (and `basis` of a vector), `outer(a, a)`,
    spd(K), the inverse of a symmetric matrix, a product with the identity (diagonal), and
    sums, differences, elementwise products and scalar multiples of symmetric matrices
    (looked at `depth` nodes deep)."""
    if depth == 0 or x.ndim < 2:
        return False
    op, args = x.op, x.args
    if op == "eye":
        return dims_equal(x.shape[-1], x.shape[-2])
    if op == "basis":   # of a vector: the identity (of a matrix: its unit matrices, in a row)
        return args[0].ndim == 1
    if op == "matmul":   # X @ X.T, either factor scaled, or weighted along the sum:
        # (v * X.T) @ X and X.T @ (v[:, None] * X) are X.T @ diag(v) @ X
        a, b = _unweighted(_unscaled(args[0]), -1), _unweighted(_unscaled(args[1]), -2)
        a, b = _unscaled(a), _unscaled(b)
        return a.ndim >= 2 and b.ndim == a.ndim and (
            b.op == "transpose" and b.args[0] is a and b.attr("axes") == swap_last_axes(a.ndim)
            or a.op == "transpose" and a.args[0] is b
            and a.attr("axes") == swap_last_axes(b.ndim))
    if op == "inv":
        return _symmetric(args[0], depth - 1)
    if op == "spd":   # read as symmetric by definition
        return True
    if op == "outer":   # outer(a, c * a)
        return _unscaled(args[0]) is _unscaled(args[1])
    if op == "mul" and x.ndim == 2 and any(
            a.op in ("eye", "basis") and a.shape == x.shape and _symmetric(a, 1) for a in args):
        return True   # a diagonal matrix: `eye(n) * v`
    if op in ("add", "sub", "mul"):
        return all(a.ndim == 0 or a.shape == x.shape and _symmetric(a, depth - 1)
                   for a in args)
    if op == "neg":
        return _symmetric(args[0], depth - 1)
    return False


def _unweighted(x, axis: int):
    """The matrix x without an elementwise factor that varies along its axis `axis` (-1 or
    -2) alone: `v * X.T` is X.T (v of shape (N,) or (1, N), axis -1) and `v[:, None] * X`
    is X (v of shape (N, 1), axis -2): a diagonal matrix beside the sum of a product. x
    itself where it has no such factor (2-D matrices only)."""
    if x.op != "mul" or x.ndim != 2:
        return x
    for w, y in (x.args, x.args[::-1]):
        if y.ndim != 2 or y.shape != x.shape or w.ndim == 0:
            continue
        wshape = (1,) * (2 - w.ndim) + tuple(w.shape)
        if len(wshape) == 2 and wshape[axis] == x.shape[axis] and wshape[-3 - axis] == 1:
            return y
    return x


def _unscaled(x):
    """x without its scalar factors and signs (`c * X` and `-X` are X)."""
    while x.op == "neg" or x.op == "mul" and any(a.ndim == 0 for a in x.args):
        x = x.args[0] if x.op == "neg" or x.args[1].ndim == 0 else x.args[1]
    return x


def _solve_rhs_scalar(op: str) -> None:
    """The rule of `op` (a solve) moving a scalar factor or a sign of the right-hand side
    outside, so that solves of one system with one right-hand side are one node."""
    def rhs_scalar_outwards(a, b, **attrs):
        """A scalar factor of the right-hand side moves outside: `solve(A, c * b)` is
        `c * solve(A, b)` and `solve(A, -b)` is `-solve(A, b)`."""
        if b.op == "neg":
            return -make(op, a, b.args[0], **attrs)
        if b.op == "mul":
            s, y = b.args
            if y.ndim == 0:
                s, y = y, s
            if s.ndim == 0 and y.shape == b.shape:
                return s * make(op, a, y, **attrs)
        return None
    rewrite(op, name=f"{op}_rhs_scalar_outwards")(rhs_scalar_outwards)


defop("matmul", 2, shape=lambda args: matmul_shape(args[0].shape, args[1].shape),
      emit=_emit_matmul, operator="@", hint=product_hint,
      into=lambda p, n, out: p.into("matmul", p.args(n), out),
      traits=frozenset({"bilinear", "matrix_product"}), domain=(REAL, REAL),
      vjp=_matmul_vjp, jvp=_matmul_jvp, vmap=_matmul_vmap)

defbuiltin("matmul", ("x", "y"), lambda x, y: x @ y)


@rewrite("sum")
def sum_batched_product(x, axes, keepdims):
    """A batch of matrix products summed over the batch is one product of the flattened
    batch: `sum(a @ b, axis=0)` for a (B, n, k), b (B, k, m) is a (n, B*k) @ (B*k, m)
    matrix, no (B, n, m) temporary (the weight gradient of a batched layer)."""
    if x.op != "matmul" or keepdims or x.ndim < 3 or axes != tuple(range(x.ndim - 2)):
        return None
    a, b = x.args
    nb = x.ndim - 2
    if a.ndim != x.ndim or b.ndim != x.ndim or \
            not all(dims_equal(p, q) for p, q in zip(a.shape[:nb], b.shape[:nb])):
        return None
    n, m, rows = a.shape[nb], b.shape[-1], size(a.shape[:nb]) * a.shape[-1]
    swapped = a.op == "transpose" and a.attr("axes") == tuple(range(nb)) + (nb + 1, nb)
    if not (swapped and _dense(a.args[0]) and _dense(b)):
        return None   # flattening would copy: measured slower than the batch at small sizes
    left = make("reshape", a.args[0], shape=(rows, n)).T   # a = x.T: x's rows stacked
    return left @ make("reshape", b, shape=(rows, m))


def _vector_dot(t):
    """`a @ b` for the product `a * b` of two vectors of one length, `u @ u` for the square
    `u ** 2` of a vector; None for anything else."""
    if any(a.op in ("broadcast_to", "expand_like") for a in t.args):   # c * u: no dot
        return None
    if t.op == "mul" and t.args[0].ndim == 1 and t.args[1].ndim == 1 \
            and dims_equal(t.args[0].shape[0], t.args[1].shape[0]):
        return t.args[0] @ t.args[1]
    if t.op == "pow" and t.args[0].ndim == 1 and t.args[1].is_const:
        v = t.args[1].value   # 2 or 2.0 (an Integer and a Float compare unequal)
        if getattr(v, "is_number", False) and v.is_real and float(v) == 2.0:
            return t.args[0] @ t.args[0]
    return None


def _scaled_dot(t) -> bool:
    """Whether `t` is a product or square of vectors, or a scalar constant times one."""
    if t.op == "mul" and t.args[0].is_const:
        t = t.args[1]
    return t.op in ("mul", "pow") and _vector_dot(t) is not None


@rewrite("matmul", inspects=("broadcast_to", "expand_like"))
def dot_of_broadcast_scalar(a, b):
    """A dot product with a scalar broadcast to a vector is the scalar times a sum:
    `broadcast_to(c, (N,)) @ u` is `c * sum(u)` (the tangent of `sum(u * v)` where v's
    tangent is a broadcast scalar), not a product with a broadcast array."""
    if a.ndim != 1 or b.ndim != 1:
        return None
    for s, t in ((a, b), (b, a)):
        if s.op in ("broadcast_to", "expand_like") and s.args[0].ndim == 0:
            return s.args[0] * make("sum", t, axes=(0,), keepdims=False)
    return None


@rewrite("sum")
def sum_product_dot(x, axes, keepdims):
    """The sum of a product of two vectors, or of a vector's square, is a dot product:
    `sum(a * b)` is `a @ b` and `sum(d ** 2)` is `d @ d` (one pass through BLAS, no
    temporary of the vectors' size); a sum of such terms is split into one sum per term
    (`sum(100 * d ** 2 + e ** 2)` is `100 * (d @ d) + e @ e`). Other ranks: the lower rule
    reductions.sum_product_vdot (why two rules: see there)."""
    if keepdims or x.ndim != 1:
        return None
    dot = _vector_dot(x)
    if dot is not None:
        return dot
    # (each term of the sum's length: a term of length 1 broadcast counts N times)
    if x.op in ("add", "sub") and all(a.ndim == 1 and dims_equal(a.shape[0], x.shape[0])
                                      for a in x.args) \
            and any(_scaled_dot(a) for a in x.args):
        left, right = (make("sum", a, axes=(0,), keepdims=False) for a in x.args)
        return left + right if x.op == "add" else left - right
    return None


@rewrite("sum")
def sum_squared_distance(x, axes, keepdims):
    """A weighted squared distance of all row pairs is matrix products, no (N, K, D)
    temporary: `sum(((a[:, None, :] - b[None]) / s[None]) ** 2, axis=2)` for a (N, D),
    b and s (K, D) is `a**2 @ w.T - 2 * (a @ (b * w).T) + sum(b**2 * w, axis=1)` with
    w = s ** -2 (the expansion scikit-learn's Gaussian mixture writes by hand)."""
    # Exact in real arithmetic; in float64 an entry's absolute error is about
    # eps * (|a|^2 + |b|^2) / s^2 instead of eps * |a - b|^2 / s^2 (the same trade as every
    # pairwise-distance code that uses BLAS). It pays when the broadcast is larger than its
    # operands: not when the reduced axis has a literal size below 2.
    if x.op != "pow" or keepdims or x.ndim != 3 or axes != (2,) or not _is(x.args[1], 2):
        return None
    d, s = x.args[0], None
    if d.op == "div":
        d, s = d.args
        if s.op != "expand_dims" or s.attr("axes") != (0,) or s.args[0].ndim != 2:
            return None
        s = s.args[0]
    if d.op != "sub":
        return None
    ends = {e.attr("axes"): e.args[0] for e in d.args if e.op == "expand_dims"}
    a, b = ends.get((1,)), ends.get((0,))
    if a is None or b is None or a.ndim != 2 or b.ndim != 2 or a.dtype != "float" \
            or not dims_equal(a.shape[1], b.shape[1]) \
            or (s is not None and not all(map(dims_equal, s.shape, b.shape))):
        return None
    dim = a.shape[1]
    if getattr(dim, "is_Integer", False) and int(dim) < 2:
        return None
    if s is None:
        rows = make("sum", a ** const(2), axes=(1,), keepdims=True)
        return rows - const(2) * (a @ b.T) + make("sum", b ** const(2), axes=(1,),
                                                      keepdims=False)
    w = s ** const(-2)
    return (a ** const(2) @ w.T - const(2) * (a @ (b * w).T)
            + make("sum", b ** const(2) * w, axes=(1,), keepdims=False))


def _dense(x) -> bool:
    """x is not a view of another array in another order (a transpose or a slice, possibly
    reshaped): reshaping it is free. Arguments count as dense (a caller's array usually
    is; a strided one is only copied)."""
    while x.op in ("reshape", "expand_dims", "squeeze") or _leading_rows(x):
        x = x.args[0]   # (rows start:stop of a dense array are dense: `h_steps[0:T]`)
    return x.op not in ("transpose", "index", "broadcast_to")


def _leading_rows(x) -> bool:
    """x is `a[start:stop]`: consecutive rows of `a`, all of each row."""
    if x.op != "index" or len(x.attr("index")) != 1:
        return False
    item = x.attr("index")[0]
    return isinstance(item, tuple) and item[0] == "slice" and item[3] == 1


# ---------------------------------------------------------------- dot, outer

def _dot(a, b):
    """NumPy's dot for scalars, vectors and matrices (where it is the matrix product)."""
    if a.ndim == 0 or b.ndim == 0:
        return a * b
    if a.ndim > 2 or b.ndim > 2:
        raise ShapeError("dot of arrays with more than two dimensions is not supported; "
                         "use matmul (@) or einsum")
    return a @ b


def _outer_shape(args):
    a, b = args
    if a.ndim != 1 or b.ndim != 1:
        raise ShapeError("outer takes two vectors")
    return (a.shape[0], b.shape[0])


def _outer_jvp(ts, n):
    (a, b), (ta, tb) = n.args, ts
    return _total(ta and make("outer", ta, b), tb and make("outer", a, tb))


def _outer_vmap(ts, n):
    (a, b), (ta, tb) = n.args, ts
    return _total(ta and make("expand_dims", ta, axes=(2,)) * b,
                  tb and make("expand_dims", a, axes=(1,)) * make("expand_dims", tb, axes=(1,)))


# outer(a, b): a[i] * b[j] for vectors a, b.
defop("outer", 2, shape=_outer_shape, emit=call("outer"), traits=frozenset({"bilinear"}),
      domain=(REAL, REAL), vjp=lambda g, n: (g @ n.args[1], n.args[0] @ g), jvp=_outer_jvp,
      vmap=_outer_vmap)


def _flat(x):
    return x if x.ndim == 1 else make("reshape", x, shape=(size(x.shape),))


defbuiltin("dot", ("a", "b"), _dot)
defbuiltin("outer", ("a", "b"), lambda a, b: make("outer", _flat(a), _flat(b)))


# ---------------------------------------------------------------- trace, diag

def _trace_shape(args):
    if args[0].ndim < 2:
        raise ShapeError("trace needs an array of at least two dimensions")
    return tuple(args[0].shape[2:])


def _trace_vjp(g, n):
    a = n.args[0]
    e = eye_like(a, a.shape[0], a.shape[1])
    if a.ndim > 2:   # np.trace sums the diagonals of the first two axes
        e = make("expand_dims", e, axes=tuple(range(2, a.ndim)))
        g = make("expand_dims", g, axes=(0, 1))
    return (g * e,)


def _trace_vmap(ts, n):
    t = ts[0]   # (B, n, m, ...): move the batch axis last, take the trace, move it back
    last = make("trace", make("transpose", t, axes=tuple(range(1, t.ndim)) + (0,)))
    return make("transpose", last, axes=(last.ndim - 1,) + tuple(range(last.ndim - 1)))


# Matrix-to-scalar functions count as reductions: like sum, their rules take a lazy
# scalar cotangent as it is (no `np.full_like(value, 1)` that would recompute the value).
RED = frozenset({"reduction"})

# trace(A): the sum of the diagonal of the first two axes, as np.trace.
def _emit_trace_xp(p, node):
    """The standard's linalg.trace sums the diagonals of the last two axes."""
    x, ndim = p.arg(node, 0, 0), node.args[0].ndim
    if ndim > 2:
        x = p.call("permute_dims", [x, str(tuple(range(2, ndim)) + (0, 1))])
    return p.call("linalg.trace", [x]), PREC_CALL


def _emit_diag_xp(p, node):
    """The standard has no diag: the identity times the vector (v[j] on the diagonal)."""
    n = p.scalar(node.shape[0], integer=True)[0]
    v = p.arg(node, 0, PREC_MUL + 1)
    return f"{p.creation('eye', n, p.dtype_of(p.arg(node, 0, PREC_CALL)))} * {v}", PREC_MUL


defop("trace", 1, shape=_trace_shape, emit={"numpy": call("trace"), "array_api": _emit_trace_xp},
      traits=RED | {"linear"}, domain=(REAL,), vjp=_trace_vjp,
      jvp=lambda ts, n: make("trace", ts[0]), vmap=_trace_vmap)


def _diag_shape(args):
    if args[0].ndim != 1:
        raise ShapeError("diag of a vector needs a vector")
    return (args[0].shape[0],) * 2


# diag(v): the square matrix with diagonal v (np.diag of a vector).
defop("diag", 1, shape=_diag_shape, emit={"numpy": call("diag"), "array_api": _emit_diag_xp},
      traits=frozenset({"linear"}), domain=(REAL,), vjp=lambda g, n: (make("diagonal", g),),
      jvp=lambda ts, n: make("diag", ts[0]),
      vmap=lambda ts, n: make("expand_dims", ts[0], axes=(1,)) * eye_like(ts[0], n.shape[0]))


def _diagonal_shape(args):
    a = args[0]
    if a.ndim != 2:
        raise ShapeError("the diagonal of an array needs a matrix")
    n, m = a.shape
    if dims_equal(n, m):
        return (n,)
    if n.is_number and m.is_number:
        return (min(n, m),)
    raise ShapeError(f"the diagonal of a {fmt_shape(a.shape)} matrix has min({fmt_dim(n)}, "
                     f"{fmt_dim(m)}) elements: give the matrix literal sizes or make it square")


def _emit_diagonal(p, node):
    # a copy: np.diagonal returns a read-only view, which in-place code cannot write into
    return p.copy(p.call("diagonal", [p.arg(node, 0, 0)]), PREC_CALL), PREC_CALL


def _diagonal_vjp(g, n):
    a = n.args[0]
    rows, cols = a.shape
    tall = not dims_equal(rows, cols) and cols.is_number and rows.is_number and cols < rows
    along = g if tall or dims_equal(rows, cols) else make("expand_dims", g, axes=(1,))
    return (along * eye_like(a, rows, cols),)


def _diagonal_vmap(ts, n):
    a = n.args[0]
    rows, cols = a.shape
    axis = 1 if not dims_equal(rows, cols) and cols < rows else 2
    return make("sum", ts[0] * eye_like(a, rows, cols), axes=(axis,), keepdims=False)


# diagonal(A): the diagonal of a matrix (np.diag of a matrix), as a fresh array.
defop("diagonal", 1, shape=_diagonal_shape, emit=_emit_diagonal, traits=frozenset({"linear"}),
      domain=(REAL,), vjp=_diagonal_vjp, jvp=lambda ts, n: make("diagonal", ts[0]),
      vmap=_diagonal_vmap)


def _diag_builtin(v):
    if v.ndim == 1:
        return make("diag", v)
    if v.ndim == 2:
        return make("diagonal", v)
    raise ShapeError(f"diag takes a vector or a matrix, not an array of shape "
                     f"{fmt_shape(v.shape)}")


defbuiltin("trace", ("x",), lambda x: make("trace", x))
defbuiltin("diag", ("v",), _diag_builtin)


# ---------------------------------------------------------------- inv, det, logdet

def _square(x, what):
    if x.ndim < 2 or not dims_equal(x.shape[-1], x.shape[-2]):
        raise ShapeError(f"{what} needs square matrices (shape (..., n, n)), got shape "
                         f"{fmt_shape(x.shape)}")
    return x.shape


def _mat(x):
    """x with two size-1 axes appended: a batch of scalars against a batch of matrices."""
    return make("expand_dims", x, axes=(x.ndim, x.ndim + 1)) if x.ndim else x


def _trace_of_product(a, t):
    """trace(a @ t) over the last two axes, as sum(a.T * t) (no matrix product)."""
    return make("sum", swap_last(a) * t, axes=(t.ndim - 2, t.ndim - 1), keepdims=False)


def _inv_t(n):
    """inv(A).T for the node `n` whose argument is A."""
    return swap_last(make("inv", n.args[0]))


def _inv_rule(ts, n):
    return -(n @ ts[0] @ n)


defop("inv", 1, shape=lambda args: _square(args[0], "inv"), emit=call("linalg.inv"),
      domain=(INVERTIBLE,), vjp=lambda g, n: (-(swap_last(n) @ g @ swap_last(n)),),
      jvp=_inv_rule, vmap=_inv_rule)


def _det_rule(ts, n):
    return n * _trace_of_product(make("inv", n.args[0]), ts[0])


# det: d det(A) = det(A) trace(inv(A) dA); A must be nonsingular.
def _emit_det_array_api(p, node):   # (Dask's namespace has no det: runtime_xp._det)
    return p.helper("_det", [p.arg(node, 0, 0)]), PREC_CALL


defop("det", 1, shape=lambda args: _square(args[0], "det")[:-2],
      emit={"numpy": call("linalg.det"), "array_api": _emit_det_array_api},
      traits=RED, domain=(INVERTIBLE,), vjp=lambda g, n: (_mat(g * n) * _inv_t(n),),
      jvp=_det_rule, vmap=_det_rule)


def _emit_logdet(p, node):
    return p.call("linalg.slogdet", [p.arg(node, 0, 0)]) + "[1]", PREC_CALL


def _emit_logdet_array_api(p, node):   # (Dask's namespace has no slogdet: runtime_xp._logdet)
    return p.helper("_logdet", [p.arg(node, 0, 0)]), PREC_CALL


def _logdet_rule(ts, n):
    return _trace_of_product(make("inv", n.args[0]), ts[0])


# logdet(A) = log |det A| (np.linalg.slogdet(A)[1]); d logdet(A) = trace(inv(A) dA).
defop("logdet", 1, shape=lambda args: _square(args[0], "logdet")[:-2],
      emit={"numpy": _emit_logdet, "array_api": _emit_logdet_array_api},
      traits=RED, domain=(INVERTIBLE,), vjp=lambda g, n: (_mat(g) * _inv_t(n),),
      jvp=_logdet_rule, vmap=_logdet_rule)

for _name in ("inv", "det", "logdet"):
    defbuiltin(_name, ("A",), lambda A, _op=_name: make(_op, A))


# ---------------------------------------------------------------- solve

def _solve_shape(args, name="solve"):
    a, b = args
    _square(a, name)
    n = a.shape[-1]
    if b.ndim == 0 or not dims_equal(b.shape[-1 if b.ndim == 1 else -2], n):
        raise ShapeError(f"{name}(A, b): A of shape {fmt_shape(a.shape)} needs b of shape "
                         f"({fmt_dim(n)},) or (..., {fmt_dim(n)}, k), got {fmt_shape(b.shape)}")
    if b.ndim == 1:
        return tuple(a.shape[:-1])
    try:
        batch = broadcast(tuple(a.shape[:-2]), tuple(b.shape[:-2]))
    except ShapeError:
        raise ShapeError(f"{name}(A, b): the batch dimensions of {fmt_shape(a.shape)} and "
                         f"{fmt_shape(b.shape)} cannot be broadcast together") from None
    return batch + (n, b.shape[-1])


def _matvec(m, v):
    """m @ v for a (batch of) vector(s) v."""
    if v.ndim == 1:
        return m @ v
    x = m @ make("expand_dims", v, axes=(v.ndim,))
    return make("squeeze", x, axes=(x.ndim - 1,))


def _solver(solve, project):
    """The VJP, JVP and batched JVP of a solve x = A^-1 b (b a vector (n,) or matrices
    (..., n, k)): `solve(n, a, v, transposed)` solves with the matrix `a` the way the node
    `n` does (with the transposed system's attributes if `transposed`), and `project(n, m)`
    keeps the part of a matrix that the solve reads (all of it for solve, a triangle for
    solve_triangular): dx = A^-1 (db - dA x), b_bar = A^-T g, A_bar = -b_bar x^T."""
    def vec(n, a, v, transposed=False):
        """The solve for a (batch of) vector(s) v: NumPy reads a 1-D b as a vector only."""
        if v.ndim == 1:
            return solve(n, a, v, transposed)
        x = solve(n, a, make("expand_dims", v, axes=(v.ndim,)), transposed)
        return make("squeeze", x, axes=(x.ndim - 1,))

    def vjp(g, n):
        a, b = n.args
        if b.ndim == 1:                               # x = A^-1 b for a vector b
            gb = vec(n, swap_last(a), g, True)
            if gb.ndim == 1 and n.ndim == 1:
                return project(n, -make("outer", gb, n)), gb
            return project(n, -(make("expand_dims", gb, axes=(gb.ndim,))
                                 * make("expand_dims", n, axes=(n.ndim - 1,)))), gb
        gb = solve(n, swap_last(a), g, True)
        return project(n, -(gb @ swap_last(n))), gb

    def jvp(ts, n):
        """Also the batched rule, once the tangents' batch axes line up (`vmap`)."""
        (a, b), (ta, tb) = n.args, ts
        ta = ta and project(n, ta)
        rhs = _total(tb, ta and -(_matvec(ta, n) if b.ndim == 1 else ta @ n))
        if rhs is None:
            return None
        return vec(n, a, rhs) if b.ndim == 1 else solve(n, a, rhs, False)

    def vmap(ts, n):
        """Batched tangents (leading axis) first lined up with the batch axes of the output."""
        (ta, tb), b = ts, n.args[1]
        ta = ta and _pad(ta, n.ndim + (2 if b.ndim == 1 else 1) - ta.ndim)
        tb = tb and _pad(tb, n.ndim + 1 - tb.ndim)
        return jvp((ta, tb), n)

    return {"vjp": vjp, "jvp": jvp, "vmap": vmap}


# solve(A, b): x with A x = b, b a vector (n,) or matrices (..., n, k), as np.linalg.solve.
def _emit_solve_xp(p, node):
    """linalg.solve; one matrix against a stack of right-hand sides (f_hessian's batched
    tangents) solves them side by side as the columns of one (`_solve_stack`): Dask, and
    the standard for a stack against one matrix, take no such batch."""
    a, b = node.args
    if a.ndim != 2 or b.ndim <= 2:
        return call("linalg.solve")(p, node)
    m = b.ndim
    order = (m - 2, *range(m - 2), m - 1)   # the stack's axes between the rows and columns
    back = (*range(1, m - 1), 0, m - 1)
    return p.helper("_solve_stack", [*p.args(node, 0), str(order), str(back)]), PREC_CALL


defop("solve", 2, shape=_solve_shape, emit={"default": call("linalg.solve"),
                                            "array_api": _emit_solve_xp}, domain=(INVERTIBLE, REAL),
      **_solver(lambda n, a, v, transposed: make("solve", a, v), lambda n, m: m))
defbuiltin("solve", ("A", "b"), lambda A, b: make("solve", A, b))


_solve_rhs_scalar("solve")

# ---------------------------------------------------------------- triangular solves

def _emit_solve_triangular(p, node):
    return p.helper("_solve_triangular", p.args(node, 0), [f"lower={node.attr('lower')}"]), \
        PREC_CALL


# Block substitution: with T = [[T11, 0], [T21, T22]] (lower), x1 = T11^-1 b1 and
# x2 = T22^-1 (b2 - T21 x1), for row blocks of _TRI_BLOCK rows in turn (from the last with
# lower=False), written into one copy of b, so a block costs one matrix product and no
# copies. Only the diagonal blocks are masked to their triangle (the blocks beside them lie
# wholly inside it). A diagonal block is solved by np.linalg.solve (LAPACK's LU of a
# triangular block is a substitution) for a narrow right-hand side, and by its inverse when
# b has at least _TRI_BLOCK columns: one small inverse and a matrix product, as blocked
# TRSMs with inverted diagonal blocks do, 1.6-1.8x faster than the halving substitution
# with solves before it for an (n, n) b at n = 500-1000 (the Cholesky VJP's solves).
# O(n^2) per column against np.linalg.solve's O(n^3): benchmarks/triangular.py measures both.
_TRI_BLOCK = 64
_SOLVE_TRIANGULAR = f'''\
def _solve_triangular(a, b, lower):
    """x with tril(a) @ x = b (triu(a) with lower=False), as scipy's solve_triangular reads
    only that triangle; b a vector (n,) or matrices (..., n, k), as np.linalg.solve.
    Block substitution: blocks of {_TRI_BLOCK} rows from the first (the last with lower=False),
    each less what the rows solved before contribute, then solved directly (by the inverse
    of its diagonal block when b has {_TRI_BLOCK} columns or more)."""
    n = a.shape[-1]
    if n <= {_TRI_BLOCK}:
        return np.linalg.solve(np.tril(a) if lower else np.triu(a), b)
    rhs = b[:, None] if b.ndim == 1 else b
    if a.shape[:-2] != rhs.shape[:-2]:  # the batch axes of both
        rhs = np.broadcast_arrays(a[..., :1], rhs)[1]
    x = np.array(rhs, dtype=np.result_type(a, rhs))  # overwritten by the solution
    wide = rhs.shape[-1] >= {_TRI_BLOCK}
    blocks = (n + {_TRI_BLOCK - 1}) // {_TRI_BLOCK}
    for j in range(blocks):
        s = {_TRI_BLOCK} * (j if lower else blocks - 1 - j)
        e = min(s + {_TRI_BLOCK}, n)
        block = x[..., s:e, :]
        if lower and s > 0:  # less what the rows solved already contribute
            block -= a[..., s:e, :s] @ x[..., :s, :]
        elif not lower and e < n:
            block -= a[..., s:e, e:] @ x[..., e:, :]
        t = np.tril(a[..., s:e, s:e]) if lower else np.triu(a[..., s:e, s:e])
        block[...] = np.linalg.inv(t) @ block if wide else np.linalg.solve(t, block)
    return x[..., 0] if b.ndim == 1 else x
'''


def _solve_triangular_shape(args, lower):
    return _solve_shape(args, "solve_triangular")


# solve_triangular(L, b, lower): x with tril(L) x = b (triu(L) with lower=False); only that
# triangle of L is read, and only it gets a cotangent.
defop("solve_triangular", 2, shape=_solve_triangular_shape, emit=_emit_solve_triangular,
      prelude=_SOLVE_TRIANGULAR, domain=(INVERTIBLE, REAL), hint="solve",
      **_solver(lambda n, a, v, transposed: make(
          "solve_triangular", a, v, lower=n.attr("lower") != transposed),
          lambda n, m: make("tril" if n.attr("lower") else "triu", m, k=0)))
_solve_rhs_scalar("solve_triangular")
defbuiltin("solve_triangular", ("L", "b", "lower"),
           lambda L, b, lower=True: make("solve_triangular", L, b, lower=lower),
           static=("lower",), defaults={"lower": True})


def _cho_solve(L, b):
    """x with L L^T x = b for the lower Cholesky factor L: two triangular solves."""
    if b.ndim == 1 and L.ndim > 2:   # a vector for a batch of factors: (..., n) in between
        x = _cho_solve(L, make("expand_dims", b, axes=(1,)))
        return make("squeeze", x, axes=(x.ndim - 1,))
    y = make("solve_triangular", L, b, lower=True)
    return make("solve_triangular", swap_last(L), y, lower=False)


defbuiltin("cho_solve", ("L", "b"), _cho_solve)


# ---------------------------------------------------------------- tril, triu

def _triangle_shape(args, k):
    if args[0].ndim < 2:
        raise ShapeError(f"needs a matrix (or a batch of matrices), got an array of shape "
                         f"{fmt_shape(args[0].shape)}")
    return args[0].shape


def _triangle(name: str) -> None:
    """tril/triu(X, k): the lower (upper) triangle of each matrix of X from diagonal k, 0
    elsewhere, as NumPy's; linear, so each rule is the op again."""
    def emit(p, node):
        k = node.attr("k")
        return p.call(name, [p.arg(node, 0, 0)] + ([] if k == 0 else [str(k)])), PREC_CALL

    def rule(ts, n):
        return make(name, ts[0], **n.kw)

    defop(name, 1, shape=_triangle_shape, emit=emit, traits=frozenset({"linear"}),
          domain=(REAL,), vjp=lambda g, n: (make(name, g, **n.kw),), jvp=rule, vmap=rule)
    defbuiltin(name, ("x", "k"), lambda x, k=0: make(name, x, k=k), static=("k",),
               defaults={"k": 0})


_triangle("tril")
_triangle("triu")


# ---------------------------------------------------------------- cholesky

def _phi(x):
    """The lower triangle of x with its diagonal halved."""
    return (make("tril", x, k=0) + make("tril", x, k=-1)) / 2


def _cholesky_vjp(g, n):
    """With L = n and the symmetric A: dA = sym(L^-T phi(L^T dL) L^-1) (Murray, 2016)."""
    inv_l = make("inv", n)
    x = swap_last(inv_l) @ _phi(swap_last(n) @ g) @ inv_l
    return ((x + swap_last(x)) / 2,)


def _cholesky_rule(ts, n):
    """dL = L phi(L^-1 sym(dA) L^-T): the tangent of A is symmetrised, as JAX does."""
    t = ts[0]
    inv_l = make("inv", n)
    return n @ _phi(inv_l @ ((t + swap_last(t)) / 2) @ swap_last(inv_l))


# cholesky(A): the lower factor L of a symmetric positive definite A = L L^T (NumPy reads
# only the lower triangle of A). Its derivative treats A as symmetric.
defop("cholesky", 1, shape=lambda args: _square(args[0], "cholesky"),
      emit={"default": call("linalg.cholesky"), "array_api": call("_cholesky")},
      domain=(SPD,), hint="L",
      vjp=_cholesky_vjp, jvp=_cholesky_rule, vmap=_cholesky_rule)
defbuiltin("cholesky", ("A",), lambda A: make("cholesky", A))


# ---------------------------------------------------------------- the Cholesky composites

# spd(K, L): K read as the symmetric positive definite matrix that `cholesky` factors, with
# its factor L = cholesky(K) at hand; made only by the rules below where `cholesky(K)` is
# used as a whole (the solve of K it gives, the log-determinant of K): its value is K, its
# cotangent and tangent (K's; L gets none) are symmetrised (the derivative convention of
# cholesky's). Its solves, log-determinant and inverse are lowered to the factor L, which
# the function computes anyway (and names as the source does), so nothing is factored twice;
# the adjoint of the Gaussian likelihood `0.5 y^T K^-1 y + 0.5 logdet(K)` is then
# `(K^-1 - a a^T) / 2` with a = K^-1 y (Rasmussen & Williams eq. 5.9): one inverse from the
# factor instead of the Cholesky VJP's triangular solves of (n, n) right-hand sides.

def _sym(x):
    """x symmetrised, (x + x^T) / 2, or x itself when it is symmetric by construction."""
    return x if _symmetric(x, 6) else (x + swap_last(x)) / 2


def _factored(a):
    """K for a = cholesky(K) (a lower Cholesky factor), else None."""
    return a.args[0] if a.op == "cholesky" else None


def _cho_solve_of(a, b, inner_op):
    """K and the right-hand side r when `a`, `b` are the outer solve's arguments of
    `solve(L.T, solve(L, r))` with L = cholesky(K) (inner_op: the inner solve's op)."""
    if a.op != "transpose" or a.ndim < 2 or a.attr("axes") != swap_last_axes(a.ndim):
        return None
    factor = a.args[0]
    k = _factored(factor)
    if k is None or b.op != inner_op or b.args[0] is not factor:
        return None
    if inner_op == "solve_triangular" and not b.attr("lower"):
        return None
    return k, b.args[1]


@rewrite("solve_triangular")
def cho_solve_spd(a, b, lower):
    """Two triangular solves with a Cholesky factor and its transpose are a solve of the
    factored matrix: `cho_solve(cholesky(K), b)` is `solve(spd(K), b)` (computed from the
    same factor), whose adjoint needs no Cholesky VJP."""
    if lower or (t := _cho_solve_of(a, b, "solve_triangular")) is None:
        return None
    return make("solve", make("spd", t[0], a.args[0]), t[1])


@rewrite("solve")
def solve_cholesky_spd(a, b):
    """`solve(L.T, solve(L, b))` with L = cholesky(K) is `solve(spd(K), b)`, as
    cho_solve_spd."""
    t = _cho_solve_of(a, b, "solve")
    return None if t is None else make("solve", make("spd", t[0], a.args[0]), t[1])


@rewrite("sum")
def sum_log_cholesky_diagonal(x, axes, keepdims):
    """The log-determinant of a matrix from its Cholesky factor: `sum(log(diag(cholesky(K))))`
    is `logdet(spd(K)) / 2` (computed from the same factor), whose adjoint is K^-1 / 2
    instead of a Cholesky VJP."""
    if keepdims or x.op != "log" or x.args[0].op != "diagonal":
        return None
    factor = x.args[0].args[0]
    k = _factored(factor)
    if k is None:
        return None
    return const(0.5) * make("logdet", make("spd", k, factor))


@rewrite("solve", tag="lower")
def spd_solve_by_factor(a, b):
    """A solve of spd(K) is two triangular solves with the factor L = cholesky(K) that the
    function computes once: `solve_triangular(L.T, solve_triangular(L, b), lower=False)`."""
    if a.op != "spd":
        return None
    factor = a.args[1]
    inner = make_as_is("solve_triangular", factor, b, lower=True)
    return make_as_is("solve_triangular", _swapped(factor), inner, lower=False)


@rewrite("logdet", tag="lower")
def spd_logdet_by_factor(a):
    """The log-determinant of spd(K) from the factor L = cholesky(K): `2 * sum(log(diag(L)))`."""
    if a.op != "spd" or a.ndim != 2:
        return None
    d = make_as_is("log", make_as_is("diagonal", a.args[1]))
    return make_as_is("mul", const(2), make_as_is("sum", d, axes=(0,), keepdims=False))


@rewrite("mul", tag="lower", operands=(("const",), ("mul", "add")))
def half_spd_logdet(a, b):
    """Half the log-determinant lowered from the factor is the sum it came from:
    `0.5 * (2 * sum(log(diag(L))))` is `sum(log(diag(L)))`, and `0.5 * (x + 2 * that)` is
    `0.5 * x + sum(log(diag(L)))` (the GP likelihood's value as written)."""
    if not a.is_const or b.op not in ("mul", "add"):   # (cheap tests first: every product
        return None                                   # of the function comes here)
    if (s := _twice_log_diagonal(b)) is not None:
        return s if a.value == 0.5 else None
    if b.op != "add":
        return None
    for i, term in enumerate(b.args):
        if (s := _twice_log_diagonal(term)) is not None and a.value == 0.5:
            half = make_as_is("mul", a, b.args[1 - i])
            return make_as_is("add", *((s, half) if i == 0 else (half, s)))
    return None


def _twice_log_diagonal(x):
    """s for x = 2 * s with s = sum(log(diag(L))) of a Cholesky factor L, else None."""
    if x.op != "mul" or x.args[1].op != "sum":
        return None
    s = x.args[1]
    if s.args[0].op == "log" and s.args[0].args[0].op == "diagonal" \
            and s.args[0].args[0].args[0].op == "cholesky" and x.args[0].is_const \
            and x.args[0].value == 2:
        return s
    return None


@rewrite("inv", tag="lower")
def spd_inverse_by_factor(a):
    """The inverse of spd(K) from the factor L = cholesky(K): `cho_inverse(L)`, inv(L) and
    inv(L).T @ inv(L) by halves (about a third of the work of an LU inverse of K)."""
    if a.op != "spd" or a.ndim != 2:
        return None
    return make_as_is("cho_inverse", a.args[1])


def _swapped(x):
    """x with its last two axes swapped, built as is."""
    return make_as_is("transpose", x, axes=swap_last_axes(x.ndim))


# cho_inverse(L): inv(L @ L.T) for a lower triangular L (n, n), the inverse of the matrix L
# factors; made only by the lower rule spd_inverse_by_factor. By halves: with
# L = [[A, 0], [B, C]], inv(L) = [[A^-1, 0], [-C^-1 B A^-1, C^-1]] and, with
# inv(L) = [[P, 0], [Q, R]], inv(L).T @ inv(L) = [[P^T P + Q^T Q, Q^T R], [R^T Q, R^T R]]:
# each about 2 n^3 / 3 flops in matrix products (against n^3 for a triangular solve of the
# identity and 2 n^3 for the dense product), exactly symmetric; 0.69x / 0.61x of those two
# at n = 500 / 1000. (NumPy has no LAPACK potri.)
_CHO_INVERSE = f'''\
def _cho_inverse(L):
    """inv(L @ L.T) for a lower triangular L (n, n): inv(L), then inv(L).T @ inv(L), each by
    halves of the rows (down to blocks of {_TRI_BLOCK}), smaller halves first."""
    splits, leaves = _halves(0, L.shape[-1])
    inv_l = np.zeros_like(L)
    out = np.empty(L.shape, dtype=L.dtype)
    for s, e in leaves:
        inv_l[s:e, s:e] = np.linalg.inv(np.tril(L[s:e, s:e]))
        out[s:e, s:e] = inv_l[s:e, s:e].T @ inv_l[s:e, s:e]
    for s, m, e in splits:  # [[A, 0], [B, C]]^-1 = [[A^-1, 0], [-C^-1 B A^-1, C^-1]]
        inv_l[m:e, s:m] = -(inv_l[m:e, m:e] @ (L[m:e, s:m] @ inv_l[s:m, s:m]))
    for s, m, e in splits:  # [[P, 0], [Q, R]]^T [[P, 0], [Q, R]]
        q = inv_l[m:e, s:m]
        out[s:m, s:m] += q.T @ q
        out[s:m, m:e] = q.T @ inv_l[m:e, m:e]
        out[m:e, s:m] = out[s:m, m:e].T
    return out


def _halves(s, e):
    """The splits (s, m, e) of rows s:e into halves, down to blocks of {_TRI_BLOCK} rows (a
    split after its halves' splits), and those blocks (s, e)."""
    if e - s <= {_TRI_BLOCK}:
        return [], [(s, e)]
    m = (s + e) // 2
    first, second = _halves(s, m), _halves(m, e)
    return first[0] + second[0] + [(s, m, e)], first[1] + second[1]
'''


def _emit_cho_inverse(p, node):
    return p.helper("_cho_inverse", p.args(node, 0)), PREC_CALL


def _cho_inverse_jvp(ts, n):
    """d inv(L L^T) = -inv(L L^T) (dL L^T + L dL^T) inv(L L^T)."""
    factor, t = n.args[0], ts[0]
    if t is None:
        return None
    return -(n @ (t @ swap_last(factor) + factor @ swap_last(t)) @ n)


def _cho_inverse_vjp(g, n):
    """With G = -inv(K) g inv(K) (K = L L^T, inv(K) symmetric), L_bar = (G + G^T) L."""
    big = -(n @ g @ n)
    return ((big + swap_last(big)) @ n.args[0],)


defop("cho_inverse", 1, shape=lambda args: _square(args[0], "cho_inverse"),
      emit=_emit_cho_inverse, prelude=_CHO_INVERSE, domain=(INVERTIBLE,), hint="inv",
      vjp=_cho_inverse_vjp, jvp=_cho_inverse_jvp, vmap=_cho_inverse_jvp)


def _spd_jvp(ts, n):
    return None if ts[0] is None else _sym(ts[0])


defop("spd", 2, shape=lambda args: _square(args[0], "spd"), emit=_emit_identity,
      traits=frozenset({"transparent"}), view="view", domain=(SPD, REAL),
      vjp=lambda g, n: (_sym(g), None), jvp=_spd_jvp, vmap=_spd_jvp)


# ---------------------------------------------------------------- einsum

def parse_einsum(spec, nargs: int | None = None, source: bool = False
                 ) -> tuple[list[str], str]:
    """The operand indices and output indices of an einsum spec ("ij,jk->ik").

    The op takes explicit outputs and distinct indices within each operand; the built-in
    (`source=True`) also takes NumPy's implicit output ("ab,b": the indices that occur
    once, sorted) and repeated indices ("ii->i"), which `_einsum_builtin` rewrites.
    """
    if not isinstance(spec, str):
        raise ShapeError('the first argument of einsum must be a string such as "ij,jk->ik"')
    text = spec.replace(" ", "")
    if "." in text:
        raise ShapeError("'...' in einsum specs is not supported; name every axis")
    if text.count("->") > 1 or (text.count("->") == 0 and not source):
        raise ShapeError(f"einsum spec {spec!r} needs one explicit output, as in \"ij,jk->ik\"")
    if "->" in text:
        lhs, out = text.split("->")
    else:
        lhs = text
        out = "".join(sorted(c for c in set(lhs) if lhs.count(c) == 1 and c != ","))
    ins = lhs.split(",")
    for labels in ins + [out]:
        bad = next((c for c in labels if not (c.isascii() and c.isalpha())), None)
        if bad is not None:
            raise ShapeError(f"einsum spec {spec!r}: {bad!r} is not an index letter")
    if nargs is not None and len(ins) != nargs:
        raise ShapeError(f"einsum spec {spec!r} names {len(ins)} operand(s) but {nargs} "
                         f"array(s) were given")
    for labels in ins if not source else ():
        rep = next((c for c in labels if labels.count(c) > 1), None)
        if rep is not None:
            raise ShapeError(f"einsum spec {spec!r}: index {rep!r} repeated within one operand")
    rep = next((c for c in out if out.count(c) > 1), None)
    if rep is not None:
        raise ShapeError(f"einsum spec {spec!r}: index {rep!r} repeated in the output")
    missing = next((c for c in out if c not in lhs), None)
    if missing is not None:
        raise ShapeError(f"einsum spec {spec!r}: output index {missing!r} is not an index of "
                         "any operand")
    return ins, out


def _spec(ins, out) -> str:
    return ",".join(ins) + "->" + out


def _check_ranks(spec, ins, args):
    for labels, a in zip(ins, args):
        if len(labels) != a.ndim:
            raise ShapeError(f"einsum spec {spec!r}: operand {labels!r} has {len(labels)} "
                             f"indices but the array has shape {fmt_shape(a.shape)}")


def _einsum_shape(args, spec):
    ins, out = parse_einsum(spec, len(args))
    _check_ranks(spec, ins, args)
    dims: dict = {}
    for labels, a in zip(ins, args):
        for c, d in zip(labels, a.shape):
            if c in dims and not dims_equal(dims[c], d):
                raise ShapeError(f"einsum spec {spec!r}: index {c!r} has sizes "
                                 f"{fmt_dim(dims[c])} and {fmt_dim(d)}")
            dims.setdefault(c, d)
    return tuple(dims[c] for c in out)


@rewrite("einsum")
def einsum_one_operand(*args, spec):
    """An einsum of one operand is a sum and a transpose."""
    if len(args) != 1:
        return None
    ins, out = parse_einsum(spec, len(args))
    (labels,), (x,) = ins, args
    summed = tuple(i for i, c in enumerate(labels) if c not in out)
    kept = [c for c in labels if c in out]
    if summed:
        x = make("sum", x, axes=summed, keepdims=False)
    return make("transpose", x, axes=tuple(kept.index(c) for c in out))


@rewrite("einsum")
def einsum_matmul(*args, spec):
    """An einsum of two operands that multiplies matrices is `@` (with transposes)."""
    if len(args) != 2:
        return None
    return _as_matmul(*parse_einsum(spec, len(args)), args)


def _as_matmul(ins, out, args):
    """a @ b (with transposes) for two operands of at most two indices that share one
    summed index and whose other indices go to the output, each from one operand."""
    (la, lb), (a, b) = ins, args
    shared = [c for c in la if c in lb]
    if len(shared) != 1 or shared[0] in out or a.ndim > 2 or b.ndim > 2:
        return None
    (c,) = shared
    fa, fb = [x for x in la if x != c], [x for x in lb if x != c]
    if "".join(fa + fb) == out:
        left, right, lf, rf = a, b, la, lb
    elif "".join(fb + fa) == out:
        left, right, lf, rf = b, a, lb, la
    else:
        return None
    if lf[-1] != c:          # the summed index last on the left ...
        left = left.T
    if len(rf) == 2 and rf[0] != c:   # ... and first on the right
        right = right.T
    return left @ right


@rewrite("einsum")
def einsum_contraction(*args, spec):
    """An einsum of two operands that sums over a shared index is one matrix product:
    `@` of the operands transposed (and reshaped) to (batch..., rows, k) and
    (batch..., k, cols), which BLAS does, where np.einsum would loop in C."""
    if len(args) != 2:
        return None
    (la, lb), out = parse_einsum(spec, 2)
    a, b = args
    if not any(c in lb and c not in out for c in la):
        return None   # no contraction: an elementwise or outer product, einsum's own work
    a, la = _sum_alone(a, la, lb + out)
    b, lb = _sum_alone(b, lb, la + out)
    dims = dict(zip(la, a.shape)) | dict(zip(lb, b.shape))
    batch = [c for c in out if c in la and c in lb]
    contr = [c for c in la if c in lb and c not in out]
    free_a = [c for c in out if c in la and c not in lb]
    free_b = [c for c in out if c in lb and c not in la]
    # the operand whose free indices come first in the output goes on the left
    if free_a and free_b and out.index(free_b[0]) < out.index(free_a[0]):
        (a, la, free_a), (b, lb, free_b) = (b, lb, free_b), (a, la, free_a)

    def group(x, labels, order, shape):
        x = make("transpose", x, axes=tuple(labels.index(c) for c in order))
        return make("reshape", x, shape=shape)

    def sz(cs):
        return size(tuple(dims[c] for c in cs))

    bshape = tuple(dims[c] for c in batch)
    if batch:   # matrices with a unit axis for a missing side: (batch..., m, k) @ (batch..., k, n)
        left = group(a, la, batch + free_a + contr, bshape + (sz(free_a), sz(contr)))
        right = group(b, lb, batch + contr + free_b, bshape + (sz(contr), sz(free_b)))
    else:       # vectors where a side has no free index: NumPy's matrix-vector products
        left = group(a, la, free_a + contr, ((sz(free_a),) if free_a else ()) + (sz(contr),))
        right = group(b, lb, contr + free_b, (sz(contr),) + ((sz(free_b),) if free_b else ()))
    natural = batch + free_a + free_b
    y = make("reshape", left @ right, shape=tuple(dims[c] for c in natural))
    return make("transpose", y, axes=tuple(natural.index(c) for c in out))


@rewrite("einsum", tag="lower")
def einsum_batched_matvec(*args, spec):
    """A batch of square matrices times a batch of vectors, `np.einsum("ik,ijk->ij", v, W)`
    (hmm's backward step, made by reductions.sum_inner_einsum from `sum(v[:, None] * W,
    axis=2)`), is `(W @ v[:, :, None])[:, :, 0]`: NumPy's matmul loop, no copies (the
    summed axis is last in both). Measured single-threaded, (N, K, K) = (64, 16, 16):
    9.1 -> 5.1 us; (1000, 16, 16), (64, 64, 64): 0.5-0.65x. Square matrices only: for
    small non-square ones (10000, 3, 5) matmul took 2x einsum's time, and the sizes are
    symbolic here."""
    if len(args) != 2:
        return None
    (la, lb), out = parse_einsum(spec, 2)
    if len(la) > len(lb):
        (la, lb), args = (lb, la), args[::-1]
    v, w = args
    if len(lb) < 3 or len(la) != len(lb) - 1 or out != lb[:-1] or la != lb[:-2] + lb[-1:] \
            or not dims_equal(w.shape[-1], w.shape[-2]) \
            or v.dtype != "float" or w.dtype != "float":
        return None
    product = make("matmul", w, make("expand_dims", v, axes=(v.ndim,)))
    return make("squeeze", product, axes=(w.ndim - 1,))


def _sum_alone(x, labels, others):
    """x summed over its indices that occur nowhere in `others` (the other operand's and
    the output's), and its remaining indices."""
    alone = tuple(i for i, c in enumerate(labels) if c not in others)
    if not alone:
        return x, labels
    return (make("sum", x, axes=alone, keepdims=False),
            "".join(c for c in labels if c in others))


def _emit_einsum(p, node):
    args = [f'"{node.attr("spec")}"', *p.args(node)]
    # without optimize=, NumPy sums over every index at once: O(n^4) here
    return p.call("einsum", args, ["optimize=True"] if len(node.args) > 2 else []), PREC_CALL


def _einsum_vjp(g, n):
    """The cotangent of operand k: the einsum of g with the other operands, onto k's
    indices; indices that only k has (summed in the forward pass) come back as size-1
    axes, which the differentiator broadcasts."""
    ins, out = parse_einsum(n.attr("spec"))
    cts = []
    for k, labels in enumerate(ins):
        others = [(ins[j], n.args[j]) for j in range(len(ins)) if j != k]
        avail = set(out).union(*(set(lj) for lj, _ in others))
        target = "".join(c for c in labels if c in avail)
        ct = make("einsum", g, *(a for _, a in others),
                  spec=_spec([out] + [lj for lj, _ in others], target))
        lonely = tuple(i for i, c in enumerate(labels) if c not in avail)
        cts.append(make("expand_dims", ct, axes=lonely) if lonely else ct)
    return tuple(cts)


def _einsum_jvp(ts, n):
    spec = n.attr("spec")
    return _total(*(t and make("einsum", *n.args[:k], t, *n.args[k + 1:], spec=spec)
                    for k, t in enumerate(ts)))


def _einsum_vmap(ts, n):
    """A new index for the batch axis, on each tangent and the output."""
    ins, out = parse_einsum(n.attr("spec"))
    used = set("".join(ins) + out)
    z = next(c for c in "zyxwvutsrqponmlkjihgfedcbaZYXWVUTSRQPONMLKJIHGFEDCBA" if c not in used)
    terms = []
    for k, t in enumerate(ts):
        if t is not None:
            spec = _spec(ins[:k] + [z + ins[k]] + ins[k + 1:], z + out)
            terms.append(make("einsum", *n.args[:k], t, *n.args[k + 1:], spec=spec))
    return _total(*terms)


# einsum[spec](operands...): np.einsum with an explicit output and no '...'.
def _emit_einsum_xp(p, node):
    """The standard has no einsum: each operand's repeated indices reduced to their
    diagonal (times an identity, summed), its axes permuted into the order of all the
    indices with size-1 axes for those it lacks, the product summed over the indices
    not in the output, permuted into the output's order. Two operands that share no
    output index contract with `tensordot` instead (no broadcast product)."""
    ins, out = parse_einsum(node.attr("spec"), len(node.args))
    sizes = {c: d for labels, a in zip(ins, node.args) for c, d in zip(labels, a.shape)}
    terms, codes = [], []
    for labels, a, code in zip(ins, node.args, p.args(node, PREC_MUL + 1)):
        labels = list(labels)
        while len(set(labels)) < len(labels):   # a diagonal: "ii", "ijj"
            c = next(c for c in labels if labels.count(c) > 1)
            i, j = labels.index(c), labels.index(c, labels.index(c) + 1)
            n = p.scalar(sizes[c], integer=True)[0]
            eye = p.creation("eye", n, p.dtype_of(p.arg(node, 0, PREC_CALL)))
            items = ["None"] * len(labels)
            items[i] = items[j] = ":"
            eye = p.subscript(eye, items, 2) if len(labels) > 2 else eye
            code = p.call("sum", [f"{code} * {eye}"], [f"axis={j}"])
            del labels[j]
        terms.append(labels)
        codes.append(code)
    if len(terms) == 2 and not set(terms[0]) & set(terms[1]) & set(out):
        shared = [c for c in terms[0] if c in terms[1]]
        axes = (tuple(terms[0].index(c) for c in shared), tuple(terms[1].index(c) for c in shared))
        code = p.call("tensordot", [p.arg(node, 0, 0) if codes[0] == p.arg(node, 0, PREC_MUL + 1)
                                    else codes[0],
                                    p.arg(node, 1, 0) if codes[1] == p.arg(node, 1, PREC_MUL + 1)
                                    else codes[1]], [f"axes={axes}"])
        got = [c for c in terms[0] if c not in shared] + [c for c in terms[1] if c not in shared]
        summed = [i for i, c in enumerate(got) if c not in out]
        if summed:   # an index of one operand alone, not in the output
            code = p.call("sum", [code], [f"axis={p.axes(tuple(summed))}"])
            got = [c for c in got if c in out]
    else:
        order = list(dict.fromkeys(c for t in terms for c in t))
        parts = []
        for labels, code in zip(terms, codes):
            ranked = sorted(labels, key=order.index)
            if ranked != labels:
                code = p.call("permute_dims", [code, str(tuple(labels.index(c) for c in ranked))])
            items = [":" if c in labels else "None" for c in order]
            if "None" in items:
                code = p.subscript(code if ranked != labels or code.isidentifier()
                                   else f"({code})", items, len(labels))
            parts.append(code)
        code = " * ".join(parts)
        summed = tuple(i for i, c in enumerate(order) if c not in out)
        got = [c for c in order if c in out]
        if summed:
            code = p.call("sum", [code], [f"axis={p.axes(summed)}"])
    if got != list(out):
        code = p.call("permute_dims", [code, str(tuple(got.index(c) for c in out))])
    return code, PREC_CALL if (got != list(out) or len(terms) == 2 or summed) else PREC_MUL


defop("einsum", None, shape=_einsum_shape, emit={"numpy": _emit_einsum,
                                                 "array_api": _emit_einsum_xp},
      hint=lambda n, labels: "_sum" if len(n.args) == 1 else None,   # a row sum (lowered)
      traits=frozenset({"multilinear"}), domain=(REAL, REAL, REAL),
      vjp=_einsum_vjp, jvp=_einsum_jvp, vmap=_einsum_vmap)


def _einsum_builtin(spec, operands):
    """einsum as NumPy's (explicit or implicit output). An index repeated within an operand
    (a diagonal) becomes a fresh index and an identity matrix operand joining the two:
    "ii->" is trace, "ii->i" the diagonal, "ij,jj->i" is einsum("ij,jk,jk->i", a, b, I)."""
    ins, out = parse_einsum(spec, len(operands), source=True)
    _check_ranks(spec, ins, operands)
    if len(ins) == 1 and len(ins[0]) == 2 and ins[0][0] == ins[0][1] and operands[0].ndim == 2:
        a = operands[0]
        if not dims_equal(*a.shape):
            raise ShapeError(f"einsum spec {spec!r}: index {ins[0][0]!r} has sizes "
                             f"{fmt_dim(a.shape[0])} and {fmt_dim(a.shape[1])}")
        return make("trace" if not out else "diagonal", a)
    operands, used = list(operands), set("".join(ins))
    fresh = (c for c in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ" if c not in used)
    for k in range(len(ins)):
        labels, x = ins[k], operands[k]
        new = list(labels)
        for i, c in enumerate(labels):
            first = labels.index(c)
            if first < i:
                if not dims_equal(x.shape[first], x.shape[i]):
                    raise ShapeError(f"einsum spec {spec!r}: index {c!r} has sizes "
                                     f"{fmt_dim(x.shape[first])} and {fmt_dim(x.shape[i])}")
                new[i] = next(fresh)
                ins.append(c + new[i])
                operands.append(eye_like(x, x.shape[i]))
        ins[k] = "".join(new)
    return make("einsum", *operands, spec=_spec(ins, out))


defbuiltin("einsum", ("spec", "operands"), _einsum_builtin, static=("spec",), variadic=True,
           list_param="operands")
