"""Calling every function of an emitted module on random inputs (shared by the tests of
names and of result aliasing). Entry points and their arguments are read from the source
with `ast`, not with gradgen."""

from __future__ import annotations

import ast
import importlib.util
import inspect
import types
from pathlib import Path

import numpy as np

SUFFIXES = ("", "_grad", "_value_and_grad", "_vjp", "_jvp", "_hvp", "_hessian")


def load(text: str, name: str = "emitted") -> types.ModuleType:
    mod = types.ModuleType(name)
    exec(compile(text, name, "exec"), mod.__dict__)  # noqa: S102 (the module under test)
    return mod


def example_module(name: str, prefix: str = "example") -> types.ModuleType:
    """The checked-in emitted module of examples/NAME (examples/NAME/NAME_grad.py),
    imported under a name of its own."""
    path = Path(__file__).resolve().parents[1] / "examples" / name / f"{name}_grad.py"
    spec = importlib.util.spec_from_file_location(f"{prefix}_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def entries(source: str) -> list[tuple[str, list[tuple[str, str, list[ast.expr]]]]]:
    """(entry name, [(argument, "param"/"data"/"index", shape expressions)]) in source
    order."""
    out = []
    for fn in ast.parse(source).body:
        if not (isinstance(fn, ast.FunctionDef) and fn.args.args
                and all(a.annotation is not None for a in fn.args.args)):
            continue
        args = []
        for a in fn.args.args:
            ann = a.annotation
            if isinstance(ann, ast.Name):   # float, or int (an Index scalar)
                args.append((a.arg, "index" if ann.id == "int" else "data", []))
                continue
            items = ann.slice.elts if isinstance(ann.slice, ast.Tuple) else [ann.slice]
            role = {"Param": "param", "Index": "index"}.get(ann.value.id, "data")
            args.append((a.arg, role, items))
        out.append((fn.name, args))
    return out


def _size(expr: ast.expr, sizes: dict, rng) -> int:
    """The value of a dimension expression (names get random sizes 2..4)."""
    for n in ast.walk(expr):
        if isinstance(n, ast.Name) and n.id not in sizes:
            sizes[n.id] = int(rng.integers(2, 5))
    return int(eval(compile(ast.Expression(expr), "<dim>", "eval"), {"__builtins__": {}},
                    dict(sizes)))


def inputs(source: str, rng, dtype=np.float64) -> dict[str, list]:
    """Entry point -> positional arguments, drawn in (0.5, 1.5) times a random sign."""
    out = {}
    sizes: dict = {}
    for name, args in entries(source):
        vals = []
        for _, role, items in args:
            shape = tuple(_size(e, sizes, rng) for e in items)
            if role == "index":   # integers in range of any axis (sizes are at least 2)
                vals.append(rng.integers(0, 2, size=shape))
                continue
            x = rng.uniform(0.5, 1.5, size=shape) * rng.choice([-1.0, 1.0], size=shape)
            vals.append(np.asarray(x, dtype=dtype))
        out[name] = vals
    return out


def calls(mod: types.ModuleType, source: str, args: dict, rng):
    """For each emitted function of each entry point: (function name, its positional
    arguments); extra inputs (g, tangents, directions) are drawn here."""
    out = []
    for (name, decl), (_, vals) in zip(entries(source), args.items()):
        params = [v for (_, role, _), v in zip(decl, vals) if role == "param"]
        value = getattr(mod, name)(*vals)
        for suffix in SUFFIXES:
            fn = getattr(mod, name + suffix, None)
            if fn is None:
                continue
            n_extra = sum(p.kind is p.POSITIONAL_OR_KEYWORD   # (not `workspace=`)
                          for p in inspect.signature(fn).parameters.values()) - len(vals)
            if suffix == "_vjp":
                extra = [rng.normal(size=np.shape(value)).astype(np.result_type(value))]
            elif suffix in ("_jvp", "_hvp"):
                extra = [rng.normal(size=p.shape).astype(p.dtype) for p in params]
            else:
                extra = []
            assert len(extra) == n_extra, (name + suffix, n_extra)
            out.append((name + suffix, [*vals, *extra]))
    return out


def leaves(result) -> list:
    """The arrays and numbers of a (nested tuple) result."""
    if isinstance(result, tuple):
        return [x for r in result for x in leaves(r)]
    return [result]
