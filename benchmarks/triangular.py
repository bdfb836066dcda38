"""The cost of the emitted triangular solve against np.linalg.solve.

gradgen emits `solve_triangular(L, b)` (and `cho_solve`, two of them) as the module helper
`_solve_triangular` (gradgen/ops/linalg.py): a block substitution over blocks of 64 rows,
in one copy of b, with one matrix product per block for what the rows solved before
contribute; a diagonal block is solved by np.linalg.solve, or by its inverse when b has 64
columns or more. This script times it,
interleaved (benchmarks/timing.py), against

- `np.linalg.solve(np.tril(L), b)`: LU with pivoting of the whole matrix, O(n^3);
- a plain row-by-row substitution in NumPy (one Python step per row, O(n^2) flops);

for n = 10, 100, 1000 and b a vector or a matrix of 10 columns. Threads are pinned to 1
before NumPy loads (OPENBLAS_NUM_THREADS etc.), as the peers' comparisons are.

    python benchmarks/triangular.py [--rounds 7] [--sizes 10,100,1000] [--clock cpu]
"""

from __future__ import annotations

import argparse
import os
import sys

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import interleaved

from gradgen.ops import REGISTRY


def emitted_helper():
    """The `_solve_triangular` helper exactly as emitted modules carry it."""
    namespace = {"np": np}
    exec(REGISTRY["solve_triangular"].prelude, namespace)  # noqa: S102
    return namespace["_solve_triangular"]


def substitution(L, b):
    """Forward substitution, one row at a time."""
    x = np.empty(np.shape(b), np.result_type(L, b))
    for i in range(L.shape[0]):
        x[i] = (b[i] - L[i, :i] @ x[:i]) / L[i, i]
    return x


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--sizes", default="10,100,1000")
    ap.add_argument("--clock", default="cpu", choices=("cpu", "wall"))
    args = ap.parse_args(argv)
    helper = emitted_helper()
    rng = np.random.default_rng(0)
    print("| n | b | np.linalg.solve(tril(L), b) | emitted _solve_triangular | "
          "row substitution | emitted / solve |")
    print("|---|---|---|---|---|---|")
    for n in (int(s) for s in args.sizes.split(",")):
        L = np.tril(rng.normal(size=(n, n)) / np.sqrt(n)) + 2 * np.eye(n)
        for kind, b in (("vector", rng.normal(size=n)), ("n x 10", rng.normal(size=(n, 10)))):
            ref = np.linalg.solve(np.tril(L), b)
            for f in (helper(L, b, lower=True), substitution(L, b)):
                assert np.max(np.abs(f - ref)) <= 1e-8 * np.max(np.abs(ref)), (n, kind)
            res = interleaved({
                "solve": lambda L=L, b=b: np.linalg.solve(np.tril(L), b),
                "emitted": lambda L=L, b=b: helper(L, b, lower=True),
                "substitution": lambda L=L, b=b: substitution(L, b),
            }, args.rounds, clock=args.clock)
            med = {k: r.median * 1e6 for k, r in res.items()}
            print(f"| {n} | {kind} | {med['solve']:.1f} us | {med['emitted']:.1f} us | "
                  f"{med['substitution']:.1f} us | {med['emitted'] / med['solve']:.2f} |",
                  flush=True)


if __name__ == "__main__":
    main()
