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


def _matmul_vmap(ts, n):
    """Batched JVP: tangents have a leading batch axis."""
    a, b = n.args
    ta, tb = ts
    terms = []
    if ta is not None:
        if a.ndim == 1 and b.ndim > 2:     # (B, k) -> (B, 1.., 1, k) @ b -> squeeze
            t = _pad(ta, b.ndim - 1) @ b
            terms.append(make("squeeze", t, axes=(t.ndim - 2,)))
        else:
            pad = max(0, b.ndim - a.ndim) if a.ndim >= 2 else 0
            terms.append(_pad(ta, pad) @ b)
    if tb is not None:
        if b.ndim >= 2:
            terms.append(a @ _pad(tb, max(0, a.ndim - b.ndim)))
        elif a.ndim == 1:
            terms.append(tb @ a)
        elif a.ndim == 2:
            terms.append(tb @ a.T)
        else:                              # a @ (B, 1.., k, 1) -> squeeze the last axis
            t = _pad(make("expand_dims", tb, axes=(tb.ndim,)), a.ndim - 2)
            t = a @ t
            terms.append(make("squeeze", t, axes=(t.ndim - 1,)))
    return terms[0] if len(terms) == 1 else terms[0] + terms[1]


def _pad(t, k):
    """Insert `k` axes after the batch axis, so batch dimensions line up."""
    return make("expand_dims", t, axes=tuple(range(1, 1 + k))) if k else t


def _emit_matmul(p, node):
    """`a @ b`, parenthesised inside (and around) `*` and `/` for the reader's sake."""
    text, _ = infix("@", PREC_MUL + 1, left_strict=True)(p, node)
    return text, PREC_MUL - 1


def _canon_matmul(a, b):
    if a.op == "basis" and a.ndim == 2:   # I @ b
        return b
    if b.op == "basis" and b.ndim == 2:   # a @ I
        return a
    return None


defop("matmul", 2, shape=lambda args: matmul_shape(args[0].shape, args[1].shape),
      emit=_emit_matmul, traits=frozenset({"bilinear"}), domain=(REAL, REAL),
      canon=_canon_matmul, vjp=_matmul_vjp, jvp=_matmul_jvp, vmap=_matmul_vmap)

defbuiltin("matmul", ("x", "y"), lambda x, y: x @ y)
