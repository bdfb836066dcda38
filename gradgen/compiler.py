"""The pipeline, and nothing else: source text -> IR -> optimised entry points ->
derivative graphs -> one forward schedule per entry point, each emitted function built on
it -> the module before rendering. The CLI, the API (`compile_source`, `load`) and
`gradgen check` all come through `compile_module`.

Derivative graphs are built in `gradgen.autodiff.derivatives`, names in
`gradgen.codegen.naming`, the functions' code around their bodies in
`gradgen.codegen.function`, statements in `gradgen.codegen.schedule`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
from collections.abc import Iterable, Iterator

from . import ir
from .codegen import runtime_xp
from .codegen.emit import render_module
from .codegen.function import EntryFunctions, Function, Module, Plan, jacobian_plan
from .codegen.naming import VALUE, ModuleNamer, Namer, rename_identifiers
from .codegen.printer import MAX_WIDTH, Printer, printer_for
from .codegen.runtime import (
    CHECK_DIMS,
    CHECK_SHAPE,
    ONE_DTYPE,
    REUSE_FREED_MEMORY,
    SIZE_CHECKS,
    TYPES,
    TYPES_COMMENT,
    WEAK_SCALAR,
    WORKSPACE,
)
from .codegen.schedule import Body, Forward, extend, schedule, with_value, workspace_flows
from .dims import fmt_shape
from .errors import CompileError, Diagnostic, WorkLimit
from .frontend import Argument, EntryPoint, Program, parse_program, source_lines
from .gcpause import gc_paused
from .ops.control import REGIONS_BUILT
from .ops.dtypes import INT
from .ops.registry import REGISTRY
from .options import ALL_MODES, DEFAULT_MODES, Options, _options, make_options
from .passes import building, hoist_steps, lower, optimize, sink_steps
from .version import __version__

__all__ = ["ALL_MODES", "DEFAULT_MODES", "MAX_WORK", "Function", "Module", "Options",
           "compile_module", "compile_source", "helper_sources", "make_options"]

# The most work (IR nodes asked for, plus nodes scheduled: an entry point's forward part
# once, then each function's own part) one compilation may do: about 12 µs a unit, so
# some 5 s of CPU on the machines we measured. A straight-line program of 10,000
# operations with every default function needs about 300,000. Past it the entry point
# being compiled is refused with a diagnostic: no input takes minutes to compile or refuse.
MAX_WORK = 450_000

# When True, every graph the pipeline produces is checked with `ir.verify` at each stage
# boundary (tests/conftest.py turns it on for the test session); off, a check costs one
# global lookup.
CHECK_GRAPHS = False

# The suffixes of the functions an entry point `f` may emit besides `f` itself.
_SUFFIXES = ("_grad", "_value_and_grad", "_vjp", "_jvp", "_hvp", "_hessian", "_jacobian")


def compile_source(text: str, filename: str = "<string>", *, modes: Iterable[str] | None = None,
                   hessian: bool = False, wrt: Iterable[str] | None = None,
                   checks: bool = True, hints: dict[str, int] | None = None,
                   checkpoint: int | None = None, target: str = "numpy",
                   jacobian: bool = False, workspace: bool = False) -> str:
    """Compile a source text to the source of a standalone NumPy (or array API) module."""
    return render_module(compile_module(text, filename,
                                        _options(modes, hessian, wrt, checks, hints,
                                                 checkpoint, target, jacobian,
                                                 workspace)))


def compile_module(text: str, filename: str, options: Options) -> Module:
    """Parse, optimise, differentiate, optimise and schedule: the module before rendering.
    The one way through the pipeline."""
    with gc_paused(), building() as b:
        b.limit = MAX_WORK
        program = _parse(b, text, filename)
        entries = []
        for e in program.entries:
            with _work_limit(program, e):
                entries.append(optimize_entry(e, dict(options.hints),
                                              batch_steps=_batch_steps(options)))
        program.entries = entries
        return build_module(program, options)


def _parse(b: ir.Builder, text: str, filename: str) -> Program:
    """The program, its graphs built in canonical form (the builder applies the rewrite
    rules as every node is made, here as everywhere)."""
    try:
        return parse_program(text, filename)
    except WorkLimit:
        raise CompileError(Diagnostic(filename, 1, 1, "the program is too large to "
                                      f"compile: it needs more than {MAX_WORK:,} "
                                      "operations; split it")) from None


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


def _batch_steps(options: Options) -> bool:
    """Whether hoist_steps and sink_steps run: they keep a buffer of all the steps
    ((T, N, H) for `X[t] @ Wx`), so not with checkpoints every K > 1 steps (`--checkpoint
    K`: O(T / K) carried values kept; rnn_loss at T = 4000, K = 64: 256 MiB with them,
    5.4 MiB without). With K = 1 every step's carried values are kept anyway."""
    return options.checkpoint is None or options.checkpoint == 1


def optimize_entry(entry: EntryPoint, hints: dict[str, int], batch_steps: bool = True
                   ) -> EntryPoint:
    """The entry point with its graph through the passes (`gradgen.passes.optimize`);
    `batch_steps`: also hoist_steps and sink_steps (`_batch_steps`)."""
    graph = _checked(ir.Graph(tuple(a.node for a in entry.args), (entry.output,),
                              dict(entry.names)))
    graph = _checked(optimize(graph, hints))
    # a loop's non-recurrent part out of it, and the work that feeds no carried value
    # after it, before autodiff
    steps = sink_steps(hoist_steps(graph)) if batch_steps else graph
    if steps is not graph:
        graph = _checked(optimize(_checked(steps), hints))
    return dataclasses.replace(entry, output=graph.outputs[0], names=graph.names)


def build_module(program: Program, options: Options) -> Module:
    """Every emitted function of every entry point."""
    name = os.path.basename(program.filename)
    xp = options.printer == "array_api"
    library = "Array API" if xp else "NumPy"
    module = Module(name, options, __version__,
                    f"{library} functions and derivatives generated by gradgen from {name}.",
                    entries=list(program.entries))
    names = _module_namer(program, options)
    preludes: dict[str, str] = {}
    emitted: dict[str, str] = {}   # function name -> the entry point it belongs to
    weak = False
    errors: list[Diagnostic] = []   # of every entry point (SPEC §5: all errors in one run)
    checks: set[str] = set()   # the size checks (runtime.SIZE_CHECKS) some prologue calls
    for entry in program.entries:
        try:
            with _work_limit(program, entry):
                functions, spec = _entry_functions(program, entry, options, names)
        except CompileError as e:
            errors += e.diagnostics
            continue
        for fn, printer in functions:
            weak = weak or fn.weak
            checks |= fn.checks
            if fn.name in emitted:
                raise CompileError(program.diagnostic(
                    entry.line, _def_col(program, entry),
                    _collision(fn.name, emitted[fn.name], entry.name)))
            emitted[fn.name] = entry.name
            module.functions.append(fn)
            preludes.update(printer.preludes)
        if options.checks:
            module.constants.append(spec)
    if errors:
        raise CompileError(sorted(errors, key=lambda d: (d.line, d.col)))
    runtime = runtime_xp.CHECKS if xp else {
        "_dims": CHECK_DIMS, "_expect": CHECK_SHAPE, "_weak": WEAK_SCALAR}
    if weak:
        preludes = {"_weak": runtime["_weak"], **preludes}
    if options.workspace:
        preludes["Workspace"] = WORKSPACE
    if not xp:   # (the array-API module's arrays are not necessarily NumPy's, nor its malloc)
        preludes["_reuse_freed_memory"] = REUSE_FREED_MEMORY
    if options.checks:
        preludes = {"_dims": runtime["_dims"], "_expect": runtime["_expect"],
                    **{h: SIZE_CHECKS[h] for h in SIZE_CHECKS if h in checks}, **preludes}
    if xp:   # the annotations name NumPy's array types: the array-API module has none
        for fn in module.functions:
            fn.annotations, fn.returns, fn.types_used = [], "", frozenset()
        preludes = {"_namespace": runtime_xp.NAMESPACE, **preludes}
    used = {t for fn in module.functions for t in fn.types_used}
    rename = names.mapping()
    module.preludes = [rename_identifiers(p, rename) for p in preludes.values()]
    if used:   # the annotations' aliases
        module.types = rename_identifiers(
            "\n".join([TYPES_COMMENT, *(TYPES[t] for t in TYPES if t in used)]), rename)
    if xp:   # (`import math` only where the code computes numbers with it)
        imports = [rename_identifiers(runtime_xp.IMPORTS, rename)]
        math = names["math"]
        if any(f"{math}." in line for fn in module.functions for line in fn.lines):
            imports.insert(0, ("import math" if math == "math" else f"import math as {math}")
                           + "\n")   # (a blank line after an import block, as isort has it)
    else:
        imports = [names.numpy_import(), *([names.typing_import()] if used else [])]
    module.imports = [*imports, *names.aliases()]
    return module


def _entry_functions(program: Program, entry: EntryPoint, options: Options,
                     names: ModuleNamer) -> tuple[list[tuple[Function, Printer]], str]:
    """The functions of one entry point (each with the printer that printed it) and its
    spec constant. The forward part is optimised, scheduled and named once; every
    function's own part (its derivatives) is scheduled after it."""
    params = _params(program, entry, options)
    fns = EntryFunctions(program, entry, params, names, options.checks, options.checkpoint)
    kinds = _kinds(program, entry, options, params)
    _check_rules(program, entry, kinds)
    hints = dict(options.hints)
    plans = [_plan(fns, kind, hints) for kind in kinds]
    graphs: list[ir.Graph] = []   # graphs[0] is the forward one
    for plan in plans:
        if plan.kind == "value_and_grad" and not _has_loop(graphs[kinds.index("grad")]):
            g = graphs[kinds.index("grad")]   # the value beside f_grad's gradient
            graphs.append(_checked(ir.Graph(g.inputs, (graphs[0].outputs[0], *g.outputs),
                                            {**graphs[0].names, **g.names})))
        else:
            graphs.append(_optimized(entry, plan, hints, _batch_steps(options),
                                     options.target == "numpy"))
    forward_nodes = set(map(id, graphs[0].order))
    # f_value_and_grad of a loop: its own graph, optimised with the value, where the
    # value's loop merges into the gradient's saving loop (one forward loop, not two)
    joint = next((g for g, p in zip(graphs, plans) if p.kind == "value_and_grad"
                  and _has_loop(graphs[kinds.index("grad")])), None)
    built_on = set()   # f_vjp of a scalar output builds on f_grad: only its new nodes count
    if "vjp" in kinds and "grad" in kinds:
        built_on = set(map(id, graphs[kinds.index("grad")].order))
    needed = _forward_reads(graphs, plans, joint is not None, built_on, forward_nodes)
    arg_names = {a.name for a in entry.args}
    taken = arg_names | set(entry.dims) | names.taken() | {
        name for plan in plans for x in plan.extra for name in (x.attr("name"),
                                                                plan.input_name(x))}
    args = (fns, plans, graphs, forward_nodes, needed, taken, arg_names, built_on, joint)
    out = [(fn, printer) for fn, printer, _ in _scheduled(entry, options, names, *args)]
    if options.workspace:
        out += _workspace_twins(entry, options, names, args, out)
    return out, fns.spec_constant()


def _workspace_twins(entry: EntryPoint, options: Options, names: ModuleNamer, args: tuple,
                     plain: list[tuple[Function, Printer]]) -> list[tuple[Function, Printer]]:
    """`--workspace`: each function of `plain` takes `workspace=None` and, given one,
    calls its private twin, whose temporaries are the workspace's buffers (the same
    statements, scheduled again with `Printer.workspace`; a buffer that would reach a
    result is left out, found by scheduling once more)."""
    fns, graphs = args[0], args[2]
    clash = [a.name for a in entry.args if a.name in ("ws", "workspace")]
    if clash:
        raise CompileError(fns.program.diagnostic(
            entry.line, _def_col(fns.program, entry),
            f"--workspace adds the keyword 'workspace' (and a twin taking 'ws') to "
            f"'{entry.name}', whose argument '{clash[0]}' has that name; rename the argument"))
    args = (*args[:5], args[5] | {"ws", "workspace"}, *args[6:])
    results = [o for g in graphs for o in g.outputs]
    marks = {"workspace_results": frozenset(id(o) for o in results),
             "workspace_parts": frozenset((id(o.args[0]), o.attr("index"))
                                          for o in results
                                          if REGISTRY[o.op].has("projection"))}
    twins = _scheduled(entry, options, names, *args, workspace=marks)
    exclude = frozenset(n for _, _, body in twins for n in workspace_flows(body))
    if exclude:
        twins = _scheduled(entry, options, names, *args,
                           workspace={**marks, "workspace_exclude": exclude})
    out = []
    for (fn, _), (twin, printer, _) in zip(plain, twins):
        twin.name = f"_{fn.name}_ws"
        twin.args = [*fn.args, "ws"]
        twin.annotations = [*fn.annotations, names["Workspace"]] if fn.annotations else []
        twin.doc = (f"`{fn.name}` with its temporaries in the buffers of `ws` (a Workspace)."
                    f"\n\n`{fn.name}(..., workspace=ws)` calls it: the same statements; "
                    "its results are fresh arrays.")
        twin.lines = [_fresh_return(line) if phase == "return" else line
                      for line, phase in zip(twin.lines, twin.phases)]
        fn.keywords = [("workspace", names["Workspace"])]
        test = _call_lines("if workspace is not None and workspace.bind(", fn.args, "):")
        fn.lines[:0] = [*test, *_call_lines(f"    return {twin.name}(",
                                            [*fn.args, "workspace"], ")")]
        fn.phases[:0] = ["check"] * (len(fn.lines) - len(fn.phases))
        out.append((twin, printer))
    return out


def _call_lines(head: str, args: list[str], tail: str) -> list[str]:
    """`head` + the arguments + `tail` as `ruff format` writes it within the body's width:
    on one line, else the arguments on one line of their own, else one a line."""
    line = head + ", ".join(args) + tail
    if len(line) <= MAX_WIDTH:
        return [line]
    pad = " " * (len(head) - len(head.lstrip()))
    hugged = pad + "    " + ", ".join(args)
    if len(hugged) <= MAX_WIDTH:
        return [head, hugged, pad + tail]
    return [head, *(f"{pad}    {a}," for a in args), pad + tail]


def _fresh_return(line: str) -> str:
    """`return ws.fresh(...)`: no result is a workspace buffer (`Workspace.fresh`)."""
    assert line.startswith("return ")
    return f"return ws.fresh({line[len('return '):]})"


def _scheduled(entry: EntryPoint, options: Options, names: ModuleNamer, fns, plans, graphs,
               forward_nodes, needed, taken, arg_names, built_on, joint,
               workspace: dict | None = None) -> list[tuple[Function, Printer, Body]]:
    """Each function of `plans` scheduled and assembled (with the printer that printed
    it and its body); `workspace`: the `Printer.workspace` marks of a twin."""
    def new_printer() -> Printer:
        p = _printer(options, names, entry)
        if workspace is not None:
            p.workspace = True
            for k, v in workspace.items():
                setattr(p, k, v)
        return p

    forward = Forward(graphs[0].outputs[0], dict(graphs[0].names), Namer(taken),
                      new_printer(), needed, frozenset(arg_names))
    fold = entry.output not in entry.names
    out = []
    grad: tuple | None = None   # f_grad's body and printer: f_value_and_grad builds on them
    for plan, graph in zip(plans, graphs):
        extra = [plan.input_name(x) for x in plan.extra]
        keep = frozenset(arg_names | set(extra))
        if plan.kind == "value_and_grad" and grad is not None and joint is None:
            body, printer = with_value(grad[0], list(graph.outputs), keep), grad[1]
            out.append((fns.assemble(plan, graph, body, printer), printer, body))
            continue
        printer = new_printer()
        if plan.kind == "vjp" and grad is not None:   # a scalar output's: the gradient,
            # scaled (EntryDerivatives.vjp), on f_grad's statements when they allow it
            body = extend(grad[0], list(graph.outputs), dict(graph.names), Namer(taken),
                          printer, keep, plan.label)
            if body is not None:
                out.append((fns.assemble(plan, graph, body, printer), printer, body))
                continue
            ir.builder().charge(sum(id(n) in built_on and id(n) not in forward_nodes
                                    for n in graph.order))   # scheduled in full
        # Gradients are computed in reverse order of the Params, as backpropagation does:
        # the last layer's first, so forward values die early.
        visit = list(graph.outputs)
        if plan.group is not None:
            lo, hi = plan.group
            visit[lo:hi] = reversed(visit[lo:hi])
        visit, phase_of = _staged(graph, plan.stages, visit, forward_nodes)
        body = schedule(list(graph.outputs), dict(graph.names), Namer(taken), printer,
                        plan.label, keep, visit, _continued(forward, plan, graph, graphs[0]),
                        fold and plan.kind == "forward", phase_of=phase_of,
                        inputs_as={id(x): plan.input_name(x) for x in plan.inputs_as})
        if plan.kind == "grad":
            grad = body, printer
        out.append((fns.assemble(plan, graph, body, printer), printer, body))
    return out


def _forward_reads(graphs: list[ir.Graph], plans: list[Plan], joint: bool,
                   built_on: set[int], forward_nodes: set[int]) -> set[int]:
    """The forward nodes (of `graphs[0]`) that some function continuing from the forward
    part reads (a function scheduled on its own reads no forward variable, and keeps none
    alive); charges the work of scheduling the forward part once, then each own part
    (`joint`: f_value_and_grad has a graph of its own; `built_on`: the nodes of f_grad,
    which f_vjp builds on; `forward_nodes`: the ids of `graphs[0]`'s nodes)."""
    forward = set(graphs[0].order)   # (nodes hash by identity)
    needed: set[ir.Node] = set()
    work = len(forward_nodes)
    read: set[ir.Node] = set()   # the own nodes whose arguments are in `needed` already
    for g, plan in zip(graphs, plans):
        continues = _continues(plan, g, graphs[0])
        if continues:
            needed.update(o for o in g.outputs if o in forward)
        if plan.kind == "value_and_grad" and not joint:   # f_grad's nodes and the
            continue   # value: nothing new
        if plan.kind != "vjp":
            own = [n for n in g.order if n not in forward]
        else:
            own = [n for n in g.order if n not in forward and id(n) not in built_on]
        work += len(own)
        if continues:   # (the forward arguments of the own nodes, one pass over them; a
            # node another function has too is looked at once)
            new = [n for n in own if n not in read]
            read.update(new)
            needed.update(a for n in new for a in n.args if a in forward)
    ir.builder().charge(work)
    return {id(n) for n in needed}


def _printer(options: Options, names: ModuleNamer, entry: EntryPoint) -> Printer:
    """A printer of the target for one function of `entry`, with the float arguments (node
    id -> name) a prologue may make one dtype when a statement relies on it (rule
    `one_dtype_at_entry`; a target that writes in place only)."""
    printer = printer_for(options.printer, names.names)
    if printer.supports_out:
        printer.one_dtype = {id(a.node): a.node.attr("name") for a in entry.args
                             if a.node.dtype != INT}
    return printer


def _continued(forward: Forward, plan: Plan, graph: ir.Graph, first: ir.Graph
               ) -> Forward | None:
    """The forward part a function's statements continue from; None for a function
    whose loops are not the forward part's (`first`'s: a gradient's loop saving the
    residuals stands for the value's loop), scheduled on its own: it continues none of
    the forward part's statements, and its variables take the plain names (h, total),
    not numbered ones beside the forward part's."""
    return forward if _continues(plan, graph, first) else None


def _continues(plan: Plan, graph: ir.Graph, first: ir.Graph) -> bool:
    """Whether a function's statements continue from the forward part's (see
    `_continued`): the forward function, one without loops, or one whose graph holds
    every loop of the forward part's graph `first`."""
    if plan.kind == "forward" or not _has_loop(graph):
        return True
    loops = ir.builder().with_trait("region")
    ours = {id(n) for n in graph.order}
    return all(id(n) in ours for n in first.order if n.op in loops)


def _has_loop(graph: ir.Graph) -> bool:
    """Whether `graph` holds a loop (a node with a region)."""
    if not ir.builder().memo.get(REGIONS_BUILT):
        return False
    loops = ir.builder().with_trait("region")
    return any(n.op in loops for n in graph.order)


def _staged(graph: ir.Graph, stages: list[str], visit: list[ir.Node], done: set[int],
            ) -> tuple[list[ir.Node], dict[int, str]]:
    """The nodes to visit when scheduling `graph` (after the outputs in `visit`) so that
    the nodes of each phase in `stages` come first, stage by stage, and the phase each
    derivative node is computed for (that of the first stage that needs it: `1 - Z`, made
    by the gradient, is computed for a tangent when the tangents come first). `done`: the
    ids of the nodes scheduled already (the forward part)."""
    if not stages:
        return visit, {}
    stage_of = {phase: k for k, phase in enumerate(stages)}
    roots: list[list[ir.Node]] = [[] for _ in stages]
    for n in graph.order:   # (one pass for all the stages)
        k = stage_of.get(n.phase)
        if k is not None:
            roots[k].append(n)
    visit = [n for stage in roots for n in stage] + visit
    # The depth-first order the scheduler takes (memoised): a node belongs to the first
    # stage not yet complete (each root comes after what it reads). (A node is in one stage
    # at most, once: `graph.order` holds each node once, and a node has one phase.)
    left = [len(stage) for stage in roots]
    where = {id(n): k for k, stage in enumerate(roots) for n in stage}
    phase_of: dict[int, str] = {}
    k, last = 0, len(left)
    while k < last and left[k] == 0:
        k += 1
    phase = stages[k] if k < last else None   # the phase of the first stage not complete
    for n in ir.topo_order(visit):
        if k == last:
            break
        nid = id(n)
        s = where.get(nid)
        if s is not None:
            left[s] -= 1
        p = n.phase
        if p != phase and p != "forward" and nid not in done:
            phase_of[nid] = phase
        if s is not None and left[k] == 0:   # that stage complete: on to the next one
            while k < last and left[k] == 0:
                k += 1
            phase = stages[k] if k < last else None
    return visit, phase_of


def _optimized(entry: EntryPoint, plan: Plan, hints: dict[str, int], batch_steps: bool = True,
               in_place: bool = True) -> ir.Graph:
    """The graph of one function through the passes. Names: the source's first, then
    `value` for the entry point's value (a variable in every function that shares its
    forward part), then the derivatives' and the extra inputs'. `in_place`: the target
    writes into arrays (NumPy), so a loop may write its gradients into the saved states
    (`passes.reuse_state_rows`)."""
    names = dict(entry.names)
    if not entry.output.is_const:
        names.setdefault(entry.output, VALUE)
    for node, n in plan.names.items():
        names.setdefault(node, n)
    for node in plan.extra:
        names[node] = plan.input_name(node)
    args = tuple(a.node for a in entry.args) + tuple(plan.extra)
    graph = _checked(ir.Graph(args, tuple(plan.outputs), names))   # the derivatives
    graph = optimize(graph, hints)
    # (a backward loop's per-step parameter gradients after it; hoist_steps here too, which
    # would batch `1 - h_steps[t + 1] ** 2` before the backward loop, measured 0.93x at
    # min-char-rnn size but 1.06x at T=50 N=32 H=128: one more (T, N, H) temporary)
    sunk = sink_steps(graph) if batch_steps else graph
    if sunk is not graph:
        graph = _checked(optimize(_checked(sunk), hints))
    return _checked(lower(graph, hints, state_rows=in_place))


def _checked(graph: ir.Graph) -> ir.Graph:
    """The graph, checked with `ir.verify` when `CHECK_GRAPHS` is on."""
    if CHECK_GRAPHS:
        ir.verify(graph)
    return graph


def _plan(fns: EntryFunctions, kind: str, hints: dict[str, int]) -> Plan:
    if kind == "grad":
        return fns.grad(with_value=False)
    if kind == "value_and_grad":
        return fns.grad(with_value=True)
    if kind == "jacobian":
        return jacobian_plan(fns, hints)
    return getattr(fns, kind)()


def _params(program: Program, entry: EntryPoint, options: Options) -> list[Argument]:
    """The Params to differentiate with respect to: all, in declaration order, or those
    `--wrt` names, in the order it names them (as JAX's argnums: README, "--wrt")."""
    params = entry.params
    if options.wrt is None:
        return params
    known = {a.name for a in params}
    for w in options.wrt:
        if w not in known:
            index = any(a.name == w and a.node.dtype == INT for a in entry.args)
            why = (f"'{w}' is an Index argument: integers are never differentiated" if index
                   else f"'{entry.name}' has no Param named '{w}'")
            raise CompileError(program.diagnostic(entry.line, 1, f"--wrt {w}: {why}"))
    by_name = {a.name: a for a in params}
    return [by_name[w] for w in dict.fromkeys(options.wrt)]


def _kinds(program: Program, entry: EntryPoint, options: Options,
           params: list[Argument]) -> list[str]:
    """Which functions the entry point emits: always the forward one, then the derivatives
    the options ask for that apply (grad and hvp need a scalar output)."""
    explicit = options.modes is not None
    modes = options.modes if explicit else DEFAULT_MODES
    scalar = entry.output.ndim == 0
    shape = fmt_shape(entry.output.shape)
    for m in ("grad", "hvp"):
        if m in modes and explicit and not scalar and params:
            raise CompileError(program.diagnostic(
                entry.return_line, entry.return_col,
                f"'{m}' needs a scalar output, but '{entry.name}' returns shape "
                f"{shape}; use '{entry.name}_vjp' instead"))
    kinds = ["forward"]
    if not params:
        return kinds
    if "grad" in modes and scalar:
        kinds += ["grad", "value_and_grad"]
    kinds += [m for m in ("vjp", "jvp") if m in modes]
    if "hvp" in modes and scalar:
        kinds.append("hvp")
    if options.hessian:
        if not scalar:
            raise CompileError(program.diagnostic(
                entry.return_line, entry.return_col,
                f"--hessian needs a scalar output, but '{entry.name}' returns shape {shape}"))
        kinds.append("hessian")
    if options.jacobian:
        if scalar:
            raise CompileError(program.diagnostic(
                entry.return_line, entry.return_col,
                f"--jacobian needs a non-scalar output, but '{entry.name}' returns a "
                f"scalar; its Jacobian is the gradient: use '{entry.name}_grad'"))
        kinds.append("jacobian")
    return kinds


# The derivative rules each kind of emitted function needs of the ops it differentiates.
_RULES = {"grad": ("vjp",), "value_and_grad": ("vjp",), "vjp": ("vjp",), "jvp": ("jvp",),
          "hvp": ("vjp", "jvp"), "hessian": ("vjp", "jvp", "vmap"),
          "jacobian": ("vjp", "jvp", "vmap")}


def _check_rules(program: Program, entry: EntryPoint, kinds: list[str]) -> None:
    """A located error, instead of a failure inside autodiff, when a derivative the
    entry point emits goes through a loop (an op holding a region) whose derivative rules
    are not there yet."""
    needed = {r for k in kinds for r in _RULES.get(k, ())}
    if not needed:
        return
    for n in ir.topo_order([entry.output]):
        opdef = REGISTRY[n.op]
        if not opdef.has("region") or all(getattr(opdef, r) is not None for r in needed):
            continue
        line = n.origin.line if n.origin is not None else entry.line
        col = _first_column(program, line)
        raise CompileError(program.diagnostic(
            line, col, f"derivatives through loops are not supported yet, and "
            f"'{entry.name}' ({', '.join(k for k in kinds if k != 'forward')}) "
            "needs them; compile the value only (--modes '' on the command line, modes=() "
            "in the API)"))


def _first_column(program: Program, line: int) -> int:
    """The column of the first non-blank character of a source line."""
    lines = source_lines(program.source)
    text = lines[line - 1] if 0 < line <= len(lines) else ""
    return len(text) - len(text.lstrip()) + 1


def _module_namer(program: Program, options: Options | None = None) -> ModuleNamer:
    """The namer of the module's internal names: they avoid every name the user chose (the
    entry points and the functions they may emit, arguments, dimensions)."""
    user: set[str] = set()
    for e in program.entries:
        user |= {e.name, *(e.name + s for s in _SUFFIXES)}
        user |= {a.name for a in e.args} | set(e.dims)
    sources = helper_sources(workspace=options is not None and options.workspace)
    if options is not None and options.printer == "array_api":
        sources += runtime_xp.sources()
    names = ModuleNamer(user, sources)
    for e in program.entries:   # every spec constant before any function's locals are named
        names.spec_constant(e.name)
    return names


def helper_sources(workspace: bool = False) -> list[str]:
    """The source of every helper an emitted NumPy module may carry; with `workspace`,
    also the `Workspace` class a module compiled with `--workspace` carries (its names
    are reserved only there)."""
    return ["\n".join(TYPES.values()) + "\n", CHECK_DIMS, CHECK_SHAPE, WEAK_SCALAR, ONE_DTYPE,
            REUSE_FREED_MEMORY, *SIZE_CHECKS.values()] + sorted(
        {d.prelude for d in REGISTRY.values() if d.prelude}) + ([WORKSPACE] if workspace else [])


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
