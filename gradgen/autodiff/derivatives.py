"""The derivative graphs an entry point's emitted functions need: the gradient, VJP, JVP,
Hessian-vector product and full Hessian of one output with respect to some Params.

Everything here is graph building with the ops of the registry; names, docstrings and
code text are the business of `gradgen.codegen`. A `Derivative` carries the tables of
the sweeps (primal node id -> its cotangent or tangent) so the caller can name the
derivatives after their primals. The Jacobian of a non-scalar output is a batched JVP
(forward mode along the basis of each Param) or a batched VJP (forward mode along the
basis of the output cotangent through the VJP graph, which is linear in it), like the
Hessian; a loop's derivative is its scan's rule, built by the same sweeps.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ..dims import nominal_size
from ..ir import Node, builder, const, make, make_as_is
from .forward import SECOND_ORDER, batched_jvp, jvp
from .loops import checkpointing
from .reverse import vjp

__all__ = ["Derivative", "EntryDerivatives", "jacobian_mode"]

@dataclass
class Derivative:
    """The outputs of one derivative function and the sweep tables they came from."""

    outputs: list[Node]
    cotangents: dict[int, Node] = field(default_factory=dict)   # primal id -> cotangent
    tangents: dict[int, Node] = field(default_factory=dict)     # primal id -> tangent


class EntryDerivatives:
    """The derivatives of `output` with respect to `params` (input nodes). The gradient
    (seed 1) is built once and shared by grad, value_and_grad, hvp and hessian."""

    def __init__(self, output: Node, params: Sequence[Node], checkpoint: int | None = None,
                 names: dict | None = None):
        self.output = output
        self.params = list(params)
        self.checkpoint = checkpoint   # loops' VJPs: carried values saved every K steps
        self.names = names or {}       # the source's names of nodes (saved values' buffers)
        self._grad: Derivative | None = None
        # the forward sweep along tangent inputs (their ids) -> its outputs and table
        self._tangents: dict[tuple, tuple] = {}

    def gradient(self) -> Derivative:
        """The gradient of a scalar output: one cotangent per Param (zeros where the Param
        does not influence the output)."""
        if self._grad is None:
            with checkpointing(self.checkpoint, self.names):
                grads, table = vjp([self.output], [const(1)], self.params)
            self._grad = Derivative(self._zeros_for_none(grads), table)
        return Derivative(list(self._grad.outputs), self._grad.cotangents)

    def vjp(self, cotangent: Node) -> Derivative:
        """The cotangents of the Params for the output cotangent `cotangent` (an input).
        For a scalar output they are the gradient scaled by it (the VJP is linear in the
        cotangent): built on the gradient graph, not by a second reverse sweep."""
        if self.output.ndim == 0:
            grad = self.gradient()
            with builder().at(phase="backward"):   # `g * dmu` as is: no rule moves the
                # sign of dmu = -(...) outwards, so the function returns the gradient's names
                return Derivative([make_as_is("mul", cotangent, g) for g in grad.outputs],
                                  grad.cotangents)
        with checkpointing(self.checkpoint, self.names):
            grads, table = vjp([self.output], [cotangent], self.params)
        return Derivative(self._zeros_for_none(grads), table)

    def forward_tangents(self, tangents: Sequence[Node]) -> tuple[Node | None, dict[int, Node]]:
        """The forward sweep along one tangent (an input) per Param: the output's tangent
        (None for zero) and every tangent, by primal id. Built once per tangents, shared by
        the JVP and the HVP (which goes on through the gradient graph from it)."""
        key = tuple(map(id, tangents))
        if key not in self._tangents:
            (t,), table = jvp([self.output], {id(p): t for p, t in zip(self.params, tangents)},
                              phase="tangent")
            self._tangents[key] = t, table
        return self._tangents[key]

    def jvp(self, tangents: Sequence[Node]) -> Derivative:
        """The tangent of the output along one tangent (an input) per Param."""
        t, table = self.forward_tangents(tangents)
        if t is None:
            with builder().at(phase="tangent"):
                t = make("zeros_like", self.output)
        return Derivative([t], tangents=table)

    def hvp(self, directions: Sequence[Node]) -> Derivative:
        """H v, one block per Param: forward mode over the gradient graph, on from the
        forward part's tangents (`forward_tangents`: the JVP's, for the same inputs). The
        tangents of the gradient's nodes are of phase "tangent of grad"."""
        grad = self.gradient()
        _, known = self.forward_tangents(directions)
        hv, table = jvp(grad.outputs, dict(known), phase="tangent")
        with builder().at(phase=SECOND_ORDER):
            hv = [h if h is not None else make("zeros_like", p)
                  for h, p in zip(hv, self.params)]
        return Derivative(hv, grad.cotangents, table)

    def hessian(self) -> list[list[Node]]:
        """The Hessian blocks, `[i][j]` = d(grad_i)/d(p_j) of shape p_i.shape + p_j.shape,
        by pushing the standard basis of p_j through the gradient graph in batched
        forward mode: matrix expressions, no loop over directions. The Hessian is
        symmetric, so of two blocks `[i][j]` and `[j][i]` only the one with fewer
        directions (the smaller Param's column) is pushed and the other is its transpose;
        a diagonal block needs no transpose at all (`_unbatch`). Raises ShapeError for an
        op without a batched rule."""
        grads = self.gradient().outputs
        params = self.params
        order = [(nominal_size(p.shape), j) for j, p in enumerate(params)]
        blocks: list[list[Node | None]] = [[None] * len(params) for _ in params]
        with builder().at(phase="backward"):
            for j, pj in enumerate(params):   # column j: d(grad_i)/d(p_j) for these i
                rows = [i for i in range(len(params)) if i == j or order[j] < order[i]]
                for i, col in zip(rows, _columns([grads[i] for i in rows], pj)):
                    if col is not None:
                        blocks[i][j] = _unbatch(col, params[i], pj, i == j)
            for i, pi in enumerate(params):
                for j, pj in enumerate(params):
                    if order[i] < order[j] and blocks[j][i] is not None:
                        blocks[i][j] = _swap_blocks(blocks[j][i], pj.ndim, pi.ndim)
            return [[blk if blk is not None else _zero_block(pi, pj)
                     for pj, blk in zip(params, row)] for pi, row in zip(params, blocks)]

    def jacobian(self, mode: str, cotangent: Node | None = None) -> list[Node]:
        """The Jacobian blocks of a non-scalar output, `[j]` = d(out)/d(p_j) of shape
        out.shape + p_j.shape, in closed form (no loop over directions).

        `mode="forward"`: the basis of each p_j pushed through the forward graph (batched
        JVP), one batch of size(p_j) directions per Param. `mode="reverse"`: the basis of
        the output cotangent `cotangent` (an input node of the output's shape, which the
        VJP graph reads) pushed through the VJP graph (batched JVP in the cotangent: the
        VJP is linear in it), one batch of size(out) rows for all Params. Raises
        ShapeError for an op without a batched rule."""
        b = builder()
        out = self.output
        with b.at(phase="backward"):
            if mode == "forward":
                blocks = []
                for pj in self.params:
                    (col,) = _columns([out], pj)
                    blocks.append(None if col is None else _unbatch(col, out, pj))
            else:
                assert cotangent is not None
                with checkpointing(self.checkpoint, self.names):
                    grads, _ = vjp([out], [cotangent], self.params)
                live = [g for g in grads if g is not None]
                # the basis of the output's space (`basis(out)`: out's shape and dtype,
                # as g's) seeds g; the VJP is linear in g, so the rows do not read g
                rows = iter(batched_jvp(live, {id(cotangent): make("basis", out)}))
                blocks = [None if g is None else _rows(next(rows), out, pj)
                          for g, pj in zip(grads, self.params)]
            return [blk if blk is not None else _zero_block(out, pj)
                    for blk, pj in zip(blocks, self.params)]

    def _zeros_for_none(self, grads: list[Node | None]) -> list[Node]:
        """Explicit zeros for the Params that do not influence the output."""
        with builder().at(phase="backward"):
            return [g if g is not None else make("zeros_like", p)
                    for g, p in zip(grads, self.params)]


def jacobian_mode(out: Node, params: Sequence[Node],
                  hints: Mapping[str, int] | None = None) -> str:
    """"forward" when the Params have together no more elements than the output (a batch
    of one direction per Param element is then the smaller), else "reverse" (one row per
    output element); a named dimension counts its size in `hints` (`--hint N=5000`), else
    `dims.NOMINAL_SIZE`."""
    inputs = sum(nominal_size(p.shape, hints) for p in params)
    return "forward" if inputs <= nominal_size(out.shape, hints) else "reverse"


def _columns(outputs: list[Node], pj: Node) -> list[Node | None]:
    """The derivatives of `outputs` along the standard basis of `pj`, batched (a leading
    axis of size(pj)); for a 0-d `pj` the one direction is the number 1, pushed by a plain
    JVP (no batch axis: the block reads `6 * a`, not `(np.eye(1)... * 6 * a).reshape(())`)."""
    if pj.ndim == 0:
        return jvp(outputs, {id(pj): const(1)})[0]
    return batched_jvp(outputs, {id(pj): make("basis", pj)})


def _unbatch(col: Node, pi: Node, pj: Node, symmetric: bool = False) -> Node:
    """A batched tangent of shape (size_j,) + p_i.shape as a block p_i.shape + p_j.shape.

    `symmetric`: the block is a diagonal block of a Hessian, d(grad_p)/dp, which equals its
    own transpose (the order of second partial derivatives does not matter), so the batch
    is the block as it is, with no transpose (`H = H_rows.T` would be a view of its
    transpose that only differs by rounding). For a 0-d `pj` (`_columns`: no batch axis)
    the tangent is the block."""
    if pj.ndim == 0:
        return col
    block = col
    if not symmetric:
        block = make("transpose", col, axes=tuple(range(1, 1 + pi.ndim)) + (0,))
    return make("reshape", block, shape=tuple(pi.shape) + tuple(pj.shape))


def _swap_blocks(block: Node, k: int, m: int) -> Node:
    """The block d(grad_i)/d(p_j) from its mirror d(grad_j)/d(p_i) (of shape p_j.shape +
    p_i.shape, k and m axes): the two groups of axes swapped (nothing to swap when one
    Param is a scalar)."""
    if k == 0 or m == 0:
        return block
    return make("transpose", block, axes=tuple(range(k, k + m)) + tuple(range(k)))


def _rows(rows: Node | None, out: Node, pj: Node) -> Node | None:
    """A batched cotangent of shape (size_out,) + p_j.shape as a block out.shape + p_j.shape."""
    if rows is None:
        return None
    return make("reshape", rows, shape=tuple(out.shape) + tuple(pj.shape))


def _zero_block(pi: Node, pj: Node) -> Node:
    """A zero Hessian block of shape pi.shape + pj.shape (dtype of pi): `np.zeros(...)`."""
    return make("full", pi, value=0, shape=tuple(pi.shape) + tuple(pj.shape))
