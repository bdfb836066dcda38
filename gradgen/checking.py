"""`gradgen check`: derivatives of a compiled module against finite differences.

Compiles in memory, draws random float64 inputs of the declared shapes and compares every
derivative function with two-sided finite differences of the forward function; forward
mode is compared with reverse mode through <u, J v> = <J^T u, v>.

Where the function or a derivative is not finite at the inputs drawn (`log(b - A @ x)`
outside its domain), comparing there would only report NaN mismatches: the inputs are
drawn again, a bounded number of times (`DRAWS`, each kind of draw more conservative than
the one before), and the check says what it did.
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

# The kinds of draws tried, in order, until the function and its derivatives are finite:
# (what the note calls it, whether Data are positive, whether Params are positive, the
# scale of the Params). Then the same kinds again with new random values, up to DRAWS.
_DRAW_KINDS = (
    ("signs at random", False, False, 1.0),
    ("every argument positive", True, True, 1.0),
    ("Data positive, Params scaled by 0.1", True, False, 0.1),
    ("Data positive, Params positive and scaled by 0.1", True, True, 0.1),
    ("Data positive, Params positive and scaled by 0.01", True, True, 0.01),
)
DRAWS = 10


class TooLarge(ValueError):
    """The dimension sizes asked for would need more memory than a check should take."""


@dataclass
class Result:
    function: str
    check: str
    error: float
    label: str | None = None     # what the table says instead of ok / MISMATCH

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


def draw_sizes(entry: EntryPoint, dims: dict[str, int], rng) -> dict[str, int]:
    """The size of every dimension of `entry` (name -> int): from `dims`, else drawn from 2
    to 4, such that every declared size is a positive integer and the requirements hold."""
    return {s.name: v for s, v in _sizes(entry, dims, rng).items()}


def draw_inputs(entry: EntryPoint, dims: dict[str, int], rng, kind: int = 0,
                ) -> dict[str, np.ndarray]:
    """Random float64 arguments of the declared shapes (dimension sizes from `dims`, the
    others drawn), of magnitude 0.5 to 1.5 with the signs and scale of `_DRAW_KINDS[kind]`."""
    sizes = _sizes(entry, dims, rng)
    shapes = {a.name: tuple(int(d.subs(sizes)) for d in a.shape) for a in entry.args}
    total = sum(math.prod(s) for s in shapes.values())
    if total > MAX_DRAWN:
        raise TooLarge(f"'{entry.name}': the arguments would have {total:,} elements in all "
                       f"(at most {MAX_DRAWN:,}); give smaller --dim sizes")
    _, data_positive, params_positive, scale = _DRAW_KINDS[kind]
    out = {}
    # Index arguments: integers below every drawn size, so in range whatever they index
    low = min((int(v) for v in sizes.values()), default=2)
    for a in entry.args:
        shape = shapes[a.name]
        if a.node.dtype == INT:
            out[a.name] = rng.integers(0, low, size=shape)
            continue
        x = rng.uniform(0.5, 1.5, size=shape) * rng.choice([-1.0, 1.0], size=shape)
        if data_positive if a.role == "data" else params_positive:
            x = np.abs(x)
        if a.role == "param":
            x = x * scale
        out[a.name] = np.asarray(x, dtype=np.float64)
    return out


def _finite(value) -> bool:
    """Whether every number in a result (an array or nested tuples of them) is finite."""
    if isinstance(value, tuple):
        return all(_finite(v) for v in value)
    return bool(np.all(np.isfinite(value)))


def _sizes(entry: EntryPoint, dims: dict[str, int], rng, tries: int = 200) -> dict:
    """Sizes for the dimensions (symbol -> int; `dims` gives some by name, the others are
    drawn from 2..4) for which every declared size is a positive integer and the entry
    point's requirements hold (`C // H` divides exactly, slice bounds within their axis);
    drawn again until they do (TooLarge naming them when `tries` draws do not)."""
    symbols = sorted({s for a in entry.args for d in a.shape for s in d.free_symbols},
                     key=lambda s: s.name)
    for _ in range(tries):
        sizes = {s: dims.get(s.name, int(rng.integers(2, 5))) for s in symbols}
        values = [d.subs(sizes) for a in entry.args for d in a.shape]
        if all(v.is_integer and v > 0 for v in values) and all(
                r.holds(sizes) for r in entry.requirements):
            return sizes
        if all(s.name in dims for s in symbols):
            break
    raise TooLarge(f"'{entry.name}': no sizes of the dimensions satisfy its declarations "
                   "and requirements (exact divisions, slice bounds); give them with --dim")


class _Entry:
    """One entry point of a compiled module with drawn arguments: calls and finite
    differences, shared by the checks of its derivative functions."""

    def __init__(self, mod, entry: EntryPoint, dims: dict[str, int], seed: int):
        self.rng = rng = np.random.default_rng(seed)
        self.mod, self.entry = mod, entry
        self.names = [a.name for a in entry.args]
        self.params = [a.name for a in entry.params]
        self.f = getattr(mod, entry.name)
        self.sizes = draw_sizes(entry, dims, rng)
        self.args = draw_inputs(entry, self.sizes, rng)
        self.finite, self.note = self._draw_finite()
        n_params = sum(np.size(self.args[p]) for p in self.params)
        if hasattr(mod, f"{entry.name}_hessian") and n_params ** 2 > MAX_DRAWN:
            raise TooLarge(f"'{entry.name}': the Hessian would have {n_params ** 2:,} "
                           f"elements (at most {MAX_DRAWN:,}); give smaller --dim sizes")
        with np.errstate(all="ignore"):    # (not finite anywhere: not checked)
            self.value = np.asarray(self.call(self.f))
        self.directions = [rng.normal(size=np.shape(self.args[p])) for p in self.params]
        self.u = rng.normal(size=self.value.shape)

    def _not_finite(self) -> str | None:
        """What is not finite at the current arguments (the value or a derivative), or
        None when everything the checks call is finite."""
        with np.errstate(all="ignore"):
            value = self.call(self.f)
            if not _finite(value):
                return "the value"
            params = [self.args[p] for p in self.params]
            probes = [("_grad", ()), ("_vjp", (np.ones_like(value),)),
                      ("_jvp", tuple(np.ones_like(p) for p in params)),
                      ("_hvp", tuple(np.ones_like(p) for p in params))]
            for suffix, extra in probes:
                fn = self.function(suffix)
                if fn is not None and not _finite(self.call(fn, None, *extra)):
                    return f"{self.entry.name}{suffix}"
        return None

    def _draw_finite(self) -> tuple[bool, str | None]:
        """Draw the arguments again until the value and the derivatives are finite (at
        most DRAWS draws): (whether they are, a note saying what was done, if anything)."""
        name = self.entry.name
        what = self._not_finite()
        if what is None:
            return True, None
        first = what
        for k in range(1, DRAWS):
            kind = k % len(_DRAW_KINDS)
            self.args = draw_inputs(self.entry, self.sizes, self.rng, kind)
            what = self._not_finite()
            if what is None:
                return True, (f"'{name}': {first} is not finite at the first inputs drawn; "
                              f"drew again {k} time{'s' if k > 1 else ''}: finite with "
                              f"{_DRAW_KINDS[kind][0]}, checked there")
        return False, (f"'{name}': {first} is not finite at any of {DRAWS} draws of the "
                       "inputs (random signs, positive, Params scaled down); its derivatives "
                       "are not checked. Give other sizes (--dim) or another --seed, or "
                       "check the function's domain")

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


def check_entry(mod, entry: EntryPoint, dims: dict[str, int], seed: int,
                notes: list[str] | None = None) -> list[Result]:
    """Every derivative of one entry point against finite differences, at inputs where
    the function and its derivatives are finite (drawn again when they are not: what was
    done is appended to `notes`)."""
    e = _Entry(mod, entry, dims, seed)
    if e.note is not None and notes is not None:
        notes.append(e.note)
    if not e.finite:
        return [Result(entry.name, "finite at some drawn inputs", math.nan, "NOT FINITE")]
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
    rows += [(r.function, r.check, f"{r.error:.2e}",
              r.label or ("ok" if r.ok else "MISMATCH")) for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
