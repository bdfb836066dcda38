"""Scatter-add (the VJP of a gather, `E[idx]`) in NumPy: np.add.at against np.bincount and a
sort-based sum, on an embedding-sized problem. Run once: python benchmarks/scatter_add.py"""

import time

import numpy as np


def best(fn, repeat=5):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def add_at(g, idx, V):
    out = np.zeros((V,) + g.shape[1:], g.dtype)
    np.add.at(out, idx, g)
    return out


def bincount_raveled(g, idx, V):
    D = g.shape[1]
    flat = (idx[:, None] * D + np.arange(D)).ravel()
    return np.bincount(flat, weights=g.ravel(), minlength=V * D).reshape(V, D).astype(g.dtype, copy=False)


def bincount_columns(g, idx, V):
    out = np.empty((V, g.shape[1]), g.dtype)
    for j in range(g.shape[1]):
        out[:, j] = np.bincount(idx, weights=g[:, j], minlength=V)
    return out


def sort_reduceat(g, idx, V):
    order = np.argsort(idx, kind="stable")
    s = idx[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    out = np.zeros((V,) + g.shape[1:], g.dtype)
    out[s[starts]] = np.add.reduceat(g[order], starts, axis=0)
    return out


def main():
    rng = np.random.default_rng(0)
    for V, D, B, dtype in [(50000, 128, 4096, np.float64), (50000, 128, 4096, np.float32),
                           (50000, 128, 65536, np.float64), (1000, 64, 4096, np.float64),
                           (150, 1, 150, np.float64), (100000, 1, 100000, np.float64)]:
        idx = rng.integers(0, V, size=B)
        g = rng.normal(size=(B, D)).astype(dtype)
        ref = add_at(g, idx, V)
        row = []
        for name, fn in [("add.at", add_at), ("bincount raveled", bincount_raveled),
                         ("bincount per column", bincount_columns),
                         ("sort+reduceat", sort_reduceat)]:
            if name == "bincount per column" and D > 256:
                continue
            assert np.allclose(fn(g, idx, V), ref, rtol=1e-5, atol=1e-5), name
            row.append(f"{name} {best(lambda f=fn, g=g, i=idx, n=V: f(g, i, n)) * 1e3:.2f} ms")
        print(f"E ({V}, {D}) {np.dtype(dtype).name}, idx ({B},): " + "; ".join(row))


if __name__ == "__main__":
    main()
