"""The built-ins of SPEC §1 added by issue 3: expm1 sin cos tan arctan erf clip, prod norm
var, concatenate stack (and the shape built-ins from the language), dot outer trace diag
inv det logdet solve cholesky eye einsum, zeros ones.

Each case is an expression over Params (and Data) compiled twice, into

    def op(<args>):
        return <EXPR>

    def cost(<args>, w1: Data[<out>], w2: Data[<out>]):      (with --hessian)
        r = <EXPR>
        return sum(w1 * r + w2 * r * r)

and the emitted functions are compared with a NumPy reference (the value) and with
two-sided finite differences in float64 along random directions: cost_grad, op_vjp (via
<vjp(u), v> = <u, J v>), op_jvp, cost_hvp (differences of cost_grad), cost_hessian (against
cost_hvp); then float32 inputs must give float32 outputs. Inputs come from each op's test
domain (see `draw`); cholesky's A is symmetric, so its directions are symmetric too.
Independent of tests/test_ops.py (nothing shared but gradgen itself).
"""

from __future__ import annotations

import math
import types
from dataclasses import dataclass, field

import numpy as np
import pytest

import gradgen
from gradgen.ops import REGISTRY

EPS = 1e-6
RTOL = 1e-6


# ---------------------------------------------------------------- inputs

def _signed(rng, shape, lo, hi):
    return rng.uniform(lo, hi, size=shape) * rng.choice([-1.0, 1.0], size=shape)


def _invertible(rng, shape):
    """I + 0.3 R / sqrt(n) (eigenvalues near 1), the first row negated at random."""
    n = shape[-1]
    a = np.eye(n) + 0.3 * rng.normal(size=shape) / math.sqrt(n)
    flip = rng.choice([-1.0, 1.0], size=shape[:-2] + (1, 1))
    a[..., :1, :] *= flip
    return a


def _spd(rng, shape):
    """R R^T / n + I."""
    n = shape[-1]
    r = rng.normal(size=shape)
    return r @ np.swapaxes(r, -1, -2) / n + np.eye(n)


DOMAINS = {
    "real": lambda rng, shape: _signed(rng, shape, 0.3, 1.5),
    "nonzero": lambda rng, shape: _signed(rng, shape, 0.3, 1.5),
    "positive": lambda rng, shape: rng.uniform(0.5, 2.0, size=shape),
    "unit": lambda rng, shape: _signed(rng, shape, 0.1, 0.9),
    "invertible": _invertible,
    "spd": _spd,
    "small": lambda rng, shape: _signed(rng, shape, 0.01, 0.1),
}


def draw(rng, domain, shape):
    return np.asarray(DOMAINS[domain](rng, tuple(shape)), dtype=np.float64)


# ---------------------------------------------------------------- the case table

@dataclass(frozen=True)
class Arg:
    name: str
    shape: tuple          # ints or dimension names
    domain: str = "real"
    role: str = "param"


@dataclass(frozen=True)
class Case:
    key: str
    expr: str
    ref: object
    args: tuple
    dims: dict = field(default_factory=dict)
    out: tuple | None = None      # the declared output shape when it uses dimension names
    sym: tuple = ()               # Params perturbed symmetrically (cholesky's argument)

    @property
    def id(self):
        shapes = ",".join(f"{a.name}={'x'.join(map(str, a.shape)) or '()'}" for a in self.args)
        return f"{self.key}|{self.expr.replace(' ', '')}|{shapes}"


def P(name, shape, domain="real"):
    return Arg(name, tuple(shape), domain, "param")


def D(name, shape, domain="real"):
    return Arg(name, tuple(shape), domain, "data")


CASES: list[Case] = []


def add(key, expr, ref, *args, dims=None, out=None, sym=()):
    CASES.append(Case(key, expr, ref, tuple(args), dict(dims or {}), out, tuple(sym)))


S, V, M, T3 = (), (3,), (2, 3), (2, 3, 2)

# ---- elementwise functions

_erf = np.vectorize(math.erf, otypes=[float])
UNARY = {"expm1": np.expm1, "sin": np.sin, "cos": np.cos, "tan": np.tan, "arctan": np.arctan,
         "erf": _erf}
for _name, _f in UNARY.items():
    _dom = REGISTRY[_name].domain[0]
    for _shape in (S, V, M, T3):
        add(_name, f"{_name}(x)", lambda x, f=_f: f(x), P("x", _shape, _dom))
    add(_name, f"{_name}(x * y)", lambda x, y, f=_f: f(x * y), P("x", (2, 1), _dom),
        P("y", V, _dom))

add("clip", "clip(x, -0.5, 0.7)", lambda x: np.clip(x, -0.5, 0.7), P("x", M))
add("clip", "clip(x, -0.5, 0.7)", lambda x: np.clip(x, -0.5, 0.7), P("x", S, "unit"))
add("clip", "clip(x, lo, hi)", lambda x, lo, hi: np.clip(x, lo, hi), P("x", M), P("lo", V),
    P("hi", S))
add("clip", "clip(x, lo, hi)", lambda x, lo, hi: np.clip(x, lo, hi), P("x", (2, 1)),
    D("lo", V), P("hi", (2, 3)))

# ---- reductions


def _norm(x, axis=None, keepdims=False):
    return np.sqrt(np.sum(x * x, axis=axis, keepdims=keepdims))


for _key, _f, _dom in (("prod", np.prod, "nonzero"), ("norm", _norm, "real"),
                       ("var", np.var, "real")):
    add(_key, f"{_key}(x)", lambda x, f=_f: f(x), P("x", V, _dom))
    add(_key, f"{_key}(x)", lambda x, f=_f: f(x), P("x", M, _dom))
    add(_key, f"{_key}(x, axis=0)", lambda x, f=_f: f(x, axis=0), P("x", M, _dom))
    add(_key, f"{_key}(x, axis=-1, keepdims=True)", lambda x, f=_f: f(x, axis=-1, keepdims=True),
        P("x", M, _dom))
    add(_key, f"{_key}(x, axis=(0, 2))", lambda x, f=_f: f(x, axis=(0, 2)), P("x", T3, _dom))
    add(_key, f"{_key}(x * y, axis=1)", lambda x, y, f=_f: f(x * y, axis=1),
        P("x", (2, 1), _dom), P("y", V, _dom))
add("norm", "norm(x, axis=(0, 1, 3), keepdims=True)",
    lambda x: _norm(x, axis=(0, 1, 3), keepdims=True), P("x", (2, 2, 3, 2)))
add("norm", "norm(x, axis=(1, 2))", lambda x: _norm(x, axis=(1, 2)), P("x", T3))

# ---- shape functions

add("concatenate", "concatenate([a, b])", lambda a, b: np.concatenate([a, b]),
    P("a", ("N", 3)), P("b", ("M", 3)), dims={"N": 2, "M": 3}, out=("N + M", 3))
add("concatenate", "concatenate([a, b, a], axis=1)",
    lambda a, b: np.concatenate([a, b, a], axis=1), P("a", (2, 2)), P("b", (2, "K")),
    dims={"K": 3}, out=(2, "K + 4"))
add("concatenate", "concatenate([a, exp(b)], axis=-1)",
    lambda a, b: np.concatenate([a, np.exp(b)], axis=-1), P("a", V), D("b", (2,)))
add("stack", "stack([a, b, a * b])", lambda a, b: np.stack([a, b, a * b]), P("a", M),
    P("b", M))
add("stack", "stack([a, b], axis=1)", lambda a, b: np.stack([a, b], axis=1), P("a", ("N",)),
    D("b", ("N",)), dims={"N": 4}, out=("N", 2))
add("stack", "stack([s, 2 * s, 1.0])", lambda s: np.stack([s, 2 * s, 1.0]), P("s", S))
add("expand_dims", "expand_dims(x, 1)", lambda x: np.expand_dims(x, 1), P("x", V))
add("squeeze", "squeeze(expand_dims(x, (0, 2)))", lambda x: x, P("x", M))
add("squeeze", "squeeze(x, axis=1) * 2", lambda x: np.squeeze(x, axis=1) * 2,
    P("x", (3, 1, 2)))
add("broadcast_to", "broadcast_to(x, (2, 3))", lambda x: np.broadcast_to(x, (2, 3)),
    P("x", V))
add("transpose", "transpose(x, (1, 0, 2))", lambda x: np.transpose(x, (1, 0, 2)),
    P("x", T3))
add("transpose", "transpose(x)", lambda x: x.T, P("x", M))

# ---- linear algebra

add("dot", "dot(a, b)", np.dot, P("a", V), P("b", V))
add("dot", "dot(a, b)", np.dot, P("a", M), P("b", V))
add("dot", "dot(a, b)", np.dot, P("a", (3, 2)), P("b", M))
add("dot", "dot(s, b)", np.dot, P("s", S), P("b", M))
add("outer", "outer(a, b)", np.outer, P("a", V), P("b", (2,)))
add("outer", "outer(a, b)", np.outer, P("a", M), D("b", (2,)))
add("trace", "trace(a)", np.trace, P("a", (3, 3)))
add("trace", "trace(a)", np.trace, P("a", M))
add("trace", "trace(a)", np.trace, P("a", (2, 2, 3)))
add("diag", "diag(v)", np.diag, P("v", V))
add("diag", "diag(a)", np.diag, P("a", (3, 3)))
add("diag", "diag(a)", np.diag, P("a", M))
add("diag", "diag(a)", np.diag, P("a", (3, 2)))
add("inv", "inv(a)", np.linalg.inv, P("a", (3, 3), "invertible"))
add("inv", "inv(a)", np.linalg.inv, P("a", (2, 2, 2), "invertible"))
add("det", "det(a)", np.linalg.det, P("a", (3, 3), "invertible"))
add("det", "det(a)", np.linalg.det, P("a", (2, 3, 3), "invertible"))
add("logdet", "logdet(a)", lambda a: np.linalg.slogdet(a)[1], P("a", (3, 3), "invertible"))
add("logdet", "logdet(-a)", lambda a: np.linalg.slogdet(-a)[1], P("a", (3, 3), "invertible"))
add("logdet", "logdet(a)", lambda a: np.linalg.slogdet(a)[1], P("a", (2, 2, 2), "invertible"))
add("solve", "solve(a, b)", np.linalg.solve, P("a", (3, 3), "invertible"), P("b", V))
add("solve", "solve(a, b)", np.linalg.solve, P("a", (3, 3), "invertible"), P("b", (3, 2)))
add("solve", "solve(a, b)", np.linalg.solve, P("a", (2, 3, 3), "invertible"),
    P("b", (2, 3, 2)))
add("solve", "solve(a, b)", np.linalg.solve, P("a", (2, 3, 3), "invertible"), P("b", V))
add("solve", "solve(a, b)", np.linalg.solve, D("a", (3, 3), "invertible"), P("b", (2, 3, 1)))
add("cholesky", "cholesky(a)", np.linalg.cholesky, P("a", (3, 3), "spd"), sym=("a",))
add("cholesky", "cholesky(s + x + x.T)", lambda s, x: np.linalg.cholesky(s + x + x.T),
    D("s", (3, 3), "spd"), P("x", (3, 3), "small"))
add("cholesky", "cholesky(a)", np.linalg.cholesky, P("a", (2, 3, 3), "spd"), sym=("a",))
add("eye", "x + 2 * eye(N)", lambda x: x + 2 * np.eye(len(x)), P("x", ("N", "N")),
    dims={"N": 3}, out=("N", "N"))
add("eye", "x @ eye(3) * x", lambda x: x @ np.eye(3) * x, P("x", M))

_EINSUM = [
    ("ij,jk->ik", [M, (3, 2)]),
    ("ij,kj->ki", [M, (4, 3)]),
    ("ij,ij->i", [M, M]),
    ("ij,jk,kl->il", [M, (3, 2), (2, 2)]),
    ("i,j->ij", [V, (2,)]),
    ("ijk->kj", [T3]),
    ("ij->", [M]),
    ("bij,bjk->bik", [T3, (2, 2, 3)]),
    ("ij,j,i->", [M, V, (2,)]),
    ("ij,jk->i", [M, (3, 2)]),
    ("ab,b", [M, V]),
    ("ii->", [(3, 3)]),
    ("ii->i", [(3, 3)]),
    ("ijj,j->ij", [(2, 3, 3), V]),
    ("ii,ij", [(3, 3), M[::-1]]),
]
for _spec, _shapes in _EINSUM:
    _names = "abc"[:len(_shapes)]
    add("einsum", f'einsum("{_spec}", {", ".join(_names)})',
        lambda *xs, s=_spec: np.einsum(s, *xs),
        *(P(n, sh) for n, sh in zip(_names, _shapes)))

add("ones", "concatenate([x, ones((N, 1))], axis=1)",
    lambda x: np.concatenate([x, np.ones((len(x), 1))], axis=1), P("x", ("N", 2)),
    dims={"N": 3}, out=("N", 3))
add("zeros", "x * x + zeros((2, 3))", lambda x: np.broadcast_to(x * x, (2, 3)), P("x", V))
add("ones", "sum(x, axis=0) * ones(3)", lambda x: np.sum(x, axis=0) * np.ones(3), P("x", M))


# ---------------------------------------------------------------- compiling and running

def _decl(arg):
    kind = "Param" if arg.role == "param" else "Data"
    return f"{kind}[{', '.join(map(str, arg.shape)) or '()'}]"


def _out_decl(shape):
    return f"Data[{', '.join(map(str, shape)) or '()'}]"


@dataclass
class Compiled:
    case: Case
    op: types.ModuleType
    cost: types.ModuleType
    inputs: dict
    params: list
    order: list
    expected: np.ndarray


def _module(text, **options):
    mod = types.ModuleType("generated")
    exec(compile(gradgen.compile_source(text, "case.grad", **options), "case", "exec"),
         mod.__dict__)
    return mod


_COMPILED: dict = {}


def compiled(case: Case) -> Compiled:
    if case.id in _COMPILED:
        return _COMPILED[case.id]
    rng = np.random.default_rng(abs(hash(case.id)) % 2**32)
    inputs = {}
    for a in case.args:
        shape = tuple(case.dims.get(d, d) for d in a.shape)
        inputs[a.name] = draw(rng, a.domain, shape)
    expected = np.asarray(case.ref(*(inputs[a.name] for a in case.args)), dtype=np.float64)
    out = case.out if case.out is not None else expected.shape
    sig = ", ".join(f"{a.name}: {_decl(a)}" for a in case.args)
    op = _module(f"def op({sig}):\n    return {case.expr}\n")
    cost = _module(f"def cost({sig}, w1: {_out_decl(out)}, w2: {_out_decl(out)}):\n"
                   f"    r = {case.expr}\n    return sum(w1 * r + w2 * r * r)\n", hessian=True)
    inputs["w1"] = rng.normal(size=expected.shape)
    inputs["w2"] = rng.normal(size=expected.shape)
    params = [a.name for a in case.args if a.role == "param"]
    c = Compiled(case, op, cost, inputs, params, [a.name for a in case.args], expected)
    _COMPILED[case.id] = c
    return c


def _tuple(result, k):
    return result if k > 1 else (result,)


def _directions(c: Compiled, rng):
    dirs = {}
    for p in c.params:
        v = rng.normal(size=np.shape(c.inputs[p]))
        if p in c.case.sym:
            v = (v + np.swapaxes(v, -1, -2)) / 2
        dirs[p] = v
    return dirs


def _fd(fn, args, dirs):
    """(fn(args + eps v) - fn(args - eps v)) / (2 eps), for one output or a tuple of them."""
    plus = fn(**{k: a + EPS * dirs[k] if k in dirs else a for k, a in args.items()})
    minus = fn(**{k: a - EPS * dirs[k] if k in dirs else a for k, a in args.items()})
    if isinstance(plus, tuple):
        return tuple((np.asarray(a) - np.asarray(b)) / (2 * EPS) for a, b in zip(plus, minus))
    return (np.asarray(plus) - np.asarray(minus)) / (2 * EPS)


def _close(actual, expected, what, rtol=RTOL):
    a, b = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    assert a.shape == b.shape, f"{what}: shape {a.shape}, expected {b.shape}"
    assert np.all(np.isfinite(a)), f"{what}: not finite: {a}"
    err = float(np.max(np.abs(a - b), initial=0.0)) / max(1.0, float(np.max(np.abs(b),
                                                                             initial=0.0)))
    assert err <= rtol, f"{what}: relative error {err:.2e}\nactual:\n{a}\nexpected:\n{b}"


def _op_args(c):
    return {n: c.inputs[n] for n in c.order}


def _call(fn, c, args, *extra):
    return fn(*(args[n] for n in c.order + [k for k in ("w1", "w2") if k in args]), *extra)


cases = pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)


@cases
def test_derivatives(case):
    c = compiled(case)
    rng = np.random.default_rng(1)
    op_args, cost_args = _op_args(c), dict(c.inputs)
    k = len(c.params)
    op = lambda **a: _call(c.op.op, c, a)
    cost = lambda **a: _call(c.cost.cost, c, a)
    grad = lambda **a: _call(c.cost.cost_grad, c, a)

    _close(op(**op_args), c.expected, "value", rtol=1e-10)
    _close(cost(**cost_args), np.sum(c.inputs["w1"] * c.expected
                                     + c.inputs["w2"] * c.expected ** 2), "cost", rtol=1e-10)
    grads = _tuple(grad(**cost_args), k)
    for p, g in zip(c.params, grads):
        assert g.shape == np.shape(c.inputs[p])
        if p in case.sym:   # a symmetric argument gets a symmetric gradient
            _close(g, np.swapaxes(g, -1, -2), f"symmetry of d/d{p}", rtol=1e-12)
    value, grads2 = c.cost.cost_value_and_grad(*(cost_args[n] for n in c.order),
                                               cost_args["w1"], cost_args["w2"])
    _close(value, cost(**cost_args), "value_and_grad value", rtol=1e-12)
    for a, b in zip(_tuple(grads2, k), grads):
        _close(a, b, "value_and_grad gradient", rtol=1e-12)
    u = rng.normal(size=c.expected.shape)
    cts = _tuple(_call(c.op.op_vjp, c, op_args, u), k)
    for _ in range(2):
        dirs = _directions(c, rng)
        vs = [dirs[p] for p in c.params]
        # gradient: <grad, v> against the directional difference of cost
        _close(sum(np.sum(g * v) for g, v in zip(grads, vs)), _fd(cost, cost_args, dirs),
               "grad . v")
        # JVP against differences of op; VJP through <vjp(u), v> = <u, J v>
        jv = _fd(op, op_args, dirs)
        value, t = _call(c.op.op_jvp, c, op_args, *vs)
        _close(value, c.expected, "jvp value", rtol=1e-12)
        _close(t, jv, "jvp")
        _close(sum(np.sum(ct * v) for ct, v in zip(cts, vs)), np.sum(u * jv), "vjp . v")
        # HVP against differences of the gradient; the Hessian against the HVP
        hv = _tuple(_call(c.cost.cost_hvp, c, cost_args, *vs), k)
        fd_hv = _tuple(_fd(grad, cost_args, dirs), k)
        for p, a, b in zip(c.params, hv, fd_hv):
            _close(a, b, f"hvp for {p}")
        blocks = _call(c.cost.cost_hessian, c, cost_args)
        rows = blocks if k > 1 else ((blocks,),)
        for i, p in enumerate(c.params):
            h_v = sum(np.tensordot(rows[i][j], v, axes=np.ndim(v)) for j, v in enumerate(vs))
            _close(h_v, hv[i], f"hessian @ v for {p}", rtol=1e-9)


@cases
def test_float32_stays_float32(case):
    c = compiled(case)
    f32 = {n: np.asarray(a, dtype=np.float32) for n, a in c.inputs.items()}
    k = len(c.params)
    ones = [np.ones(np.shape(c.inputs[p]), dtype=np.float32) for p in c.params]
    u = np.ones(c.expected.shape, dtype=np.float32)
    op_args = {n: f32[n] for n in c.order}
    results = {
        "op": _call(c.op.op, c, op_args),
        "op_vjp": _tuple(_call(c.op.op_vjp, c, op_args, u), k),
        "op_jvp": _call(c.op.op_jvp, c, op_args, *ones),
        "cost_grad": _tuple(_call(c.cost.cost_grad, c, f32), k),
        "cost_hvp": _tuple(_call(c.cost.cost_hvp, c, f32, *ones), k),
    }
    for fn, r in results.items():
        for x in (r if isinstance(r, tuple) else (r,)):
            assert np.asarray(x).dtype == np.float32, f"{fn} returned {np.asarray(x).dtype}"
    _close(results["op"], c.expected, "float32 value", rtol=1e-4)


# ---------------------------------------------------------------- erf

@pytest.fixture(scope="module")
def erf_helper():
    mod = _module("def f(x: Param[N]):\n    return erf(x)\n")
    return mod._erf


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


# ---------------------------------------------------------------- conventions at kinks

def test_clip_at_the_bounds_splits_like_maximum_and_minimum():
    """Strictly inside: 1 to x; outside: all to the bound; at a bound: half and half."""
    mod = _module("def f(x: Param[5], lo: Param[()], hi: Param[()]):\n"
                  "    return sum(clip(x, lo, hi))\n")
    dx, dlo, dhi = mod.f_grad(np.array([-2.0, -1.0, 0.0, 1.0, 2.0]), np.float64(-1.0),
                              np.float64(1.0))
    assert np.array_equal(dx, [0.0, 0.5, 1.0, 0.5, 0.0])
    assert dlo == 1.5 and dhi == 1.5


def test_norm_gradient_is_zero_at_zero():
    mod = _module("def f(x: Param[2, 3]):\n    return sum(norm(x, axis=1)) + norm(x)\n")
    x = np.array([[0.0, 0.0, 0.0], [3.0, 0.0, 4.0]])
    g = mod.f_grad(x)
    assert np.all(np.isfinite(g))
    assert np.allclose(g, [[0, 0, 0], [0.6 + 0.6, 0, 0.8 + 0.8]])
    assert np.array_equal(mod.f_grad(np.zeros((2, 3))), np.zeros((2, 3)))
    _, t = mod.f_jvp(np.zeros((2, 3)), np.ones((2, 3)))
    assert t == 0


def test_prod_gradient_for_nonzero_inputs():
    mod = _module("def f(x: Param[4]):\n    return prod(x)\n")
    x = np.array([2.0, -3.0, 0.5, 4.0])
    assert np.allclose(mod.f_grad(x), [-6.0, 4.0, -24.0, -3.0])


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
    assert "np.eye(N, dtype=A.dtype)" in src
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
    mod = _module(text, hessian=True)
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
    steps = EPS * np.eye(2)
    _close(grad, [(nll(p + s) - nll(p - s)) / (2 * EPS) for s in steps], "gradient")
    hess = np.array(mod.nll_hessian(X, y, *p), dtype=float)
    fd = [(np.array(mod.nll_grad(X, y, *(p + s))) - np.array(mod.nll_grad(X, y, *(p - s))))
          / (2 * EPS) for s in steps]
    _close(hess, np.array(fd).T, "hessian")
    f32 = (X.astype(np.float32), y.astype(np.float32), *p.astype(np.float32))
    assert all(np.asarray(g).dtype == np.float32 for g in mod.nll_grad(*f32))
    assert mod.nll(*f32).dtype == np.float32


def test_constant_arrays_of_dimension_expressions():
    mod = _module("def f(x: Param[D]):\n"
                  "    return sum(concatenate([x, x]) * ones(2 * D)) + trace(eye(2 * D)) * x[0]"
                  " + sum(zeros((D, 2)))\n")
    x = np.arange(1.0, 4.0)
    assert mod.f(x) == 2 * x.sum() + 6 * x[0]
    assert np.array_equal(mod.f_grad(x), [8.0, 2.0, 2.0])
    assert mod.f_grad(x.astype(np.float32)).dtype == np.float32
