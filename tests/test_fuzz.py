"""The trust-boundary fuzz test (issue 8, must-be-true 9).

Three hypothesis strategies (derandomized: the same inputs every run), each input checked
in a forked, time- and memory-limited child process by `fuzzing.check` (tests/fuzzing.py
says what is checked): every input either compiles to a module that passes the verifier,
imports without side effects and runs, or is refused with a located diagnostic.

    mutation  valid sources (the examples, the regression programs, random programs) with
              token and character mutations
    soup      random token soup (Python tokens, gradgen built-ins, hostile strings, huge
              numbers, deep nesting), bare or inside an entry point
    hostile   random well-formed programs with hostile names and docstrings, compiled
              under hostile file names

Run one strategy:   .venv/bin/python -m pytest tests/test_fuzz.py -k soup
More inputs:        GRADGEN_FUZZ_EXAMPLES=1000 .venv/bin/python -m pytest tests/test_fuzz.py
No shrinking:       GRADGEN_FUZZ_SHRINK=0 (a failure is reported unreduced, at once)
The long campaign:  GRADGEN_LONG=1 .venv/bin/python -m pytest tests/test_fuzz.py -k campaign -s
                    (GRADGEN_FUZZ_INPUTS=n inputs per strategy, 10,000 by default;
                    GRADGEN_FUZZ_STRATEGIES=soup,hostile for some strategies only)
Outside pytest:     .venv/bin/python tests/fuzzing.py N [FIRST_SEED] [STRATEGIES] [WORKERS]
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from fuzzing import STRATEGIES, ForkServer, campaign, make_input
from test_random_programs import DrawChooser

EXAMPLES = int(os.environ.get("GRADGEN_FUZZ_EXAMPLES", "80"))

# Shrinking a failure to a minimal input takes up to a few minutes (a fork per try);
# GRADGEN_FUZZ_SHRINK=0 reports the first failing input as it was generated.
SHRINK = os.environ.get("GRADGEN_FUZZ_SHRINK", "1") != "0"
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                    phases=(Phase.explicit, Phase.generate) + ((Phase.shrink,) if SHRINK
                                                               else ()),
                    suppress_health_check=list(HealthCheck))


@st.composite
def inputs(draw, strategy: str):
    return make_input(strategy, DrawChooser(draw))


@pytest.fixture(scope="module")
def server():
    """Forks the inputs' children from a small process (fuzzing.ForkServer says why)."""
    s = ForkServer()
    yield s
    s.close()


def assert_holds(server, inp) -> None:
    outcome = server.check(inp)
    assert not outcome.failed, (
        f"{outcome.klass}\n{outcome.detail}\n\nreproduce with:\n"
        f"gradgen.compile_source({inp.text!r}, filename={inp.filename!r}, "
        f"hessian={inp.hessian})")


@SETTINGS
@given(inputs("mutation"))
def test_fuzz_mutation(server, inp):
    assert_holds(server, inp)


@SETTINGS
@given(inputs("soup"))
def test_fuzz_soup(server, inp):
    assert_holds(server, inp)


@SETTINGS
@given(inputs("hostile"))
def test_fuzz_hostile(server, inp):
    assert_holds(server, inp)


def test_the_checker_catches_what_it_should(server):
    """The checker itself: a valid program compiles, a broken one is refused, and the
    failures it must report are reported (so a passing fuzz run means something)."""
    from fuzzing import Input

    ok = server.check(Input("def f(x: Param[N]):\n    return sum(x * x)\n", "t.grad", True))
    assert (ok.kind, ok.klass) == ("compiled", ""), ok
    refused = server.check(Input("def f(x: Param[N]):\n    return sum(y)\n", "t.grad", False))
    assert refused.kind == "refused", refused


def test_the_fork_server_checks_as_check_does(server):
    """The warm helper answers what `check` answers in a fresh interpreter (a helper
    without the warm-up: `check` called there, a compiled, a refused, a failing input),
    with the suite's graph and rule-index checks on in both. (`check` is not called in this worker: a
    fork of a pytest worker that has JAX's threads may deadlock; ForkServer says why.)"""
    from fuzzing import Input, checks_now

    from gradgen import compiler

    assert compiler.CHECK_GRAPHS   # conftest: the servers must inherit it
    # (the graph checks and the rule index's: serve() sets them from its last arguments)
    assert checks_now() == (True, True) and server.proc.args[-2:] == ["1", "1"]
    cold = ForkServer(warm=False)
    try:
        for inp in (Input("def f(x: Param[N]):\n    return sum(x * x)\n", "t.grad", True),
                    Input("def f(x: Param[N]):\n    return sum(y)\n", "t.grad", False),
                    Input("def f(x: Param[N]):\n    return sum(x[0:2] @ x)\n", "t.grad",
                          False)):
            assert server.check(inp) == cold.check(inp), inp.text
    finally:
        cold.close()


def test_the_checker_reports_side_effects_and_bad_modules(server):
    """A compiler that emits a module doing something on import, or one that does not
    parse, or that crashes, is reported as a failure (checked with a stand-in compiler,
    patched into the helper for one input)."""
    import gradgen
    from fuzzing import Input, StandIn

    good = gradgen.compile_source("def f(x: Param[N]):\n    return sum(x * x)\n", "t.grad")
    inp = Input("def f(x: Param[N]):\n    return sum(x * x)\n", "t.grad", False)
    cases = {
        "verifier": good.replace("import numpy as np\n",
                                 "import numpy as np\nopen('PWNED', 'w').close()\n"),
        "run forward: TypeError": good.replace("return x @ x", "return len(x, x)"),
        "compile: internal error ZeroDivisionError": None,
    }
    for expected, text in cases.items():
        if text is not None:
            assert text != good, expected   # the stand-in's module differs from the good one
        outcome = server.check(inp, StandIn(text))
        assert outcome.failed and outcome.klass.startswith(expected), (expected, outcome)
    assert server.check(inp) == server.check(inp, StandIn(good))   # the patch is undone


@pytest.mark.long
def test_fuzz_campaign():
    """Tens of thousands of inputs (not through hypothesis, which stops at the first
    failure): prints the counts (compiled / refused / failures) and each failure class."""
    n = int(os.environ.get("GRADGEN_FUZZ_INPUTS", "10000"))
    strategies = tuple(os.environ.get("GRADGEN_FUZZ_STRATEGIES", ",".join(STRATEGIES))
                       .split(","))
    # (at least two: a pool, so that nothing forks from this pytest process)
    classes = campaign(n, first_seed=1_000_000, strategies=strategies,
                       workers=max(2, min(4, os.cpu_count() or 1)))
    assert not classes, f"{sum(classes.values())} failures in {len(classes)} classes"
