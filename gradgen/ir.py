"""The IR: an immutable, hash-consed DAG of operation nodes.

The IR knows no operation by name: a `Builder` is opened with an op table (name -> an
entry with `nargs`, `infer(args, attrs)`, `has(trait)`, `operator`) and, optionally, a
rewrite hook (the rule engine of gradgen/passes/rules.py), both fixed for the compilation.
Every node is created through `make`, which looks the operation up in the table, lets the
hook replace it by an equivalent node, infers the shape and interns the node: structurally
identical subexpressions are one object (CSE for free). Nodes never change after creation;
passes build new nodes.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
from collections import Counter
from collections.abc import Callable, Container, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import sympy

from .dims import as_expr, fmt_shape, same_shape
from .errors import InternalError, WorkLimit

__all__ = [
    "Builder",
    "ById",
    "Graph",
    "Node",
    "Origin",
    "Region",
    "building",
    "const",
    "make",
    "make_as_is",
    "memoised",
    "pretty",
    "topo_order",
    "unvisited",
    "verify",
]


@dataclass(frozen=True)
class Origin:
    """The source statement a node was created for (`line` is 1-based)."""

    line: int
    text: str




class _Fields:
    """The fields of a node, as slots (a `Node` adds the guard against assignment)."""

    __slots__ = ("args", "attrs", "dtype", "is_const", "is_input", "ndim", "op", "origin",
                 "phase", "serial", "shape")


class _Unfrozen(_Fields):
    """A node being filled in by `_intern` (plain stores: no guard to go through)."""

    __slots__ = ()


class Node(_Fields):
    """One operation applied to argument nodes. Immutable; compared by identity."""

    __slots__ = ()

    def __init__(self, *args, **kwargs):
        raise InternalError("IR nodes are made by the builder (ir.make), not Node(...)")

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
    def regions(self) -> tuple[Region, ...]:
        """The regions (bodies) this node holds, in attribute order; most nodes hold none."""
        return tuple(v for _, v in self.attrs if isinstance(v, Region))

    @property
    def value(self) -> sympy.Expr:
        """The value of a `const` node."""
        return self.attr("value")

    def __repr__(self) -> str:
        attrs = "".join(f", {k}={v}" for k, v in self.attrs)
        return f"<{self.op}#{self.serial}{attrs} : {fmt_shape(self.shape)}>"

    # Arithmetic builds nodes, so derivative rules read like the maths they encode: the op
    # of each Python operator is the one the op table declares for it (`OpDef.operator`).
    def __add__(self, other): return _apply("+", self, _lift(other))
    def __radd__(self, other): return _apply("+", _lift(other), self)
    def __sub__(self, other): return _apply("-", self, _lift(other))
    def __rsub__(self, other): return _apply("-", _lift(other), self)
    def __mul__(self, other): return _apply("*", self, _lift(other))
    def __rmul__(self, other): return _apply("*", _lift(other), self)
    def __truediv__(self, other): return _apply("/", self, _lift(other))
    def __rtruediv__(self, other): return _apply("/", _lift(other), self)
    def __pow__(self, other): return _apply("**", self, _lift(other))
    def __matmul__(self, other): return _apply("@", self, other)
    def __neg__(self): return _apply("-x", self)

    @property
    def T(self) -> Node:
        return _apply(".T", self, axes=tuple(reversed(range(self.ndim))))


_set_class = object.__setattr__
_Float = sympy.Float
_new_unfrozen = _Unfrozen.__new__


def _apply(operator: str, *args: Node, **attrs) -> Node:
    b = _current[-1] if _current else builder()
    op = b.operators.get(operator)
    if op is None:
        raise InternalError(f"the op table has no op for the operator {operator!r}")
    return _make(b, op, args, attrs)


def _lift(x) -> Node:
    return x if isinstance(x, Node) else const(x)


def const(value) -> Node:
    """A scalar constant: a number or a sympy expression of dimensions."""
    if isinstance(value, bool):
        raise InternalError("boolean constants are not supported")
    cache = builder().memo.setdefault("const", {})
    # A sympy Float hashes as float(value), worked out anew each time (~1.6 us, most of a
    # cached look-up): its key is what its `==` compares instead, its mpf and precision.
    key = (type(value), value) if type(value) is not _Float else \
        (_Float, value._mpf_, value._prec)
    node = cache.get(key)
    if node is None:
        v = as_expr(value)
        if v.is_number and not (v.is_Rational or v.is_Float or v in (sympy.pi, sympy.E)) \
                and (v.has(sympy.Float) or sympy.count_ops(v) > 8):
            # a plain float (exp(2.5), a long expression); small exact ones such as
            # 2 * pi or log(2 * pi) stay exact, to print as written (`np.log(2 * np.pi)`)
            v = sympy.Float(float(v))
        node = cache[key] = make(builder().const_op, value=v)  # Float: round-trips exactly
    return node


# The rewrite hook of a builder: (op entry, args, attrs) -> an equivalent node, or None.
Rewrite = Callable[[object, tuple, dict], "Node | None"]


@dataclass
class Builder:
    """The interning table of one compilation, and the context new nodes record.

    `ops` (the op table) and `rewrite` (the rules `make` applies) are given at creation and
    fixed: what a node becomes never depends on where it is built."""

    ops: Mapping[str, object]
    rewrite: Rewrite | None = None
    table: dict = field(default_factory=dict)
    origin: Origin | None = None
    phase: str = "forward"
    serial: int = 0
    # Work done so far (nodes created, nodes scheduled) and the most allowed: past it,
    # `charge` raises WorkLimit. None: no limit.
    work: int = 0
    limit: int | None = None
    memo: dict = field(default_factory=dict)   # per-compilation caches of analyses
    # op name -> (is_const, is_input) of its nodes, read off the op table once
    leaves: dict = field(default_factory=dict, repr=False)
    # Read off the op table: Python operator -> op name, and the scalar constant leaf.
    operators: dict = field(init=False, repr=False)
    const_op: str = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.operators = {d.operator: name for name, d in self.ops.items()
                          if getattr(d, "operator", None)}
        consts = [name for name, d in self.ops.items() if d.has("constant")]
        if len(consts) != 1:
            raise InternalError("the op table needs exactly one op with the trait 'constant'")
        self.const_op = consts[0]

    def with_trait(self, trait: str) -> frozenset[str]:
        """The names of the table's ops that have `trait` (looked up once per builder: the
        passes ask for every graph)."""
        key = ("with_trait", trait)
        found = self.memo.get(key)
        if found is None:
            found = self.memo[key] = frozenset(n for n, d in self.ops.items() if d.has(trait))
        return found

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


_current: list[Builder] = []


@contextlib.contextmanager
def building(ops: Mapping[str, object], rewrite: Rewrite | None = None) -> Iterator[Builder]:
    """Open a fresh interning table for one compilation, over the op table `ops`; `make`
    applies `rewrite` (None: every node is built as asked)."""
    b = Builder(ops, rewrite)
    _current.append(b)
    try:
        yield b
    finally:
        _current.pop()


def builder() -> Builder:
    if not _current:
        raise InternalError("IR nodes can only be built inside ir.building()")
    return _current[-1]


def memo() -> dict:
    """The compilation's memo (`Builder.memo`), or an empty dict outside `building()`."""
    return _current[-1].memo if _current else {}


def made_since(key: str) -> Iterable[Node]:
    """The nodes the builder made since the last call with `key` (every node at the first),
    in the order they were made (arguments first): for a pass that looks for a rare
    pattern once per compilation, each node once, rather than in every graph it is in."""
    b = builder()
    start = b.memo.get(("made since", key), 0)
    b.memo[("made since", key)] = end = len(b.table)
    # (taken from the end: skipping the `start` nodes seen already would cost a step each)
    return reversed(list(itertools.islice(reversed(b.table.values()), end - start)))


def made_here(graph: Graph) -> bool:
    """Whether the builder made the outputs of `graph` (so `made_since` saw its nodes)."""
    table = builder().table
    return all(table.get((o.op, o.args, o.attrs)) is o for o in graph.outputs)


def any_made(key: str, graph: Graph, test: Callable[[Iterable[Node]], bool]) -> bool:
    """Whether `test` found what it looks for among the nodes the builder made (asked of
    those made since the last call with `key`, `made_since`; once it did, True for the
    rest of the compilation). False: no node of `graph` has it, and a pass looking for it
    need not walk `graph`. True for a graph the builder did not make."""
    if not made_here(graph):
        return True
    found = builder().memo.setdefault(("any made", key), [False])
    if not found[0]:
        found[0] = test(made_since(key))
    return found[0]


# The memo key of the names for temporaries (id -> name) that do not make a node a variable
# as a graph's `names` do: the scheduler takes them as suggestions (codegen/naming.py).
TEMPORARY_NAMES = "temporary names"


def carry_names(old: Node, new: Node, names: dict | None = None) -> None:
    """`new`, which replaces `old` in a rebuilt graph, takes `old`'s name in `names` and
    its temporary's name (`TEMPORARY_NAMES`), where it has none of its own."""
    if names is not None and old in names:
        names.setdefault(new, names[old])
    soft = _current[-1].memo.get(TEMPORARY_NAMES) if _current else None
    if soft and id(old) in soft:
        soft.setdefault(id(new), soft[id(old)])


def make(op: str, *args: Node, **attrs) -> Node:
    """Create (or find) the node `op(*args, **attrs)`, shape-checked, after the builder's
    rewrite hook had its say (so every node `make` returns is a fixed point of it)."""
    return _make(_current[-1] if _current else builder(), op, args, attrs)


def _make(b: Builder, op: str, args: tuple, attrs: dict) -> Node:
    """`make` in the builder `b` (the Node operators call it directly: one frame less on
    the path every node takes)."""
    opdef = b.ops.get(op)
    if opdef is None:
        raise InternalError(f"unknown operation {op!r}")
    work = b.work = b.work + 1
    if b.limit is not None and work > b.limit:
        raise WorkLimit(f"more than {b.limit:,} units of work")
    rewrite = b.rewrite
    if rewrite is not None:
        simpler = rewrite(opdef, args, attrs)
        if simpler is not None:
            return simpler
    return _intern(b, opdef, op, args, attrs)


def make_as_is(op: str, *args: Node, **attrs) -> Node:
    """Create (or find) the node `op(*args, **attrs)`, shape-checked, exactly as asked: no
    rewrite rule applies (for a rewrite engine, and for a lowering the rules would undo)."""
    b = builder()
    opdef = b.ops.get(op)
    if opdef is None:
        raise InternalError(f"unknown operation {op!r}")
    b.charge(1)
    return _intern(b, opdef, op, args, attrs)


def _intern(b: Builder, opdef, op: str, args, attrs: dict) -> Node:
    items = tuple(sorted(attrs.items())) if attrs else ()
    # Attribute values are hashable (ints, tuples, strings, sympy expressions); constants
    # that compare equal (1 and 1.0) may share a node: as Python scalars they act alike.
    # The interning key of a node: equal keys, one node (nodes hash and compare by
    # identity, so the arguments themselves are the key, with no call to id).
    key = (op, args, items)
    table = b.table
    node = table.get(key)
    if node is not None:
        return node
    shape, dtype = opdef.infer(args, attrs)   # (shape: a tuple)
    leaf = b.leaves.get(op)
    if leaf is None:
        leaf = b.leaves[op] = (opdef.has("constant"), opdef.has("argument"))
    # A new Node (every node of a compilation is made here; `Node(...)` refuses): the
    # fields filled in by plain slot stores on an `_Unfrozen` object, which then becomes a
    # Node (the same slots: only its class changes), about half the cost of guarded stores.
    # `is_const`: the scalar constant leaf (trait "constant"); `is_input`: an input of the
    # graph (trait "argument"), the two leaves every layer asks about.
    n = _new_unfrozen(_Unfrozen)
    n.op = op
    n.args = args
    n.attrs = items
    n.shape = shape
    n.ndim = len(shape)   # (a field, not a property: the rules ask it of most nodes)
    n.dtype = dtype
    n.origin = b.origin
    n.phase = b.phase
    n.serial = b.serial = b.serial + 1
    n.is_const, n.is_input = leaf
    _set_class(n, "__class__", Node)
    table[key] = n
    return n


def topo_order(roots: Iterable[Node]) -> list[Node]:
    """Every node reachable from `roots`, arguments before users (iterative DFS).

    Inside `building()` the answer is memoised per tuple of roots (nodes never change, and
    the compilation's table keeps them alive); every call returns a new list. The walk
    takes the memoised order of a single root whole where it meets that root (f_hvp's
    graph holds f_grad's gradient, whose order dce worked out): the depth-first walk from
    a node visits exactly its own order less the nodes seen already (those a seen node
    reads are seen too, and no node on the walk's path is below it), in that order."""
    roots = tuple(roots)
    if _current:
        memos = _current[-1].memo
        memo = memos.get("topo_order")
        if memo is None:
            memo = memos["topo_order"] = {}
            single = memos["topo_order_single"] = {}
        else:
            order = memo.get(roots)
            if order is not None:
                return list(order)
            single = memos["topo_order_single"]
    else:
        memo = single = None
    order = _walk(roots, single or {})
    if memo is not None:
        memo[roots] = order
        if len(roots) == 1:
            single[roots[0]] = order
        return list(order)
    return order


def _walk(roots: tuple, single: dict) -> list[Node]:
    """`topo_order` of `roots`, taking the orders in `single` (node -> its order) whole."""
    order: list[Node] = []
    seen: set[Node] = set()   # Nodes hash by identity
    add, append, known = seen.add, order.append, single.get

    def splice(whole: list[Node]) -> None:
        if seen.isdisjoint(whole):
            order.extend(whole)
            seen.update(whole)
        else:
            new = [m for m in whole if m not in seen]
            order.extend(new)
            seen.update(new)

    for root in roots:
        if root in seen:
            continue
        whole = known(root)
        if whole is not None:
            splice(whole)
            continue
        add(root)
        stack = [(root, iter(root.args))]
        push, pop = stack.append, stack.pop
        while stack:
            node, it = stack[-1]
            for a in it:
                if a not in seen:
                    if a.args:
                        whole = known(a)
                        if whole is not None:
                            splice(whole)
                            continue
                        add(a)
                        push((a, iter(a.args)))
                        break
                    add(a)
                    append(a)   # a leaf: done at once (as pushing and popping it would)
            else:
                pop()
                append(node)
    return order


def use_counts(order: Sequence[Node], outputs: Iterable[Node]) -> Counter:
    """How many consumers each node (by id) has in `order`, counting each output once more."""
    uses: Counter = Counter([id(a) for n in order for a in n.args])
    for o in outputs:
        uses[id(o)] += 1
    return uses


_MISSING = object()


def analysis(name: str, node: Node, rule) -> object:
    """The value of a bottom-up analysis at `node`: `rule(n, [values of n's args])`,
    memoised per compilation under `name` (iterative, so deep graphs are fine). The memo
    is keyed by the nodes themselves (they hash by identity, with no call to `id`)."""
    memos = (_current[-1] if _current else builder()).memo
    memo = memos.get(name)
    if memo is None:
        memo = memos[name] = {}
    else:
        value = memo.get(node, _MISSING)
        if value is not _MISSING:
            return value
    # A post-order walk down to the known values: the stack is a path from `node` (a
    # DAG path holds no node twice), each node's value computed once all its arguments'
    # are known (the usual case at the first look: every argument's value known already).
    stack = [node]
    push, get = stack.append, memo.get
    while stack:
        n = stack[-1]
        values = []
        for a in n.args:
            v = get(a, _MISSING)
            if v is _MISSING:
                push(a)
                break
            values.append(v)
        else:
            stack.pop()
            memo[n] = rule(n, values)
    return memo[node]


def memoised(name: str, rule) -> Callable[[Node], object]:
    """`lambda node: analysis(name, node, rule)` with this compilation's memo looked up
    once: for a caller that asks about many nodes (a known value is one dict lookup)."""
    if not _current:
        return lambda node: analysis(name, node, rule)
    memo = _current[-1].memo.setdefault(name, {})
    get = memo.get

    def value(node: Node) -> object:
        v = get(node, _MISSING)
        if v is not _MISSING:
            return v
        values = []   # (the usual miss: every argument's value known, no walk needed)
        for a in node.args:
            v = get(a, _MISSING)
            if v is _MISSING:
                return analysis(name, node, rule)
            values.append(v)
        v = memo[node] = rule(node, values)
        return v
    return value


def unvisited(root: Node, done: Container[Node]) -> list[Node]:
    """The nodes `root` needs that are not in `done`, arguments first (an iterative
    post-order walk that stops at nodes in `done`, so deep graphs are fine). Nodes hash by
    identity: `done` holds the nodes themselves (`ById` adapts a table keyed by ids)."""
    if root in done:
        return []
    order: list[Node] = []
    seen = {root}
    stack = [(root, iter(root.args))]
    add, push, pop, append = seen.add, stack.append, stack.pop, order.append
    while stack:
        n, it = stack[-1]
        for a in it:
            if a not in done and a not in seen:
                add(a)
                if a.args:
                    push((a, iter(a.args)))
                    break
                append(a)   # a leaf: done at once (as pushing and popping it would)
        else:
            pop()
            append(n)
    return order


class ById:
    """A table keyed by node ids seen as a container of nodes (for `unvisited`)."""

    __slots__ = ("table",)

    def __init__(self, table: Container[int]):
        self.table = table

    def __contains__(self, node: object) -> bool:
        return id(node) in self.table


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


def verify(graph: Graph, ops: Mapping[str, object] | None = None) -> None:
    """Check the graph's invariants (and those of every region inside it, recursively)
    against the op table (the current builder's by default); raises InternalError on a
    violation."""
    ops = builder().ops if ops is None else ops
    # The nodes whose own invariants (op, arguments, shape rule) held, by id, with the op
    # entry they held against: nodes never change, so each is checked once per compilation
    # however many graphs hold it, unless its op's entry was replaced since; where an input
    # may appear depends on the graph, so that is checked every time.
    memo = _current[-1].memo if _current else {}
    checked: dict[int, tuple] = memo.setdefault(("verified", id(ops)), {})
    pending = [(graph.inputs, graph.outputs, "the graph")]
    while pending:
        inputs, outputs, where = pending.pop()
        inputs = set(map(id, inputs))
        for node in topo_order(outputs):
            opdef = ops.get(node.op)
            seen = checked.get(id(node))
            if seen is None or seen[0] is not node or seen[1] is not opdef:
                _verify_node(node, ops)
                checked[id(node)] = (node, opdef)
            if opdef.has("argument") and id(node) not in inputs:
                raise InternalError(f"{node!r}: input node is not an input of {where}")
            for region in node.regions:
                region.check(node, ops)
                pending.append((region.inputs, region.outputs, f"the body of {node!r}"))


def _verify_node(node: Node, ops: Mapping) -> None:
    """The invariants of `node` itself: a known op, its number of arguments, and the shape
    and dtype its shape rule gives."""
    opdef = ops.get(node.op)
    if opdef is None:
        raise InternalError(f"{node!r}: unknown operation")
    if opdef.nargs is not None and len(node.args) != opdef.nargs:
        raise InternalError(f"{node!r}: expected {opdef.nargs} arguments, got {len(node.args)}")
    shape, dtype = opdef.infer(node.args, dict(node.attrs))
    if not same_shape(tuple(shape), node.shape) or dtype != node.dtype:
        raise InternalError(f"{node!r}: stored shape {fmt_shape(node.shape)} disagrees with "
                            f"the shape rule's {fmt_shape(shape)}")


def pretty(graph: Graph, extra_names: dict | None = None) -> str:
    """A stable printed form: one line per node, numbered in topological order; a node
    holding a region is followed by its body, indented and numbered on."""
    names = dict(graph.names)
    if extra_names:
        names.update(extra_names)
    num: dict[int, str] = {}
    lines: list[str] = []
    _pretty_body(graph.outputs, names, num, lines, "")
    lines.append(f"return {', '.join(num[id(o)] for o in graph.outputs)}")
    return "\n".join(lines)


def _pretty_body(outputs, names: dict, num: dict, lines: list[str], indent: str) -> None:
    """Append the lines of one graph or region body to `lines`; `num` maps the ids of the
    nodes printed so far to their numbers (it numbers on across bodies)."""
    for n in topo_order(outputs):
        if id(n) in num:
            continue
        num[id(n)] = _number(num)
        args = " ".join(num[id(a)] for a in n.args)
        attrs = ", ".join(f"{k}={_fmt_attr(v)}" for k, v in n.attrs if not isinstance(v, Region))
        head = n.op + (f"[{attrs}]" if attrs else "")
        label = f"  # {names[n]}" if n in names else ""
        lines.append(f"{indent}{num[id(n)]} = {head}{(' ' + args) if args else ''} : "
                     f"{_fmt_type(n)}{label}")
        for region in n.regions:
            for x in region.inputs:
                num[id(x)] = _number(num)   # (renumbered: a derivative's body may
                # reuse the input nodes of the body it differentiates)
            params = ", ".join(f"{num[id(x)]} {x.attr('name')}: {_fmt_type(x)}"
                               for x in region.inputs)
            lines.append(f"{indent}  body({params}) {{")
            _pretty_body(region.outputs, names, num, lines, indent + "    ")
            lines.append(f"{indent}    yield {', '.join(num[id(o)] for o in region.outputs)}")
            lines.append(f"{indent}  }}")


def _number(num: dict) -> str:
    """The next number of `pretty` (counted in `num` under the key None)."""
    k = num.get(None, 0)
    num[None] = k + 1
    return f"%{k}"


def _fmt_type(n: Node) -> str:
    return fmt_shape(n.shape) + ("" if n.dtype == "float" else f" {n.dtype}")


def _fmt_attr(v) -> str:
    if isinstance(v, sympy.Basic):
        from .dims import print_expr
        return print_expr(v)
    if isinstance(v, tuple) and v and isinstance(v[0], sympy.Basic):
        return fmt_shape(v)
    return repr(v)


class Region:
    """A body graph held by a node (a loop body, for a `for` loop's scan node).

    `inputs` are the body's own input nodes: the loop index first, then the carried
    values, then the values the body reads from outside (passed as the holding node's
    arguments, so the body is closed: it refers to no other outer node). `outputs` are
    the next carried values, each of the shape and dtype of its carried input. Bodies are
    built in the same interning table as the rest, so two regions built alike are made
    of the same nodes and compare (and hash) equal, and the nodes holding them are one.
    """

    __slots__ = ("inputs", "outputs")

    def __init__(self, inputs: Sequence[Node], outputs: Sequence[Node]):
        object.__setattr__(self, "inputs", tuple(inputs))
        object.__setattr__(self, "outputs", tuple(outputs))

    def __setattr__(self, name, value):
        raise AttributeError("regions are immutable")

    def _key(self) -> tuple:
        return (tuple(map(id, self.inputs)), tuple(map(id, self.outputs)))

    def __eq__(self, other) -> bool:
        return isinstance(other, Region) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"<region of {len(self.inputs)} inputs, {len(self.outputs)} outputs>"

    @property
    def carried(self) -> tuple[Node, ...]:
        """The carried inputs: those after the loop index, one per output."""
        return self.inputs[1:1 + len(self.outputs)]

    def check(self, holder: Node, ops: Mapping) -> None:
        """The region's own invariants (InternalError on a violation): every input an
        `input` node; each output of its carried input's shape and dtype; closed: every
        input node the body reads is one of `inputs`, and the holder passes one argument
        per carried or outside input."""
        where = f"the body of {holder!r}"
        if not all(ops[x.op].has("argument") for x in self.inputs):
            raise InternalError(f"{where}: a region's inputs must be input nodes")
        if len(self.inputs) != 1 + len(holder.args) or len(self.outputs) > len(holder.args):
            raise InternalError(f"{where}: {len(self.inputs)} body inputs for "
                                f"{len(holder.args)} arguments and the loop index")
        for x, arg in zip(self.inputs[1:], holder.args):
            if not same_shape(x.shape, arg.shape) or x.dtype != arg.dtype:
                raise InternalError(f"{where}: body input {x!r} does not match argument {arg!r}")
        for x, y in zip(self.carried, self.outputs):
            if not same_shape(x.shape, y.shape) or x.dtype != y.dtype:
                raise InternalError(f"{where}: output {y!r} does not match carried input {x!r}")
