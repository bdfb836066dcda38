"""The rematerialisation policies of a saving loop's VJP (gradgen/autodiff/loops.py):
`lse_weights` (a log-sum-exp's derivative reads its result: the softmax weights
`exp(x - lse)` recomputed in the backward step) and `recompute_cheap` (a step value larger
than the carried state, computed from it by elementwise ops and views, is recomputed in
the backward step instead of saved per step). hmm itself: test_loop_derivatives."""

from __future__ import annotations

import re

import numpy as np
import pytest
from fdcheck import assert_close, fd_jacobian

import gradgen
from gradgen.passes import building

SOURCE = '''
def cheap(W: Param[K, K], h0: Param[K], X: Data[T, K]):
    h = h0
    for t in range(T):
        h = sum(tanh(h[:, None] * W), axis=0) + X[t]
    return sum(h * h)


def product(W: Param[K, K], h0: Param[K], X: Data[T, K]):
    h = h0
    for t in range(T):
        h = sum(tanh(W @ (h[:, None] * W)), axis=0) + X[t]
    return sum(h * h)


def small(W: Param[N, K], H0: Param[N, K], X: Data[T, K]):
    H = H0
    for t in range(T):
        H = W * H - logsumexp(H, axis=1, keepdims=True) + X[t]
    return sum(H * H)


def keep(W: Param[K, K], h0: Param[K, 1], X: Data[T, K]):
    h = h0
    for t in range(T):
        h = logsumexp(h + W, axis=1, keepdims=True) + X[t][:, None]
    return sum(h * h)


def nonlinear(W: Param[K, K], h0: Param[K], X: Data[T, K]):
    h = h0
    for t in range(T):
        h = tanh(logsumexp(h[:, None] + W, axis=0)) + X[t]
    return sum(h * h)


def weights(W: Param[K, K], h0: Param[K], X: Data[T, K]):
    h = h0
    for t in range(T):
        h = logsumexp(h[:, None] + W, axis=0) - 0.5 * tanh(h) + X[t]
    return sum(h * h)
'''


@pytest.fixture(scope="module")
def module():
    with building():
        text = gradgen.compile_source(SOURCE, filename="remat.grad", modes=("grad",))
    env: dict = {}
    exec(compile(text, "<remat>", "exec"), env)
    return text, env


def _backward(text: str, name: str) -> tuple[str, str]:
    """(the function's code, its backward loop's body without comments)."""
    fn = text[text.index(f"def {name}_grad("):]
    fn = fn[:fn.index("\ndef ", 1)] if "\ndef " in fn[1:] else fn
    start = fn.index("for t in reversed(")
    body = fn[start:fn.index("\n    del ", start)]
    return fn, "\n".join(x for x in body.splitlines() if not x.lstrip().startswith("#"))


def test_a_cheap_step_value_is_recomputed(module):
    """tanh(h[:, None] * W), (K, K) from the carried (K,): recomputed, no (T, K, K) buffer."""
    fn, backward = _backward(module[0], "cheap")
    assert "np.tanh(" in backward and "(T, K, K)" not in fn, fn


def test_a_step_value_from_a_product_is_saved(module):
    """tanh(W @ ...): recomputing it would redo a matrix product: saved per step."""
    fn, backward = _backward(module[0], "product")
    assert "(T, K, K)" in fn and "np.tanh(" not in backward and "tanh_steps[t]" in backward


def test_the_weights_only_where_they_save_memory(module):
    """A log-sum-exp of the carried (N, K) itself: nothing larger is saved, the plain VJP
    stays; of a (K, K) value from the carried (K,): `lse_steps` (K,) and the weights."""
    fn, _ = _backward(module[0], "small")
    assert "lse_steps" not in fn, fn
    fn, backward = _backward(module[0], "weights")
    assert "lse_steps = np.empty((T, K)" in fn and "(T, K, K)" not in fn, fn
    # (recomputed in one buffer, the difference first (ops.nn.lse_shifted):
    # `weights = h[:, None] - lse_steps[t][None]; weights += W; np.exp`, h made again)
    assert re.search(r"weights = \w+\[:, None\] - lse_steps\[t\]\[None\].*\n"
                     r" *weights \+= W\n *np\.exp\(weights, out=weights\)", backward), backward


@pytest.mark.parametrize("name", ["keep", "nonlinear"])
def test_the_weights_also_with_kept_axes_and_a_value_read(module, name):
    """logsumexp(..., keepdims=True), and one whose value a tanh reads (its derivative
    reads that value, the log-sum-exp's own, not the surrogate's): weights, no (T, K, K)."""
    fn, backward = _backward(module[0], name)
    assert "lse_steps" in fn and "(T, K, K)" not in fn and "weights" in backward, fn


@pytest.mark.parametrize("name", ["cheap", "product", "small", "keep", "nonlinear", "weights"])
def test_gradients_agree_with_finite_differences(module, name):
    rng = np.random.default_rng(7)
    k, n, t = 4, 3, 5
    if name == "small":
        args = {"W": 0.5 * rng.normal(size=(n, k)), "H0": rng.normal(size=(n, k))}
    elif name == "keep":
        args = {"W": 0.5 * rng.normal(size=(k, k)), "h0": rng.normal(size=(k, 1))}
    else:
        args = {"W": 0.5 * rng.normal(size=(k, k)), "h0": rng.normal(size=(k,))}
    args["X"] = rng.normal(size=(t, k))
    order = list(args)
    value_fn, grad_fn = module[1][name], module[1][name + "_grad"]
    got = grad_fn(*(args[x] for x in order))
    for x, g in zip(order[:2], got):
        assert_close(g, fd_jacobian(value_fn, order, args, x), f"{name} d/d{x}")
