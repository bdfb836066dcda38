"""`ir.verify` on every graph the pipeline produces (issue 9, item 10): the compiler checks
each stage's graph when `compiler.CHECK_GRAPHS` is on, as tests/conftest.py sets it for the
whole session."""

import dataclasses

import pytest

import gradgen
from gradgen import compiler, ir
from gradgen.errors import InternalError
from gradgen.ops.registry import REGISTRY

SOURCE = """\
def f(x: Data[N], w: Param[N]):
    return sum(tanh(x * w))
"""


def test_the_session_checks_every_stage_of_every_function(monkeypatch):
    assert compiler.CHECK_GRAPHS, "tests/conftest.py turns the checks on"
    seen = []
    real = ir.verify
    monkeypatch.setattr(ir, "verify", lambda g, ops=None: (seen.append(g), real(g, ops)))
    gradgen.compile_source(SOURCE, modes=["grad", "vjp", "jvp", "hvp"])
    # the entry point parsed and optimised (2), then per function its derivative graph
    # and that graph optimised and lowered (2 each for f, f_grad, f_vjp, f_jvp, f_hvp),
    # and f_value_and_grad's graph, made of f's value and f_grad's outputs (1)
    assert len(seen) == 2 + 2 * 5 + 1
    assert all(isinstance(g, ir.Graph) for g in seen)


def _lie_after_optimizing(monkeypatch, op: str) -> None:
    """From the first optimisation on, `op`'s shape rule says () whatever its arguments:
    the nodes made before disagree with it, as a pass that broke the invariant would."""
    real = compiler.optimize

    def optimize(graph, hints=None):
        out = real(graph, hints)
        monkeypatch.setitem(REGISTRY, op, dataclasses.replace(
            REGISTRY[op], shape=lambda args, **attrs: ()))
        return out

    monkeypatch.setattr(compiler, "optimize", optimize)


def test_a_node_its_shape_rule_disagrees_with_is_caught_through_the_hook(monkeypatch):
    _lie_after_optimizing(monkeypatch, "tanh")
    with pytest.raises(InternalError, match=r"tanh.*disagrees with the shape rule"):
        gradgen.compile_source(SOURCE, modes=[])


def test_without_the_hook_the_same_broken_graph_goes_through(monkeypatch):
    """So it is the hook that catches it above."""
    monkeypatch.setattr(compiler, "CHECK_GRAPHS", False)
    _lie_after_optimizing(monkeypatch, "tanh")
    assert "np.tanh" in gradgen.compile_source(SOURCE, modes=[])


def test_an_input_left_out_of_a_lowered_graph_is_caught_through_the_hook(monkeypatch):
    real = compiler.lower

    def lower(graph, *args, **options):
        out = real(graph, *args, **options)
        return ir.Graph(out.inputs[:1], out.outputs, out.names)   # `w` dropped

    monkeypatch.setattr(compiler, "lower", lower)
    with pytest.raises(InternalError, match="input node is not an input of the graph"):
        gradgen.compile_source(SOURCE, modes=["grad"])
