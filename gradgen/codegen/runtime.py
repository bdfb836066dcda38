"""Source of the small private helpers the emitted modules carry (they import only NumPy)."""

CHECK_DIMS = '''\
def _dims(spec, *args):
    """Check the arguments' shapes against their declarations (dimension names must agree);
    raise ValueError naming the argument, the axis and both sizes (TypeError for what is
    neither an array of floats nor a Python number, or is a matrix; ValueError for an Index
    argument, marked "int" in `spec`, that is not an array of integers or a Python int).
    Whether the float arrays (and NumPy scalars) have one dtype: see `_one_dtype`."""
    ndarray = np.ndarray  # one look-up of the attribute, not one per argument
    key = spec  # and each array's dtype and shape, a number's type: a call like one
    for x in args:  # that passed with one dtype is done in one look-up
        key = key, (x.dtype, x.shape) if type(x) is ndarray else type(x)
    if key in _DIMS_PASSED:
        return True
    if (key, False) in _DIMS_PASSED:
        return False
    shapes = ()
    dtypes = set()
    for x in args:
        shape = getattr(x, "shape", None)
        if len(spec[len(shapes)]) > 2:  # Index[...] or int: integers
            got = type(x).__name__ if shape is None else x.dtype
            if not (type(x) is int if shape is None else x.dtype.kind in "iu"):
                raise ValueError(
                    f"argument {spec[len(shapes)][0]!r}: expected a NumPy array "
                    f"of integers or a Python int, got {got}"
                )
            shapes += (() if shape is None else shape,)
            continue
        if shape is None or x.dtype.kind != "f":  # a Python number, or no float array
            if shape is not None:
                raise TypeError(
                    f"argument {spec[len(shapes)][0]!r}: expected a NumPy array "
                    f"of floats or a Python number, got an array of {x.dtype}"
                )
            if not isinstance(x, (float, int)):
                raise TypeError(
                    f"argument {spec[len(shapes)][0]!r}: expected a NumPy array "
                    f"of floats or a Python number, got {type(x).__name__}"
                )
            shape = ()
        elif type(x).__name__[-6:] == "matrix":  # np.matrix, scipy csr_matrix, ...
            raise TypeError(
                f"argument {spec[len(shapes)][0]!r}: {type(x).__name__} is not supported "
                "(its * is a matrix product); pass an array: np.asarray(x), or "
                "scipy.sparse.csr_array(x) for sparse data"
            )
        else:
            dtypes.add(x.dtype)
        shapes += (shape,)
    sizes, origin = {}, {}
    for entry, shape in zip(spec, shapes):
        name, decl = entry[0], entry[1]
        if len(shape) != len(decl):
            raise ValueError(
                f"argument {name!r}: expected {len(decl)} dimension(s) {decl}, got shape {shape}",
            )
        for axis, dim in enumerate(decl):
            n = shape[axis]
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
    # the key stands for every call like this one only where it holds each argument's dtype
    # and shape: NumPy arrays (not subclasses such as np.matrix or memmap), Python numbers
    # and NumPy scalars (a 0-d array's dtype is the scalar's type)
    for x in args:
        if not (type(x) is np.ndarray or isinstance(x, (float, int, np.generic))):
            return len(dtypes) < 2
    if len(_DIMS_PASSED) >= 256:  # a bound, for programs called with ever new sizes
        _DIMS_PASSED.clear()
    _DIMS_PASSED.add(key if len(dtypes) < 2 else (key, False))
    return len(dtypes) < 2


# The calls (spec, then each argument's dtype and shape, or type) that passed _dims: as
# the key where their float dtypes agree, (key, False) where they differ (no key ends in
# False); a call like one of them skips the checks. (A set's `in` and `add` are atomic:
# threads may share it.)
_DIMS_PASSED = set[tuple[object, object]]()
'''

CHECK_SHAPE = '''\
def _expect(name, x, shape):
    """Check that argument `name` has exactly `shape` (and holds floats)."""
    dtype = getattr(x, "dtype", None)
    if dtype is not None and dtype.kind != "f":
        raise TypeError(
            f"argument {name!r}: expected a NumPy array of floats or a Python "
            f"number, got an array of {dtype}"
        )
    if dtype is None and not isinstance(x, (float, int)):
        raise TypeError(
            f"argument {name!r}: expected a NumPy array of floats or a Python "
            f"number, got {type(x).__name__}"
        )
    actual = np.shape(x)
    if len(actual) != len(shape):
        raise ValueError(
            f"argument {name!r}: expected shape {tuple(shape)}, got {actual}",
        )
    for axis, (n, m) in enumerate(zip(actual, shape)):
        if n != m:
            raise ValueError(
                f"argument {name!r}, axis {axis}: expected size {m}, got {n}",
            )
'''

WEAK_SCALAR = '''\
def _weak(x, *arrays) -> npt.NDArray[np.floating]:
    """A scalar argument as a 0-d array: a Python number with the dtype of the array
    arguments (weakly typed, as in NumPy 2: it does not make float32 float64), or with the
    one dtype passed instead where the caller knows it is theirs (`X.dtype`), a NumPy
    scalar with its own (np.float64 is a float too, but strongly typed), an array as it is."""
    if type(x) in (float, int):
        if len(arrays) == 1 and isinstance(arrays[0], np.dtype):
            return np.asarray(x, arrays[0])
        return np.asarray(x, np.result_type(*arrays, 0.0))
    return np.asarray(x)
'''

ONE_DTYPE = '''\
def _one_dtype(*args):
    """The float arguments in the one dtype they promote to (np.result_type), converted
    where they differ (copies): the function then computes in that dtype throughout, and
    may work in place in the buffers of any argument's values."""
    dtype = np.result_type(*args)
    out = ()
    for x in args:  # a Python number stays (`_weak` gives it the arrays' dtype)
        out += (x if isinstance(x, (float, int)) else np.asarray(x, dtype=dtype),)
    return out
'''

SOLVE_SIZE = '''\
def _solve(name, axis, decl, dim, n, p, q=None, b=None):
    """The positive integer `dim` that makes `decl` (p / q * dim + b; q = 1, b = 0 unless
    given) the size `n` of axis `axis` of argument `name`; ValueError naming them where
    there is none."""
    k = (n - (b or 0)) * (q or 1)
    m, r = k // p, k % p
    if r or m < 1:
        raise ValueError(
            f"argument {name!r}, axis {axis}: size {n} is not {decl} for any positive integer {dim}"
        )
    return m
'''

CHECK_EXACT = '''\
def _exact(num, den, num_text, den_text, line):
    """Check the exact division `num_text // den_text` written on line `line`."""
    if num % den:
        raise ValueError(
            f"{num_text} // {den_text} (line {line}) must divide exactly, and "
            f"{num} // {den} does not"
        )
'''

CHECK_WITHIN = '''\
def _within(bound, size, bound_text, size_text, line):
    """Check that the slice bound `bound_text` written on line `line` is within its axis
    (from 0 to its size: NumPy would count a negative bound from the end)."""
    if not 0 <= bound <= size:
        raise ValueError(
            f"slice bound {bound_text} (line {line}) is {bound}, outside "
            f"0..{size} (the size of its axis, {size_text})"
        )
'''

# The helpers of the size checks at entry, by name (each emitted only where a prologue uses it).
SIZE_CHECKS = {"_solve": SOLVE_SIZE, "_exact": CHECK_EXACT, "_within": CHECK_WITHIN}

# The type aliases of the emitted functions' annotations, by name (each emitted only where
# a signature uses it; `npt` is `numpy.typing`). Shapes stay in the docstrings: NumPy's
# array types do not carry them.
TYPES = {
    "Array": "Array = npt.NDArray[np.floating]",
    "Scalar": "Scalar = float | np.floating | npt.NDArray[np.floating]",
    "IntArray": "IntArray = npt.NDArray[np.integer]",
    "Int": "Int = int | np.integer | npt.NDArray[np.integer]",
}
TYPES_COMMENT = "# The types of the arguments and results (their shapes are in the docstrings)."

# Run once when a NumPy module is imported (README "Page faults"): with it, a temporary of
# a few MiB reuses memory an earlier call freed instead of faulting in fresh pages.
REUSE_FREED_MEMORY = '''\
def _reuse_freed_memory():
    """Make and free one untouched 31 MiB block. glibc's malloc hands a freed block larger
    than its threshold (128 KiB at first) back to the system, so the next call's temporary
    of that size faults in fresh pages, about 1 us for every 4 KiB; once a block this large
    has been freed it keeps blocks up to its size for reuse. No page of the block is
    touched; with another malloc, or the threshold set by MALLOC_MMAP_THRESHOLD_, this does
    nothing."""
    np.empty(31 * 2**20 // 8)  # float64: 31 MiB


_reuse_freed_memory()
'''

# The caller-owned workspace (`gradgen compile --workspace`, README "Reusing buffers across
# calls"): the emitted `f(..., workspace=ws)` takes its temporaries from `ws` by name.
WORKSPACE = '''\
class Workspace:
    """Buffers the functions of this module reuse across calls: `ws = Workspace()`, then
    `f(..., workspace=ws)` in a training loop takes the temporaries of `f` from `ws`
    instead of allocating them afresh on every call. Results are always fresh arrays.

    It keeps one buffer per temporary (by its name in the function) at the shape and
    dtype of the last call that used it, so it holds about one call's temporaries of each
    function it is passed to; a call with other shapes or dtypes replaces them. A call
    whose float arguments have several dtypes uses no buffer of it. Not thread-safe: one
    workspace per thread."""

    def __init__(self):
        self.buffers = {}  # name -> array
        self.ids = set()  # id() of each array of `buffers`
        self.dtype = None  # the float dtype of the call that uses it

    def bind(self, *args):
        """Whether the float arrays among `args` have one dtype (then the buffers'): the
        temporaries of a call all have it only then."""
        dtype = None
        for x in args:
            d = getattr(x, "dtype", None)
            if d is not None and d.kind == "f":
                if dtype is None:  # (not `d != dtype`: np.dtype(None) is float64)
                    dtype = d
                elif d != dtype:
                    dtype = None
                    break
        self.dtype = dtype
        return dtype is not None

    def __call__(self, name, *shape):
        """The buffer `name` of this shape (uninitialised), made again if it had another
        shape or dtype."""
        b = self.buffers.get(name)
        if b is None or b.shape != shape or b.dtype != self.dtype:
            if b is not None:
                self.ids.discard(id(b))
            # (The module's _reuse_freed_memory() at import keeps glibc from mapping the
            # other temporaries of every call afresh: a buffer kept here is never freed.)
            b = self.buffers[name] = np.empty(shape, self.dtype)
            self.ids.add(id(b))
        return b

    def zeros(self, name, *shape):
        """The buffer `name` of this shape, filled with zeros."""
        b = self(name, *shape)
        b.fill(0)
        return b

    def fresh(self, *results):
        """The results, each array that is one of the buffers or a view of one copied (in
        tuples too): what a function returns never changes with a later call."""
        ids, todo = self.ids, list(results)
        for x in todo:  # (a tuple's entries appended)
            if type(x) is tuple:
                todo += x
            elif id(x) in ids or id(getattr(x, "base", None)) in ids:
                results = self._copied(results)
                break
        return results[0] if len(results) == 1 else results

    def _copied(self, x):
        if type(x) is tuple:
            return tuple(self._copied(y) for y in x)
        if id(x) in self.ids or id(getattr(x, "base", None)) in self.ids:
            return x.copy()
        return x
'''
