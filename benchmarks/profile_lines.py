#!/usr/bin/env python
"""Where does the emitted code spend its time? A statement-by-statement profile.

    python benchmarks/profile_lines.py                 # the MLP, N, D, M, C = 1000, 100, 256, 10
    python benchmarks/profile_lines.py 10000 784 512 10 --calls 10
    python benchmarks/profile_lines.py --model gmm     # a model of the suite (models.py),
    python benchmarks/profile_lines.py --model mlp --size "N=10000 D=784 M=512 C=10"

With --model, gradgen's `f_value_and_grad` of that model (at its first benchmark size, or
--size) and the hand-written NumPy reference are profiled, and the statements are also
listed by cost. Threads: one BLAS/OpenMP thread unless the environment says otherwise.

Each function (gradgen's emitted `cost_value_and_grad`, compiled afresh, and the plain and
hand-tuned references of handwritten.py) is copied with a probe after every statement,
then called many times; the table gives, per statement, the mean CPU time (this process,
user + system, so page-fault handling counts) and the mean minor page faults. The probes
run inside the real call, so the allocator is in the state the real code sees (timing a
statement on its own, in a loop, would not be: its output would be freed and reused).

CPU time, not wall time: on a busy shared machine it is the steadier of the two. For the
per-statement view, run with one BLAS thread (OPENBLAS_NUM_THREADS=1), or CPU time also
counts BLAS threads spinning.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import itertools
import os
import resource
import sys
import textwrap
import time
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import handwritten as hw
import models
import probes
from run import ROOT, compile_module


def instrument(fn, namespace: dict):
    """A copy of `fn` with a probe after each statement, also inside its `for` loops (a
    loop's statements are summed over its steps; the `for` line itself then counts only
    the loop's own overhead); (function, marks list, labels)."""
    fdef = ast.parse(textwrap.dedent(inspect.getsource(fn))).body[0]
    fdef.name = "_instrumented"
    fdef.decorator_list = []
    labels: list[str] = []

    def probe(k: int) -> ast.stmt:
        return ast.parse(f"_PROBE({k})").body[0]

    def walk(stmts: list, depth: int) -> list:
        body: list = []
        for stmt in stmts:
            if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
                continue                             # docstring
            k = len(labels)
            if isinstance(stmt, ast.Return) and stmt.value is not None:
                # `return expr` -> `_result = expr; probe; return _result`: expr is measured
                labels.append(ast.unparse(stmt))
                body += [ast.Assign(targets=[ast.Name("_result", ast.Store())],
                                    value=stmt.value),
                         probe(k), ast.Return(value=ast.Name("_result", ast.Load()))]
                break
            labels.append("    " * depth + ast.unparse(stmt).split("\n")[0])
            if isinstance(stmt, ast.For):
                stmt.body = [probe(k), *walk(stmt.body, depth + 1)]
            body += [stmt, probe(k)]
        return body

    fdef.body = [probe(-1), *walk(fdef.body, 0)]
    ast.fix_missing_locations(fdef)
    marks: list[tuple[int, float, int]] = []

    def _probe(k):
        marks.append((k, time.process_time(),
                      resource.getrusage(resource.RUSAGE_SELF).ru_minflt))

    ns = dict(namespace, _PROBE=_probe)
    code = compile(ast.Module([fdef], []), f"<instrumented {fn.__name__}>", "exec")
    exec(code, ns)  # noqa: S102 - our own instrumented copy of a function we imported
    return ns["_instrumented"], marks, labels


def profile(title: str, fn, namespace: dict, args: tuple, calls: int, top: int = 0) -> None:
    f, marks, labels = instrument(fn, namespace)
    f(*args)                                         # warm-up
    per = np.zeros((calls, len(labels), 2))          # calls x statements x (cpu, faults)
    for c in range(calls):
        marks.clear()
        f(*args)
        for a, b in itertools.pairwise(marks):       # (time since the last probe: b's)
            per[c, b[0]] += (b[1] - a[1], b[2] - a[2])
    cpu, faults = per[:, :, 0].mean(axis=0), per[:, :, 1].mean(axis=0)
    print(f"\n## {title}\n")
    print("| CPU ms | faults | statement |")
    print("|-------:|-------:|-----------|")
    for c, fl, label in zip(cpu, faults, labels):
        print(f"| {c * 1e3:6.3f} | {fl:6.0f} | `{label[:110]}` |")
    print(f"| {cpu.sum() * 1e3:6.3f} | {faults.sum():6.0f} | total (mean of {calls} calls; "
          "freeing the locals at exit is not counted; probes included) |")
    if top:
        total = cpu.sum()
        print(f"\nThe {top} most expensive statements:\n")
        print("| share | CPU ms | faults | statement |")
        print("|------:|-------:|-------:|-----------|")
        for k in np.argsort(-cpu)[:top]:
            print(f"| {cpu[k] / total:5.0%} | {cpu[k] * 1e3:6.3f} | {faults[k]:6.0f} | "
                  f"`{labels[k].strip()[:110]}` |")


def profile_model(name: str, size: str | None, calls: int, top: int) -> None:
    """Profile gradgen's value_and_grad of one suite (or probe) model and its hand-written
    reference, where it has one."""
    m = models.MODELS[name] if name in models.MODELS else probes.PROBES[name]
    label = size or next(iter(m.sizes))
    args = tuple(models.inputs(m, m.sizes[label]))
    print(f"# Statement profile: {name} ({m.title}), {label}")
    if m.kind == "hessian":
        mod, _ = compile_module(m.path, hessian=True)
        fn = getattr(mod, f"{m.function}_hessian")
    else:
        mod, _ = compile_module(m.path, modes=("grad",))
        fn = getattr(mod, f"{m.function}_value_and_grad")
    profile(f"gradgen {fn.__name__}", fn, vars(mod), args, calls, top)
    ref = m.reference
    if ref is None:                                   # a probe: no hand-written gradient
        return
    profile(f"hand-written NumPy {ref.__name__}", ref, vars(inspect.getmodule(ref)), args,
            calls, top)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sizes", nargs="*", type=int, default=[1000, 100, 256, 10],
                    metavar="N D M C")
    ap.add_argument("--calls", type=int, default=60)
    ap.add_argument("--model", choices=list(models.MODELS) + list(probes.PROBES),
                    default=None, help="profile a model of the suite (or of the probe, "
                    "probes.py) instead of the MLP example")
    ap.add_argument("--size", default=None, help="one of the model's size labels")
    ap.add_argument("--top", type=int, default=8, help="list this many statements by cost")
    args = ap.parse_args(argv)
    if args.model:
        profile_model(args.model, args.size, args.calls, args.top)
        return 0
    if len(args.sizes) != 4:
        ap.error("give the four sizes N D M C")
    X, Y, V, W = hw.mlp_data(*args.sizes)
    mod, _ = compile_module(ROOT / "examples" / "mlp" / "mlp.grad")
    print(f"# Statement profile, N, D, M, C = {tuple(args.sizes)}")
    profile("gradgen cost_value_and_grad", mod.cost_value_and_grad, vars(mod), (X, Y, V, W),
            args.calls)
    if callable(getattr(mod, "_sigmoid", None)):
        profile("gradgen's _sigmoid helper, on X @ V", mod._sigmoid, vars(mod), (X @ V,),
                args.calls)
    profile("plain hand-written NumPy", hw.mlp_plain, vars(hw), (X, Y, V, W), args.calls)
    profile("hand-tuned NumPy", hw.mlp_tuned, vars(hw), (X, Y, V, W), args.calls)
    return 0


if __name__ == "__main__":
    sys.exit(main())
