"""Shared pytest configuration.

Tests marked ``@pytest.mark.long`` are opt-in: they are collected as usual (nothing is
deselected) but skip themselves unless the environment sets ``GRADGEN_LONG=1``.
"""

import collections
import gc
import hashlib
import os
import sys

# One BLAS/OpenMP thread per test process, set before NumPy loads its BLAS: the suite runs
# as two xdist workers on two cores, and OpenBLAS threads that spin and wait for a busy core
# made a linear-algebra test file 10x slower under load (8.1 s against 0.77 s).
if "numpy" not in sys.modules:
    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

import pytest  # noqa: E402

# The cyclic garbage collector of the test processes runs less often. With CPython's
# default thresholds (700, 10, 10) a young collection runs every 700 allocations, and what
# is still being built then (an emitted module's AST in the verifier, a compiler's tables)
# is promoted to the older generations, whose full passes scan everything alive: in a
# suite process (a million objects and more) that was about a tenth of its CPU, and
# `ast.parse` of a 1 MB module took 1.0-1.6 s instead of 0.5 s. Nothing in the suite
# depends on when the collector runs (tests that need a collection call `gc.collect()`).
GC_THRESHOLDS = (50_000, 20, 20)
gc.set_threshold(*GC_THRESHOLDS)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session) -> None:
    """One full collection at the end of the session, then the heap frozen (`gc.freeze`).

    pytest collects twice when the session ends (`unraisableexception`: in its
    `pytest_unconfigure` and again in its cleanup) so that the finalizers of cyclic
    garbage run while it still reports what they raise. In a test worker, with everything
    the files imported and cached still alive, each pass took 0.5-1.7 s of CPU. This pass
    finds that garbage (what its finalizers raise is reported as before: pytest's hook is
    still installed); frozen, the survivors are no longer scanned by pytest's two."""
    gc.collect()
    gc.freeze()


def pytest_collection_finish(session) -> None:
    """Hypothesis's own random generator registered now, while the heap is small.

    The first `@given` test of a process registers it (`deterministic_PRNG` ->
    `register_random`), and registering runs `gc.collect()`: a full pass over everything
    alive, which in a worker after test_ops took 1.3 s of CPU. Here, after collection, it
    is a fraction of that. (A private function of hypothesis: if it moves, this does
    nothing and the first `@given` test pays as before.)"""
    try:
        from hypothesis.internal.entropy import deterministic_PRNG
    except ImportError:
        return
    with deterministic_PRNG():
        pass


def _no_rewrite_of_hypothesis(config) -> None:
    """Hypothesis's own modules are imported without pytest's assertion rewriting.

    pytest rewrites the asserts of every module of a distribution that registers a pytest
    plugin (hypothesis does), so that a failing assert inside it reports its operands. The
    suite never needs that of hypothesis's internals, and without bytecode caching
    (PYTHONDONTWRITEBYTECODE, a fresh clone in CI) each xdist worker rewrote and compiled
    its ~75 modules while collecting (~1 s of CPU each). Our test modules, conftest and
    helpers are rewritten as before. (`_must_rewrite` is pytest's private set of marked
    names: if a pytest release renames it, this does nothing and the suite is as before.)"""
    hook = getattr(config.pluginmanager, "rewrite_hook", None)
    marked = getattr(hook, "_must_rewrite", None)
    if isinstance(marked, set) and "hypothesis" in marked and "hypothesis" not in sys.modules:
        marked.difference_update({"hypothesis", "_hypothesis_globals", "_hypothesis_ftz_detector"})
        cache = getattr(hook, "_marked_for_rewrite_cache", None)
        if isinstance(cache, dict):
            cache.clear()


# The test files that cost the most CPU, most expensive first (per-file CPU of the suite
# under `-n 2 --dist loadfile`, measured at h-suite6 (stop 24), load ~7, seconds: test_ops
# 27, test_array_api 19, test_fuzz 16 with its fork server, test_random_programs 15,
# test_names 11, test_examples 10, test_loop_derivatives 7, test_corpus 7, test_wheel 6,
# test_typing 5.5 with mypy's cache cold, ...).
# `--dist loadfile` gives each worker a whole file at a time, in the order of this list and
# then, for the rest, most test items first (xdist's own order). Heaviest first is what
# balances the two workers: by item count alone test_fuzz (7 items, 13 s) and the wheel
# and mypy tests (a few items, 4-5 s each) were started last, and one worker ran them
# while the other had finished. Update it when a file's cost changes much; a file
# missing from it only runs later.
HEAVIEST_FIRST = (
    "test_ops.py", "test_array_api.py", "test_fuzz.py", "test_random_programs.py",
    "test_names.py", "test_examples.py", "test_loop_derivatives.py", "test_corpus.py",
    "test_wheel.py", "test_typing.py", "test_cli.py", "test_limits.py", "test_verify.py",
    "test_trust_compiler.py", "test_trust_output.py", "test_aliasing.py",
    "test_benchmarks_smoke.py", "test_diagnostics.py", "test_workspace.py", "test_rules.py",
)


def pytest_configure(config):
    """Hypothesis's modules without assertion rewriting (`_no_rewrite_of_hypothesis`), and
    xdist's scheduler taking the test files in our order (`pytest_collection_modifyitems`)
    rather than sorting them by their number of items."""
    _no_rewrite_of_hypothesis(config)
    if getattr(config.option, "loadscopereorder", None):
        config.option.loadscopereorder = False


def _order_files(items) -> None:
    """The files of HEAVIEST_FIRST first, in its order; then the others, most items first
    (as xdist orders them); each file's items kept together and in their order."""
    files = [item.nodeid.split("::", 1)[0] for item in items]
    count = collections.Counter(files)
    first: dict[str, int] = {}
    for i, f in enumerate(files):
        first.setdefault(f, i)
    rank = {name: i for i, name in enumerate(HEAVIEST_FIRST)}

    def key(pair):
        f = pair[0]
        return (rank.get(f.rsplit("/", 1)[-1], len(rank)), -count[f], first[f])

    items[:] = [item for _, item in sorted(zip(files, items), key=key)]


def pytest_collection_modifyitems(config, items):
    _order_files(items)
    if os.environ.get("GRADGEN_LONG") == "1":
        return
    skip_long = pytest.mark.skip(reason="long test: set GRADGEN_LONG=1 to run it")
    for item in items:
        if "long" in item.keywords:
            item.add_marker(skip_long)


def pytest_addoption(parser):
    parser.addoption("--update-golden", action="store_true", default=False,
                     help="rewrite golden files (generated example modules, printed IR) "
                          "from the current compiler instead of comparing against them")


@pytest.fixture
def update_golden(request) -> bool:
    """True when golden files should be rewritten (--update-golden or GRADGEN_UPDATE_GOLDEN=1)."""
    return bool(request.config.getoption("--update-golden")
                or os.environ.get("GRADGEN_UPDATE_GOLDEN") == "1")


@pytest.fixture(autouse=True, scope="session")
def verify_every_rendered_module():
    """Every module the tests render (through the API, the CLI in-process, `load`) passes
    the emitted-module verifier (`gradgen.verify`): a module that fails it fails the test
    that produced it with `VerifyError`. (The verifier costs about as much as compiling, so
    `gradgen` itself does not run it; the test suite checks everything it produces.)

    Each distinct text is verified once per process: many tests compile alike, and the
    fuzzer (tests/fuzzing.py) verifies again what it compiled, so `verify_module` itself
    shares the record of texts that passed (a text that fails raises every time)."""
    from gradgen import compiler, verify
    from gradgen.codegen import emit

    original_render, original_verify = emit.render_module, verify.verify_module
    verified: set[bytes] = set()   # digests of the texts that passed

    def verify_once(source: str) -> None:
        key = hashlib.blake2b(source.encode("utf-8", "surrogatepass"), digest_size=20).digest()
        if key not in verified:
            original_verify(source)
            verified.add(key)

    def render_and_verify(module):
        text = original_render(module)
        verify_once(text)
        return text

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(verify, "verify_module", verify_once)
        mp.setattr(emit, "render_module", render_and_verify)
        mp.setattr(compiler, "render_module", render_and_verify)
        yield


@pytest.fixture(autouse=True, scope="session")
def no_fork_of_the_test_process():
    """`os.fork` raises in the test process: it may hold threads (JAX's, after the jax.jit
    rows; Dask's thread pools), and a fork of a multithreaded process can deadlock in the
    child. Fork from a fresh process instead: `fuzzing.ForkServer` for the fuzz checker, a
    "forkserver" or "spawn" multiprocessing context for a pool. (subprocess is not
    affected: it executes a new program in the child at once.)"""
    def refuse(*args, **kwargs):
        raise AssertionError("os.fork() in the pytest process: fork from a fresh process "
                             "(fuzzing.ForkServer, or a 'forkserver' multiprocessing "
                             "context); see tests/conftest.py")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, "fork", refuse)
        yield


@pytest.fixture(autouse=True, scope="session")
def verify_every_graph():
    """Every graph the pipeline produces (each entry point parsed and optimised, each
    derivative graph, each function optimised and lowered) passes `ir.verify`: the compiler
    checks them at each stage boundary when `compiler.CHECK_GRAPHS` is on, and a graph that
    breaks an invariant fails the test that compiled it with `InternalError`."""
    from gradgen import compiler

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(compiler, "CHECK_GRAPHS", True)
        yield


# The test files that compile with `rules.CHECK_INDEX` on: every rule the engine skips by
# its `inspects`/`operands` is run too and must not apply (InternalError if it does, i.e.
# the rule's index left out arguments it rewrites). The check costs 20-25% of every
# compilation, and what finds a wrong index is the variety of programs compiled, not their
# number: the rules' own tests, the random and fuzzed programs (hypothesis draws op
# combinations no hand-written test has), the corpus and the examples (realistic
# programs), the loop derivatives (rules inside loop bodies). The other files compile the
# op harness's single-op programs and variants of the same small programs again and
# again, which those files reach already. A test elsewhere can ask for the check with
# `@pytest.mark.check_index`.
CHECK_INDEX_FILES = frozenset({
    "test_rules.py", "test_random_programs.py", "test_fuzz.py", "test_corpus.py",
    "test_examples.py", "test_loop_derivatives.py",
})


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """`rules.CHECK_INDEX` on for the items of CHECK_INDEX_FILES and those marked
    `check_index`, during their setup (module fixtures that compile included), call and
    teardown; off for the others."""
    from gradgen.passes import rules

    on = (item.nodeid.split("::", 1)[0].rsplit("/", 1)[-1] in CHECK_INDEX_FILES
          or item.get_closest_marker("check_index") is not None)
    before, rules.CHECK_INDEX = rules.CHECK_INDEX, on
    try:
        yield
    finally:
        rules.CHECK_INDEX = before
