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


# hmm (benchmarks/models/hmm.grad): the forward loop writes the saved log-sum-exps into
# the rows of the hoisted gather log_B_transpose as it reads them (issue 12 item 4)
HMM = '''
def hmm_nll(pi_logits: Param[K], A_logits: Param[K, K], B_logits: Param[K, M],
            obs: Index[N, T]):
    log_pi = log_softmax(pi_logits)
    log_A = log_softmax(A_logits, axis=1)
    log_B = log_softmax(B_logits, axis=1)
    alpha = log_pi + log_B[:, obs[:, 0]].T
    for t in range(1, T):
        alpha = logsumexp(alpha[:, :, None] + log_A[None, :, :], axis=1) + log_B[:, obs[:, t]].T
    return -mean(logsumexp(alpha, axis=1))
'''


@pytest.fixture(scope="module")
def hmm():
    with building():
        text = gradgen.compile_source(HMM, filename="hmm.grad", modes=("grad", "hvp"))
    env: dict = {}
    exec(compile(text, "<hmm>", "exec"), env)
    return text, env


def _hmm_args(rng, k=3, m=4, n=5, t=6):
    return [rng.normal(size=k), rng.normal(size=(k, k)), rng.normal(size=(k, m)),
            rng.integers(0, m, size=(n, t))]


def test_hmm_saves_its_lse_in_the_rows_of_the_gather(hmm):
    """Policy regather_rows: the backward step makes alpha again from the table
    (`log_B[:, obs_transpose[t - 2]].T`), not from row t - 2 of log_B_transpose, which
    then only the forward loop reads, row t - 1 at step t: share_row_buffers gives its
    buffer to lse_steps, and the scheduler computes the next alpha (reading the row) before
    the row is written (schedule._read_before_write). One (T - 1, N, K) array in all."""
    fn = hmm[0][hmm[0].index("def hmm_nll_value_and_grad("):]
    fn = fn[:fn.index("\ndef ", 1)]
    assert "    lse_steps = log_B_transpose  # reuses log_B_transpose's buffer\n" in fn, fn
    assert "        # a row of lse_steps holds log_B_transpose's value until the loop writes " \
        "it\n        alpha2 = lse + lse_steps[t - 1]" in fn, fn
    assert "np.empty((T - 1, N, K)" not in fn, fn
    read, write = fn.index("= lse + lse_steps[t - 1]"), fn.index("lse_steps[t - 1] = lse\n")
    assert read < write and ".copy()\n" not in fn[read:write], fn
    backward = fn[fn.index("for t in reversed("):]
    assert "log_B[:, obs_transpose[t - 2]].T" in backward, backward
    assert not re.search(r"\blog_B_transpose\[", backward) and "weights += log_A" in backward


def test_hmm_gradient_with_the_shared_rows(hmm):
    """The gradient against finite differences, and in mixed dtypes (B_logits float32)
    that of the arguments made one dtype first (rule one_dtype_at_entry: the saved lse,
    float64, is written into the float32 gather's buffer only after that; the HVP, which
    casts for nothing else, too): equal to all-float64 arguments bit for bit."""
    _, env = hmm
    rng = np.random.default_rng(11)
    args = _hmm_args(rng)
    order = ["pi_logits", "A_logits", "B_logits"]
    named = dict(zip(order, args[:3]))

    def value(pi_logits, A_logits, B_logits):
        return env["hmm_nll"](pi_logits, A_logits, B_logits, args[3])
    got = env["hmm_nll_grad"](*args)
    for x, g in zip(order, got):
        assert_close(g, fd_jacobian(value, order, named, x), f"hmm d/d{x}")
    mixed = [args[0], args[1], args[2].astype(np.float32), args[3]]
    wide = [args[0], args[1], mixed[2].astype(np.float64), args[3]]
    vs = [rng.normal(size=a.shape) for a in args[:3]]
    for name, extra in [("hmm_nll_grad", []), ("hmm_nll_value_and_grad", []),
                        ("hmm_nll_hvp", vs)]:
        a, b = env[name](*mixed, *extra), env[name](*wide, *extra)
        flat = (lambda r: [r[0], *r[1]]) if name.endswith("value_and_grad") else list
        for p, q in zip(flat(a), flat(b)):
            np.testing.assert_array_equal(p, q, err_msg=name)


def test_scatter_add_per_column(hmm):
    """`_scatter_add` with few columns and many indices sums one bincount per column (no
    index array of the gradient's size): equal to np.add.at."""
    scatter = hmm[1]["_scatter_add"]
    rng = np.random.default_rng(5)
    g = rng.normal(size=(40, 70, 6)).transpose(2, 0, 1)   # (6, 40, 70), not contiguous
    idx = rng.integers(-9, 9, size=(40, 70))
    want = np.zeros((6, 9))
    np.add.at(want, (slice(None), idx), g)
    np.testing.assert_allclose(scatter(g, (6, 9), 1, idx), want, rtol=1e-12, atol=1e-12)
