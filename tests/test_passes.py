"""Graph passes: golden before/after tests of matrix-chain ordering."""

from __future__ import annotations

import types

import numpy as np
import pytest

import gradgen
from gradgen.ir import make
from gradgen.passes import building, reorder_matrix_chains
from gradgen.dims import dim_symbol

N, K, M = dim_symbol("N"), dim_symbol("K"), dim_symbol("M")


@pytest.fixture(autouse=True)
def _building():
    with building():
        yield


def _inp(name, *shape):
    return make("input", name=name, role="data", shape=tuple(shape))


def test_matrix_times_vector_chain_is_reassociated():
    A, B, x = _inp("A", N, K), _inp("B", K, M), _inp("x", M)
    before = (A @ B) @ x
    (after,) = reorder_matrix_chains([before])
    assert after is A @ (B @ x)
    # Already optimal: left alone.
    (same,) = reorder_matrix_chains([after])
    assert same is after


def test_vector_times_matrix_chain_is_reassociated():
    y, A, B = _inp("y", N), _inp("A", N, K), _inp("B", K, M)
    before = y @ (A @ B)
    (after,) = reorder_matrix_chains([before])
    assert after is (y @ A) @ B


def test_a_shared_product_is_not_split():
    A, B, x, z = _inp("A", N, K), _inp("B", K, M), _inp("x", M), _inp("z", M)
    AB = A @ B
    outs = reorder_matrix_chains([AB @ x, AB @ z])
    assert outs[0].args[0] is AB and outs[1].args[0] is AB


def test_order_that_depends_on_sizes_needs_a_hint():
    A, B, C = _inp("A", N, K), _inp("B", K, M), _inp("C", M, N)
    before = (A @ B) @ C
    (unhinted,) = reorder_matrix_chains([before])
    assert unhinted is before          # cheaper for some sizes, dearer for others
    # (A @ B) @ C costs NKM + N^2 M, A @ (B @ C) costs KMN + N^2 K: it depends on K vs M.
    (small_m,) = reorder_matrix_chains([before], hints={"N": 1000, "K": 1000, "M": 2})
    assert small_m is before
    (small_k,) = reorder_matrix_chains([before], hints={"N": 1000, "K": 2, "M": 1000})
    assert small_k is A @ (B @ C)


def test_emitted_forward_uses_the_cheap_order_and_agrees():
    text = "def f(A: Data[N, K], B: Data[K, M], x: Param[M]):\n    return sum(A @ B @ x)\n"
    src = gradgen.compile_source(text, "chain.grad")
    # the cheap order in the forward function (f_vjp, the gradient scaled by g, needs no
    # forward value: the gradient of a sum reads only the shapes)
    assert "    return (A @ (B @ x)).sum()\n" in src and "    return g * dx\n" in src
    mod = types.ModuleType("chain")
    exec(compile(src, "chain.grad", "exec"), mod.__dict__)
    rng = np.random.default_rng(0)
    A, B, x = rng.normal(size=(4, 5)), rng.normal(size=(5, 3)), rng.normal(size=3)
    assert mod.f(A, B, x) == pytest.approx(np.sum(A @ B @ x), rel=1e-12)
    np.testing.assert_allclose(mod.f_grad(A, B, x), (A @ B).sum(axis=0), rtol=1e-12)


@pytest.mark.parametrize("source, fires", [
    ("def f(A: Param[N, K], B: Data[K, M], x: Data[M]):\n    return sum((A @ B) @ x)\n", True),
    ("def f(x: Param[N], y: Data[N]):\n    return sum(tanh(x) * y)\n", False),
])
def test_chain_scan_agrees_with_each_graph(source, fires, monkeypatch):
    """The compilation-wide look for a product of products (`ir.any_made`) says no only
    when no graph matchain sees has one (checked on every graph of every function), and
    the pass still reorders where the per-graph scan finds a chain."""
    import importlib
    M = importlib.import_module("gradgen.passes.matchain")
    seen: list[tuple[bool, bool]] = []
    scan = M.any_made

    def checked(key, graph, test):
        answer = scan(key, graph, test)
        seen.append((M._has_chain(graph.order), answer))
        return answer
    monkeypatch.setattr(M, "any_made", checked)
    gradgen.compile_source(source, "chain.grad")
    assert seen and all(answer or not per_graph for per_graph, answer in seen)
    assert any(per_graph for per_graph, _ in seen) == fires


@pytest.mark.parametrize("source, fires", [
    ("def f(p: Param[N], Q: Data[D, N]):\n    return sum(exp((p * Q) / N))\n", True),
    ("def f(x: Param[N], y: Data[N]):\n    return sum(tanh(x) * y)\n", False),
])
def test_scalar_placement_scan_agrees_with_each_graph(source, fires, monkeypatch):
    """As above for place_scalars' look for `c * (p * Q)` with p and Q of different ranks."""
    import importlib
    S = importlib.import_module("gradgen.passes.scalars")
    seen: list[tuple[bool, bool]] = []
    scan = S.any_made

    def checked(key, graph, test):
        answer = scan(key, graph, test)
        seen.append((test(graph.order), answer))
        return answer
    monkeypatch.setattr(S, "any_made", checked)
    gradgen.compile_source(source, "scalars.grad")
    assert seen and all(answer or not per_graph for per_graph, answer in seen)
    assert any(per_graph for per_graph, _ in seen) == fires
