"""Matrix-chain ordering: `(A @ B) @ x` becomes `A @ (B @ x)` when that is cheaper.

Costs are multiply-add counts from the symbolic shapes. A reassociation is made only when
it is cheaper for every size assignment tried: the sizes given as hints (`--hint N=10000`)
and, for the other dimensions, a fixed set of small and large values, so the choice is
deterministic and never a gamble on unknown sizes. Only a product used once is split up,
so no work is duplicated. The products are the op table's "matrix_product" nodes.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable

import sympy

from ..ir import Graph, Node, any_made, builder, make, topo_order
from .rebuild import rebuild

SAMPLE_SIZES = (2, 10, 1000)
# Cost comparisons try every combination of SAMPLE_SIZES for the free dimensions: with
# more than this many the written order is kept (3 ** 16 evaluations would take hours).
MAX_SAMPLED_DIMS = 6


def matchain(graph: Graph, hints: dict[str, int] | None = None) -> Graph:
    """The graph with every chain of matrix products in its cheaper order.

    One sweep moves a product by one place in a chain, so sweeps repeat until none changes
    anything (each change makes the chain strictly cheaper for every sampled size, so this
    ends; a chain of k products needs at most about k sweeps).
    """
    if not any_made("matchain", graph, _has_chain) or not _has_chain(graph.order):
        return graph   # (no product of products made in the compilation, or in `graph`)
    names = dict(graph.names)
    outputs, order = list(graph.outputs), graph.order
    for _ in range(sum(map(_is_product, graph.order)) + 1):
        new = reorder_matrix_chains(outputs, names, hints, order)
        if all(a is b for a, b in zip(new, outputs)):
            break
        outputs, order = new, None
    if all(a is b for a, b in zip(outputs, graph.outputs)):
        return graph
    return graph.with_outputs(outputs, names)


def _is_product(n: Node) -> bool:
    """n is a matrix product (the op table's trait "matrix_product")."""
    return builder().ops[n.op].has("matrix_product")


def _has_chain(order: Iterable[Node]) -> bool:
    """Some product has a product argument (op names looked up in a set: this scans every
    node of every graph)."""
    products = builder().with_trait("matrix_product")
    return any(n.op in products and any(a.op in products for a in n.args) for n in order)


def reorder_matrix_chains(outputs: list[Node], names: dict | None = None,
                          hints: dict[str, int] | None = None,
                          order: list[Node] | None = None) -> list[Node]:
    """The outputs with every chain of two matrix products in its cheaper order."""
    hints = dict(hints or {})
    order = topo_order(outputs) if order is None else order
    if not _has_chain(order):
        return list(outputs)   # no chain: nothing to rebuild

    def rule(n: Node, uses: Counter) -> Node | None:
        """The product reassociated for as long as that is cheaper: `((A @ B) @ C) @ x`
        becomes `A @ (B @ (C @ x))` in one call (each step makes it strictly cheaper)."""
        out = None
        while _is_product(n):
            step = reassociate(n, uses)
            if step is None:
                break
            out = n = step
        return out

    def reassociate(n: Node, uses: Counter) -> Node | None:
        a, b = n.args
        if _is_product(a) and uses[id(a)] == 1 and b.ndim <= 2:
            A, B = a.args
            if A.ndim == 2 and B.ndim == 2 and _cheaper((A, B, b), False, hints):
                return make(n.op, A, make(n.op, B, b))
        if _is_product(b) and uses[id(b)] == 1 and a.ndim <= 2:
            B, C = b.args
            if B.ndim == 2 and C.ndim == 2 and _cheaper((a, B, C), True, hints):
                return make(n.op, make(n.op, a, B), C)
        return None

    return rebuild(outputs, rule, names, order)


def _flops(x: tuple, y: tuple) -> sympy.Expr:
    """Multiply-adds of a product of shapes x @ y (1-D operands as in NumPy)."""
    rows = x[0] if len(x) == 2 else sympy.Integer(1)
    cols = y[1] if len(y) == 2 else sympy.Integer(1)
    return rows * x[-1] * cols


def _product(x: tuple, y: tuple) -> tuple:
    return tuple(x[:-1]) + tuple(y[1:])


def _cheaper(chain: tuple, left_first: bool, hints: dict) -> bool:
    """Whether the other association of x @ y @ z than the current one costs less for
    every size assignment tried (`left_first`: the current one is x @ (y @ z))."""
    key = (tuple(tuple(m.shape) for m in chain), left_first, tuple(sorted(hints.items())))
    memo = builder().memo.setdefault("matchain_cheaper", {})
    if key not in memo:
        memo[key] = _compare(chain, left_first, hints)
    return memo[key]


def _compare(chain: tuple, left_first: bool, hints: dict) -> bool:
    x, y, z = (tuple(m.shape) for m in chain)
    left = _flops(x, y) + _flops(_product(x, y), z)      # (x @ y) @ z
    right = _flops(y, z) + _flops(x, _product(y, z))     # x @ (y @ z)
    saving = sympy.expand((right - left) if left_first else (left - right))
    if saving == 0:
        return False
    free = sorted((s for s in saving.free_symbols if s.name not in hints), key=lambda s: s.name)
    if len(free) > MAX_SAMPLED_DIMS:
        return False
    # Exact integer evaluation by substitution (sympy.lambdify would exec generated code
    # that names the source's dimensions).
    saving = saving.xreplace({s: sympy.Integer(hints[s.name]) for s in saving.free_symbols
                              if s.name in hints})
    return all(bool(saving.xreplace(dict(zip(free, map(sympy.Integer, sizes)))) > 0)
               for sizes in itertools.product(SAMPLE_SIZES, repeat=len(free)))
