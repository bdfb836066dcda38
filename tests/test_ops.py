"""Every built-in, tested by running the module gradgen emits for it.

The table `CASES` maps every name of `gradgen.ops.BUILTINS` (and the operators and other
syntax that lower to ops) to small programs over scalar, vector, matrix, 3-D and broadcast
shapes. Each case is compiled once into a module with two entry points:

    def cost(<args>, w1: Data[<out>], w2: Data[<out>]):
        r = <EXPR>
        return sum(w1 * r + w2 * r * r)      # scalar, with a non-zero Hessian for every op

    def op(<args>):
        return <EXPR>                        # the op's own, usually non-scalar, output

and checked against NumPy references and two-sided finite differences: the forward value,
`cost_grad`, `cost_value_and_grad`, `cost_vjp`, `op_vjp`, `cost_jvp`, `op_jvp` (with
<u, J v> = <J^T u, v>), `cost_hvp` against differences of `cost_grad`, the opt-in
`cost_hessian` (compiled separately with hessian=True) against differences of `cost_grad`
and against `cost_hvp`, float32 in -> float32 out, and `ruff check` / `compile()` of the
emitted sources. A Param that an op reads as a symmetric matrix (`cholesky(x)`, Case.sym)
is perturbed symmetrically, and its gradient must be symmetric.

Inputs are float64 draws from each op's `domain` in the registry (see `fdcheck.DOMAINS`),
with every pair of input values at least 1e-3 apart so that no difference step crosses a
kink or a tie. The conventions at the non-differentiable points (README.md) are tested
separately with exact inputs at those points.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import tempfile
import types
import warnings
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import fdcheck
import mpmath
import numpy as np
import pytest
from fdcheck import as_tuple, assert_close, call, contract, fd_directional, fd_jacobian

import gradgen
from gradgen.ops import BUILTINS, REGISTRY

# Keys of CASES that are not built-in functions: syntax, mapped to the op it lowers to.
SYNTAX = {"+": "add", "-": "sub", "*": "mul", "/": "div", "**": "pow", "-x": "neg",
          "@": "matmul", ".T": "transpose", "[]": "index", "pi/e": None,
          "[]=": "update",
          # integer-array indexing and integer arithmetic (the h-index block of CASES)
          "[idx]": "gather", "//": "floordiv", "%": "mod", "float": "cast"}

# Built-ins that are lowerings rather than ops: the domain of each of their arguments.
LOWERED_DOMAINS = {"square": ("real",), "reciprocal": ("nonzero",), "softmax": ("real",),
                   "log_softmax": ("real",), "logsumexp": ("real",),
                   "log_sigmoid": ("real",)}

# Ops that only derivative graphs use (never reached from the source language directly).
INTERNAL_OPS = {"cast", "expand_like", "scatter", "zeros_like", "basis", "expscan",
                "tie_split", "vdot", "zero_diagonal",   # made by lower rules (h-tsne)
                "cho_inverse",   # made by the lower rule spd_inverse_by_factor (h-gp)
                "plus_diagonal"}   # made by the lower rule add_scaled_identity (h-hess2;
# its helper and derivative rules: tests/test_plus_diagonal.py)
# Loops (a scan holding its body as a region, and `part` taking its result apart): no source
# construct builds them until issue 11; tests/test_regions.py builds them by hand.
LOOP_OPS = {"scan", "part", "empty"}   # empty: a loop derivative's residual buffer
# (tests/test_loop_derivatives.py)
# Built by statements, not expressions (subscript assignment `A[idx] = v`): its cases are in
# tests/test_indexing.py.
STATEMENT_OPS = {"update"}

MIN_GAP = 1e-3   # every two input values differ by at least this much


# ---------------------------------------------------------------- the case table

@dataclass(frozen=True)
class Arg:
    name: str
    shape: tuple                # ints, or dimension names bound by Case.dims
    domain: str = "real"        # (for an Index argument: how many values, drawn from 0 on)
    role: str = "param"         # "param", "data" or "index"


@dataclass(frozen=True)
class Case:
    key: str                    # the BUILTINS name (or SYNTAX key) this case covers
    expr: str                   # source expression over the argument names
    ref: Callable               # NumPy reference: ref(**arrays) -> the value of expr
    args: tuple
    dims: tuple = ()            # (("N", 3), ...) sizes of named dimensions
    out: tuple | None = None    # declared output shape, when it uses dimension names
    avoid: Callable | None = None   # avoid(**arrays): values that must stay away from 0
                                    # (distances to kinks at literal thresholds)
    sym: tuple = ()             # Params read as symmetric matrices (cholesky's argument):
                                # drawn symmetric, perturbed and differenced symmetrically
    stmts: tuple = ()           # statements before the expression (`x[0] = y`)

    @property
    def id(self) -> str:
        shapes = ",".join(f"{a.name}{'' if a.role == 'param' else f'({a.role})'}="
                          f"{_fmt_id_shape(a.shape)}" for a in self.args)
        code = "".join(f"{st};" for st in self.stmts) + self.expr
        return f"{self.key}|{code.replace(' ', '')}|{shapes}"

    @property
    def params(self) -> list[str]:
        return [a.name for a in self.args if a.role == "param"]


def _fmt_id_shape(shape) -> str:
    return "x".join(str(d) for d in shape) if shape else "()"


CASES: dict[str, list[Case]] = {}


def domain_of(key: str, i: int) -> str:
    """The test domain of argument `i` of built-in (or syntax) `key`, from the registry."""
    if key in LOWERED_DOMAINS:
        return LOWERED_DOMAINS[key][i]
    op = SYNTAX.get(key, key)
    return REGISTRY[op].domain[i]


def add(key, expr, ref, *args, dims=(), out=None, avoid=None, sym=(), stmts=()):
    CASES.setdefault(key, []).append(Case(key, expr, ref, tuple(args), tuple(dims), out, avoid,
                                          tuple(sym), tuple(stmts)))


def P(name, shape, domain="real"):
    return Arg(name, tuple(shape), domain, "param")


def D(name, shape, domain="real"):
    return Arg(name, tuple(shape), domain, "data")


def I(name, shape, high):
    """An Index argument: integers drawn from range(high), with repeats."""
    return Arg(name, tuple(shape), high, "index")


S, V, M, T3 = (), (3,), (2, 3), (2, 3, 2)

# ---- elementwise functions of one argument

def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


UNARY = {
    "exp": np.exp, "log": np.log, "log1p": np.log1p, "sqrt": np.sqrt, "abs": np.abs,
    "tanh": np.tanh, "sigmoid": _sigmoid, "relu": lambda x: np.maximum(x, 0.0),
    "softplus": lambda x: np.log1p(np.exp(x)), "sign": np.sign, "neg": np.negative,
    "square": lambda x: x * x, "reciprocal": lambda x: 1.0 / x,
}


def unary_cases(name, f):
    dom = domain_of(name, 0)
    for shape in (S, V, M, T3):
        add(name, f"{name}(x)", lambda x: f(x), P("x", shape, dom))
    # of a broadcast product (x * y stays in the domain: positive, nonzero, real and unit
    # draws are closed under products), and composed with another Param
    add(name, f"{name}(x * y)", lambda x, y: f(x * y), P("x", (2, 1), dom), P("y", V, dom))
    add(name, f"{name}(x) * y", lambda x, y: f(x) * y, P("x", M, dom), P("y", V))


for _name, _f in UNARY.items():
    unary_cases(_name, _f)

# ---- operators and elementwise functions of two arguments

BINARY_SHAPES = [(S, S), (V, V), (M, M), (M, V), (V, M), ((2, 1), (1, 3)), (S, M), (M, S),
                 ((2, 1, 3), (2, 1))]
BINARY = {
    "+": ("x + y", lambda x, y: x + y),
    "-": ("x - y", lambda x, y: x - y),
    "*": ("x * y", lambda x, y: x * y),
    "/": ("x / y", lambda x, y: x / y),
    "**": ("x ** y", lambda x, y: x ** y),
    "maximum": ("maximum(x, y)", np.maximum),
    "minimum": ("minimum(x, y)", np.minimum),
}
for _key, (_expr, _f) in BINARY.items():
    for _sx, _sy in BINARY_SHAPES:
        add(_key, _expr, lambda x, y, f=_f: f(x, y),
            P("x", _sx, domain_of(_key, 0)), P("y", _sy, domain_of(_key, 1)))
    # one argument used twice, and a Data operand
    add(_key, _expr.replace("y", "(x * x)"), lambda x, f=_f: f(x, x * x),
        P("x", M, domain_of(_key, 0) if _key != "/" else "nonzero"))
    add(_key, _expr, lambda x, y, f=_f: f(x, y),
        P("x", M, domain_of(_key, 0)), D("y", V, domain_of(_key, 1)))
    add(_key, _expr, lambda x, y, f=_f: f(x, y),
        D("x", M, domain_of(_key, 0)), P("y", V, domain_of(_key, 1)))

# with numeric literals
for _key, _expr, _f, _dom in [
    ("+", "x + 1.5", lambda x: x + 1.5, "real"),
    ("+", "2 + x", lambda x: 2 + x, "real"),
    ("-", "x - 1", lambda x: x - 1, "real"),
    ("-", "1 - x", lambda x: 1 - x, "real"),
    ("*", "3 * x", lambda x: 3 * x, "real"),
    ("*", "x * -0.5", lambda x: x * -0.5, "real"),
    ("/", "x / 4", lambda x: x / 4, "real"),
    ("/", "1 / x", lambda x: 1 / x, "nonzero"),
    ("/", "-2.5 / x", lambda x: -2.5 / x, "nonzero"),
    ("**", "x ** 2", lambda x: x ** 2, "real"),
    ("**", "x ** 3", lambda x: x ** 3, "real"),
    ("**", "x ** 0.5", lambda x: x ** 0.5, "positive"),
    ("**", "x ** -1.5", lambda x: x ** -1.5, "positive"),
    ("**", "2 ** x", lambda x: 2.0 ** x, "real"),
    ("**", "x ** x", lambda x: x ** x, "positive"),
    ("-x", "-x", lambda x: -x, "real"),
    ("maximum", "maximum(x, 0)", lambda x: np.maximum(x, 0), "nonzero"),
    ("minimum", "minimum(0, x)", lambda x: np.minimum(0, x), "nonzero"),
    ("pi/e", "pi * x", lambda x: np.pi * x, "real"),
    ("pi/e", "e ** x", lambda x: np.e ** x, "real"),
    ("pi/e", "x / (2 * pi) + e", lambda x: x / (2 * np.pi) + np.e, "real"),
]:
    for _shape in (S, M):
        add(_key, _expr, _f, P("x", _shape, _dom))
add("-x", "-(x * y)", lambda x, y: -(x * y), P("x", M), P("y", V))
add("-x", "-x", lambda x: -x, P("x", T3))

# ---- where, with every comparison

WHERE = [
    ("where(x > y, x, y)", lambda x, y: np.where(x > y, x, y), [P("x", M), P("y", M)]),
    ("where(x > y, x, y)", lambda x, y: np.where(x > y, x, y), [P("x", S), P("y", V)]),
    ("where(x > 0, x, y)", lambda x, y: np.where(x > 0, x, y), [P("x", M), P("y", V)]),
    ("where(x < y, x * y, 0)", lambda x, y: np.where(x < y, x * y, 0), [P("x", V), P("y", V)]),
    ("where(x >= y, 2.5, y)", lambda x, y: np.where(x >= y, 2.5, y), [P("x", M), P("y", M)]),
    ("where(x <= 0, x * x, -x)", lambda x: np.where(x <= 0, x * x, -x), [P("x", M)]),
    ("where(x == y, x, y * y)", lambda x, y: np.where(x == y, x, y * y), [P("x", V), P("y", V)]),
    ("where(x != y, x * y, y)", lambda x, y: np.where(x != y, x * y, y), [P("x", V), P("y", V)]),
    ("where(m > 0, x, y)", lambda m, x, y: np.where(m > 0, x, y),
     [D("m", (2, 1)), P("x", (1, 3)), P("y", S)]),
    ("where(z > x, x, y)", lambda z, x, y: np.where(z > x, x, y),
     [P("z", M), P("x", V), P("y", (2, 1))]),
    ("where(x > y, exp(x), log(y))", lambda x, y: np.where(x > y, np.exp(x), np.log(y)),
     [P("x", T3, "positive"), P("y", (3, 1), "positive")]),
    ("where(x > 0, x, 0)", lambda x: np.where(x > 0, x, 0), [P("x", S)]),
]
for _expr, _f, _args in WHERE:
    add("where", _expr, _f, *_args)

# ---- reductions

def _lse(x, axis=None, keepdims=False):
    return np.log(np.sum(np.exp(x), axis=axis, keepdims=keepdims))


def _norm(x, axis=None, keepdims=False):
    return np.sqrt(np.sum(x * x, axis=axis, keepdims=keepdims))


REDUCTIONS = {"sum": np.sum, "mean": np.mean, "max": np.max, "min": np.min, "logsumexp": _lse,
              "prod": np.prod, "norm": _norm, "var": np.var}


def _axis_src(axis) -> str:
    return str(axis) if not isinstance(axis, tuple) else "(" + ", ".join(map(str, axis)) + ")"


for _name, _f in REDUCTIONS.items():
    _dom = domain_of(_name, 0)
    _variants = [(S, None, False), (V, None, False), (V, -1, True), (T3, (0, 2), False),
                 (T3, 1, True),
                 (T3, (-1, 0), True)]
    for _axis in (None, 0, 1, -1, (0, 1)):
        for _kd in (False, True):
            _variants.append((M, _axis, _kd))
    for _shape, _axis, _kd in _variants:
        _kw = ([] if _axis is None else [f"axis={_axis_src(_axis)}"]) + (
            ["keepdims=True"] if _kd else [])
        _expr = f"{_name}({', '.join(['x'] + _kw)})"
        add(_name, _expr, lambda x, f=_f, a=_axis, k=_kd: f(x, axis=a, keepdims=k),
            P("x", _shape, _dom))
    # explicit defaults and a positional axis
    add(_name, f"{_name}(x, axis=None, keepdims=False)", lambda x, f=_f: f(x),
        P("x", M, _dom))
    add(_name, f"{_name}(x, 1)", lambda x, f=_f: f(x, axis=1), P("x", M, _dom))
    # of a broadcast expression, and with symbolic dimensions
    add(_name, f"{_name}(x * y, axis=0)", lambda x, y, f=_f: f(x * y, axis=0),
        P("x", (2, 1), _dom), P("y", V, _dom))
    add(_name, f"{_name}(x, axis=0)", lambda x, f=_f: f(x, axis=0),
        P("x", ("N", "D"), _dom), dims=(("N", 3), ("D", 2)), out=("D",))
for _name in ("prod", "norm", "var"):     # along the broadcast axis of a product
    add(_name, f"{_name}(x * y, axis=1)", lambda x, y, f=REDUCTIONS[_name]: f(x * y, axis=1),
        P("x", (2, 1), domain_of(_name, 0)), P("y", V, domain_of(_name, 0)))
add("norm", "norm(x, axis=(0, 1, 3), keepdims=True)",
    lambda x: _norm(x, axis=(0, 1, 3), keepdims=True), P("x", (2, 2, 3, 2)))
add("norm", "norm(x, axis=(1, 2))", lambda x: _norm(x, axis=(1, 2)), P("x", T3))
add("sum", "sum(x) / N", lambda x: np.sum(x) / 3, P("x", ("N", "D")),
    dims=(("N", 3), ("D", 2)), out=())
add("mean", "mean(x, axis=1) * D", lambda x: np.mean(x, axis=1) * 2, P("x", ("N", "D")),
    dims=(("N", 3), ("D", 2)), out=("N",))

# ---- softmax and log_softmax


def _softmax(x, axis=-1):
    e = np.exp(x)
    return e / np.sum(e, axis=axis, keepdims=True)


def _log_softmax(x, axis=-1):
    return x - _lse(x, axis=axis, keepdims=True)


for _name, _f in (("softmax", _softmax), ("log_softmax", _log_softmax)):
    _dom = domain_of(_name, 0)
    for _shape, _axis in [(V, None), (V, 0), (V, -1), (M, None), (M, 0), (M, 1), (M, -1),
                          (T3, 1), (T3, 0), (T3, -2)]:
        _expr = f"{_name}(x)" if _axis is None else f"{_name}(x, axis={_axis})"
        add(_name, _expr, lambda x, f=_f, a=_axis: f(x) if a is None else f(x, axis=a),
            P("x", _shape, _dom))
    add(_name, f"{_name}(x * y, axis=0)", lambda x, y, f=_f: f(x * y, axis=0),
        P("x", (2, 1), _dom), P("y", V, _dom))
    add(_name, f"{_name}(3 * x)", lambda x, f=_f: f(3 * x), P("x", (4,), _dom))
    add(_name, f"{_name}(x, axis=0)", lambda x, f=_f: f(x, axis=0), P("x", ("N", "D"), _dom),
        dims=(("N", 3), ("D", 2)), out=("N", "D"))

# ---- shape operations

for _expr, _f, _shape in [
    ("transpose(x)", lambda x: x.T, M),
    ("transpose(x)", lambda x: x.T, V),
    ("transpose(x)", lambda x: x.T, S),
    ("transpose(x)", lambda x: np.transpose(x), (2, 3, 4)),
    ("transpose(x, axes=(1, 0))", lambda x: x.T, M),
    ("transpose(x, axes=(0, 1))", lambda x: x, M),
    ("transpose(x, axes=(1, 0, 2))", lambda x: np.transpose(x, (1, 0, 2)), (2, 3, 4)),
    ("transpose(x, axes=(2, 0, 1))", lambda x: np.transpose(x, (2, 0, 1)), (2, 3, 4)),
    ("transpose(x, (0, 2, 1))", lambda x: np.transpose(x, (0, 2, 1)), (2, 3, 4)),
    ("transpose(x, axes=(-1, 0, 1))", lambda x: np.transpose(x, (-1, 0, 1)), (2, 3, 4)),
    ("transpose(transpose(x, axes=(1, 2, 0)), axes=(1, 2, 0))",
     lambda x: np.transpose(np.transpose(x, (1, 2, 0)), (1, 2, 0)), (2, 3, 4)),
]:
    add("transpose", _expr, _f, P("x", _shape))
add("transpose", "transpose(x) * y", lambda x, y: x.T * y, P("x", M), P("y", (2,)))
add("transpose", "transpose(x, (1, 0, 2))", lambda x: np.transpose(x, (1, 0, 2)), P("x", T3))
for _shape in (M, V, (2, 3, 4)):
    add(".T", "x.T", lambda x: x.T, P("x", _shape))
add(".T", "x.T @ y", lambda x, y: x.T @ y, P("x", M), P("y", (2, 2)))
add(".T", "x.T * x.T", lambda x: x.T * x.T, P("x", M))

for _expr, _f, _shape in [
    ("reshape(x, (6,))", lambda x: x.reshape(6), M),
    ("reshape(x, 6)", lambda x: x.reshape(6), M),
    ("reshape(x, (3, 2))", lambda x: x.reshape(3, 2), M),
    ("reshape(x, (1, 6))", lambda x: x.reshape(1, 6), M),
    ("reshape(x, (3, 1, 2))", lambda x: x.reshape(3, 1, 2), M),
    ("reshape(x, (2, 3))", lambda x: x.reshape(2, 3), (6,)),
    ("reshape(x, (2, 3))", lambda x: x, M),
    ("reshape(x, (1,))", lambda x: x.reshape(1), S),
    ("reshape(x, (4, 3))", lambda x: x.reshape(4, 3), T3),
    ("reshape(reshape(x, (6,)), (3, 2))", lambda x: x.reshape(3, 2), M),
]:
    add("reshape", _expr, _f, P("x", _shape))
add("reshape", "reshape(x, (3, 2)) @ y", lambda x, y: x.reshape(3, 2) @ y, P("x", M),
    P("y", (2,)))
add("reshape", "reshape(x, (N * D,))", lambda x: x.reshape(6), P("x", ("N", "D")),
    dims=(("N", 3), ("D", 2)), out=("N * D",))

for _expr, _f, _shape in [
    ("expand_dims(x, 0)", lambda x: np.expand_dims(x, 0), V),
    ("expand_dims(x, 1)", lambda x: np.expand_dims(x, 1), V),
    ("expand_dims(x, -1)", lambda x: np.expand_dims(x, -1), V),
    ("expand_dims(x, axis=1)", lambda x: np.expand_dims(x, 1), M),
    ("expand_dims(x, 2)", lambda x: np.expand_dims(x, 2), M),
    ("expand_dims(x, (0, 2))", lambda x: np.expand_dims(x, (0, 2)), M),
    ("expand_dims(x, 0)", lambda x: np.expand_dims(x, 0), S),
]:
    add("expand_dims", _expr, _f, P("x", _shape))
add("expand_dims", "expand_dims(x, 1) * y", lambda x, y: np.expand_dims(x, 1) * y,
    P("x", (2,)), P("y", V))

for _expr, _f, _shape in [
    ("squeeze(x)", lambda x: np.squeeze(x), (1, 3)),
    ("squeeze(x, axis=1)", lambda x: np.squeeze(x, 1), (2, 1)),
    ("squeeze(x, 0)", lambda x: np.squeeze(x, 0), (1, 3)),
    ("squeeze(x, axis=(0, 2))", lambda x: np.squeeze(x, (0, 2)), (1, 3, 1)),
    ("squeeze(x, axis=-1)", lambda x: np.squeeze(x, -1), (1, 3, 1)),
    ("squeeze(x)", lambda x: np.squeeze(x), (1, 3, 1)),
    ("squeeze(x)", lambda x: np.squeeze(x), (1,)),
    ("squeeze(x)", lambda x: np.squeeze(x), (1, 1)),
    ("squeeze(x)", lambda x: x, M),
]:
    add("squeeze", _expr, _f, P("x", _shape))
add("squeeze", "squeeze(x * y, axis=1)", lambda x, y: np.squeeze(x * y, 1), P("x", (2, 1)),
    P("y", (1,)))
add("squeeze", "squeeze(expand_dims(x, (0, 2)))", lambda x: x, P("x", M))
add("squeeze", "squeeze(x, axis=1) * 2", lambda x: np.squeeze(x, axis=1) * 2, P("x", (3, 1, 2)))

for _expr, _f, _shape in [
    ("broadcast_to(x, (2, 3))", lambda x: np.broadcast_to(x, (2, 3)), V),
    ("broadcast_to(x, (2, 3))", lambda x: np.broadcast_to(x, (2, 3)), S),
    ("broadcast_to(x, (2, 3))", lambda x: np.broadcast_to(x, (2, 3)), (2, 1)),
    ("broadcast_to(x, (2, 2, 3))", lambda x: np.broadcast_to(x, (2, 2, 3)), (1, 3)),
    ("broadcast_to(x, (3,))", lambda x: x, V),
    ("broadcast_to(x, (3,))", lambda x: np.broadcast_to(x, (3,)), S),
    ("broadcast_to(x, 4)", lambda x: np.broadcast_to(x, (4,)), (1,)),
]:
    add("broadcast_to", _expr, _f, P("x", _shape))
add("broadcast_to", "broadcast_to(x, (2, 3)) * broadcast_to(x, (2, 3))",
    lambda x: np.broadcast_to(x, (2, 3)) ** 2, P("x", (2, 1)))
add("broadcast_to", "broadcast_to(y, (N, D)) * X", lambda y, X: np.broadcast_to(y, (3, 2)) * X,
    P("y", ("D",)), D("X", ("N", "D")), dims=(("N", 3), ("D", 2)), out=("N", "D"))

for _expr, _f, _shape in [
    ("x[:, 0]", lambda x: x[:, 0], M),
    ("x[1:3]", lambda x: x[1:3], (4,)),
    ("x[1:3]", lambda x: x[1:3], (4, 2)),
    ("x[..., -1]", lambda x: x[..., -1], M),
    ("x[..., -1]", lambda x: x[..., -1], V),
    ("x[::2]", lambda x: x[::2], (5,)),
    ("x[::2]", lambda x: x[::2], (3, 2)),
    ("x[1]", lambda x: x[1], M),
    ("x[0]", lambda x: x[0], V),
    ("x[-1, 1:]", lambda x: x[-1, 1:], M),
    ("x[0, 1]", lambda x: x[0, 1], M),
    ("x[::-1]", lambda x: x[::-1], V),
    ("x[:, ::-2]", lambda x: x[:, ::-2], (2, 5)),
    ("x[1:, ::2]", lambda x: x[1:, ::2], (3, 4)),
    ("x[..., 0, :]", lambda x: x[..., 0, :], (2, 3, 4)),
    ("x[1:-1]", lambda x: x[1:-1], (4,)),
    ("x[-2:]", lambda x: x[-2:], (2, 4)),
    ("x[:, :]", lambda x: x, M),
    ("x[0] * x[1]", lambda x: x[0] * x[1], M),
    ("x[:, 1:] - x[:, :-1]", lambda x: x[:, 1:] - x[:, :-1], (2, 4)),
]:
    add("[]", _expr, _f, P("x", _shape))
add("[]", "x[1:]", lambda x: x[1:], P("x", ("N",)), dims=(("N", 4),), out=("N - 1",))
add("[]", "x[:, 0] * y", lambda x, y: x[:, 0] * y, P("x", M), P("y", (2,)))

# ---- matrix products (the operator with every shape combination; the built-in too)

MATMUL_SHAPES = [((3,), (3,)), ((2, 3), (3,)), ((3,), (3, 2)), ((2, 3), (3, 2)),
                 ((2, 2, 3), (2, 3, 2)), ((2, 2, 3), (3, 2)), ((2, 3), (2, 3, 2)),
                 ((2, 2, 3), (3,)), ((3,), (2, 3, 2)), ((1, 2, 3), (2, 3, 2)),
                 ((2, 1, 2, 3), (3, 3, 1)), ((1, 3), (3, 1))]
for _sx, _sy in MATMUL_SHAPES:
    add("@", "x @ y", lambda x, y: x @ y, P("x", _sx), P("y", _sy))
add("@", "x @ x.T", lambda x: x @ x.T, P("x", M))
add("@", "x @ y", lambda x, y: x @ y, D("x", (2, 3)), P("y", (3, 2)))
add("@", "x @ y", lambda x, y: x @ y, P("x", (2, 3)), D("y", (3,)))
add("@", "x @ y @ z", lambda x, y, z: x @ y @ z, P("x", (2, 3)), P("y", (3, 4)),
    P("z", (4,)))
add("@", "x @ y", lambda x, y: x @ y, P("x", ("N", "D")), P("y", ("D",)),
    dims=(("N", 3), ("D", 2)), out=("N",))
for _sx, _sy in [((3,), (3,)), ((2, 3), (3, 2)), ((2, 2, 3), (3,)), ((3,), (2, 3, 2))]:
    add("matmul", "matmul(x, y)", lambda x, y: x @ y, P("x", _sx), P("y", _sy))


# ---- concatenate and stack

for _expr, _f, _args in [
    ("concatenate([x, y])", lambda x, y: np.concatenate([x, y]), [P("x", M), P("y", (1, 3))]),
    ("concatenate([x, y], axis=1)", lambda x, y: np.concatenate([x, y], axis=1),
     [P("x", M), P("y", (2, 2))]),
    ("concatenate([x, y], axis=-1)", lambda x, y: np.concatenate([x, y], axis=-1),
     [P("x", V), P("y", (2,))]),
    ("concatenate([x, y, x])", lambda x, y: np.concatenate([x, y, x]),
     [P("x", (2,)), P("y", V)]),
    ("concatenate([x, y], axis=1)", lambda x, y: np.concatenate([x, y], axis=1),
     [P("x", T3), D("y", (2, 1, 2))]),
    ("concatenate([x * y, y])", lambda x, y: np.concatenate([x * y, y]),
     [P("x", (2, 1)), P("y", (1, 3))]),
    ("concatenate([x, y], axis=0)", lambda x, y: np.concatenate([x, y]),
     [P("x", ("N", "D")), P("y", ("M", "D"))]),
]:
    _dims = (("N", 3), ("M", 2), ("D", 2)) if "N" in str(_args) else ()
    add("concatenate", _expr, _f, *_args, dims=_dims,
        out=("N + M", "D") if _dims else None)
add("concatenate", "concatenate([x, y])", lambda x, y: np.concatenate([x, y]),
    P("x", ("N", 3)), P("y", ("M", 3)), dims=(("N", 2), ("M", 3)), out=("N + M", 3))
add("concatenate", "concatenate([x, y, x], axis=1)",
    lambda x, y: np.concatenate([x, y, x], axis=1), P("x", (2, 2)), P("y", (2, "K")),
    dims=(("K", 3),), out=(2, "K + 4"))
add("concatenate", "concatenate([x, exp(y)], axis=-1)",
    lambda x, y: np.concatenate([x, np.exp(y)], axis=-1), P("x", V), D("y", (2,)))

for _expr, _f, _args in [
    ("stack([x, y])", lambda x, y: np.stack([x, y]), [P("x", V), P("y", V)]),
    ("stack([x, y], axis=1)", lambda x, y: np.stack([x, y], axis=1), [P("x", M), P("y", M)]),
    ("stack([x, y], axis=-1)", lambda x, y: np.stack([x, y], axis=-1), [P("x", M), D("y", M)]),
    ("stack([x, y])", lambda x, y: np.stack([x, y]), [P("x", S), P("y", S)]),
    ("stack([x, 2])", lambda x: np.stack([x, np.full_like(x, 2.0)]), [P("x", S)]),
    ("stack([x, y, x], axis=0)", lambda x, y: np.stack([x, y, x]), [P("x", (2,)), P("y", (2,))]),
    ("stack([x * y, y])", lambda x, y: np.stack([x * y, np.broadcast_to(y, (2, 3))]),
     [P("x", (2, 1)), P("y", M)]),
]:
    add("stack", _expr, _f, *_args)
add("stack", "stack([x, y, x * y])", lambda x, y: np.stack([x, y, x * y]), P("x", M), P("y", M))
add("stack", "stack([x, y], axis=1)", lambda x, y: np.stack([x, y], axis=1), P("x", ("N",)),
    D("y", ("N",)), dims=(("N", 4),), out=("N", 2))
add("stack", "stack([x, 2 * x, 1.0])", lambda x: np.stack([x, 2 * x, np.ones_like(x)]),
    P("x", S))


# ---- more elementwise functions, clip, and the constant arrays zeros, ones, eye

def _erf(x):
    import math
    return np.vectorize(math.erf, otypes=[float])(x)


def _clip_cases():
    for shape in (S, V, M):
        add("clip", "clip(x, -0.5, 0.5)", lambda x: np.clip(x, -0.5, 0.5), P("x", shape),
            avoid=lambda x: np.concatenate([np.ravel(x - 0.5), np.ravel(x + 0.5)]))
    add("clip", "clip(x, 0, 1)", lambda x: np.clip(x, 0, 1), P("x", M),
        avoid=lambda x: x - 1)
    add("clip", "clip(x, -(y * y), y * y)", lambda x, y: np.clip(x, -(y * y), y * y),
        P("x", M), P("y", V), avoid=lambda x, y: np.abs(x) - y * y)
    for shape, dom in ((M, "real"), (S, "unit")):
        add("clip", "clip(x, -0.5, 0.7)", lambda x: np.clip(x, -0.5, 0.7), P("x", shape, dom),
            avoid=lambda x: np.concatenate([np.ravel(x + 0.5), np.ravel(x - 0.7)]))
    # bounds that are Params or Data (all input values are apart: no ties with x)
    add("clip", "clip(x, lo, hi)", lambda x, lo, hi: np.clip(x, lo, hi), P("x", M), P("lo", V),
        P("hi", S))
    add("clip", "clip(x, lo, hi)", lambda x, lo, hi: np.clip(x, lo, hi), P("x", (2, 1)),
        D("lo", V), P("hi", (2, 3)))


def _constant_cases(name):
    cases = {
        "zeros": [("x + zeros((2, 3))", lambda x: x + np.zeros((2, 3)), [P("x", V)]),
                  ("x * x + zeros(3)", lambda x: x * x, [P("x", M)]),
                  ("x * x + zeros((2, 3))", lambda x: np.broadcast_to(x * x, (2, 3)),
                   [P("x", V)])],
        "ones": [("x + ones((2, 3))", lambda x: x + 1.0, [P("x", M)]),
                 ("ones(3) @ x", lambda x: np.ones(3) @ x, [P("x", (3, 2))]),
                 ("x * ones((2, 1))", lambda x: x * np.ones((2, 1)), [P("x", V)]),
                 ("x - ones((N, D))", lambda x: x - 1.0, [P("x", ("N", "D"))]),
                 ("sum(x, axis=0) * ones(3)", lambda x: np.sum(x, axis=0) * np.ones(3),
                  [P("x", M)])],
        "eye": [("x @ eye(3)", lambda x: x @ np.eye(3), [P("x", M)]),
                ("eye(3) * x", lambda x: np.eye(3) * x, [P("x", V)]),
                ("x * eye(D)", lambda x: x * np.eye(2), [P("x", ("D", "D"))])],
    }[name]
    for expr, f, args in cases:
        dims = (("N", 3), ("D", 2)) if "D" in expr else ()
        out = ("D", "D") if name == "eye" and dims else (("N", "D") if dims else None)
        add(name, expr, f, *args, dims=dims, out=out)


for _name, _f in (("expm1", np.expm1), ("sin", np.sin), ("cos", np.cos), ("tan", np.tan),
                  ("arctan", np.arctan), ("erf", _erf)):
    unary_cases(_name, _f)
_clip_cases()
for _name in ("zeros", "ones", "eye"):
    _constant_cases(_name)
add("ones", "concatenate([x, ones((N, 1))], axis=1)",
    lambda x: np.concatenate([x, np.ones((len(x), 1))], axis=1), P("x", ("N", 2)),
    dims=(("N", 3),), out=("N", 3))
add("eye", "x + 2 * eye(N)", lambda x: x + 2 * np.eye(3), P("x", ("N", "N")), dims=(("N", 3),),
    out=("N", "N"))
add("eye", "x @ eye(3) * x", lambda x: x @ np.eye(3) * x, P("x", M))


# ---- special functions (h-special): log_sigmoid, logaddexp, xlogy, gammaln, digamma,
# polygamma; references from math and mpmath, never from the emitted helpers

def _mp(fn):
    return np.vectorize(lambda v: float(fn(float(v))), otypes=[float])


for _name, _f in (("log_sigmoid", lambda x: -np.logaddexp(0.0, -x)),
                  ("gammaln", np.vectorize(math.lgamma, otypes=[float])),
                  ("digamma", _mp(lambda v: mpmath.digamma(v)))):
    unary_cases(_name, _f)
for _sx, _sy in BINARY_SHAPES:
    add("logaddexp", "logaddexp(x, y)", lambda x, y: np.logaddexp(x, y), P("x", _sx),
        P("y", _sy))
    add("xlogy", "xlogy(x, y)", lambda x, y: x * np.log(y), P("x", _sx),
        P("y", _sy, "positive"))
add("logaddexp", "logaddexp(x, 2.0)", lambda x: np.logaddexp(x, 2.0), P("x", M))
add("logaddexp", "logaddexp(x, x * x)", lambda x: np.logaddexp(x, x * x), P("x", M))
add("xlogy", "xlogy(x, y)", lambda x, y: x * np.log(y), D("x", M), P("y", V, "positive"))
add("xlogy", "xlogy(x, y)", lambda x, y: x * np.log(y), P("x", M), D("y", V, "positive"))
add("xlogy", "xlogy(x, x)", lambda x: x * np.log(x), P("x", M, "positive"))
for _n in (1, 2):
    for _shape in (S, V, M):
        add("polygamma", f"polygamma({_n}, x)",
            lambda x, n=_n: _mp(lambda v: mpmath.polygamma(n, v))(x),
            P("x", _shape, "positive"))
add("gammaln", "gammaln(x + y)", lambda x, y: np.vectorize(math.lgamma)(x + y),
    P("x", M, "positive"), P("y", V, "positive"))


# ---- linear algebra

def pos(f):
    """A reference taking its arrays positionally (in the order of the case's arguments)."""
    return lambda **arrays: f(*arrays.values())


for _expr, _f, _args in [
    ("dot(x, y)", pos(np.dot), [P("x", V), P("y", V)]),
    ("dot(x, y)", pos(np.dot), [P("x", M), P("y", V)]),
    ("dot(x, y)", pos(np.dot), [P("x", (2,)), P("y", M)]),
    ("dot(x, y)", pos(np.dot), [P("x", M), P("y", (3, 2))]),
    ("dot(x, y)", pos(np.dot), [P("x", S), P("y", V)]),
    ("dot(x, y)", pos(np.dot), [P("x", M), P("y", S)]),
    ("dot(x, x)", lambda x: np.dot(x, x), [P("x", V)]),
    ("dot(x, y)", pos(np.dot), [P("x", (3, 2)), P("y", M)]),
    ("dot(x, y)", pos(np.dot), [P("x", S), P("y", M)]),
]:
    add("dot", _expr, _f, *_args)
for _expr, _f, _args in [
    ("outer(x, y)", pos(np.outer), [P("x", V), P("y", (2,))]),
    ("outer(x, y)", pos(np.outer), [P("x", (2,)), P("y", M)]),
    ("outer(x, x)", lambda x: np.outer(x, x), [P("x", V)]),
    ("outer(x, y)", pos(np.outer), [D("x", V), P("y", V)]),
    ("outer(x, y)", pos(np.outer), [P("x", M), D("y", (2,))]),
]:
    add("outer", _expr, _f, *_args)
for _shape in ((3, 3), M, (3, 2), (3, 3, 2), (2, 2, 3), (2, 2, 2, 3)):
    add("trace", "trace(x)", pos(np.trace), P("x", _shape))
add("trace", "trace(x @ y)", lambda x, y: np.trace(x @ y), P("x", M), P("y", (3, 2)))
for _expr, _f, _shape in [("diag(x)", pos(np.diag), V), ("diag(x)", pos(np.diag), (3, 3)),
                          ("diag(x)", pos(np.diag), M), ("diag(x)", pos(np.diag), (3, 2)),
                          ("diag(diag(x))", lambda x: np.diag(np.diag(x)), (3, 3))]:
    add("diag", _expr, _f, P("x", _shape))
add("diag", "diag(x) @ y", lambda x, y: np.diag(x) @ y, P("x", V), P("y", (3, 2)))
for _name, _f in (("inv", np.linalg.inv), ("det", np.linalg.det),
                  ("logdet", lambda a: np.linalg.slogdet(a)[1])):
    for _shape in ((3, 3), (1, 1), (2, 2, 2), (2, 3, 3), (2, 1, 2, 2)):
        add(_name, f"{_name}(x)", pos(_f), P("x", _shape, domain_of(_name, 0)))
    add(_name, f"{_name}(x) * y", lambda x, y, f=_f: f(x) * y,
        P("x", (2, 2, 2), domain_of(_name, 0)), P("y", (2,) if _name != "inv" else (2, 2)))
add("inv", "inv(x) @ y", lambda x, y: np.linalg.inv(x) @ y, P("x", (3, 3), "invertible"),
    P("y", V))
add("inv", "inv(inv(x))", lambda x: x, P("x", (3, 3), "invertible"))
add("logdet", "logdet(-x)", lambda x: np.linalg.slogdet(-x)[1], P("x", (3, 3), "invertible"))
for _sa, _sb in [((3, 3), (3,)), ((3, 3), (3, 2)), ((2, 3, 3), (2, 3, 2)), ((2, 3, 3), (3, 1)),
                 ((2, 3, 3), (3,)), ((3, 3), (2, 3, 2)), ((1, 1), (1,))]:
    add("solve", "solve(x, y)", pos(np.linalg.solve), P("x", _sa, domain_of("solve", 0)),
        P("y", _sb, domain_of("solve", 1)))
add("solve", "solve(x, y)", pos(np.linalg.solve), D("x", (3, 3), "invertible"), P("y", V))
add("solve", "solve(x, y)", pos(np.linalg.solve), P("x", (3, 3), "invertible"), D("y", V))
add("solve", "solve(x, y)", pos(np.linalg.solve), D("x", (3, 3), "invertible"),
    P("y", (2, 3, 1)))
# cholesky reads its argument as symmetric: compose it with a symmetric expression of the
# Param (x is drawn symmetric positive definite, so (x + x.T) / 2 == x at the draw).
for _shape, _expr in [((3, 3), "cholesky((x + x.T) / 2)"), ((1, 1), "cholesky((x + x.T) / 2)"),
                      ((2, 3, 3), "cholesky((x + transpose(x, (0, 2, 1))) / 2)")]:
    add("cholesky", _expr, lambda x: np.linalg.cholesky((x + np.swapaxes(x, -1, -2)) / 2),
        P("x", _shape, domain_of("cholesky", 0)))
add("cholesky", "cholesky(x @ x.T + y * y.T)",
    lambda x, y: np.linalg.cholesky(x @ x.T + y * y.T), P("x", (3, 3), "invertible"),
    P("y", (3, 3), "spd"))
# cholesky of the Param itself: its derivatives are those of cholesky((x + x.T) / 2), so the
# harness perturbs x symmetrically and its gradient must be symmetric (Case.sym)
for _shape in ((3, 3), (2, 3, 3)):
    add("cholesky", "cholesky(x)", pos(np.linalg.cholesky), P("x", _shape, "spd"), sym=("x",))
# a symmetric perturbation (x + x.T) / 20 (|.| < 0.5) of an SPD Data matrix
add("cholesky", "cholesky(s + (x + x.T) / 20)",
    lambda s, x: np.linalg.cholesky(s + (x + x.T) / 20), D("s", (3, 3), "spd"),
    P("x", (3, 3)))


def einsum_case(spec, shapes) -> Case:
    names = "xyz"[:len(shapes)]
    args = [P(n, sh, domain_of("einsum", i)) for i, (n, sh) in enumerate(zip(names, shapes))]
    return Case("einsum", f'einsum("{spec}", {", ".join(names)})',
                pos(lambda *a: np.einsum(spec, *a)), tuple(args))


for _spec, _shapes in [("ij,jk->ik", [M, (3, 2)]), ("ij->ji", [M]), ("ij,ij->", [M, M]),
                       ("i,j->ij", [V, (2,)]), ("bij,bjk->bik", [(2, 2, 3), (2, 3, 2)]),
                       ("ij->", [M]), ("ij->j", [M]), ("ij,j->i", [M, V]),
                       ("ij,jk,k->i", [M, (3, 2), (2,)]), ("ijk->kji", [(2, 3, 2)]),
                       ("i,i->i", [V, V]), ("ij,kj->ik", [M, M]),
                       ("ij,kj->ki", [M, (4, 3)]), ("ij,ij->i", [M, M]),
                       ("ij,jk,kl->il", [M, (3, 2), (2, 2)]), ("ijk->kj", [T3]),
                       ("bij,bjk->bik", [T3, (2, 2, 3)]), ("ij,j,i->", [M, V, (2,)]),
                       ("ij,jk->i", [M, (3, 2)]),
                       # NumPy's forms beyond the spec's example: an index repeated within
                       # one operand (diagonal, trace) and the implicit output
                       ("ii->", [(3, 3)]), ("ii->i", [(3, 3)]), ("ijj,j->ij", [(2, 3, 3), V]),
                       ("ij,j", [M, V]), ("ab,b", [M, V]), ("ij,jk", [M, (3, 2)]),
                       ("ii,ij", [(3, 3), (3, 2)])]:
    CASES.setdefault("einsum", []).append(einsum_case(_spec, _shapes))

# ---- h-perf: two-operand contractions lowered to one matrix product (einsum_contraction):
# several batch, free and contracted indices, interleaved in the output, one side without
# a free index (a batch of matrix-vector products), an index summed alone
for _spec, _shapes in [("btc,hce->bhte", [(2, 3, 2), (2, 2, 3)]),
                       ("bhte,hec->btc", [(2, 2, 3, 2), (2, 2, 3)]),
                       ("btc,bhte->hec", [(2, 3, 2), (2, 2, 3, 2)]),
                       ("bhte,bhse->bhts", [(2, 2, 3, 2), (2, 2, 2, 2)]),
                       ("nkd,kd->nk", [(3, 2, 2), (2, 2)]), ("nk,nkd->kd", [(3, 2), (3, 2, 2)]),
                       ("ijk,kl->lj", [(2, 3, 2), (2, 3)]), ("i,ij->j", [(2,), (2, 3)])]:
    CASES["einsum"].append(einsum_case(_spec, _shapes))
# triangular_inverse_product: a product with inv of a triangle is a triangular solve
add("solve_triangular", "inv(tril(s)) @ x + x.T @ inv(cholesky(s)).T",
    lambda s, x: np.linalg.inv(np.tril(s)) @ x + x.T @ np.linalg.inv(np.linalg.cholesky(s)).T,
    D("s", (3, 3), "spd"), P("x", (3, 3)))
# transpose_symmetric, solve_rhs_scalar_outwards, add_like_terms
add("solve", "solve((x @ x.T + eye(3)).T, b / 4) + solve(x @ x.T + eye(3), b)",
    lambda x, b: 1.25 * np.linalg.solve(x @ x.T + np.eye(3), b), P("x", (3, 3)), P("b", (3, 2)))
add("+", "x * y + x * y - 0.5 * x", lambda x, y: 2 * x * y - 0.5 * x, P("x", (3,)), P("y", (3,)))
# mul_cancel_div, div_cancel_mul, squeeze_scaled
add("/", "x / y * y + y * x / y - squeeze(-sum(x, axis=1, keepdims=True), axis=1)[:, None]",
    lambda x, y: 2 * x + x.sum(axis=1, keepdims=True), P("x", (2, 3)), P("y", (2, 3), "positive"))
# sum_batched_product: a batch of products summed over the batch is one product
add("matmul", "sum(x @ y, axis=0)", lambda x, y: (x @ y).sum(axis=0),
    P("x", (2, 3, 2)), P("y", (2, 2, 3)))
add("matmul", "sum(transpose(x, (0, 1, 3, 2)) @ y, axis=(0, 1))",
    lambda x, y: (np.transpose(x, (0, 1, 3, 2)) @ y).sum(axis=(0, 1)),
    P("x", (2, 2, 3, 2)), P("y", (2, 2, 3, 2)))

# ---- integer inputs and indexing (Index arguments: drawn in range, with repeats)

def _take_along(x, i, axis):
    return np.take_along_axis(x, i, axis=axis)


def _one_hot(i, c):
    return (i[..., None] == np.arange(c)).astype(np.float64)


def _segment_sum(x, ids, k):
    out = np.zeros((k,) + x.shape[ids.ndim:])
    for pos in np.ndindex(*ids.shape):
        out[ids[pos]] += x[pos]
    return out


add("[idx]", "E[i]", lambda E, i: E[i], P("E", (3, 2)), I("i", (4,), 3))
add("[idx]", "E[i]", lambda E, i: E[i], P("E", (3, 2)), I("i", (2, 2), 3))
add("[idx]", "x[i]", lambda x, i: x[i], P("x", (4,)), I("i", (5,), 4))
add("[idx]", "x[t]", lambda x, t: x[t], P("x", (3, 2)), I("t", (), 3))
add("[idx]", "x[:, i]", lambda x, i: x[:, i], P("x", (2, 3)), I("i", (4,), 3))
add("[idx]", "x[..., i]", lambda x, i: x[..., i], P("x", (2, 3, 2)), I("i", (3,), 2))
add("[idx]", "x[arange(2), i]", lambda x, i: x[np.arange(2), i], P("x", (2, 3)),
    I("i", (2,), 3))
add("[idx]", "x[i, j]", lambda x, i, j: x[i, j], P("x", (3, 4)), I("i", (3, 1), 3),
    I("j", (1, 2), 4))
add("[idx]", "x[:, i, j]", lambda x, i, j: x[:, i, j], P("x", (2, 3, 2)), I("i", (4,), 3),
    I("j", (4,), 2))
add("[idx]", "x[i] * y[j]", lambda x, y, i, j: x[i] * y[j], P("x", (3, 2)), P("y", (2, 2)),
    I("i", (4,), 3), I("j", (4,), 2))
add("[idx]", "x[-1 - i]", lambda x, i: x[-1 - i], P("x", (4,)), I("i", (5,), 4))
add("[idx]", "x[i + 1] - x[i]", lambda x, i: x[i + 1] - x[i], P("x", (5,)), I("i", (6,), 4))
add("[idx]", "x[2 * i] * i", lambda x, i: x[2 * i] * i, P("x", (7,)), I("i", (5,), 4))
add("[idx]", "x[i[j]]", lambda x, i, j: x[i[j]], P("x", (3, 2)), I("i", (4,), 3),
    I("j", (5,), 4))
add("[idx]", "x[i][:, None] * x[i, None]", lambda x, i: x[i][:, None] * x[i, None],
    P("x", (3,)), I("i", (2,), 3))
add("[idx]", "x[None, :, i] * x[:, i, None]", lambda x, i: x[None, :, i] * x[:, i, None],
    P("x", (2, 3)), I("i", (2,), 3))
add("//", "x[i // 2]", lambda x, i: x[i // 2], P("x", (3,)), I("i", (5,), 6))
add("%", "x[(i + 1) % 3]", lambda x, i: x[(i + 1) % 3], P("x", (3, 2)), I("i", (5,), 6))
add("[]", "x[:, None] * y[None]", lambda x, y: x[:, None] * y[None], P("x", (3,)),
    P("y", (2,)))
add("[]", "x[None, 1:, None]", lambda x: x[None, 1:, None], P("x", (3, 2)))
add("[]", "x[..., None] * x", lambda x: x[..., None] * x, P("x", (2, 2)))
add("arange", "x * float(arange(4))", lambda x: x * np.arange(4), P("x", (4,)))
add("arange", "x[arange(1, 3)]", lambda x: x[np.arange(1, 3)], P("x", (3, 2)))
add("take_along_axis", "take_along_axis(x, i, 1)", lambda x, i: _take_along(x, i, 1),
    P("x", (2, 3)), I("i", (2, 4), 3))
add("take_along_axis", "take_along_axis(x, i, 0)", lambda x, i: _take_along(x, i, 0),
    P("x", (3, 2)), I("i", (4, 2), 3))
add("take_along_axis", "take_along_axis(x, i, -1)", lambda x, i: _take_along(x, i, -1),
    P("x", (2, 3)), I("i", (1, 2), 3))
add("one_hot", "one_hot(i, 3) * x", lambda x, i: _one_hot(i, 3) * x, P("x", (4, 3)),
    I("i", (4,), 3))
add("segment_sum", "segment_sum(x, i, 3)", lambda x, i: _segment_sum(x, i, 3),
    P("x", (5, 2)), I("i", (5,), 3))
add("segment_sum", "segment_sum(x * x, i, 2)", lambda x, i: _segment_sum(x * x, i, 2),
    P("x", (2, 3)), I("i", (2, 3), 2))
add("float", "x * float(i) / 2", lambda x, i: x * i / 2, P("x", (4,)), I("i", (4,), 5))
add("float", "sum(x) * float(n)", lambda x, n: np.sum(x) * n, P("x", (3,)), I("n", (), 5))
add("where", "where(i == 1, x, 2 * x)", lambda x, i: np.where(i == 1, x, 2 * x), P("x", (4,)),
    I("i", (4,), 3))
add("*", "x * i", lambda x, i: x * i, P("x", (2, 3)), I("i", (3,), 4))



# ---- scans, split, triangles and triangular solves (issue 10: h-scans block)

def _scan_ref(f):
    """NumPy's running `f` (np.cumsum, ...) along `axis`, from the end with reverse."""
    def ref(x, axis=None, reverse=False):
        if axis is None:
            x, axis = np.ravel(x), 0
        if reverse:
            return np.flip(f(np.flip(x, axis), axis=axis), axis)
        return f(x, axis=axis)
    return ref


SCANS = {"cumsum": _scan_ref(np.cumsum), "cumprod": _scan_ref(np.cumprod),
         "logcumsumexp": _scan_ref(lambda x, axis: np.log(np.cumsum(np.exp(x), axis=axis)))}
for _name, _f in SCANS.items():
    _dom = domain_of(_name, 0)
    for _shape, _axis, _rev in [(V, None, False), (V, 0, True), (M, 0, False), (M, 1, True),
                                (M, -1, False), (M, None, False), (T3, 1, True)]:
        _kw = ([] if _axis is None else [f"axis={_axis}"]) + (["reverse=True"] if _rev else [])
        add(_name, f"{_name}({', '.join(['x'] + _kw)})",
            lambda x, f=_f, a=_axis, r=_rev: f(x, axis=a, reverse=r), P("x", _shape, _dom))
    add(_name, f"{_name}(x * y, 0, True)", lambda x, y, f=_f: f(x * y, axis=0, reverse=True),
        P("x", (2, 1), _dom), P("y", V, _dom))
add("logcumsumexp", "logcumsumexp(x, axis=0, reverse=True)",
    lambda x: SCANS["logcumsumexp"](x, axis=0, reverse=True), P("x", ("N", "D")),
    dims=(("N", 4), ("D", 2)), out=("N", "D"))
add("cumsum", "cumsum(x, axis=1) * y", lambda x, y: np.cumsum(x, axis=1) * y, P("x", M),
    D("y", V))

for _pre, _expr, _f, _shape in [
    ("a, b = split(x, 2)", "a * b", lambda x: x[:2] * x[2:], (4,)),
    ("a, b, c = split(x, 3, axis=1)", "a * b - c",
     lambda x: x[:, :2] * x[:, 2:4] - x[:, 4:], (2, 6)),
    ("a, b = split(x, 2, axis=0)", "a @ b.T", lambda x: x[:2] @ x[2:].T, (4, 3)),
    ("a, b = split(x, 2, -1)", "exp(a) * b", lambda x: np.exp(x[..., :1]) * x[..., 1:], T3),
    ("(a,) = split(x, 1)", "a * a", lambda x: x * x, V),
]:
    add("split", _expr, _f, P("x", _shape), stmts=(_pre,))

for _name, _f in (("tril", np.tril), ("triu", np.triu)):
    for _k, _shape in [(0, (3, 3)), (-1, (3, 3)), (1, M), (-1, (3, 2)), (0, (2, 3, 3))]:
        _expr = f"{_name}(x)" if _k == 0 else f"{_name}(x, {_k})"
        add(_name, _expr, lambda x, f=_f, k=_k: f(x, k), P("x", _shape))
    add(_name, f"{_name}(x, k=1) @ y", lambda x, y, f=_f: f(x, 1) @ y, P("x", (3, 3)),
        P("y", V))


def _lower_solve(L, b, lower=True):
    """Forward (back) substitution with the lower (upper) triangle of L, written out."""
    L = np.asarray(L)
    if L.ndim > 2:
        return np.stack([_lower_solve(l_, b_, lower) for l_, b_ in
                         zip(L, np.broadcast_to(b, L.shape[:1] + b.shape[-2 if b.ndim > 1
                                                                      else -1:]))])
    x = np.array(b, dtype=float)
    n = len(L)
    for i in range(n) if lower else reversed(range(n)):
        done = slice(0, i) if lower else slice(i + 1, n)
        x[i] = (x[i] - L[i, done] @ x[done]) / L[i, i]
    return x


for _sa, _sb, _lower in [((3, 3), (3,), True), ((3, 3), (3, 2), False), ((1, 1), (1,), True),
                         ((2, 3, 3), (2, 3, 2), True), ((2, 3, 3), (3,), False)]:
    _kw = "" if _lower else ", lower=False"
    add("solve_triangular", f"solve_triangular(x, y{_kw})",
        lambda x, y, lo=_lower: _lower_solve(x, y, lo), P("x", _sa, "invertible"),
        P("y", _sb))
add("solve_triangular", "solve_triangular(x, y)", lambda x, y: _lower_solve(x, y),
    D("x", (3, 3), "invertible"), P("y", (3, 2)))
add("solve_triangular", "solve_triangular(x, y, lower=True)", lambda x, y: _lower_solve(x, y),
    P("x", (3, 3), "invertible"), D("y", V))
for _sa, _sb in [((3, 3), (3,)), ((3, 3), (3, 2)), ((2, 3, 3), (3,))]:
    add("cho_solve", "cho_solve(x, y)",
        lambda x, y: np.linalg.solve(np.tril(x) @ np.swapaxes(np.tril(x), -1, -2), y),
        P("x", _sa, "invertible"), P("y", _sb))
add("cho_solve", "cho_solve(cholesky(s), y)",
    lambda s, y: np.linalg.solve(s, y), D("s", (3, 3), "spd"), P("y", V))

# ---- h-gp: the Cholesky composites (rules cho_solve_spd, solve_cholesky_spd,
# sum_log_cholesky_diagonal: a solve and the log-determinant of spd(K), from one factor).
# The references are solve and slogdet of the matrix itself.
_logdet = lambda a: np.linalg.slogdet(a)[1]  # noqa: E731
for _expr, _f, _args in [
    ("cho_solve(cholesky(x), y)", lambda x, y: np.linalg.solve(x, y),
     [P("x", (3, 3), "spd"), P("y", V)]),
    ("cho_solve(cholesky(x), y)", lambda x, y: np.linalg.solve(x, y),
     [P("x", (2, 3, 3), "spd"), P("y", (3, 2))]),
    ("solve(cholesky(x).T, solve(cholesky(x), y))", lambda x, y: np.linalg.solve(x, y),
     [P("x", (3, 3), "spd"), P("y", V)]),
    ("sum(log(diag(cholesky(x))))", lambda x: _logdet(x) / 2, [P("x", (3, 3), "spd")]),
    ("y @ cho_solve(cholesky(x), y) / 2 + sum(log(diag(cholesky(x))))",
     lambda x, y: y @ np.linalg.solve(x, y) / 2 + _logdet(x) / 2,
     [P("x", (3, 3), "spd"), P("y", V)]),
    ("cholesky(x) @ y + cho_solve(cholesky(x), y)",
     lambda x, y: np.linalg.cholesky(x) @ y + np.linalg.solve(x, y),
     [P("x", (3, 3), "spd"), P("y", V)]),
]:
    add("cho_solve", _expr, _f, *_args, sym=("x",))
add("cho_solve", "cho_solve(cholesky(x @ x.T + s), y) + sum(log(diag(cholesky(x @ x.T + s))))",
    lambda x, s, y: np.linalg.solve(x @ x.T + s, y) + _logdet(x @ x.T + s) / 2,
    P("x", (3, 3)), D("s", (3, 3), "spd"), P("y", V))

# ---- h-logit3: the logistic function of a negation, `sigmoid(-x)`, is the op sigmoid_neg
# (rule sigmoid_of_negation; the derivative of softplus(-x) too), and `log` of it is
# -softplus(x) (rule log_sigmoid). References: the formulas in NumPy.
for _shape in (S, V, M, T3):
    add("sigmoid", "sigmoid(-x)", lambda x: 1.0 / (1.0 + np.exp(x)), P("x", _shape))
add("sigmoid", "sigmoid(-(x * y))", lambda x, y: 1.0 / (1.0 + np.exp(x * y)),
    P("x", (2, 1)), P("y", V))
add("sigmoid", "sigmoid(-x) * y", lambda x, y: y / (1.0 + np.exp(x)), P("x", M), D("y", V))
for _shape in (S, M, T3):
    add("softplus", "softplus(-x)", lambda x: np.log1p(np.exp(-x)), P("x", _shape))
add("softplus", "softplus(-(x * y))", lambda x, y: np.log1p(np.exp(-x * y)), P("x", (2, 1)),
    P("y", V))
add("softplus", "softplus(-x) + sigmoid(-x)",
    lambda x: np.log1p(np.exp(-x)) + 1.0 / (1.0 + np.exp(x)), P("x", V))
add("log", "log(sigmoid(-x))", lambda x: -np.log1p(np.exp(x)), P("x", M))


# ---- subscript assignment (rev. 2): `A[index] = v`, `A[index] op= v` are functional
# updates (op `update`): the references copy and write, as NumPy code would.

def _updated(index, how):
    """The NumPy reference of `x[index] <how>= y` (how: "" to replace), on a copy."""
    def ref(x, y=None):
        out = np.array(x, dtype=np.float64)
        v = {"": lambda a: y, "+": lambda a: a + y, "-": lambda a: a - y,
             "*": lambda a: a * y}[how]
        out[index] = v(out[index]) if y is not None else v
        return out
    return ref


def _updated_const(index, how, value):
    def ref(x):
        out = np.array(x, dtype=np.float64)
        out[index] = value if how == "" else out[index] + value
        return out
    return ref


for _stmt, _index, _how, _x, _y in [
    ("x[0] = y", 0, "", M, V),                                 # a row
    ("x[:, 1] = y", (slice(None), 1), "", M, S),               # a scalar, broadcast
    ("x[..., 0] = y", (Ellipsis, 0), "", T3, V),               # broadcast along an axis
    ("x[1:] += y", slice(1, None), "+", V, (2,)),
    ("x[:, ::2] += y", (slice(None), slice(None, None, 2)), "+", M, (2, 2)),
    ("x[0] -= y", 0, "-", M, V),
    ("x[:, 1:] *= y", (slice(None), slice(1, None)), "*", M, (2, 2)),   # not linear
    ("x[-1, 1:, :] = y", (-1, slice(1, None), slice(None)), "", T3, (2, 2)),
]:
    add("[]=", "x", _updated(_index, _how), P("x", _x), P("y", _y), stmts=(_stmt,))
# The value a Data (no tangent), the array a Data (no tangent for it), constants.
add("[]=", "x", _updated(0, ""), P("x", M), D("y", V), stmts=("x[0] = y",))
add("[]=", "x", _updated(1, ""), D("x", M), P("y", V), stmts=("x[1] = y",))
add("[]=", "x", _updated_const(0, "", 0.0), P("x", M), stmts=("x[0] = 0",))
add("[]=", "x", _updated_const((Ellipsis, -1), "+", 1.5), P("x", T3),
    stmts=("x[..., -1] += 1.5",))
# Twice in a row, and the value read back from the updated array.
add("[]=", "x * z", lambda x, y: _updated(1, "")(_updated(0, "")(x, y), 2 * y) * x,
    P("x", M), P("y", V), stmts=("z = x", "z[0] = y", "z[1] = 2 * y"))
# ---- dimension expressions where sizes are written (h-dims): annotations solved at entry
# (3 * M, N - 1), exact divisions (C // H), slice bounds with dimensions, strided slices,
# and the concatenate of a slice whose reverse sweep once compared N - 2 >= 0

for _expr, _f, _args, _dims, _out in [
    ("x[::2] * x[1::2]", lambda x: x[::2] * x[1::2], [P("x", ("2 * M",))], (("M", 3),), ("M",)),
    ("x[:N - 1] * x[1:N]", lambda x: x[:-1] * x[1:], [P("x", ("N",))], (("N", 4),),
     ("N - 1",)),
    ("a[:, H:2 * H] * a[:, 2 * H:]", lambda a: a[:, 2:4] * a[:, 4:],
     [P("a", ("N", "3 * H"))], (("N", 2), ("H", 2)), ("N", "H")),
    ("x[1:2 * M - 1:2]", lambda x: x[1:-1:2], [P("x", ("2 * M",))], (("M", 3),), ("M - 1",)),
    ("concatenate([x[2:], x]) ** 2", lambda x: np.concatenate([x[2:], x]) ** 2,
     [P("x", ("N",))], (("N", 4),), ("2 * N - 2",)),
]:
    add("[]" if "concatenate" not in _expr else "concatenate", _expr, _f, *_args, dims=_dims,
        out=_out)
add("reshape", "reshape(x, (N, H, C // H)) * y", lambda x, y, z: x.reshape(2, 2, 3) * y,
    P("x", ("N", "C")), D("y", ("H", 1)), D("z", ("C // H",)),
    dims=(("N", 2), ("C", 6), ("H", 2)), out=("N", "H", "C // H"))
add("reshape", "reshape(x, (3, M)) @ y * N", lambda x, y, z: x.reshape(3, 2) @ y * 3,
    P("x", ("3 * M",)), P("y", ("M",)), D("z", ("N - 1",)), dims=(("M", 2), ("N", 3)),
    out=(3,))
add("sqrt", "x / sqrt(C // H) + C % H", lambda x, y: x / np.sqrt(3) + 1,
    P("x", ("C",)), D("y", ("H", 2)), dims=(("C", 7), ("H", 2)), out=("C",))


ALL_CASES = [c for cases in CASES.values() for c in cases]
_dups = sorted(i for i, n in Counter(c.id for c in ALL_CASES).items() if n > 1)
assert not _dups, f"duplicate case ids: {_dups}"


# ---------------------------------------------------------------- compiling a case

def _decl(kind: str, shape) -> str:
    return f"{kind}[()]" if not shape else f"{kind}[{', '.join(map(str, shape))}]"


def program_source(case: Case, out_shape) -> str:
    out = case.out if case.out is not None else out_shape
    kinds = {"param": "Param", "data": "Data", "index": "Index"}
    sig = ", ".join(f"{a.name}: {_decl(kinds[a.role], a.shape)}" for a in case.args)
    weights = f"w1: {_decl('Data', out)}, w2: {_decl('Data', out)}"
    stmts = "".join(f"    {st}\n" for st in case.stmts)
    return (f"def cost({sig}, {weights}):\n{stmts}"
            f"    r = {case.expr}\n"
            f"    return sum(w1 * r + w2 * r * r)\n"
            f"\n\n"
            f"def op({sig}):\n{stmts}"
            f"    return {case.expr}\n")


@dataclass
class Compiled:
    case: Case
    text: str
    sources: dict                 # "cost" (with hessian=True) and "op": the emitted modules
    mod: types.ModuleType         # the functions of both, executed
    inputs: dict                  # every argument of `cost` (float64)
    expected: np.ndarray          # the NumPy reference value of the expression
    u: np.ndarray                 # a cotangent of the op's output
    tangents: dict                # a direction for every Param
    cost_order: list = field(default_factory=list)
    op_order: list = field(default_factory=list)
    _fd: dict = field(default_factory=dict)

    @property
    def params(self):
        return self.case.params

    def fd(self, entry: str, p: str) -> np.ndarray:
        """The finite-difference Jacobian of `entry` ("cost" or "op") w.r.t. Param `p`."""
        if (entry, p) not in self._fd:
            order = self.cost_order if entry == "cost" else self.op_order
            self._fd[entry, p] = fd_jacobian(getattr(self.mod, entry), order, self.inputs, p,
                                             symmetric=p in self.case.sym)
        return self._fd[entry, p]


def _exec(sources: dict, name: str) -> types.ModuleType:
    """The emitted modules, executed, their functions gathered in one namespace (each keeps
    its own module's globals); `__compile_warnings__` lists what compile() warned."""
    mod = types.ModuleType("case_grad")
    mod.__compile_warnings__ = []
    for part, source in sources.items():
        namespace: dict = {}
        for code, caught in _codes(source, f"<generated from {name} ({part})>"):
            exec(code, namespace)  # noqa: S102
            mod.__compile_warnings__ += [f"{part}: {w}" for w in caught]
        mod.__dict__.update({k: v for k, v in namespace.items() if not k.startswith("__")})
    return mod


# A line at column 0 after two blank lines: where a module's top-level parts start (as
# gradgen.verify cuts them). Every case's module repeats the same helpers (`_dims`,
# `_expect`, ...): each distinct part is compiled once, and its code moved to the lines
# and the file name it has in each module (about half the compile() time of the cases).
_CUT = re.compile(r"\n\n\n(?=[A-Za-z_@])")
_PART_CODE: dict[str, tuple[types.CodeType, list[str]]] = {}


def _compiled(text: str, filename: str) -> tuple[types.CodeType, list[str]]:
    """compile(text), and what it warned ("Category: message")."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")   # SyntaxWarning: 'int' object is not subscriptable
        code = compile(text, filename, "exec")
    return code, [f"{w.category.__name__}: {w.message}" for w in caught]


def _moved(code: types.CodeType, lines: int, filename: str) -> types.CodeType:
    """`code` (and the functions' code in it) `lines` further down, in file `filename`."""
    consts = tuple(_moved(c, lines, filename) if isinstance(c, types.CodeType) else c
                   for c in code.co_consts)
    return code.replace(co_firstlineno=code.co_firstlineno + lines, co_filename=filename,
                        co_consts=consts)


def _codes(source: str, filename: str) -> list[tuple[types.CodeType, list[str]]]:
    """The code of the module `source`, part by part (run in order in one namespace: the
    module), with what compiling each part warned; the whole text compiled as one when a
    part does not compile on its own (a cut inside a string). Each part after the first
    is compiled after the module's `import` lines, as in the whole module (CPython
    compiles `np.f(...)` on an imported `np` to other bytecode: the same code this way)."""
    out, start, imports = [], 0, ""
    for m in [*_CUT.finditer(source), None]:
        text = source[start:m.start() + 1] if m is not None else source[start:]
        entry = _PART_CODE.get(imports + text)
        if entry is None:
            try:
                entry = _compiled(imports + text, "<part>")
            except SyntaxError:
                return [_compiled(source, filename)]
            _PART_CODE[imports + text] = entry
        code, caught = entry
        lines = source.count("\n", 0, start) - imports.count("\n")
        out.append((_moved(code, lines, filename), caught))
        if m is None:
            break
        if start == 0:   # the header: the module's imports
            imports = "".join(f"{line}\n" for line in text.split("\n")
                              if line.startswith("import "))
        start = m.end()
    return out


_COMPILED: dict[str, Compiled] = {}


@pytest.fixture(scope="module", autouse=True)
def _forget_compiled_cases():
    """The compiled cases (modules, inputs, finite differences: some 50,000 objects) are
    dropped when this file's tests are done: the xdist worker goes on to other files, and
    every full pass of the garbage collector there would scan them (300 cases alive made
    a full collection 63 ms instead of 47)."""
    yield
    _COMPILED.clear()
    _PART_CODE.clear()


def _size(d, sizes: dict) -> int:
    """A size of a case's shape: an int, a dimension name, or an expression of them
    written in this file ("2 * M", "C // H"; the test's own text, so eval is fine)."""
    if isinstance(d, int):
        return d
    return sizes[d] if d in sizes else int(eval(d, {}, dict(sizes)))  # noqa: S307


def draw_inputs(case: Case, rng) -> dict:
    sizes = dict(case.dims)
    while True:
        arrays = {a.name: _draw_index(rng, a.domain, tuple(_size(d, sizes) for d in a.shape))
                  if a.role == "index" else
                  fdcheck.draw(rng, a.domain, tuple(_size(d, sizes) for d in a.shape))
                  for a in case.args}
        scalars = [v for a, v in zip(case.args, arrays.values())
                   if a.role != "index" and a.domain not in fdcheck.MATRIX_DOMAINS]
        if fdcheck.min_gap(scalars) <= MIN_GAP:
            continue
        if case.avoid is not None and np.min(np.abs(case.avoid(**arrays))) <= MIN_GAP:
            continue
        return arrays


def _draw_index(rng, high: int, shape: tuple) -> np.ndarray:
    """Integers in range(high), the first value repeated last (a gather's VJP must add the
    cotangents of repeated indices)."""
    x = rng.integers(0, high, size=shape)
    if x.size > 1:
        x.flat[-1] = x.flat[0]
    return x


def _f32(inputs: dict) -> dict:
    """The float arguments as float32 (Index arguments stay integers)."""
    return {n: v.astype(np.float32) if v.dtype.kind == "f" else v for n, v in inputs.items()}


def reference(case: Case):
    """(rng, inputs, the NumPy value of the expression) for a case, drawn from its id."""
    rng = np.random.default_rng(zlib.crc32(case.id.encode()))
    inputs = draw_inputs(case, rng)
    return rng, inputs, np.asarray(case.ref(**inputs), dtype=np.float64)


def compiled(case: Case) -> Compiled:
    if case.id in _COMPILED:
        return _COMPILED[case.id]
    rng, inputs, expected = reference(case)
    text = program_source(case, expected.shape)
    # `cost` with every function (hessian=True adds cost_hessian); `op` apart (an explicit
    # hessian=True refuses a non-scalar output).
    cost_text, op_text = text.split("\n\n\n")
    sources = {"cost": gradgen.compile_source(cost_text + "\n", "case.grad", hessian=True),
               "op": gradgen.compile_source(op_text, "case.grad")}
    mod = _exec(sources, case.id)
    shape = expected.shape
    inputs["w1"] = fdcheck.draw(rng, "real", shape)
    inputs["w2"] = 0.3 * fdcheck.draw(rng, "real", shape)
    u = rng.normal(size=shape)
    tangents = {p: rng.normal(size=inputs[p].shape) for p in case.params}
    for p in case.sym:
        tangents[p] = (tangents[p] + np.swapaxes(tangents[p], -1, -2)) / 2
    c = Compiled(case, text, sources, mod, inputs, expected, np.asarray(u), tangents,
                 [a.name for a in case.args] + ["w1", "w2"], [a.name for a in case.args])
    _COMPILED[case.id] = c
    return c


def ref_cost(c: Compiled) -> float:
    r = c.expected
    return float(np.sum(c.inputs["w1"] * r + c.inputs["w2"] * r * r))


cases = pytest.mark.parametrize("case", ALL_CASES, ids=lambda c: c.id)


# ---------------------------------------------------------------- the registry is covered

def test_every_builtin_has_cases():
    missing = sorted(set(BUILTINS) - set(CASES))
    assert not missing, f"built-ins without a test case in tests/test_ops.py: {missing}"


def test_case_keys_are_builtins_or_syntax():
    unknown = sorted(set(CASES) - set(BUILTINS) - set(SYNTAX))
    assert not unknown, f"case keys that are neither built-ins nor syntax: {unknown}"


def test_every_domain_can_be_drawn():
    domains = {d for op in REGISTRY.values() for d in op.domain}
    assert domains <= set(fdcheck.DOMAINS), sorted(domains - set(fdcheck.DOMAINS))
    rng = np.random.default_rng(0)
    for d in set(fdcheck.DOMAINS) - fdcheck.MATRIX_DOMAINS:
        x = fdcheck.draw(rng, d, (1000,))
        assert np.all(np.abs(x) >= 0.09) and np.all(x != 1.0), d
    for _ in range(50):
        a = fdcheck.draw(rng, "invertible", (2, 3, 3))
        assert np.all(np.linalg.cond(a) < 20)
        s = fdcheck.draw(rng, "spd", (2, 3, 3))
        assert np.allclose(s, np.swapaxes(s, -1, -2)) and np.all(np.linalg.eigvalsh(s) > 0.9)


def test_every_op_is_reached_from_the_cases():
    """Every non-leaf op of the registry appears in the forward graph of some case."""
    from gradgen import ir
    from gradgen.passes import building
    from gradgen.frontend import parse_program

    seen = set()
    for case in ALL_CASES:
        text = program_source(case, reference(case)[2].shape)
        try:
            with building():
                program = parse_program(text, "case.grad")
                seen |= {n.op for n in ir.topo_order([e.output for e in program.entries])}
        except gradgen.CompileError:
            continue    # the case's own tests report it
    ops = {name for name, op in REGISTRY.items() if not op.has("leaf")}
    missing = sorted(ops - seen - INTERNAL_OPS - LOOP_OPS - STATEMENT_OPS)
    assert not missing, f"ops no case reaches: {missing}"


# ---------------------------------------------------------------- numerical checks per case

def check_value(c: Compiled) -> None:
    assert_close(call(c.mod.op, c.op_order, c.inputs), c.expected, "op value", rtol=1e-10)
    assert_close(call(c.mod.cost, c.cost_order, c.inputs), ref_cost(c), "cost value",
                 rtol=1e-10)


def check_grad(c: Compiled) -> None:
    grads = as_tuple(call(c.mod.cost_grad, c.cost_order, c.inputs), len(c.params))
    for p, g in zip(c.params, grads):
        assert_close(g, c.fd("cost", p), f"cost_grad d/d{p}")
        if p in c.case.sym:   # a symmetric argument gets a symmetric gradient
            assert_close(g, np.swapaxes(g, -1, -2), f"symmetry of cost_grad d/d{p}",
                         rtol=1e-12)
    if c.expected.ndim == 0:    # a scalar op has its own gradient too
        grads = as_tuple(call(c.mod.op_grad, c.op_order, c.inputs), len(c.params))
        for p, g in zip(c.params, grads):
            assert_close(g, c.fd("op", p), f"op_grad d/d{p}")
    else:
        assert not hasattr(c.mod, "op_grad"), "op_grad emitted for a non-scalar output"


def check_value_and_grad(c: Compiled) -> None:
    value, grads = call(c.mod.cost_value_and_grad, c.cost_order, c.inputs)
    assert_close(value, ref_cost(c), "value", rtol=1e-10)
    expected = as_tuple(call(c.mod.cost_grad, c.cost_order, c.inputs), len(c.params))
    for p, g, e in zip(c.params, as_tuple(grads, len(c.params)), expected):
        assert_close(g, e, f"value_and_grad d/d{p} vs cost_grad", rtol=1e-12)


def check_vjp(c: Compiled) -> None:
    """op_vjp (the op's own output) and cost_vjp (a scalar cotangent) vs differences."""
    cts = as_tuple(call(c.mod.op_vjp, c.op_order, c.inputs, c.u), len(c.params))
    for p, ct in zip(c.params, cts):
        assert_close(ct, contract(c.fd("op", p), c.u), f"op_vjp d/d{p}")
    cts = as_tuple(call(c.mod.cost_vjp, c.cost_order, c.inputs, np.float64(-0.7)),
                   len(c.params))
    for p, ct in zip(c.params, cts):
        assert_close(ct, -0.7 * c.fd("cost", p), f"cost_vjp d/d{p}")


def check_jvp(c: Compiled) -> None:
    ts = [c.tangents[p] for p in c.params]
    value, t = call(c.mod.op_jvp, c.op_order, c.inputs, *ts)
    assert_close(value, c.expected, "op_jvp value", rtol=1e-10)
    assert_close(t, fd_directional(c.mod.op, c.op_order, c.inputs, c.tangents), "op_jvp")
    # <u, J v> = <J^T u, v>
    cts = as_tuple(call(c.mod.op_vjp, c.op_order, c.inputs, c.u), len(c.params))
    lhs = np.sum(c.u * np.asarray(t))
    rhs = sum(np.sum(ct * c.tangents[p]) for p, ct in zip(c.params, cts))
    assert_close(lhs, rhs, "<u, J v> vs <J^T u, v>", rtol=1e-10)
    value, t = call(c.mod.cost_jvp, c.cost_order, c.inputs, *ts)
    assert_close(value, ref_cost(c), "cost_jvp value", rtol=1e-10)
    assert_close(t, fd_directional(c.mod.cost, c.cost_order, c.inputs, c.tangents), "cost_jvp")


def check_hvp(c: Compiled) -> None:
    k = len(c.params)
    hv = as_tuple(call(c.mod.cost_hvp, c.cost_order, c.inputs,
                       *(c.tangents[p] for p in c.params)), k)
    diff = fd_directional(c.mod.cost_grad, c.cost_order, c.inputs, c.tangents)
    for p, h, e in zip(c.params, hv, as_tuple(diff, k)):
        assert_close(h, e, f"cost_hvp (H v) for {p} vs differences of cost_grad")
    if c.expected.ndim == 0:    # a scalar op has its own Hessian-vector product too
        hv = as_tuple(call(c.mod.op_hvp, c.op_order, c.inputs,
                           *(c.tangents[p] for p in c.params)), k)
        diff = fd_directional(c.mod.op_grad, c.op_order, c.inputs, c.tangents)
        for p, h, e in zip(c.params, hv, as_tuple(diff, k)):
            assert_close(h, e, f"op_hvp (H v) for {p} vs differences of op_grad")


def check_hessian(c: Compiled) -> None:
    """`cost_hessian` (opt-in, --hessian): block [i][j] of shape p_i.shape + p_j.shape is
    the difference quotient of cost_grad's i-th output w.r.t. p_j, and the blocks applied
    to the tangents give cost_hvp to 1e-9; float32 stays float32."""
    mod = c.mod
    k = len(c.params)
    result = call(mod.cost_hessian, c.cost_order, c.inputs)
    rows = [result] if k == 1 else list(as_tuple(result, k))
    rows = [[r] if k == 1 else list(as_tuple(r, k)) for r in rows]
    for j, pj in enumerate(c.params):
        # d(grad_i)/d(p_j) for every i at once, shaped p_j.shape + p_i.shape
        fds = as_tuple(fd_jacobian(mod.cost_grad, c.cost_order, c.inputs, pj,
                                   symmetric=pj in c.case.sym), k)
        nj = np.ndim(c.inputs[pj])
        for i, (pi, fd) in enumerate(zip(c.params, fds)):
            expected = np.moveaxis(fd, tuple(range(nj)), tuple(range(fd.ndim - nj, fd.ndim)))
            assert_close(rows[i][j], expected, f"cost_hessian block d2/d{pi} d{pj}")
    hv = as_tuple(call(c.mod.cost_hvp, c.cost_order, c.inputs,
                       *(c.tangents[p] for p in c.params)), k)
    for i, pi in enumerate(c.params):
        h_v = sum(np.tensordot(rows[i][j], c.tangents[pj], axes=np.ndim(c.tangents[pj]))
                  for j, pj in enumerate(c.params))
        assert_close(h_v, hv[i], f"cost_hessian applied to the tangents vs cost_hvp for {pi}",
                     rtol=1e-9)
    f32 = _f32(c.inputs)
    for i, h in enumerate(_outputs(call(mod.cost_hessian, c.cost_order, f32))):
        assert np.asarray(h).dtype == np.float32, \
            f"cost_hessian block {i}: dtype {np.asarray(h).dtype} for float32 inputs"


def _outputs(result):
    if isinstance(result, tuple):
        return [x for r in result for x in _outputs(r)]
    return [result]


def check_float32_in_float32_out(c: Compiled) -> None:
    f32 = _f32(c.inputs)
    ts = [c.tangents[p].astype(np.float32) for p in c.params]
    calls = {
        "cost": (c.mod.cost, c.cost_order, ()),
        "cost_grad": (c.mod.cost_grad, c.cost_order, ()),
        "cost_value_and_grad": (c.mod.cost_value_and_grad, c.cost_order, ()),
        "cost_vjp": (c.mod.cost_vjp, c.cost_order, (np.float32(0.5),)),
        "cost_jvp": (c.mod.cost_jvp, c.cost_order, ts),
        "cost_hvp": (c.mod.cost_hvp, c.cost_order, ts),
        "op": (c.mod.op, c.op_order, ()),
        "op_vjp": (c.mod.op_vjp, c.op_order, (c.u.astype(np.float32),)),
        "op_jvp": (c.mod.op_jvp, c.op_order, ts),
    }
    for name, (fn, order, extra) in calls.items():
        lo = _outputs(call(fn, order, f32, *extra))
        hi = _outputs(call(fn, order, c.inputs, *(np.asarray(e, dtype=np.float64)
                                                  for e in extra)))
        for i, (a, b) in enumerate(zip(lo, hi)):
            assert np.asarray(a).dtype == np.float32, \
                f"{name} output {i}: dtype {np.asarray(a).dtype} for float32 inputs"
            assert_close(np.asarray(a, dtype=np.float64), b, f"{name} output {i} in float32",
                         rtol=1e-4)


# ---------------------------------------------------------------- the emitted source

@pytest.fixture(scope="module")
def ruff_report():
    """`ruff check` and `ruff format --check` of every case's module (one run each):
    (case id, part) -> list of messages.

    The modules are written to a temporary folder that is removed as soon as ruff has read
    them, not to pytest's `tmp_path_factory`: its folders stay until a later session
    removes them, and removing 1,744 files some minutes after they were written (once they
    are on the disk) took 7-8 s of that session's wall time on the project's machine,
    against 0.2 s right after writing them."""
    sources = {}
    for case in ALL_CASES:
        try:   # a failure to compile is reported by the case's own test
            sources[case.id] = compiled(case).sources
        except Exception:  # noqa: BLE001, S112
            continue
    with tempfile.TemporaryDirectory(prefix="gradgen-ruff-") as tmp:
        return _ruff_messages(Path(tmp), sources)


def _ruff_messages(folder: Path, sources: dict) -> dict:
    """(case id, part) -> ruff's messages on the module, each written into `folder`."""
    files = {}
    for i, (case_id, parts) in enumerate(sources.items()):
        for part, source in parts.items():
            path = folder / f"case_{i}_{part}.py"
            path.write_text(source, encoding="utf-8")
            files[case_id, part] = path
    proc = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--isolated", "--preview", "--select", "E,F,W,I",
         "--ignore", "E501", "--output-format", "json", "--no-cache", str(folder)],
        capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode in (0, 1) and proc.stdout.strip().startswith("["), \
        f"ruff did not run (is it installed? it is in the 'test' extra):\n{proc.stderr}"
    by_file: dict[str, list[str]] = {}
    for d in json.loads(proc.stdout):
        loc = d.get("location") or {}
        by_file.setdefault(Path(d["filename"]).name, []).append(
            f"{d['code']} line {loc.get('row')}: {d['message']}")
    # SPEC 2: `ruff format` leaves the emitted module as it is (at the project's width).
    proc = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--isolated", "--line-length", "100",
         "--diff", "--no-cache", str(folder)],
        capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode in (0, 1), f"ruff format did not run:\n{proc.stderr}"
    for line in proc.stdout.splitlines():
        if line.startswith("--- ") and line.endswith(".py"):
            by_file.setdefault(Path(line[4:]).name, []).append(
                "ruff format would change the module")
    return {key: by_file.get(path.name, []) for key, path in files.items()}


def check_ruff_clean(c: Compiled, ruff_report: dict) -> None:
    for part, source in c.sources.items():
        problems = ruff_report[c.case.id, part]
        assert not problems, f"ruff check of the module emitted for {part}:\n" + \
            "\n".join(problems) + "\n\n" + source


def check_compiles_and_imports_only_numpy(c: Compiled) -> None:
    assert not c.mod.__compile_warnings__, \
        f"compile() of the emitted module warns: {c.mod.__compile_warnings__}"
    for part, source in c.sources.items():
        imported = {m.group(2).split(".")[0] for m in
                    re.finditer(r"^\s*(import|from)\s+([\w.]+)", source, re.MULTILINE)}
        extra = imported - {"numpy", "__future__"} - set(sys.stdlib_module_names)
        assert not extra, f"the module emitted for {part} imports {sorted(extra)}"


# Every check of a case, in order. One test per case runs them all and reports every
# failing check (a test item per case and check cost more in pytest's bookkeeping, ~1 ms
# each for ~7,000 items, than most checks themselves).
CHECKS = (check_value, check_grad, check_value_and_grad, check_vjp, check_jvp, check_hvp,
          check_hessian, check_float32_in_float32_out, check_compiles_and_imports_only_numpy)


@cases
def test_case(case, ruff_report):
    """The case's emitted functions against NumPy and finite differences (the checks
    above), its emitted sources against ruff and compile()."""
    c = compiled(case)
    checks = [(f.__name__, f) for f in CHECKS]
    checks.append(("check_ruff_clean", lambda c: check_ruff_clean(c, ruff_report)))
    failures = []
    for name, check in checks:
        try:
            check(c)
        except AssertionError as e:
            failures.append((name, f"{name}: {e}"))
    assert not failures, (", ".join(n for n, _ in failures) + " failed:\n\n"
                          + "\n\n".join(text for _, text in failures))


# ---------------------------------------------------------------- non-differentiable points
#
# README.md, "Non-differentiable points": relu'(0) = 0, abs'(0) = sign(0) = 0, sign' = 0,
# maximum/minimum ties split the gradient 0.5/0.5, max/min reductions split it equally
# among the tied elements, sqrt'(0) = inf; in reverse and forward mode alike. Expected
# values are worked out by hand from those rules.

def _load(text: str, **options):
    """The module emitted for `text` (compile_source options), executed."""
    mod = types.ModuleType("kink_grad")
    source = gradgen.compile_source(text, "kink.grad", **options)
    exec(compile(source, "<kink>", "exec"), mod.__dict__)  # noqa: S102
    return mod


KINK_X = np.array([-1.0, 0.0, 2.0, 0.0])
KINK_W = np.array([1.5, 2.5, -0.5, -3.0])
KINK_T = np.array([0.3, 0.7, 1.1, -0.9])


@pytest.mark.parametrize("fn, local", [
    ("relu", np.array([0.0, 0.0, 1.0, 0.0])),     # relu'(0) = 0
    ("abs", np.array([-1.0, 0.0, 1.0, 0.0])),     # abs'(0) = 0
    ("sign", np.array([0.0, 0.0, 0.0, 0.0])),     # sign' = 0 everywhere
])
def test_kink_unary(fn, local):
    mod = _load(f"def cost(x: Param[4], w: Data[4]):\n    return sum({fn}(x) * w)\n\n\n"
                f"def op(x: Param[4]):\n    return {fn}(x)\n")
    x, w, t, g = KINK_X, KINK_W, KINK_T, np.array([0.5, -1.5, 2.0, 4.0])
    np.testing.assert_array_equal(mod.cost_grad(x, w), local * w)
    np.testing.assert_array_equal(mod.cost_value_and_grad(x, w)[1], local * w)
    np.testing.assert_array_equal(mod.cost_vjp(x, w, 2.0), 2.0 * local * w)
    np.testing.assert_array_equal(mod.op_vjp(x, g), local * g)
    np.testing.assert_allclose(mod.cost_jvp(x, w, t)[1], np.sum(local * w * t), rtol=1e-15)
    np.testing.assert_array_equal(mod.op_jvp(x, t)[1], local * t)


def test_kink_sqrt_at_zero_is_inf():
    mod = _load("def op(x: Param[2]):\n    return sqrt(x)\n")
    x = np.array([0.0, 4.0])
    with np.errstate(divide="ignore"):
        ct = mod.op_vjp(x, np.array([1.0, 1.0]))
        _, t = mod.op_jvp(x, np.array([1.0, 1.0]))
    assert ct[0] == np.inf and ct[1] == 0.25
    assert t[0] == np.inf and t[1] == 0.25


@pytest.mark.parametrize("fn", ["maximum", "minimum"])
def test_kink_maximum_minimum_ties_split(fn):
    mod = _load(f"def cost(x: Param[2, 3], y: Param[3], w: Data[2, 3]):\n"
                f"    return sum({fn}(x, y) * w)\n\n\n"
                f"def op(x: Param[2, 3], y: Param[3]):\n    return {fn}(x, y)\n")
    y = np.array([1.0, 0.0, 3.0])
    x = np.array([[1.0, 2.0, -3.0],     # tie, x > y, x < y
                  [4.0, 0.0, 3.0]])     # x > y, tie, tie
    w = np.array([[2.0, -1.0, 4.0], [0.5, 3.0, -2.0]])
    wins_x = (x > y) if fn == "maximum" else (x < y)
    wins_y = (y > x) if fn == "maximum" else (y < x)
    share_x = np.where(x == y, 0.5, wins_x.astype(float))
    share_y = np.where(x == y, 0.5, wins_y.astype(float))
    assert np.all(share_x + share_y == 1.0)
    dx, dy = mod.cost_grad(x, y, w)
    np.testing.assert_array_equal(dx, share_x * w)
    np.testing.assert_array_equal(dy, np.sum(share_y * w, axis=0))
    g = np.array([[1.0, 2.0, 3.0], [-4.0, 5.0, 6.0]])
    dx, dy = mod.op_vjp(x, y, g)
    np.testing.assert_array_equal(dx, share_x * g)
    np.testing.assert_array_equal(dy, np.sum(share_y * g, axis=0))
    tx = np.array([[0.25, 1.0, -2.0], [3.0, 0.5, -1.5]])
    ty = np.array([0.75, -1.0, 2.5])
    _, t = mod.op_jvp(x, y, tx, ty)
    np.testing.assert_allclose(t, share_x * tx + share_y * ty, rtol=1e-15)
    _, t = mod.cost_jvp(x, y, w, tx, ty)
    np.testing.assert_allclose(t, np.sum(w * (share_x * tx + share_y * ty)), rtol=1e-14)


# x has ties: row 0 max 3 twice, row 1 all equal (three-way tie), column maxima tie too.
TIE_X = np.array([[3.0, 1.0, 3.0],
                  [2.0, 2.0, 2.0]])


def _tie_weights(x, axis, extreme):
    """The hand rule: 1/k on each of the k elements equal to the extreme along `axis`."""
    e = extreme(x, axis=axis, keepdims=True)
    mask = (x == e).astype(float)
    return mask / np.sum(mask, axis=axis, keepdims=True)


@pytest.mark.parametrize("fn", ["max", "min"])
@pytest.mark.parametrize("axis, keepdims", [(None, False), (0, False), (1, False), (1, True),
                                            (-1, False), ((0, 1), True)])
def test_kink_max_min_reduction_ties_split(fn, axis, keepdims):
    extreme = np.max if fn == "max" else np.min
    kw = ("" if axis is None else f", axis={axis}") + (", keepdims=True" if keepdims else "")
    out_shape = extreme(TIE_X, axis=axis, keepdims=keepdims).shape
    decl = "Data[()]" if not out_shape else f"Data[{', '.join(map(str, out_shape))}]"
    mod = _load(f"def cost(x: Param[2, 3], w: {decl}):\n    return sum({fn}(x{kw}) * w)\n\n\n"
                f"def op(x: Param[2, 3]):\n    return {fn}(x{kw})\n")
    weights = _tie_weights(TIE_X, axis, extreme)
    if axis is None:
        # max: the two 3s get 1/2 each; min: the single 1 gets it all
        hand = np.array([[0.5, 0, 0.5], [0, 0, 0]]) if fn == "max" else \
            np.array([[0, 1.0, 0], [0, 0, 0]])
        np.testing.assert_array_equal(weights, hand)
    if axis in (1, -1) and fn == "max":
        np.testing.assert_array_equal(weights, [[0.5, 0, 0.5], [1 / 3, 1 / 3, 1 / 3]])
    g = np.arange(1.0, 1.0 + np.prod(out_shape)).reshape(out_shape) * 1.5
    g_full = g if keepdims or axis is None else np.expand_dims(g, axis)
    np.testing.assert_allclose(mod.op_vjp(TIE_X, g), weights * g_full, rtol=1e-15)
    np.testing.assert_allclose(mod.cost_grad(TIE_X, g), weights * g_full, rtol=1e-15)
    t = np.array([[0.5, -1.0, 2.0], [3.0, -0.25, 1.25]])
    _, tangent = mod.op_jvp(TIE_X, t)
    np.testing.assert_allclose(tangent, np.sum(weights * t, axis=axis, keepdims=keepdims),
                               rtol=1e-15)
    _, tangent = mod.cost_jvp(TIE_X, g, t)
    np.testing.assert_allclose(tangent, np.sum(weights * t * g_full), rtol=1e-14)


@pytest.mark.parametrize("fn", ["logsumexp", "softmax", "log_softmax"])
def test_shift_by_tied_maximum_does_not_leak(fn):
    """The max shift of the stable forms is invisible: at tied maxima the derivatives are
    those of the exact formula (softmax-based), not split by the max's tie rule."""
    x = np.array([[2.0, 2.0, -1.0], [0.5, 0.5, 0.5]])
    e = np.exp(x)
    s = e / np.sum(e, axis=1, keepdims=True)
    mod = _load(f"def op(x: Param[2, 3]):\n    return {fn}(x, axis=1)\n")
    t = np.array([[0.5, -1.0, 2.0], [3.0, -0.25, 1.25]])
    _, tangent = mod.op_jvp(x, t)
    if fn == "logsumexp":
        g = np.array([1.5, -2.0])
        np.testing.assert_allclose(mod.op_vjp(x, g), s * g[:, None], rtol=1e-14)
        np.testing.assert_allclose(tangent, np.sum(s * t, axis=1), rtol=1e-14)
    elif fn == "softmax":
        g = np.array([[1.0, 2.0, 3.0], [-1.0, 0.5, 2.0]])
        sg = np.sum(s * g, axis=1, keepdims=True)
        np.testing.assert_allclose(mod.op_vjp(x, g), s * (g - sg), rtol=1e-14, atol=1e-15)
        st = np.sum(s * t, axis=1, keepdims=True)
        np.testing.assert_allclose(tangent, s * (t - st), rtol=1e-14, atol=1e-15)
    else:
        g = np.array([[1.0, 2.0, 3.0], [-1.0, 0.5, 2.0]])
        np.testing.assert_allclose(mod.op_vjp(x, g), g - s * np.sum(g, axis=1, keepdims=True),
                                   rtol=1e-14, atol=1e-15)
        np.testing.assert_allclose(tangent, t - np.sum(s * t, axis=1, keepdims=True),
                                   rtol=1e-14, atol=1e-15)


# Conventions stated in the ops' own documentation (gradgen/ops/functions.py, reductions.py)
# rather than README.md: clip is minimum(maximum(x, lo), hi), so at a bound the cotangent is
# split equally between x and that bound; the derivative of norm is 0 where the norm is 0.

def test_kink_clip_at_the_bounds_splits():
    mod = _load("def op(x: Param[5]):\n    return clip(x, -0.5, 0.5)\n")
    x = np.array([-0.5, 0.2, 0.5, 1.0, -2.0])
    local = np.array([0.5, 1.0, 0.5, 0.0, 0.0])
    g = np.array([1.0, -2.0, 3.0, 4.0, 5.0])
    np.testing.assert_array_equal(mod.op_vjp(x, g), local * g)
    t = np.array([0.25, 0.5, -1.0, 2.0, 3.0])
    np.testing.assert_array_equal(mod.op_jvp(x, t)[1], local * t)


def test_kink_norm_at_zero_is_zero():
    mod = _load("def op(x: Param[2, 3]):\n    return norm(x, axis=1)\n\n\n"
                "def total(x: Param[3]):\n    return norm(x)\n")
    x = np.array([[0.0, 0.0, 0.0], [3.0, 4.0, 0.0]])
    g = np.array([2.0, 5.0])
    np.testing.assert_allclose(mod.op_vjp(x, g), [[0, 0, 0], [5 * 0.6, 5 * 0.8, 0]],
                               rtol=1e-15)
    t = np.array([[1.0, -1.0, 2.0], [0.5, 0.25, 7.0]])
    np.testing.assert_allclose(mod.op_jvp(x, t)[1], [0.0, 0.6 * 0.5 + 0.8 * 0.25], rtol=1e-15)
    np.testing.assert_array_equal(mod.total_grad(np.zeros(3)), np.zeros(3))
    np.testing.assert_array_equal(mod.total_jvp(np.zeros(3), np.ones(3))[1], 0.0)


def test_clip_at_the_bounds_splits_like_maximum_and_minimum():
    """Bounds that are Params: strictly inside, 1 to x; outside, all to the bound; at a
    bound, half and half."""
    mod = _load("def f(x: Param[5], lo: Param[()], hi: Param[()]):\n"
                "    return sum(clip(x, lo, hi))\n")
    dx, dlo, dhi = mod.f_grad(np.array([-2.0, -1.0, 0.0, 1.0, 2.0]), np.float64(-1.0),
                              np.float64(1.0))
    assert np.array_equal(dx, [0.0, 0.5, 1.0, 0.5, 0.0])
    assert dlo == 1.5 and dhi == 1.5


def test_norm_gradient_is_zero_at_zero():
    mod = _load("def f(x: Param[2, 3]):\n    return sum(norm(x, axis=1)) + norm(x)\n")
    x = np.array([[0.0, 0.0, 0.0], [3.0, 0.0, 4.0]])
    g = mod.f_grad(x)
    assert np.all(np.isfinite(g))
    assert np.allclose(g, [[0, 0, 0], [0.6 + 0.6, 0, 0.8 + 0.8]])
    assert np.array_equal(mod.f_grad(np.zeros((2, 3))), np.zeros((2, 3)))
    _, t = mod.f_jvp(np.zeros((2, 3)), np.ones((2, 3)))
    assert t == 0


def test_prod_gradient_for_nonzero_inputs():
    mod = _load("def f(x: Param[4]):\n    return prod(x)\n")
    x = np.array([2.0, -3.0, 0.5, 4.0])
    assert np.allclose(mod.f_grad(x), [-6.0, 4.0, -24.0, -3.0])


# ---------------------------------------------------------------- erf's helper

@pytest.fixture(scope="module")
def erf_helper():
    """The `_erf` helper the emitted module carries (it imports nothing but NumPy)."""
    return _load("def f(x: Param[N]):\n    return erf(x)\n")._erf


def test_erf_accuracy_against_math_erf(erf_helper):
    """Within 1e-15 relative of math.erf on a dense grid, near 0, across the range
    boundaries (0.46875, 4, 6) and in the tails."""
    xs = np.concatenate([
        np.linspace(-7.0, 7.0, 400_001),
        np.geomspace(1e-300, 7.0, 20_001),
        -np.geomspace(1e-300, 7.0, 2_001),
        [5e-324, 0.46875, np.nextafter(0.46875, 1), 4.0, np.nextafter(4.0, 5), 6.0,
         np.nextafter(6.0, 0), 26.0, 1e300],
    ])
    got = erf_helper(xs)
    want = np.array([math.erf(x) for x in xs])
    nonzero = want != 0
    rel = np.abs(got - want)[nonzero] / np.abs(want)[nonzero]
    assert rel.max() <= 1e-15, f"max relative error {rel.max():.2e} at {xs[nonzero][rel.argmax()]}"
    assert np.all(got[~nonzero] == 0)


def test_erf_special_values_and_dtypes(erf_helper):
    r = erf_helper(np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e308]))
    assert r[0] == 0 and np.signbit(r[1]) and r[2] == 1 and r[3] == -1 and np.isnan(r[4])
    assert r[5] == 1
    x32 = np.linspace(-5, 5, 1001, dtype=np.float32)
    r32 = erf_helper(x32)
    assert r32.dtype == np.float32 and r32.shape == x32.shape
    want = np.array([math.erf(float(x)) for x in x32], dtype=np.float32)
    assert np.max(np.abs(r32 - want)) <= np.finfo(np.float32).eps
    assert erf_helper(np.float64(0.5)) == math.erf(0.5) or abs(
        erf_helper(np.float64(0.5)) - math.erf(0.5)) < 1e-16
    assert np.ndim(erf_helper(0.5)) == 0 and erf_helper(np.ones((2, 0))).shape == (2, 0)
    assert erf_helper(np.ones((3, 4)).T).shape == (4, 3)


# ---------------------------------------------------------------- emitted code and errors

def test_emitted_forms():
    src = gradgen.compile_source(
        "def f(A: Param[N, N], B: Param[M, N], x: Param[N]):\n"
        "    J = concatenate([A, B])\n"
        "    C = einsum(\"ij,kj->ik\", A, B)\n"
        "    return sum(J) + sum(C) + logdet(A + eye(N)) + erf(norm(x)) + var(x)\n",
        "f.grad")
    assert "np.concatenate([A, B])" in src
    assert "A @ B.T" in src                      # a matrix product, not np.einsum
    assert "_plus_diagonal(A, 1)" in src          # A + eye(N): the identity not built
    # norm(x) is a variable of the shared forward part: f_grad reads it too
    assert "np.linalg.slogdet(" in src and "x_norm = np.linalg.norm(x)" in src
    assert "_erf(x_norm)" in src
    assert "[:N]" in src and "[N:]" in src       # the derivative of concatenate slices
    assert "np.var(x)" in src
    compile(src, "f", "exec")


@pytest.mark.parametrize("body, message", [
    ('einsum("ij,jk->ik->k", a, a)', "explicit output"),
    ('einsum("ij,jk->ik", a)', "names 2 operand(s) but 1 array(s)"),
    ('einsum("ii,i->i", t, v)', "has 2 indices but the array has shape (2, 3, 3)"),
    ('einsum("ij->ii", a)', "repeated in the output"),
    ('einsum("ij->k", a)', "output index 'k' is not an index"),
    ('einsum("i...->i", a)', "'...'"),
    ("concatenate([a, v])", "cannot concatenate shapes"),
    ("concatenate([s, s])", "zero-dimensional"),
    ("stack([a, v])", "cannot stack arrays of different shapes"),
    ("diag(t)", "diag takes a vector or a matrix"),
    ("solve(a, concatenate([v, v]))", "solve(A, b)"),
    ("inv(v)", "inv needs square matrices"),
    ("dot(t, a)", "more than two dimensions"),
    ("eye(0)", "positive"),
])
def test_errors(body, message):
    text = (f"def f(a: Param[3, 3], v: Param[3], s: Param[()], t: Param[2, 3, 3]):\n"
            f"    return sum({body})\n")
    with pytest.raises(gradgen.CompileError) as err:
        gradgen.compile_source(text, "f.grad")
    assert message in str(err.value)


# ---------------------------------------------------------------- ops together

def test_gaussian_process_likelihood_end_to_end():
    """cholesky, solve, diag, eye, dot and log together: gradient and Hessian against finite
    differences, float32 kept."""
    text = (
        "def nll(X: Data[N, D], y: Data[N], log_ell: Param[()], log_sn: Param[()]):\n"
        "    d2 = sum((expand_dims(X, 1) - expand_dims(X, 0)) ** 2, axis=2)\n"
        "    K = exp(-d2 / (2 * exp(2 * log_ell))) + exp(2 * log_sn) * eye(N)\n"
        "    L = cholesky(K)\n"
        "    alpha = solve(L.T, solve(L, y))\n"
        "    return 0.5 * dot(y, alpha) + sum(log(diag(L))) + 0.5 * N * log(2 * pi)\n")
    mod = _load(text, hessian=True)
    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(6, 2)), rng.normal(size=6)
    p = np.array([0.1, -0.5])

    def nll(q):
        k = np.exp(-np.sum((X[:, None] - X[None]) ** 2, axis=2) / (2 * np.exp(2 * q[0])))
        k = k + np.exp(2 * q[1]) * np.eye(6)
        return 0.5 * y @ np.linalg.solve(k, y) + 0.5 * np.linalg.slogdet(k)[1] \
            + 3 * np.log(2 * np.pi)

    assert abs(mod.nll(X, y, *p) - nll(p)) < 1e-12
    grad = np.array(mod.nll_grad(X, y, *p))
    steps = fdcheck.EPS * np.eye(2)
    assert_close(grad, [(nll(p + s) - nll(p - s)) / (2 * fdcheck.EPS) for s in steps],
                 "gradient")
    hess = np.array(mod.nll_hessian(X, y, *p), dtype=float)
    fd = [(np.array(mod.nll_grad(X, y, *(p + s))) - np.array(mod.nll_grad(X, y, *(p - s))))
          / (2 * fdcheck.EPS) for s in steps]
    assert_close(hess, np.array(fd).T, "hessian")
    f32 = (X.astype(np.float32), y.astype(np.float32), *p.astype(np.float32))
    assert all(np.asarray(g).dtype == np.float32 for g in mod.nll_grad(*f32))
    assert mod.nll(*f32).dtype == np.float32


def test_constant_arrays_of_dimension_expressions():
    mod = _load("def f(x: Param[D]):\n"
                "    return sum(concatenate([x, x]) * ones(2 * D)) + trace(eye(2 * D)) * x[0]"
                " + sum(zeros((D, 2)))\n")
    x = np.arange(1.0, 4.0)
    assert mod.f(x) == 2 * x.sum() + 6 * x[0]
    assert np.array_equal(mod.f_grad(x), [8.0, 2.0, 2.0])
    assert mod.f_grad(x.astype(np.float32)).dtype == np.float32
