"""The array-API target (`--target array-api`, SPEC 2 "Targets"): the module it emits runs
on every array library of the standard and gives the NumPy target's results.

The op table of tests/test_ops.py runs on it: each case's two programs (`cost` with every
derivative function and the Hessian, `op`) compiled for the array API are called on
`array_api_strict` arrays (which refuse anything outside the standard) and compared, to
1e-10 in float64, with the NumPy target's module of test_ops.py, which that file checks
against references and finite differences; results must be arrays of the input library
of its dtype (no silent conversion to NumPy), and float32 stays float32. By default one
case per key of CASES runs (about a fifth of them); GRADGEN_LONG=1 runs every case, and
on NumPy, PyTorch, JAX (also under jax.jit) and Dask where they are installed.
"""

from __future__ import annotations

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
DEFAULT_KEYS = ("sigmoid", "relu", "softplus", "maximum", "where", "max", "logsumexp",
                "norm", "var", "softmax", ".T", "transpose", "reshape", "squeeze", "[]",
                "concatenate", "stack", "erf", "clip", "eye", "ones", "gammaln", "digamma",
                "polygamma", "xlogy", "outer", "trace", "diag", "logdet", "solve",
                "cholesky", "einsum", "[idx]", "arange", "take_along_axis", "one_hot",
                "segment_sum", "cumsum", "cumprod", "logcumsumexp", "split", "tril",
                "solve_triangular", "cho_solve", "[]=")
FIRST = [test_ops.CASES[k][0] for k in DEFAULT_KEYS]
FIRST_IDS = {c.id for c in FIRST}
ALL = [pytest.param(c, marks=() if c.id in FIRST_IDS else pytest.mark.long)
       for c in test_ops.ALL_CASES]
# Every key's first case, on the other libraries (long: PyTorch and Dask take seconds).
OTHERS = [pytest.param(lib, c, marks=pytest.mark.long) for lib in ("numpy", "torch", "jax",
                                                                     "jax.jit", "dask")
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
