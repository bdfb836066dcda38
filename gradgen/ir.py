"""The IR: an immutable, hash-consed DAG of operation nodes.

Every node is created through `make`, which looks the operation up in the registry,
applies its canonicalisation, infers the shape and interns the node in the current
`Builder`: structurally identical subexpressions are one object (CSE for free).
Nodes never change after creation; passes build new nodes.
"""

from __future__ import annotations

import contextlib
import functools
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import sympy

from .dims import Shape, as_expr, fmt_shape, same_shape
from .errors import InternalError, WorkLimit

__all__ = [
    "RULE_KINDS",
    "Builder",
    "Graph",
    "Node",
    "Origin",
    "building",
    "const",
    "make",
    "pretty",
    "shared",
    "topo_order",
    "verify",
]


@dataclass(frozen=True)
class Origin:
    """The source statement a node was created for (`line` is 1-based)."""

    line: int
    text: str


class Node:
    """One operation applied to argument nodes. Immutable; compared by identity."""

    __slots__ = ("args", "attrs", "dtype", "op", "origin", "phase", "serial", "shape")

    def __init__(self, op: str, args: tuple[Node, ...], attrs: tuple, shape: Shape, dtype: str,
                 origin: Origin | None, phase: str, serial: int):
        for name, value in (("op", op), ("args", args), ("attrs", attrs), ("shape", shape),
                            ("dtype", dtype), ("origin", origin), ("phase", phase),
                            ("serial", serial)):
            object.__setattr__(self, name, value)

    def __setattr__(self, name, value):
        raise AttributeError("IR nodes are immutable")

    def attr(self, name: str, default=None):
        """The value of attribute `name`."""
        for k, v in self.attrs:
            if k == name:
                return v
        return default

    @property
    def kw(self) -> dict:
        """Attributes as a dict."""
        return dict(self.attrs)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def is_const(self) -> bool:
        return self.op == "const"

    @property
    def value(self) -> sympy.Expr:
        """The value of a `const` node."""
        return self.attr("value")

    def __repr__(self) -> str:
        attrs = "".join(f", {k}={v}" for k, v in self.attrs)
        return f"<{self.op}#{self.serial}{attrs} : {fmt_shape(self.shape)}>"

    # Arithmetic builds nodes, so derivative rules read like the maths they encode.
    def __add__(self, other): return make("add", self, _lift(other))
    def __radd__(self, other): return make("add", _lift(other), self)
    def __sub__(self, other): return make("sub", self, _lift(other))
    def __rsub__(self, other): return make("sub", _lift(other), self)
    def __mul__(self, other): return make("mul", self, _lift(other))
    def __rmul__(self, other): return make("mul", _lift(other), self)
    def __truediv__(self, other): return make("div", self, _lift(other))
    def __rtruediv__(self, other): return make("div", _lift(other), self)
    def __pow__(self, other): return make("pow", self, _lift(other))
    def __matmul__(self, other): return make("matmul", self, other)
    def __neg__(self): return make("neg", self)

    @property
    def T(self) -> Node:
        return make("transpose", self, axes=tuple(reversed(range(self.ndim))))


def _lift(x) -> Node:
    return x if isinstance(x, Node) else const(x)


def const(value) -> Node:
    """A scalar constant: a number or a sympy expression of dimensions."""
    if isinstance(value, bool):
        raise InternalError("boolean constants are not supported")
    cache = builder().memo.setdefault("const", {})
    key = (type(value), value)
    node = cache.get(key)
    if node is None:
        v = as_expr(value)
        if v.is_number and not (v.is_Rational or v.is_Float or v in (sympy.pi, sympy.E)) \
                and (v.has(sympy.Float) or sympy.count_ops(v) > 8):
            # a plain float (exp(2.5), a long expression); small exact ones such as
            # 2 * pi or log(2 * pi) stay exact, to print as written (`np.log(2 * np.pi)`)
            v = sympy.Float(float(v))
        node = cache[key] = make("const", value=v)  # Float: float(v) round-trips exactly
    return node


# Kinds of rewrite rules an op may declare (`OpDef.rule(kind)`), in the order they apply:
# algebraic simplification (canonical forms), then fusion of known patterns.
RULE_KINDS = ("simplify", "fuse")


@dataclass
class Builder:
    """The interning table of one compilation, and the context new nodes record."""

    table: dict = field(default_factory=dict)
    origin: Origin | None = None
    phase: str = "forward"
    serial: int = 0
    # Work done so far (nodes created, nodes scheduled) and the most allowed: past it,
    # `charge` raises WorkLimit. None: no limit.
    work: int = 0
    limit: int | None = None
    memo: dict = field(default_factory=dict)   # per-compilation caches of analyses
    # The kinds of rewrite rules (`RULE_KINDS`) that `make` applies as nodes are built, and
    # whether structurally equal nodes are shared. The frontend builds the graph as written
    # (no rules, no sharing) and the passes rewrite it; derivatives are built with every
    # rule applied eagerly, which keeps the intermediate graphs small.
    rules: tuple[str, ...] = RULE_KINDS
    intern: bool = True
    # id(node) -> the rule kinds the node is known to be a fixed point of (it was built, or
    # found, with those rules applied): passes skip such nodes.
    settled: dict = field(default_factory=dict)

    def charge(self, units: int) -> None:
        """Count `units` of work; raise WorkLimit past `limit`."""
        self.work += units
        if self.limit is not None and self.work > self.limit:
            raise WorkLimit(f"more than {self.limit:,} units of work")

    @contextlib.contextmanager
    def at(self, origin: Origin | None = None, phase: str | None = None) -> Iterator[None]:
        """Record `origin`/`phase` on the nodes created inside the block."""
        saved = self.origin, self.phase
        if origin is not None:
            self.origin = origin
        if phase is not None:
            self.phase = phase
        try:
            yield
        finally:
            self.origin, self.phase = saved

    @contextlib.contextmanager
    def using(self, rules: Iterable[str] | None = None,
              intern: bool | None = None) -> Iterator[None]:
        """Build the nodes inside the block with only these rule kinds applied, and with
        or without sharing."""
        saved = self.rules, self.intern
        if rules is not None:
            self.rules = tuple(k for k in RULE_KINDS if k in set(rules))
        if intern is not None:
            self.intern = intern
        try:
            yield
        finally:
            self.rules, self.intern = saved


_current: list[Builder] = []


@contextlib.contextmanager
def building() -> Iterator[Builder]:
    """Open a fresh interning table for one compilation."""
    b = Builder()
    _current.append(b)
    try:
        yield b
    finally:
        _current.pop()


def builder() -> Builder:
    if not _current:
        raise InternalError("IR nodes can only be built inside ir.building()")
    return _current[-1]


@functools.cache
def _registry() -> dict:
    """The op table (imported on first use: the ops import this module)."""
    from .ops.registry import REGISTRY

    return REGISTRY


def make(op: str, *args: Node, **attrs) -> Node:
    """Create (or find) the node `op(*args, **attrs)`, shape-checked, after the current
    builder's rewrite rules (`Builder.rules`) had their say."""
    opdef = _registry().get(op)
    if opdef is None:
        raise InternalError(f"unknown operation {op!r}")
    b = builder()
    b.work += 1
    if b.limit is not None and b.work > b.limit:
        raise WorkLimit(f"more than {b.limit:,} units of work")
    for kind in b.rules:
        rule = opdef.rule(kind)
        if rule is not None:
            simpler = rule(*args, **attrs)
            if simpler is not None:
                return simpler
    items = tuple(sorted(attrs.items()))
    # Attribute values are hashable (ints, tuples, strings, sympy expressions); constants
    # that compare equal (1 and 1.0) may share a node: as Python scalars they act alike.
    key = _key(op, args, items)
    node = b.table.get(key) if b.intern else None
    if node is None:
        shape, dtype = opdef.infer(args, attrs)
        b.serial += 1
        node = Node(op, tuple(args), items, tuple(shape), dtype, b.origin, b.phase, b.serial)
        if b.intern:
            b.table[key] = node
    if b.rules and b.intern:   # the rules had nothing to say: a fixed point of them
        _settled(b, node, b.rules)
    return node


def _key(op: str, args, attrs: tuple) -> tuple:
    """The interning key of a node: equal keys, one node."""
    return (op, tuple(id(a) for a in args), attrs)


def _settled(b: Builder, node: Node, kinds: tuple[str, ...]) -> None:
    """Record in `b.settled` that no rule of these kinds rewrites `node`."""
    known = b.settled.get(id(node))
    if known is not kinds and known != RULE_KINDS:
        b.settled[id(node)] = kinds if known is None else \
            tuple(k for k in RULE_KINDS if k in known or k in kinds)


def topo_order(roots: Iterable[Node]) -> list[Node]:
    """Every node reachable from `roots`, arguments before users (iterative DFS).

    Inside `building()` the answer is memoised per tuple of roots (nodes never change, and
    the compilation's table keeps them alive); every call returns a new list."""
    roots = tuple(roots)
    memo = _current[-1].memo.setdefault("topo_order", {}) if _current else None
    if memo is not None:
        order = memo.get(roots)
        if order is not None:
            return list(order)
    order = []
    seen: set[Node] = set()   # Nodes hash by identity
    add, append = seen.add, order.append
    for root in roots:
        if root in seen:
            continue
        add(root)
        stack = [(root, iter(root.args))]
        push, pop = stack.append, stack.pop
        while stack:
            node, it = stack[-1]
            for a in it:
                if a not in seen:
                    add(a)
                    push((a, iter(a.args)))
                    break
            else:
                pop()
                append(node)
    if memo is not None:
        memo[roots] = order
        return list(order)
    return order


def use_counts(order: Sequence[Node], outputs: Iterable[Node]) -> Counter:
    """How many consumers each node (by id) has in `order`, counting each output once more."""
    uses: Counter = Counter([id(a) for n in order for a in n.args])
    for o in outputs:
        uses[id(o)] += 1
    return uses


def analysis(name: str, node: Node, rule) -> object:
    """The value of a bottom-up analysis at `node`: `rule(n, [values of n's args])`,
    memoised per compilation under `name` (iterative, so deep graphs are fine)."""
    memo = builder().memo.setdefault(name, {})
    if id(node) in memo:
        return memo[id(node)]
    # Post-order DFS over the nodes not memoised yet, computing each once its arguments are.
    seen = {id(node)}
    stack = [(node, iter(node.args))]
    while stack:
        n, it = stack[-1]
        for a in it:
            if id(a) not in memo and id(a) not in seen:
                seen.add(id(a))
                stack.append((a, iter(a.args)))
                break
        else:
            stack.pop()
            memo[id(n)] = rule(n, [memo[id(a)] for a in n.args])
    return memo[id(node)]


@dataclass(frozen=True)
class Graph:
    """A computation: input nodes, output nodes, and readable names for some nodes."""

    inputs: tuple[Node, ...]
    outputs: tuple[Node, ...]
    names: dict = field(default_factory=dict, compare=False)  # Node -> str

    @functools.cached_property
    def order(self) -> list[Node]:
        """Every node the outputs need, arguments before users (computed once)."""
        return topo_order(self.outputs)

    def with_outputs(self, outputs: Sequence[Node], names: dict | None = None) -> Graph:
        """This graph with other outputs (and names); itself when nothing changed."""
        outputs = tuple(outputs)
        if names is None and all(a is b for a, b in zip(outputs, self.outputs)):
            return self
        return Graph(self.inputs, outputs, self.names if names is None else names)


def settle(node: Node, kind: str) -> None:
    """Record that no rule of `kind` rewrites `node` (when the node is in the table, which
    keeps it alive, so its id is not reused)."""
    b = builder()
    if b.table.get(_key(node.op, node.args, node.attrs)) is node:
        _settled(b, node, (kind,))


def shared(node: Node) -> Node:
    """The node of the current builder's table structurally equal to `node` (`node` itself,
    registered, when there is none): how a graph built without sharing gets it."""
    return builder().table.setdefault(_key(node.op, node.args, node.attrs), node)


def verify(graph: Graph) -> None:
    """Check the graph's invariants; raises InternalError on a violation."""
    registry = _registry()
    inputs = set(map(id, graph.inputs))
    for node in topo_order(graph.outputs):
        opdef = registry.get(node.op)
        if opdef is None:
            raise InternalError(f"{node!r}: unknown operation")
        if opdef.nargs is not None and len(node.args) != opdef.nargs:
            raise InternalError(f"{node!r}: expected {opdef.nargs} arguments, got {len(node.args)}")
        if node.op == "input" and id(node) not in inputs:
            raise InternalError(f"{node!r}: input node is not an input of the graph")
        shape, dtype = opdef.infer(node.args, dict(node.attrs))
        if not same_shape(tuple(shape), node.shape) or dtype != node.dtype:
            raise InternalError(f"{node!r}: stored shape {fmt_shape(node.shape)} disagrees with "
                                f"the shape rule's {fmt_shape(shape)}")


def pretty(graph: Graph, extra_names: dict | None = None) -> str:
    """A stable printed form: one line per node, numbered in topological order."""
    names = dict(graph.names)
    if extra_names:
        names.update(extra_names)
    order = topo_order(graph.outputs)
    num = {id(n): i for i, n in enumerate(order)}
    lines = []
    for n in order:
        args = " ".join(f"%{num[id(a)]}" for a in n.args)
        attrs = ", ".join(f"{k}={_fmt_attr(v)}" for k, v in n.attrs)
        head = n.op + (f"[{attrs}]" if attrs else "")
        ty = fmt_shape(n.shape) + ("" if n.dtype == "float" else f" {n.dtype}")
        label = f"  # {names[n]}" if n in names else ""
        lines.append(f"%{num[id(n)]} = {head}{(' ' + args) if args else ''} : {ty}{label}")
    outs = ", ".join(f"%{num[id(o)]}" for o in graph.outputs)
    lines.append(f"return {outs}")
    return "\n".join(lines)


def _fmt_attr(v) -> str:
    if isinstance(v, sympy.Basic):
        from .dims import print_expr
        return print_expr(v)
    if isinstance(v, tuple) and v and isinstance(v[0], sympy.Basic):
        return fmt_shape(v)
    return repr(v)
