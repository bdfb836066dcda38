"""The caller-owned workspace (`--workspace`, issue 12): `f(..., workspace=ws)` gives the
same results as `f(...)`, bit for bit (the twin runs the same operations, only into other
buffers), over repeated calls and calls with other shapes and dtypes on one workspace;
what it returns never shares memory with the workspace's buffers nor with an earlier
call's results; the caller's arrays are never modified; the workspace keeps one buffer
per temporary. Each example is compiled once and checked all these ways."""

from __future__ import annotations

import re
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from emitted import calls, inputs, leaves, load
from test_aliasing import CASES, _compile

import gradgen
from gradgen.io import recorded_flags
from gradgen.options import make_options

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*/*.grad"))


def _example_module(path: Path):
    """The example compiled as its checked-in module is, plus `workspace=True`."""
    flags = recorded_flags((path.parent / f"{path.stem}_grad.py").read_bytes()) or []
    text = gradgen.compile_source(path.read_text(encoding="utf-8"), path.name,
                                  hessian="--hessian" in flags, workspace=True)
    return load(text, f"ws_{path.stem}"), text


def _same(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=True)


def _check_calls(mod, source: str, ws, seed: int, dtype, earlier: list) -> int:
    """Every function of `mod` on inputs of `seed` (their sizes drawn from it): with `ws`
    twice, as without; the arguments unchanged; no result in the workspace or in
    `earlier` (the results of earlier calls, kept, each checked unchanged at the end)."""
    rng = np.random.default_rng(seed)
    args = inputs(source, rng, dtype)
    n = 0
    for name, vals in calls(mod, source, args, rng):
        fn = getattr(mod, name)
        ref = leaves(fn(*vals))
        kept = [np.array(v, copy=True) for v in vals]
        for _ in range(2):
            got = leaves(fn(*vals, workspace=ws))
            assert len(got) == len(ref), name
            for r, g in zip(ref, got):
                assert _same(r, g), (name, seed, np.dtype(dtype).name)
            for g in got:
                if isinstance(g, np.ndarray):
                    assert not any(np.shares_memory(g, b) for b in ws.buffers.values()), name
                    assert not any(np.shares_memory(g, e) for e, _ in earlier), name
            earlier += [(g, np.array(g, copy=True)) for g in got if isinstance(g, np.ndarray)]
        for v, k in zip(vals, kept):
            assert _same(v, k), (name, "modified an argument")
        n += 1
    return n


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_workspace_results_are_the_plain_results(path):
    mod, text = _example_module(path)
    source = path.read_text(encoding="utf-8")
    ws = mod.Workspace()
    earlier: list = []
    n = 0
    # float64 at two sets of sizes, float32, and the first again: one workspace throughout
    for seed, dtype in [(0, np.float64), (1, np.float64), (2, np.float32), (0, np.float64)]:
        n += _check_calls(mod, source, ws, seed, dtype, earlier)
    assert n >= 4 and ws.buffers   # every example has a temporary in the workspace
    for g, copy in earlier:   # no later call wrote into an earlier result
        assert _same(g, copy)
    # one buffer per temporary, whatever the shapes seen: the names of the twins' buffers
    assert set(ws.buffers) <= set(re.findall(r'\bws(?:\.zeros)?\("(\w+)"', text))


@pytest.mark.parametrize("case", range(len(CASES)))
def test_workspace_on_the_aliasing_cases(case):
    """The programs whose results could be an argument or a view of one: the same with a
    workspace, and never one of its buffers."""
    source = CASES[case]
    mod = load(_compile(source, workspace=True))
    earlier: list = []
    ws = mod.Workspace()
    for seed in (0, 1):
        _check_calls(mod, source, ws, seed, np.float64, earlier)


MLP = (ROOT / "examples" / "mlp" / "mlp.grad").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def mlp():
    return load(gradgen.compile_source(MLP, "mlp.grad", workspace=True), "ws_mlp")


def _mlp_args(rng, N=1000, D=20, M=256, C=10, dtype=np.float64):
    X = rng.normal(size=(N, D)).astype(dtype)
    Y = np.eye(C, dtype=dtype)[rng.integers(0, C, N)]
    return X, Y, rng.normal(size=(D, M)).astype(dtype), rng.normal(size=(M, C)).astype(dtype)


def test_workspace_call_allocates_no_temporary(mlp):
    """After the first call, a call with the workspace allocates its results only (the
    plain call allocates its (N, M) temporaries, 2 MB each here)."""
    args = _mlp_args(np.random.default_rng(0))
    ws = mlp.Workspace()
    mlp.cost_value_and_grad(*args, workspace=ws)
    peaks = []
    for kw in ({}, {"workspace": ws}):
        tracemalloc.start()
        mlp.cost_value_and_grad(*args, **kw)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert peaks[0] > 2 * 1000 * 256 * 8
    assert peaks[1] < 1000 * 256 * 8 / 4   # results (20 x 256 + 256 x 10) and small rows
    held = sum(b.nbytes for b in ws.buffers.values())
    assert held < 3 * 1000 * 256 * 8   # about one call's temporaries


def test_mixed_dtypes_use_no_buffer(mlp):
    """Float arguments of several dtypes: the plain function runs (its temporaries have
    several dtypes), the same results."""
    X, Y, V, W = _mlp_args(np.random.default_rng(1), N=50, M=16)
    args = (X.astype(np.float32), Y, V, W)
    ws = mlp.Workspace()
    got = mlp.cost_value_and_grad(*args, workspace=ws)
    assert not ws.buffers and not ws.bind(*args)
    for r, g in zip(leaves(mlp.cost_value_and_grad(*args)), leaves(got)):
        assert _same(r, g)


def test_workspace_keeps_one_buffer_per_temporary(mlp):
    ws = mlp.Workspace()
    rng = np.random.default_rng(2)
    small, large = _mlp_args(rng, N=30, M=8), _mlp_args(rng, N=60, M=8)
    mlp.cost_value_and_grad(*small, workspace=ws)
    names = set(ws.buffers)
    for args in (large, small, large):
        mlp.cost_value_and_grad(*args, workspace=ws)
    assert set(ws.buffers) == names and all(b.shape[0] == 60 for b in ws.buffers.values()
                                             if b.ndim == 2)
    assert len(ws.ids) == len(ws.buffers)


def test_errors_with_a_workspace_are_the_plain_errors(mlp):
    X, Y, V, W = _mlp_args(np.random.default_rng(3), N=10, M=4)
    for bad in [(X, Y, V[:-1], W), (X, Y, V.astype(np.int64), W)]:
        with pytest.raises((ValueError, TypeError)) as plain:
            mlp.cost_grad(*bad)
        with pytest.raises(type(plain.value), match=str(plain.value)[:30]):
            mlp.cost_grad(*bad, workspace=mlp.Workspace())


def test_workspace_is_numpy_target_only():
    with pytest.raises(ValueError, match="NumPy target only"):
        make_options(target="array-api", workspace=True)
    with pytest.raises(ValueError, match="NumPy target only"):
        gradgen.compile_source(MLP, "mlp.grad", target="array-api", workspace=True)


def test_an_argument_named_workspace_is_a_located_error():
    source = "def f(x: Param[N], workspace: Data[N]):\n    return sum(x * workspace)\n"
    with pytest.raises(gradgen.CompileError, match=r"a\.grad:1:5: error: .*'workspace'"):
        gradgen.compile_source(source, "a.grad", workspace=True)
    gradgen.compile_source(source, "a.grad")   # (fine without)


def test_plain_functions_read_as_without_workspace():
    """`--workspace` adds the keyword and the two lines calling the twin; the rest of each
    function is what the module without it has."""
    plain = gradgen.compile_source(MLP, "mlp.grad")
    with_ws = gradgen.compile_source(MLP, "mlp.grad", workspace=True)
    body = plain.split("def cost_value_and_grad(")[1].split('"""', 2)[2].split("\n\n\n")[0]
    assert body in with_ws
    assert "    if workspace is not None and workspace.bind(X, Y, V, W):\n" \
           "        return _cost_value_and_grad_ws(X, Y, V, W, workspace)\n" in with_ws
