"""A loop's per-step values stacked into one buffer after the loop (passes/sink.py) keep the
dtype the step computes them in: a carried value's dtype grows by its next values'."""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np

import gradgen

ROOT = Path(__file__).resolve().parent.parent


def _kalman() -> types.ModuleType:
    src = gradgen.compile_source((ROOT / "examples" / "kalman" / "kalman.grad").read_text(),
                                 "kalman.grad")
    mod = types.ModuleType("kalman_sunk")
    exec(compile(src, "kalman_grad.py", "exec"), mod.__dict__)
    mod.__source__ = src
    return mod


def test_a_stacked_step_value_is_as_wide_as_the_carried_values_it_reads():
    """kalman's `v = y[t] - m`: y and m0 float32, theta float64. m steps by `k * v` with k
    from theta, so v is float64 from the second step on; its stacked buffer `vs` was made
    in y's and m0's dtype and rounded every v to float32 (values off by ~1e-7)."""
    mod = _kalman()
    rng = np.random.default_rng(0)
    y = np.cumsum(rng.normal(size=40)).astype(np.float32)
    theta, m0, P0 = np.array([-1.0, 0.3]), np.float32(0.1), 2.0
    wide = (theta, y.astype(np.float64), np.float64(m0), P0)
    for name in ("nll", "nll_grad"):
        f = getattr(mod, name)
        np.testing.assert_allclose(f(theta, y, m0, P0), f(*wide), rtol=1e-14, atol=0)
    direction = np.array([0.5, -1.0])
    np.testing.assert_allclose(mod.nll_hvp(theta, y, m0, P0, direction),
                               mod.nll_hvp(*wide, direction), rtol=1e-13, atol=0)
    assert "vs = np.empty((T,), dtype=np.result_type(theta, y, m0, P0))" in mod.__source__
