"""Issue 12 item 4 (peak memory): a chain whose line into a dead buffer is too long for
`out=` spills its bottom step's broadcast argument (`dhs_diff_div`, (T, N, 1)) and is
computed in the dead buffer, not into two fresh full-size arrays (the backward of a
batched log-softmax, as a recurrent model's output layer has it: rnn T=50 4.8 -> 4.1 MiB).
And a forward statement scheduled once for all the functions (`Forward`) is computed in
its argument's buffer in a function that reads that argument no more (`f_grad` never
computes log p, so `np.exp(hs_diff, out=hs_diff)`; `f_value_and_grad` still reads
hs_diff after it). The gradient is checked against a softmax cross-entropy written here;
peak memory is counted by tracemalloc (allocations, not time)."""

from __future__ import annotations

import gc
import tracemalloc

import numpy as np
import pytest

import gradgen
from emitted import load

SOURCE = """\
def ce(hs: Param[T, N, H], Wy: Param[H, C], Y: Index[T, N]):
    return -mean(log_softmax(hs @ Wy, axis=2)[arange(T)[:, None], arange(N), Y])
"""


@pytest.fixture(scope="module")
def text():
    return gradgen.compile_source(SOURCE, filename="ce.grad", modes=("grad", "vjp"))


def _data(T=20, N=16, H=8, C=50, dtype=np.float64):
    rng = np.random.default_rng(3)
    return (rng.standard_normal((T, N, H)).astype(dtype),
            rng.standard_normal((H, C)).astype(dtype), rng.integers(0, C, (T, N)))


def _reference(hs, Wy, Y):
    z = hs @ Wy
    z = z - z.max(axis=2, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=2, keepdims=True)
    T, N = Y.shape
    t, n = np.meshgrid(np.arange(T), np.arange(N), indexing="ij")
    value = -np.mean(np.log(p[t, n, Y]))
    dz = p.copy()
    dz[t, n, Y] -= 1.0
    dz /= T * N
    return value, dz @ Wy.T, hs.reshape(-1, hs.shape[2]).T @ dz.reshape(-1, dz.shape[2])


def test_broadcast_argument_spilled_into_the_dead_buffer(text):
    body = text[text.index("def ce_value_and_grad"):]
    assert "out=hs_exp)" in body and "# (T, N, 1)" in body
    assert "hs_exp, out=hs_exp)" in body.replace("\n", " ")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_gradient_and_peak_memory(text, dtype):
    mod = load(text)
    hs, Wy, Y = _data(dtype=dtype)
    value, (dhs, dWy) = mod.ce_value_and_grad(hs, Wy, Y)
    ref = _reference(hs.astype(np.float64), Wy.astype(np.float64), Y)
    tol = 1e-12 if dtype == np.float64 else 2e-5
    np.testing.assert_allclose(value, ref[0], rtol=tol)
    np.testing.assert_allclose(dhs, ref[1], rtol=tol * 10, atol=tol)
    np.testing.assert_allclose(dWy, ref[2], rtol=tol * 10, atol=tol)
    assert dhs.dtype == dtype and dWy.dtype == dtype
    full = 20 * 16 * 50 * np.dtype(dtype).itemsize   # one (T, N, C) array
    # No collection inside the measured call (tracemalloc counts what is allocated after
    # it starts, so what the collector would free of older objects does not matter).
    # (A gc.collect() here took 0.9 s a call in a test worker: full passes over its heap.)
    enabled = gc.isenabled()
    gc.disable()
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        mod.ce_value_and_grad(hs, Wy, Y)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        if enabled:
            gc.enable()
    # (T, N, C): hs_diff, hs_exp and the value's temporary at once, with NumPy's
    # 64 KiB ufunc buffer; the backward part holds hs_exp and dhs_diff only (it held two
    # more fresh arrays before: 4.5 full arrays)
    assert peak - base < 4.0 * full


def _body(text, name):
    return text[text.index(f"def {name}("):].split("\ndef ")[0]


def test_forward_statement_into_its_dead_argument_per_function(text):
    assert "hs_exp = np.exp(hs_diff)  # (T, N, C)\n" in _body(text, "ce_value_and_grad")
    for name in ("ce_grad", "ce_vjp"):
        assert "hs_exp = np.exp(hs_diff, out=hs_diff)  # (T, N, C); reuses hs_diff's buffer" \
            in _body(text, name), name
    mod = load(text)
    hs, Wy, Y = _data()
    args = [a.copy() for a in (hs, Wy, Y)]
    ref = _reference(hs, Wy, Y)
    for scale, (dhs, dWy) in ((1.0, mod.ce_grad(*args)), (2.0, mod.ce_vjp(*args, 2.0))):
        np.testing.assert_allclose(dhs, scale * ref[1], rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(dWy, scale * ref[2], rtol=1e-12, atol=1e-15)
    assert all(np.array_equal(a, b) for a, b in zip(args, (hs, Wy, Y)))   # (arguments intact)
