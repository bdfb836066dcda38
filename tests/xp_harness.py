"""Running a module of the array-API target on several array libraries, against the
module of the NumPy target (the reference): one compiled pair checked many ways.

`libraries()` names the array libraries importable here, each with a conversion from a
NumPy array and back; `run_all(src_np, src_xp, entries, lib)` calls every function of
the array-API module on `lib`'s arrays and compares each result with the NumPy target's
on the same float64 inputs, and checks that the result is an array of `lib` (no silent
conversion to NumPy) of the inputs' dtype. Used by tests/test_array_api.py and by the
report table of the examples (`python tests/xp_harness.py examples/*/*.grad`).
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# The functions of an entry point `f`, by suffix, and what extra arguments each takes.
SUFFIXES = ("", "_grad", "_value_and_grad", "_vjp", "_jvp", "_hvp", "_hessian", "_jacobian")


@dataclass
class Library:
    name: str
    array: Callable      # NumPy array -> the library's array
    back: Callable       # the library's array -> NumPy array
    is_array: Callable   # whether a result is an array of the library
    call: Callable = staticmethod(lambda f, args: f(*args))   # (e.g. under jax.jit)


def _torch() -> Library:
    import torch

    return Library("torch", lambda a: torch.asarray(a),
                   lambda t: t.detach().cpu().numpy(), lambda t: isinstance(t, torch.Tensor))


def _jax(jit: bool) -> Library:
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    def call(f, args):
        return jax.jit(f)(*args) if jit else f(*args)

    return Library("jax.jit" if jit else "jax", lambda a: jnp.asarray(a), np.asarray,
                   lambda t: isinstance(t, jax.Array), call)


def _dask() -> Library:
    import dask.array as da

    def to(a):   # data in row blocks (two chunks along the first axis), the rest whole;
        # square matrices whole (Dask's linear algebra takes a matrix in one chunk)
        if a.ndim >= 2 and a.shape[-1] == a.shape[-2]:
            return da.from_array(a, chunks=a.shape)
        return da.from_array(a, chunks=tuple(max(1, (n + 1) // 2) if i == 0 else n
                                             for i, n in enumerate(a.shape)))

    def back(t):
        return np.asarray(t.compute() if hasattr(t, "compute") else t)

    return Library("dask", to, back, lambda t: isinstance(t, da.Array))


def _strict() -> Library:
    import array_api_strict as xs

    return Library("array_api_strict", lambda a: xs.asarray(a), lambda t: np.asarray(t),
                   lambda t: isinstance(t, xs._array_object.Array))


def _numpy() -> Library:
    return Library("numpy", np.asarray, np.asarray, lambda t: isinstance(t, (np.ndarray, np.generic)))


_MAKERS = {"numpy": (None, _numpy), "array_api_strict": ("array_api_strict", _strict),
           "torch": ("torch", _torch), "jax": ("jax", lambda: _jax(False)),
           "jax.jit": ("jax", lambda: _jax(True)), "dask": ("dask.array", _dask)}
NAMES = tuple(_MAKERS)


def library(name: str) -> Library | None:
    """The library `name` (of NAMES), or None when it is not installed."""
    module, make = _MAKERS[name]
    if module is not None:
        try:
            importlib.import_module(module)
        except Exception:   # not installed (or a broken install: torch's missing CUDA)
            return None
    return make()


def exec_module(source: str, name: str) -> types.ModuleType:
    mod = types.ModuleType(name)
    exec(compile(source, f"<{name}>", "exec"), mod.__dict__)
    return mod


def _flatten(value) -> list:
    if isinstance(value, (tuple, list)):
        return [x for v in value for x in _flatten(v)]
    return [value]


def call_args(ref: types.ModuleType, entry, inputs: dict, suffix: str, rng) -> list | None:
    """The NumPy arguments of `entry.name + suffix` (the entry point's, then a cotangent
    of the output's shape, tangents or directions of the Params' shapes), or None when the
    module has no such function."""
    fn = getattr(ref, entry.name + suffix, None)
    if fn is None:
        return None
    args = [inputs[a.name] for a in entry.args]
    if suffix == "_vjp":
        out = np.asarray(getattr(ref, entry.name)(*args))
        args.append(rng.normal(size=out.shape))
    elif suffix in ("_jvp", "_hvp"):
        args += [rng.normal(size=np.shape(inputs[p.name])) for p in entry.params]
    return args


def run_function(ref, mod, lib: Library, name: str, args: list, *, tol: float = 1e-10,
                 ) -> str | None:
    """Call `name` of the array-API module `mod` on `lib`'s arrays and compare it with the
    NumPy target's `ref`; None when it agrees, else what went wrong."""
    expected = _flatten(getattr(ref, name)(*[np.copy(a) for a in args]))
    converted = [lib.array(np.asarray(a)) for a in args]
    try:
        got = _flatten(lib.call(getattr(mod, name), converted))
    except Exception as e:   # what failed, for the report
        return f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"
    if len(got) != len(expected):
        return f"{len(got)} results, expected {len(expected)}"
    for i, (g, e) in enumerate(zip(got, expected)):
        if not lib.is_array(g):
            return f"result {i} is a {type(g).__name__}, not an array of {lib.name}"
        g = lib.back(g)
        if g.dtype != np.float64:
            return f"result {i} has dtype {g.dtype}, expected float64"
        e = np.asarray(e)
        if g.shape != e.shape:
            return f"result {i} has shape {g.shape}, expected {e.shape}"
        scale = max(1.0, float(np.max(np.abs(e)))) if e.size else 1.0
        err = float(np.max(np.abs(g - e))) / scale if e.size else 0.0
        if not err <= tol:
            return f"result {i} differs by {err:.3g} (relative)"
    return None


def run_all(ref, mod, entries, lib: Library, inputs: dict, seed: int = 0,
            ) -> dict[str, str | None]:
    """Every function of every entry point: name -> None (agrees) or the failure."""
    out = {}
    for entry in entries:
        rng = np.random.default_rng(seed)
        for suffix in SUFFIXES:
            args = call_args(ref, entry, inputs[entry.name], suffix, rng)
            if args is not None:
                out[entry.name + suffix] = run_function(ref, mod, lib, entry.name + suffix, args)
    return out


def compile_pair(text: str, filename: str, **options):
    """The NumPy-target and array-API-target modules of a source, and its entry points."""
    from gradgen.checking import load_source
    from gradgen.compiler import make_options

    ref, entries = load_source(text, filename, make_options(**options))
    mod, _ = load_source(text, filename, make_options(**options, target="array-api"))
    return ref, mod, entries


def draw(entries, seed: int = 0, dims: dict | None = None) -> dict:
    """Inputs of every entry point (gradgen check's draws)."""
    from gradgen.checking import draw_inputs

    rng = np.random.default_rng(seed)
    return {e.name: draw_inputs(e, dims or {}, rng) for e in entries}


def draw_finite(ref, entries, dims: dict | None = None, tries: int = 20) -> dict:
    """Inputs of every entry point (as `draw`) at the first seed where the NumPy target's
    value of each is finite; from the second half of the tries on, the float arguments are
    made positive (0.5 + |x| / 2) and the scalars small (0.1), as a model with log(u) of
    an ODE's state (RK4 steps of size dt) needs."""
    import warnings

    for seed in range(tries):
        inputs = draw(entries, seed, dims)
        if seed >= tries // 2:
            inputs = {e: {k: (v if np.asarray(v).dtype.kind != "f" else 0.1 if np.ndim(v) == 0
                              else 0.5 + np.abs(v) / 2) for k, v in args.items()}
                      for e, args in inputs.items()}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if all(np.all(np.isfinite(getattr(ref, e.name)(
                    *[inputs[e.name][a.name] for a in e.args]))) for e in entries):
                return inputs
    raise ValueError(f"no finite value in {tries} draws")


def _main(paths: list[str]) -> None:   # the report table of the examples
    import re
    from pathlib import Path

    libs = [(n, library(n)) for n in NAMES]
    libs = [(n, lib) for n, lib in libs if lib is not None]
    print("| module | " + " | ".join(n for n, _ in libs) + " |")
    print("|---|" + "---|" * len(libs))
    failures = []
    for path in paths:
        text = Path(path).read_text()
        golden = Path(path).with_name(Path(path).stem + "_grad.py")
        hessian = golden.exists() and "--hessian" in golden.read_text().split("\n", 6)[4]
        opts = {"hessian": True} if hessian else {}
        m = re.search(r"--hint (\S+)", golden.read_text()) if golden.exists() else None
        if m:
            opts["hints"] = dict([m.group(1).split("=")]) | {}
            opts["hints"] = {k: int(v) for k, v in opts["hints"].items()}
        try:
            ref, mod, entries = compile_pair(text, Path(path).name, **opts)
        except Exception as e:   # reported in the table
            print(f"| {Path(path).name} | compile: {type(e).__name__}: {e} |")
            continue
        inputs = draw_finite(ref, entries)
        row = []
        for name, lib in libs:
            res = run_all(ref, mod, entries, lib, inputs)
            ok = sum(v is None for v in res.values())
            row.append(f"{ok}/{len(res)}")
            failures += [f"{Path(path).name} {name} {k}: {v}" for k, v in res.items() if v]
        print(f"| {Path(path).name} | " + " | ".join(row) + " |")
    for f in failures:
        print(f)


if __name__ == "__main__":
    _main(sys.argv[1:])
