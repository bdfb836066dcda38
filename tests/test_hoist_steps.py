"""Pass `hoist_steps` (gradgen/passes/steps.py): a loop's per-step values that read no
carried value are computed for all steps before the loop, the body reading a row per step.

One source with the forms it batches (a product `X[t] @ Wx` plus a bias, an embedding row
`E[x[t]]`, a transposed column `A[:, t - 1]` through exp and a reduction in a loop from 1,
a matrix times a row `Wh @ Y[t]` in a loop of step 2) against the same source written out
step by step, and against two-sided finite differences: value, gradient, HVP and Hessian.
"""

from __future__ import annotations

import numpy as np
import pytest

import gradgen

LOOPED = """\
def f(X: Data[T, N, D], x: Index[T, N], A: Data[N, T], Y: Data[T, H], Wx: Param[D, H],
      E: Param[V, H], Wh: Param[H, H], b: Param[H], u: Param[N], h0: Data[N, H]):
    h = h0
    s = 0.0
    for t in range(T):
        h = tanh(X[t] @ Wx + b + E[x[t]] + h @ Wh)
        s += sum(h * h) / 2
    for t in range(1, T):
        s = s * 0.5 + sum(exp(A[:, t - 1] * u))
    g = b
    for t in range(0, T, 2):
        g = tanh(Wh @ Y[t] + g)
    return s + sum(g * g)
"""

# the same with T = 3, written out
UNROLLED = """\
def f(X: Data[T, N, D], x: Index[T, N], A: Data[N, T], Y: Data[T, H], Wx: Param[D, H],
      E: Param[V, H], Wh: Param[H, H], b: Param[H], u: Param[N], h0: Data[N, H]):
    h = h0
    s = 0.0
    h = tanh(X[0] @ Wx + b + E[x[0]] + h @ Wh)
    s += sum(h * h) / 2
    h = tanh(X[1] @ Wx + b + E[x[1]] + h @ Wh)
    s += sum(h * h) / 2
    h = tanh(X[2] @ Wx + b + E[x[2]] + h @ Wh)
    s += sum(h * h) / 2
    s = s * 0.5 + sum(exp(A[:, 0] * u))
    s = s * 0.5 + sum(exp(A[:, 1] * u))
    g = b
    g = tanh(Wh @ Y[0] + g)
    g = tanh(Wh @ Y[2] + g)
    return s + sum(g * g)
"""

T, N, D, H, V = 3, 2, 2, 3, 4
PARAMS = ("Wx", "E", "Wh", "b", "u")


@pytest.fixture(scope="module")
def modules():
    return (gradgen.load_source(LOOPED, "looped.grad", hessian=True),
            gradgen.load_source(UNROLLED, "unrolled.grad", hessian=True))


@pytest.fixture(scope="module")
def args():
    rng = np.random.default_rng(11)
    return [rng.normal(size=(T, N, D)), rng.integers(0, V, size=(T, N)),
            rng.normal(size=(N, T)) * 0.5, rng.normal(size=(T, H)),
            rng.normal(size=(D, H)) * 0.5, rng.normal(size=(V, H)) * 0.5,
            rng.normal(size=(H, H)) * 0.5, rng.normal(size=H) * 0.5, rng.normal(size=N) * 0.5,
            rng.normal(size=(N, H))]


def _flat(parts) -> np.ndarray:
    return np.concatenate([np.ravel(p) for p in parts])


def _matrix(blocks) -> np.ndarray:
    """f_hessian's blocks (one per pair of Params) as one matrix."""
    sizes = {"Wx": D * H, "E": V * H, "Wh": H * H, "b": H, "u": N}
    rows = []
    for name, row in zip(PARAMS, blocks):
        n = sizes[name]
        rows.append(np.concatenate([np.reshape(blk, (n, -1)) for blk in row], axis=1))
    return np.concatenate(rows, axis=0)


def _with(args, vec):
    """The arguments with the Params taken from the flat vector `vec`."""
    out, k = list(args), 0
    for i in range(4, 9):
        n = args[i].size
        out[i] = vec[k:k + n].reshape(args[i].shape)
        k += n
    return out


def test_the_pass_moves_the_non_recurrent_work_out_of_the_loops():
    code = gradgen.compile_source(LOOPED, "looped.grad", modes=())
    body = code.split("def f(")[1]
    before = body.split("    for t in range(T):\n")[0]
    assert "X @ Wx" in before and "+= b\n" in before and "E[x]" in before   # all steps at once
    loops = body.split("    for t in range(")[1:]
    assert all("@ Wx" not in s and "np.exp(" not in s.split("\n    del")[0] for s in loops)


def test_values_and_derivatives_agree_with_the_unrolled_source(modules, args):
    looped, unrolled = modules
    assert looped.f(*args) == pytest.approx(unrolled.f(*args), rel=1e-13)
    for a, b in zip(looped.f_grad(*args), unrolled.f_grad(*args)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    rng = np.random.default_rng(3)
    v = [rng.normal(size=args[i].shape) for i in range(4, 9)]
    for a, b in zip(looped.f_hvp(*args, *v), unrolled.f_hvp(*args, *v)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(_matrix(looped.f_hessian(*args)),
                               _matrix(unrolled.f_hessian(*args)),
                               rtol=1e-12, atol=1e-14)
    value, grads = looped.f_value_and_grad(*args)
    assert value == pytest.approx(unrolled.f(*args), rel=1e-13)
    np.testing.assert_allclose(_flat(grads), _flat(unrolled.f_grad(*args)), rtol=1e-12)


def test_derivatives_agree_with_finite_differences(modules, args):
    looped, _ = modules
    p = _flat(args[4:9])
    eps = 1e-6
    basis = np.eye(p.size)
    fd = np.array([(looped.f(*_with(args, p + eps * e)) - looped.f(*_with(args, p - eps * e)))
                   / (2 * eps) for e in basis])
    grad = _flat(looped.f_grad(*args))
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-8)
    # second order: columns of the Hessian from differences of the gradient
    fd2 = np.array([(_flat(looped.f_grad(*_with(args, p + eps * e)))
                     - _flat(looped.f_grad(*_with(args, p - eps * e)))) / (2 * eps)
                    for e in basis])
    np.testing.assert_allclose(_matrix(looped.f_hessian(*args)), fd2, rtol=1e-5, atol=1e-7)
