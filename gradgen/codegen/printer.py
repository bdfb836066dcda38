"""Expression printing: one emission rule per op (in the registry), precedence-aware
parentheses here. The array namespace is the one name `ns`, so another array library
could be targeted by changing it."""

from __future__ import annotations

import sympy

from ..ir import Node
from ..ops.registry import PREC_ATOM, REGISTRY
from .sympy_print import print_scalar


class Printer:
    """Prints nodes whose arguments already have code (a name or an inlined expression)."""

    def __init__(self, names: dict[str, str] | None = None):
        self.names = dict(names or {})   # canonical -> actual module-level names
        self.ns = self.ref("np")
        self.code: dict[int, tuple[str, int]] = {}
        self.dims_used: set[sympy.Symbol] = set()
        self.preludes: dict[str, str] = {}

    def ref(self, name: str) -> str:
        """The name under which the module knows its own helper or builtin `name`
        (`_sigmoid`, `float`): another one when a user name takes it."""
        return self.names.get(name, name)

    # -- used by the emission rules of the ops
    def arg(self, node: Node, i: int, prec: int) -> str:
        """Code of argument `i` of `node`, parenthesised if it binds looser than `prec`."""
        text, p = self.code[id(node.args[i])]
        return f"({text})" if p < prec else text

    def code_of(self, node: Node) -> tuple[str, int]:
        """Code and precedence of an already printed node."""
        return self.code[id(node)]

    def scalar(self, value: sympy.Expr) -> tuple[str, int]:
        """A scalar constant (possibly an expression of dimension sizes)."""
        self.dims_used |= {s for s in sympy.sympify(value).free_symbols}
        return print_scalar(value, self.ns)

    def shape(self, shape) -> str:
        parts = [self.scalar(d)[0] for d in shape]
        return f"({parts[0]},)" if len(parts) == 1 else f"({', '.join(parts)})"

    def axes(self, axes: tuple[int, ...]) -> str:
        return str(axes[0]) if len(axes) == 1 else f"({', '.join(map(str, axes))})"

    # -- used by the scheduler
    def emit(self, node: Node) -> tuple[str, int]:
        """Code and precedence of `node` as an expression."""
        opdef = REGISTRY[node.op]
        if opdef.prelude:
            self.preludes[node.op] = opdef.prelude
        code = opdef.emit(self, node)
        if node.args and "elementwise" in opdef.traits:
            for a in node.args:
                if a.op != "const":
                    return code
            # A function of dimension sizes, like np.log(N), is a NumPy float64 that would
            # turn float32 arrays into float64; as a Python float it takes their dtype.
            return f"{self.ref('float')}({code[0]})", PREC_ATOM
        return code

    def emit_stmt(self, node: Node, target: str) -> list[str]:
        """Statements computing `node` into `target` (ops that need more than an expression)."""
        opdef = REGISTRY[node.op]
        return opdef.stmt(self, node, target)

    def set_name(self, node: Node, name: str) -> None:
        self.code[id(node)] = (name, PREC_ATOM)



