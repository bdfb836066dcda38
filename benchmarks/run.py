#!/usr/bin/env python
"""gradgen benchmarks: emitted code against hand-written NumPy and the usual AD tools.

    python benchmarks/run.py                 # everything (several minutes)
    python benchmarks/run.py --quick         # a short run: smaller sizes, fewer rounds
    python benchmarks/run.py --case mlp      # one case: models, mlp, hessian or compile (repeatable)
    python benchmarks/run.py --case models --only gmm,rosen    # some models of the suite
    python benchmarks/run.py --case probe    # the held-out probe (benchmarks/probe/) vs jax.jit

The examples are compiled afresh from examples/*.grad with the gradgen of this work tree
when the run starts, so the numbers always belong to the current compiler. Tables go to
stdout (Markdown), progress to stderr. Read benchmarks/README.md before quoting a number.
"""

from __future__ import annotations

import argparse
import ast
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path


def _early_threads() -> str | None:
    """--threads must act before NumPy, torch or JAX start their thread pools. The default
    is 1 (single-threaded, as the targets of issue 12 are stated); `--threads default`
    leaves every library its own default."""
    for i, arg in enumerate(sys.argv):
        if arg == "--threads" and i + 1 < len(sys.argv):
            value = sys.argv[i + 1]
            break
        if arg.startswith("--threads="):
            value = arg.split("=", 1)[1]
            break
    else:
        value = "1"
    return None if value == "default" else value


THREADS = _early_threads()
if THREADS is not None and __name__ == "__main__":     # not when a test imports this file
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = THREADS
    if THREADS == "1":
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen"
                                   "=false intra_op_parallelism_threads=1").strip()

# --malloc-tuned: glibc's allocator keeps freed memory instead of returning it to the
# system, so a temporary of a few MB does not cost fresh page faults on every call (what
# JAX's and torch's own allocators do). Set before the worker processes start, which read
# it at their start; see README.md, "Page faults".
MALLOC_TUNED = {"MALLOC_MMAP_THRESHOLD_": "67108864", "MALLOC_TRIM_THRESHOLD_": "268435456"}
if "--malloc-tuned" in sys.argv:
    os.environ.update(MALLOC_TUNED)

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))            # the gradgen of this work tree, not an installed one
sys.path.insert(0, str(HERE))

import handwritten as hw
import models
import peers
import probes
from timing import Isolated, Unavailable, interleaved

import gradgen

MLP_SIZES = [(150, 3, 16, 3), (1000, 100, 256, 10), (10000, 784, 512, 10)]
MLP_ROUNDS = {"full": [200, 60, 15], "quick": [40, 15]}
HESSIAN_SIZES = [(1000, 10), (1000, 100), (5000, 500)]
HESSIAN_ROUNDS = {"full": [100, 40, 11], "quick": [30, 12]}
CHAIN_OPS = [10, 100, 1000, 10000]
CHAIN_REPEATS = {"full": [7, 7, 5, 3], "quick": [5, 5, 3, 1]}
SCALAR_DEPTHS = [1, 2, 3, 4, 5, 6, 8, 10, 12]
RTOL = 1e-6
MODEL_RTOL = 1e-8                   # the model suite: every contender against gradgen, float64
MODEL_ROUNDS = {"full": 21, "quick": 7}
PLAIN = "plain hand-written NumPy"
CLOSED = "closed form (NumPy)"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- formatting


def fmt_time(t: float) -> str:
    if t < 1e-3:
        return f"{t * 1e6:.1f} µs"
    if t < 1:
        return f"{t * 1e3:.2f} ms"
    return f"{t:.2f} s"


def fmt_bytes(n: int | None) -> str:
    if n is None:
        return "n/a"
    if n < 1024 ** 2:
        return f"{n / 1024:.1f} KiB"
    return f"{n / 1024 ** 2:.1f} MiB"


def table(headers: list[str], rows: list[list[str]], align: str | None = None) -> str:
    """A Markdown table with padded columns (first column left, the rest right-aligned)."""
    align = align or "l" + "r" * (len(headers) - 1)
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]

    def line(cells):
        out = []
        for c, w, a in zip(cells, widths, align):
            out.append(str(c).ljust(w) if a == "l" else str(c).rjust(w))
        return "| " + " | ".join(out) + " |"

    sep = "|" + "|".join(("-" * (w + 1) + ":") if a == "r" else ("-" * (w + 2))
                         for w, a in zip(widths, align)) + "|"
    return "\n".join([line(headers), sep] + [line(r) for r in rows])


def rel_err(a, b) -> float:
    """max |a - b| / max |b| (0 when both are 0)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return float("inf")
    scale = float(np.max(np.abs(b))) if b.size else 0.0
    err = float(np.max(np.abs(a - b))) if b.size else 0.0
    return err / scale if scale else err


# --------------------------------------------------------------------------- gradgen


def compile_module(path: Path, **options):
    """Compile `path` with this tree's gradgen and import the result from a temp file.

    Returns (module, CPU seconds spent in compile_source). A real file (not exec of a
    string) keeps tracebacks and profilers pointing at the emitted lines.
    """
    t0 = time.process_time()
    source = gradgen.compile_source(path.read_text(encoding="utf-8"), filename=path.name,
                                    **options)
    seconds = time.process_time() - t0
    return peers.load_source(source, f"{path.stem}_grad"), seconds


def environment() -> str:
    try:
        rev = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
                             check=False, capture_output=True, text=True,
                             timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        rev = "?"
    blas = "?"
    try:
        cfg = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        blas = f"{cfg.get('name', '?')} {cfg.get('version', '')}".strip()
    except Exception:  # noqa: BLE001, S110 - only for the header
        pass
    threads = f"threads limited to {THREADS}" if THREADS else "library-default threads"
    return (f"gradgen {gradgen.__version__} ({rev}), Python {platform.python_version()}, "
            f"NumPy {np.__version__} ({blas}), {os.cpu_count()} CPUs, {threads}, "
            f"{platform.machine()}, {datetime.datetime.now():%Y-%m-%d %H:%M}")


def load_average() -> str:
    try:
        return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    except OSError:
        return "load average unknown"


# --------------------------------------------------------------------------- runtime cases


def build_contenders(args, factory, keys: list[str], *params) -> tuple[list, list]:
    """Build the contenders of one size: each in a worker process of its own (the default) or
    in this process (--in-process). Returns (contenders, [(key, reason) not measured])."""
    built, skipped = [], []
    for key in keys:
        if key in peers.OPTIONAL and key not in args.peers:
            skipped.append((key, "not requested (--peers)"))
            continue
        try:
            if args.in_process:
                try:
                    built.append(getattr(peers, factory)(key, *params))
                except ImportError as e:
                    raise Unavailable(str(e)) from None
            else:
                built.append(Isolated(peers.__file__, factory, key, *params))
        except Unavailable as e:
            skipped.append((key, f"not importable ({e})"))
        except RuntimeError as e:              # the worker could not build it: say why
            skipped.append((key, "failed to build: " + str(e).strip().splitlines()[-1]))
    return built, skipped


def close_all(contenders) -> None:
    for c in contenders:
        c.close()


def report_skipped(skipped) -> None:
    if skipped:
        print("\nNot measured:")
    for key, reason in skipped:
        print(f"- {key}: {reason}")


def verify(contenders: list, checks, rtol: float = RTOL) -> list:
    """Print the agreement table; return the contenders that agree (the others are not timed).

    `checks(result) -> list of (column, relative error)`.
    """
    rows, ok, columns = [], [], None
    for c in contenders:
        try:
            errs = checks(c.result())
        except Exception as e:  # noqa: BLE001 - a crashing contender is reported, not fatal
            rows.append([c.name] + ["error"] * len(columns or [0])
                        + [f"{type(e).__name__}: {str(e).splitlines()[-1][:60]}"])
            continue
        columns = [col for col, _ in errs]
        good = all(e <= rtol for _, e in errs)
        if good:
            ok.append(c)
        rows.append([c.name] + [f"{e:.1e}" for _, e in errs] + ["ok" if good else "MISMATCH"])
    print(f"Agreement with the reference (max |a - b| / max |b|, must be <= {rtol:g}):\n")
    print(table(["contender"] + (columns or ["result"]) + ["verdict"], rows))
    if len(ok) < len(contenders):
        print("\nContenders that do not agree are not timed.")
    print()
    return ok


def time_contenders(args, label: str, contenders: list, baseline: str,
                    medians: dict[str, float] | None = None,
                    mem_baseline: str | None = None) -> dict[str, str]:
    """Time verified contenders interleaved; print the table; return name -> ratio (and fill
    `medians`, name -> median seconds, when given). Memory ratios are to `mem_baseline`
    (default: `baseline`)."""
    n_rounds = args.n_rounds
    log(f"[{label}] timing {len(contenders)} contenders, {n_rounds} interleaved rounds")
    results = interleaved({c.name: c for c in contenders}, n_rounds, clock=args.clock,
                          progress=lambda r, n: r % max(1, n // 5) == 0
                          and log(f"  round {r}/{n}"))
    memory = {c.name: c.memory() for c in contenders}
    base, (base_mem, _) = results[baseline], memory[mem_baseline or baseline]
    rows, ratios = [], {}
    for c in contenders:
        r = results[c.name]
        q1, q3 = r.quartiles
        mem, faults = memory[c.name]
        rows.append([c.name, fmt_time(r.median), f"{fmt_time(q1)} – {fmt_time(q3)}",
                     f"{r.ratio_to(base):.2f}", f"{r.paired_ratio_to(base):.2f}",
                     fmt_bytes(mem) if mem is not None else "n/a*",
                     f"{mem / base_mem:.2f}" if mem is not None and base_mem else "",
                     f"{faults:.0f}", str(r.number)])
        ratios[c.name] = f"{r.ratio_to(base):.2f}"
        if medians is not None:
            medians[c.name] = r.median
    what = "CPU time (process_time)" if args.clock == "cpu" else "wall time"
    print(f"Timing: {n_rounds} interleaved rounds, median {what} per call.\n")
    print(table(["contender", "median", "p25 – p75", "ratio", "paired", "peak mem",
                 "mem ratio" if not mem_baseline or mem_baseline == baseline
                 else "mem / NumPy", "faults/call", "calls/sample"], rows))
    if any(m is None for m, _ in memory.values()):
        print("\n\\* JAX and torch allocate through their own allocators, which tracemalloc "
              "does not see.")
    return ratios


def print_summary(title: str, headers: list[str], summary: dict[str, dict[int, str]]) -> None:
    print(f"### {title}\n")
    print(table(["contender"] + headers,
                [[name] + [cols.get(i, "—") for i in range(len(headers))]
                 for name, cols in summary.items()]))
    print()


def mlp_checks(ref_value, ref_grads):
    ref_dV, ref_dW = ref_grads

    def checks(res):
        value, (dV, dW) = res
        return [("value", rel_err(value, ref_value)), ("dV", rel_err(dV, ref_dV)),
                ("dW", rel_err(dW, ref_dW))]

    return checks


def hessian_checks(ref):
    return lambda H: [("H", rel_err(H, ref))]


def isolation_note(args) -> str:
    if args.in_process:
        return ("All contenders run in this one process (--in-process): they share a heap, so "
                "NumPy's allocations behave as they would beside JAX, not in a plain process.")
    return ("Each contender runs in a worker process of its own, driven in turn, so none "
            "shares a heap or thread pool with another (see benchmarks/README.md).")


def case_mlp(args) -> None:
    print("\n## 1. MLP value and gradient: `cost_value_and_grad` of examples/mlp/mlp.grad\n")
    path = ROOT / "examples" / "mlp" / "mlp.grad"
    t0 = time.process_time()
    source = gradgen.compile_source(path.read_text(encoding="utf-8"), filename=path.name)
    print(f"Compiled examples/mlp/mlp.grad with this tree's gradgen "
          f"({fmt_time(time.process_time() - t0)} CPU).")
    print("Ratios are to the plain hand-written NumPy backprop of the same run: below 1.00 "
          "is faster. `paired`: the median over rounds of the per-round ratio. Peak memory: "
          "tracemalloc, one untimed call, inputs excluded. Faults: minor page faults per "
          f"call (getrusage, untimed calls). {isolation_note(args)}\n")
    sizes = MLP_SIZES[:2] if args.quick else MLP_SIZES
    rounds = MLP_ROUNDS["quick" if args.quick else "full"]
    summary: dict[str, dict[int, str]] = {}
    for i, size in enumerate(sizes):
        label = "N={}, D={}, M={}, C={}".format(*size)
        print(f"### {label}\n")
        log(f"[mlp {label}] starting contenders")
        contenders, skipped = build_contenders(args, "mlp_contender", peers.MLP_KEYS, size,
                                               args.seed, source)
        try:
            ref = hw.mlp_plain(*hw.mlp_data(*size, seed=args.seed))
            ok = verify(contenders, mlp_checks(*ref))
            if not any(c.name == PLAIN for c in ok):
                raise SystemExit("the plain hand-written reference is missing")
            args.n_rounds = args.rounds or rounds[i]
            for name, ratio in time_contenders(args, f"mlp {label}", ok, PLAIN).items():
                summary.setdefault(name, {})[i] = ratio
        finally:
            close_all(contenders)
        report_skipped(skipped)
        print()
    print_summary("MLP summary: ratio (of medians) to plain hand-written NumPy",
                  ["N={}, D={}, M={}, C={}".format(*s) for s in sizes], summary)


def _gradgen_hessian_source(path: Path) -> tuple[str, str, str | None]:
    """(module source, "hessian" or "hvp", why there is no loss_hessian or None)."""
    text = path.read_text(encoding="utf-8")
    try:
        source = gradgen.compile_source(text, filename=path.name, hessian=True)
        if hasattr(peers.load_source(source, "logistic_probe"), "loss_hessian"):
            return source, "hessian", None
        note = "compiled with hessian=True, but the module has no loss_hessian"
    except gradgen.CompileError as e:
        note = f"compile_source(hessian=True) raised: {str(e).splitlines()[0]}"
    return gradgen.compile_source(text, filename=path.name), "hvp", note


def case_hessian(args) -> None:
    print("\n## 2. Logistic-regression full Hessian (examples/logistic/logistic.grad)\n")
    source, kind, note = _gradgen_hessian_source(ROOT / "examples" / "logistic" / "logistic.grad")
    if note:
        print(f"gradgen: f_hessian not available yet ({note}); timing instead a Hessian "
              "assembled column by column from D calls of gradgen's `loss_hvp` with unit "
              "vectors, labelled \"gradgen D x loss_hvp (fallback)\".\n")
    else:
        print("gradgen: `loss_hessian` emitted with `hessian=True`.\n")
    print("Ratios are to the closed form `X.T @ (s[:, None] * X) / N + lam * I` "
          "(s = sigmoid(z) * (1 - sigmoid(z)), z = y * (X @ w)) of the same run. "
          f"{isolation_note(args)}\n")
    sizes = HESSIAN_SIZES[:2] if args.quick else HESSIAN_SIZES
    rounds = HESSIAN_ROUNDS["quick" if args.quick else "full"]
    summary: dict[str, dict[int, str]] = {}
    for i, size in enumerate(sizes):
        label = "N={}, D={}".format(*size)
        print(f"### {label}\n")
        log(f"[hessian {label}] starting contenders")
        contenders, skipped = build_contenders(args, "hessian_contender", peers.HESSIAN_KEYS,
                                               size, args.seed, source, kind)
        try:
            ref = hw.logistic_hessian(*hw.logistic_data(*size, seed=args.seed))
            ok = verify(contenders, hessian_checks(ref))
            args.n_rounds = args.rounds or rounds[i]
            for name, ratio in time_contenders(args, f"hessian {label}", ok, CLOSED).items():
                summary.setdefault(name, {})[i] = ratio
        finally:
            close_all(contenders)
        report_skipped(skipped)
        print()
    print_summary("Hessian summary: ratio (of medians) to the closed form",
                  ["N={}, D={}".format(*s) for s in sizes], summary)


# --------------------------------------------------------------------------- the model suite

LOOPS_REFUSED = "loops are not supported"
NEEDS_LOOPS = "needs loops (not compiled)"


def _model_source(m, checkpoint: int | None = None, hints: dict[str, int] | None = None
                  ) -> tuple[dict | None, str]:
    """(emitted module sources or None, note): value_and_grad (or the Hessian) of the
    model, as "gradgen" (plain) and "gradgen+ws" (compiled with `workspace=True`), both
    with `checkpoint` (`--checkpoint K`) and `hints` (`--hint N=32`) when given."""
    options = {"hessian": True} if m.kind == "hessian" else {"modes": ("grad",)}
    if checkpoint is not None:
        options["checkpoint"] = checkpoint
    if hints:
        options["hints"] = hints
    t0 = time.process_time()
    text = m.path.read_text(encoding="utf-8")
    try:
        source = gradgen.compile_source(text, filename=m.path.name, **options)
    except gradgen.CompileError as e:
        if m.loops and LOOPS_REFUSED in str(e):
            return None, NEEDS_LOOPS
        return None, "compile error: " + str(e).splitlines()[0]
    took = time.process_time() - t0
    ws = gradgen.compile_source(text, filename=m.path.name, workspace=True, **options)
    return {"gradgen": source, "gradgen+ws": ws}, f"compiled in {fmt_time(took)} CPU"


def _role(name: str) -> str:
    """The column of a contender in the summary, from its display name."""
    for role in ("gradgen+ws", "gradgen", "jax", "torch"):
        if name.startswith(role):
            return role
    return "numpy"


def _model_checks(m, ref):
    if m.kind == "hessian":
        return lambda H: [("H", rel_err(H, ref))]
    value, grads = ref

    def checks(res):
        r_value, r_grads = res
        if len(r_grads) != len(grads):
            raise ValueError(f"{len(r_grads)} gradients, expected {len(grads)}")
        return [("value", rel_err(r_value, value))] + [
            (f"d{p}", rel_err(a, b)) for p, a, b in zip(m.params, r_grads, grads)]

    return checks


def geometric_mean(xs: list[float]) -> float:
    return float(np.exp(np.mean(np.log(xs)))) if xs else float("nan")


def case_models(args, registry: dict | None = None) -> None:
    """The model suite (models.MODELS), or the held-out probe (probes.PROBES) as `registry`."""
    probe = registry is not None
    registry = models.MODELS if registry is None else registry
    if probe:
        print("\n## The held-out probe: value and gradient against jax.jit\n")
        print("Real models kept out of the tuned suite (benchmarks/probe/*.grad, "
              "benchmarks/probes.py), compiled with this tree's gradgen (`modes=(\"grad\",)`) "
              "and timed as `f_value_and_grad` against `jax.jit(jax.value_and_grad)` of the "
              "same loss written for JAX, float64. Before timing, JAX's value and gradients "
              f"are compared with gradgen's (relative error <= {MODEL_RTOL:g}); there is no "
              f"hand-written gradient. Ratios are to JAX of the same run. "
              f"{isolation_note(args)}\n")
    else:
        print("\n## The model suite: value and gradient against jax.jit, torch and hand-written "
              "NumPy\n")
        print("Each model is a .grad source (benchmarks/models/ or examples/) compiled with "
              "this tree's gradgen (`modes=(\"grad\",)`, or `hessian=True`), timed as "
              "`f_value_and_grad` (or `f_hessian`) against `jax.jit(jax.value_and_grad)` (or "
              "`jax.jit(jax.hessian)`) in float64, torch eager autograd in float64 (or "
              "`torch.func.hessian`), and the hand-written NumPy gradient of "
              "benchmarks/models.py (the closed form for the Hessian). Before timing, every "
              f"contender's value and gradients are compared with gradgen's (relative error "
              f"<= {MODEL_RTOL:g}; with the hand-written NumPy where gradgen cannot compile "
              f"the model yet). Ratios are to JAX of the same run. {isolation_note(args)}\n")
    known = {**models.MODELS, **probes.PROBES}
    unknown = [n for n in args.only or [] if n not in known]
    if unknown:
        raise SystemExit(f"unknown model(s) {', '.join(unknown)}; known: "
                         + ", ".join(known))
    names = [n for n in args.only if n in registry] if args.only else list(registry)
    model_keys = [k for k in peers.MODEL_KEYS if not probe or k in ("jax", "gradgen", "gradgen+ws")]
    summary = []
    for name in names:
        m = registry[name]
        source, note = _model_source(m, args.checkpoint)
        if args.checkpoint is not None:
            note += f", --checkpoint {args.checkpoint}"
        sizes = list(m.sizes.items())[:1] if args.quick else list(m.sizes.items())
        for label, dims in sizes:
            if m.hints:   # (compiled for this size: the model's Model.hints given)
                hints = {k: dims[k] for k in m.hints}
                source, note = _model_source(m, args.checkpoint, hints)
                note += ", " + ", ".join(f"--hint {k}={v}" for k, v in hints.items())
                if args.checkpoint is not None:
                    note += f", --checkpoint {args.checkpoint}"
            print(f"### {name}: {m.title}, {label}\n")
            print(f"`{m.source}`, `{m.function}`; gradgen: {note}.\n")
            log(f"[{name} {label}] starting contenders")
            keys = [k for k in model_keys
                    if not k.startswith("gradgen") or source is not None]
            contenders, skipped = build_contenders(args, "model_contender", keys, name, dims,
                                                   args.seed, source)
            row = {"model": name, "size": label, "note": note if source is None else "",
                   "medians": {}}
            try:
                by_role = {_role(c.name): c for c in contenders}
                ref_c = by_role.get("gradgen") or by_role.get("numpy")
                ok = verify(contenders, _model_checks(m, ref_c.result()), rtol=MODEL_RTOL)
                roles_ok = {_role(c.name): c.name for c in ok}
                base = roles_ok.get("jax") or roles_ok.get("gradgen") or ok[0].name
                args.n_rounds = args.rounds or MODEL_ROUNDS["quick" if args.quick else "full"]
                medians: dict[str, float] = {}
                time_contenders(args, f"{name} {label}", ok, base, medians,
                                mem_baseline=roles_ok.get("numpy"))
                row["medians"] = {_role(n): t for n, t in medians.items()}
                bad = [_role(c.name) for c in contenders if c.name not in roles_ok.values()]
                if bad:
                    row["note"] = (row["note"] + "; " if row["note"] else "") + \
                        "MISMATCH: " + ", ".join(bad)
            finally:
                close_all(contenders)
            report_skipped(skipped)
            if source is None:
                print(f"\n- gradgen: {note}")
            print()
            summary.append(row)
    print_model_summary(summary)


def print_model_summary(summary: list[dict]) -> None:
    """The table of all models: medians, ratios to JAX, and the geometric means."""
    print("### Summary: median time per call, ratio to jax.jit of the same run\n")
    rows, gg, gt, tj, gw, gwt = [], [], [], [], [], []
    for r in summary:
        med = r["medians"]

        def t(role, med=med):
            return fmt_time(med[role]) if role in med else "—"

        def ratio(role, to="jax", med=med):
            return f"{med[role] / med[to]:.2f}" if role in med and to in med else "—"

        if "gradgen" in med and "jax" in med:
            gg.append(med["gradgen"] / med["jax"])
        if "gradgen" in med and "torch" in med:
            gt.append(med["gradgen"] / med["torch"])
        if "torch" in med and "jax" in med:
            tj.append(med["torch"] / med["jax"])
        if "gradgen+ws" in med and "jax" in med:
            gw.append(med["gradgen+ws"] / med["jax"])
        if "gradgen+ws" in med and "torch" in med:
            gwt.append(med["gradgen+ws"] / med["torch"])
        gradgen_cell = t("gradgen") if "gradgen" in med else (r["note"] or "—")
        rows.append([r["model"], r["size"], gradgen_cell, t("gradgen+ws"), t("jax"), t("torch"),
                     t("numpy"), ratio("gradgen"), ratio("gradgen+ws"), ratio("torch"),
                     ratio("numpy"), ratio("gradgen", "torch"), ratio("gradgen+ws", "torch"),
                     ratio("gradgen", "numpy")])
    print(table(["model", "size", "gradgen", "gradgen+ws", "jax.jit", "torch", "NumPy by hand",
                 "gradgen / jax", "gradgen+ws / jax", "torch / jax", "NumPy / jax",
                 "gradgen / torch", "gradgen+ws / torch", "gradgen / NumPy"], rows,
                align="ll" + "r" * 12))
    notes = [f"- {r['model']} ({r['size']}): {r['note']}" for r in summary if r["note"]]
    if notes:
        print("\n" + "\n".join(notes))
    if gg:
        print(f"\ngradgen / jax.jit over {len(gg)} model sizes: geometric mean "
              f"{geometric_mean(gg):.2f}, median {statistics.median(gg):.2f}, "
              f"worst {max(gg):.2f}, at or below 1.00: {sum(x <= 1.0 for x in gg)} of "
              f"{len(gg)}, above 1.5: {sum(x > 1.5 for x in gg)}.")
    if gt:
        print(f"gradgen / torch over {len(gt)}: geometric mean {geometric_mean(gt):.2f}, "
              f"worst {max(gt):.2f}, at or below 1.00: {sum(x <= 1.0 for x in gt)} of {len(gt)}.")
    if gw:   # a workspace reused across calls (`workspace=True`): an opt-in, shown apart
        print(f"gradgen+ws / jax.jit over {len(gw)} model sizes: geometric mean "
              f"{geometric_mean(gw):.2f}, median {statistics.median(gw):.2f}, "
              f"worst {max(gw):.2f}, at or below 1.00: {sum(x <= 1.0 for x in gw)} of "
              f"{len(gw)}, above 1.5: {sum(x > 1.5 for x in gw)}.")
    if gwt:
        print(f"gradgen+ws / torch over {len(gwt)}: geometric mean {geometric_mean(gwt):.2f}, "
              f"worst {max(gwt):.2f}, at or below 1.00: {sum(x <= 1.0 for x in gwt)} of "
              f"{len(gwt)}.")
    if tj:
        print(f"torch / jax.jit over {len(tj)}: geometric mean {geometric_mean(tj):.2f}.")
    print()


# --------------------------------------------------------------------------- case 3: compile


# One line of a generated chain program: (template, number of operations in it).
CHAIN_LINES = [
    ("{o} = tanh({i}) * w + {i}", 3),
    ("{o} = sigmoid({i}) - {i} * w", 3),
    ("{o} = exp(-{i}) * w + {i}", 4),
    ("{o} = log1p({i} * {i}) + w * {i}", 4),
]


def chain_program(n_ops: int) -> tuple[str, int, int]:
    """A straight-line program of about `n_ops` operations ending in sum; (text, ops, lines)."""
    lines = ['def f(x: Param[N], w: Data[N]):', '    """A generated chain."""']
    ops, prev, k = 1, "x", 0                      # 1: the final sum
    while ops < n_ops:
        template, cost = CHAIN_LINES[k % len(CHAIN_LINES)]
        lines.append("    " + template.format(o=f"a{k}", i=prev))
        prev, ops, k = f"a{k}", ops + cost, k + 1
    lines.append(f"    return sum({prev})")
    return "\n".join(lines) + "\n", ops, k


def scalar_chain_program(depth: int, f1: str, f2: str) -> str:
    """x <- f1(x) * x + f2(x), `depth` times, as a gradgen program of one scalar Param."""
    lines = ["def f(x0: Param[()]):"]
    for k in range(1, depth + 1):
        p = f"x{k - 1}"
        lines.append(f"    x{k} = {f1}({p}) * {p} + {f2}({p})")
    lines.append(f"    return x{depth}")
    return "\n".join(lines) + "\n"


def emitted_ops(source: str, function: str) -> int:
    """Operations (binary/unary operators and calls, shape checks excluded) in one function."""
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef) and node.name == function:
            count = 0
            for sub in ast.walk(node):
                if isinstance(sub, (ast.BinOp, ast.UnaryOp)):
                    count += 1
                elif isinstance(sub, ast.Call):
                    name = getattr(sub.func, "id", None)
                    if name not in ("_dims", "_expect"):
                        count += 1
            return count
    return -1


def time_compile(text: str, repeats: int, **options) -> tuple[float, str]:
    """Median CPU time of `repeats` compilations (compiling is single-threaded Python, so CPU
    time is what it costs, and it does not count the time spent waiting for a busy core)."""
    times, source = [], ""
    for _ in range(repeats):
        t0 = time.process_time()
        source = gradgen.compile_source(text, "chain.grad", **options)
        times.append(time.process_time() - t0)
    return statistics.median(times), source


def sympy_worker(depth: int, f1: str, f2: str) -> None:
    """Run in a subprocess: time sympy.diff and sympy.cse of the nested chain; print JSON."""
    import sympy

    x = sympy.Symbol("x")
    fn1, fn2 = getattr(sympy, f1), getattr(sympy, f2)
    e = x
    for _ in range(depth):
        e = fn1(e) * e + fn2(e)
    t0 = time.process_time()
    d = sympy.diff(e, x)
    t1 = time.process_time()
    replacements, reduced = sympy.cse(d)
    t2 = time.process_time()
    print(json.dumps({"diff": t1 - t0, "cse": t2 - t1}), flush=True)
    ops_diff = sympy.count_ops(d)
    ops_cse = sum(sympy.count_ops(r) for _, r in replacements) + sympy.count_ops(reduced)
    print(json.dumps({"diff": t1 - t0, "cse": t2 - t1, "ops_diff": int(ops_diff),
                      "ops_cse": int(ops_cse)}), flush=True)


def run_sympy(depth: int, f1: str, f2: str, timeout: float) -> dict | None:
    """The worker's last JSON line, or None if it timed out before timing diff + cse."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--sympy-worker", str(depth),
           "--sympy-funcs", f"{f1},{f2}"]
    try:
        out = subprocess.run(cmd, check=False, capture_output=True, text=True,
                             timeout=timeout).stdout
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
    lines = [line for line in out.splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) if lines else None


def case_compile(args) -> None:
    print("\n## 3. Compile time against program size\n")
    repeats = CHAIN_REPEATS["quick" if args.quick else "full"]
    print("Straight-line programs `a{k+1} = tanh(a{k}) * w + a{k}`, `sigmoid(...) - ...`, "
          "`exp(-...) * w + ...`, `log1p(... * ...) + w * ...` in turn, x: Param[N], "
          "ending in `sum`. CPU time (`time.process_time`) of `gradgen.compile_source`; "
          "`all modes` is what `gradgen compile` emits by default "
          "(value, grad, value_and_grad, vjp, jvp, hvp); `grad only` is modes=(\"grad\",). "
          "Median of the runs shown.\n")
    rows = []
    for n, rep in zip(CHAIN_OPS, repeats):
        text, ops, n_lines = chain_program(n)
        log(f"[compile] chain of {ops} operations, {rep} run(s) per mode")
        t_all, src_all = time_compile(text, rep)
        t_grad, src_grad = time_compile(text, rep, modes=("grad",))
        rows.append([f"{ops:,}", f"{n_lines:,}", str(rep), fmt_time(t_all),
                     f"{t_all / ops * 1e6:.0f} µs", fmt_time(t_grad),
                     f"{t_grad / ops * 1e6:.0f} µs", f"{len(src_all.splitlines()):,}",
                     f"{emitted_ops(src_grad, 'f_grad'):,}"])
    print(table(["source ops", "lines", "runs", "all modes", "per op", "grad only", "per op",
                 "emitted lines (all)", "ops in f_grad"], rows))
    print("\nLinear growth shows as a constant time per operation.\n")

    # The scalar chain beside sympy.
    f1, f2 = args.chain_funcs.split(",") if args.chain_funcs else ("sin", "cos")
    try:
        gradgen.compile_source(scalar_chain_program(1, f1, f2), "probe.grad")
        substituted = False
    except gradgen.CompileError:
        if args.chain_funcs:
            raise
        f1, f2, substituted = "tanh", "exp", True
    print(f"### Scalar chain x <- {f1}(x) * x + {f2}(x), nested L times\n")
    if substituted:
        print("gradgen has no `sin`/`cos` built-ins yet: `tanh`/`exp` stand in for them in "
              "BOTH tools (the derivative still repeats x three times per level). sympy is "
              "slower on this chain than on sin/cos: its products merge `exp` factors "
              "(`exp(a) * exp(b)` becomes `exp(a + b)`) on the way.\n")
    cap = args.sympy_cap
    print(f"CPU times. gradgen: `compile_source(..., modes=(\"grad\",))` of the L-line "
          "program, median of 5. sympy: `sympy.diff` then `sympy.cse` of the nested "
          f"expression, in a fresh subprocess per L; stopped after the first L whose "
          f"diff + cse exceeds {cap:g} s (or that is killed after {3 * cap:g} s wall time). "
          "`ops`: operations in the emitted `f_grad`; sympy's `count_ops` of the derivative "
          "before and after cse.\n")
    rows = []
    sympy_done = False
    for depth in SCALAR_DEPTHS:
        text = scalar_chain_program(depth, f1, f2)
        t_gg, src = time_compile(text, 5, modes=("grad",))
        row = [str(depth), fmt_time(t_gg), str(emitted_ops(src, "f_grad"))]
        if sympy_done:
            row += ["skipped", "", "", ""]
        else:
            log(f"[compile] sympy, L={depth}")
            res = run_sympy(depth, f1, f2, timeout=3 * cap)
            if res is None:
                row += [f"> {3 * cap:g} s (killed)", "", "", ""]
                sympy_done = True
            else:
                total = res["diff"] + res["cse"]
                row += [fmt_time(res["diff"]), fmt_time(res["cse"]),
                        f"{res['ops_diff']:,}" if "ops_diff" in res else "(not counted)",
                        f"{res['ops_cse']:,}" if "ops_cse" in res else "(not counted)"]
                sympy_done = total > cap
        rows.append(row)
    print(table(["L", "gradgen compile", "ops in f_grad", "sympy.diff", "sympy.cse",
                 "sympy ops", "ops after cse"], rows))
    print()


# --------------------------------------------------------------------------- main


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="short run: the two smaller sizes, fewer rounds, 10,000 ops compiled once")
    ap.add_argument("--case", action="append",
                    choices=["models", "mlp", "hessian", "compile", "probe"],
                    help="run only this case (repeatable; default: the first four; 'probe' is "
                         "the held-out models of benchmarks/probe/, run only when asked)")
    ap.add_argument("--only", default=None, metavar="NAME[,NAME...]",
                    help="the models of the suite (or, with --case probe, of the probe) to "
                         "run (implies --case models); known: " + ", ".join(models.MODELS)
                         + "; probe: " + ", ".join(probes.PROBES))
    ap.add_argument("--output", default=None, metavar="PATH",
                    help="also write the report (stdout) to PATH; default for a full run of "
                         "the model suite (no --only, --quick or --rounds): "
                         "benchmarks/results-<date>.md; '-' for no file")
    ap.add_argument("--rounds", type=int, default=None,
                    help="interleaved rounds per size (overrides the defaults)")
    ap.add_argument("--peers", default="jax,torch,autograd",
                    help="comma-separated optional peers to try (default: %(default)s; "
                         "'none' for none)")
    ap.add_argument("--threads", default="1",
                    help="BLAS/OpenMP/torch/XLA threads (sets OMP_NUM_THREADS, "
                         "OPENBLAS_NUM_THREADS, MKL_NUM_THREADS and, for 1, XLA_FLAGS before "
                         "anything starts); default 1 (single-threaded); 'default' leaves "
                         "the libraries their own defaults (the multi-threaded picture)")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="wall time (default), or the CPU time of the process that runs the "
                         "contender (steadier on a busy machine)")
    ap.add_argument("--in-process", action="store_true",
                    help="run all contenders in this one process instead of one worker "
                         "process each (they then share a heap: see README)")
    ap.add_argument("--malloc-tuned", action="store_true",
                    help="run the worker processes with glibc's allocator keeping freed "
                         "memory (" + " ".join(f"{k}={v}" for k, v in MALLOC_TUNED.items())
                         + "): no page faults from fresh temporaries; see README")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    ap.add_argument("--checkpoint", type=int, default=None, metavar="K",
                    help="compile the models' gradgen contenders with --checkpoint K (loops "
                         "recompute instead of saving: the memory/time trade-off)")
    ap.add_argument("--sympy-cap", type=float, default=10.0,
                    help="stop sympy after the first depth taking more than this (seconds)")
    ap.add_argument("--chain-funcs", default=None, metavar="F,G",
                    help="the two functions of the scalar chain x <- F(x) * x + G(x) "
                         "(default: sin,cos)")
    ap.add_argument("--sympy-worker", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--sympy-funcs", default="sin,cos", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.peers = set() if args.peers == "none" else set(args.peers.split(","))
    args.only = args.only.split(",") if args.only else None
    if args.only and not args.case:
        args.case = ["models"]
    return args


class Tee:
    """stdout that is also written to a file (the results-<date>.md report)."""

    def __init__(self, stream, path: Path):
        self.stream, self.path = stream, path
        self.file = path.open("w", encoding="utf-8")

    def write(self, text: str) -> int:
        self.file.write(text)
        return self.stream.write(text)

    def flush(self) -> None:
        self.file.flush()
        self.stream.flush()

    def close(self) -> None:
        self.file.close()


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.sympy_worker is not None:
        sympy_worker(args.sympy_worker, *args.sympy_funcs.split(","))
        return 0
    cases = args.case or ["models", "mlp", "hessian", "compile"]
    output = args.output
    if output is None and "models" in cases and not (args.only or args.quick or args.rounds):
        output = str(HERE / f"results-{datetime.date.today():%Y-%m-%d}.md")   # a full run
    tee = None
    if output and output != "-":
        tee = Tee(sys.stdout, Path(output))
        sys.stdout = tee
    try:
        return _run(args, cases)
    finally:
        if tee is not None:
            sys.stdout = tee.stream
            tee.close()
            log(f"report written to {output}")


def _run(args, cases) -> int:
    print(f"# gradgen benchmarks{' (--quick)' if args.quick else ''}\n")
    print(environment())
    if args.malloc_tuned:
        print("Allocator: " + " ".join(f"{k}={v}" for k, v in MALLOC_TUNED.items())
              + " (--malloc-tuned).")
    print(f"\nAt start: {load_average()} (other processes on this machine).")
    busy = hasattr(os, "getloadavg") and os.getloadavg()[0] > 0.8
    if busy and THREADS is None:
        print("**The machine is busy.** Multi-threaded contenders (BLAS, torch's OpenMP, XLA) "
              "wait for descheduled threads and are distorted most; compare with a run "
              "under `--threads 1`.")
    print("\nInterleaved rounds (A B C, B C A, ...), one untimed warm-up call per contender "
          "and one more before every timed sample, medians over rounds; see "
          "benchmarks/README.md.")
    t0 = time.perf_counter()
    for case in cases:
        {"models": case_models, "mlp": case_mlp, "hessian": case_hessian,
         "compile": case_compile,
         "probe": lambda args: case_models(args, probes.PROBES)}[case](args)
    print(f"Total benchmark time: {time.perf_counter() - t0:.0f} s; at the end: "
          f"{load_average()}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
