"""Linear algebra: the matrix product."""

from __future__ import annotations

from ..ir import make
from ..shapes import matmul_shape
from ._emit import infix
from .registry import PREC_MUL, REAL, defbuiltin, defop
from .shape_ops import swap_last


def _matmul_vjp(g, n):
    a, b = n.args
    if a.ndim == 1 and b.ndim == 1:          # inner product
        return g * b, g * a
    if a.ndim == 1:                          # (k,) @ (..., k, m)
        if b.ndim == 2:
            return b @ g, make("expand_dims", a, axes=(1,)) * g
        g2 = make("expand_dims", g, axes=(g.ndim - 1,))
        return make("squeeze", g2 @ swap_last(b), axes=(g2.ndim - 2,)), \
            make("expand_dims", a, axes=(1,)) * g2
    if b.ndim == 1:                          # (..., n, k) @ (k,)
        g1 = make("expand_dims", g, axes=(g.ndim,))
        if a.ndim == 2:
            return g1 * b, a.T @ g
        return g1 * b, make("squeeze", swap_last(a) @ g1, axes=(g1.ndim - 1,))
    return g @ swap_last(b), swap_last(a) @ g


def _matmul_jvp(ts, n):
    a, b = n.args
    ta, tb = ts
    left = None if ta is None else ta @ b
    right = None if tb is None else a @ tb
    if left is None:
        return right
    return left if right is None else left + right


defop("matmul", 2, shape=lambda args: matmul_shape(args[0].shape, args[1].shape),
      emit=infix("@", PREC_MUL), traits=frozenset({"bilinear"}), domain=(REAL, REAL),
      vjp=_matmul_vjp, jvp=_matmul_jvp)

defbuiltin("matmul", ("x", "y"), lambda x, y: x @ y)
