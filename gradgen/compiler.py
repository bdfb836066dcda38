"""The pipeline: source text -> IR -> derivatives -> scheduled statements -> module source."""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from . import ir
from .autodiff import batched_jvp, jvp, vjp
from .codegen.emit import render_module
from .codegen.naming import ModuleNamer, Namer, cotangent_name, rename_identifiers, tangent_name
from .codegen.printer import Printer, printer_for
from .codegen.runtime import CHECK_DIMS, CHECK_SHAPE, WEAK_SCALAR
from .codegen.schedule import schedule
from .dims import fmt_shape
from .errors import CompileError, Diagnostic, ShapeError, WorkLimit
from .frontend import EntryPoint, Program, parse_program, source_lines
from .ir import Node, const, make, topo_order
from .ops.registry import REGISTRY
from .passes import building, lower, optimize
from .version import __version__

ALL_MODES = ("grad", "vjp", "jvp", "hvp")
# The most work (IR nodes asked for, plus nodes scheduled) one compilation may do: about
# 12 µs a unit, so some 5 s of CPU on the machines we measured. Past it the entry point
# being compiled is refused with a diagnostic: no input takes minutes to compile or refuse.
MAX_WORK = 400_000
DEFAULT_MODES = ("grad", "vjp", "jvp", "hvp")


@dataclass(frozen=True)
class Options:
    """What to emit; mirrors the CLI flags."""

    modes: tuple[str, ...] | None = None   # None: every function that applies
    hessian: bool = False
    wrt: tuple[str, ...] | None = None
    checks: bool = True
    hints: tuple[tuple[str, int], ...] = ()   # dimension sizes for matrix-chain ordering

    def describe(self) -> str:
        modes = ",".join(self.modes) if self.modes is not None else "default"
        parts = [f"modes={modes}"]
        if self.wrt:
            parts.append(f"wrt={','.join(self.wrt)}")
        if self.hessian:
            parts.append("hessian")
        parts.append("checks" if self.checks else "no-checks")
        if self.hints:
            parts.append("hint=" + ",".join(f"{k}={v}" for k, v in self.hints))
        return " ".join(parts)

    def flags(self) -> str:
        """The `gradgen compile` flags that give these options (empty for the defaults)."""
        parts = []
        if self.modes is not None:
            parts.append(f"--modes {','.join(self.modes)}")
        if self.wrt:
            parts.append(f"--wrt {','.join(self.wrt)}")
        if self.hessian:
            parts.append("--hessian")
        if not self.checks:
            parts.append("--no-checks")
        parts += [f"--hint {k}={v}" for k, v in self.hints]
        return "".join(" " + p for p in parts)


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


@dataclass
class Module:
    filename: str
    options: Options
    version: str
    doc: str
    imports: list[str] = field(default_factory=lambda: ["import numpy as np"])
    preludes: list[str] = field(default_factory=list)
    constants: list[str] = field(default_factory=list)
    functions: list[Function] = field(default_factory=list)

    @property
    def regenerate(self) -> str:
        """The shell command that writes this module again (the file name shell-quoted)."""
        import shlex

        return f"gradgen compile {shlex.quote(self.filename)}{self.options.flags()}"


def compile_source(text: str, filename: str = "<string>", *, modes: Iterable[str] | None = None,
                   hessian: bool = False, wrt: Iterable[str] | None = None,
                   checks: bool = True, hints: dict[str, int] | None = None) -> str:
    """Compile a source text to the source of a standalone NumPy module."""
    with _gc_paused():
        return render_module(compile_module(text, filename,
                                            _options(modes, hessian, wrt, checks, hints)))


def compile_module(text: str, filename: str, options: Options) -> Module:
    """Parse, optimise, differentiate, optimise and schedule: the module before rendering."""
    with _gc_paused(), building() as b:
        b.limit = MAX_WORK
        try:
            program = parse_program(text, filename)
        except WorkLimit:
            raise CompileError(Diagnostic(filename, 1, 1, "the program is too large to "
                                          f"compile: it needs more than {MAX_WORK:,} "
                                          "operations; split it")) from None
        entries = []
        for e in program.entries:
            with _work_limit(program, e):
                entries.append(optimize_entry(e, dict(options.hints)))
        program.entries = entries
        return build_module(program, options)


@contextlib.contextmanager
def _work_limit(program: Program, entry: EntryPoint) -> Iterator[None]:
    """A `WorkLimit` inside the block as a diagnostic at the entry point's definition."""
    try:
        yield
    except WorkLimit:
        raise CompileError(program.diagnostic(
            entry.line, 1, f"'{entry.name}' is too large to compile: its functions need more "
            f"than {MAX_WORK:,} operations; ask for fewer of them (--modes grad, no --hessian) "
            "or split the program")) from None


def optimize_entry(entry: EntryPoint, hints: dict[str, int]) -> EntryPoint:
    """The entry point with its graph through the passes (`gradgen.passes.optimize`)."""
    graph = ir.Graph(tuple(a.node for a in entry.args), (entry.output,), dict(entry.names))
    graph = optimize(graph, hints)
    return dataclasses.replace(entry, output=graph.outputs[0], names=graph.names)


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off for the block (then as it was before).

    A compilation allocates hundreds of thousands of long-lived objects (IR nodes, tables
    keyed by them) and no reference cycles worth collecting, so the collector's full
    passes over them are pure overhead: with 10,000 operations they cost about a quarter
    of the time, and more the larger the program (each pass scans everything alive)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def make_options(modes=None, hessian=False, wrt=None, checks=True, hints=None) -> Options:
    """Validated options (raises ValueError for an unknown mode or a bad hint)."""
    return _options(modes, hessian, wrt, checks, hints)


def _options(modes, hessian, wrt, checks, hints=None) -> Options:
    if modes is not None:
        modes = tuple(m.strip() for m in modes if m.strip())
        bad = [m for m in modes if m not in ALL_MODES]
        if bad:
            raise ValueError(f"unknown mode {bad[0]!r}; choose from {', '.join(ALL_MODES)}")
    hints = dict(hints or {})
    for k, v in hints.items():
        if not str(k).isidentifier() or isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"a hint is a dimension name and a positive size, got {k}={v!r}")
    return Options(modes, bool(hessian), tuple(wrt) if wrt else None, bool(checks),
                   tuple(sorted(hints.items())))


def build_module(program: Program, options: Options) -> Module:
    """Every emitted function of every entry point."""
    import os

    name = os.path.basename(program.filename)
    module = Module(name, options, __version__,
                    f"NumPy functions and derivatives generated by gradgen from {name}.")
    names = _module_namer(program)
    builders = [_EntryBuilder(program, entry, options, names) for entry in program.entries]
    preludes: dict[str, str] = {}
    emitted: dict[str, str] = {}   # function name -> the entry point it belongs to
    weak = False
    for builder in builders:
        entry = builder.entry
        with _work_limit(program, entry):
            for fn, printer in builder.functions():
                weak = weak or fn.weak
                if fn.name in emitted:
                    raise CompileError(program.diagnostic(
                        entry.line, _def_col(program, entry),
                        _collision(fn.name, emitted[fn.name], entry.name)))
                emitted[fn.name] = entry.name
                module.functions.append(fn)
                preludes.update(printer.preludes)
        if options.checks:
            module.constants.append(builder.spec_constant())
    if weak:
        preludes = {"_weak": WEAK_SCALAR, **preludes}
    if options.checks:
        preludes = {"_dims": CHECK_DIMS, "_expect": CHECK_SHAPE, **preludes}
    rename = names.mapping()
    module.preludes = [rename_identifiers(p, rename) for p in preludes.values()]
    module.imports = [names.numpy_import(), *names.aliases()]
    return module


# The suffixes of the functions an entry point `f` may emit besides `f` itself.
_SUFFIXES = ("_grad", "_value_and_grad", "_vjp", "_jvp", "_hvp", "_hessian")


def _module_namer(program: Program) -> ModuleNamer:
    """The namer of the module's internal names: they avoid every name the user chose (the
    entry points and the functions they may emit, arguments, dimensions)."""
    user: set[str] = set()
    for e in program.entries:
        user |= {e.name, *(e.name + s for s in _SUFFIXES)}
        user |= {a.name for a in e.args} | set(e.dims)
    return ModuleNamer(user, helper_sources())


def helper_sources() -> list[str]:
    """The source of every helper an emitted module may carry."""
    return [CHECK_DIMS, CHECK_SHAPE, WEAK_SCALAR] + sorted(
        {d.prelude for d in REGISTRY.values() if d.prelude})


def _owned_results(outputs: list[Node], printer: Printer) -> list[str]:
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
        if base.op == "const":   # a Python number: immutable
            copy = readonly
        else:
            copy = readonly or base.op == "input" or id(base) in bases
            bases.add(id(base))
        if copy:
            text = printer.copy(text, prec, scalar=o.ndim == 0)
        out.append(text)
    return out


def _collision(name: str, first: str, later: str) -> str:
    what = (f"entry point '{first}'" if name == first
            else f"'{name}', which entry point '{first}' emits")
    mine = "" if name == later else f" ('{later}' emits '{name}')"
    return (f"entry point '{later}' collides with {what}{mine}; rename one of them")


def _def_col(program: Program, entry: EntryPoint) -> int:
    """The column of the name in `def name(`, else 1."""
    lines = source_lines(program.source)
    text = lines[entry.line - 1] if 0 < entry.line <= len(lines) else ""
    m = re.match(r"\s*def\s+", text)
    return m.end() + 1 if m else 1


class _EntryBuilder:
    """Builds the functions of one entry point."""

    def __init__(self, program: Program, entry: EntryPoint, options: Options,
                 names: ModuleNamer):
        self.program = program
        self.names = names
        self.entry = entry
        self.options = options
        self.out = entry.output
        self.scalar = self.out.ndim == 0
        params = entry.params
        if options.wrt is not None:
            known = {a.name for a in params}
            for w in options.wrt:
                if w not in known:
                    raise CompileError(program.diagnostic(
                        entry.line, 1, f"--wrt {w}: '{entry.name}' has no Param named '{w}'"))
            params = [a for a in params if a.name in options.wrt]
        self.params = params
        spec = unicodedata.normalize("NFKC", f"_{entry.name.upper()}_ARGS")
        self.spec_name = names.fresh(spec if spec.isidentifier() else f"_{entry.name}_ARGS")
        self._grad = None

    # ---------------------------------------------------------------- which functions

    def functions(self):
        e, opts = self.entry, self.options
        explicit = opts.modes is not None
        modes = opts.modes if explicit else DEFAULT_MODES
        for m in ("grad", "hvp"):
            if m in modes and explicit and not self.scalar and self.params:
                raise CompileError(self.program.diagnostic(
                    e.return_line, e.return_col,
                    f"'{m}' needs a scalar output, but '{e.name}' returns shape "
                    f"{fmt_shape(self.out.shape)}; use '{e.name}_vjp' instead"))
        yield self.forward()
        if not self.params:
            return
        if "grad" in modes and self.scalar:
            yield self.grad(with_value=False)
            yield self.grad(with_value=True)
        if "vjp" in modes:
            yield self.vjp()
        if "jvp" in modes:
            yield self.jvp()
        if "hvp" in modes and self.scalar:
            yield self.hvp()
        if opts.hessian:
            if not self.scalar:
                raise CompileError(self.program.diagnostic(
                    e.return_line, e.return_col,
                    f"--hessian needs a scalar output, but '{e.name}' returns shape "
                    f"{fmt_shape(self.out.shape)}"))
            yield self.hessian()

    # ---------------------------------------------------------------- the functions

    def forward(self):
        doc = self._doc("", [("the value", self.out)])
        return self._function(self.entry.name, [], [self.out], {}, doc, "forward")

    def _gradient(self):
        """The gradient graph (seed 1) with derived names, built once per entry point."""
        if self._grad is None:
            grads, ct = vjp([self.out], [const(1)], [p.node for p in self.params])
            self._grad = self._finish_cotangents(grads, ct)
        grads, names = self._grad
        return list(grads), dict(names)

    def grad(self, with_value: bool):
        grads, names = self._gradient()
        if with_value:
            name = f"{self.entry.name}_value_and_grad"
            doc = self._doc(f"The value of `{self.entry.name}` and its gradient with respect to "
                            f"{self._param_list()}, in one pass.",
                            [("value: the value", self.out)] + self._grad_returns(grads))
            return self._function(name, [], [self.out, *grads], names, doc, "value_and_grad",
                                  group=(1, 1 + len(grads)))
        doc = self._doc(f"The gradient of `{self.entry.name}` with respect to "
                        f"{self._param_list()}.",
                        self._grad_returns(grads))
        return self._function(f"{self.entry.name}_grad", [], grads, names, doc, "grad",
                              group=(0, len(grads)))

    def vjp(self):
        g = self._extra_input("g", "cotangent", self.out.shape)
        grads, ct = vjp([self.out], [g], [p.node for p in self.params])
        grads, names = self._finish_cotangents(grads, ct)
        doc = self._doc(f"Vector-Jacobian product of `{self.entry.name}`: the cotangents of "
                        f"{self._param_list()} for the output cotangent `{g.attr('name')}`.",
                        self._grad_returns(grads),
                        extra=[(g, f"cotangent of the output, shape {fmt_shape(g.shape)}")])
        return self._function(f"{self.entry.name}_vjp", [g], grads, names, doc, "vjp",
                              group=(0, len(grads)))

    def jvp(self):
        tangents = [self._extra_input(tangent_name(p.name), "tangent", p.shape)
                    for p in self.params]
        (t,), table = jvp([self.out], {id(p.node): t for p, t in zip(self.params, tangents)},
                          [p.node for p in self.params])
        if t is None:
            t = make("zeros_like", self.out)
        names = self._derived_names(table, tangent_name)
        names.setdefault(t, tangent_name("value") if self.out not in self.entry.names
                         else tangent_name(self.entry.names[self.out]))
        doc = self._doc(f"Forward mode: the value of `{self.entry.name}` and its directional "
                        "derivative along the tangents.", [("value: the value", self.out),
                         (f"{names[t]}: its directional derivative", t)],
                        extra=[(tn, f"tangent of {p.name}, shape {fmt_shape(p.shape)}")
                               for tn, p in zip(tangents, self.params)])
        return self._function(f"{self.entry.name}_jvp", tangents, [self.out, t], names, doc,
                              "jvp")

    def hvp(self):
        vs = [self._extra_input("v" + p.name, "tangent", p.shape) for p in self.params]
        grads, names = self._gradient()
        hv, table = jvp(grads, {id(p.node): v for p, v in zip(self.params, vs)},
                        [p.node for p in self.params])
        hv = [h if h is not None else make("zeros_like", p.node)
              for h, p in zip(hv, self.params)]
        for h, p in zip(hv, self.params):
            names.setdefault(h, "Hv" + p.name)
        for node, name in self._derived_names(table, tangent_name).items():
            names.setdefault(node, name)
        doc = self._doc(f"Hessian-vector product of `{self.entry.name}` with respect to "
                        f"{self._param_list()}.",
                        [(f"Hv{p.name}: (H v) for {p.name}", h) for p, h in zip(self.params, hv)],
                        extra=[(v, f"direction for {p.name}, shape {fmt_shape(p.shape)}")
                               for v, p in zip(vs, self.params)])
        return self._function(f"{self.entry.name}_hvp", vs, hv, names, doc, "hvp",
                              group=(0, len(hv)))

    def hessian(self):
        """Full Hessian blocks d(grad_i)/d(p_j), each of shape p_i.shape + p_j.shape, by
        pushing the standard basis of p_j through the gradient graph in batched forward
        mode: matrix expressions, no loop over directions."""
        grads, names = self._gradient()
        nodes = [p.node for p in self.params]
        blocks = []
        for j, pj in enumerate(self.params):
            with ir.builder().at(phase="backward"):
                seed = make("basis", pj.node)
                try:
                    cols = batched_jvp(grads, {id(pj.node): seed}, nodes)
                except ShapeError as err:
                    raise CompileError(self.program.diagnostic(
                        self.entry.return_line, self.entry.return_col,
                        f"--hessian: {err}")) from None
                row = []
                for pi, col in zip(self.params, cols):
                    block = None
                    if col is not None:   # (size_j,) + p_i.shape -> p_i.shape + p_j.shape
                        k = len(pi.shape)
                        block = make("transpose", col, axes=tuple(range(1, 1 + k)) + (0,))
                        block = make("reshape", block, shape=tuple(pi.shape) + tuple(pj.shape))
                    row.append(block)
                blocks.append(row)
        # blocks[j][i] is d(grad_i)/d(p_j); the result is indexed [i][j].
        out, labels = [], []
        for i, pi in enumerate(self.params):
            for j, pj in enumerate(self.params):
                h = blocks[j][i]
                if h is None:
                    with ir.builder().at(phase="backward"):
                        h = self._zero_block(pi, pj)
                name = "H" if len(self.params) == 1 else f"H_{pi.name}_{pj.name}"
                names.setdefault(h, name)
                out.append(h)
                labels.append((f"{name}: d2/d{pi.name} d{pj.name}", h))
        doc = self._doc(f"The Hessian of `{self.entry.name}` with respect to "
                        f"{self._param_list()}" + (" (blocks, row-major)."
                                                   if len(self.params) > 1 else "."), labels)
        k = len(self.params)
        return self._function(f"{self.entry.name}_hessian", [], out, names, doc, "hessian",
                              rows=k if k > 1 else None)

    def _zero_block(self, pi, pj):
        """A zero Hessian block of shape pi.shape + pj.shape (dtype of pi)."""
        z = make("expand_dims", pi.node, axes=tuple(range(pi.node.ndim, pi.node.ndim
                                                          + pj.node.ndim))) \
            if pj.node.ndim else pi.node
        z = make("broadcast_to", z, shape=tuple(pi.shape) + tuple(pj.shape))
        return make("zeros_like", z)

    # ---------------------------------------------------------------- helpers

    def _extra_input(self, base: str, role: str, shape) -> Node:
        taken = {a.name for a in self.entry.args} | set(self.entry.names.values()) \
            | set(self.entry.dims) | self.names.taken()
        name = Namer(taken).fresh(base)
        return make("input", name=name, role=role, shape=tuple(shape))

    def _finish_cotangents(self, grads, ct):
        """Explicit zeros for Params that do not influence the output; readable names."""
        b = ir.builder()
        out = []
        with b.at(phase="backward"):
            for g, p in zip(grads, self.params):
                out.append(g if g is not None else make("zeros_like", p.node))
        names = {}
        for g, p in zip(out, self.params):
            if g not in self.entry.names:
                names.setdefault(g, cotangent_name(p.name))
        for node, name in self._derived_names(ct, cotangent_name).items():
            names.setdefault(node, name)
        return out, names

    def _derived_names(self, table, rename) -> dict:
        """Name each derivative after its source-named primal (reverse order: outputs first)."""
        names = {}
        for node in reversed(topo_order([self.out])):
            if node.op == "input":   # a Param's derivative is named when it is finished
                continue
            d = table.get(id(node))
            src = self.entry.names.get(node)
            if d is not None and src is not None and not d.is_const \
                    and d.op != "input" and d not in self.entry.names:
                names.setdefault(d, rename(src))
        return names

    def _param_list(self) -> str:
        return ", ".join(p.name for p in self.params)

    def _grad_returns(self, grads):
        return [(f"{cotangent_name(p.name)}: the gradient for {p.name}", g)
                for p, g in zip(self.params, grads)]

    def _doc(self, summary: str, returns, extra=()) -> str:
        e = self.entry
        # Lines end only at newlines (as in the source); any other character, a form feed or
        # U+2028 included, stays in its line and is escaped when the docstring is emitted.
        text = (e.doc or "").strip()
        user = [line.strip() for line in text.split("\n")] if text else []
        lines = [summary or (user[0] if user else f"`{e.name}` from {self.program.filename}."),
                 ""]
        rest = user[1:] if not summary else user
        while rest and not rest[0]:   # the summary's blank line is there already
            rest = rest[1:]
        if any(rest):
            lines += [*rest, ""]
        lines.append("Args:")
        for a in e.args:
            lines.append(f"    {a.name}: {a.decl}")
        for node, text in extra:
            lines.append(f"    {node.attr('name')}: {text}")
        lines.append("")
        lines.append("Returns:")
        for text, node in returns:
            lines.append(f"    {text}, shape {fmt_shape(node.shape)}.")
        return "\n".join(lines)

    def spec_constant(self) -> str:
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
            items.append(f'("{a.name}", ({inner}))')
        body = "".join(f"\n    {it}," for it in items)
        return f"{self.spec_name} = ({body}\n)"

    def _function(self, name, extra_inputs, outputs, names, doc, kind, group=None,
                  rows=None):
        e = self.entry
        all_names = dict(e.names)
        if len(outputs) > 1 and outputs[0] is self.out and not self.out.is_const:
            all_names.setdefault(self.out, "value")
        for node, n in names.items():
            all_names.setdefault(node, n)
        for node in extra_inputs:
            all_names[node] = node.attr("name")
        inputs = tuple(a.node for a in e.args) + tuple(extra_inputs)
        graph = lower(optimize(ir.Graph(inputs, tuple(outputs), all_names),
                               dict(self.options.hints)))
        outputs, all_names = list(graph.outputs), dict(graph.names)
        arg_names = [a.name for a in e.args] + [n.attr("name") for n in extra_inputs]
        namer = Namer(set(arg_names) | set(e.dims) | self.names.taken())
        printer = printer_for("numpy", self.names.names)
        # Gradients are computed in reverse order of the Params, as backpropagation does:
        # the last layer's first, so forward values die early.
        visit = list(outputs)
        if group is not None:
            lo, hi = group
            visit[lo:hi] = reversed(visit[lo:hi])
        ir.builder().charge(len(graph.order))
        body = schedule(list(outputs), all_names, namer, printer,
                        derivative_label="tangent" if kind == "jvp" else "grad",
                        keep=frozenset(arg_names), visit=visit)
        prologue, weak = self._prologue(printer, extra_inputs)
        returns = _owned_results(outputs, printer)
        if group is not None:
            lo, hi = group
            inner = returns[lo:hi]
            grouped = inner[0] if len(inner) == 1 else "(" + ", ".join(inner) + ")"
            returns = returns[:lo] + [grouped] + returns[hi:]
        if rows is not None:   # a k x k nested tuple of blocks
            returns = ["(" + ", ".join(returns[r * rows:(r + 1) * rows]) + ")"
                       for r in range(rows)]
        ret = "return " + ", ".join(returns)
        lines = prologue + body.lines + [ret]
        phases = ["check"] * len(prologue) + body.phases + ["return"]
        fn = Function(name, arg_names, doc, lines, e.name, kind, phases, graph, weak)
        return fn, printer

    def _prologue(self, printer: Printer, extra_inputs) -> tuple[list[str], bool]:
        """Argument checks, the dimension sizes the function uses, read off the arguments,
        and scalar arguments passed as Python numbers made 0-d arrays of the arrays' dtype
        (weakly typed, SPEC 1; else `a.dtype` fails, and NumPy functions of `a` return
        float64 scalars that would turn float32 arrays into float64). Whether `_weak` is
        used."""
        e = self.entry
        checks, expects = [], []
        expect = self.names["_expect"]
        if self.options.checks:
            args = ", ".join(a.name for a in e.args)
            checks.append(f"{self.names['_dims']}({self.spec_name}, {args})")
            for a in e.args:
                if any(not (d.is_Integer or d.is_Symbol) for d in a.shape):
                    expects.append(f'{expect}("{a.name}", {a.name}, {printer.shape(a.shape)})')
            for node in extra_inputs:
                expects.append(f'{expect}("{node.attr("name")}", {node.attr("name")}, '
                               f'{printer.shape(node.shape)})')
        used = {s.name for s in printer.dims_used}
        sizes = [f"{d} = {arg}.shape[{axis}]" for d, (arg, axis) in e.dims.items() if d in used]
        arrays = "".join(f", {a.name}" for a in e.args if a.node.ndim)
        weak = [f"{n} = {self.names['_weak']}({n}{arrays})"
                for n in [a.name for a in e.args if not a.node.ndim]
                + [x.attr("name") for x in extra_inputs if not x.ndim]]
        return checks + sizes + expects + weak, bool(weak)
