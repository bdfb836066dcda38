"""The rule engine: the ops' named rewrite rules applied to a fixed point.

Each rule is a small named function attached to the op at the root of what it matches
(`@rewrite` in gradgen/ops/, one line of intent in its docstring) and tagged
(`canonicalize`, `stabilize`, `fuse`, `lower`). A `RuleEngine` holds the rules of a chosen
set of tags, in a fixed order (by tag, then as written), and is used two ways:

* as the rewrite hook of a builder (`ir.building(ops, RuleEngine(ops))`): `make` asks it
  for a replacement of every node before interning it. A rule's result is itself built
  with `make`, so every node `make` returns is a fixed point of the rules, by induction;
* by `apply(graph, tags)` on a graph built without them (the golden tests build the
  graph as written): nodes bottom-up, each replaced by the canonical form of the first
  rule's result until no rule applies.

Termination is checked, not assumed: a chain of more than MAX_DEPTH rewrites nested in
one another (a rule whose result another rule turns back) raises an InternalError naming
the rules of the chain. Which rule fired where is recorded inside `recording()`
(`gradgen show --ir --rules`, the pass golden files).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from ..errors import InternalError
from ..ir import Graph, Node, builder, carry_names, make_as_is, unvisited
from ..ops.registry import READERS, TAGS, Rule

# The tags applied as nodes are built: every graph of a compilation is in this form.
CANONICAL = ("canonicalize", "stabilize", "fuse")
# Rewrites nested in one another before the engine calls it a cycle. Real chains are a few
# deep (a rule's result is made of nodes that are canonical already).
MAX_DEPTH = 60
# Also run the rules the engine skips (`Rule.inspects`) and raise InternalError when one
# applies after all: the tests turn it on (tests/conftest.py) for every compilation.
CHECK_INDEX = False


@dataclass(frozen=True)
class Firing:
    """One rewrite: `rule` replaced a node of its op built for source line `line`."""

    rule: Rule
    line: int | None
    text: str

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line is not None else "(no line)"
        return f"{where}: {self.rule.name} [{self.rule.tag}] on {self.rule.op}"


_recording: list[list[Firing]] = []


@contextlib.contextmanager
def recording() -> Iterator[list[Firing]]:
    """Record the firings of every engine created inside the block, in the order the
    rewrites completed (a rewrite made inside another's result is listed before it)."""
    log: list[Firing] = []
    _recording.append(log)
    try:
        yield log
    finally:
        _recording.pop()


class _Cycle(Exception):
    """Raised past MAX_DEPTH; each rewrite it unwinds through adds its rule's name."""

    def __init__(self) -> None:
        super().__init__()
        self.rules: list[str] = []


class RuleEngine:
    """The rules of the op table `ops` carrying one of `tags`; called as a builder's
    rewrite hook: (op entry, args, attrs) -> the first rule's result, or None."""

    def __init__(self, ops: Mapping[str, object], tags: Iterable[str] = CANONICAL):
        self.tags = frozenset(tags)
        unknown = self.tags - set(TAGS)
        if unknown:
            raise InternalError(f"unknown rule tags {sorted(unknown)}")
        rank = {t: i for i, t in enumerate(TAGS)}
        self.rules: dict[str, tuple[Rule, ...]] = {}
        for name, opdef in ops.items():
            if not opdef.rules:
                continue
            chosen = sorted((r for r in opdef.rules if r.tag in self.tags),
                            key=lambda r: rank[r.tag])
            if chosen:
                self.rules[name] = tuple(chosen)
        # op name -> {the arguments' ops -> ((rule, its function), ...)}: what `__call__`
        # runs, the rules that may apply to arguments of those ops (`Rule.inspects`: a
        # product is not offered to the rules about signs unless a factor is a negation),
        # filled as the combinations are met
        self._calls: dict[str, dict[tuple, tuple]] = {name: {} for name in self.rules}
        self._checked_calls: dict[tuple, tuple] = {}   # the same, for CHECK_INDEX
        self.depth = 0
        self.fired: Rule | None = None   # the rule of the last replacement
        self.log = _recording[-1] if _recording else None

    def __call__(self, opdef, args: tuple, attrs: dict) -> Node | None:
        calls = self._lookup(opdef.name, args)
        return self.first(calls, args, attrs) if calls else None

    def first(self, calls: tuple, args: tuple, attrs: dict) -> Node | None:
        """The result of the first of `calls` (`_lookup`'s, for these arguments) that
        applies to the node `(args, attrs)`, or None."""
        depth = self.depth + 1
        if depth > MAX_DEPTH:
            raise _Cycle()   # the rewrite that made this node adds its rule's name
        self.depth = depth
        rule = None
        try:
            if attrs or len(args) != 2:
                for rule, fn in calls:
                    out = fn(*args, **attrs)
                    if out is not None:
                        break
            else:   # the common case, a binary op: a plain call is cheaper than fn(*args)
                a, b = args
                for rule, fn in calls:
                    out = fn(a, b)
                    if out is not None:
                        break
            if out is not None:
                self.fired = rule
                if self.log is not None:
                    self._record(rule)
                self.depth = depth - 1
                return out
        except _Cycle as cycle:
            self.depth = depth - 1
            if rule is not None:   # the rule whose result went on rewriting
                cycle.rules.append(rule.name)
            if depth == 1:
                raise _cycle_error(cycle.rules) from None
            raise
        except BaseException:
            self.depth = depth - 1
            raise
        self.depth = depth - 1
        return None

    def _lookup(self, op: str, args: tuple) -> tuple:
        """(rule, its function) for the rules of `op` that may apply to these arguments,
        in order (with CHECK_INDEX: every rule, the others guarded)."""
        table = self._calls.get(op)
        if table is None:
            return ()
        k = len(args)
        key = (args[0].op, args[1].op) if k == 2 else (args[0].op,) if k == 1 \
            else tuple([a.op for a in args])
        calls = table.get(key)
        if calls is None:
            calls = table[key] = self._candidates(op, key)
        if CHECK_INDEX:
            calls = self._checked(op, key, calls)
        return calls

    def _candidates(self, op: str, arg_ops: tuple) -> tuple:
        """(rule, its function) for the rules of `op` that may apply to arguments of these
        ops, in order."""
        return tuple((r, r.fn) for r in self.rules[op] if r.fits(arg_ops))

    def _checked(self, op: str, arg_ops: tuple, calls: tuple) -> tuple:
        """Every rule of `op`, each one not in `calls` (those chosen for arguments of these
        ops) wrapped to raise InternalError if it applies (`CHECK_INDEX`: its `inspects`
        left out an op it applies to)."""
        checked = self._checked_calls.get((op, arg_ops))
        if checked is None:
            checked = self._checked_calls[op, arg_ops] = self._guarded(op, calls)
        return checked

    def _guarded(self, op: str, calls: tuple) -> tuple:
        chosen = {r.name for r, _ in calls}

        def guard(rule: Rule):
            def fn(*args, **attrs) -> None:
                if rule.fn(*args, **attrs) is not None:
                    raise InternalError(
                        f"rule {rule.name!r} applies to {op}({', '.join(a.op for a in args)}) "
                        f"but its inspects={sorted(rule.inspects or ())} or operands="
                        f"{_fmt_operands(rule.operands)} leaves it out")
            return fn
        return tuple((r, fn if r.name in chosen else guard(r))
                     for r, fn in ((r, r.fn) for r in self.rules[op]))

    def _record(self, rule: Rule) -> None:
        origin = builder().origin
        self.log.append(Firing(rule, origin.line if origin else None,
                               origin.text if origin else ""))


def _fmt_operands(operands) -> str:
    return "None" if operands is None else \
        "(" + ", ".join("any" if o is None else "|".join(sorted(o)) for o in operands) + ")"


def _cycle_error(chain: list[str]) -> InternalError:
    """The error for a chain of rewrites that did not end (innermost rule first)."""
    names = list(dict.fromkeys(chain))
    return InternalError(f"the rewrite rules did not reach a fixed point in {MAX_DEPTH} "
                         f"nested rewrites; they cycle among: {', '.join(names)}")


def covers(tags: Iterable[str]) -> bool:
    """Whether the current builder applies every rule of these tags as nodes are built
    (then every node `make` returned is a fixed point of them)."""
    engine = builder().rewrite
    return isinstance(engine, RuleEngine) and engine.tags >= set(tags)


def apply(graph: Graph, tags: Iterable[str]) -> Graph:
    """The graph with the rules of these tags applied everywhere until none applies (the
    graph itself when none does). Free when the builder applies them already."""
    tags = tuple(t for t in TAGS if t in set(tags))
    if covers(tags):
        return graph
    b = builder()
    engine = b.memo.get(("rule_engine", tags))
    if engine is None or engine.log is not (_recording[-1] if _recording else None):
        engine = b.memo[("rule_engine", tags)] = RuleEngine(b.ops, tags)
    if not engine.rules:
        return graph
    # node -> its fixed point, for this builder's nodes.
    done: dict[Node, Node] = b.memo.setdefault(("rule_fixed_points", tags), {})
    readers = _Readers(graph) if "lower" in tags else None
    saved = b.memo.get(READERS)
    b.memo[READERS] = readers
    try:
        for out in graph.outputs:
            _fixed_point(engine, out, done, (), readers)
    finally:
        b.memo[READERS] = saved
    outputs = [done[o] for o in graph.outputs]
    names = dict(graph.names)
    changed = False
    for n in graph.order:
        m = done[n]
        if m is not n:
            changed = True
            carry_names(n, m, names)
    if not changed:
        return graph
    return graph.with_outputs(outputs, names)


class _Readers:
    """id(node) -> the ops of the graph's nodes that read it ("output" for an output),
    worked out the first time a rule asks (`registry.read_by`; most lowerings never do):
    until then the inheritances of `inherit` are kept in order and replayed on the table."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.table: dict[int, list] | None = None
        self.pending: list[tuple[int, int]] = []

    def __bool__(self) -> bool:
        return True   # (a graph has outputs: the table is never empty)

    def inherit(self, new: int, old: int) -> None:
        """The node of id `new`, which replaced that of id `old`, has `old`'s readers
        unless it has its own (first inheritance wins)."""
        table = self.table
        if table is None:
            self.pending.append((new, old))
        elif old in table:
            table.setdefault(new, table[old])

    def get(self, key: int, default=None):
        table = self.table
        if table is None:
            table = self.table = {}
            for n in self.graph.order:
                for a in n.args:
                    table.setdefault(id(a), []).append(n.op)
            for o in self.graph.outputs:
                table.setdefault(id(o), []).append("output")
            for new, old in self.pending:
                if old in table:
                    table.setdefault(new, table[old])
            self.pending = []
        return table.get(key, default)


def _fixed_point(engine: RuleEngine, root: Node, done: dict, chain: tuple,
                 readers: _Readers | None = None) -> Node:
    """The fixed point of `root` under the engine's rules (recorded in `done` for every
    node visited). `chain`: the rules whose results this call is canonicalising;
    `readers`: the graph's `_Readers`, which a node's replacement inherits."""
    if len(chain) > MAX_DEPTH:
        raise _cycle_error(list(reversed(chain)))
    b = builder()
    has_rules = engine._calls   # (the ops with rules of these tags)
    lookup = engine._lookup
    for n in unvisited(root, done):
        if n in done:   # reached by a nested call meanwhile
            continue
        n_args = n.args
        same = True   # every argument its own fixed point
        for a in n_args:
            if done[a] is not a:
                same = False
                break
        if same:   # so is the node then, when no rule of these tags may apply to it
            calls = lookup(n.op, n_args) if n.op in has_rules else ()
            if not calls:
                done[n] = n
                continue
        # b.at(origin=n.origin, phase=n.phase), without a context manager per node
        saved = b.origin, b.phase
        if n.origin is not None:
            b.origin = n.origin
        b.phase = n.phase
        try:
            if same:
                m = n   # (not in `done`: its rules, `calls`, are tried below)
                out = engine.first(calls, n_args, n.kw)
            else:
                m = make_as_is(n.op, *[done[a] for a in n_args], **n.kw)
                if m in done:
                    done[n] = done[m]
                    continue
                if readers is not None:
                    readers.inherit(id(m), id(n))
                out = engine(b.ops[m.op], m.args, m.kw)
            if out is not None:
                out = _fixed_point(engine, out, done, chain + (engine.fired.name,), readers)
        finally:
            b.origin, b.phase = saved
        done[n] = done[m] = m if out is None else out
        if readers is not None and out is not None:
            readers.inherit(id(out), id(n))
    return done[root]
