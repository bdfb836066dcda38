"""What the emitted functions accept (issue 8, item 11): Python numbers for scalar
arguments, weakly typed as in NumPy 2 (SPEC 1, rev. 2); arrays of floats otherwise.
Lists and integer arrays for float arguments are a TypeError naming the argument."""

from __future__ import annotations

import numpy as np
import pytest
from emitted import calls, inputs, leaves, load

import gradgen

PROGRAMS = [
    "def f(x: Param[N], a: Param[()]):\n    return sum(x * a) + a * a\n",
    "def f(a: Param[()], b: Param[()]):\n    return a * b + exp(a)\n",
    "def f(x: Param[N], a: Param[()]):\n    return sum(exp(x * a)) + a * a\n",
    "def f(a: Param[()], b: Data[()]):\n    return sigmoid(a * b) + log(a * a + 1)\n",
    "def f(a: Param[()], X: Data[N, 2]):\n    return sum(X * a) + a * sum(ones((3,)))\n",
    "def f(a: Param[()], b: Param[()]):\n    return where(a > b, a, b * 2) + maximum(a, 0.5)\n",
    "def f(a: Param[()], x: Param[N]):\n    return sum(broadcast_to(a, (N,)) * x) + exp(a)\n",
    "def f(x: Param[N], lam: float):\n    return sum(x * x) * lam + sum(x * exp(lam))\n",
]


def _compile(source: str, **options) -> str:
    try:
        return gradgen.compile_source(source, "s.grad", hessian=True, **options)
    except gradgen.CompileError as e:
        if "--hessian" not in str(e):
            raise
    return gradgen.compile_source(source, "s.grad", **options)


@pytest.mark.parametrize("checks", [True, False], ids=["checks", "no-checks"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("k", range(len(PROGRAMS)))
def test_python_numbers_for_scalars(k, dtype, checks):
    """Every function, with each 0-d argument (also g, tangents, directions) passed as a
    Python float and as an int: exactly the numbers it gives for 0-d arrays of the array
    arguments' dtype, and results of that dtype (a Python float does not make float32
    float64); float64 when every argument is a number."""
    source = PROGRAMS[k]
    mod = load(_compile(source, checks=checks))
    rng = np.random.default_rng(k)
    args = {e: [x.astype(dtype) for x in v] for e, v in inputs(source, rng).items()}
    for name, a in calls(mod, source, args, rng):
        arrays = [x for x in a if x.ndim]
        expected = np.result_type(*arrays) if arrays else np.float64
        for convert in (float, lambda x: int(np.round(x)) or 1):
            py = [convert(x) if x.ndim == 0 else x for x in a]
            got = getattr(mod, name)(*py)
            same = [np.asarray(x, expected) if np.ndim(x) == 0 else x for x in py]
            for r, w in zip(leaves(got), leaves(getattr(mod, name)(*same)), strict=True):
                assert np.result_type(r) == expected, (name, np.result_type(r))
                assert np.array_equal(r, w), name


SOURCE = "def f(X: Data[N, D], w: Param[D], lam: float):\n    return sum(X @ w) + lam * sum(w * w)\n"


@pytest.mark.parametrize("bad,what", [
    ([[1.0, 2.0], [3.0, 4.0]], "got list"),
    (np.array([[1, 2], [3, 4]]), "got an array of int64"),
    (np.array([[True, False]]), "got an array of bool"),
    ("ab", "got str"),
    (None, "got NoneType"),
])
def test_lists_and_integer_arrays_are_a_type_error_naming_the_argument(bad, what):
    mod = load(gradgen.compile_source(SOURCE, "s.grad"))
    w = np.ones(2)
    for fn in (mod.f, mod.f_grad, mod.f_value_and_grad, mod.f_hvp, mod.f_jvp):
        extra = (w,) if fn in (mod.f_hvp, mod.f_jvp) else ()
        with pytest.raises(TypeError, match=f"argument 'X': expected a NumPy array of floats "
                                            f"or a Python number, {what}"):
            fn(bad, w, 0.5, *extra)
    # also after the same shapes passed the check (the memo must not let them through)
    mod.f(np.ones((2, 2)), w, 0.5)
    with pytest.raises(TypeError, match="argument 'X'"):
        mod.f_grad(np.ones((2, 2), dtype=np.int32), w, 0.5)
    with pytest.raises(TypeError, match="argument 'tw'"):   # the extra inputs too
        mod.f_jvp(np.ones((2, 2)), w, 0.5, [1.0, 2.0])
    with pytest.raises(TypeError, match="argument 'lam'"):
        mod.f(np.ones((2, 2)), w, "0.5")


def test_numpy_scalars_keep_their_dtype():
    """np.float64 is a subclass of float, but a NumPy scalar is strongly typed (NEP 50):
    it promotes float32 arrays to float64, as NumPy does."""
    mod = load(gradgen.compile_source(PROGRAMS[0], "s.grad"))
    x = np.ones(3, np.float32)
    assert mod.f_grad(x, np.float64(2.0))[0].dtype == np.float64
    assert mod.f_grad(x, 2.0)[0].dtype == np.float32
    assert mod.f_grad(x, np.float32(2.0))[0].dtype == np.float32
