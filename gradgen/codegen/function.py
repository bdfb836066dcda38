"""Function assembly: what each emitted function of an entry point takes, returns and says
(its plan: extra inputs, outputs, derivative names, docstring), and its code around the
scheduled body (argument checks, dimension sizes, the return tuple, the spec constant)."""

from __future__ import annotations

import re
import shlex
import textwrap
from dataclasses import dataclass, field

import sympy

from .. import ir
from ..autodiff.derivatives import Derivative, EntryDerivatives, jacobian_mode
from ..dims import DIM_TEXT, Binding, Requirement, fmt_dim, fmt_shape, linear_in
from ..errors import CompileError, InternalError, ShapeError
from ..frontend import Argument, EntryPoint, Program
from ..ir import Node, make, topo_order
from ..ops.dtypes import INT
from ..ops.registry import REGISTRY
from . import naming
from .naming import ModuleNamer, Namer, cotangent_name, derived_names, tangent_name, temp_name
from .printer import MAX_WIDTH, Printer
from .runtime import ONE_DTYPE
from .schedule import Body

__all__ = ["EntryFunctions", "Function", "Module", "Plan", "jacobian_plan"]

MAX_SUMMARY = 93   # a docstring's first line after its indent and quotes: 100 columns
SIGNATURE_WIDTH = 100   # the line length of the emitted code (`ruff format`'s, the project's)
RETURNS_WIDTH = 60      # a longer return annotation is written `tuple[Array | Scalar, ...]`


@dataclass
class Function:
    """One emitted function, ready for the template."""

    name: str
    args: list[str]
    doc: str
    lines: list[str]
    entry: str
    kind: str
    phases: list[str] = field(default_factory=list)   # "forward"/"backward" per line
    graph: ir.Graph | None = None
    weak: bool = False   # uses the helper _weak (a scalar argument may be a Python number)
    checks: frozenset = frozenset()   # the size checks it calls (runtime.SIZE_CHECKS)
    annotations: list[str] = field(default_factory=list)   # of `args`, one each
    returns: str = ""          # the return annotation
    types_used: frozenset = frozenset()   # the aliases (runtime.TYPES) they use
    # keyword-only parameters after `args`, each `None` by default (`workspace`), with
    # their annotations (without the `| None`)
    keywords: list[tuple[str, str]] = field(default_factory=list)

    @property
    def signature(self) -> str:
        """The `def` line(s), annotated, split as `ruff format` splits them (line length
        100): on one line; else the parameters on one indented line; else one a line."""
        params = [f"{a}: {t}" for a, t in zip(self.args, self.annotations)] \
            if self.annotations else list(self.args)
        if self.keywords:
            params += ["*", *(f"{k}: {t} | None = None" if self.annotations else f"{k}=None"
                              for k, t in self.keywords)]
        tail = f") -> {self.returns}:" if self.returns else "):"
        line = f"def {self.name}({', '.join(params)}{tail}"
        if len(line) <= SIGNATURE_WIDTH:
            return line
        hugged = "    " + ", ".join(params)
        if len(hugged) <= SIGNATURE_WIDTH:
            return f"def {self.name}(\n{hugged}\n{tail}"
        return f"def {self.name}(\n" + "".join(f"    {p},\n" for p in params) + tail


@dataclass
class Module:
    filename: str
    options: object   # compiler.Options: describe() and flags() for the header
    version: str
    doc: str
    imports: list[str] = field(default_factory=lambda: ["import numpy as np"])
    preludes: list[str] = field(default_factory=list)
    types: str = ""   # the type aliases of the annotations (runtime.TYPES), with a comment
    constants: list[str] = field(default_factory=list)
    functions: list[Function] = field(default_factory=list)
    entries: list[EntryPoint] = field(default_factory=list)

    @property
    def regenerate(self) -> str:
        """The shell command that writes this module again (the file name shell-quoted)."""
        return f"gradgen compile {shlex.quote(self.filename)}{self.options.flags()}"


@dataclass
class Plan:
    """What one emitted function computes, before optimisation and scheduling."""

    name: str
    kind: str                  # forward, grad, value_and_grad, vjp, jvp, hvp, hessian
    extra: list[Node]          # inputs after the entry point's arguments
    outputs: list[Node]
    names: dict                # Node -> derived name (the source's names come first)
    doc: str
    group: tuple[int, int] | None = None   # outputs[lo:hi] returned as one tuple
    rows: int | None = None    # outputs returned as a rows x rows nested tuple
    # extra inputs this function calls otherwise than their nodes' names (f_hvp's
    # directions `vW` are the nodes of f_jvp's tangents `tW`: the two share their graphs)
    inputs_as: dict = field(default_factory=dict)
    # the phases of the nodes to schedule before the rest, in this order (f_hvp: the
    # forward tangents, then the gradient, then the tangents of the gradient's nodes)
    stages: list[str] = field(default_factory=list)

    def input_name(self, node: Node) -> str:
        """What this function calls its extra input `node`."""
        return self.inputs_as.get(node) or node.attr("name")

    @property
    def label(self) -> str:
        """What the comments above the derivative statements call them."""
        return "tangent" if self.kind == "jvp" else "grad"


def _wrapped(summary: str) -> list[str]:
    """gradgen's summary of a derivative in lines of 100 columns with the docstring's
    indent and quotes (a long one names many Params)."""
    return textwrap.wrap(summary, MAX_SUMMARY, break_long_words=False,
                         break_on_hyphens=False, replace_whitespace=False)


def _dtype_once(lines: list[str], arg_names: list[str], printer: Printer,
                one: tuple[set[str], set[str]] = (set(), set()),
                ) -> tuple[list[str], list[str]]:
    """The lines with the dtype the arguments promote to, where the function spells it
    more than once (`np.result_type(W, b, X)` for each buffer and accumulator), computed
    once at entry (`dtype = np.result_type(W, b, X)`, the line returned) and read by name.
    (The arguments are never rebound after the prologue.) `one` is (the float arguments
    made one dtype at entry, those of them that are arrays): where the function casts
    them (`_one_dtype`), every promotion of some of them, one array among them, is that
    one dtype, whatever the subset (`np.result_type(X, Wh)` and `np.result_type(X, Wy)`
    both read `dtype`); a promotion that takes other arguments (a direction `vW` of
    f_hvp, not cast) keeps its own expression."""
    probe = printer.result_type(["A__", "B__"])
    if "A__, B__" not in probe:
        return lines, []
    head, tail = probe.split("A__, B__")
    found = re.compile(re.escape(head) + r"([A-Za-z_][\w, ]*)" + re.escape(tail))
    args = set(arg_names)
    cast, arrays = one
    counts: dict[str, int] = {}
    same: dict[str, None] = {}   # the promotions of the cast arguments (one dtype), in order
    body = "\n".join(lines)   # (a match is within a line; most bodies have none at all)
    for m in found.finditer(body) if head in body else ():
        used = {a.strip() for a in m.group(1).split(",")}
        if used <= args:
            counts[m.group(0)] = counts.get(m.group(0), 0) + 1
            if used <= cast and used & arrays:
                same[m.group(0)] = None
    if not counts:
        return lines, []
    if same:   # one spelling for all: the most frequent
        spelled = sum(counts[t] for t in same)
        text = max(same, key=lambda k: counts[k])
        counts = {t: spelled if t == text else n for t, n in counts.items()
                  if t == text or t not in same}
    text = max(counts, key=lambda k: counts[k])
    if counts[text] < 2:
        return lines, []
    if text not in same:
        same = {text: None}
    name = "dtype"
    read = re.compile(r"(?<![\w.])" + name + r"(?![\w])(?!\s*=(?!=))")
    bound = re.compile(r"\s*" + name + r"\b[^=]*=(?!=)")
    if name in args or any(read.search(line) or bound.match(line) for line in lines):
        return lines, []
    # where the arguments are one dtype, an array argument's own dtype (`h0.dtype`) is it too
    own = re.compile(r"(?<![\w.])(?:" + "|".join(map(re.escape, sorted(arrays))) + r")"
                     + re.escape(printer.dtype_of("A__")[3:]) + r"(?!\w)") \
        if arrays and text in same and printer.dtype_of("A__").startswith("A__") else None
    out = []
    for line in lines:
        for t in sorted(same, key=len, reverse=True):
            line = line.replace(t, name)
        out.append(own.sub(name, line) if own else line)
    return out, [f"{name} = {text}"]


def _cast(entry: EntryPoint, body: Body) -> tuple[set[str], set[str]]:
    """(The float arguments the function makes one dtype at entry, those of them that are
    arrays), for `_dtype_once`: none where it does not cast them."""
    floats = [a for a in entry.args if a.node.dtype != INT]
    if not body.one_dtype or len(floats) < 2:
        return set(), set()
    return {a.name for a in floats}, {a.name for a in floats if a.node.ndim}


def _temporary_cotangent_names(out: Node, d: Derivative, names: dict, source: dict) -> dict:
    """The cotangents that `names` leaves unnamed, where they get a statement, named after
    their primals (`dhs_diff` for the cotangent of `hs_diff - np.log(hs_sum)`, not
    `X_scattered` after the first of its dtype's sources): a temporary's name (the memo's
    `naming.TEMPORARY_NAMES`), which does not make the node a variable as `names` would;
    not a value the forward part computes too (`alpha * l1_ratio`). `names`, as it is."""
    soft = ir.memo().setdefault(naming.TEMPORARY_NAMES, {})
    primal = topo_order([out])
    forward = {id(n) for n in primal}
    for node in primal:
        g = d.cotangents.get(id(node))
        if isinstance(g, Node) and not node.is_input and not g.is_const \
                and not g.is_input and id(g) not in forward and g not in names \
                and g not in source:
            soft.setdefault(id(g), cotangent_name(temp_name(node, source)))
    return names


def _once(memo: dict, key: tuple, table, make) -> dict:
    """A new dict of the names `make()` gives the derivatives in a sweep's `table`,
    worked out once per `key` and table: the gradient's serve f_grad, f_value_and_grad,
    f_vjp and f_hvp, the forward tangents' f_jvp and f_hvp. (`memo` keeps each table, so
    its id stays its own.)"""
    key = (*key, id(table))
    hit = memo.get(key)
    if hit is None or hit[0] is not table:
        hit = memo[key] = table, make()
    return dict(hit[1])


def _cotangent_names(fns: EntryFunctions, d: Derivative) -> dict:
    """Names for the Params' cotangents in `d` and the cotangents of the source's named
    values (`dZ`), and temporaries' names (`_temporary_cotangent_names`)."""
    names: dict = {}
    for g, p in zip(d.outputs, fns.params):
        if g not in fns.entry.names:
            names.setdefault(g, cotangent_name(p.name))
    for node, name in fns._derived(d.cotangents, cotangent_name).items():
        names.setdefault(node, name)
    return _temporary_cotangent_names(fns.out, d, names, fns.entry.names)


# The operators whose result, for a Python number and an array of one float dtype, is what
# it is for a 0-d array of that dtype and the array: NumPy 2 casts the number to the
# array's dtype (weakly typed). Not `**`: NumPy computes `x ** 0.5` of a Python number as
# `np.sqrt(x)`, `x ** 2` as `np.square(x)`, whose last bits may differ from `power`.
_WEAK_OPERATORS = frozenset({"+", "-", "*", "/"})


def weak_as_is(graph: ir.Graph, scalars: dict[str, Node]) -> frozenset[str]:
    """The scalar arguments (name -> input node) that need no `_weak` once the float arrays
    have one dtype (rule `weak_scalar_as_is`): each is read only by `+ - * /` (or an op of
    the trait "number_arg") with an array (ndim > 0), or not at all, and is not a result. A
    Python number (or NumPy scalar of that dtype) there gives the numbers a 0-d array of the
    dtype gives; elsewhere (a scalar expression, a method called on it, a loop, a result) it
    must be the 0-d array."""
    if not scalars:
        return frozenset()
    users: dict[int, list[Node]] = {id(x): [] for x in scalars.values()}
    for n in graph.order:
        for a in n.args:
            if id(a) in users:
                users[id(a)].append(n)
    results = {id(o) for o in graph.outputs}

    def plain(x: Node, u: Node) -> bool:
        opdef = REGISTRY[u.op]
        return ((opdef.operator in _WEAK_OPERATORS and opdef.has("elementwise")
                 or opdef.has("number_arg"))
                and len(u.args) == 2 and not u.regions
                and all(a is not x and a.ndim > 0 and a.dtype == "float"
                        for a in u.args if a is not x)
                and any(a is not x for a in u.args))

    return frozenset(name for name, x in scalars.items()   # (or not read at all)
                     if id(x) not in results and all(plain(x, u) for u in users[id(x)]))


def one_dtype_prologue(entry: EntryPoint, printer: Printer, prologue: list[str], weak: bool,
                       needed: bool, graph: ir.Graph) -> tuple[list[str], bool]:
    """The prologue, where `needed` (a statement relies on it: `Body.one_dtype`), with the
    float arguments made one dtype (rule `one_dtype_at_entry`):
    `x, W = _one_dtype(x, W)` (split as `ruff format` splits it) under `if not
    _dims(...):` where `_dims` checks them (it says whether their dtypes agree, the usual
    case), else at the end (after `_weak`). Unchanged for one argument. Under the check, the
    `_weak` of a scalar argument `weak_as_is` finds is left out (rule `weak_scalar_as_is`:
    ~0.5-1 us a call). With whether the prologue (`weak`: before) still calls `_weak`."""
    floats = [a.name for a in entry.args if a.node.dtype != INT]
    if not needed or len(floats) < 2:
        return prologue, weak
    printer.preludes["_one_dtype"] = ONE_DTYPE
    dims = printer.ref("_dims") + "("
    at = next((i for i, line in enumerate(prologue) if line.startswith(dims)), None)
    if at is not None and len(prologue[at]) + 7 > MAX_WIDTH:
        at = None
    pad = "" if at is None else "    "
    names = ", ".join(floats)
    line = f"{pad}{names} = {printer.helper('_one_dtype', floats)}"
    if len(line) <= MAX_WIDTH:
        cast = [line]
    else:
        head = f"{pad}{names} = {printer.ref('_one_dtype')}("
        cast = [head, f"{pad}    {names}", f"{pad})"] if len(pad + names) + 4 <= MAX_WIDTH \
            else [head, *[f"{pad}    {n}," for n in floats], f"{pad})"]
    if at is None:
        return [*prologue, *cast], weak
    arrays = [a.name for a in entry.args if a.node.dtype != INT and a.node.ndim]
    if arrays and printer.target == "numpy":
        # past the cast the float arrays have one float dtype (`_dims` checked they are
        # floats): a Python number takes it as it is, without `np.result_type` (~0.4 us)
        scalars = {a.name: a.node for a in entry.args if a.node.dtype != INT and not a.node.ndim}
        as_is = weak_as_is(graph, scalars) if weak else frozenset()
        calls = {printer.helper("_weak", [n, *arrays]): n for n in scalars}
        kept = []
        for line in prologue:
            c = line.partition(" = ")[2]
            if c not in calls:
                kept.append(line)
            elif calls[c] not in as_is:
                kept.append(line.replace(c, printer.helper("_weak", [calls[c],
                                                                    f"{arrays[0]}.dtype"])))
        prologue = kept
        weak = any(printer.ref("_weak") + "(" in line for line in prologue)
    check = f"if not {prologue[at]}:"
    note = "  # float dtypes differ: one for all"
    return [*prologue[:at], check + note if len(check + note) <= MAX_WIDTH else check, *cast,
            *prologue[at + 1:]], weak


class EntryFunctions:
    """The plans of the functions of one entry point, and their assembly into code."""

    def __init__(self, program: Program, entry: EntryPoint, params: list[Argument],
                 names: ModuleNamer, checks: bool, checkpoint: int | None = None):
        self.program, self.entry, self.params = program, entry, params
        self.names, self.checks = names, checks
        self.out = entry.output
        self.derivatives = EntryDerivatives(self.out, [p.node for p in params], checkpoint,
                                            entry.names)
        self.spec_name = names.spec_constant(entry.name)
        self._tangents: list[Node] | None = None
        self._names_memo: dict[tuple, tuple] = {}   # (`_once`)

    # ---------------------------------------------------------------- the plans

    def forward(self) -> Plan:
        return Plan(self.entry.name, "forward", [], [self.out], {},
                    self._doc("", [("the value", self.out)]))

    def grad(self, with_value: bool) -> Plan:
        grads, names = self._cotangents(self.derivatives.gradient())
        e = self.entry.name
        if with_value:
            doc = self._doc(f"The value of `{e}` and its gradient with respect to "
                            f"{self._param_list()}, in one pass.",
                            [(f"{naming.VALUE}: the value", self.out)]
                            + self._grad_returns(grads))
            return Plan(f"{e}_value_and_grad", "value_and_grad", [], [self.out, *grads],
                        names, doc, group=(1, 1 + len(grads)))
        doc = self._doc(f"The gradient of `{e}` with respect to {self._param_list()}.",
                        self._grad_returns(grads))
        return Plan(f"{e}_grad", "grad", [], grads, names, doc, group=(0, len(grads)))

    def vjp(self) -> Plan:
        g = self._extra_input(naming.COTANGENT_INPUT, "cotangent", self.out.shape)
        d = self.derivatives.vjp(g)
        if self.out.ndim == 0:   # the gradient scaled by g: the gradient's names, the
            # products unnamed (`return g * dx`)
            grads = list(d.outputs)
            _, names = self._cotangents(self.derivatives.gradient())
        else:
            grads, names = self._cotangents(d)
        e = self.entry.name
        doc = self._doc(f"Vector-Jacobian product of `{e}`: the cotangents of "
                        f"{self._param_list()} for the output cotangent `{g.attr('name')}`.",
                        self._grad_returns(grads),
                        extra=[(g.attr("name"),
                                f"cotangent of the output, shape {fmt_shape(g.shape)}")])
        return Plan(f"{e}_vjp", "vjp", [g], grads, names, doc, group=(0, len(grads)))

    def _tangent_inputs(self) -> list[Node]:
        """The tangents `f_jvp` takes (one per Param), the directions of `f_hvp` too."""
        if self._tangents is None:
            self._tangents = [self._extra_input(tangent_name(p.name), "tangent", p.shape)
                              for p in self.params]
        return self._tangents

    def jvp(self) -> Plan:
        tangents = self._tangent_inputs()
        d = self.derivatives.jvp(tangents)
        (t,) = d.outputs
        names = self._derived(d.tangents, tangent_name)
        source = self.entry.names.get(self.out)
        names.setdefault(t, tangent_name(source or naming.VALUE))
        doc = self._doc(f"Forward mode: the value of `{self.entry.name}` and its directional "
                        "derivative along the tangents.",
                        [(f"{naming.VALUE}: the value", self.out),
                         (f"{names[t]}: its directional derivative", t)],
                        extra=[(tn.attr("name"), f"tangent of {p.name}, shape "
                                f"{fmt_shape(p.shape)}") for tn, p in zip(tangents, self.params)])
        return Plan(f"{self.entry.name}_jvp", "jvp", tangents, [self.out, t], names, doc)

    def hvp(self) -> Plan:
        vs = self._tangent_inputs()   # the JVP's tangent inputs, so the forward
        # tangents are the JVP's; called `vW` here
        taken = {a.name for a in self.entry.args} | set(self.entry.names.values()) \
            | set(self.entry.dims) | self.names.taken() | {v.attr("name") for v in vs}
        namer = Namer(taken)
        inputs_as = {v: namer.fresh(naming.direction_name(p.name))
                     for v, p in zip(vs, self.params)}
        d = self.derivatives.hvp(vs)
        grad = self.derivatives.gradient()
        _, names = self._cotangents(grad)
        for h, p in zip(d.outputs, self.params):
            names.setdefault(h, naming.hvp_name(p.name))
        # (the primal graph's tangents are the JVP's: its names, worked out once)
        forward = self.derivatives.forward_tangents(vs)[1]
        for node, name in self._derived(forward, tangent_name).items():
            names.setdefault(node, name)
        for node, name in list(names.items()):   # the tangent of dU is tdU
            t = d.tangents.get(id(node))
            if t is not None and not t.is_const and not t.is_input:
                names.setdefault(t, tangent_name(name))
        doc = self._doc(f"Hessian-vector product of `{self.entry.name}` with respect to "
                        f"{self._param_list()}.",
                        [(f"{naming.hvp_name(p.name)}: (H v) for {p.name}", h)
                         for p, h in zip(self.params, d.outputs)],
                        extra=[(inputs_as[v], f"direction for {p.name}, shape "
                                f"{fmt_shape(p.shape)}") for v, p in zip(vs, self.params)])
        # the forward tangents, then the gradient, then the tangents of its nodes
        return Plan(f"{self.entry.name}_hvp", "hvp", vs, d.outputs, names, doc,
                    group=(0, len(d.outputs)), inputs_as=inputs_as,
                    stages=["tangent", "backward"])

    def hessian(self) -> Plan:
        try:
            blocks = self.derivatives.hessian()
        except ShapeError as err:
            raise CompileError(self.program.diagnostic(
                self.entry.return_line, self.entry.return_col, f"--hessian: {err}")) from None
        _, names = self._cotangents(self.derivatives.gradient())
        single = len(self.params) == 1
        out, labels = [], []
        for pi, row in zip(self.params, blocks):
            for pj, h in zip(self.params, row):
                name = naming.hessian_name(pi.name, pj.name, single)
                names.setdefault(h, name)
                out.append(h)
                labels.append((f"{name}: d2/d{pi.name} d{pj.name}", h))
        doc = self._doc(f"The Hessian of `{self.entry.name}` with respect to "
                        f"{self._param_list()}" + ("." if single else " (blocks, row-major)."),
                        labels)
        return Plan(f"{self.entry.name}_hessian", "hessian", [], out, names, doc,
                    rows=None if single else len(self.params))

    # ---------------------------------------------------------------- names

    def _extra_input(self, base: str, role: str, shape) -> Node:
        taken = {a.name for a in self.entry.args} | set(self.entry.names.values()) \
            | set(self.entry.dims) | self.names.taken()
        return make("input", name=Namer(taken).fresh(base), role=role, shape=tuple(shape))

    def _cotangents(self, d: Derivative) -> tuple[list[Node], dict]:
        """The cotangents of the Params, and readable names for them and the cotangents
        of the source's named values (`dZ`)."""
        return list(d.outputs), _once(self._names_memo, ("d", *map(id, d.outputs)),
                                      d.cotangents, lambda: _cotangent_names(self, d))

    def _derived(self, table, rename) -> dict:
        return _once(self._names_memo, ("derived", rename), table, lambda: derived_names(
            topo_order([self.out]), self.entry.names, table, rename))

    def _param_list(self) -> str:
        return ", ".join(p.name for p in self.params)

    def _grad_returns(self, grads):
        return [(f"{cotangent_name(p.name)}: the gradient for {p.name}", g)
                for p, g in zip(self.params, grads)]

    # ---------------------------------------------------------------- code text

    def _doc(self, summary: str, returns, extra=()) -> str:
        e = self.entry
        # Lines end only at newlines (as in the source); any other character, a form feed or
        # U+2028 included, stays in its line and is escaped when the docstring is emitted.
        text = (e.doc or "").strip()
        user = [line.strip() for line in text.split("\n")] if text else []
        lines = [*(_wrapped(summary) if summary else   # (the user's line as written)
                   [user[0] if user else f"`{e.name}` from {self.program.filename}."]), ""]
        rest = user[1:] if not summary else user
        while rest and not rest[0]:   # the summary's blank line is there already
            rest = rest[1:]
        if any(rest):
            lines += [*rest, ""]
        lines.append("Args:")
        for a in e.args:
            lines.append(f"    {a.name}: {a.decl}")
        for name, text in extra:
            lines.append(f"    {name}: {text}")
        lines.append("")
        lines.append("Returns:")
        for text, node in returns:
            lines.append(f"    {text}, shape {fmt_shape(node.shape)}.")
        return "\n".join(lines)

    def spec_constant(self) -> str:
        """`_F_ARGS = (("X", ('N', 'D')), ...)`: the declared shapes `_dims` checks."""
        items = []
        for a in self.entry.args:
            dims = []
            for d in a.shape:
                if d.is_Integer:
                    dims.append(str(int(d)))
                elif d.is_Symbol:
                    dims.append(f'"{d.name}"')   # an identifier: nothing to escape
                else:
                    dims.append("None")
            inner = ", ".join(dims) + ("," if len(dims) == 1 else "")
            kind = ', "int"' if a.node.dtype == INT else ""   # integers, for _dims
            items.append(f'("{a.name}", ({inner}){kind})')
        if len(items) <= 1:   # as `ruff format` writes it: no trailing comma keeps it open
            return f"{self.spec_name} = ({''.join(items)}{',' if items else ''})"
        body = "".join(f"\n    {it}," for it in items)
        return f"{self.spec_name} = ({body}\n)"

    def assemble(self, plan: Plan, graph: ir.Graph, body: Body, printer: Printer) -> Function:
        """The function of `plan` around its scheduled `body` (`graph` optimised)."""
        extra = {plan.input_name(x): x for x in plan.extra}   # name -> input
        arg_names = [a.name for a in self.entry.args] + list(extra)
        returns = owned_results(list(graph.outputs), printer)
        lines, phases = list(body.lines), list(body.phases)
        if body.result is not None and returns == [body.result[0]]:
            lines[-1] = "return " + body.result[1]   # `value = expr; return value`
            phases[-1] = "return"
        else:
            ret = _return_lines(returns, plan.group, plan.rows)
            lines += ret
            phases += ["return"] * len(ret)
        lines, dtype = _dtype_once(lines, arg_names, printer, _cast(self.entry, body))
        prologue, weak = one_dtype_prologue(
            self.entry, printer, *self._prologue(printer, extra, lines), body.one_dtype, graph)
        prologue += dtype
        phases = ["check"] * len(prologue) + phases
        lines, phases = _comments_that_fit(prologue + lines, phases)
        inputs = [a.node for a in self.entry.args] + list(extra.values())
        annotations, returns, used = annotate(inputs, plan, list(graph.outputs), self.names)
        return Function(plan.name, arg_names, plan.doc, lines, self.entry.name, plan.kind, phases,
                        graph, weak, frozenset(self._checks_used), annotations, returns, used)

    def _prologue(self, printer: Printer, extra_inputs: dict, lines: list[str],
                  ) -> tuple[list[str], bool]:
        """Argument checks, the dimension sizes the function uses (in `lines` or the
        checks: the forward part a function leaves out may have used more), read off the
        arguments or solved from them (`M = _solve(...)`), the checks of exact divisions
        and slice bounds (`_exact`, `_within`), and scalar arguments passed as Python
        numbers made 0-d arrays of the arrays' dtype (weakly typed, SPEC 1; else `a.dtype`
        fails, and NumPy functions of `a` return float64 scalars that would turn float32
        arrays into float64). Whether `_weak` is used."""
        e = self.entry
        checks, expects = [], []
        self._checks_used: set[str] = set()   # of runtime.SIZE_CHECKS
        if self.checks:
            args = ", ".join(a.name for a in e.args)
            checks.append(printer.helper("_dims", [self.spec_name, args]))
            solved = {(b.arg, b.axis) for b in e.dims.values() if not b.direct}
            # (an axis a dimension is solved from is checked by _solve; _expect checks
            # floats, _dims checked an Index's dtype)
            for a in e.args:
                if a.node.dtype != INT and any(
                        not (d.is_Integer or d.is_Symbol) and (a.name, i) not in solved
                        for i, d in enumerate(a.shape)):
                    expects.append(printer.helper(
                        "_expect", [f'"{a.name}"', a.name, printer.shape(a.shape)]))
            for name, node in extra_inputs.items():
                expects.append(printer.helper(
                    "_expect", [f'"{name}"', name, printer.shape(node.shape)]))
            # exact divisions and slice bounds, before the shapes that use them
            expects[:0] = [self._requirement(r, printer) for r in e.requirements]
        used = _names_in({s.name for s in printer.dims_used} & set(e.dims), lines + expects)
        # solving a dimension checks the size it is solved from: always, with checks
        checked = {d for d, b in e.dims.items() if not b.direct} if self.checks else set()
        for d in reversed(list(e.dims)):   # and those they are solved with
            if d in used or d in checked:
                used |= {s.name for s in e.dims[d].declared.free_symbols} - {d}
        sizes = [self._size(d, b, printer, assign=d in used) for d, b in e.dims.items()
                 if d in used or d in checked]
        floats = [a for a in e.args if a.node.dtype != INT]   # (an Index argument is no float)
        arrays = "".join(f", {a.name}" for a in floats if a.node.ndim)
        weak = [f"{n} = {printer.helper('_weak', [n + arrays])}"
                for n in [a.name for a in floats if not a.node.ndim]
                + [name for name, x in extra_inputs.items() if not x.ndim]]
        # an int argument may be a Python int: an array, for `.astype` (float(n))
        ints = [f"{a.name} = {printer.call('asarray', [a.name])}" for a in e.args
                if not a.node.ndim and a.node.dtype == INT]
        namespace = printer.prologue([a.name for a in e.args] + list(extra_inputs))
        return namespace + checks + sizes + expects + weak + ints, bool(weak)

    def _size(self, name: str, b: Binding, printer: Printer, assign: bool = True) -> str:
        """`N = x.shape[0]`, or the dimension solved from the size of an axis declared as
        an expression (`M = _solve("w", 0, "3 * M", "M", w.shape[0], 3)`, which checks that
        the size is 3 * M for a positive integer M; without checks `w.shape[0] // 3`)."""
        n = f"{b.arg}.shape[{b.axis}]"
        if b.direct:
            return f"{name} = {n}"
        s = next(x for x in b.declared.free_symbols if x.name == name)
        a, offset = linear_in(b.declared, s)
        p, q = sympy.fraction(sympy.together(a))
        if not self.checks:
            size = sympy.Symbol(n, integer=True, positive=True)   # printed as it is named
            return f"{name} = {printer.scalar((size - offset) * q / p, integer=True)[0]}"
        parts = [printer.scalar(p, integer=True)[0]]
        if q != 1 or offset != 0:
            parts.append(printer.scalar(q, integer=True)[0])
        if offset != 0:
            parts.append(printer.scalar(offset, integer=True)[0])
        self._checks_used.add("_solve")
        return ((f"{name} = " if assign else "")   # (only the check, if M is not used)
                + f'{self.names["_solve"]}("{b.arg}", {b.axis}, {_text(b.declared, b.text)}, '
                f'"{name}", {n}, {", ".join(parts)})')

    def _requirement(self, r: Requirement, printer: Printer) -> str:
        """The check at entry of an exact division (`_exact(C, H, "C", "H", 3)`) or of a
        slice bound within its axis (`_within(2 * H, C, "2 * H", "C", 5)`)."""
        helper = "_exact" if r.kind == "divides" else "_within"
        self._checks_used.add(helper)
        helper = self.names[helper]
        left, right = (printer.scalar(x, integer=True)[0] for x in (r.left, r.right))
        texts = (_text(r.left, r.texts[0]), _text(r.right, r.texts[1]))
        return f"{helper}({left}, {right}, {texts[0]}, {texts[1]}, {r.line})"


def _text(d, written: str = "") -> str:
    """A dimension expression (as `written`, else printed) as a string literal of the
    emitted code: names, numbers and operators only (nothing to escape; `verify` allows
    exactly these)."""
    text = written or fmt_dim(d)
    if not DIM_TEXT.fullmatch(text):
        raise InternalError(f"dimension expression {text!r} as a string")
    return f'"{text}"'


# The line width of `ruff format`'s default. A statement whose shape comment would take
# its line past it gets the comment on a line of its own above it, so that formatting the
# module (at this width or a wider one) leaves it as it is.
LINE_WIDTH = 88


def _comments_that_fit(lines: list[str], phases: list[str]) -> tuple[list[str], list[str]]:
    """`lines` (of a function body, indented by 4 in the module) with each trailing shape
    comment (`  # (N, D)...`, or `  # reuses x's buffer`) that does not fit in `LINE_WIDTH`
    moved above its statement."""
    if max(map(len, lines), default=0) + 4 <= LINE_WIDTH:   # (the usual body: as it is)
        return lines, phases
    long = [i for i, line in enumerate(lines) if len(line) + 4 > LINE_WIDTH
            and ("  # (" in line or "  # reuses " in line) and not line.lstrip().startswith("#")]
    if not long:
        return lines, phases
    out_lines, out_phases = [], []
    start = 0
    for i in long:
        out_lines += lines[start:i]
        out_phases += phases[start:i]
        mark = "  # (" if "  # (" in lines[i] else "  # reuses "
        code, _, comment = lines[i].rpartition(mark)
        indent = code[:len(code) - len(code.lstrip(" "))]
        out_lines += [f"{indent}{mark[2:]}{comment}", code]
        out_phases += [phases[i], phases[i]]
        start = i + 1
    return out_lines + lines[start:], out_phases + phases[start:]


_COMMENT = re.compile(r"#.*")   # from a line's first `#` to its end


def _names_in(names: set[str], lines: list[str]) -> set[str]:
    """Those of `names` that the code of `lines` reads (comments left out)."""
    if not names:
        return names
    code = _COMMENT.sub("", "\n".join(lines))   # (one pass over the text, not a split a line)
    # (a search per name stops at its first use: one pass over a long body for all the
    # names would read all of it)
    return {name for name in names if _reads(code, name)}


def _reads(code: str, name: str) -> bool:
    """Whether `code` reads the variable `name` (not an attribute, not part of a longer
    name). The pattern starts with the name, which the regex engine looks for as a
    literal (a look-behind first would be tried at every position of a long body); the
    character before each match is checked here."""
    for m in re.finditer(re.escape(name) + r"(?!\w)", code):
        i = m.start()
        if i == 0 or not (code[i - 1].isalnum() or code[i - 1] in "_."):
            return True
    return False


def annotate(inputs: list[Node], plan: Plan, outputs: list[Node], names: ModuleNamer,
             ) -> tuple[list[str], str, frozenset]:
    """The annotations of a function's arguments (`inputs`) and of its result (`outputs`
    grouped as `plan` returns them), and the type aliases (runtime.TYPES) they use: an
    array of floats, or a scalar (which may be a Python number); of integers for Index
    values. A return annotation longer than RETURNS_WIDTH is written as a tuple of any
    length (the docstring lists the results)."""
    used: set[str] = set()

    def kind(node: Node) -> str:
        k = ("Int" if node.dtype == INT else "Scalar") if node.shape == () else \
            ("IntArray" if node.dtype == INT else "Array")
        used.add(k)
        return names[k]

    tup = names["tuple"]   # (`tuple_` where a user's name takes `tuple`)
    annotations = [kind(n) for n in inputs]
    result = _grouped([kind(o) for o in outputs], plan.group, plan.rows, tup + "[{}]")
    returns = result[0] if len(result) == 1 else f"{tup}[{', '.join(result)}]"
    if len(returns) > RETURNS_WIDTH:
        any_result = f"{names['Array']} | {names['Scalar']}"
        returns = f"{tup}[{any_result}, ...]" if plan.rows is None else \
            f"{tup}[{tup}[{any_result}, ...], ...]"
        used |= {"Array", "Scalar"}
    return annotations, returns, frozenset(used)


def _return_lines(returns: list[str], group, rows) -> list[str]:
    """`return a, (b, c)` (`_grouped`) on one line where it fits in the body's width, else
    as `ruff format` writes it: the tuple in parentheses, an item a line with a trailing
    comma, and an inner tuple that still does not fit exploded the same way."""
    items = _nested(returns, group, rows)

    def flat(item) -> str:
        return item if isinstance(item, str) else f"({', '.join(map(flat, item))})"

    line = "return " + ", ".join(map(flat, items))
    if len(line) <= MAX_WIDTH or len(items) == 1:
        return [line]
    out = ["return ("]
    for item in items:
        if isinstance(item, str) or len(flat(item)) + 5 <= MAX_WIDTH:
            out.append(f"    {flat(item)},")
        else:
            out += ["    ("] + [f"        {flat(x)}," for x in item] + ["    ),"]
    return out + [")"]


def _nested(returns: list, group, rows) -> list:
    """The returned expressions with `group` as one tuple (a list), or as `rows` tuples."""
    if group is not None:
        lo, hi = group
        inner = returns[lo:hi]
        returns = returns[:lo] + [inner[0] if len(inner) == 1 else inner] + returns[hi:]
    if rows is not None:
        returns = [returns[r * rows:(r + 1) * rows] for r in range(rows)]
    return returns


def _grouped(returns: list[str], group, rows, tuple_form: str = "({})") -> list[str]:
    """The returned expressions with `group` as one tuple, or as `rows` nested tuples
    (`tuple_form` spells a tuple: of expressions, or of their types)."""
    if group is not None:
        lo, hi = group
        inner = returns[lo:hi]
        grouped = inner[0] if len(inner) == 1 else tuple_form.format(", ".join(inner))
        returns = returns[:lo] + [grouped] + returns[hi:]
    if rows is not None:   # a k x k nested tuple of blocks
        returns = [tuple_form.format(", ".join(returns[r * rows:(r + 1) * rows]))
                   for r in range(rows)]
    return returns


def owned_results(outputs: list[Node], printer: Printer) -> list[str]:
    """The code of each result, copied where the array returned would otherwise be an
    argument or a view of one, a read-only view, or share memory with an earlier result
    (SPEC 2: results alias nothing). Views are followed back to their base through the
    ops that declare them (`OpDef.view`)."""
    bases: set[int] = set()
    out = []
    for o in outputs:
        text, prec = printer.code_of(o)
        base, readonly = o, False
        while (view := REGISTRY[base.op].view_of(base)) is not None:
            readonly = readonly or view == "readonly"
            base = base.args[0]
        if base.is_const:   # a Python number: immutable
            copy = readonly
        else:
            copy = readonly or REGISTRY[base.op].has("argument") or id(base) in bases
            bases.add(id(base))
        if copy:
            text = printer.copy(text, prec, scalar=o.ndim == 0)
        out.append(text)
    return out


def jacobian_plan(fns: EntryFunctions, hints: dict[str, int] | None = None) -> Plan:
    """`f_jacobian`'s plan: the Jacobian blocks out.shape + p.shape, by batched forward or
    reverse mode, whichever is cheaper for the shapes with the sizes of `hints`
    (`jacobian_mode`). (A function, not a method: EntryFunctions is at the size the
    project allows a class.)"""
    e, params = fns.entry, fns.params
    mode = jacobian_mode(fns.out, [p.node for p in params], hints)
    g = fns._extra_input(naming.COTANGENT_INPUT, "cotangent", fns.out.shape) \
        if mode == "reverse" else None
    try:
        blocks = fns.derivatives.jacobian(mode, g)
    except ShapeError as err:
        raise CompileError(fns.program.diagnostic(
            e.return_line, e.return_col, f"--jacobian: {err}")) from None
    if g is not None and any(n is g for n in topo_order(blocks)):
        raise InternalError("the reverse-mode Jacobian reads the output cotangent")
    single = len(params) == 1
    names = {blk: naming.jacobian_name(p.name, single) for p, blk in zip(params, blocks)}
    labels = [(f"{names[blk]}: d{e.name}/d{p.name}", blk) for p, blk in zip(params, blocks)]
    doc = fns._doc(f"The Jacobian of `{e.name}` with respect to {fns._param_list()}, by "
                   f"batched {mode} mode.", labels)
    return Plan(f"{e.name}_jacobian", "jacobian", [], blocks, names, doc,
                group=None if single else (0, len(blocks)))
