"""Interleaved timing and peak-memory measurement for noisy shared machines.

The rules (see benchmarks/README.md and shared/PERFORMANCE.md):

- all contenders of one case are timed in ONE run, interleaved: round after round, each
  contender gets one sample, and the order rotates from round to round (A B C, B C A, ...)
  so that no contender always runs just after the same neighbour;
- every contender gets one untimed warm-up call before timing starts (JIT compilation,
  caches, first-touch page faults), and by default one more untimed call right before each
  timed sample, so each sample starts in the steady state whatever ran before it;
- a sample of a fast function is a batch of calls (at least `min_sample` seconds), divided
  by the batch size; the garbage collector is off during a sample, as in `timeit`;
- results are medians over the rounds, and ratios are taken between contenders of the same
  run; absolute times from different runs are never compared;
- peak memory is measured separately, with tracemalloc, in an untimed call (tracemalloc
  slows allocation down, so it never runs during timing); so are minor page faults per call
  (getrusage), which do not depend on what else the machine is doing.

Process isolation. A contender can live in a worker process of its own (`Isolated`), driven
in turn by the parent, so that the interleaving is kept but no contender shares a heap with
another. This matters here: glibc's malloc raises its mmap and trim thresholds after a
large block is freed, and once a JAX contender has run in a process, NumPy's 2 MiB
temporaries are no longer handed back to the system, which removes their page faults and
makes plain NumPy about 40% faster than it is in a user's process. Timed in one shared
process, every NumPy contender would be measured in a state no user has.

The clock is wall time (`time.perf_counter`) unless told otherwise; `time.process_time`
(CPU time of the process that runs the contender, user + system, all its threads) is
steadier on a busy machine, where a wall-clock sample also counts the time spent waiting
for a core.
"""

from __future__ import annotations

import gc
import importlib
import math
import multiprocessing
import os
import resource
import statistics
import sys
import time
import traceback
import tracemalloc
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

__all__ = ["Isolated", "Local", "Result", "Unavailable", "interleaved", "page_faults",
           "peak_memory"]

CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


@dataclass
class Result:
    """Per-call times (seconds) of one contender, one entry per round."""

    name: str
    number: int                     # calls per timed sample
    times: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def quartiles(self) -> tuple[float, float]:
        if len(self.times) < 2:
            return self.times[0], self.times[0]
        q = statistics.quantiles(self.times, n=4, method="inclusive")
        return q[0], q[2]

    def ratio_to(self, base: Result) -> float:
        """Ratio of medians (this / base)."""
        return self.median / base.median

    def paired_ratio_to(self, base: Result) -> float:
        """Median over rounds of the per-round ratio this / base.

        Both samples of one round ran seconds apart, so a slow phase of the machine hits both:
        this ratio is steadier than the ratio of medians when the noise drifts.
        """
        return statistics.median(a / b for a, b in zip(self.times, base.times))


# --------------------------------------------------------------------------- measuring one


def calibrate(fn: Callable[[], object], min_sample: float, max_number: int) -> int:
    """Calls per sample so that one sample lasts at least `min_sample` seconds (wall)."""
    best = math.inf
    for _ in range(3):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
        if best > min_sample:
            return 1
    return max(1, min(max_number, math.ceil(min_sample / max(best, 1e-9))))


def sample(fn: Callable[[], object], number: int, warmup: bool, clock: str) -> float:
    """One timed sample: (an untimed call, then) `number` calls; seconds per call."""
    now = CLOCKS[clock]
    if warmup:
        fn()
    enabled = gc.isenabled()
    gc.disable()
    try:
        t0 = now()
        for _ in range(number):
            fn()
        t1 = now()
    finally:
        if enabled:
            gc.enable()
    return (t1 - t0) / number


def peak_memory(fn: Callable[[], object]) -> int:
    """Peak bytes allocated during one call of `fn`, as tracemalloc sees them.

    Counts what is allocated during the call (temporaries and the returned arrays), not
    what existed before (the inputs). NumPy reports its array buffers to tracemalloc;
    libraries with their own allocators (JAX/XLA, PyTorch) are mostly invisible to it.
    """
    fn()                                    # untimed warm-up outside tracing
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        out = fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    del out
    return max(0, peak - base)


def page_faults(fn: Callable[[], object], calls: int = 5) -> float:
    """Minor page faults per call of `fn` (mean over `calls` calls after one warm-up call).

    On these VMs a fresh page costs a fault (freed memory goes back to the host), so a
    function that allocates fresh large temporaries pays about 512 faults per 2 MiB. The
    count is the whole process's, so threads of JAX or torch count too.
    """
    fn()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(calls):
        fn()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / calls


# --------------------------------------------------------------------------- contenders


class Unavailable(Exception):
    """A contender that cannot be built here (an optional library is not importable)."""


class Local:
    """A contender run in this process: `run()` is timed, `result()` is checked."""

    def __init__(self, name: str, run: Callable[[], object],
                 result: Callable[[], object] | None = None, traced_memory: bool = True):
        self.name, self.run, self._result, self.traced_memory = name, run, result, traced_memory

    def result(self):
        return (self._result or self.run)()

    def warmup(self) -> None:
        self.run()

    def calibrate(self, min_sample: float, max_number: int) -> int:
        return calibrate(self.run, min_sample, max_number)

    def sample(self, number: int, warmup: bool, clock: str) -> float:
        return sample(self.run, number, warmup, clock)

    def memory(self) -> tuple[int | None, float]:
        """(tracemalloc peak, or None where tracemalloc cannot see the allocator; faults)."""
        return (peak_memory(self.run) if self.traced_memory else None), page_faults(self.run)

    def close(self) -> None:
        pass


def _worker(conn, path: str, factory: str, args: tuple) -> None:
    """Body of an `Isolated` worker: build the contender, then serve the parent's requests."""
    try:
        sys.path.insert(0, os.path.dirname(path))
        module = importlib.import_module(os.path.splitext(os.path.basename(path))[0])
        contender = getattr(module, factory)(*args)
    except (ImportError, Unavailable) as e:
        conn.send(("unavailable", str(e)))
        return
    except BaseException:  # noqa: BLE001 - reported to the parent, which decides
        conn.send(("error", traceback.format_exc()))
        return
    conn.send(("ready", contender.name, contender.traced_memory))
    while True:
        command, *params = conn.recv()
        try:
            if command == "stop":
                return
            reply = getattr(contender, command)(*params)
            conn.send(("ok", reply))
        except BaseException:  # noqa: BLE001
            conn.send(("error", traceback.format_exc()))


class Isolated:
    """A contender built and run in a worker process of its own (spawned, so its heap and
    thread pools start clean), driven through a pipe; timing happens inside the worker.

    `factory` is the name of a function in the module at `path` that takes `args` and
    returns a `Local` (or raises ImportError / Unavailable, which raise Unavailable here).
    """

    def __init__(self, path: str, factory: str, *args):
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_worker, args=(child, path, factory, args), daemon=True)
        self._proc.start()
        child.close()
        status, *info = self._recv()
        if status == "unavailable":
            self.close()
            raise Unavailable(info[0])
        if status == "error":
            self.close()
            raise RuntimeError(f"worker {factory}{args!r:.60} failed:\n{info[0]}")
        self.name, self.traced_memory = info

    def _recv(self):
        try:
            return self._conn.recv()
        except EOFError:
            raise RuntimeError(f"worker process died (exit code {self._proc.exitcode})") \
                from None

    def _call(self, command: str, *params):
        self._conn.send((command, *params))
        status, reply = self._recv()
        if status == "error":
            raise RuntimeError(f"{self.name}: {command} failed in the worker:\n{reply}")
        return reply

    def result(self):
        return self._call("result")

    def warmup(self) -> None:
        self._call("warmup")

    def calibrate(self, min_sample: float, max_number: int) -> int:
        return self._call("calibrate", min_sample, max_number)

    def sample(self, number: int, warmup: bool, clock: str) -> float:
        return self._call("sample", number, warmup, clock)

    def memory(self) -> tuple[int | None, float]:
        return self._call("memory")

    def close(self) -> None:
        if self._proc.is_alive():
            try:
                self._conn.send(("stop",))
            except OSError:
                pass
            self._proc.join(timeout=10)
            if self._proc.is_alive():
                self._proc.terminate()
                self._proc.join()
        self._conn.close()


# --------------------------------------------------------------------------- interleaving


def interleaved(contenders: Mapping[str, object], rounds: int, *,
                min_sample: float = 0.005, max_number: int = 1000,
                warmup_each: bool = True, clock: str = "wall",
                progress: Callable[[int, int], None] | None = None) -> dict[str, Result]:
    """Time contenders interleaved over `rounds` rounds; per-call times.

    A contender is a zero-argument callable, a `Local` or an `Isolated`. Each gets one
    untimed warm-up call first (JIT compilation happens there), then its batch size is
    calibrated. In every round each contender, in rotating order, gets (if `warmup_each`)
    one untimed call and then one timed sample of `number` calls. `clock` is "wall"
    (`time.perf_counter`) or "cpu" (`time.process_time` of the process that runs it).
    """
    runners = {name: c if hasattr(c, "sample") else Local(name, c)
               for name, c in contenders.items()}
    names = list(runners)
    for name in names:
        runners[name].warmup()
    results = {name: Result(name, runners[name].calibrate(min_sample, max_number))
               for name in names}
    for r in range(rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            results[name].times.append(
                runners[name].sample(results[name].number, warmup_each, clock))
        if progress is not None:
            progress(r + 1, rounds)
    return results
