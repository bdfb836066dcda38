"""The array-API target (`--target array-api`, SPEC 2 "Targets"): the module it emits runs
on every array library of the standard and gives the NumPy target's results.

The op table of tests/test_ops.py runs on it: each case's two programs (`cost` with every
derivative function and the Hessian, `op`) compiled for the array API are called on
`array_api_strict` arrays (which refuse anything outside the standard) and compared, to
1e-10 in float64, with the NumPy target's module of test_ops.py, which that file checks
against references and finite differences; results must be arrays of the input library
of its dtype (no silent conversion to NumPy), and float32 stays float32. By default the
first case of 25 keys of CASES runs; GRADGEN_LONG=1 runs every case, and every key's
first case on NumPy, PyTorch, JAX (also under jax.jit) and Dask where they are installed.
The examples run on each library, Dask lazily, and on a non-default device.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import test_ops
import xp_harness

import gradgen

pytest.importorskip("array_api_strict", reason="the array-API tests need array_api_strict "
                                             "(pip install '.[test]')")

# By default, the first case of each key whose array-API code differs most from the
# NumPy target's (helpers, per-target emission, created arrays, indexing, statements);
# GRADGEN_LONG=1 runs every case of every key.
DEFAULT_KEYS = ("sigmoid", "relu", "where", "norm", "[]", "concatenate", "split", "eye",
                "erf", "gammaln", "polygamma", "xlogy", "trace", "diag", "logdet", "solve",
                "einsum", "[idx]", "take_along_axis", "one_hot", "segment_sum", "cumsum",
                "logcumsumexp", "tril", "[]=")
FIRST = [test_ops.CASES[k][0] for k in DEFAULT_KEYS]
FIRST_IDS = {c.id for c in FIRST}
ALL = [pytest.param(c, marks=() if c.id in FIRST_IDS else pytest.mark.long)
       for c in test_ops.ALL_CASES]
# Every key's first case, on the other libraries: by default the DEFAULT_KEYS cases on
# PyTorch (milliseconds each; the `test` extra installs it) and the indexing and scatter
# keys under jax.jit (functional updates: `.at[].set`); the rest long (JAX's tracing and
# Dask's graphs take 1-4 s per case).
JIT_KEYS = frozenset({"[idx]", "[]=", "segment_sum"})
JIT_IDS = {test_ops.CASES[k][0].id for k in JIT_KEYS}
OTHERS = [pytest.param(lib, c, marks=() if lib == "torch" and c.id in FIRST_IDS
                       or lib == "jax.jit" and c.id in JIT_IDS else pytest.mark.long)
          for lib in ("numpy", "torch", "jax", "jax.jit", "dask")
          for c in (cases[0] for cases in test_ops.CASES.values())]

_XP: dict = {}


def compiled_xp(case):
    """The NumPy target's module of the case (test_ops.compiled, shared) and the array-API
    target's, compiled the same way."""
    c = test_ops.compiled(case)
    if case.id not in _XP:
        cost_text, op_text = c.text.split("\n\n\n")
        sources = {"cost": gradgen.compile_source(cost_text + "\n", "case.grad", hessian=True,
                                                  target="array-api"),
                   "op": gradgen.compile_source(op_text, "case.grad", target="array-api")}
        _XP[case.id] = test_ops._exec(sources, case.id + " (array API)")
    return c, _XP[case.id]


def calls(c):
    """(function name, NumPy arguments) of every function of the case's two programs."""
    inputs, cost, op = c.inputs, c.cost_order, c.op_order
    t = [c.tangents[p] for p in c.params]
    out = [("cost", [inputs[n] for n in cost]), ("op", [inputs[n] for n in op])]
    if c.params:
        args = [inputs[n] for n in cost]
        out += [("cost_grad", args), ("cost_value_and_grad", args),
                ("cost_vjp", args + [np.float64(0.7)]), ("cost_jvp", args + t),
                ("cost_hvp", args + t), ("cost_hessian", args),
                ("op_vjp", [inputs[n] for n in op] + [c.u]),
                ("op_jvp", [inputs[n] for n in op] + t)]
    return out


def check_case(case, lib) -> list[str]:
    c, mod = compiled_xp(case)
    failures = []
    for name, args in calls(c):
        if not hasattr(c.mod, name):
            continue
        why = xp_harness.run_function(c.mod, mod, lib, name, args, tol=1e-10)
        if why is not None:
            failures.append(f"{name}: {why}")
    return failures


@pytest.mark.parametrize("case", ALL, ids=lambda c: c.id)
def test_case_on_array_api_strict(case):
    lib = xp_harness.library("array_api_strict")
    failures = check_case(case, lib)
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("case", FIRST, ids=lambda c: c.id)
def test_case_keeps_float32(case):
    """float32 arrays in, float32 arrays of the same library out (cost_grad, op)."""
    import array_api_strict as xs

    c, mod = compiled_xp(case)
    for name, args in calls(c):
        if name not in ("cost_grad", "op") or not hasattr(mod, name):
            continue
        args32 = [xs.asarray(a.astype(np.float32)) if np.asarray(a).dtype.kind == "f"
                  else xs.asarray(a) for a in args]
        for r in xp_harness._flatten(getattr(mod, name)(*args32)):
            assert isinstance(r, xs._array_object.Array), (name, type(r))
            assert r.dtype == xs.float32, (name, r.dtype)


@pytest.mark.parametrize(("name", "case"), OTHERS,
                         ids=lambda v: v if isinstance(v, str) else v.id)
def test_case_on_other_libraries(name, case):
    lib = xp_harness.library(name)
    if lib is None:
        pytest.skip(f"{name} is not installed")
    failures = check_case(case, lib)
    assert not failures, "\n".join(failures)


# ---------------------------------------------------------------- the examples, on each library

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@functools.lru_cache(maxsize=None)
def example_pair(name: str):
    """The NumPy-target and array-API-target modules of examples/<name>/<name>.grad (with
    f_hessian), its entry points and drawn inputs."""
    path = EXAMPLES / name / f"{name}.grad"
    ref, mod, entries = xp_harness.compile_pair(path.read_text(), path.name, hessian=True)
    return ref, mod, entries, xp_harness.draw(entries)


# Every example (the loop examples charrnn, hmm and kalman too; examples/bigdata runs the
# logistic regression's module on Dask: tests/test_bigdata.py).
ALL_EXAMPLES = sorted(d.name for d in EXAMPLES.iterdir() if (d / f"{d.name}.grad").is_file())
# By default (where installed; the `test` extra installs them): NumPy, array_api_strict and
# PyTorch on every example (torch: 0.3 s of CPU for all of them, after a 1.6 s import), JAX
# under jax.jit on the MLP and the logistic regression (3.6 s of CPU). Tracing and compiling
# all 77 functions for jax.jit took ~59 s of CPU (a loop example 7-16 s: its loop traced step
# by step), eager JAX ~66 s and Dask ~73 s (negbin's special functions alone 52 s): those
# rows are long (GRADGEN_LONG=1); `python tests/xp_harness.py examples/*/*.grad` runs them all.
JIT_DEFAULT = frozenset({"mlp", "logistic"})
DEFAULT_LIBS = ("numpy", "array_api_strict", "torch")
EXAMPLE_ROWS = [pytest.param(example, lib, marks=() if lib in DEFAULT_LIBS or (
    lib == "jax.jit" and example in JIT_DEFAULT) else pytest.mark.long, id=f"{example}-{lib}")
    for example in ALL_EXAMPLES
    for lib in ("numpy", "array_api_strict", "torch", "jax.jit", "jax", "dask")]


@pytest.mark.parametrize(("example", "lib"), EXAMPLE_ROWS)
def test_example_on_library(example, lib):
    """Every function of every example (f_hessian too) gives the NumPy target's results
    to 1e-10, as arrays of the input library."""
    library = xp_harness.library(lib)
    if library is None:
        pytest.skip(f"{lib} is not installed")
    ref, mod, entries, inputs = example_pair(example)
    results = xp_harness.run_all(ref, mod, entries, library, inputs)
    assert len(results) == 7 * len(entries)
    failures = {k: v for k, v in results.items() if v is not None}
    assert not failures, failures


# The held-out models (tests/corpus): by default the ones with loops (seq_*) on
# array_api_strict; every model on every library is long (`python tests/xp_harness.py
# tests/corpus/*.grad` prints the table).
CORPUS = sorted((Path(__file__).resolve().parent / "corpus").glob("*.grad"))
CORPUS_ROWS = [pytest.param(path, lib, marks=() if lib == "array_api_strict"
                            and path.stem.startswith("seq_") else pytest.mark.long,
                            id=f"{path.stem}-{lib}")
               for path in CORPUS for lib in xp_harness.NAMES]


@pytest.mark.parametrize(("path", "lib"), CORPUS_ROWS)
def test_corpus_model_on_library(path, lib):
    """Every function of a held-out model gives the NumPy target's results to 1e-10, as
    arrays of the input library."""
    library = xp_harness.library(lib)
    if library is None:
        pytest.skip(f"{lib} is not installed")
    ref, mod, entries = xp_harness.compile_pair(path.read_text(), path.name)
    results = xp_harness.run_all(ref, mod, entries, library,
                                 xp_harness.draw_finite(ref, entries))
    assert len(results) >= 6 * len(entries)
    failures = {k: v for k, v in results.items() if v is not None}
    assert not failures, failures


def test_dask_det_and_logdet_stay_lazy():
    """Dask's namespace has no det or slogdet: the module's _det/_logdet factor each
    matrix of a stack by its block's NumPy (runtime_xp._by_matrix), lazily, a matrix split
    over chunks too (the Gaussian example on Dask: test_example_on_library, long)."""
    da = pytest.importorskip("dask.array", reason="Dask is not installed")
    pytest.importorskip("array_api_compat", reason="Dask needs array_api_compat")
    text = "def f(A: Param[K, D, D]):\n    return sum(det(A)) + sum(logdet(A * A))\n"
    ref, mod, entries = xp_harness.compile_pair(text, "det.grad")
    A = np.random.default_rng(1).normal(size=(5, 3, 3))
    blocks = da.from_array(A, chunks=(2, 2, 3))   # a stack in 3 chunks, a matrix split
    value = mod.f(blocks)
    assert isinstance(value, da.Array)
    np.testing.assert_allclose(value.compute(), ref.f(A), rtol=1e-12)


def test_dask_stays_lazy_and_accepts_unknown_sizes():
    """On chunked Dask arrays the MLP's value and gradient are Dask arrays (nothing is
    computed before compute()); rows of unknown count (NaN chunk sizes, as after a
    boolean selection) pass the shape checks, and once their sizes are computed give the
    NumPy target's results."""
    da = pytest.importorskip("dask.array", reason="Dask is not installed")
    pytest.importorskip("array_api_compat", reason="Dask needs array_api_compat")
    ref, mod, entries, inputs = example_pair("mlp")
    args = [inputs["cost"][a.name] for a in entries[0].args]
    X, Y, V, W = args
    computed = []

    def note(x):   # (Dask calls it once on an empty array for the result's type)
        if x.size:
            computed.append(x.shape)
        return x

    Xd = da.from_array(X, chunks=(2, X.shape[1])).map_blocks(note, dtype=X.dtype)
    Yd = da.from_array(Y, chunks=(2, Y.shape[1]))
    value, (dV, dW) = mod.cost_value_and_grad(Xd, Yd, da.from_array(V), da.from_array(W))
    assert all(isinstance(r, da.Array) for r in (value, dV, dW))
    assert not computed   # lazy: no block of X was read
    expected = ref.cost_value_and_grad(*args)
    np.testing.assert_allclose(value.compute(), expected[0], rtol=1e-10)
    np.testing.assert_allclose(dV.compute(), expected[1][0], rtol=1e-10)
    assert computed
    keep = da.from_array(X[:, 0], chunks=2) > -np.inf   # all rows, but an unknown count
    Xu, Yu = Xd[keep], Yd[keep]
    assert np.isnan(Xu.shape[0])
    mod.cost_grad(Xu, Yu, da.from_array(V), da.from_array(W))   # the checks accept NaN sizes
    Xu.compute_chunk_sizes()
    Yu.compute_chunk_sizes()
    dV, dW = mod.cost_grad(Xu, Yu, da.from_array(V), da.from_array(W))
    np.testing.assert_allclose(dW.compute(), expected[1][1], rtol=1e-10)


def test_namespace_errors():
    """Arrays of no array API library, or of two, are refused with a TypeError."""
    ref, mod, entries, inputs = example_pair("logistic")
    args = [inputs["loss"][a.name] for a in entries[0].args]
    with pytest.raises(TypeError):
        mod.loss([list(r) for r in args[0]], *args[1:])
    import array_api_strict as xs

    with pytest.raises(TypeError):
        mod.loss(xs.asarray(args[0]), *args[1:])


@pytest.mark.parametrize("example", ["mlp", "logistic", "softmax"])
def test_no_array_is_made_on_the_host(example):
    """On array_api_strict arrays of a non-default device (it refuses to mix devices),
    every function runs and returns arrays on that device: every array the module makes
    is made on its arguments' device (GPU readiness)."""
    import array_api_strict as xs

    device = xs.Device("device1")
    lib = xp_harness.Library(
        "array_api_strict@device1", lambda a: xs.asarray(a, device=device),
        lambda t: np.asarray(xs.asarray(t, device=xs.Device("CPU_DEVICE"))),
        lambda t: isinstance(t, xs._array_object.Array) and t.device == device)
    ref, mod, entries, inputs = example_pair(example)
    failures = {k: v for k, v in xp_harness.run_all(ref, mod, entries, lib, inputs).items()
                if v is not None}
    assert not failures, failures


def test_target_option_is_recorded_and_checked(tmp_path, capsys):
    """--target array-api is recorded in the header (and `compile --check` compiles with
    it); the default stays NumPy; an unknown target is refused."""
    from gradgen import cli

    src = tmp_path / "mlp.grad"
    src.write_text((EXAMPLES / "mlp" / "mlp.grad").read_text())
    out = tmp_path / "mlp_grad.py"
    assert cli.main(["compile", str(src), "--target", "array-api", "-o", str(out)]) == 0
    text = out.read_text()
    assert "# Regenerate with: gradgen compile mlp.grad --target array-api" in text
    assert "import numpy" not in text and "xp, device = _namespace(X, Y, V, W)" in text
    assert cli.main(["compile", str(src), "-o", str(out), "--check"]) == 0
    assert "up to date" in capsys.readouterr().out
    numpy_text = gradgen.compile_source(src.read_text(), "mlp.grad")
    assert "import numpy as np" in numpy_text and " xp." not in numpy_text
    with pytest.raises(ValueError, match="unknown target"):
        gradgen.compile_source(src.read_text(), "mlp.grad", target="cuda")
