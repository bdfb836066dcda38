"""Limits are part of the contract (SPEC §5): huge or deeply nested sources are compiled or
refused with a diagnostic, never a crash (`RecursionError`, `MemoryError`, a traceback)
and never minutes of work.

The 10 MB sources that are expensive to parse (about 10-20 s and 2 GB for Python's own
`ast`) are `long` tests; cheap 10 MB sources run every time.
"""

from __future__ import annotations

import ast
import sys
import threading
import types

import numpy as np
import pytest

import gradgen
from gradgen import CompileError, frontend

HEAD = "def f(x: Param[N]):\n"
TEN_MB = 10 * 1024 * 1024


def outcome(source: str):
    """The compiled module's text, or the CompileError: anything else fails the test."""
    try:
        return gradgen.compile_source(source, filename="t.grad")
    except CompileError as e:
        return e


def only_diagnostic(result) -> gradgen.Diagnostic:
    assert isinstance(result, CompileError), "expected a diagnostic"
    assert len(result.diagnostics) == 1
    return result.diagnostics[0]


def run(text: str) -> types.ModuleType:
    module = types.ModuleType("limits_generated")
    exec(compile(text, "limits_generated.py", "exec"), module.__dict__)
    return module


# ---------------------------------------------------------------------------- nesting


def test_5000_nested_parentheses_are_refused_at_the_first_one_too_many():
    source = HEAD + "    return sum(" + "(" * 5000 + "x" + ")" * 5000 + ")\n"
    d = only_diagnostic(outcome(source))
    # Python's parser allows 200 open brackets: `sum(` is the first, so the 200th of the
    # run (column 15 + 200) is the one too many.
    assert (d.line, d.col) == (2, 215)
    assert d.message == ("syntax error: too many nested parentheses (Python's parser allows "
                         "at most 200 levels)")


def test_5000_nested_calls_are_refused_at_the_first_one_too_many():
    source = HEAD + "    return sum(" + "exp(" * 5000 + "x" + ")" * 5000 + ")\n"
    d = only_diagnostic(outcome(source))
    assert (d.line, d.col) == (2, 15 + 4 * 200)
    assert d.message.startswith("syntax error: too many nested parentheses")


def test_150_nested_calls_compile():
    text = outcome(HEAD + "    return sum(" + "tanh(" * 150 + "x" + ")" * 150 + ")\n")
    assert isinstance(text, str)
    x = np.linspace(-1.0, 1.0, 5)
    expected = x
    for _ in range(150):
        expected = np.tanh(expected)
    np.testing.assert_allclose(run(text).f(x), expected.sum())


@pytest.mark.parametrize("body", [
    "- " * 20_000 + "x",                  # unary operators nest to the right
    " ** ".join(["x"] * 5_000),           # so does the power operator
    "not " * 20_000 + "x",
], ids=["unary-minus", "power", "not"])
def test_expressions_too_deep_for_the_parser_are_located(body):
    d = only_diagnostic(outcome(HEAD + "    y = x\n    return sum(" + body + ")\n"))
    assert (d.line, d.col) == (3, 5)
    assert d.message == ("expression is nested too deeply to parse; split it into several "
                         "assignments")


def test_5000_unary_minus_without_spaces_compile():
    text = outcome(HEAD + "    return sum(" + "-" * 5_000 + "x)\n")   # an even number
    x = np.arange(4.0)
    np.testing.assert_allclose(run(text).f_grad(x), np.ones(4))


PARSER = sys.modules["gradgen.frontend.parse"]   # (the module; `frontend.parse` is its function)


@pytest.mark.parametrize("source", [
    HEAD + "    return sum(" + "-" * 900 + "x)\n",
    HEAD + "    return sum(" + " ** ".join(["x"] * 150) + ")\n",
    HEAD + "    return sum(" + "(" * 300 + "x" + ")" * 300 + ")\n",
    HEAD + "    return sum(x +)\n",
], ids=["unary-minus", "power", "too-many-parentheses", "syntax-error"])
def test_a_short_source_parses_on_the_calling_thread_as_on_the_large_stack(source, monkeypatch):
    assert len(source) <= PARSER.SMALL_SOURCE_CHARS
    here = outcome(source)
    monkeypatch.setattr(PARSER, "SMALL_SOURCE_CHARS", 0)   # every source on the parse thread
    there = outcome(source)
    if isinstance(here, str):
        assert here == there
    else:
        assert isinstance(there, CompileError)
        assert [(d.line, d.col, d.message) for d in here.diagnostics] == \
            [(d.line, d.col, d.message) for d in there.diagnostics]


def test_a_short_source_too_deep_for_the_calling_thread_is_parsed_on_the_large_stack(
        monkeypatch):
    source = HEAD + "    return sum(-x)\n"
    calls = []
    original = ast.parse

    def parse(text, *args, **kwargs):   # too deep on the calling thread, fine on the other
        if text == source:
            calls.append(threading.current_thread() is threading.main_thread())
            if calls[-1]:
                raise RecursionError("maximum recursion depth exceeded during ast construction")
        return original(text, *args, **kwargs)

    monkeypatch.setattr(ast, "parse", parse)
    assert isinstance(outcome(source), str)
    assert calls == [True, False]


# ---------------------------------------------------------------------------- long chains


@pytest.fixture(scope="module")
def twenty_thousand_additions():
    """SPEC §5's 20,000 chained additions, compiled once for the two tests below: the
    outcome and the IR builders the compile made (for their work count)."""
    from gradgen import ir

    builders = []
    original = ir.Builder.__init__

    def record(self, *args, **kwargs):
        original(self, *args, **kwargs)
        builders.append(self)

    ir.Builder.__init__ = record
    try:
        result = outcome(HEAD + "    return sum(" + " + ".join(["x"] * 20_000) + ")\n")
    finally:
        ir.Builder.__init__ = original
    return result, builders


def test_20000_chained_additions_compile_and_run(twenty_thousand_additions):
    text, _ = twenty_thousand_additions
    assert isinstance(text, str), text
    module = run(text)
    x = np.array([0.5, -1.0, 2.0])
    assert module.f(x) == pytest.approx(20_000 * x.sum())
    np.testing.assert_allclose(module.f_grad(x), np.full(3, 20_000.0))


def test_long_attribute_and_index_chains_compile():
    source = HEAD + "    y = x" + ".T" * 5_000 + "\n    z = y" + "[:]" * 5_000 + \
        "\n    return sum(z)\n"
    assert isinstance(outcome(source), str)


# ---------------------------------------------------------------------------- helpers


def test_helpers_calling_each_other_twice_take_linear_time():
    # Without sharing, h59 would inline h0 2**59 times.
    source = "def h0(a):\n    return a * 2\n" + "".join(
        f"def h{i}(a):\n    return h{i - 1}(a) + h{i - 1}(a)\n" for i in range(1, 60))
    source += "def f(x: Param[N]):\n    return sum(h59(x))\n"
    text = outcome(source)
    assert isinstance(text, str), text
    assert run(text).f(np.ones(2)) == pytest.approx(2 * 2.0 * 2 ** 59)


def test_helpers_that_really_grow_exponentially_are_refused(monkeypatch):
    monkeypatch.setattr(frontend, "MAX_OPERATIONS", 5_000)   # the same, ten times sooner
    source = "def h0(a):\n    return a\n" + "".join(
        f"def h{i}(a):\n    return h{i - 1}(sin(a)) + h{i - 1}(cos(a))\n"
        for i in range(1, 40))
    source += "def f(x: Param[N]):\n    return sum(h39(x))\n"
    d = only_diagnostic(outcome(source))
    assert d.message.startswith(f"the program is too large: it builds more than "
                                f"{frontend.MAX_OPERATIONS:,} operations (after inlining "
                                "helpers); split it into several smaller programs (in helper")


def test_operation_budget_is_reported_where_it_runs_out(monkeypatch):
    monkeypatch.setattr(frontend, "MAX_OPERATIONS", 50)
    lines = [f"    v{i} = x * {i}" for i in range(100)]
    d = only_diagnostic(outcome(HEAD + "\n".join(lines) + "\n    return sum(x)\n"))
    assert d.message == ("the program is too large: it builds more than 50 operations "
                         "(after inlining helpers); split it into several smaller programs")
    # Each entry point counts as ENTRY_COST operations, each assignment as one.
    assert d.line == 2 + 50 - frontend.ENTRY_COST
    assert d.source_line.startswith(f"    v{50 - frontend.ENTRY_COST} = x * ")


def test_the_budget_leaves_room_for_the_documented_limits():
    assert frontend.MAX_OPERATIONS >= 2 * 20_000


def test_work_budget_refuses_at_the_entry_point_whose_functions_run_out(monkeypatch):
    # 40 Params with --hessian: 1,600 Hessian blocks. With a small budget (the real one is
    # about 6 s of work) the second entry point runs out; the first compiled within it.
    from gradgen import compiler

    monkeypatch.setattr(compiler, "MAX_WORK", 3_000)
    k = 40
    params = ", ".join(f"x{i}: Param[N]" for i in range(k))
    source = ("def small(x: Param[N]):\n    return sum(x * x)\n\n\n"
              f"def big({params}):\n    return sum(" + " * ".join(f"x{i}" for i in range(k))
              + ")\n")
    try:
        gradgen.compile_source(source, filename="t.grad", hessian=True)
    except CompileError as e:
        d = only_diagnostic(e)
    else:
        raise AssertionError("expected the work budget to run out")
    assert (d.line, d.col) == (5, 1)
    assert d.message == ("'big' is too large to compile: its functions need more than 3,000 "
                         "operations; ask for fewer of them (--modes grad, no --hessian) or "
                         "split the program")


def test_the_work_budget_leaves_room_for_the_documented_limits(twenty_thousand_additions):
    from gradgen import compiler

    _, builders = twenty_thousand_additions
    assert builders
    work = builders[-1].work
    assert work < 0.6 * compiler.MAX_WORK, work   # SPEC §5: 20,000 chained additions


def test_a_chain_of_2000_slices_compiles_and_runs():
    # Each slice is a view of the one before: the scheduler's bookkeeping of what a view
    # may alias must not grow along the chain (it did: quadratic, 5 s for this source).
    text = outcome(HEAD + "    return sum(x" + "[1:]" * 2_000 + " ** 2)\n")
    assert isinstance(text, str), text
    x = np.linspace(-1.0, 1.0, 2_003)
    module = run(text)
    np.testing.assert_allclose(module.f(x), (x[2_000:] ** 2).sum())
    expected = np.zeros_like(x)
    expected[2_000:] = 2 * x[2_000:]
    np.testing.assert_allclose(module.f_grad(x), expected)


# ---------------------------------------------------------------------------- size


def test_ten_megabyte_docstring():
    text = outcome('"""' + ("a" * 99 + "\n") * (TEN_MB // 100) + '"""\n' + HEAD +
                   "    return sum(x)\n")
    assert isinstance(text, str)


def test_ten_megabytes_of_comments():
    text = outcome(("# " + "c" * 97 + "\n") * (TEN_MB // 100) + HEAD + "    return sum(x)\n")
    assert isinstance(text, str)


def test_source_over_the_size_limit_is_refused_before_parsing():
    source = "#" * (frontend.MAX_SOURCE_BYTES + 1) + "\n" + HEAD + "    return sum(x)\n"
    d = only_diagnostic(outcome(source))
    assert (d.line, d.col) == (1, 1)
    assert d.message == "source is larger than 16 MB"
    assert len(d.source_line) == frontend.MAX_SOURCE_BYTES + 1   # (the caret is at 1:1)


@pytest.mark.long
def test_ten_megabytes_of_assignments():
    lines = [f"    v{i} = v{i - 1} + x" for i in range(1, 450_000)]
    source = HEAD + "    v0 = x\n" + "\n".join(lines) + "\n    return sum(v449999)\n"
    assert len(source) > TEN_MB
    d = only_diagnostic(outcome(source))
    assert d.message.startswith("the program is too large")


@pytest.mark.long
def test_ten_megabytes_of_helpers():
    source = "".join(f"def h{i}(a):\n    return a * {i}\n" for i in range(300_000))
    source += HEAD + "    return sum(h1(x))\n"
    assert len(source) > TEN_MB
    assert isinstance(outcome(source), str)


@pytest.mark.long
def test_ten_megabytes_of_entry_points():
    source = "".join(f"def f{i}(x: Param[N]):\n    return sum(x * {i})\n"
                     for i in range(220_000))
    assert len(source) > TEN_MB
    d = only_diagnostic(outcome(source))
    assert d.message.startswith("the program is too large")
