"""Loops in the language: `for t in range(...)` lowered to one scan node per loop, emitted
as a Python `for` loop (SPEC §1 "Loops"; the forward half of issue 11).

Every form runs against a NumPy reference written here as a Python loop, and the forms
with literal bounds also against the same source with the loop written out by hand,
compiled by gradgen. The sources are compiled once per module (value only: derivatives
through loops come with the loop derivatives).
"""

from __future__ import annotations

import itertools
import re

import textwrap

import numpy as np
import pytest

import gradgen
from gradgen.errors import CompileError
from gradgen.ir import topo_order

VALUE_ONLY = {"modes": ()}

LOOPS = '''
def rnn_loss(X: Data[T, N, D], Y: Index[T, N], Wx: Param[D, H], Wh: Param[H, H],
             Wy: Param[H, C], h0: Data[N, H]):
    h = h0
    loss = 0.0
    for t in range(T):
        h = tanh(X[t] @ Wx + h @ Wh)
        loss += -mean(log_softmax(h @ Wy, axis=1)[arange(N), Y[t]])
    return loss / T


def states(X: Data[T, N, D], W: Param[D, D], h0: Data[N, D]):
    h = h0
    H = zeros((T, N, D))
    for t in range(T):
        h = tanh(X[t] @ W + h)
        H[t] = h
    return sum(H * H) + sum(h)


def lagged(x: Data[T], A: Param[M, T], c: Param[M]):
    s = 0.0
    v = c
    for t in range(1, T):
        s += x[t] * x[t - 1] + float(t % 2) * sum(A[:, t])
        v = v * 0.5 + A[:, t] * float(t)
    return s + sum(v * v)


def strided(x: Data[T], c: Param[()]):
    s = c
    for t in range(0, T, 2):
        s = s * 0.5 + x[t]
    for t in range(T - 1, -1, -3):
        s = s * 0.25 + x[t] * float(t)
    return s


def nested(A: Data[T, S], w: Param[S]):
    total = 0.0
    g = w
    for t in range(T):
        u = g * 0.5
        for s in range(1, S):
            u = u + A[t, s] * w[s - 1]
        g = tanh(u)
        total += sum(g)
    return total


def accumulate(X: Data[T, N], w: Param[N]):
    G = zeros((T, N))
    for t in range(T):
        G[t] += X[t] * w
        G[t] -= w * 0.5
    return sum(G * X)


def caller_buffer(H0: Data[T, N], x: Param[N]):
    H = H0
    for t in range(T):
        H[t] = H[t] * x + 1.0
    return sum(H)


def invariant(X: Data[T, N, D], W: Param[D, D], b: Param[D]):
    h = zeros((N, D))
    for t in range(T):
        h = tanh(X[t] @ (W.T @ W) + exp(b) + h)
    return sum(h)


def literal(x: Data[N], w: Param[N]):
    h = w
    acc = 0.0
    for t in range(4):
        h = sin(h) * x[t] + w
        acc += sum(h) * float(t)
    for k in range(3, 0, -1):
        h = h * float(k)
    return acc + sum(h)


def with_helper(x: Data[N], w: Param[N]):
    return smooth(x, w) + smooth(w, x)


def smooth(a, b):
    y = a
    for i in range(3):
        y = 0.5 * y + 0.25 * b
    return sum(y * y)


def cell(h, c, x, W, U):
    z = x @ W + h @ U
    i, f, o, g = split(z, 4, axis=1)
    c = sigmoid(f) * c + sigmoid(i) * tanh(g)
    h = sigmoid(o) * tanh(c)
    return h, c


def lstm(X: Data[T, N, D], W: Param[D, 4 * H], U: Param[H, 4 * H], h0: Data[N, H]):
    h = h0
    c = zeros((N, H))
    for t in range(T):
        h, c = cell(h, c, X[t], W, U)
    return sum(h * h)


def hmm(logA: Param[K, K], logB: Param[K, V], pi: Param[K], obs: Index[T]):
    alpha = pi + logB[:, obs[0]]
    for t in range(1, T):
        alpha = logsumexp(alpha[:, None] + logA, axis=0) + logB[:, obs[t]]
    return -logsumexp(alpha)


def aliasing(A: Data[T, S], w: Param[S]):
    h = w
    for t in range(T):
        g = h
        for s in range(S):
            g[s] = g[s] * 0.5 + h[s] * A[t, s] + h[0]
        h = tanh(g)
    return sum(h)


def integers(y: Index[T], w: Param[()]):
    k = y[0]
    for t in range(1, T):
        k = k + y[t] * t
    return w * float(k)


def read_then_write(X: Data[T, N], w: Param[N]):
    H = X * 1.0
    loss = 0.0
    for t in range(T):
        prev = H[t]
        H[t] = prev * 2.0 + w
        loss += sum(prev * w)
    return loss + sum(H)


def view_read_in_loop(X: Data[T, N], w: Param[N]):
    H = exp(X)
    r = H[0]
    loss = 0.0
    for t in range(T):
        H[t] = H[t] * 2.0 + w
        loss += sum(r * H[t])
    return loss + sum(H)


def shift(x: Data[T], c: Param[()]):
    y = c
    for t in range(1, T):
        y = y * 0.5 + x[t]
    return y
'''

# `literal` and `with_helper` with their loops written out by hand.
UNROLLED = '''
def literal(x: Data[N], w: Param[N]):
    h = w
    acc = 0.0
    h = sin(h) * x[0] + w
    acc += sum(h) * 0.0
    h = sin(h) * x[1] + w
    acc += sum(h) * 1.0
    h = sin(h) * x[2] + w
    acc += sum(h) * 2.0
    h = sin(h) * x[3] + w
    acc += sum(h) * 3.0
    h = h * 3.0
    h = h * 2.0
    h = h * 1.0
    return acc + sum(h)


def with_helper(x: Data[N], w: Param[N]):
    return smooth(x, w) + smooth(w, x)


def smooth(a, b):
    y = a
    y = 0.5 * y + 0.25 * b
    y = 0.5 * y + 0.25 * b
    y = 0.5 * y + 0.25 * b
    return sum(y * y)
'''


@pytest.fixture(scope="module")
def mod():
    return gradgen.load_source(LOOPS, "loops.grad", **VALUE_ONLY)


@pytest.fixture(scope="module")
def source():
    return gradgen.compile_source(LOOPS, "loops.grad", **VALUE_ONLY)


@pytest.fixture
def rng():
    return np.random.default_rng(7)


def _function(source: str, name: str) -> str:
    """The text of the emitted function `name`."""
    return "def " + source.split(f"\ndef {name}(")[1].split("\n\n\n")[0]


def _run(f, *args):
    """f(*args), checking that no argument was modified."""
    saved = [np.copy(a) for a in args]
    out = f(*args)
    for a, before in zip(args, saved):
        assert np.array_equal(a, before), "an argument was modified"
    return out


# ---------------------------------------------------------------- values against NumPy

def _rnn_reference(X, Y, Wx, Wh, Wy, h0):
    h, loss = h0, 0.0
    for t in range(X.shape[0]):
        h = np.tanh(X[t] @ Wx + h @ Wh)
        z = h @ Wy
        z = z - z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        loss += -np.mean(logp[np.arange(X.shape[1]), Y[t]])
    return loss / X.shape[0]


def _rnn_args(rng, T=5, N=3, D=4, H=6, C=5, dtype=np.float64):
    args = (rng.normal(size=(T, N, D)), rng.integers(0, C, size=(T, N)),
            0.5 * rng.normal(size=(D, H)), 0.3 * rng.normal(size=(H, H)),
            rng.normal(size=(H, C)), rng.normal(size=(N, H)))
    return tuple(a.astype(dtype) if a.dtype.kind == "f" else a for a in args)


def test_the_specs_rnn_loss(mod, rng):
    args = _rnn_args(rng)
    assert _run(mod.rnn_loss, *args) == pytest.approx(_rnn_reference(*args), rel=1e-12)


def test_float32_is_kept(mod, rng):
    args = _rnn_args(rng, dtype=np.float32)
    value = _run(mod.rnn_loss, *args)
    assert np.asarray(value).dtype == np.float32
    expected = _rnn_reference(*(a.astype(np.float64) if a.dtype.kind == "f" else a
                                for a in args))
    assert value == pytest.approx(expected, rel=1e-5)
    X, W, h0 = (rng.normal(size=s).astype(np.float32) for s in ((4, 2, 3), (3, 3), (2, 3)))
    assert np.asarray(_run(mod.states, X, 0.5 * W, h0)).dtype == np.float32


def test_per_step_outputs(mod, rng):
    X, W, h0 = rng.normal(size=(6, 2, 3)), 0.5 * rng.normal(size=(3, 3)), rng.normal(size=(2, 3))
    h, H = h0, np.zeros((6, 2, 3))
    for t in range(6):
        h = np.tanh(X[t] @ W + h)
        H[t] = h
    assert _run(mod.states, X, W, h0) == pytest.approx((H * H).sum() + h.sum(), rel=1e-12)


def test_index_arithmetic_and_a_start(mod, rng):
    x, A, c = rng.normal(size=7), rng.normal(size=(3, 7)), rng.normal(size=3)
    s, v = 0.0, c
    for t in range(1, 7):
        s += x[t] * x[t - 1] + float(t % 2) * A[:, t].sum()
        v = v * 0.5 + A[:, t] * t
    assert _run(mod.lagged, x, A, c) == pytest.approx(s + (v * v).sum(), rel=1e-12)


@pytest.mark.parametrize("T", [1, 2, 5, 6, 7])
def test_steps_and_backward_loops(mod, T):
    x = np.linspace(-1.0, 2.0, T)
    s = 0.3
    for t in range(0, T, 2):
        s = s * 0.5 + x[t]
    for t in range(T - 1, -1, -3):
        s = s * 0.25 + x[t] * t
    assert _run(mod.strided, x, 0.3) == pytest.approx(s, rel=1e-12)


def test_nested_loops(mod, rng):
    A, w = rng.normal(size=(4, 3)), rng.normal(size=3)
    total, g = 0.0, w
    for t in range(4):
        u = g * 0.5
        for s in range(1, 3):
            u = u + A[t, s] * w[s - 1]
        g = np.tanh(u)
        total += g.sum()
    assert _run(mod.nested, A, w) == pytest.approx(total, rel=1e-12)
    # S = 1: the inner loop runs no step
    A1 = A[:, :1].copy()
    total, g = 0.0, w[:1]
    for t in range(4):
        g = np.tanh(g * 0.5)
        total += g.sum()
    assert _run(mod.nested, A1, w[:1].copy()) == pytest.approx(total, rel=1e-12)


def test_an_lstm_through_a_helper_returning_a_tuple(mod, rng):
    X, W, U = rng.normal(size=(5, 3, 4)), rng.normal(size=(4, 8)), rng.normal(size=(2, 8))
    h0 = rng.normal(size=(3, 2))
    h, c = h0, np.zeros((3, 2))
    for t in range(5):
        i, f, o, g = np.split(X[t] @ W + h @ U, 4, axis=1)
        c = c / (1 + np.exp(-f)) + np.tanh(g) / (1 + np.exp(-i))
        h = np.tanh(c) / (1 + np.exp(-o))
    assert _run(mod.lstm, X, W, U, h0) == pytest.approx((h * h).sum(), rel=1e-12)


def test_an_hmm_forward_recursion(mod, rng):
    def lse(a, axis=None):
        m = a.max(axis=axis, keepdims=True)
        return np.log(np.exp(a - m).sum(axis=axis)) + np.squeeze(m, axis=axis)
    logA = np.log(rng.dirichlet(np.ones(3), size=3))
    logB = np.log(rng.dirichlet(np.ones(4), size=3))
    pi, obs = np.log(np.full(3, 1 / 3)), rng.integers(0, 4, size=6)
    alpha = pi + logB[:, obs[0]]
    for t in range(1, 6):
        alpha = lse(alpha[:, None] + logA, axis=0) + logB[:, obs[t]]
    assert _run(mod.hmm, logA, logB, pi, obs) == pytest.approx(-lse(alpha), rel=1e-12)


def test_a_buffer_written_in_a_loop_is_not_one_the_loop_reads(mod, rng):
    """`g = h` then `g[s] = ...` in the inner loop, which reads `h` too: g is a copy."""
    A, w = rng.normal(size=(3, 4)), rng.normal(size=4)
    h = w
    for t in range(3):
        g = h.copy()
        for s in range(4):
            g[s] = g[s] * 0.5 + h[s] * A[t, s] + h[0]
        h = np.tanh(g)
    assert _run(mod.aliasing, A, w) == pytest.approx(h.sum(), rel=1e-12)


def test_a_row_read_before_its_row_is_written(mod, rng):
    """`prev = H[t]` is a view of H (basic indexing): `H[t] = ...` must not change it."""
    X, w = rng.normal(size=(4, 3)), rng.normal(size=3)
    H, loss = X.copy(), 0.0
    for t in range(4):
        prev = H[t].copy()
        H[t] = prev * 2.0 + w
        loss += (prev * w).sum()
    assert _run(mod.read_then_write, X, w) == pytest.approx(loss + H.sum(), rel=1e-12)


def test_a_view_of_the_initial_value_read_in_the_loop(mod, rng):
    """`r = H[0]` before the loop, read in it while the loop writes H's rows: the loop
    writes into a copy of H."""
    X, w = rng.normal(size=(4, 3)), rng.normal(size=3)
    H = np.exp(X)
    r, loss = H[0].copy(), 0.0
    for t in range(4):
        H[t] = H[t] * 2.0 + w
        loss += (r * H[t]).sum()
    assert _run(mod.view_read_in_loop, X, w) == pytest.approx(loss + H.sum(), rel=1e-12)


def test_an_integer_carried_value(mod):
    y = np.array([3, 1, 4, 1, 5])
    k = y[0]
    for t in range(1, 5):
        k = k + y[t] * t
    assert _run(mod.integers, y, 0.5) == pytest.approx(0.5 * k)


def test_augmented_subscript_assignment(mod, rng):
    X, w = rng.normal(size=(5, 3)), rng.normal(size=3)
    G = np.zeros((5, 3))
    for t in range(5):
        G[t] += X[t] * w
        G[t] -= w * 0.5
    assert _run(mod.accumulate, X, w) == pytest.approx((G * X).sum(), rel=1e-12)


def test_a_callers_array_is_copied_before_the_loop_writes_into_it(mod, source, rng):
    H0, x = rng.normal(size=(4, 3)), rng.normal(size=3)
    H = H0.copy()
    for t in range(4):
        H[t] = H[t] * x + 1.0
    assert _run(mod.caller_buffer, H0, x) == pytest.approx(H.sum(), rel=1e-12)
    assert "H = H0.copy()" in _function(source, "caller_buffer")


def test_zero_trip_loops_leave_the_carried_values(mod, rng):
    assert _run(mod.shift, np.array([5.0]), 0.75) == 0.75           # range(1, T), T = 1
    assert _run(mod.lagged, np.array([2.0]), np.ones((2, 1)), np.array([1.0, 3.0])) \
        == pytest.approx(10.0)
    X, W, h0 = np.zeros((0, 2, 3)), np.eye(3), rng.normal(size=(2, 3))
    assert _run(mod.states, X, W, h0) == pytest.approx(h0.sum())   # range(T), T = 0


def test_loops_with_literal_bounds_agree_with_the_loops_written_out(mod, rng):
    unrolled = gradgen.load_source(UNROLLED, "unrolled.grad", **VALUE_ONLY)
    x, w = rng.normal(size=5), rng.normal(size=5)
    h, acc = w, 0.0
    for t in range(4):
        h = np.sin(h) * x[t] + w
        acc += h.sum() * t
    for k in range(3, 0, -1):
        h = h * k
    assert _run(mod.literal, x, w) == pytest.approx(acc + h.sum(), rel=1e-12)
    assert _run(mod.literal, x, w) == pytest.approx(unrolled.literal(x, w), rel=1e-13)
    assert _run(mod.with_helper, x, w) == pytest.approx(unrolled.with_helper(x, w), rel=1e-13)


# ---------------------------------------------------------------- the emitted code

def test_the_emitted_loop_reads_like_the_source(source):
    code = _function(source, "rnn_loss")
    body = code.split("    for t in range(T):\n")[1].split("    return")[0]
    # no copy of h0: every step rebinds h to a new array, no step writes into h0's
    # buffer and nothing reads h after the loop (so T = 0 returns no alias of it)
    assert "    h = h0\n" in code and "h0.copy()" not in code
    # X[t] @ Wx reads no carried value: one product for all steps before the loop
    # (pass hoist_steps), computed into the rows of h_steps the loop fills (pass
    # fill_shifted_rows), the body reads its row before writing h there
    before = code.split("    for t in range(T):\n")[0]
    assert "    np.matmul(X, Wx, out=h_steps[1:])\n" in before and "XWx" not in code
    assert "        h = h_steps[t + 1] + h @ Wh  # (N, H)\n        np.tanh(h, out=h)\n" in body
    # the output layer and the loss feed no carried value: computed after the loop for all
    # steps at once, over the states the loop writes (pass sink_steps)
    assert "loss" not in body and "\n        h_steps[t + 1] = h\n" in body
    assert re.search(r"\n    hsWy = hs\d* @ Wy  # \(T, N, C\)\n", code)
    assert " in range(" not in body     # one loop, not unrolled (np.arange may index)
    states = _function(source, "states")
    assert "    H = np.zeros((T, N, D), dtype=W.dtype)  # (T, N, D)\n" in states
    loop = states.split("    for t in range(T):\n")[1].split("    return")[0]
    assert "        H[t] = h\n" in loop and ".copy()" not in loop   # written in place
    assert "for t in range(1, T):" in _function(source, "lagged")
    strided = _function(source, "strided")
    assert "for t in range(0, T, 2):" in strided
    assert "for t in range(T - 1, -1, -3):" in strided
    literal = _function(source, "literal")
    assert "for t in range(4):" in literal and "for k in range(3, 0, -1):" in literal


_CARRIED = """\
def written(H0: Data[T, N], x: Data[T, N], w: Param[N]):
    H = H0
    for t in range(T):
        H[t] = x[t] * w
    return sum(H * H)


def returned(x: Data[T, N], h0: Data[N], w: Param[N]):
    h = h0
    for t in range(T):
        h = tanh(h * w + x[t])
    return h


def rebound(x: Data[T, N], h0: Data[N], w: Param[N]):
    h = h0
    s = 0.0
    for t in range(T):
        h = tanh(h * w + x[t])
        s += sum(h)
    return s


def shared(x: Data[T, N], w: Param[N]):
    u = w * 2.0
    a = u
    b = u
    s = 0.0
    for t in range(T):
        a = tanh(a) * w
        b = tanh(b + x[t])
        s += sum(b * b)
    return sum(a) + s
"""


def test_a_carried_argument_is_copied_only_where_that_is_needed():
    """`h = h0` without a copy where every step rebinds h and nothing reads it after the
    loop; a copy where a step writes into its buffer (`H[t] = ...`) or the function may
    return it (after no step it would be h0 itself). No function modifies or returns an
    argument's array, with no step, one or several."""
    code = gradgen.compile_source(_CARRIED, "carried.grad", modes=["vjp"])
    assert "    H = H0.copy()\n" in code and "    h = h0\n" in code
    returned = code.split("def returned(")[1].split("\ndef ")[0]
    assert "    h = h0.copy()\n" in returned
    # b starts from the array a holds, and a step writes into a's buffer: b is a copy
    assert "    a = u  # reuses u's buffer\n    b = u.copy()\n" in code.split("def shared(")[1]
    namespace: dict = {}
    exec(compile(code, "carried_grad.py", "exec"), namespace)
    rng = np.random.default_rng(0)
    for T, (name, fn) in itertools.product((0, 1, 3), list(namespace.items())):
        if not name.startswith(("written", "returned", "rebound", "shared")):
            continue
        x, h0, w = rng.standard_normal((T, 3)), rng.standard_normal(3), rng.standard_normal(3)
        args = [rng.standard_normal((T, 3)), x, w] if name.startswith("written") \
            else [x, w] if name.startswith("shared") else [x, h0, w]
        if name.endswith("_vjp"):
            args.append(rng.standard_normal(3) if name.startswith("returned") else 1.0)
        before = [a.copy() for a in args if isinstance(a, np.ndarray)]
        out = fn(*args)
        outs = [o for r in (out if isinstance(out, tuple) else (out,))
                for o in (r if isinstance(r, tuple) else (r,))]
        arrays = [a for a in args if isinstance(a, np.ndarray)]
        assert all(np.array_equal(a, b) for a, b in zip(arrays, before)), name
        assert not any(np.shares_memory(o, a) for o in outs if isinstance(o, np.ndarray)
                       for a in arrays), name
        if name == "shared":
            a = b = 2.0 * w
            total = 0.0
            for t in range(T):
                a, b = np.tanh(a) * w, np.tanh(b + x[t])
                total += np.vdot(b, b)
            assert out == pytest.approx(a.sum() + total, rel=1e-12)


def _scans(graph_outputs):
    return [n for n in topo_order(graph_outputs) if n.op == "scan"]


def _entry(text: str, name: str):
    from gradgen.compiler import optimize_entry
    from gradgen.frontend import parse_program
    from gradgen.passes import building

    with building():
        program = parse_program(textwrap.dedent(text), "t.grad")
        entry = next(e for e in program.entries if e.name == name)
        entry = optimize_entry(entry, {})
        return entry, [n for n in topo_order([entry.output])]


def test_loop_invariant_code_is_computed_before_the_loop(source):
    entry, order = _entry(LOOPS, "invariant")
    (scan,) = [n for n in order if n.op == "scan"]
    (body,) = scan.regions
    inside = {n.op for n in topo_order(body.outputs)}
    assert "exp" not in inside and "matmul" not in inside
    # W.T @ W and exp(b) are invariant (pass hoist), and X[t] @ (W.T @ W) + exp(b) reads
    # no carried value: computed for all steps before the loop (pass hoist_steps), the
    # body reads row t of it
    (steps,) = [a for a in scan.args if a.op == "add"]
    assert [str(d) for d in steps.shape] == ["T", "N", "D"]
    assert {n.op for n in topo_order([steps])} >= {"exp", "matmul", "transpose"}
    code = _function(source, "invariant")
    before, loop = code.split("    for t in range(T):\n")
    assert "    X_add = X @ (W.T @ W)  # (T, N, D)\n    X_add += np.exp(b)\n" in before
    assert "        h = X_add[t] + h  # (N, D)\n" in loop
    assert "np.exp" not in loop and "W.T" not in loop


def test_one_scan_node_per_loop():
    _, order = _entry(LOOPS, "nested")
    scans = [n for n in order if n.op == "scan"]
    assert len(scans) == 1   # the inner loop is in the outer one's body
    (body,) = scans[0].regions
    assert [n.op for n in topo_order(body.outputs)].count("scan") == 1
    _, order = _entry(LOOPS, "strided")
    assert [n.op for n in order].count("scan") == 2


def test_compile_work_does_not_depend_on_the_trip_count():
    def program(bounds):
        return f'''
            def f(X: Data[T, N], w: Param[N]):
                h = w
                for t in range({bounds}):
                    h = tanh(h * X[t] + w)
                return sum(h)
            '''
    nodes, lines = {}, {}
    for bounds in ("10", "10000", "T"):
        entry, order = _entry(program(bounds), "f")
        (scan,) = [n for n in order if n.op == "scan"]
        nodes[bounds] = (len(order), len(topo_order(scan.regions[0].outputs)))
        code = _function(gradgen.compile_source(textwrap.dedent(program(bounds)), "t.grad",
                                                **VALUE_ONLY), "f")
        lines[bounds] = code.count("\n")
    assert nodes["10"] == nodes["10000"] == nodes["T"], nodes
    assert lines["10"] == lines["10000"] == lines["T"] - 1   # (+ `T = X.shape[0]`)


# ---------------------------------------------------------------- diagnostics

def _error(text: str, **options) -> str:
    with pytest.raises(CompileError) as info:
        gradgen.compile_source(textwrap.dedent(text).lstrip("\n"), "t.grad",
                               **(options or VALUE_ONLY))
    return str(info.value)


def _first_line(report: str) -> str:
    return report.split("\n")[0]


def test_a_carried_variable_whose_shape_changes():
    report = _error("""
        def f(x: Data[T, N], w: Param[N]):
            loss = 0.0
            for t in range(T):
                loss += x[t] * w
            return loss
        """)
    assert _first_line(report) == (
        "t.grad:4:9: error: 'loss' is carried by the loop on line 3: it has shape () before "
        "the loop, and this assignment gives it shape (N,); a carried variable keeps its "
        "shape and dtype on every step: assign this value to another name, or give 'loss' "
        "this shape before the loop")


def test_a_carried_variable_whose_dtype_changes():
    report = _error("""
        def f(y: Index[T], w: Param[()]):
            k = y[0]
            for t in range(T):
                k = w * float(t)
            return w
        """)
    assert _first_line(report).startswith("t.grad:4:9: error: 'k' is carried by the loop on "
                                          "line 3: it has shape () (int) before the loop, and "
                                          "this assignment gives it shape ()")


@pytest.mark.parametrize("stmt, col, message", [
    ("break", 9, "'break' is not supported: a loop runs all its steps; mask the steps that "
                 "should not count with where(...)"),
    ("continue", 9, "'continue' is not supported: a loop runs all its steps; mask the steps "
                    "that should not count with where(...)"),
    ("return h", 9, "'return' inside a loop is not supported: a loop runs all its steps; "
                    "assign the value to a variable before the loop, update it in the loop, "
                    "and return it after the loop"),
])
def test_statements_that_leave_a_loop(stmt, col, message):
    report = _error(f"""
        def f(x: Data[T], w: Param[()]):
            h = w
            for t in range(T):
                h = h * x[t]
                {stmt}
            return h
        """)
    assert _first_line(report) == f"t.grad:5:{col}: error: {message}"


def test_else_of_a_loop():
    report = _error("""
        def f(x: Data[T], w: Param[()]):
            h = w
            for t in range(T):
                h = h * x[t]
            else:
                h = h + 1.0
            return h
        """)
    assert _first_line(report) == (
        "t.grad:5:5: error: a loop's 'else' block is not supported: a loop always runs all "
        "its steps; move these statements after the loop")
    assert report.split("\n")[1:] == ["    else:", "    ^"]


def test_while():
    report = _error("""
        def f(w: Param[()]):
            while w > 0:
                w = w - 1.0
            return w
        """)
    assert _first_line(report).startswith("t.grad:2:5: error: 'while' loops are not "
                                          "supported: write a loop over range(...)")


@pytest.mark.parametrize("expr, col", [
    ("zeros((t, N))", 25), ("reshape(w, (t,))", 30), ("arange(t)", 25), ("w[:t]", 21),
])
def test_the_loop_variable_is_not_a_size(expr, col):   # (the column of `t`)
    report = _error(f"""
        def f(w: Param[N]):
            s = 0.0
            for t in range(N):
                s += sum({expr})
            return s
        """)
    assert _first_line(report) == (
        f"t.grad:4:{col}: error: the loop variable 't' cannot be a size: it changes at every "
        "step, and an array's shape may not; use a fixed size (a dimension such as T) and "
        "select with t (x[t]) or mask with where(...)")


@pytest.mark.parametrize("loop, col, message", [
    ("for t in w:", 14, "a loop runs over range(...), not over an array: write for i in "
                        "range(N): and t = w[i] in the body"),
    ("for t in zip(w, w):", 14, "a loop must run over range(...): for t in range(T), "
                                "range(start, stop) or range(start, stop, step)"),
    ("for t in range(0, N, k):", 26, "the step of range() must be an integer literal "
                                     "(range(0, T, 2)), so that the number of steps is known "
                                     "from the sizes"),
    ("for t in range(0, N, 0):", 26, "the step of range() must not be zero"),
    ("for t in range(M):", 20, "'M' is not a dimension of the arguments: the bounds of "
                               "range() are integer literals, dimension expressions of the "
                               "arguments (range(T - 1)) or module-level constants (M = 100 at "
                               "the top of the file)"),
    ("for t in range(1.5):", 20, "the bounds of range() must be integers or dimension "
                                 "expressions, not float"),
    ("for t, u in range(N):", 9, "the loop variable must be a single name: for t in range(T)"),
    ("for k in range(N):", 9, "the loop variable 'k' would replace the variable 'k' (an "
                              "argument); give the loop variable another name"),
])
def test_loop_headers(loop, col, message):
    report = _error(f"""
        def f(w: Param[N], k: int):
            s = 0.0
            {loop}
                s += sum(w)
            return s
        """)
    assert _first_line(report) == f"t.grad:3:{col}: error: {message}"


def test_the_loop_variable_cannot_be_assigned():
    report = _error("""
        def f(w: Param[N]):
            s = 0.0
            for t in range(N):
                t = t + 1
                s += w[t]
            return s
        """)
    assert _first_line(report) == (
        "t.grad:4:9: error: the loop variable 't' cannot be assigned in the loop: it takes "
        "the values of range(...) in turn; assign to another name")


@pytest.mark.parametrize("after, col, message", [
    ("u", 16, "'u' is first assigned inside the loop on line 3, so it is local to one step of "
              "the loop; to use its value after the loop, assign 'u' before the loop (then the "
              "loop carries it)"),
    ("float(t)", 22, "'t' is the variable of the loop on line 3, which it is local to; after "
                     "the loop, use the stop of its range instead"),
])
def test_names_first_assigned_in_a_loop_are_local_to_it(after, col, message):
    report = _error(f"""
        def f(w: Param[N]):
            s = 0.0
            for t in range(N):
                u = w[t] * 2.0
                s += u
            return s + {after}
        """)
    assert _first_line(report) == f"t.grad:6:{col}: error: {message}"


def test_errors_in_a_loop_body_are_all_reported_once():
    report = _error("""
        def f(w: Param[N]):
            s = 0.0
            for t in range(N):
                a = zz
                b = sum(w) * yy
            return s + 1.0
        """)
    lines = [line for line in report.split("\n") if ": error: " in line]
    assert lines == ["t.grad:4:13: error: unknown name 'zz'",
                     "t.grad:5:22: error: unknown name 'yy'"]


def test_the_hoist_pass_moves_what_became_invariant_out_of_the_loop():
    """`passes.hoist` (run by optimize and lower, on the bodies the other passes rewrote):
    body nodes that read neither the index nor a carried value, here `W.T @ W` and
    `exp(x)` of the outside values, become arguments of the loop, computed before it."""
    from gradgen.dims import dim_symbol
    from gradgen.ir import Graph, Region, make, verify
    from gradgen.passes import building, hoist, lower, optimize
    from test_regions import _emit, _run

    N, D, T = (dim_symbol(s) for s in "NDT")
    with building():
        t = make("input", name="t", role="index", shape=())
        h = make("input", name="h", role="carry", shape=(N, D))
        w = make("input", name="W", role="outside", shape=(D, D))
        x = make("input", name="x", role="outside", shape=(N, D))
        body = Region((t, h, w, x), (make("tanh", h @ (w.T @ w) + make("exp", x) * t),))
        h0, w0, x0 = (make("input", name=n, role="data", shape=s)
                      for n, s in (("h0", (N, D)), ("W0", (D, D)), ("X", (N, D))))
        graph = Graph((h0, w0, x0), (make("part", make("scan", h0, w0, x0, body=body,
                                                       length=T), index=0),))
        hoisted = hoist(graph)
        verify(hoisted)
        assert hoist(hoisted) is hoisted
        (scan,) = [n for n in topo_order(hoisted.outputs) if n.op == "scan"]
        inside = [n.op for n in topo_order(scan.regions[0].outputs)]
        assert "exp" not in inside and "transpose" not in inside and inside.count("matmul") == 1
        assert {a.op for a in scan.args[3:]} == {"exp", "matmul"}
        source, f = _emit(lower(optimize(graph)))
        before, loop = source.split("for t in range(T):")
        assert "np.exp(X)" in before and "np.exp" not in loop and ".T" not in loop
    rng = np.random.default_rng(3)
    hv, wv, xv = rng.normal(size=(3, 4)), 0.3 * rng.normal(size=(4, 4)), rng.normal(size=(3, 4))
    expected = hv
    for k in range(5):
        expected = np.tanh(expected @ (wv.T @ wv) + np.exp(xv) * k)
    np.testing.assert_allclose(_run(f, hv, wv, xv), expected, rtol=1e-12)


def test_the_readme_loop_excerpt_is_the_emitted_code():
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Loops\n")[1].split("\n## ")[0]
    program, emitted = [block.split("```", 1)[0] for block in section.split("```python\n")[1:3]]
    code = gradgen.compile_source(program, "states.grad", **VALUE_ONLY)
    for line in emitted.strip("\n").split("\n"):
        assert line in code.split("\n"), line


def test_the_value_only_from_the_command_line(tmp_path):
    """`--modes ''`: only the function itself; the header's regenerate command says so and
    `--check` reads it. (By default the derivatives through the loop are emitted too.)"""
    from clirun import run

    (tmp_path / "rnn.grad").write_text(LOOPS.split("\n\n\n")[0], encoding="utf-8")
    assert run("compile", "rnn.grad", cwd=tmp_path).returncode == 0
    assert "def rnn_loss_grad(" in (tmp_path / "rnn_grad.py").read_text(encoding="utf-8")
    assert run("compile", "rnn.grad", "--modes", "", cwd=tmp_path).returncode == 0
    module = (tmp_path / "rnn_grad.py").read_text(encoding="utf-8")
    assert "# Regenerate with: gradgen compile rnn.grad --modes ''\n" in module
    assert "def rnn_loss(" in module and "def rnn_loss_grad(" not in module
    assert run("compile", "rnn.grad", "--check", cwd=tmp_path).returncode == 0


# ---------------------------------------------------------------- held-out models (h-loopcheck)

def test_integers_next_to_index_arrays_as_a_crf_writes_them(rng):
    """`emit[0, tags[0]]` and `emit[t, tags[t]]` (a linear-chain CRF's gold-path score):
    an integer beside an index array is an index array too, as in NumPy; it was refused
    with "the other items of a subscript must be full slices"."""
    f = gradgen.load_source(textwrap.dedent("""
        def crf_score(emit: Param[T, K], trans: Param[K, K], tags: Index[T]):
            score = emit[0, tags[0]]
            for t in range(1, T):
                score = score + trans[tags[t - 1], tags[t]] + emit[t, tags[t]]
            return score + emit[-1, tags[-2]] + sum(emit[tags, 1]) + sum(emit[:, tags][1, 0])
        """), "crf.grad", **VALUE_ONLY)
    emit, trans = rng.normal(size=(6, 4)), rng.normal(size=(4, 4))
    tags = np.array([2, 0, 3, 3, 1, 0])
    expected = emit[0, tags[0]]
    for t in range(1, 6):
        expected += trans[tags[t - 1], tags[t]] + emit[t, tags[t]]
    expected += emit[-1, tags[-2]] + emit[tags, 1].sum() + emit[:, tags][1, 0]
    np.testing.assert_allclose(_run(f.crf_score, emit, trans, tags), expected, rtol=1e-12)


def test_an_index_that_is_its_axis_size_minus_a_number(rng):
    """`x[T - 1]`, `x[t, N - 1]`, `tags[T - 1]` count from the end (`x[-1]`), as NumPy
    reads them; they were refused ("indices must be integer literals") while `x[T - 1 - t]`
    compiled."""
    f = gradgen.load_source(textwrap.dedent("""
        def f(x: Data[T, N], w: Param[N], tags: Index[T]):
            s = x[T - 1] @ w
            for t in range(1, T):
                s = s * 0.5 + x[t - 1] @ w * x[t, N - 1] + w[tags[T - 1]]
            return s + x[T - 2, N - 2] + sum(x[:, N - 1])
        """), "last.grad", **VALUE_ONLY)
    x, w, tags = rng.normal(size=(5, 4)), rng.normal(size=4), np.array([0, 2, 1, 3, 2])
    expected = x[4] @ w
    for t in range(1, 5):
        expected = expected * 0.5 + x[t - 1] @ w * x[t, 3] + w[tags[4]]
    expected += x[3, 2] + x[:, 3].sum()
    np.testing.assert_allclose(_run(f.f, x, w, tags), expected, rtol=1e-12)


@pytest.mark.parametrize("loop, message", [
    ("for t in range(len(x)):", "3:20: error: write T for len(x): the bounds of range() are "
                                "integer literals or dimension expressions"),
    ("for t in range(1, X.shape[1]):", "3:23: error: write N for X.shape[1]: the bounds of "
                                       "range() are integer literals or dimension expressions"),
    ("for x_t in X:", "3:16: error: a loop runs over range(...), not over an array: write for t "
                      "in range(T): and x_t = X[t] in the body"),
    ("for t, x_t in enumerate(X):", "3:19: error: a loop runs over range(...), not over an "
                                    "array: write for t in range(T): and x_t = X[t] in the body"),
    ("for t in reversed(range(T)):", "3:14: error: reversed(...) is not supported: count down "
                                     "with a negative step, for t in range(T - 1, -1, -1)"),
    ("for t in range(STEPS):", "3:20: error: 'STEPS' is not a dimension of the arguments: the "
                               "bounds of range() are integer literals, dimension expressions "
                               "of the arguments (range(T - 1)) or module-level constants "
                               "(STEPS = 100 at the top of the file)"),
    ("for t in range(s):", "3:20: error: 's' is a variable: the bounds"),
])
def test_loops_as_authors_write_them_get_the_range_form(loop, message):
    """The loop headers people write over arrays (`len(x)`, `x.shape[1]`, iterating rows,
    `enumerate`, `reversed`, a step count that is not a dimension) name the range(...)
    form to write; they said "a dimension must be a name..." or "is not a dimension: a
    shape is made of..." before."""
    report = _error(f"""
        def f(X: Data[T, N], x: Data[T], w: Param[N]):
            s = 0.0
            {loop}
                s = s + X[0] @ w
            return s
        """)
    assert _first_line(report).startswith("t.grad:" + message), _first_line(report)


def test_a_number_a_step_assigns_keeps_float32():
    """`s = tanh(1.5)` in the body left `s` a Python number after the loop, and `np.sin(s)`
    a float64 scalar that made a float32 result float64 (random program seed 1003404)."""
    m = gradgen.load_source(textwrap.dedent("""
        def f(W: Param[3, 2], s: Param[()], X: Data[2, 3]):
            u = 0.0
            for t in range(2):
                u += softplus(sum(tanh(W @ X)))
                s = tanh(1.5)
            return u + sin(s)
    """), "number_step.grad")
    W, X = np.full((3, 2), 0.1, np.float32), np.full((2, 3), 0.2, np.float32)
    value = m.f(W, np.float32(0.3), X)
    assert np.asarray(value).dtype == np.float32
    u = 2 * np.logaddexp(0, np.tanh(W.astype(np.float64) @ X).sum())
    assert np.isclose(float(value), u + np.sin(np.tanh(1.5)), rtol=1e-6)
    assert all(np.asarray(g).dtype == np.float32 for g in m.f_grad(W, np.float32(0.3), X))


SUNK = """\
def after(X: Data[T, N, D], U: Param[D, D], V: Param[D, C], h0: Data[N, D]):
    h = h0
    s = 0.0
    for t in range(T):
        h = tanh(X[t] + h @ U)
        s += sum(exp(h @ V))
    return s

def before(X: Data[T, N, D], U: Param[D, D], V: Param[D, C], h0: Data[N, D]):
    h = h0
    s = 0.0
    for t in range(T):
        s += sum(exp(h @ V))
        h = tanh(X[t] + h @ U)
    return s
"""


def test_accumulated_terms_are_computed_after_the_loop():
    """Pass sink_steps: `s += sum(exp(h @ V))` feeds no carried value; computed after the
    loop over the states it writes (one stacked product), the loop keeps the recurrence.
    A term of the carried value before the step (`h` read before it is updated) stays in
    the loop: its buffer's cotangent would be zeroed row by row before the row is read."""
    for name, sunk in (("after", True), ("before", False)):
        entry, order = _entry(SUNK, name)
        (scan,) = [n for n in order if n.op == "scan"]
        (body,) = scan.regions
        inside = [n.op for n in topo_order(body.outputs)]
        assert ("exp" not in inside and inside.count("matmul") == 1) == sunk, name
        outside = [n.op for n in order if n is not scan]
        assert ("exp" in outside) == sunk, name
    module = gradgen.compile_source(SUNK, modes=["grad"])
    env: dict = {}
    exec(compile(module, "sunk.py", "exec"), env)
    rng = np.random.default_rng(0)
    X, U, V, h0 = (rng.normal(size=s) * 0.3 for s in ((5, 3, 4), (4, 4), (4, 2), (3, 4)))
    h, want = h0, 0.0
    for t in range(5):   # NumPy, the loop as written
        h = np.tanh(X[t] + h @ U)
        want += np.exp(h @ V).sum()
    assert env["after"](X, U, V, h0) == pytest.approx(want, rel=1e-12)
    e = 1e-6 * rng.normal(size=V.shape)   # the gradient against a central difference
    diff = (env["after"](X, U, V + e, h0) - env["after"](X, U, V - e, h0)) / 2
    assert np.vdot(env["after_grad"](X, U, V, h0)[1], e) == pytest.approx(diff, rel=1e-6)


def test_an_entry_read_in_a_loop_is_named_after_its_array():
    """`k[0]`, `k[1]` read in a loop are `k0`, `k1` there, their gradient accumulators
    `dk0`, `dk1` (not `outside1`, `doutside0`: tests/loops/sequences.grad's euler_fit,
    whose derivatives tests/test_loop_derivatives.py checks)."""
    text = textwrap.dedent("""\
        def f(k: Param[2], x0: Data[D], dt: Data[()]):
            x = x0
            for s in range(4):
                x = x + dt * (-k[0] * x + k[1] * sin(x))
            return sum(x * x)
        """)
    code = gradgen.compile_source(text, "entry.grad", modes=("grad",))
    assert "outside" not in code and "    dk[0] = dk0\n" in code and "dk[1] += dk1\n" in code


def test_a_view_read_in_a_loop_is_named_after_its_array():
    """An outside value that adds unit axes to a named array (`log_A[None, :, :]`) gives
    the loop's gradient accumulator that array's name (`dlog_A`), not a machine name
    (`doutside2`); the backward step's softmax weights are `weights`."""
    text = textwrap.dedent("""\
        def f(A: Param[K, K], x0: Data[N, K]):
            log_A = log_softmax(A, axis=1)
            alpha = x0
            for t in range(3):
                alpha = logsumexp(alpha[:, :, None] + log_A[None, :, :], axis=1)
            return sum(alpha)
        """)
    code = gradgen.compile_source(text, "view.grad", modes=("grad",))
    assert "outside" not in code and "weights" in code and "dlog_A = np.zeros" in code
    mod = gradgen.load_source(text, "view.grad", modes=("grad",))
    rng = np.random.default_rng(2)
    A, x0 = rng.normal(size=(3, 3)), rng.normal(size=(2, 3))
    logA = A - np.log(np.exp(A).sum(axis=1, keepdims=True))
    alpha = x0
    for _ in range(3):
        z = alpha[:, :, None] + logA[None]
        alpha = np.log(np.exp(z).sum(axis=1))
    assert mod.f(A, x0) == pytest.approx(alpha.sum(), rel=1e-12)
