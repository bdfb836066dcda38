"""Source of the small private helpers the emitted modules carry (they import only NumPy)."""

CHECK_DIMS = '''\
def _dims(spec, *args):
    """Check the arguments' shapes against their declarations (dimension names must agree)."""
    sizes = {}
    for (name, decl), x in zip(spec, args):
        shape = np.shape(x)
        if len(shape) != len(decl):
            raise ValueError(f"argument {name!r}: expected {len(decl)} dimension(s) "
                             f"{decl}, got shape {shape}")
        for axis, (dim, n) in enumerate(zip(decl, shape)):
            if isinstance(dim, int):
                if n != dim:
                    raise ValueError(f"argument {name!r}, axis {axis}: expected size {dim}, "
                                     f"got {n}")
            elif dim is not None:
                size, where, at = sizes.setdefault(dim, (n, name, axis))
                if n != size:
                    raise ValueError(f"argument {name!r}, axis {axis}: size {n} does not match "
                                     f"{dim} = {size} (from argument {where!r}, axis {at})")
'''

CHECK_SHAPE = '''\
def _expect(name, x, shape):
    """Check that argument `name` has exactly `shape`."""
    actual = np.shape(x)
    if len(actual) != len(shape):
        raise ValueError(f"argument {name!r}: expected shape {tuple(shape)}, got {actual}")
    for axis, (n, m) in enumerate(zip(actual, shape)):
        if n != m:
            raise ValueError(f"argument {name!r}, axis {axis}: expected size {m}, got {n}")
'''
