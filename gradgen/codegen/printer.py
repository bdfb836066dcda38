"""Expression printing: one emission rule per op (in the registry), precedence-aware
parentheses here. The array namespace is the one name `ns`, so another array library
could be targeted by changing it."""

from __future__ import annotations

import sympy

from ..dims import as_expr, print_scalar
from ..ir import Node
from ..ops.registry import PREC_ATOM, REGISTRY

_ARITHMETIC = frozenset({"add", "subtract", "multiply", "divide", "power"})


class Printer:
    """Prints nodes whose arguments already have code (a name or an inlined expression)."""

    def __init__(self, names: dict[str, str] | None = None):
        self.names = dict(names or {})   # canonical -> actual module-level names
        self.ns = self.ref("np")
        self.code: dict[int, tuple[str, int]] = {}
        self.dims_used: set[sympy.Symbol] = set()
        self.preludes: dict[str, str] = {}
        self.scalars: set[int] = set()   # nodes printed as Python numbers (see emit)

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
        self.dims_used |= {s for s in as_expr(value).free_symbols}
        return print_scalar(value, self.names)

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
        if node.args and "elementwise" in opdef.traits and all(
                a.op == "const" or id(a) in self.scalars for a in node.args):
            # A function of numbers and dimension sizes that folding left alone (log(N),
            # arithmetic too large to fold): a Python number. Arithmetic on such numbers
            # goes through the NumPy ufunc, in float64: in Python, 1 / 0 and 10.0 ** 400
            # raise where NumPy gives inf. A NumPy float64 would turn float32 arrays into
            # float64: as a Python float it takes their dtype.
            if opdef.dtype == "float":   # a comparison stays a boolean for where()
                self.scalars.add(id(node))
            if len(node.args) == 2 and opdef.ufunc in _ARITHMETIC:
                args = ", ".join(f"{self.ns}.float64({self.arg(node, i, 0)})" for i in range(2))
                return f"{self.ref('float')}({self.ns}.{opdef.ufunc}({args}))", PREC_ATOM
            return f"{self.ref('float')}({opdef.emit(self, node)[0]})", PREC_ATOM
        return opdef.emit(self, node)

    def emit_stmt(self, node: Node, target: str) -> list[str]:
        """Statements computing `node` into `target` (ops that need more than an expression)."""
        opdef = REGISTRY[node.op]
        return opdef.stmt(self, node, target)

    def set_name(self, node: Node, name: str) -> None:
        self.code[id(node)] = (name, PREC_ATOM)



