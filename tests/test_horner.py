"""Horner's rule (gradgen/passes/horner.py) on the Styblinski-Tang function: the emitted value
and gradient are one buffer updated in place, and as accurate as the terms summed exactly
(math.fsum of the terms computed in float64, or of exact rationals), in float64 and float32.
The pass's before/after IR and code are tests/golden/passes/lower_horner.txt; its derivatives
are checked against finite differences by tests/corpus/polynomial.grad (test_corpus.py)."""

from __future__ import annotations

import importlib
import math
from fractions import Fraction

import numpy as np
import pytest
from emitted import load

from gradgen import compile_source

SOURCE = """\
def styblinski_tang(x: Param[N]):
    return sum(x ** 4 - 16 * x ** 2 + 5 * x) / 2
"""


@pytest.fixture(scope="module")
def module():
    text = compile_source(SOURCE, "styblinski.grad", modes=("grad",))
    return text, load(text)


def _body(text: str, name: str) -> str:
    start = text.index(f"def {name}(")
    end = text.find("\ndef ", start + 1)
    return text[start:end if end >= 0 else len(text)]


def test_emitted_form(module):
    """The value is a dot product of the Horner form with x; the gradient 2x^3 - 16x + 5/2
    is one buffer updated in place (no x ** 2, no second full-size temporary)."""
    body = _body(module[0], "styblinski_tang_value_and_grad")
    assert "value = np.vdot((x * x - 16) * x + 5, x) / 2" in body
    assert "dx = 2 * x  # (N,)\n    dx *= x\n    dx -= 16\n    dx *= x\n    dx += 5 / 2" in body
    code = body[body.index("_dims("):].splitlines()
    assert not [line for line in code if "**" in line and not line.lstrip().startswith("#")]


def _exact(x: np.ndarray) -> tuple[Fraction, list[Fraction]]:
    """The value and gradient at x, in exact rational arithmetic."""
    value, grad = Fraction(0), []
    for v in x.tolist():
        q = Fraction(v)
        value += (q ** 4 - 16 * q ** 2 + 5 * q) / 2
        grad.append(2 * q ** 3 - 16 * q + Fraction(5, 2))
    return value, grad


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_accuracy_against_exact_sums(module, dtype):
    """Value and gradient against exact rational arithmetic at x of mixed signs (the sum
    cancels): the value within 4 units of the precision of the exact value (the terms
    summed exactly, math.fsum, are as close in float64), each gradient entry within 2
    units of the magnitude of its terms."""
    eps = float(np.finfo(dtype).eps)
    rng = np.random.default_rng(3)
    x = rng.uniform(-5, 5, 2000).astype(dtype)
    value, dx = module[1].styblinski_tang_value_and_grad(x)
    assert dx.dtype == dtype
    exact, grad = _exact(x)
    assert abs(float(value) - float(exact)) <= 4 * eps * abs(float(exact))
    xs = x.astype(np.float64)
    reference = np.array([float(g) for g in grad])
    terms = np.abs(2 * xs ** 3) + np.abs(16 * xs) + 2.5
    assert np.all(np.abs(dx.astype(np.float64) - reference) <= 2 * eps * terms)
    if dtype == np.float64:
        fsum = math.fsum((xs ** 4 - 16 * xs ** 2 + 5 * xs).tolist()) / 2
        assert abs(fsum - float(exact)) <= 4 * eps * abs(float(exact))


# Polynomials reached through each path of the compilation-wide scan (a power scaled on the
# left, on the right, divided, negated; a sum with a sum of powers as a term), and programs
# with powers but no polynomial worth rewriting (tanh's derivative `1 - t * t`, a square).
SCAN_SOURCES = [
    SOURCE,
    "def f(x: Param[N]):\n    return sum(-(x ** 3) + (x ** 2) / 4 - x * 3)\n",
    "def f(x: Param[N], y: Param[N]):\n    return sum(x ** 2 * 3 + (y ** 3 + y) + x)\n",
    "def f(x: Param[N]):\n    return sum(tanh(x * x) + exp(-x))\n",
    "def f(x: Param[N]):\n    return sum(x ** 2)\n",
]


@pytest.mark.parametrize("source", SCAN_SOURCES)
def test_scan_agrees_with_each_graph(source, monkeypatch):
    """The compilation-wide pre-scan (`_any_worth_a_look`) says no only when no graph the
    pass sees has a sum `_worth_a_look` accepts (checked on every graph of every function),
    and the pass fires where the per-graph look says yes."""
    H = importlib.import_module("gradgen.passes.horner")
    seen: list[tuple[bool, bool]] = []
    scan = H._any_worth_a_look

    def checked(graph, ops):
        per_graph = H._worth_a_look(H._sums_of_powers(graph, ops), ops)
        answer = scan(graph, ops)
        seen.append((per_graph, answer))
        return answer
    monkeypatch.setattr(H, "_any_worth_a_look", checked)
    compile_source(source, "scan.grad")
    assert seen and all(answer or not per_graph for per_graph, answer in seen)
    fires = source in SCAN_SOURCES[:3]
    assert any(per_graph for per_graph, _ in seen) == fires
