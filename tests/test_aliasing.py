"""Results never alias (issue 8, item 4; SPEC 2): no emitted function returns an argument,
a view of one, one array twice or a read-only view; every returned array is fresh,
writeable and of the arguments' dtype."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from emitted import calls, inputs, leaves, load
from test_random_programs import RandomChooser, generate

import gradgen

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*/*.grad"))

# The cases of the issue, and more ways a result can be an argument or a view of one.
CASES = [
    "def loss(w: Param[N], c: Data[N]):\n    return sum(c * w)\n",
    "def f(x: Param[N], z: Param[N]):\n    return x + z\n",
    "def f(x: Param[N]):\n    return x * 1\n",
    "def f(a: Param[()], b: Param[()]):\n    return a * b\n",
    "def f(x: Param[N], a: Param[()]):\n    return sum(x * a) + a * a\n",
    "def f(x: Param[N, M]):\n    return transpose(x)\n",
    "def f(x: Param[N, M]):\n    return reshape(x, (M, N))\n",
    "def f(x: Param[N, M]):\n    return x[1:, :]\n",
    "def f(x: Param[N, M]):\n    return expand_dims(x, 0)\n",
    "def f(x: Param[N, 1]):\n    return squeeze(x, 1)\n",
    "def f(x: Param[N]):\n    return broadcast_to(x, (3, N))\n",
    "def f(x: Param[N], y: Param[N]):\n    return sum(x) * sum(y)\n",
    "def f(x: Param[N], y: Param[N]):\n    return sum(x * y) + sum(x) * sum(y)\n",
    "def f(x: Param[N], y: Data[N]):\n    return x + y\n",
    "def f(A: Param[N, N], b: Data[N]):\n    return sum(A @ b) + sum(transpose(A) * A)\n",
    # (rev. 2) arguments reassigned and updated by subscript: never the caller's arrays
    "def f(x: Param[N]):\n    x = x * 1\n    x += 0\n    return x\n",
    "def f(A: Param[N, M], v: Data[M]):\n    A[0] = v\n    A[1:, :] += 1\n    return A\n",
    "def f(x: Param[N], y: Data[N]):\n    y[0] = 0\n    x[-1] *= 2\n    return sum(x * y)\n",
]


def _compile(source: str, **options) -> str:
    try:
        return gradgen.compile_source(source, "a.grad", hessian=True, **options)
    except gradgen.CompileError as e:
        if "--hessian" not in str(e):
            raise
    return gradgen.compile_source(source, "a.grad", **options)


def check_no_aliasing(source: str, seed: int = 0, dtype=np.float64, **options) -> int:
    """Call every emitted function; check its results; mutate each in place and check
    that no argument and no other result changed. The number of functions called."""
    mod = load(_compile(source, **options))
    rng = np.random.default_rng(seed)
    args = inputs(source, rng, dtype)
    todo = calls(mod, source, args, rng)
    for name, a in todo:
        result = getattr(mod, name)(*a)
        rs = leaves(result)
        for i, r in enumerate(rs):
            if not isinstance(r, np.ndarray):
                assert isinstance(r, (np.generic, float)), (name, i, type(r))
                assert np.result_type(r) == dtype, (name, i, np.result_type(r))
                continue
            assert r.dtype == dtype, (name, i, r.dtype)
            assert r.flags.writeable, (name, i, "read-only")
            for j, x in enumerate(a):
                assert not np.shares_memory(r, x), (name, i, "shares memory with argument", j)
            for j, s in enumerate(rs[:i]):
                if isinstance(s, np.ndarray):
                    assert not np.shares_memory(r, s), (name, i, "shares memory with", j)
            before_args = [np.copy(x) for x in a]
            before = [np.copy(s) for s in rs]
            r[...] += 1
            r *= 2
            for j, x in enumerate(a):
                assert np.array_equal(x, before_args[j], equal_nan=True), (name, i, j)
            for j, s in enumerate(rs):
                if j != i:
                    assert np.array_equal(s, before[j], equal_nan=True), (name, i, j)
    return len(todo)


@pytest.mark.parametrize("src", EXAMPLES, ids=lambda p: p.parent.name)
def test_examples(src):
    assert check_no_aliasing(src.read_text()) >= 6


@pytest.mark.parametrize("k", range(len(CASES)))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_cases(k, dtype):
    assert check_no_aliasing(CASES[k], k, dtype) > 0


@pytest.mark.parametrize("k", range(len(CASES)))
def test_cases_without_checks(k):
    assert check_no_aliasing(CASES[k], k, checks=False) > 0


@pytest.mark.parametrize("seed", range(40))
def test_random_programs(seed):
    source = generate(RandomChooser(5000 + seed)).source
    with np.errstate(all="ignore"):
        assert check_no_aliasing(source, seed) > 0


def test_copies_only_where_needed():
    """The issue's cases copy what aliased, and nothing else."""
    text = gradgen.compile_source(CASES[0], "a.grad")
    assert "return c.copy()" in text and text.count(".copy()") == 2   # grad, value_and_grad
    text = gradgen.compile_source(CASES[1], "a.grad", modes=["vjp"])
    assert "return (g.copy(), g.copy())" in text
    text = gradgen.compile_source(CASES[2], "a.grad", modes=["vjp"])
    assert "return x.copy()" in text
    text = gradgen.compile_source(CASES[3], "a.grad", modes=["grad"])
    assert "return (np.array(b), np.array(a))" in text
