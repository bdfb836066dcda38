"""`f_jacobian` (SPEC 2, opt-in `--jacobian`): the Jacobian blocks `out.shape + p.shape`
of a non-scalar output, by batched forward mode (fewer Param elements than output
elements) or batched reverse mode (more), on the NumPy and array-API targets.

One source compiled once per target; each block is checked against two-sided finite
differences and against f_jvp stacked over the basis vectors of each Param, and the
array-API module against the NumPy target's on NumPy and array_api_strict arrays.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import xp_harness
from fdcheck import fd_jacobian

import gradgen
from gradgen.errors import CompileError

SOURCE = '''\
def fwd(A: Data[N, 2], x: Param[2], s: Param[()], z: Param[3]):
    """Few Params, a long output: forward mode; z does not reach the output."""
    return exp(A @ x) * s + log(s) + 0 * sum(A)


def rev(X: Data[N, D], W: Param[D, K], b: Param[K]):
    """Many Params, an (N,) output: reverse mode."""
    return logsumexp(X @ W + b, axis=1)


def mat(A: Param[M, N], x: Param[N]):
    """A matrix output of a matrix Param: reverse mode, (M, N, M, N) and (M, N, N) blocks."""
    return tanh(A * x) + cumsum(x)
'''

DIMS = {"N": 5, "D": 3, "K": 4, "M": 3}
MODES = {"fwd": "forward", "rev": "reverse", "mat": "reverse"}


@functools.cache
def pair():
    """The NumPy-target and array-API-target modules, their entry points and inputs."""
    ref, mod, entries = xp_harness.compile_pair(SOURCE, "jac.grad", jacobian=True)
    inputs = xp_harness.draw(entries, seed=3, dims=DIMS)
    for e in entries:   # s > 0 for log(s)
        if "s" in inputs[e.name]:
            inputs[e.name]["s"] = np.float64(1.3)
    return ref, mod, {e.name: e for e in entries}, inputs


@pytest.mark.parametrize("name", sorted(MODES))
def test_jacobian_matches_finite_differences_and_stacked_jvps(name):
    ref, _, entries, inputs = pair()
    e, args = entries[name], inputs[name]
    order = [a.name for a in e.args]
    f, jac, jvp = (getattr(ref, name + s) for s in ("", "_jacobian", "_jvp"))
    assert f"batched {MODES[name]} mode" in jac.__doc__
    params = [p.name for p in e.params]
    blocks = jac(*(args[n] for n in order))
    blocks = blocks if isinstance(blocks, tuple) else (blocks,)
    assert len(blocks) == len(params)
    out = np.asarray(f(*(args[n] for n in order)))
    for p, block in zip(params, blocks):
        shape = out.shape + np.shape(args[p])
        assert block.shape == shape and block.dtype == np.float64
        # finite differences: p.shape + out.shape, moved to out.shape + p.shape
        fd = np.asarray(fd_jacobian(f, order, args, p))
        k = np.ndim(args[p])
        fd = np.moveaxis(fd.reshape(np.shape(args[p]) + out.shape),
                         tuple(range(k)), tuple(range(out.ndim, out.ndim + k)))
        np.testing.assert_allclose(block, fd, rtol=1e-6, atol=1e-7)
        # f_jvp along each basis vector of p (the other tangents zero) is a column
        cols = []
        for i in range(int(np.prod(np.shape(args[p])))):
            ts = [np.zeros(np.shape(args[q])) for q in params]
            t = ts[params.index(p)].reshape(-1)
            t[i] = 1.0
            _, col = jvp(*(args[n] for n in order), *ts)
            cols.append(np.asarray(col))
        stacked = np.moveaxis(np.array(cols), 0, -1).reshape(shape)
        np.testing.assert_allclose(block, stacked, rtol=1e-12, atol=1e-12)
    if name == "fwd":   # z does not reach the output: an explicit zero block
        assert not np.any(blocks[params.index("z")])


@pytest.mark.parametrize("lib", ["numpy", "array_api_strict"])
@pytest.mark.parametrize("name", sorted(MODES))
def test_array_api_jacobian_matches_numpy_target(name, lib):
    library = xp_harness.library(lib)
    if library is None:
        pytest.skip(f"{lib} is not installed")
    ref, mod, entries, inputs = pair()
    args = [inputs[name][a.name] for a in entries[name].args]
    why = xp_harness.run_function(ref, mod, library, name + "_jacobian", args, tol=1e-12)
    assert why is None, why


@pytest.mark.parametrize(("name", "hints", "mode"), [
    ("fwd", {"N": 2}, "reverse"),          # 6 Param elements > 2 output elements
    ("rev", {"N": 100_000, "D": 3, "K": 4}, "forward"),   # 16 Param elements <= N
    ("rev", {"N": 10}, "reverse"),         # D, K count 100: 10,100 > 10
])
def test_jacobian_mode_uses_the_hints(name, hints, mode):
    """--hint sizes decide the mode (a named dimension without one counts 100), both
    choices are taken, and either gives the Jacobian of the default module (checked above
    against finite differences and stacked JVPs)."""
    ref, _, entries, inputs = pair()
    text = SOURCE.split("\n\n\n")[["fwd", "rev", "mat"].index(name)] + "\n"
    src = gradgen.compile_source(text, "jac.grad", jacobian=True, hints=hints)
    other = "reverse" if mode == "forward" else "forward"
    assert f"batched {mode} mode" in src and f"batched {other} mode" not in src
    mod = xp_harness.exec_module(src, "jac_hinted")
    args = [inputs[name][a.name] for a in entries[name].args]
    got = getattr(mod, name + "_jacobian")(*args)
    expected = getattr(ref, name + "_jacobian")(*args)
    for g, e in zip(xp_harness._flatten(got), xp_harness._flatten(expected)):
        np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-14)


def test_jacobian_keeps_float32():
    ref, mod, entries, inputs = pair()
    args = [np.asarray(inputs["rev"][a.name], dtype=np.float32) for a in entries["rev"].args]
    for m in (ref, mod):
        assert all(b.dtype == np.float32 for b in m.rev_jacobian(*args))


def test_jacobian_of_a_scalar_output_is_refused_where_it_returns():
    text = "def f(x: Param[N]):\n    return sum(x * x)\n"
    with pytest.raises(CompileError) as err:
        gradgen.compile_source(text, "s.grad", jacobian=True)
    d = err.value.diagnostics[0]
    assert (d.line, d.col) == (2, 12)
    assert "--jacobian needs a non-scalar output" in d.message and "f_grad" in d.message


def test_jacobian_is_opt_in_and_recorded_in_the_header():
    plain = gradgen.compile_source(SOURCE, "jac.grad")
    assert "_jacobian" not in plain
    src = gradgen.compile_source(SOURCE, "jac.grad", jacobian=True, target="array-api")
    assert "gradgen compile jac.grad --jacobian --target array-api" in src


def test_least_squares_uses_f_jacobian():
    from gradgen import scipy as gs

    mod = gradgen.load_source("def res(A: Data[N, 2], y: Data[N], x: Param[2]):\n"
                              "    return exp(A @ x) - y\n", jacobian=True)
    rng = np.random.default_rng(0)
    A = rng.normal(size=(20, 2))
    x_true = np.array([0.3, -0.5])
    y = np.exp(A @ x_true)
    p = gs.problem(mod.res, A, y, np.array([0.1, 0.1]))
    options = p.least_squares_options()
    assert options["jac"] == p.jacobian   # the dense Jacobian, not the LinearOperator
    np.testing.assert_array_equal(p.jacobian(p.x0), mod.res_jacobian(A, y, p.x0))
    result = gs.least_squares(mod.res, A, y, np.array([0.1, 0.1]))
    np.testing.assert_allclose(result.params, x_true, rtol=1e-8)
