"""One pipeline (issue 9, item 2): `gradgen compile`, `compile_source`, `gradgen.load` and
`gradgen check` emit the same module for the same source and options; and the functions
of an entry point share one forward schedule (item 4)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gradgen import api, checking, cli, compiler
from gradgen.codegen import emit

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
MLP = EXAMPLES / "mlp" / "mlp.grad"
NEWTON = EXAMPLES / "newton" / "newton.grad"


def _capture(monkeypatch, module) -> list[str]:
    """Every module text `module.render_module` renders."""
    seen: list[str] = []
    real = module.render_module

    def render(m):
        text = real(m)
        seen.append(text)
        return text

    monkeypatch.setattr(module, "render_module", render)
    return seen


# A matrix chain: `gradgen check` used to build it with eager rules and without the
# passes of `optimize_entry`, and emitted another module than `gradgen compile`.
CHAIN = "def f(A: Data[N, K], B: Data[K, M], x: Param[M]):\n    return sum(A @ B @ x)\n"


@pytest.mark.parametrize("source", ["mlp", "chain"])
def test_check_compiles_what_compile_emits(monkeypatch, tmp_path, source):
    path = MLP if source == "mlp" else tmp_path / "chain.grad"
    if source == "chain":
        path.write_text(CHAIN)
    seen = _capture(monkeypatch, checking)
    assert cli.main(["check", str(path), "--dim", "N=3"]) == 0
    assert seen, "gradgen check rendered no module"
    assert seen[0] == compiler.compile_source(path.read_text(), str(path), hessian=True)


def test_cli_api_and_load_emit_the_same_module(monkeypatch, tmp_path):
    text = NEWTON.read_text()
    api_text = api.compile_source(text, str(NEWTON), hessian=True)
    seen = _capture(monkeypatch, emit)
    out = tmp_path / "newton_grad.py"
    assert cli.main(["compile", str(NEWTON), "--hessian", "-o", str(out)]) == 0
    assert out.read_text() == api_text
    monkeypatch.setenv("GRADGEN_CACHE", str(tmp_path / "cache"))
    seen.clear()
    monkeypatch.setattr(api, "compile_source", lambda *a, **k: (
        seen.append(compiler.compile_source(*a, **k)) or seen[-1]))
    api.load(NEWTON, hessian=True)
    assert seen == [api_text]


def _functions(source: str) -> dict[str, list[str]]:
    """The body lines of each function of a module (docstrings left out)."""
    out: dict[str, list[str]] = {}
    for block in re.split(r"\n(?=def )", source):
        if block.startswith("def "):
            name = block[4:block.index("(")]
            body = block.split('"""')[-1].splitlines()
            out[name] = [line.strip() for line in body if line.strip()]
    return out


def test_forward_statements_read_the_same_in_every_function():
    """Each forward statement of `cost` (before the first derivative statement) is spelled
    the same in every function of the MLP that computes it."""
    fns = _functions(compiler.compile_source(MLP.read_text(), "mlp.grad", hessian=True))
    forward = {}
    for name, lines in fns.items():
        if not name.startswith("cost"):
            continue
        for line in lines:
            if line.startswith(("#", "return", "del ", "_", "N =", "D =", "C =", "M =")):
                if line.startswith("#"):
                    break
                continue
            m = re.match(r"(\w+) = (.*)", line)
            if m and not m.group(1).startswith(("d", "t", "Hv", "H")):
                forward.setdefault(m.group(1), set()).add(m.group(2))
    assert {"Q", "Z", "U", "U_max", "U_exp", "U_sum"} <= set(forward)
    assert all(len(v) == 1 for v in forward.values()), forward


def test_hvp_headers_say_grad_or_tangent_and_forward_comes_first():
    """In f_hvp no forward statement sits under a derivative header, and the tangent
    statements are headed `# tangent of`, the cotangent ones `# grad of` (issue 9, item 9)."""
    lines = _functions(compiler.compile_source(MLP.read_text(), "mlp.grad"))["cost_hvp"]
    lines = [line for line in lines if not line.startswith("# (")]   # a shape comment above
    first = next(i for i, line in enumerate(lines) if line.startswith("#"))
    forward = [line.split(" = ")[0] for line in lines[:first] if " = " in line]
    assert {"Q", "Z", "U", "U_max", "U_exp", "U_sum"} <= set(forward)
    assert not any(line.startswith(("Q =", "Z =", "U =")) for line in lines[first:])
    for header, stmt in zip(lines, lines[1:]):
        if header.startswith("#") and " = " in stmt:
            name = stmt.split(" = ")[0]
            if name.startswith(("t", "Hv")):
                assert header.startswith("# tangent of"), (header, stmt)
            if name.startswith("d"):
                assert header.startswith("# grad of"), (header, stmt)
    assert "# tangent of line 8: Q = X @ V" in lines
    assert lines[lines.index("# tangent of line 8: Q = X @ V") + 1] == "tQ = X @ vV  # (N, M)"


def test_hvp_is_forward_tangents_then_gradient_then_its_tangents():
    """f_hvp comes in three parts that do not interleave: the tangents of the forward
    statements (`# tangent of line N`, in source order), the gradient (`# grad of line N`,
    backwards), the tangents of the gradient's statements (`# tangent of grad of line N`);
    each header once. The tangent of a named cotangent is named after it (`tdU`)."""
    lines = _functions(compiler.compile_source(MLP.read_text(), "mlp.grad"))["cost_hvp"]
    headers = [line.split(":")[0][2:] for line in lines
               if line.startswith("# ") and " of line " in line]
    parts = [h.rsplit(" of line ", 1) for h in headers]
    assert [label for label, _ in parts] == sorted(
        (label for label, _ in parts), key=["tangent", "grad", "tangent of grad"].index)
    assert len(set(headers)) == len(headers), headers
    # line 11's tangent has no statement of its own: its one product, tU * U_exp, is
    # summed by an einsum of the factors and computed in tdU's buffer (sum_inner_einsum)
    assert [int(n) for label, n in parts if label == "tangent"] == [8, 9, 10]
    assert [int(n) for label, n in parts if label == "grad"] == [11, 10]
    assert [int(n) for label, n in parts if label == "tangent of grad"] == [11, 10, 9, 8]
    assert any(line.startswith("tdU = ") for line in lines)
    assert not any(re.match(r"\w+\d = \w+\[:, None\]", line) for line in lines)


def test_vjp_of_a_scalar_output_is_f_grad_scaled_by_g():
    """For a scalar output f_vjp is built on f_grad's statements (schedule.extend): the
    same lines, then each gradient scaled by the cotangent; and it computes g * grad."""
    src = compiler.compile_source(MLP.read_text(), "mlp.grad")
    fns = _functions(src)
    grad, vjp = fns["cost_grad"], fns["cost_vjp"]
    checks = ['_expect("g", g, ())', "g = _weak(g, X, Y, V, W)"]
    assert [line for line in vjp if line not in checks] == grad[:-1] + ["return (g * dV, g * dW)"]
    import numpy as np
    mod = {}
    exec(compile(src, "mlp.grad", "exec"), mod)
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(6, 4)), np.eye(3)[rng.integers(0, 3, 6)]
    V, W = rng.normal(size=(4, 5)), rng.normal(size=(5, 3))
    for a, b in zip(mod["cost_vjp"](X, Y, V, W, -2.5), mod["cost_grad"](X, Y, V, W)):
        np.testing.assert_allclose(a, -2.5 * b, rtol=1e-12)


def test_extend_refuses_to_read_a_reused_buffer():
    """A node added by `extend` may read only variables whose buffers no earlier statement
    reused; otherwise extend declines (the function is then scheduled on its own)."""
    from gradgen.codegen.naming import Namer
    from gradgen.codegen.printer import printer_for
    from gradgen.codegen.schedule import extend, schedule
    from gradgen.dims import dim_symbol
    from gradgen.ir import make
    from gradgen.passes import building

    with building():
        x = make("input", name="x", role="param", shape=(dim_symbol("N"),))
        a = make("exp", x)
        b = make("sin", a)   # a dies here: sin(a) is computed into a's buffer
        body = schedule([b], {a: "a", b: "b"}, Namer({"x"}), printer_for("numpy"),
                        keep=frozenset({"x"}))
        assert "b = np.sin(a, out=a)  # (N,); reuses a's buffer" in body.lines
        assert extend(body, [a * b], {}, Namer({"x"}), printer_for("numpy"),
                      frozenset({"x"})) is None
        printer = printer_for("numpy")
        ok = extend(body, [b * b], {}, Namer({"x"}), printer, frozenset({"x"}))
        assert ok is not None and ok.lines == body.lines   # b is intact: read it
        assert printer.code_of(b * b)[0] == "b * b"


@pytest.mark.parametrize("options", [{}, {"workspace": True}, {"checks": False}])
def test_extend_reuses_f_grads_lines_only_where_finishing_would_make_them(monkeypatch,
                                                                        options):
    """f_vjp adding no statement of its own (`return (g * dV, g * dW)`) takes f_grad's
    finished lines (`Body.made_of`) instead of finishing the same statements again: the
    module is the one finishing every function in full makes, and the reuse happened."""
    from gradgen.codegen import schedule as sched

    source = MLP.read_text()
    finished: list[int] = []
    real = sched._finish

    def counted(s, forward, outputs, keep, fold, start=None):
        finished.append(start is not None)   # (`extend` finishing in full)
        return real(s, forward, outputs, keep, fold, start)

    monkeypatch.setattr(sched, "_finish", counted)
    reused = compiler.compile_source(source, "mlp.grad", **options)
    assert finished and not any(finished)   # f_vjp reused f_grad's lines

    def in_full(s, forward, outputs, keep, fold, start=None):
        body = real(s, forward, outputs, keep, fold, start)
        body.made_of = None   # nothing to reuse: extend finishes in full
        return body

    monkeypatch.setattr(sched, "_finish", in_full)
    assert compiler.compile_source(source, "mlp.grad", **options) == reused


def test_compilation_leaves_the_callers_frozen_objects_frozen():
    """The collector is paused during a compilation; re-enabling it must not thaw what the
    caller froze (gc.freeze) before compiling."""
    import gc

    was_enabled = gc.isenabled()
    gc.enable()
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        assert frozen > 0
        compiler.compile_source("def f(x: Param[N]):\n    return sum(x * x)\n", "f.grad")
        # (some frozen objects may die meanwhile; thawing them all would leave none)
        assert gc.get_freeze_count() > frozen // 2
        assert gc.isenabled()
    finally:
        gc.unfreeze()
        if not was_enabled:
            gc.disable()


def _garbage_of_a_compilation() -> list:
    """The objects a compilation of the MLP leaves to the garbage collector (those only
    a full pass would free), after a first compilation has made the imports and caches."""
    import gc

    source = MLP.read_text(encoding="utf-8")
    compiler.compile_source(source, "mlp.grad")   # (imports and caches made first)
    was_enabled = gc.isenabled()
    gc.disable()
    # what is alive (or garbage) before stays out of the collection below: it looks at
    # the objects the compilation left only (a full pass of a suite worker's heap is slow)
    assert gc.get_freeze_count() == 0
    gc.freeze()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        compiler.compile_source(source, "mlp.grad")
        gc.collect()
        return list(gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.unfreeze()
        if was_enabled:
            gc.enable()


def test_a_compilation_leaves_no_cycle_of_its_scheduling_state():
    """What a compilation schedules is freed when it returns, by reference counting: no
    reference cycle keeps a function's scheduling state (statements, graph nodes, names)
    alive until a full pass of the garbage collector. (The printer held the scheduler's
    bound `region` method, and the scheduler the printer: some 800 objects of each MLP
    compile waited for the collector, which in the test suite's processes made its full
    passes a tenth of their CPU.)"""
    from gradgen.codegen import schedule

    kinds = {type(o) for o in _garbage_of_a_compilation()}
    kept = kinds & {schedule._Scheduler, schedule._State, schedule.Statement}
    assert not kept, f"left to the garbage collector: {sorted(k.__name__ for k in kept)}"


def test_parsing_leaves_no_cycle_holding_the_syntax_tree():
    """The source's syntax tree is freed when parsing returns, by reference counting. The
    frontend's calls lower helper bodies through the lowering's bound `body` method, a
    reference cycle that held every function's tree (130,000 objects for a program of
    10,000 statements) until a full pass of the garbage collector: for the command line,
    0.09 s at exit."""
    import ast

    trees = sum(isinstance(o, ast.AST) for o in _garbage_of_a_compilation())
    assert trees == 0, f"{trees} syntax-tree nodes left to the garbage collector"
