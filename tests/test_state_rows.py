"""`passes/rows.reuse_state_rows` on the vanilla RNN of the benchmark suite (issue 12 item 4:
peak memory at most the hand-written BPTT's): with a hint that a step has enough rows
(`--hint N=32`) the backward loop computes `dhsWy[t] @ Wy.T` and `dWh` per step and writes
its row gradients into the saved states' rows; without one, or with too few rows, the code
is the batched one. Values against a BPTT written here, float64, float32 and mixed dtypes;
tracemalloc's peak against that BPTT's."""

from __future__ import annotations

import tracemalloc
import types
from pathlib import Path

import numpy as np
import pytest
from emitted import load

import gradgen

RNN = Path(__file__).resolve().parent.parent / "benchmarks" / "models" / "rnn.grad"


def _module(**options) -> tuple[types.ModuleType, str]:
    source = gradgen.compile_source(RNN.read_text(encoding="utf-8"), "rnn.grad",
                                    modes=("grad",), **options)
    return load(source, "rnn_state_rows"), source


@pytest.fixture(scope="module")
def modules():
    return {"none": _module(), "N=32": _module(hints={"N": 32}),
            "N=1": _module(hints={"N": 1})}


def _bptt(X, Y, Wx, Wh, Wy, h0):
    """The loss and gradients as min-char-rnn computes them, one step at a time."""
    T, N, _ = X.shape
    hs, ps, loss = [h0], [], 0.0
    for t in range(T):
        hs.append(np.tanh(X[t] @ Wx + hs[-1] @ Wh))
        z = hs[-1] @ Wy
        z = z - z.max(axis=1, keepdims=True)
        p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
        loss -= np.log(p[np.arange(N), Y[t]]).mean()
        ps.append(p)
    dWx, dWh, dWy, dh = np.zeros_like(Wx), np.zeros_like(Wh), np.zeros_like(Wy), 0 * h0
    for t in reversed(range(T)):
        dy = ps[t].copy()
        dy[np.arange(N), Y[t]] -= 1
        dy /= N * T
        dWy += hs[t + 1].T @ dy
        da = (dy @ Wy.T + dh) * (1 - hs[t + 1] ** 2)
        dWx += X[t].T @ da
        dWh += hs[t].T @ da
        dh = da @ Wh.T
    return loss / T, (dWx, dWh, dWy)


def _data(T, N, D=7, H=9, C=6, seed=3):
    rng = np.random.default_rng(seed)
    chars = rng.integers(0, D, (T + 1, N))
    return (np.eye(D)[chars[:-1]], chars[1:] % C, 0.5 * rng.standard_normal((D, H)),
            0.5 * rng.standard_normal((H, H)), 0.5 * rng.standard_normal((H, C)),
            0.3 * rng.standard_normal((N, H)))


def test_the_backward_loop_writes_into_the_states_with_the_hint(modules):
    _, source = modules["N=32"]
    fn = source[source.index("def rnn_loss_value_and_grad"):]
    assert "dWh += h_steps[t].T @ dh_mul" in fn and "h_steps[t + 1] = dh_mul" in fn
    assert "dhs = " not in fn and "dhsWy[t] @ Wy.T" in fn and ".copy()" not in fn
    assert "dXWx = h_steps[1:]  # (T, N, H); the rows the loop wrote into h_steps" in fn


def test_no_hint_or_a_row_a_step_keeps_the_batched_gradient(modules):
    def body(source: str) -> str:   # (past the header, which names the options)
        return source[source.index('"""NumPy functions'):]
    assert body(modules["N=1"][1]) == body(modules["none"][1])
    assert "dhs = dhsWy @ Wy.T" in modules["none"][1]


@pytest.mark.parametrize("dtypes", [("float64",) * 3, ("float32",) * 3,
                                    ("float32", "float64", "float32")],
                         ids=["float64", "float32", "mixed"])
def test_values_and_gradients_agree_with_bptt(modules, dtypes):
    X, Y, Wx, Wh, Wy, h0 = _data(T=5, N=4)
    value, grads = _bptt(X, Y, Wx, Wh, Wy, h0)
    low, wide, other = (np.dtype(d) for d in dtypes)   # (Wy's dtype is `wide`)
    args = (X.astype(low), Y, Wx.astype(low), Wh.astype(other), Wy.astype(wide),
            h0.astype(low))
    tol = 1e-12 if set(dtypes) == {"float64"} else 2e-5
    for key in ("none", "N=32"):
        mod = modules[key][0]
        v, gs = mod.rnn_loss_value_and_grad(*args)
        assert np.asarray(v).dtype == np.result_type(*dtypes)
        np.testing.assert_allclose(v, value, rtol=tol)
        for g, ref in zip(gs, grads):
            assert g.dtype == np.result_type(*dtypes)
            np.testing.assert_allclose(g, ref, rtol=tol, atol=tol * np.abs(ref).max())
        np.testing.assert_allclose(mod.rnn_loss_grad(*args)[1], grads[1], rtol=tol,
                                   atol=tol * np.abs(grads[1]).max())
    if "float32" in dtypes and "float64" in dtypes:   # (made one dtype: nothing rounded)
        exact = _bptt(*(a if a.dtype.kind == "i" else a.astype(np.float64) for a in args))[1]
        for g, ref in zip(modules["N=32"][0].rnn_loss_value_and_grad(*args)[1], exact):
            np.testing.assert_allclose(g, ref, rtol=1e-12, atol=1e-12 * np.abs(ref).max())
    for a, arg in zip(args, (X, Y, Wx, Wh, Wy, h0)):   # (the arguments are left as given)
        np.testing.assert_array_equal(a, arg.astype(a.dtype))


def test_peak_memory_at_most_the_hand_written_bptt(modules):
    """The issue's size, T=50 N=32 H=128: tracemalloc's peak of the call (inputs made
    before) with the hint at most the step-by-step BPTT's; without it, above it."""
    X, Y, Wx, Wh, Wy, h0 = _data(T=50, N=32, D=65, H=128, C=65)

    def peak(fn):
        tracemalloc.start()
        try:
            fn(X, Y, Wx, Wh, Wy, h0)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    hand = peak(_bptt)
    assert peak(modules["N=32"][0].rnn_loss_value_and_grad) <= hand
    assert peak(modules["none"][0].rnn_loss_value_and_grad) > hand
