"""Python's name rules (issue 10, item 3; SPEC §1 "Names"), subscript assignment in the
source, all independent errors of a file in one run (item 7) and the order of `--wrt`
results (item 6d).

One program uses every form at once and is compiled once; its value is compared with a
NumPy transcription written independently, its derivatives with finite differences.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import numpy as np
import pytest
from emitted import load
from fdcheck import assert_close, call, fd_directional, fd_jacobian

import gradgen
from gradgen import cli
from gradgen.frontend.lower import MAX_ERRORS

ROOT = Path(__file__).resolve().parent.parent

SOURCE = """\
def f(x: Param[N], A: Param[N, M], mean: Data[N], s: Param[()]):
    h = tanh(x * 2)
    h += x
    h -= 0.5 * mean
    h *= s
    h /= 1 + mean * mean
    h **= 2
    x = x * x
    var = var(A, axis=1)
    sign = sign(mean)
    v = h
    v @= A
    A[0] = v
    A[1:, 0] *= 3
    A[..., -1] -= x
    neg = -sum(A * A)
    norm = norm(h)
    return neg + norm * s + sum(var * x) + sum(sign * h)
"""
ORDER = ("x", "A", "mean", "s")


def reference(x, A, mean, s):
    """SOURCE in NumPy, statement by statement."""
    h = np.tanh(2 * x)
    h = h + x
    h = h - 0.5 * mean
    h = h * s
    h = h / (1 + mean * mean)
    h = h ** 2
    x2 = x * x
    var = A.var(axis=1)
    sign = np.sign(mean)
    v = h @ A
    A2 = np.array(A, dtype=np.float64)
    A2[0] = v
    A2[1:, 0] = A2[1:, 0] * 3
    A2[..., -1] = A2[..., -1] - x2
    return (-np.sum(A2 * A2) + np.linalg.norm(h) * s + np.sum(var * x2)
            + np.sum(sign * h))


@pytest.fixture(scope="module")
def compiled():
    text = gradgen.compile_source(SOURCE, "names.grad")
    return text, load(text)


def _args(rng, dtype=np.float64):
    return {"x": rng.uniform(0.3, 1.2, 4).astype(dtype),
            "A": rng.normal(size=(4, 3)).astype(dtype),
            "mean": rng.uniform(-1, 1, 4).astype(dtype),
            "s": dtype(0.7)}


def test_value_gradient_and_hvp_of_reassigned_names(compiled):
    _, mod = compiled
    args = _args(np.random.default_rng(0))
    before = {k: np.copy(v) for k, v in args.items()}
    assert_close(call(mod.f, ORDER, args), reference(**args), "value", rtol=1e-12)
    grads = call(mod.f_grad, ORDER, args)
    params = ("x", "A", "s")
    for p, g in zip(params, grads):
        assert_close(g, fd_jacobian(mod.f, ORDER, args, p), f"d/d{p}")
        assert_close(g, fd_jacobian(reference, ORDER, args, p), f"d/d{p} (reference)")
    rng = np.random.default_rng(1)
    vs = {p: rng.normal(size=np.shape(args[p])) for p in params}
    hvp = call(mod.f_hvp, ORDER, args, *vs.values())
    fd = fd_directional(mod.f_grad, ORDER, args, vs)
    for p, h, d in zip(params, hvp, fd):
        assert_close(h, d, f"(H v) for {p}", rtol=1e-5)
    # Arrays are values: no emitted function wrote into the caller's arrays.
    for k in args:
        assert np.array_equal(args[k], before[k]), k


def test_float32_is_kept(compiled):
    _, mod = compiled
    args = _args(np.random.default_rng(2), np.float32)
    value, grads = call(mod.f_value_and_grad, ORDER, args)
    assert np.result_type(value) == np.float32
    assert all(g.dtype == np.float32 for g in grads)


def test_emitted_names_follow_the_bindings(compiled):
    text, _ = compiled
    body = text[text.index("\ndef f("):text.index("\ndef f_grad(")]
    assigned = re.findall(r"^    (\w+) = ", body, re.MULTILINE)
    # The k-th binding of a name is `name_k`; arguments are never rebound by the source's
    # assignments (`s = _weak(s, ...)` is the module's own conversion of a scalar).
    assert {"h", "h_2", "h_3", "h_4", "h_5", "h_6", "x_2", "A_2", "A_3", "A_4", "var",
            "sign", "v"} <= set(assigned), assigned
    assert not {"x", "A", "mean"} & set(assigned)
    # An update writes into a copy of an argument, and into the buffer of a value of the
    # function itself once nothing else reads that value.
    assert "A_2 = A.copy()" in body
    small = gradgen.compile_source("def f(x: Param[N], v: Data[()]):\n    y = x * 2\n"
                                   "    y[0] = v\n    return sum(y * y)\n")
    assert "y_2 = y  # reuses y's buffer\n    y_2[0] = v\n" in small
    # The backward statements say which source line they differentiate.
    grad = text[text.index("\ndef f_grad("):text.index("\ndef f_value_and_grad(")]
    # (line 8's `x * x` gives 2 * x * dx, which joins line 2's 2 * (...) in one statement)
    assert "# grad of line 12: v @= A" in grad
    assert "# grad of line 15: A[..., -1] -= x" in grad


# ---------------------------------------------------------------------------- all errors

ERRORS = """\
def helper(a):
    return a + foo


def f(x: Param[N], y: Data[N]):
    z = x + undefined1
    w = z * 2
    q = helper(x)
    r = helper(y)
    s = exp(x, 3)
    mean = mean(x)
    t = mean(y)
    return sum(w) + sum(s) + sum(q) + t


def g(x: Param[N, M]):
    if x:
        pass
    return sum(x)


def h(x: Param[K], x: Data[K]):
    return x


def k(x: Param[Q, Bad()]):
    return sum(x)


def m(x: Param[Q]):
    return sum(h(x))


import os
"""


def test_every_independent_error_in_one_run(capsys, tmp_path):
    with pytest.raises(gradgen.CompileError) as info:
        gradgen.compile_source(ERRORS, "e.grad")
    found = [(d.line, d.col, d.message) for d in info.value.diagnostics]
    # Source order; the helper's error once (not once per call); nothing about the names
    # that statements in error assign (`z`, `w`, `s`, `t`), nor the call of `h`, whose
    # definition is in error.
    assert found == [
        (2, 16, "unknown name 'foo'"),
        (6, 13, "unknown name 'undefined1'"),
        (10, 16, "exp() takes 1 argument but 2 were given"),
        (12, 9, ("'mean' is a variable of 'f' (assigned on line 11), which shadows the "
                 "built-in mean() from there on; rename the variable to call mean()")),
        (17, 5, "'if' statements are not supported; use where(condition, a, b)"),
        (22, 20, "duplicate argument 'x'"),
        (26, 19, ("a dimension must be a name, a positive integer or an arithmetic "
                  "expression of them")),
        (34, 1, "imports are not supported (the source is never executed)"),
    ]
    assert str(info.value) == "\n".join(d.render() for d in info.value.diagnostics)
    src = tmp_path / "e.grad"
    src.write_text(ERRORS)
    assert cli.main(["compile", str(src)]) == 1
    err = capsys.readouterr().err
    assert [line.split(": error: ")[0] for line in err.splitlines() if ": error: " in line] \
        == [f"{src}:{line}:{col}" for line, col, _ in found]
    assert not (tmp_path / "e_grad.py").exists()


def test_at_most_twenty_errors():
    body = "".join(f"    a{i} = x + b{i}\n" for i in range(MAX_ERRORS + 5))
    source = f"def f(x: Param[N]):\n{body}    return sum(x)\n"
    with pytest.raises(gradgen.CompileError) as info:
        gradgen.compile_source(source, "t.grad")
    lines = [d.line for d in info.value.diagnostics]
    assert MAX_ERRORS == 20 and lines == list(range(2, 2 + MAX_ERRORS))


def test_a_statement_in_error_is_checked_after_an_earlier_one():
    source = textwrap.dedent("""\
        def f(x: Param[N]):
            y = x @ x @ x
            y = y + 1
            z = y[0, 0]
            w = x[0, 0]
            return sum(x)
        """)
    with pytest.raises(gradgen.CompileError) as info:
        gradgen.compile_source(source, "t.grad")
    # `y = y + 1` reads y, whose assignment failed: skipped; line 5 is independent.
    assert [d.line for d in info.value.diagnostics] == [2, 5]


# ---------------------------------------------------------------------------- --wrt order

def test_wrt_results_come_in_the_order_asked():
    """README, "--wrt": results, tangents and directions in the order named, as JAX's
    argnums; the default is declaration order (V, W)."""
    src = (ROOT / "examples" / "mlp" / "mlp.grad").read_text()
    default = load(gradgen.compile_source(src, "mlp.grad"))
    asked = load(gradgen.compile_source(src, "mlp.grad", wrt=["W", "V"]))
    rng = np.random.default_rng(3)
    X, Y = rng.normal(size=(5, 3)), np.eye(4)[rng.integers(0, 4, 5)]
    V, W = rng.normal(size=(3, 6)), rng.normal(size=(6, 4))
    dV, dW = default.cost_grad(X, Y, V, W)
    dW2, dV2 = asked.cost_grad(X, Y, V, W)
    assert np.array_equal(dW2, dW) and np.array_equal(dV2, dV)
    tV, tW = rng.normal(size=V.shape), rng.normal(size=W.shape)
    HvV, HvW = default.cost_hvp(X, Y, V, W, tV, tW)
    HvW2, HvV2 = asked.cost_hvp(X, Y, V, W, tW, tV)
    assert_close(HvW2, HvW, "HvW", rtol=1e-12)
    assert_close(HvV2, HvV, "HvV", rtol=1e-12)
    _, t = default.cost_jvp(X, Y, V, W, tV, tW)
    _, t2 = asked.cost_jvp(X, Y, V, W, tW, tV)
    assert_close(t2, t, "jvp", rtol=1e-12)


def test_errors_of_every_entry_point_after_the_frontend():
    source = ("def f(x: Param[N]):\n    return exp(x)\n\n\n"
              "def g(x: Param[N]):\n    return sum(x)\n\n\n"
              "def h(x: Param[N]):\n    return x * 2\n")
    with pytest.raises(gradgen.CompileError) as info:
        gradgen.compile_source(source, "t.grad", modes=["grad"])
    assert [(d.line, d.col, d.message.split(",")[0]) for d in info.value.diagnostics] == [
        (2, 12, "'grad' needs a scalar output"), (10, 12, "'grad' needs a scalar output")]


def test_constants_are_shadowed_from_their_first_binding():
    # `e` is Euler's number until it is assigned (then a common name for a residual).
    source = ("def f(x: Param[N], y: Data[N]):\n"
              "    s = sum(x) * e\n"
              "    e = y - x * pi\n"
              "    pi = 2.0\n"
              "    return sum(e * e) + s * pi\n")
    mod = load(gradgen.compile_source(source, "t.grad", modes=["grad"]))
    x, y = np.array([0.5, -1.0, 2.0]), np.array([1.0, 0.25, -0.5])
    r = y - x * np.pi
    assert_close(mod.f(x, y), np.sum(r * r) + np.sum(x) * np.e * 2.0, "value", rtol=1e-12)
    assert_close(mod.f_grad(x, y), -2 * np.pi * r + 2 * np.e, "gradient", rtol=1e-12)


def test_an_update_copies_a_value_still_read_later():
    source = ("def f(x: Param[N]):\n"
              "    b = x * 2\n"
              "    c = b\n"
              "    c[0] = 0\n"
              "    d = exp(b)\n"
              "    d[1:] += c[1:]\n"
              "    return sum(b * c) + sum(d * d)\n")
    mod = load(gradgen.compile_source(source, "t.grad", modes=["grad"]))

    def ref(x):
        b = x * 2
        c = b.copy()
        c[0] = 0
        d = np.exp(b)
        d[1:] += c[1:]
        return np.sum(b * c) + np.sum(d * d)

    x = np.array([0.3, -0.2, 0.5, 0.1])
    assert_close(mod.f(x), ref(x), "value", rtol=1e-12)
    assert_close(mod.f_grad(x), fd_jacobian(ref, ("x",), {"x": x}, "x"), "gradient")
