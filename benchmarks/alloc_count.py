#!/usr/bin/env python
"""How many large arrays does one call of the emitted `f_value_and_grad` allocate?

    python benchmarks/alloc_count.py                       # rosen mlp mdn gmm transformer
    python benchmarks/alloc_count.py rosen --threshold 65536 --calls 5
    python benchmarks/alloc_count.py mlp --size middle --workspace

A counting harness for issue 12 (fresh temporaries cost page faults): a small malloc shim,
built with the system C compiler into a temporary directory and preloaded (the script runs
itself again under LD_PRELOAD), counts every malloc/calloc/realloc of at least
`--threshold` bytes (default 64 KiB + 1: arrays above 8,192 doubles; NumPy's ufunc
iteration buffers, exactly 64 KiB, made for strided or casting operands, are left out),
between two reads of its counters. For each model it prints, per call of the first
benchmark size (or --size), the number of large allocations, their total size and the
minor page faults, after one warm-up call (`--workspace`: also with a Workspace, whose
buffers the warm-up call allocates). Python's and NumPy's small-object allocators
never ask malloc for blocks this large, so the counts are the arrays the code allocates.
"""

from __future__ import annotations

import argparse
import ctypes
import functools
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

HERE = Path(__file__).resolve().parent

SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>
#include <string.h>
static size_t threshold = 65536, count = 0, bytes = 0;
static void *(*real_malloc)(size_t);
static void *(*real_calloc)(size_t, size_t);
static void *(*real_realloc)(void *, size_t);
static char boot[4096]; static size_t boot_used = 0;   /* dlsym's own calloc */
static void init(void) {
    real_malloc = dlsym(RTLD_NEXT, "malloc");
    real_calloc = dlsym(RTLD_NEXT, "calloc");
    real_realloc = dlsym(RTLD_NEXT, "realloc");
}
void *malloc(size_t n) {
    if (!real_malloc) init();
    if (n >= threshold) { count++; bytes += n; }
    return real_malloc(n);
}
void *calloc(size_t k, size_t n) {
    if (!real_calloc) {
        if (boot_used + k * n > sizeof boot) return NULL;
        void *p = boot + boot_used; boot_used += (k * n + 15) & ~(size_t)15;
        memset(p, 0, k * n); return p;
    }
    if (k * n >= threshold) { count++; bytes += k * n; }
    return real_calloc(k, n);
}
void *realloc(void *p, size_t n) {
    if (!real_realloc) init();
    if (n >= threshold) { count++; bytes += n; }
    return real_realloc(p, n);
}
void alloc_count_set_threshold(size_t t) { threshold = t; }
size_t alloc_count_count(void) { return count; }
size_t alloc_count_bytes(void) { return bytes; }
"""

DEFAULT_MODELS = ["rosen", "mlp", "mdn", "gmm", "transformer"]


def _build() -> str:
    """Compile the shim; the path of the shared library."""
    d = Path(tempfile.mkdtemp(prefix="alloc_count_"))
    (d / "shim.c").write_text(SHIM)
    so = d / "shim.so"
    subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", str(so), str(d / "shim.c"), "-ldl"],
                   check=True)
    return str(so)


def count(fn, args, calls: int, lib) -> tuple[float, float, float]:
    """Mean (large allocations, MiB allocated, minor faults) per call of fn(*args)."""
    fn(*args)   # warm up: imports, caches, the shape-check memo
    c0, b0 = lib.alloc_count_count(), lib.alloc_count_bytes()
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(calls):
        fn(*args)
    f1 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    c1, b1 = lib.alloc_count_count(), lib.alloc_count_bytes()
    return (c1 - c0) / calls, (b1 - b0) / calls / 2**20, (f1 - f0) / calls


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="*", default=DEFAULT_MODELS)
    ap.add_argument("--size", default=None, help="a size label of the model (default: all)")
    ap.add_argument("--threshold", type=int, default=65537)
    ap.add_argument("--calls", type=int, default=5)
    ap.add_argument("--reference", action="store_true", help="also count the hand-written NumPy")
    ap.add_argument("--workspace", action="store_true",
                    help="also count gradgen compiled with --workspace, called with one "
                         "Workspace reused across the calls (gradgen+ws)")
    args = ap.parse_args()
    if "ALLOC_COUNT_SHIM" not in os.environ:
        so = _build()
        env = dict(os.environ, LD_PRELOAD=so, ALLOC_COUNT_SHIM=so)
        sys.exit(subprocess.run([sys.executable, *sys.argv], env=env, check=False).returncode)
    lib = ctypes.CDLL(os.environ["ALLOC_COUNT_SHIM"])
    lib.alloc_count_count.restype = lib.alloc_count_bytes.restype = ctypes.c_size_t
    lib.alloc_count_set_threshold(ctypes.c_size_t(args.threshold))
    sys.path.insert(0, str(HERE.parent))
    sys.path.insert(0, str(HERE))
    import models
    from run import compile_module

    print(f"| model | size | contender | allocations >= {args.threshold // 1024} KiB per call "
          "| MiB per call | minor faults per call |")
    print("|---|---|---|---:|---:|---:|")
    for name in args.models:
        model = models.MODELS[name]
        mod, _ = compile_module(model.path)
        fn = getattr(mod, f"{model.function}_value_and_grad")
        labels = [args.size] if args.size else list(model.sizes)
        for label in labels:
            values = models.inputs(model, model.sizes[label])
            rows = [("gradgen", fn)]
            if args.workspace:
                ws_mod, _ = compile_module(model.path, workspace=True)
                rows.append(("gradgen+ws", functools.partial(
                    getattr(ws_mod, f"{model.function}_value_and_grad"),
                    workspace=ws_mod.Workspace())))
            if args.reference:
                rows.append(("hand-written", model.reference))
            for who, f in rows:
                n, mib, faults = count(f, values, args.calls, lib)
                print(f"| {name} | {label} | {who} | {n:.0f} | {mib:.1f} | {faults:.0f} |")


if __name__ == "__main__":
    main()
