"""Fusion of known patterns into cheaper or numerically stabler forms.

The rules are the ops' rules tagged `stabilize` and `fuse` (`gradgen/ops/`, `@rewrite`):
the logistic function written out, `1 / (1 + exp(-z))`, becomes `sigmoid(z)`;
`log(sigmoid(z))` becomes `-softplus(-z)`; `log(exp(z) / s)`, which is what
`log(softmax(x))` lowers to, becomes `z - log(s)` (the log-softmax, finite where the
softmax underflows); a transposed product of transposes, `(A.T @ B.T).T`, becomes
`B @ A`, so no transpose is materialised around a product. Like `simplify`, a
compilation's builder applies them as nodes are built.

Other fusions need no rule: the derivatives of `sigmoid`, `tanh` and `exp` are written in
terms of their saved outputs by their VJP rules, and the gradient of the softmax
cross-entropy comes out as `softmax - Y` because the softmax lowering shares its
exponentials with the value (`gradgen/ops/nn.py`).
"""

from __future__ import annotations

from ..ir import Graph
from .rules import apply


def fuse(graph: Graph) -> Graph:
    """The graph with every known pattern fused."""
    return apply(graph, ("stabilize", "fuse"))
