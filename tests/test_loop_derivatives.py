"""Derivatives of loops (issue 11): the VJP of a scan is a reversed scan over saved
residuals, its JVP a scan over the body's JVP, its batching rule a scan over the batched
body, so grad, vjp, jvp, hvp and the Hessian go through loops, to second order.

Each case is written once as a function of a `loop` combinator and built twice: with
`Scan` (one scan node holding the body as a region, as the language lowers a `for` loop)
and with `Unrolled` (the body built once per step, the loop index a number). Both are
compiled (every derivative at once, one module each) and run; the scan's derivatives must
equal the unrolled ones (which the rest of the compiler differentiates), and finite
differences (two-sided, float64) check them independently. The checkpointed VJP must give
the saved one's numbers.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import sympy
from clirun import run
from test_regions import SIZES, _emit, _inp

import gradgen

from gradgen.autodiff.derivatives import EntryDerivatives
from gradgen.dims import dim_symbol
from gradgen.ir import Graph, Region, const, make, topo_order
from gradgen.passes import building, lower, optimize

N, D, T = dim_symbol("N"), dim_symbol("D"), dim_symbol("T")


@pytest.fixture(autouse=True)
def _building():
    with building():
        yield


class Scan:
    """`loop(...)` as one scan node."""

    def __init__(self):
        self.level = 0

    def __call__(self, inits, outside, body, length, start=0, step=1, reverse=False,
                 names=None):
        self.level += 1
        lv = self.level
        names = names or [f"c{k}" for k in range(len(inits))]
        t = _inp(f"t{lv}", (), "index")
        cin = [_inp(f"{n}", a.shape, "carry") for n, a in zip(names, inits)]
        oin = [_inp(f"o{lv}_{j}", a.shape, "outside") for j, a in enumerate(outside)]
        outs = body(t, cin, oin)
        self.level -= 1
        attrs = {"length": length}
        if start:
            attrs["start"] = start
        if step != 1:
            attrs["step"] = step
        if reverse:
            attrs["reverse"] = True
        scan = make("scan", *inits, *outside, body=Region((t, *cin, *oin), tuple(outs)),
                    **attrs)
        return [make("part", scan, index=k) for k in range(len(inits))]


class Unrolled:
    """`loop(...)` as the body built once per step (a dimension `length` at its size in
    SIZES)."""

    def __call__(self, inits, outside, body, length, start=0, step=1, reverse=False,
                 names=None):
        carried = list(inits)
        steps = range(SIZES[str(length)] if hasattr(length, "name") else int(length))
        for i in (reversed(steps) if reverse else steps):
            carried = list(body(const(start + i * step), carried, list(outside)))
        return carried


def _sum(x):
    return make("sum", x, axes=tuple(range(x.ndim)), keepdims=False) if x.ndim else x


def _row(x, t):
    """x[t] (the unrolled loop's index is a number)."""
    if t.is_const:
        return make("index", x, index=(int(t.value),))
    return make("gather", x, t, axis=0)


def _write(x, v, t):
    """x with x[t] = v."""
    if t.is_const:
        return make("update", x, v, index=(int(t.value),), axis=None)
    return make("update", x, v, t, index=(), axis=0)


# ---------------------------------------------------------------- the cases
# Each: (params: [(name, shape)], data: [(name, shape)], model(loop, *params, *data) -> a
# scalar node). Shapes use N, D, T (SIZES: N=3, D=4, T=5).

def rnn(loop, h0, w, x, length=T):
    """h <- tanh(h @ W + X[t]); loss = sum(h_T ** 2)."""
    (h,) = loop([h0], [w, x], lambda t, c, o: [make("tanh", c[0] @ o[0] + _row(o[1], t))],
                length, names=["h"])
    return _sum(h * h)


def hmm(loop, a0, la, lb):
    """The forward algorithm in log space: alpha <- logsumexp(alpha[:, None] + logA, 0)
    + logB[t]; loss = logsumexp(alpha_T)."""
    def body(t, c, o):
        alpha, a, b = c[0], o[0], o[1]
        s = make("expand_dims", alpha, axes=(1,)) + a
        return [make("log", make("sum", make("exp", s), axes=(0,), keepdims=False)) + _row(b, t)]
    (alpha,) = loop([a0], [la, lb], body, T, names=["alpha"])
    return make("log", _sum(make("exp", alpha)))


def per_step(loop, h0, w, y):
    """H[t] = h each step (a buffer written at the index); loss = sum(H * Y) + sum(h_T)."""
    def body(t, c, o):
        h, hs = c
        new = make("sin", h @ o[0])
        return [new, _write(hs, new, t)]
    h, hs = loop([h0, make("zeros_like", y)], [w], body, T, names=["h", "H"])
    return _sum(hs * y) + _sum(h)


def two_carried(loop, h0, c0, w):
    """(h, c) <- (tanh(h @ W + c), 0.5 c + sin(h) * t)."""
    def body(t, c, o):
        h, cc = c
        return [make("tanh", h @ o[0] + cc), cc * 0.5 + make("sin", h) * t]
    h, c = loop([h0, c0], [w], body, T, names=["h", "c"])
    return _sum(h * c)


def nested(loop, h0, w):
    """for t: g = h; for s in range(3): g = 0.5 g + h * w0 ... ; h = tanh(g @ W)."""
    def inner(s, c, o):
        return [c[0] * 0.5 + make("sin", o[0]) * s]

    def outer(t, c, o):
        (g,) = loop([c[0]], [c[0]], inner, 3, names=["g"])
        return [make("tanh", g @ o[0])]
    (h,) = loop([h0], [w], outer, T, names=["h"])
    return _sum(h * h)


def reversed_loop(loop, h0, w, x):
    """An RNN running over X backwards (reverse=True)."""
    (h,) = loop([h0], [w, x], lambda t, c, o: [make("tanh", c[0] @ o[0] + _row(o[1], t))],
                T, reverse=True, names=["h"])
    return _sum(h * make("cos", h))


def strided(loop, h0, w, x):
    """t = 2, 5, 8 (start 2, step 3, 3 steps) and t = 9, 7, 5, 3 (step -2) reading X[t]."""
    body = lambda t, c, o: [make("tanh", c[0] @ o[0] + _row(o[1], t) * t)]  # noqa: E731
    (h,) = loop([h0], [w, x], body, 3, start=2, step=3, names=["h"])
    (h,) = loop([h], [w, x], body, 4, start=9, step=-2, names=["h"])
    return _sum(h * h)


W_ = ("W", (D, D))
CASES = {
    "rnn": (rnn, [("h0", (N, D)), W_, ("X", (T, N, D))], []),
    "hmm": (hmm, [("a0", (D,)), ("logA", (D, D)), ("logB", (T, D))], []),
    "per_step": (per_step, [("h0", (N, D)), W_], [("Y", (T, N, D))]),
    "two_carried": (two_carried, [("h0", (N, D)), ("c0", (N, D)), W_], []),
    "nested": (nested, [("h0", (N, D)), W_], []),
    "reverse": (reversed_loop, [("h0", (N, D)), W_, ("X", (T, N, D))], []),
    "strided": (strided, [("h0", (N, D)), W_, ("X", (sympy.Integer(10), N, D))], []),
}


def _shape(shape, sizes):
    return tuple(int(s.subs({dim_symbol(k): v for k, v in sizes.items()}))
                 if hasattr(s, "subs") else int(s) for s in shape)


_COMPILED: dict = {}


def _compile(case: str, loop, checkpoint=None, sizes=SIZES):
    """One function computing value, gradient, JVP, HVP and Hessian of a case (every
    derivative of the loop); returns (source, f, number of params). Compiled once per
    case, kind of loop and checkpoint interval (the tests share them)."""
    key = (case, type(loop).__name__, checkpoint)
    if key not in _COMPILED:
        _COMPILED[key] = _compiled(case, loop, checkpoint)
    return _COMPILED[key]


def _compiled(case: str, loop, checkpoint=None):
    model, params, data = CASES[case]
    ps = [_inp(n, s) for n, s in params]
    ds = [_inp(n, s, "data") for n, s in data]
    out = model(loop, *ps, *ds)
    ed = EntryDerivatives(out, ps, checkpoint)
    vs = [_inp(f"v_{n}", s, "tangent") for n, s in params]
    grads = ed.gradient().outputs
    (jv,) = ed.jvp(vs).outputs
    hv = ed.hvp(vs).outputs
    hess = [b for row in ed.hessian() for b in row]
    graph = Graph((*ps, *ds, *vs), (out, *grads, jv, *hv, *hess))
    graph = lower(optimize(graph))
    source, f = _emit(graph)
    return source, f, len(ps)


def _values(case, rng, sizes=SIZES):
    _, params, data = CASES[case]
    scale = 0.4
    return [scale * rng.normal(size=_shape(s, sizes)) for _, s in params] + \
        [rng.normal(size=_shape(s, sizes)) for _, s in data]


@pytest.mark.parametrize("case", sorted(CASES))
def test_loop_derivatives(case):
    rng = np.random.default_rng(1)
    source, f, n = _compile(case, Scan())
    _, unrolled, _ = _compile(case, Unrolled())
    assert "for " in source
    xs = _values(case, rng)
    vs = [rng.normal(size=x.shape) for x in xs[:n]]
    got = f(*xs, *vs)
    want = unrolled(*xs, *vs)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)
    value, grads, jv = got[0], got[1:1 + n], got[1 + n]
    hv, hess = got[2 + n:2 + 2 * n], got[2 + 2 * n:]

    def fval(ps):
        return f(*ps, *xs[n:], *vs)[0]

    def fgrad(ps):
        return f(*ps, *xs[n:], *vs)[1:1 + n]
    eps = 1e-6
    for i in range(n):   # the gradient, one entry at a time
        for idx in list(np.ndindex(xs[i].shape))[:6]:
            plus = [x.copy() for x in xs[:n]]
            minus = [x.copy() for x in xs[:n]]
            plus[i][idx] += eps
            minus[i][idx] -= eps
            fd = (fval(plus) - fval(minus)) / (2 * eps)
            assert grads[i][idx] == pytest.approx(fd, rel=1e-6, abs=1e-8)
    # the JVP is <grad, v>; the HVP the derivative of the gradient along v
    assert jv == pytest.approx(sum(np.sum(g * v) for g, v in zip(grads, vs)), rel=1e-10)
    plus = fgrad([x + eps * v for x, v in zip(xs[:n], vs)])
    minus = fgrad([x - eps * v for x, v in zip(xs[:n], vs)])
    for h, p, m in zip(hv, plus, minus):
        np.testing.assert_allclose(h, (p - m) / (2 * eps), rtol=1e-5, atol=1e-7)
    # the Hessian blocks applied to v are the HVP
    for i in range(n):
        total = sum(np.tensordot(hess[i * n + j], vs[j], axes=vs[j].ndim) for j in range(n))
        np.testing.assert_allclose(total, hv[i], rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("case,every", [("rnn", 2), ("per_step", 3), ("reverse", 2),
                                        ("strided", 2), ("two_carried", 5), ("nested", 4)])
def test_checkpointed_equals_saved(case, every):
    """Saving the carried values every `every` steps and recomputing the residuals gives
    the numbers of saving them all (T = 5: segments and a tail; T = 4 and 1: other
    remainders; T = 0: no step)."""
    rng = np.random.default_rng(2)
    saved_source, saved, n = _compile(case, Scan())
    source, f, _ = _compile(case, Scan(), checkpoint=every)
    assert "_checkpoints" in source and "_checkpoints" not in saved_source
    for steps in (5, 4, 1, 0):
        sizes = {**SIZES, "T": steps}
        xs = _values(case, rng, sizes)
        vs = [rng.normal(size=x.shape) for x in xs[:n]]
        f.__globals__.update(sizes)
        saved.__globals__.update(sizes)
        try:
            got, want = f(*xs, *vs), saved(*xs, *vs)
        finally:
            f.__globals__.update(SIZES)
            saved.__globals__.update(SIZES)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------- loops in the language
# tests/loops/sequences.grad: an RNN language-model loss, an HMM forward log-likelihood,
# an LSTM writing its states into a buffer, an explicit-Euler ODE fit; the first three also
# written out by hand for T = 3.

SEQUENCES = Path(__file__).resolve().parent / "loops" / "sequences.grad"


@pytest.fixture(scope="module")
def sequences():
    text = SEQUENCES.read_text(encoding="utf-8")
    with building():
        source = gradgen.compile_source(text, filename=SEQUENCES.name, hessian=True)
        checkpointed = gradgen.compile_source(text, filename=SEQUENCES.name, modes=("grad",),
                                              checkpoint=2)
    return source, _load(source), _load(checkpointed)


def _load(source: str) -> dict:
    env: dict = {}
    exec(compile(source, "<sequences>", "exec"), env)
    return env


def _sequence_args(name, rng):
    n, d, h, c, k = 4, 3, 5, 6, 4
    if name == "rnn_loss":
        return [rng.normal(size=(3, n, d)), rng.integers(0, c, size=(3, n)),
                0.5 * rng.normal(size=(d, h)), 0.5 * rng.normal(size=(h, h)),
                0.5 * rng.normal(size=(h, c)), rng.normal(size=(n, h))], [2, 3, 4]
    if name == "hmm_loglik":
        return [rng.normal(size=(k, k)), rng.normal(size=(k,)), rng.normal(size=(3, k))], \
            [0, 1, 2]
    return [rng.normal(size=(3, n, d)), 0.5 * rng.normal(size=(d, h)),
            0.5 * rng.normal(size=(h, h)), rng.normal(size=(n, h))], [1, 2, 3]


@pytest.mark.parametrize("every", [None, 200, 1])
def test_a_step_value_larger_than_the_state_is_recomputed(sequences, every):
    """Policies lse_weights and recompute_cheap (every saving loop), and recompute_residuals
    (with `checkpoint`): hmm_loglik's gradient (T = 200), saving every step (`every` None),
    in one segment of T steps (`every` = T) or with every step a checkpoint (`every` = 1:
    one saving loop and one backward loop, no segments), keeps the log-sum-exp (K,) per
    step (the carried alpha is made again from it: rebuild_carry), not the (K, K)
    exponentials ((T - 1) K K floats, what the gradient saved before) nor their max and
    sum: the backward step recomputes the softmax weights `exp(alpha[:, None] + logA -
    lse[None])`. Its peak memory
    (tracemalloc) is far below the exponentials', its gradient the same in each (finite
    differences and the hand-unrolled loop: the tests above) and finite at large values."""
    import tracemalloc

    source, env, _ = sequences
    k, t = 32, 200
    text = SEQUENCES.read_text(encoding="utf-8")
    with building():
        ck_source = gradgen.compile_source(text, filename=SEQUENCES.name, modes=("grad",),
                                           checkpoint=every)
    ck = _load(ck_source)
    grad = _function(ck_source, "hmm_loglik_grad")
    start = grad.index("for t in reversed(")
    backward = grad[start:grad.index("\n    del ", start)]
    assert "lse_steps[" in backward and "alpha_steps" not in grad, backward
    # (policy rebuild_carry: alpha made again from the previous step's lse, not saved)
    assert re.search(r"np\.where\(t\w* == ", backward), backward
    assert "np.exp(" in backward and "max_steps" not in grad and "sum_steps" not in grad
    assert "exp_steps" not in grad and ".max(" not in backward, backward
    assert ("segment" in grad) == (every is not None and every > 1), grad
    rng = np.random.default_rng(3)
    args = [rng.normal(size=(k, k)), rng.normal(size=(k,)), rng.normal(size=(t, k))]
    saved, recomputed = env["hmm_loglik_grad"](*args), ck["hmm_loglik_grad"](*args)
    for a, b in zip(saved, recomputed):
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-12)
    # the softmax weights stay finite where the exponentials of a plain form would not
    big = [a * 400.0 for a in args]
    assert all(np.isfinite(g).all() for g in ck["hmm_loglik_grad"](*big))
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        ck["hmm_loglik_grad"](*args)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert peak < (t - 1) * k * k * 8 / 4, peak


def test_checkpoints_keep_no_buffer_of_all_the_steps(sequences):
    """With checkpoints every K > 1 steps, rnn_loss's gradient batches no per-step work
    over all the steps (hoist_steps' `X @ Wx`, sink_steps' output layer: each a (T, N, ...)
    buffer, which made the checkpointed gradient take twice the saving one's memory): its
    peak memory (tracemalloc) stays below one (T, N, H) buffer, and its gradient is the
    saving one's."""
    import tracemalloc

    _, env, ckpt = sequences
    t, n, d, h, c = 512, 8, 16, 64, 16
    rng = np.random.default_rng(4)
    args = [rng.normal(size=(t, n, d)), rng.integers(0, c, size=(t, n)),
            0.1 * rng.normal(size=(d, h)), 0.1 * rng.normal(size=(h, h)),
            0.1 * rng.normal(size=(h, c)), rng.normal(size=(n, h))]
    for a, b in zip(ckpt["rnn_loss_grad"](*args), env["rnn_loss_grad"](*args)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        ckpt["rnn_loss_grad"](*args)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert peak < t * n * h * 8, peak


@pytest.mark.parametrize("name", ["rnn_loss", "hmm_loglik", "lstm_states"])
def test_a_loop_and_its_hand_unrolled_source_agree(sequences, name):
    """Value, gradient, VJP, JVP, HVP and Hessian of the loop at T = 3 equal those of the
    same source written out by hand; the checkpointed gradient equals the saved one."""
    _, mod, ckpt = sequences
    rng = np.random.default_rng(3)
    args, params = _sequence_args(name, rng)
    vs = [rng.normal(size=args[i].shape) for i in params]
    loop, unrolled = name, name + "_unrolled"
    assert mod[loop](*args) == pytest.approx(mod[unrolled](*args), rel=1e-12)
    for suffix, extra in [("_grad", []), ("_value_and_grad", []), ("_vjp", [1.5]),
                          ("_jvp", vs), ("_hvp", vs), ("_hessian", [])]:
        got = mod[loop + suffix](*args, *extra)
        want = mod[unrolled + suffix](*args, *extra)
        for g, w in zip(np.atleast_1d(got) if suffix == "_jvp" else _flat(got), _flat(want)):
            np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)
        if suffix == "_grad":
            for g, w in zip(_flat(ckpt[loop + suffix](*args, *extra)), _flat(got)):
                np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-14)


def _flat(x):
    if isinstance(x, tuple):
        return [y for item in x for y in _flat(item)]
    return [np.asarray(x)]


def test_every_loop_derivative_agrees_with_finite_differences():
    result = run("check", SEQUENCES.name, cwd=SEQUENCES.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.rstrip().endswith("all agree"), result.stdout


def test_the_backward_loop_reads_as_code(sequences):
    """`# grad of the loop at line N` over `for t in reversed(range(T)):`; residual buffers
    named after what they hold, allocated before the forward loop, filled in place; the
    value function saves nothing; f_grad and f_value_and_grad run the forward loop once
    (the value read from the loop that saves the residuals)."""
    source = sequences[0]
    f = _function(source, "rnn_loss")
    # (the output layer and loss run after the loop over the states it keeps: sink_steps,
    # in the layout the gradient saves them in, row 0 the initial state)
    assert f.count("for t in") == 1 and f.count("np.empty") == 1
    assert re.search(r"h_steps = np.empty\(\(T \+ 1, N, H\)", f) and "h_steps[t + 1] = h" in f
    grad = _function(source, "rnn_loss_grad")
    # (one buffer of states, read by the output layer after the loop and by the backward
    # loop: not a second one `hs[t] = h` beside `h_steps[t + 1] = h`)
    assert grad.count("np.empty((T + 1, N, H)") == 1 and grad.count("[t + 1] = h\n") == 1
    # (the cotangent of rows 1 to T of h_steps read as it is, not padded with zeros
    # first: pass read_unpadded)
    assert "zeros_like(h_steps" not in grad and "(dh + dXWx[t])" in grad
    assert grad.count("    for t in range(T):\n") == 1 and grad.count("reversed(range(T))") == 1
    assert "rows_steps" not in grad   # (read for its shape only)
    for name in ("rnn_loss", "hmm_loglik", "lstm_states"):
        for fn in (name + "_grad", name + "_value_and_grad", name + "_vjp", name + "_hvp"):
            code = _function(source, fn)
            assert len(re.findall(r"\n    for t in range\(", code)) == 1, fn
            # (no copy of a per-step buffer at every step: `dhs_updated = dhs.copy()`)
            assert not re.search(r"\n        \w+ = \w+\.copy\(\)\n", code), fn
    # the gradients of Wh and Wy: one product each outside the backward loop, over the
    # saved states and the stacked cotangents (pass sink_steps), not one per step
    backward_body = grad.split("reversed(range(T)):\n")[1].split("\n    del ")[0]
    assert "dWh" not in backward_body and "dWy" not in backward_body
    assert "    dWh = h_steps[:T].reshape((N * T, H)).T @ dXWx" in grad
    assert re.search(r"\n    dWy = hs\d*\.reshape\(\(N \* T, H\)\)\.T @ ", grad)
    # (the dtype the arguments promote to, of the one buffer made: h_steps)
    assert "    h_steps = np.empty((T + 1, N, H), dtype=np.result_type(X, Wx, Wh, h0))\n" in grad
    # (the rows of the input projection's cotangent written into those of dhs just read,
    # which nothing reads after the loop: pass share_row_buffers, no third (T, N, H) array),
    # under their own name: `dhs[t]` would read as the cotangent of hs after the loop
    assert "np.empty((T, N, H)" not in grad and "        dXWx[t] = dh_mul\n" in grad
    assert "    dXWx = dhs  # reuses dhs's buffer\n" in grad and "dhs[t]" not in grad
    # (and where the step reads a row, what it holds: dhs's value, not a cotangent)
    assert "        # a row of dXWx holds dhs's value until the loop writes it\n" in grad
    # one dtype expression per function: the arguments are made one dtype at entry, so a
    # promotion of any of them (the loss's cotangent, of Wy too) or one's own dtype is it
    for fn in ("rnn_loss_grad", "rnn_loss_value_and_grad", "rnn_loss_vjp"):
        code = _function(source, fn).split("= _one_dtype(")[-1]
        assert code.count("result_type(") == 1 and "h0.dtype" not in code, fn
        # the loop's index at every step (the loss's rows, sunk after the loop): `steps`
        assert "    steps = np.arange(T)[:, None]" in code and "expand_dims" not in code, fn
        # the logits' cotangent is the softmax with 1 / (N T) taken off at the targets, in
        # its buffer (rules sum_scattered_grid, scatter_into_difference): no zeros of
        # (T, N, C) with the one-hot scattered in (`_scatter_add`)
        assert "    dhsWy[steps, arange, Y] = hs_mul[steps, arange, Y] - 1 / (N * T)\n" \
            in code and "_scatter_add(" not in code, fn
    both = _function(source, "rnn_loss_value_and_grad")
    forward_body = both.split("for t in range(T):\n")[1].split("\n    hs = ")[0]
    assert "loss" not in forward_body and "Wy" not in forward_body
    assert "    # grad of the loop at line 8\n    " in grad
    # h before and after each step: one buffer of T + 1 rows, row 0 the initial value
    forward, backward = grad.split("for t in reversed(range(T)):")
    assert "np.empty((T + 1, N, H)" in forward.split("for t in range(T):")[0]
    assert re.search(r"\n        h_steps\[t \+ 1\] = h\d*\n", forward)
    assert "h_steps[t + 1]" in backward and "h_steps[:T]" in backward
    assert "_next_steps" not in grad
    assert not re.search(r"scan|res_?\d|_res\b", grad)   # no machine names
    # a loop writing per-step states: the buffer's cotangent is read, never saved
    lstm = _function(source, "lstm_states_grad")
    assert "S_steps" not in lstm and "S[t] = h" in lstm
    # index arithmetic spelled at each use (`exp_steps[t - 1]`), not a variable `t_diff`
    hmm = _function(source, "hmm_loglik_grad")
    assert "lse_steps[t - 1] = " in hmm and "t_diff" not in hmm and "t_add" not in grad
    # ... and its row t, read at step t only, is not zeroed after (drop_dead_row_writes)
    for fn in ("lstm_states_grad", "lstm_states_value_and_grad", "lstm_states_hvp"):
        assert "dS[t] = 0" not in _function(source, fn) and "dS[t]" in _function(source, fn)


def test_the_forward_function_writes_into_its_own_buffer(sequences):
    """The plain forward function of a module with derivatives writes the per-step states
    into the zeros it made (`S[t] = h`), not into a copy of them (`S2 = S.copy()`): the
    gradients' loops, scheduled on their own, keep none of its buffers alive."""
    source, mod, _ = sequences
    f = _function(source, "lstm_states")
    assert "        S[t] = h\n" in f and "S.copy()" not in f and "h.copy()" not in f
    hmm = _function(source, "hmm_loglik")
    assert ".copy()" not in hmm and "alpha2" not in hmm
    args, _ = _sequence_args("lstm_states", np.random.default_rng(4))
    assert mod["lstm_states"](*args) == pytest.approx(mod["lstm_states_unrolled"](*args),
                                                      rel=1e-12)


def test_in_place_accumulation_keeps_the_promoted_dtype(sequences):
    """The backward loop adds into its gradient buffers (`dWh += ...`): float32 Params with
    float64 data still give the float64 gradients NumPy's promotion gives (the buffers
    are of the promoted dtype), equal to those of the same numbers in float64; float32
    throughout stays float32."""
    _, mod, _ = sequences
    args, params = _sequence_args("rnn_loss", np.random.default_rng(5))
    mixed = [a.astype(np.float32) if i in params else a for i, a in enumerate(args)]
    want = mod["rnn_loss_grad"](*[a.astype(np.float64) if a.dtype == np.float32 else a
                                  for a in mixed])
    got = mod["rnn_loss_grad"](*mixed)
    for g, w in zip(got, want):
        assert g.dtype == np.float64
        np.testing.assert_allclose(g, w, rtol=1e-13, atol=1e-15)
    single = [a.astype(np.float32) if a.dtype == np.float64 else a for a in args]
    for g, w in zip(mod["rnn_loss_value_and_grad"](*single)[1], want):
        assert g.dtype == np.float32
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


def test_recomputed_weights_in_one_buffer_keep_the_promoted_dtype(sequences):
    """hmm_loglik's backward step recomputes its softmax weights in one buffer
    (`weights = alpha[:, None] - lse_steps[t - 1][None]; weights += logA;
    np.exp(weights, out=weights)`, alpha made again from lse_steps) and adds into its
    steady dlogA (`dlogA += ...`): the saved lse_steps has one dtype, that of the loop's
    arguments. With any one argument float64 and the others float32 (and float32 alone)
    every gradient has NumPy's promoted dtype, agrees with the hand-unrolled source's (no
    loop: no saved buffers) and, with a float64 argument, equals that of the arguments
    made float64 (a float32 buffer anywhere would round it), to float32 rounding where
    the function computes as NumPy promotes op by op (below)."""
    source, mod, _ = sequences
    backward = _function(source, "hmm_loglik_grad").split("reversed(range(1, T)):\n")[1]
    backward = backward.split("\n    del ")[0]
    assert re.search(r"weights = \w+(\[:, None\])? - lse_steps\[t - 1\]\[None\].*\n"
                     r" *weights \+= logA\n"
                     r" *np\.exp\(weights, out=weights\)\n", backward), backward
    assert "dlogA += " in backward, backward
    args, _ = _sequence_args("hmm_loglik", np.random.default_rng(6))
    want = mod["hmm_loglik_grad"](*args)   # (float64)
    for wide in (None, 0, 1, 2):   # (the float64 argument: logA, logpi, logB; or none)
        mixed = [a if i == wide else a.astype(np.float32) for i, a in enumerate(args)]
        dtype = np.result_type(*mixed)
        unrolled = mod["hmm_loglik_unrolled_grad"](*mixed)
        # (float64: the float32 numbers made float64; float32: the float64 gradient)
        ref = want if wide is None else \
            mod["hmm_loglik_grad"](*[a.astype(np.float64) for a in mixed])
        for fn in ("hmm_loglik_grad", "hmm_loglik_value_and_grad"):
            # (where the function makes its arguments one dtype at entry, `_one_dtype`,
            # it computes in float64 throughout; where no statement relies on that (the
            # carried alpha made again from lse_steps: no alpha_steps written in place), it
            # computes as NumPy promotes op by op, as hmm_loglik does: `logpi + logB[0]`
            # in float32, to float32 rounding of the float64 arguments' gradient)
            tol = dict(rtol=1e-4, atol=1e-5) if wide is None else \
                dict(rtol=1e-13, atol=1e-15) if "_one_dtype(" in _function(source, fn) \
                else dict(rtol=1e-6, atol=1e-7)
            got = mod[fn](*mixed)
            got = got[1] if fn.endswith("value_and_grad") else got
            assert len(got) == len(unrolled) == len(ref) == 3
            for g, u, r in zip(got, unrolled, ref):
                assert g.dtype == dtype, (fn, wide, g.dtype)
                # (to float32 rounding: the unrolled source rounds some float32-only
                # values, `logpi + logB[0]` with logA float64, that the loop does not)
                np.testing.assert_allclose(g, u, rtol=1e-5, atol=1e-6)
                np.testing.assert_allclose(g, r, **tol)


# A loop body reading two final values of an earlier loop of different dtypes: u (x's)
# and w (W's). To the dtype analysis each final value depends on all the loop's
# arguments; a buffer of `exp(u * s)` (x's dtype, s being x's in the first step) must not
# take `- w` (W's) in place.
FINALS = """
def finals(x: Param[N], W: Param[N], xs: Data[T, N]):
    u = x
    w = W
    for t in range(T):
        u = u * 0.5
        w = tanh(w)
    s = xs[0] * x
    for t in range(T):
        s = tanh(s * (exp(u * s) * 2.0 - w))
    return sum(s * s)
"""


def _finals_reference(x, W, xs):
    u, w = x, W
    for _ in range(len(xs)):
        u, w = u * 0.5, np.tanh(w)
    s = xs[0] * x
    for _ in range(len(xs)):
        s = np.tanh(s * (np.exp(u * s) * 2.0 - w))
    return np.sum(s * s)


def test_a_loop_final_value_stands_for_its_own_dtype_in_a_later_body():
    """The value and gradient of FINALS with x and xs float32 and W float64 (and all
    float32, and other mixes) have NumPy's dtype; the value is the NumPy loop's on the
    same arrays, the gradient agrees with central differences (float64) and with that of
    the arguments made float64."""
    with building():
        text = gradgen.compile_source(FINALS, filename="finals.grad", modes=("grad",))
    env = _load(text)
    rng = np.random.default_rng(7)
    args = [0.5 * rng.normal(size=5), rng.normal(size=5), rng.normal(size=(4, 5))]
    value = env["finals"](*args)
    assert value == pytest.approx(_finals_reference(*args), rel=1e-12)
    grad = env["finals_grad"](*args)
    eps = 1e-6
    for i in (0, 1):
        for j in range(5):
            up = [a.copy() for a in args]
            down = [a.copy() for a in args]
            up[i][j] += eps
            down[i][j] -= eps
            fd = (_finals_reference(*up) - _finals_reference(*down)) / (2 * eps)
            assert grad[i][j] == pytest.approx(fd, rel=1e-6, abs=1e-8)
    for wide in ((), (1,), (0, 2), (0,), (2,)):   # (the float64 arguments)
        mixed = [a if i in wide else a.astype(np.float32) for i, a in enumerate(args)]
        dtype = np.result_type(*mixed)
        got = env["finals"](*mixed)
        assert np.asarray(got).dtype == dtype
        # (the NumPy loop on the same arrays rounds where NumPy's dtypes do: a float64
        # value put in a float32 buffer would be 1e-8 off)
        want = _finals_reference(*mixed)
        assert got == pytest.approx(want, rel=1e-5 if dtype == np.float32 else 1e-13)
        made64 = env["finals_grad"](*[a.astype(np.float64) for a in mixed])
        for g, w in zip(env["finals_grad"](*mixed), made64):
            assert g.dtype == dtype, (wide, g.dtype)
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-6)


def _function(source: str, name: str) -> str:
    start = source.index(f"\ndef {name}(")
    end = source.find("\ndef ", start + 1)
    return source[start:end if end > 0 else None]


def test_checkpoint_is_an_option_recorded_in_the_header(sequences):
    """`checkpoint=K` (`--checkpoint K`) is in the header's options and regenerate command;
    a value that is not a positive number of steps is refused; without loops it changes
    nothing."""
    text = "def f(x: Param[N]):\n    return sum(x * x)\n"
    with building():
        plain = gradgen.compile_source(text, filename="f.grad")
        with_option = gradgen.compile_source(text, filename="f.grad", checkpoint=16)
    assert "# Options: modes=default checks checkpoint=16\n" in with_option
    assert "# Regenerate with: gradgen compile f.grad --checkpoint 16\n" in with_option
    assert with_option.split('"""', 1)[1] == plain.split('"""', 1)[1]
    for bad in (0, -2, 2.5, True):
        with pytest.raises(ValueError, match="positive integer"):
            gradgen.compile_source(text, filename="f.grad", checkpoint=bad)


def test_unread_carried_values_are_not_computed():
    """prune_loops: a loop carrying h and c of which only h is read (c does not feed h)
    computes no c; the gradient with respect to W of a loop reading Data X accumulates no
    cotangent of X."""
    def build(loop, h0, c0, w, x):
        def body(t, c, o):
            return [make("tanh", c[0] @ o[0] + _row(o[1], t)), c[1] * 2.0 + make("exp", c[0])]
        h, _ = loop([h0, c0], [w, x], body, T, names=["h", "c"])
        return _sum(h * h)
    ps = [_inp("h0", (N, D)), _inp("c0", (N, D)), _inp("W", (D, D))]
    x = _inp("X", (T, N, D), "data")
    out = build(Scan(), *ps, x)
    grads = EntryDerivatives(out, ps).gradient().outputs
    source, _ = _emit(lower(optimize(Graph((*ps, x), (out, *grads)))))
    assert "np.exp" not in source and "c0" not in source.split("\n", 1)[1].split("return")[0]
    assert "dX" not in source and "scatter" not in source


def test_a_zero_trip_loop_passes_the_cotangents_through():
    """T = 0: the loop leaves h0 as it is, so the gradient of sum(h * h) is 2 h0 for h0
    and zero for W and X (no step ran), and the JVP is <2 h0, v_h0>."""
    _, f, n = _compile("rnn", Scan())
    rng = np.random.default_rng(4)
    sizes = {**SIZES, "T": 0}
    xs = _values("rnn", rng, sizes)
    vs = [rng.normal(size=x.shape) for x in xs]
    f.__globals__.update(sizes)
    try:
        out = f(*xs, *vs)
    finally:
        f.__globals__.update(SIZES)
    h0, w, x = xs
    assert out[0] == pytest.approx(np.sum(h0 * h0), rel=1e-14)
    np.testing.assert_allclose(out[1], 2 * h0, rtol=1e-14)
    assert not np.any(out[2]) and out[3].shape == (0, 3, 4)
    assert out[4] == pytest.approx(np.sum(2 * h0 * vs[0]), rel=1e-12)
    np.testing.assert_allclose(out[5], 2 * vs[0], rtol=1e-14)   # H v for h0


# The long random run's Hessian mismatch (seed 1009933), reduced: m = max(v1) is read
# inside the loop, so the JVP of the loop in the Hessian reads d(m) = basis . one-hot(argmax)
# from outside, spelled inline in the body; its tangent carry started as the basis itself
# (no copy), and the body's in-place update of that carry changed the basis under the
# outside value's feet: the argmax column of f_hessian was wrong (f_hvp was right).
MAX_CARRIED = """
def f(v1: Param[D]):
    m = max(v1)
    h = v1
    for t in range(3):
        h = tanh(h) + m
    return sum(h)
"""


def _max_carried_reference(v1):
    """The program in NumPy, written independently."""
    m, h = np.max(v1), v1
    for _ in range(3):
        h = np.tanh(h) + m
    return np.sum(h)


def test_hessian_of_a_loop_reading_a_max_of_its_param():
    """f_hessian = the columns of f_hvp on unit vectors = central differences of f_grad
    (error O(eps^2)); f_grad = central differences of the NumPy program; symmetric."""
    mod = _load(gradgen.compile_source(MAX_CARRIED, filename="max_carried.grad", hessian=True))
    rng = np.random.default_rng(5)
    eps = 1e-5
    for d in (2, 4):
        v1 = rng.uniform(0.5, 1.5, size=d) * rng.choice([-1.0, 1.0], size=d)
        grad, hess = mod["f_grad"](v1), mod["f_hessian"](v1)
        assert hess.shape == (d, d)
        for j in range(d):
            e = np.eye(d)[j]
            fd = (_max_carried_reference(v1 + eps * e)
                  - _max_carried_reference(v1 - eps * e)) / (2 * eps)
            assert grad[j] == pytest.approx(fd, rel=1e-7, abs=1e-9)
            np.testing.assert_allclose(hess[:, j], mod["f_hvp"](v1, e), rtol=1e-12, atol=1e-14)
            fd_col = (mod["f_grad"](v1 + eps * e) - mod["f_grad"](v1 - eps * e)) / (2 * eps)
            np.testing.assert_allclose(hess[:, j], fd_col, rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(hess, hess.T, rtol=1e-12, atol=1e-14)


# A loop of two carried states started from Data (m0, P0): the HVP's tangent loop and its
# backward loop each carry accumulators that start at zeros.
ZERO_STARTS = """
def f(y: Data[T], theta: Param[2], m0: Data[()], P0: Data[()]):
    q = exp(theta[0])
    m = m0
    P = P0
    total = 0.0
    for t in range(T):
        Pp = P + q
        k = Pp / (Pp + exp(theta[1]))
        v = y[t] - m
        total = total + v * v * k
        m = m + k * v
        P = Pp * (1 - k)
    return total
"""


def test_accumulators_starting_at_zero_get_arrays_of_their_own():
    """Each carried variable that starts at zeros is spelled `np.zeros_like(m0)` where it
    starts: not a copy of one shared zeros array named after what it is shaped like
    (`dm_dot = np.array(m0_zeros_like)`), nor that array under several names. The HVP
    still equals central differences of the gradient."""
    text = gradgen.compile_source(ZERO_STARTS, filename="zero_starts.grad")
    hvp = text[text.index("def f_hvp"):]
    assert "zeros_like = " not in hvp and "_full = " not in hvp, hvp
    assert not re.search(r"np\.array\(\w*zeros|zeros\w*\.copy\(\)", hvp), hvp
    assert hvp.count("np.zeros_like(m0)") >= 2, hvp   # the tangent's and the gradient's
    mod = _load(text)
    rng = np.random.default_rng(3)
    y, m0, P0 = rng.normal(size=6), np.array(0.3), np.array(0.8)
    theta, eps = np.array([-0.4, 0.2]), 1e-6
    for j in range(2):
        e = np.eye(2)[j]
        fd = (mod["f_grad"](y, theta + eps * e, m0, P0)
              - mod["f_grad"](y, theta - eps * e, m0, P0)) / (2 * eps)
        np.testing.assert_allclose(mod["f_hvp"](y, theta, m0, P0, e), fd, rtol=1e-6,
                                   atol=1e-8)
