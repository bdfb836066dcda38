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
from pathlib import Path

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


def test_broadcast_argument_spilled_into_the_dead_buffer():
    # (rows R, not arange(N): the one-hot's cotangent stays a scatter, and log_softmax's
    # chain `dhs_diff - einsum(dhs_diff)[:, :, None] / hs_sum * hs_exp` a long line)
    source = SOURCE.replace("Y: Index[T, N]", "R: Index[T, N], Y: Index[T, N]") \
        .replace("arange(N), Y]", "R, Y]")
    text = gradgen.compile_source(source, filename="ce.grad", modes=("grad",))
    body = text[text.index("def ce_value_and_grad"):]
    assert "out=hs_exp)" in body and "# (T, N, 1)" in body
    assert "hs_exp, out=hs_exp)" in body.replace("\n", " ")
    hs, Wy, Y = _data()
    R = np.random.default_rng(4).integers(0, hs.shape[1], Y.shape)
    z = hs @ Wy
    logp = z - z.max(axis=2, keepdims=True)
    logp -= np.log(np.exp(logp).sum(axis=2, keepdims=True))
    steps = np.arange(Y.shape[0])[:, None]
    dlogp = np.zeros_like(logp)   # (rows of R may repeat: the one-hot added, and the
    np.add.at(dlogp, (steps, R, Y), -1 / Y.size)   # softmax times each row's total)
    dz = dlogp - np.exp(logp) * dlogp.sum(axis=2, keepdims=True)
    value, (dhs, dWy) = load(text).ce_value_and_grad(hs, Wy, R, Y)
    assert value == pytest.approx(-logp[steps, R, Y].mean(), rel=1e-12)
    np.testing.assert_allclose(dWy, hs.reshape(-1, hs.shape[2]).T @ dz.reshape(-1, Wy.shape[1]),
                               rtol=1e-10, atol=1e-14)


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
    # (the value's entries are gathered before exp, codegen/schedule._gathers_first: then
    # exp writes into hs_diff where the value is computed too)
    both = _body(text, "ce_value_and_grad")
    assert both.index("    hs_rows = hs_diff[") < both.index("    hs_exp = np.exp(hs_diff, out")
    for name in ("ce", "ce_value_and_grad", "ce_grad", "ce_vjp"):
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


def test_forward_statement_into_its_dead_argument_where_the_value_reads_it_whole():
    """`_into_dead_arguments` where the value reads the array itself (not a few entries
    gathered first): f_grad computes exp in its buffer, f_value_and_grad cannot."""
    source = ("def ce(hs: Param[N, H], Wy: Param[H, C], Y: Data[N, C]):\n"
              "    return -mean(log_softmax(hs @ Wy, axis=1) * Y)\n")
    text = gradgen.compile_source(source, filename="ce.grad", modes=("grad",))
    assert "hs_exp = np.exp(hs_diff, out=hs_diff)  # (N, C); reuses hs_diff's buffer" \
        in _body(text, "ce_grad")
    assert "hs_exp = np.exp(hs_diff)  # (N, C)\n" in _body(text, "ce_value_and_grad")
    mod = load(text)
    rng = np.random.default_rng(5)
    hs, Wy, Y = rng.standard_normal((6, 3)), rng.standard_normal((3, 4)), rng.random((6, 4))
    z = hs @ Wy
    logp = z - z.max(axis=1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(axis=1, keepdims=True))
    dz = (np.exp(logp) * Y.sum(axis=1, keepdims=True) - Y) / Y.size
    value, (dhs, dWy) = mod.ce_value_and_grad(hs, Wy, Y)
    assert value == pytest.approx(-(logp * Y).mean(), rel=1e-12)
    for got in (mod.ce_grad(hs, Wy, Y), (dhs, dWy)):
        np.testing.assert_allclose(got[0], dz @ Wy.T, rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(got[1], hs.T @ dz, rtol=1e-10, atol=1e-14)


def test_a_spilled_argument_is_computed_in_the_buffer_that_dies_there():
    """An argument spilled out of a long line into a statement of its own (`_spill`) is
    computed in the buffer of a variable that dies there, as any statement is: hmm's HVP
    divides `talpha_mul` by `alpha_sum` in talpha_mul's buffer (it had a fresh (N, K) array
    while talpha_mul was deleted on the next line). The HVP agrees with differences of
    the gradient."""
    root = Path(__file__).resolve().parents[1]
    text = gradgen.compile_source((root / "examples" / "hmm" / "hmm.grad").read_text(),
                                  filename="hmm.grad")
    hvp = text[text.index("def loglik_hvp"):]
    assert "talpha_mul / alpha_sum" not in hvp
    assert "talpha_div = np.divide(talpha_mul, alpha_sum, out=talpha_mul)" in hvp
    mod = load(text)
    rng = np.random.default_rng(4)
    K, M, T, N = 3, 4, 5, 6
    A, pi, E = rng.normal(size=(K, K)), rng.normal(size=K), rng.normal(size=(M, K))
    obs = rng.integers(0, M, (T, N))
    vA, vpi, vE = rng.normal(size=(K, K)), rng.normal(size=K), rng.normal(size=(M, K))
    eps = 1e-6
    plus = mod.loglik_grad(A + eps * vA, pi + eps * vpi, E + eps * vE, obs)
    minus = mod.loglik_grad(A - eps * vA, pi - eps * vpi, E - eps * vE, obs)
    for h, p, m in zip(mod.loglik_hvp(A, pi, E, obs, vA, vpi, vE), plus, minus):
        np.testing.assert_allclose(h, (p - m) / (2 * eps), rtol=1e-6, atol=1e-8)


def test_a_carried_view_of_a_new_array_is_not_copied():
    """hmm's backward step `dalpha = (weights @ dalpha[:, :, None])[:, :, 0]`: the next
    value is a view of the array its own line makes, which no other variable holds, so the
    carried variable keeps it (no `.copy()` at every step); the gradient is unchanged
    (against differences of the value)."""
    root = Path(__file__).resolve().parents[1]
    text = gradgen.compile_source((root / "examples" / "hmm" / "hmm.grad").read_text(),
                                  filename="hmm.grad")
    grad = text[text.index("def loglik_grad"):text.index("def loglik_value_and_grad")]
    assert "        dalpha = (weights @ dalpha[:, :, None])[:, :, 0]\n" in grad
    assert ".copy()" not in grad[grad.index("for t in reversed"):]
    mod = load(text)
    rng = np.random.default_rng(8)
    K, M, T, N = 3, 4, 6, 5
    A, pi, E = rng.normal(size=(K, K)), rng.normal(size=K), rng.normal(size=(M, K))
    obs = rng.integers(0, M, (T, N))
    dA, dpi, dE = mod.loglik_grad(A, pi, E, obs)
    for x, g in ((A, dA), (pi, dpi), (E, dE)):
        step = np.zeros_like(x)
        step.flat[1] = 1e-6
        x += step
        plus = mod.loglik(A, pi, E, obs)
        x -= 2 * step
        minus = mod.loglik(A, pi, E, obs)
        x += step
        np.testing.assert_allclose(g.flat[1], (plus - minus) / 2e-6, rtol=1e-6, atol=1e-9)


def test_a_carried_broadcast_of_a_new_array_is_still_copied():
    """A next value that is `np.broadcast_to` of a new array is a read-only view: the
    carried variable gets a copy, which the gradient's step then writes into
    (`np.tanh(h, out=h)`); the gradient agrees with differences of the value."""
    text = gradgen.compile_source(
        "def f(x: Param[N, K]):\n    h = x\n    for t in range(3):\n"
        "        h = broadcast_to(sum(tanh(h) * x, axis=1)[:, None], (N, K))\n"
        "    return sum(h * x)\n", filename="bc.grad", modes=("grad",))
    grad = text[text.index("def f_grad"):]
    assert "        h = h2.copy()\n" in grad and "np.tanh(h, out=h)" in grad
    mod = load(text)
    x = np.random.default_rng(9).normal(size=(4, 3))
    step = np.zeros_like(x)
    step[1, 2] = 1e-6
    fd = (mod.f(x + step) - mod.f(x - step)) / 2e-6
    np.testing.assert_allclose(mod.f_grad(x)[1, 2], fd, rtol=1e-6)
