"""The helpers printed into every emitted module: `_dims` (argument shapes, with a memo of
the shapes that passed) and `_sigmoid`."""

from __future__ import annotations

import itertools
import math
import types
import warnings

import numpy as np
import pytest

import gradgen

SOURCE = '''
def f(a: Data[N, D], b: Data[N], c: Param[D, 3], s: float):
    """A function with named, repeated and fixed sizes."""
    return sum(a @ c) + s * sum(b)
'''


def _load(source: str) -> types.ModuleType:
    mod = types.ModuleType("generated")
    exec(compile(source, "generated", "exec"), mod.__dict__)  # noqa: S102 - our own output
    return mod


def _reference_dims(spec, *args):
    """The checking loop as it was before the memo: the messages must not change."""
    sizes, origin = {}, {}
    for (name, decl), x in zip(spec, args):
        shape = getattr(x, "shape", None)
        if shape is None:
            shape = np.shape(x)
        if len(shape) != len(decl):
            raise ValueError(f"argument {name!r}: expected {len(decl)} dimension(s) "
                             f"{decl}, got shape {shape}")
        for axis, dim in enumerate(decl):
            n = shape[axis]
            if dim.__class__ is int:
                if n != dim:
                    raise ValueError(f"argument {name!r}, axis {axis}: expected size {dim}, "
                                     f"got {n}")
            elif dim is None:
                continue
            elif dim not in sizes:
                sizes[dim] = n
                origin[dim] = name, axis
            elif sizes[dim] != n:
                where, at = origin[dim]
                raise ValueError(f"argument {name!r}, axis {axis}: size {n} does not match "
                                 f"{dim} = {sizes[dim]} (from argument {where!r}, axis {at})")


def _outcome(check, spec, args):
    try:
        check(spec, *args)
    except ValueError as e:
        return str(e)
    return None


@pytest.fixture
def mod():
    return _load(gradgen.compile_source(SOURCE, "t.grad"))


def test_dims_agrees_with_the_reference_loop_twice_over(mod):
    """Every combination of right and wrong shapes, each checked twice (the second time
    after the memo has seen it): the same verdict and message as the plain loop."""
    shapes = {
        "a": [(4, 2), (5, 2), (4, 3), (4,), (4, 2, 1)],
        "b": [(4,), (5,), (), (4, 1)],
        "c": [(2, 3), (3, 3), (2, 4), (2,)],
        "s": [0.5, np.float32(2.0), np.array(1.0), 3],   # lists: tests/test_arguments.py
    }
    spec = mod._F_ARGS
    for sa, sb, sc, s in itertools.product(*shapes.values()):
        args = (np.zeros(sa), np.zeros(sb), np.zeros(sc), s)
        want = _outcome(_reference_dims, spec, args)
        assert _outcome(mod._dims, spec, args) == want
        assert _outcome(mod._dims, spec, args) == want


def test_memo_is_bounded_and_per_spec(mod):
    a, b, c = np.zeros((4, 2)), np.zeros(4), np.zeros((2, 3))
    for n in range(1, 600):
        mod._dims(mod._F_ARGS, np.zeros((n, 2)), np.zeros(n), c, 1.0)
    assert len(mod._DIMS_PASSED) <= 256
    mod.f(a, b, c, 1.0)
    other = (("a", ("N", "D")), ("b", ("D",)), ("c", ("D", 3)), ("s", ()))
    with pytest.raises(ValueError, match=r"argument 'b', axis 0: size 4 does not match D = 2"):
        mod._dims(other, a, b, c, 1.0)


def test_sigmoid_helper_is_stable_and_quiet(mod):
    src = gradgen.compile_source(
        "def g(x: Param[N]):\n    \"\"\"s\"\"\"\n    return sum(sigmoid(x))\n", "g.grad")
    sigmoid = _load(src)._sigmoid
    x = np.array([-1000.0, -100.0, -30.0, 0.0, 30.0, 100.0, 1000.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="raise"):    # the helper's own setting wins inside it
            y = sigmoid(x)
            assert sigmoid(-1000.0) == 0.0
        out = np.empty_like(x)
        assert sigmoid(x, out=out) is out
    assert y[0] == 0.0 and y[-1] == 1.0 and y[3] == 0.5
    np.testing.assert_allclose(y[1:3], np.exp(x[1:3]) / (1 + np.exp(x[1:3])), rtol=1e-15)
    assert sigmoid(x.astype(np.float32)).dtype == np.float32
    assert np.geterr()["over"] == "warn"     # the decorator leaves the caller's state alone


def test_sigmoid_neg_helper_is_stable_and_quiet(mod):
    """`_sigmoid_neg(x)`, the logistic function of -x (op sigmoid_neg): 1 / (1 + exp(x))
    with no negation, 0 where exp(x) overflows, no warning, float32 kept."""
    src = gradgen.compile_source(
        "def g(x: Param[N]):\n    \"\"\"s\"\"\"\n    return sum(sigmoid(-x))\n", "g.grad")
    sigmoid_neg = _load(src)._sigmoid_neg
    x = np.array([-1000.0, -100.0, -30.0, 0.0, 30.0, 100.0, 1000.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="raise"):
            y = sigmoid_neg(x)
            assert sigmoid_neg(1000.0) == 0.0 and sigmoid_neg(-1000.0) == 1.0
        out = np.empty_like(x)
        assert sigmoid_neg(x, out=out) is out
    assert y[0] == 1.0 and y[-1] == 0.0 and y[3] == 0.5
    # exact values, independently: e^-x / (1 + e^-x) for x > 0, tiny ones to full precision
    np.testing.assert_allclose(y[4:6], np.exp(-x[4:6]) / (1 + np.exp(-x[4:6])), rtol=1e-15)
    np.testing.assert_allclose(y[1:3], 1 / (1 + np.exp(x[1:3])), rtol=1e-15)
    assert sigmoid_neg(x.astype(np.float32)).dtype == np.float32
    assert np.geterr()["over"] == "warn"


def test_softplus_neg_helper(mod):
    """`_softplus_neg(x)`, softplus(-x) (op softplus_neg): `np.logaddexp(0, -x)` in one
    array, finite at large |x|, into `out` if given, the caller's array unchanged."""
    src = gradgen.compile_source(
        "def g(x: Param[N]):\n    \"\"\"s\"\"\"\n    return sum(softplus(-x))\n", "g.grad")
    softplus_neg = _load(src)._softplus_neg
    x = np.array([-1000.0, -30.0, -1.0, 0.0, 1.0, 30.0, 1000.0])
    keep = x.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = softplus_neg(x)
        assert softplus_neg(-2.0) == pytest.approx(math.log1p(math.exp(2.0)), rel=1e-15)
    assert np.array_equal(x, keep)
    # log(1 + e^-x) independently: math.log1p of math.exp where it does not overflow
    want = [1000.0, 30.0 + math.log1p(math.exp(-30.0)), math.log1p(math.e), math.log(2.0),
            math.log1p(math.exp(-1.0)), math.log1p(math.exp(-30.0)), 0.0]
    np.testing.assert_allclose(y, want, rtol=1e-15)
    out = np.empty_like(x)
    assert softplus_neg(x, out=out) is out and np.array_equal(out, y)
    assert softplus_neg(x.astype(np.float32)).dtype == np.float32
