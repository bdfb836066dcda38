"""Fewer full-size temporaries (issue 12): the gradient of several slices of one array
written into one buffer (`scatters_one_buffer`), sums of products and squares of vectors
as dot products (`sum_product_dot`, `dot_of_broadcast_scalar`), and the value a slice
write stores computed in a dead buffer (`codegen/schedule._write_stmt`). One module,
checked against SciPy's own Rosenbrock derivatives and closed forms written here."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import numpy as np
import pytest

import gradgen
from emitted import load

SOURCE = """\
def rosen(x: Param[N]):
    return sum(100.0 * (x[1:] - x[:-1] ** 2.0) ** 2.0 + (1 - x[:-1]) ** 2.0)


def three(x: Param[N], y: Param[N]):
    return sum(x[:-2] * y[2:]) + sum(exp(x[1:-1])) + sum(x[2:] ** 2) + sum(x * y)


def quad(x: Param[N], y: Param[N]):
    return 0.5 * sum(x ** 2) + sum(x * y) - sum(x * exp(y) - y)


def acc(x: Param[N]):
    z = x * 2.0
    z[1:] += x[:-1] ** 2
    return sum(z * z)
"""


@pytest.fixture(scope="module")
def text():
    return gradgen.compile_source(SOURCE, filename="alloc.grad", hessian=True)


@pytest.fixture(scope="module")
def mod(text):
    return load(text)


def test_rosen_matches_scipy(mod):
    import scipy.optimize as so  # (not while collecting: every worker collects)

    rng = np.random.default_rng(0)
    for n in (2, 3, 50):
        x, v = rng.standard_normal(n), rng.standard_normal(n)
        value, dx = mod.rosen_value_and_grad(x)
        np.testing.assert_allclose(value, so.rosen(x), rtol=1e-13)
        np.testing.assert_allclose(dx, so.rosen_der(x), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(mod.rosen_grad(x), so.rosen_der(x), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(mod.rosen_hvp(x, v), so.rosen_hess_prod(x, v),
                                   rtol=1e-12, atol=1e-11)
        np.testing.assert_allclose(mod.rosen_hessian(x), so.rosen_hess(x), rtol=1e-12,
                                   atol=1e-11)
        _, tvalue = mod.rosen_jvp(x, v)
        np.testing.assert_allclose(tvalue, so.rosen_der(x) @ v, rtol=1e-12, atol=1e-11)


def test_rosen_float32_and_caller_arrays(mod):
    import scipy.optimize as so  # (not while collecting: every worker collects)

    x = np.linspace(-1, 1, 7, dtype=np.float32)
    keep = x.copy()
    value, dx = mod.rosen_value_and_grad(x)
    assert dx.dtype == np.float32 and np.asarray(value).dtype == np.float32
    np.testing.assert_allclose(dx, so.rosen_der(x.astype(np.float64)), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(x, keep)   # the caller's array is not written
    assert not np.shares_memory(dx, x)


def test_three_slices_and_dots(mod):
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal(9), rng.standard_normal(9)
    value, (dx, dy) = mod.three_value_and_grad(x, y)
    np.testing.assert_allclose(value, x[:-2] @ y[2:] + np.exp(x[1:-1]).sum() + x[2:] @ x[2:]
                               + x @ y, rtol=1e-13)
    ex, ey = y.copy(), x.copy()       # d/dx sum(x * y) = y, d/dy = x
    ex[:-2] += y[2:]
    ex[1:-1] += np.exp(x[1:-1])
    ex[2:] += 2 * x[2:]
    ey[2:] += x[:-2]
    np.testing.assert_allclose(dx, ex, rtol=1e-13)
    np.testing.assert_allclose(dy, ey, rtol=1e-13)


def test_quad_derivatives(mod):
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal(6), rng.standard_normal(6)
    vx, vy = rng.standard_normal(6), rng.standard_normal(6)
    value, (dx, dy) = mod.quad_value_and_grad(x, y)
    np.testing.assert_allclose(value, 0.5 * (x * x).sum() + (x * y).sum()
                               - (x * np.exp(y) - y).sum(), rtol=1e-13)
    np.testing.assert_allclose(dx, x + y - np.exp(y), rtol=1e-13)
    np.testing.assert_allclose(dy, x - x * np.exp(y) + 1, rtol=1e-13)
    _, t = mod.quad_jvp(x, y, vx, vy)
    np.testing.assert_allclose(t, dx @ vx + dy @ vy, rtol=1e-12)
    hx, hy = mod.quad_hvp(x, y, vx, vy)
    np.testing.assert_allclose(hx, vx + vy - np.exp(y) * vy, rtol=1e-12)
    np.testing.assert_allclose(hy, vx - np.exp(y) * vx - x * np.exp(y) * vy, rtol=1e-12)


def test_one_buffer_and_dot_products_in_the_emitted_code(text):
    body = text.split("def rosen_value_and_grad(", 1)[1].split("\ndef ", 1)[0]
    assert body.count("np.zeros_like(x)") == 1       # one buffer, not one per slice
    assert "+= x_mul" in body or "[1:] +=" in body   # the second slice added into it
    assert "x_diff @ x_diff" in body                 # the value: dot products
    assert "**" not in body.split("value =", 1)[1].split("\n", 1)[0]
    # the buffer made for the gradient is called dx from the start (one buffer, one name)
    assert "    dx = np.zeros_like(x)\n    dx[:-1] = " in body and "_scatter" not in body
    assert "dx = x" not in body and "reuses x_scatter" not in body
    hvp = text.split("def rosen_hvp(", 1)[1].split("\ndef ", 1)[0]
    assert "    Hvx = np.zeros_like(x)\n" in hvp and "_scatter" not in hvp
    quad = text.split("def quad_grad(", 1)[1].split("\ndef ", 1)[0]
    assert "@" not in quad.split('"""', 2)[2]        # d(x @ x) is 2x: no product left


def test_slice_accumulate(mod, text):
    x = np.random.default_rng(3).standard_normal(8)
    z = x * 2.0
    z[1:] += x[:-1] ** 2
    dz = 2 * z
    dx = 2.0 * dz
    dx[:-1] += 2 * x[:-1] * dz[1:]
    value, grad = mod.acc_value_and_grad(x)
    np.testing.assert_allclose(value, z @ z, rtol=1e-13)
    np.testing.assert_allclose(grad, dx, rtol=1e-13)
    body = text.split("def acc(", 1)[1].split("\ndef ", 1)[0]
    assert "[1:] += " in body   # z[1:] = z[1:] + w is written as z[1:] += w


FAULTS = """\
import resource, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
import {name} as m
x = np.linspace(-1.0, 1.0, 100_000)
m.rosen_value_and_grad(x)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    m.rosen_value_and_grad(x)
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20)
"""


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                    reason="glibc's malloc thresholds")
def test_temporaries_reuse_freed_memory(text, tmp_path):
    """An emitted module frees one untouched 31 MiB block when imported, so the 800 KB
    temporaries of each call reuse the memory the last call freed instead of faulting in
    fresh pages (~200 faults each). In a fresh interpreter (this one's malloc has long
    been primed by other tests), and once without that line, to show what it changes."""
    call = "\n_reuse_freed_memory()\n"
    assert text.count(call) == 1
    (tmp_path / "primed.py").write_text(text)
    (tmp_path / "unprimed.py").write_text(text.replace(call, "\n"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    faults = {}
    for name in ("primed", "unprimed"):
        out = subprocess.run([sys.executable, "-c", FAULTS.format(name=name), str(tmp_path)],
                             capture_output=True, text=True, env=env, timeout=60, check=True)
        faults[name] = float(out.stdout)
    assert faults["primed"] < 5 and faults["unprimed"] > 100, faults


def test_a_sum_reduced_over_a_middle_axis_is_laid_out_with_that_axis_first():
    """The scheduler computes an elementwise result of two arrays that a reduction over one
    middle axis reads (a logsumexp over axis 1 of `x[:, :, None] + y[None]`, hmm's forward
    step) into a buffer whose axis 1 is outermost: NumPy then reduces over it in passes
    over whole rows. Values and gradients are those of a plain NumPy reference, float32
    stays float32, and an argument that is an expression is not evaluated twice (the plain
    form is kept there)."""
    source = (
        "def f(x: Param[N, K], y: Param[K, K]):\n"
        "    return sum(logsumexp(x[:, :, None] + y[None, :, :], axis=1))\n\n\n"
        "def g(x: Param[N, K], y: Param[K, K]):\n"
        "    return sum(logsumexp(sin(x)[:, :, None] + y[None, :, :], axis=1))\n")
    text = gradgen.compile_source(source, filename="layout.grad", modes=("grad",))
    body = text[text.index("\ndef f_grad("):text.index("\ndef g(")]
    assert "np.empty((K, N, K), dtype=np.result_type(x, y)).transpose(1, 0, 2)" in body
    assert "np.add(x[:, :, None], y[None], out=x_add)" in body
    g = text[text.index("\ndef g("):text.index("\ndef g_grad(")]
    assert "np.sin(x)[:, :, None] + y[None]" in g and "outermost" not in g   # (plain)
    mod = load(text)
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(7, 5)), rng.normal(size=(5, 5))
    for name, xin in (("f", x), ("g", np.sin(x))):
        s = xin[:, :, None] + y[None]
        m = s.max(axis=1, keepdims=True)
        lse = np.log(np.exp(s - m).sum(axis=1, keepdims=True)) + m
        w = np.exp(s - lse)   # d lse[i, k] / d s[i, j, k]
        dx, dy = w.sum(axis=2), w.sum(axis=0)
        if name == "g":
            dx = dx * np.cos(x)
        value, (gx, gy) = getattr(mod, name + "_value_and_grad")(x, y)
        np.testing.assert_allclose(value, lse.sum(), rtol=1e-13)
        np.testing.assert_allclose(gx, dx, rtol=1e-12)
        np.testing.assert_allclose(gy, dy, rtol=1e-12)
        v32, (gx32, _) = getattr(mod, name + "_value_and_grad")(x.astype(np.float32),
                                                                y.astype(np.float32))
        assert np.asarray(v32).dtype == np.float32 and gx32.dtype == np.float32
        np.testing.assert_allclose(v32, lse.sum(), rtol=1e-4)
