"""The seed of batched forward mode: the standard basis of a Param's space.

`basis(p)` has shape `(size,) + p.shape`: direction i is the i-th unit array. Pushing it
through the batched JVP rules (`vmap` in the registry) differentiates in every direction at
once, which is how `f_hessian` forms whole Hessian blocks in closed form.
"""

from __future__ import annotations

from ..dims import size
from .registry import PREC_CALL, defop


def _basis_shape(args):
    p = args[0]
    return (size(p.shape),) + tuple(p.shape)


def _emit_basis(p, node):
    like = node.args[0]
    n, _ = p.scalar(size(like.shape), integer=True)
    eye = p.creation("eye", n, p.dtype_of(p.arg(node, 0, PREC_CALL)))
    if like.ndim == 1:
        return eye, PREC_CALL
    return p.method(eye, "reshape", [p.shape(node.shape)]), PREC_CALL


defop("basis", 1, shape=_basis_shape, emit=_emit_basis, traits=frozenset({"nondiff"}),
      hint="basis")
