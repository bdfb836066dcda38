"""Source of the private helpers an array-API module carries (`--target array-api`).

They are written against the Python array API standard (2023.12) only: every helper that
computes takes the namespace `xp` first (found once per call of an emitted function by
`_namespace`), creates arrays with its arguments' dtype and device, and uses no `out=`,
no array methods and nothing NumPy-only, so that they run on NumPy, CuPy, PyTorch, JAX
(also under `jax.jit`), Dask and `array_api_strict` alike. The NumPy target's helpers
are in `runtime.py`; the size checks that need no namespace (`_solve`, `_exact`,
`_within`) are shared.
"""

# The module's import: array_api_compat when installed (it gives PyTorch, Dask, CuPy and
# NumPy < 2 a standard namespace), else the arrays' own `__array_namespace__`.
IMPORTS = '''\
try:
    from array_api_compat import array_namespace
    from array_api_compat import device as device_of
except ImportError:  # the arrays' own namespace (NumPy >= 2, JAX, CuPy, array_api_strict)
    array_namespace = device_of = None'''

# The names the module's code binds besides its helpers (ModuleNamer keeps them free of
# the user's names): the import's, and the namespace and device local to every function.
BOUND = "array_namespace = device_of = xp = device = math = slice = None"

NAMESPACE = '''\
def _namespace(*args):
    """The array API namespace of the array arguments and their device (Python numbers
    are left out): array_api_compat's when it is installed, else the arrays' own
    `__array_namespace__()`."""
    arrays = ()
    for x in args:
        if not isinstance(x, (float, int)):
            arrays += (x,)
    if not arrays:
        raise TypeError("expected at least one array argument, got only Python numbers")
    if array_namespace is not None:  # (it leaves Python numbers out too)
        return array_namespace(*args), device_of(arrays[0])
    found = None
    for x in arrays:
        if not hasattr(x, "__array_namespace__"):
            raise TypeError(
                f"{type(x).__name__} is not an array of the array API standard; "
                "install array_api_compat (PyTorch, Dask and NumPy < 2 need it)"
            )
        xp = x.__array_namespace__()
        if found is not None and xp is not found:
            raise TypeError("the arguments are arrays of different array libraries")
        found = xp
    return found, getattr(arrays[0], "device", None)  # (None under jax.jit: the default)'''

CHECK_DIMS = '''\
def _dims(xp, spec, *args):
    """Check the arguments' shapes against their declarations (dimension names must agree);
    raise ValueError naming the argument, the axis and both sizes (TypeError for what is
    neither an array of floats nor a Python number; ValueError for an Index argument,
    marked "int" in `spec`, that is not an array of integers or a Python int). A size
    that is not known yet (None or NaN, Dask's unknown chunk sizes) agrees with any."""
    shapes = ()
    for x in args:
        shape = getattr(x, "shape", None)
        if len(spec[len(shapes)]) > 2:  # Index[...] or int: integers
            got = type(x).__name__ if shape is None else x.dtype
            if not (type(x) is int if shape is None else xp.isdtype(x.dtype, "integral")):
                raise ValueError(
                    f"argument {spec[len(shapes)][0]!r}: expected an array "
                    f"of integers or a Python int, got {got}"
                )
            shapes += (() if shape is None else tuple(shape),)
            continue
        if shape is None:
            if not isinstance(x, (float, int)):
                raise TypeError(
                    f"argument {spec[len(shapes)][0]!r}: expected an array "
                    f"of floats or a Python number, got {type(x).__name__}"
                )
            shape = ()
        elif not xp.isdtype(x.dtype, "real floating"):
            raise TypeError(
                f"argument {spec[len(shapes)][0]!r}: expected an array "
                f"of floats or a Python number, got an array of {x.dtype}"
            )
        shapes += (tuple(shape),)
    if (spec, shapes) in _DIMS_PASSED:
        return
    sizes, origin = {}, {}
    for entry, shape in zip(spec, shapes):
        name, decl = entry[0], entry[1]
        if len(shape) != len(decl):
            raise ValueError(
                f"argument {name!r}: expected {len(decl)} dimension(s) {decl}, got shape {shape}",
            )
        for axis, dim in enumerate(decl):
            n = shape[axis]
            if n is None or n != n:  # unknown: None, or NaN (a Dask array's)
                continue
            if dim.__class__ is int:
                if n != dim:
                    raise ValueError(
                        f"argument {name!r}, axis {axis}: expected size {dim}, got {n}"
                    )
            elif dim is None:
                continue
            elif dim not in sizes:
                sizes[dim] = n
                origin[dim] = name, axis
            elif sizes[dim] != n:
                where, at = origin[dim]
                raise ValueError(
                    f"argument {name!r}, axis {axis}: size {n} does not match "
                    f"{dim} = {sizes[dim]} (from argument {where!r}, axis {at})"
                )
    if len(_DIMS_PASSED) >= 256:  # a bound, for programs called with ever new sizes
        _DIMS_PASSED.clear()
    _DIMS_PASSED.add((spec, shapes))


# The (spec, shapes) that passed _dims: a call with the same shapes skips the checking loop.
_DIMS_PASSED = set()'''

CHECK_SHAPE = '''\
def _expect(xp, name, x, shape):
    """Check that argument `name` has exactly `shape` (and holds floats); an unknown size
    (None or NaN) agrees with any."""
    dtype = getattr(x, "dtype", None)
    if dtype is not None and not xp.isdtype(dtype, "real floating"):
        raise TypeError(
            f"argument {name!r}: expected an array of floats or a Python "
            f"number, got an array of {dtype}"
        )
    if dtype is None and not isinstance(x, (float, int)):
        raise TypeError(
            f"argument {name!r}: expected an array of floats or a Python "
            f"number, got {type(x).__name__}"
        )
    actual = () if dtype is None else tuple(x.shape)
    if len(actual) != len(shape):
        raise ValueError(
            f"argument {name!r}: expected shape {tuple(shape)}, got {actual}",
        )
    for axis, (n, m) in enumerate(zip(actual, shape)):
        if n is not None and n == n and n != m:
            raise ValueError(
                f"argument {name!r}, axis {axis}: expected size {m}, got {n}",
            )'''

WEAK_SCALAR = '''\
def _weak(xp, device, x, *arrays):
    """A Python number passed for a scalar argument, as a 0-d array of the dtype of the
    array arguments (weakly typed: it does not make float32 float64) on their device; an
    array unchanged."""
    if type(x) in (float, int):
        dtype = xp.float64
        for a in arrays:
            if not isinstance(a, (float, int)):
                dtype = a.dtype
        return xp.asarray(x, dtype=dtype, device=device)
    return x'''

SIGMOID = '''\
def _sigmoid(xp, x):
    """The logistic function 1 / (1 + exp(-x)), stable for every x: exp of -|x| never
    overflows, so no floating-point error state is needed."""
    e = xp.exp(-xp.abs(x))
    r = 1 / (1 + e)
    return xp.where(x >= 0, r, e * r)'''

SIGMOID_NEG = '''\
def _sigmoid_neg(xp, x):
    """The logistic function of -x, 1 / (1 + exp(x)), stable for every x (as `_sigmoid`)."""
    e = xp.exp(-xp.abs(x))
    r = 1 / (1 + e)
    return xp.where(x >= 0, e * r, r)'''

SCATTER_ADD = '''\
def _scatter_add(xp, device, g, shape, axis, *index):
    \"\"\"Zeros of `shape` with `g` added at [:, ..., :, *index] (`axis` full slices first;
    the index arrays broadcast together), repeated indices accumulating: the VJP of the
    gather x[:, ..., *index]. The standard has no scatter-add: this is a product with the
    one-hot matrix of the positions (m x size of the indexed axes), which every library
    runs (also JAX under jit and Dask), at O(m x size) work and memory. A negative index
    counts from the end.\"\"\"
    sizes = shape[axis : axis + len(index)]
    flat = 0
    for i, n in zip(index, sizes):
        i = xp.asarray(i)
        flat = flat * n + xp.where(i < 0, i + n, i)
    size = 1
    for n in sizes:
        size *= n
    lead = shape[:axis]
    count = 1
    for n in g.shape[axis : g.ndim - (len(shape) - axis - len(index))]:
        count *= n
    flat = xp.reshape(flat, (count,))
    hot = flat[:, None] == xp.arange(size, dtype=flat.dtype, device=device)[None, :]
    rows = xp.reshape(g, lead + (count, -1))  # (*lead, m, rest)
    out = xp.matrix_transpose(xp.astype(hot, g.dtype)) @ rows  # (*lead, size, rest)
    return xp.reshape(out, shape)'''

GATHER = '''\
def _gather(xp, x, axis, *index):
    \"\"\"x[:, ..., :, *index] (`axis` full slices first; the index arrays broadcast
    together) in the standard's form, which indexes with one 1-D integer array only
    (`take`): the indexed axes merged into one, taken at the flat positions (a negative
    index counts from the end; a Python int among arrays, a loop's `t`, is one of them).\"\"\"
    if len(index) > 1:
        like = None
        for i in index:
            if not isinstance(i, int):
                like = i
        ints, index = index, ()
        for i in ints:
            index += (xp.full_like(like, i) if isinstance(i, int) else i,)
        index = xp.broadcast_arrays(*index)
    sizes = x.shape[axis : axis + len(index)]
    flat = 0
    for i, n in zip(index, sizes):
        flat = flat * n + xp.where(i < 0, i + n, i)
    size = 1
    for n in sizes:
        size *= n
    lead, rest = x.shape[:axis], x.shape[axis + len(index) :]
    merged = xp.reshape(x, lead + (size,) + rest)
    out = xp.take(merged, xp.reshape(flat, (-1,)), axis=axis)
    return xp.reshape(out, lead + tuple(flat.shape) + rest)'''

SOLVE_TRIANGULAR = '''\
def _solve_triangular(xp, a, b, lower):
    \"\"\"x with tril(a) @ x = b (triu(a) with lower=False), reading only that triangle; b a
    vector (n,) or matrices (..., n, k), as linalg.solve; a stack of them against one
    matrix as the columns of one right-hand side (Dask solves no stacks).\"\"\"
    t = xp.tril(a) if lower else xp.triu(a)
    if a.ndim > 2 or b.ndim <= 2:
        return xp.linalg.solve(t, b)
    n, k = b.shape[-2], b.shape[-1]
    x = xp.linalg.solve(t, xp.reshape(xp.moveaxis(b, -2, 0), (n, -1)))
    return xp.moveaxis(xp.reshape(x, (n,) + tuple(b.shape[:-2]) + (k,)), 0, -2)'''

SOLVE_STACK = '''\
def _solve_stack(xp, a, b, order, back):
    """linalg.solve(a, b) of one matrix a (n, n) and a stack b (..., n, k), as the
    columns of one right-hand side (n, ... * k): `order` puts the rows first, `back`
    restores the stack's axes (Dask solves no stacks, nor does the standard promise it
    against one matrix)."""
    n, k = b.shape[-2], b.shape[-1]
    columns = xp.reshape(xp.permute_dims(b, order), (n, -1))
    x = xp.reshape(xp.linalg.solve(a, columns), (n,) + tuple(b.shape[:-2]) + (k,))
    return xp.permute_dims(x, back)'''

SET = '''\
def _set(xp, index, value, out=None):
    """`out` (an array the function owns) with `out[index] = value`: in place where the
    library allows it; JAX's arrays are immutable, so there `out.at[index].set(value)`."""
    if hasattr(out, "at"):
        return out.at[index].set(value)
    out[index] = value
    return out'''

CHOLESKY = '''\
def _cholesky(xp, a):
    """The lower Cholesky factor L of a (a = L @ L.T), whichever factor the library's
    linalg.cholesky returns: array_api_compat 1.16 gives Dask's upper one, U = L.T, and
    tril(U) + triu(U, 1).T is L again (for a lower factor it is L itself). Dask factors
    only matrices in equal square chunks: a Dask array's matrix is put in one chunk."""
    if hasattr(a, "map_blocks"):
        a = a.rechunk({a.ndim - 2: -1, a.ndim - 1: -1})
    f = xp.linalg.cholesky(a)
    return xp.tril(f) + xp.matrix_transpose(xp.triu(f, k=1))'''

XLOGY = '''\
def _xlogy(xp, x, y):
    \"\"\"x * log(y), elementwise, with 0 where x == 0 and y is not nan (so 0 * log(0) = 0),
    as scipy.special.xlogy; log(0) is -inf without a floating-point error state.\"\"\"
    r = x * xp.log(y)
    return xp.where((x == 0) & ~xp.isnan(y), xp.zeros_like(r), r)'''

EXPSCAN = '''\
def _expscan(xp, v, a, b, axis, reverse=None):
    \"\"\"sum over i up to j (from j to the end with reverse=True) along `axis` of
    v[i] * exp(a[i] + b[j]), by the sign of v. The standard has no cumulative logaddexp:
    the terms are shifted by the largest exponent along the axis (exact where they stay
    within exp's range of it; a term more than about 700 below the largest adds 0).\"\"\"
    v, a, b = xp.broadcast_arrays(v, a, b)
    m = xp.max(a, axis=axis, keepdims=True)
    m = xp.where(xp.isfinite(m), m, xp.zeros_like(m))
    terms = v * xp.exp(a - m)
    if reverse:
        terms = xp.flip(terms, axis=axis)
    s = xp.cumulative_sum(terms, axis=axis)
    if reverse:
        s = xp.flip(s, axis=axis)
    return s * xp.exp(b + m)'''

LOGCUMSUMEXP = '''\
def _logcumsumexp(xp, x, axis, reverse=None):
    \"\"\"log(cumulative_sum(exp(x))) along `axis` (from the end with reverse=True), shifted
    by the largest value along the axis (the standard has no cumulative logaddexp; a value
    more than about 700 below the largest adds nothing).\"\"\"
    m = xp.max(x, axis=axis, keepdims=True)
    m = xp.where(xp.isfinite(m), m, xp.zeros_like(m))
    e = xp.exp(x - m)
    if reverse:
        e = xp.flip(e, axis=axis)
    s = xp.cumulative_sum(e, axis=axis)
    if reverse:
        s = xp.flip(s, axis=axis)
    return xp.log(s) + m'''

ZERO_DIAGONAL = '''\
def _zero_diagonal(xp, device, x):
    """x with the diagonal of its last two axes set to 0: the standard has no item
    assignment on every library, so this is the product with the off-diagonal mask."""
    return x * (1 - xp.eye(x.shape[-2], x.shape[-1], dtype=x.dtype, device=device))'''
PLUS_DIAGONAL = '''\
def _plus_diagonal(xp, device, x, c):
    """x + c * I for a square matrix x (the standard has no item assignment on every
    library: the identity is built)."""
    return x + c * xp.eye(x.shape[-1], dtype=x.dtype, device=device)'''
SCATTER_SET = '''\
def _scatter_set(xp, device, out, value, axis, *index):
    """`out` (an array the function owns) with `out[:, ..., :, *index] = value` (`axis`
    full slices first, the index arrays broadcast together, their positions distinct): the
    standard has no assignment at integer arrays (array_api_strict refuses it), so the
    positions written are those a scatter-add of ones reaches (_scatter_add), where `where`
    takes the scattered values (or the number `value`), and `out` elsewhere."""
    shape = tuple(out.shape)
    ones = xp.ones_like(_gather(xp, out, axis, *index))
    hit = _scatter_add(xp, device, ones, shape, axis, *index) > 0
    if isinstance(value, (float, int)):
        return xp.where(hit, xp.asarray(value, dtype=out.dtype, device=device), out)
    return xp.where(hit, _scatter_add(xp, device, value, shape, axis, *index), out)'''

DET = '''\
def _det(xp, a):
    """det(a) of a matrix (n, n) or a stack of them (..., n, n): linalg.det of the
    namespace; of a Dask array by _by_matrix (array_api_compat's Dask namespace has no
    det)."""
    if hasattr(a, "map_blocks"):
        return _by_matrix(a, "det")
    return xp.linalg.det(a)'''

LOGDET = '''\
def _logdet(xp, a):
    """log |det(a)| of a matrix (n, n) or a stack of them (..., n, n): linalg.slogdet of
    the namespace; of a Dask array by _by_matrix (array_api_compat's Dask namespace has no
    slogdet)."""
    if hasattr(a, "map_blocks"):
        return _by_matrix(a, "slogdet")
    return xp.linalg.slogdet(a).logabsdet'''

# (carried by a module with _det or _logdet: ArrayApiPrinter.helper adds it beside them)
BY_MATRIX = '''\
def _by_matrix(a, name):
    """det (name "det") or slogdet's logabsdet ("slogdet") of a Dask array of matrices
    (..., n, n), lazily: the last two axes are put in one chunk (rechunk), and each block's
    matrices are factored by the linear algebra of the blocks' own library (NumPy, CuPy;
    map_blocks), so the result is a Dask array computed block by block."""
    k = a.ndim
    a = a.rechunk({k - 2: -1, k - 1: -1})

    def per_block(block):
        xp = array_namespace(block)
        if name == "det":
            return xp.linalg.det(block)
        return xp.linalg.slogdet(block).logabsdet

    return a.map_blocks(per_block, drop_axis=(k - 2, k - 1), dtype=a.dtype)'''

CHO_INVERSE = '''\
def _cho_inverse(xp, L):
    """inv(L @ L.T) for a lower triangular L (n, n), the inverse of the matrix L factors
    (the NumPy target's helper works by halves; here the library's inverse of L)."""
    inv_l = xp.linalg.inv(L)
    return xp.matrix_transpose(inv_l) @ inv_l'''

# The helpers of the array-API target, by the name the printer calls (`Printer.helper`).
HELPERS = {"_sigmoid": SIGMOID, "_scatter_add": SCATTER_ADD, "_gather": GATHER,
           "_sigmoid_neg": SIGMOID_NEG,
           "_solve_triangular": SOLVE_TRIANGULAR, "_solve_stack": SOLVE_STACK,
           "_set": SET, "_cholesky": CHOLESKY, "_xlogy": XLOGY, "_expscan": EXPSCAN,
           "_logcumsumexp": LOGCUMSUMEXP, "_zero_diagonal": ZERO_DIAGONAL, "_det": DET,
           "_logdet": LOGDET, "_by_matrix": BY_MATRIX, "_scatter_set": SCATTER_SET,
           "_cho_inverse": CHO_INVERSE, "_plus_diagonal": PLUS_DIAGONAL}
# Helpers that call others: the module carries them too.
CALLS = {"_det": ("_by_matrix",), "_logdet": ("_by_matrix",),
         "_scatter_set": ("_gather", "_scatter_add")}
# The checks at entry (compiler.py adds them to the module), called with `xp` first.
CHECKS = {"_dims": CHECK_DIMS, "_expect": CHECK_SHAPE, "_weak": WEAK_SCALAR}
# The helpers called with the device after `xp` (they create arrays).
WITH_DEVICE = frozenset({"_weak", "_scatter_add", "_scatter_set", "_zero_diagonal",
                         "_plus_diagonal"})
# The helpers that need no namespace (the size checks of runtime.SIZE_CHECKS, shared).
NO_NAMESPACE = frozenset({"_solve", "_exact", "_within"})


from .runtime_xp_special import HELPERS as _SPECIAL  # noqa: E402  (erf, gammaln, ...)

HELPERS.update(_SPECIAL)


# Each source ends with a newline, as the NumPy target's helpers (the template's blank
# lines between top-level statements count on it).
HELPERS = {name: src if src.endswith("\n") else src + "\n" for name, src in HELPERS.items()}
CHECKS = {name: src + "\n" for name, src in CHECKS.items()}
NAMESPACE += "\n"


def sources() -> list[str]:
    """The source of every helper an array-API module may carry (and the names it binds)."""
    return [BOUND, NAMESPACE, *CHECKS.values(), *HELPERS.values()]
