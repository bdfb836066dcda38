"""`gradgen check`: derivatives of a compiled module against finite differences.

Compiles in memory, draws random float64 inputs of the declared shapes and compares every
derivative function with two-sided finite differences of the forward function; forward
mode is compared with reverse mode through <u, J v> = <J^T u, v>.
"""

from __future__ import annotations

import math
import types
from dataclasses import dataclass

import numpy as np

from .codegen.emit import render_module
from .compiler import Options, compile_module
from .frontend import EntryPoint
from .ops.dtypes import INT

MAX_DRAWN = 10_000_000   # elements of all arguments of one entry point (80 MB of float64)

EPS = 1e-6
TOL = 1e-5
MAX_ELEMENTS = 60


class TooLarge(ValueError):
    """The dimension sizes asked for would need more memory than a check should take."""


@dataclass
class Result:
    function: str
    check: str
    error: float

    @property
    def ok(self) -> bool:
        return bool(np.isfinite(self.error)) and self.error <= TOL


def rel_error(a, b) -> float:
    """max |a - b| / max(1, max |b|) over all elements."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    scale = max(1.0, float(np.max(np.abs(b))) if b.size else 1.0)
    return float(np.max(np.abs(a - b))) / scale if a.size else 0.0


def load_source(text: str, filename: str, options: Options = Options()):
    """Compile to a module object without writing a file; also return the entry points.
    The compilation is the one of `gradgen compile` (`compiler.compile_module`)."""
    module = compile_module(text, filename, options)
    source = render_module(module)
    mod = types.ModuleType("gradgen_check")
    exec(compile(source, filename + " (generated)", "exec"), mod.__dict__)  # our own output
    return mod, module.entries


def draw_inputs(entry: EntryPoint, dims: dict[str, int], rng) -> dict[str, np.ndarray]:
    """Random float64 arguments of the declared shapes (dimension sizes from `dims`)."""
    sizes = {}
    for a in entry.args:
        for d in a.shape:
            for s in d.free_symbols:
                sizes.setdefault(s, dims.get(s.name, int(rng.integers(2, 5))))
    shapes = {a.name: tuple(int(d.subs(sizes)) for d in a.shape)
              for a in entry.args}
    total = sum(math.prod(s) for s in shapes.values())
    if total > MAX_DRAWN:
        raise TooLarge(f"'{entry.name}': the arguments would have {total:,} elements in all "
                       f"(at most {MAX_DRAWN:,}); give smaller --dim sizes")
    out = {}
    # Index arguments: integers below every drawn size, so in range whatever they index
    low = min((int(v) for v in sizes.values()), default=2)
    for a in entry.args:
        shape = shapes[a.name]
        if a.node.dtype == INT:
            out[a.name] = rng.integers(0, low, size=shape)
            continue
        x = rng.uniform(0.5, 1.5, size=shape) * rng.choice([-1.0, 1.0], size=shape)
        out[a.name] = np.asarray(x, dtype=np.float64)
    return out


class _Entry:
    """One entry point of a compiled module with drawn arguments: calls and finite
    differences, shared by the checks of its derivative functions."""

    def __init__(self, mod, entry: EntryPoint, dims: dict[str, int], seed: int):
        self.rng = rng = np.random.default_rng(seed)
        self.mod, self.entry = mod, entry
        self.args = draw_inputs(entry, dims, rng)
        if not np.all(np.isfinite(getattr(mod, entry.name)(**self.args))):
            # Functions like log(x) need positive inputs: try again on the positive side.
            self.args = {k: np.abs(v) for k, v in self.args.items()}
        self.names = [a.name for a in entry.args]
        self.params = [a.name for a in entry.params]
        self.f = getattr(mod, entry.name)
        n_params = sum(np.size(self.args[p]) for p in self.params)
        if hasattr(mod, f"{entry.name}_hessian") and n_params ** 2 > MAX_DRAWN:
            raise TooLarge(f"'{entry.name}': the Hessian would have {n_params ** 2:,} "
                           f"elements (at most {MAX_DRAWN:,}); give smaller --dim sizes")
        self.value = np.asarray(self.call(self.f))
        self.directions = [rng.normal(size=np.shape(self.args[p])) for p in self.params]
        self.u = rng.normal(size=self.value.shape)

    def function(self, suffix: str):
        return getattr(self.mod, f"{self.entry.name}{suffix}", None)

    def call(self, fn, overrides=None, *extra):
        vals = dict(self.args, **(overrides or {}))
        return fn(*(vals[n] for n in self.names), *extra)

    def as_tuple(self, r) -> tuple:
        return r if len(self.params) > 1 else (r,)

    def along(self, sign: float) -> dict:
        """The Params moved by `sign * EPS` along the directions."""
        return {p: self.args[p] + sign * EPS * v for p, v in zip(self.params, self.directions)}

    def fd(self, fn, p_index):
        """Two-sided finite differences of `fn` w.r.t. every (sampled) element of a Param."""
        p = self.params[p_index]
        base = self.args[p]
        flat = np.arange(base.size)
        if flat.size > MAX_ELEMENTS:
            flat = self.rng.choice(flat, MAX_ELEMENTS, replace=False)
        cols = []
        for i in flat:
            step = np.zeros(base.size)
            step[i] = EPS
            step = step.reshape(base.shape)
            cols.append((np.asarray(self.call(fn, {p: base + step}))
                         - np.asarray(self.call(fn, {p: base - step}))) / (2 * EPS))
        return flat, cols


def check_entry(mod, entry: EntryPoint, dims: dict[str, int], seed: int) -> list[Result]:
    """Every derivative of one entry point against finite differences."""
    e = _Entry(mod, entry, dims, seed)
    return _check_grad(e) + _check_vjp_jvp(e) + _check_second_order(e)


def _check_grad(e: _Entry) -> list[Result]:
    name, grad_fn = e.entry.name, e.function("_grad")
    if grad_fn is None:
        return []
    grads = e.as_tuple(e.call(grad_fn))
    results = []
    for k, p in enumerate(e.params):
        flat, cols = e.fd(e.f, k)
        results.append(Result(f"{name}_grad", f"d/d{p} vs finite differences",
                              rel_error(np.ravel(grads[k])[flat], np.array(cols))))
    v2, g2 = e.call(e.function("_value_and_grad"))
    results.append(Result(f"{name}_value_and_grad", "equals f and f_grad",
                          max(rel_error(v2, e.value), *(rel_error(a, b) for a, b in
                                                        zip(e.as_tuple(g2), grads)))))
    return results


def _check_vjp_jvp(e: _Entry) -> list[Result]:
    name, results = e.entry.name, []
    vjp_fn, jvp_fn = e.function("_vjp"), e.function("_jvp")
    if vjp_fn is not None:
        cts = e.as_tuple(e.call(vjp_fn, None, e.u))
        for k, p in enumerate(e.params):
            flat, cols = e.fd(e.f, k)
            fd_ct = np.array([np.sum(e.u * c) for c in cols])
            results.append(Result(f"{name}_vjp", f"d/d{p} vs finite differences",
                                  rel_error(np.ravel(cts[k])[flat], fd_ct)))
    if jvp_fn is not None:
        _, t = e.call(jvp_fn, None, *e.directions)
        fd_t = (np.asarray(e.call(e.f, e.along(1))) - np.asarray(e.call(e.f, e.along(-1)))) \
            / (2 * EPS)
        results.append(Result(f"{name}_jvp", "vs finite differences", rel_error(t, fd_t)))
        if vjp_fn is not None:
            lhs = float(np.sum(e.u * t))
            rhs = float(sum(np.sum(c * v) for c, v in zip(cts, e.directions)))
            results.append(Result(f"{name}_jvp", "<u, J v> = <J^T u, v>",
                                  rel_error(lhs, rhs)))
    return results


def _check_second_order(e: _Entry) -> list[Result]:
    name, results = e.entry.name, []
    grad_fn, hvp_fn, hessian_fn = (e.function(s) for s in ("_grad", "_hvp", "_hessian"))
    if hvp_fn is not None and grad_fn is not None:
        hv = e.as_tuple(e.call(hvp_fn, None, *e.directions))
        gp = e.as_tuple(e.call(grad_fn, e.along(1)))
        gm = e.as_tuple(e.call(grad_fn, e.along(-1)))
        results.append(Result(f"{name}_hvp", "vs finite differences of the gradient",
                              max(rel_error(h, (a - b) / (2 * EPS))
                                  for h, a, b in zip(hv, gp, gm))))
    if hessian_fn is not None and grad_fn is not None:
        H = e.call(hessian_fn)
        blocks = H if len(e.params) > 1 else ((H,),)
        for i, pi in enumerate(e.params):
            worst = 0.0
            for j, pj in enumerate(e.params):
                block = np.asarray(blocks[i][j]).reshape(np.size(e.args[pi]),
                                                         np.size(e.args[pj]))
                flat, cols = e.fd(lambda *a, i=i: e.as_tuple(grad_fn(*a))[i], j)
                fd_block = np.array([np.ravel(c) for c in cols]).T
                worst = max(worst, rel_error(block[:, flat], fd_block))
            results.append(Result(f"{name}_hessian",
                                  f"d2/d{pi} d(all) vs finite differences of the gradient",
                                  worst))
    return results


def load_with_hessian(text: str, filename: str):
    """`load_source` with f_hessian when every entry point allows one; also returns a note
    saying why the Hessian is not checked when it is not."""
    from .errors import CompileError

    try:
        mod, entries = load_source(text, filename, Options(hessian=True))
        return mod, entries, None
    except CompileError as e:
        mod, entries = load_source(text, filename)   # a mistake in the source raises here
        return mod, entries, f"Hessian not checked: {e.diagnostics[0].message}"


def format_table(results: list[Result]) -> str:
    """A fixed-width table of the results."""
    rows = [("function", "check", "rel. error", "")]
    rows += [(r.function, r.check, f"{r.error:.2e}", "ok" if r.ok else "MISMATCH")
             for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
