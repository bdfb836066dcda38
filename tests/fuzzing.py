"""The fuzzer of the trust boundary (issue 8): input generators and the checker.

Used by tests/test_fuzz.py (hypothesis, derandomized) and by a stand-alone campaign
(`python tests/fuzzing.py N`). An input is (source text, file name, --hessian). The
property, for every input:

* `gradgen.compile_source` raises `gradgen.CompileError` whose diagnostics are located
  (line >= 1, col >= 1) and whose rendered text has no raw control characters except tab
  and newline; or
* it returns a module that passes the emitted-module verifier (`gradgen.verify`), imports
  in a fresh namespace (cwd a fresh temporary directory) without creating files and
  binding only functions, the NumPy alias and the helpers' constants, and whose functions
  run on random inputs of the declared shapes (dimensions 2..4), leaving their arguments
  unchanged and returning no argument (or a view of one); NumPy's LinAlgError and
  FloatingPointError on unlucky values are accepted;
* anything else (an internal error, more than 10 s, a file written) is a failure.

Each input runs in a forked child process (with a time limit and a 2 GiB address-space
limit), so a hang, a blow-up or a side effect can not hurt the test process.

The generators take a chooser (`RandomChooser(seed)` or `DrawChooser(draw)` from
tests/test_random_programs.py): the campaign and hypothesis write the same inputs.
"""

from __future__ import annotations

import builtins
import collections
import inspect
import os
import pickle
import re
import resource
import select
import shutil
import signal
import sys
import tempfile
import time
import traceback
import types
import unicodedata
import zlib
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from test_random_programs import REGRESSIONS, RandomChooser, generate, pick  # noqa: E402

import gradgen  # noqa: E402
from gradgen.ops.dtypes import INT  # noqa: E402

TIME_LIMIT = 10.0        # seconds to compile or refuse (issue 8, must-be-true 6)
RUN_TIME_LIMIT = 20.0    # seconds to import and run the emitted functions
MEMORY_LIMIT = 2 << 30   # bytes of address space a child may add (2 GiB)
ROOT = HERE.parent

# ---------------------------------------------------------------- corpus and pieces

CORPUS: list[str] = [p.read_text(encoding="utf-8")
                     for p in sorted(ROOT.glob("examples/*/*.grad"))] + list(REGRESSIONS)

# Names that collide with what the generated module defines or uses, and other traps.
HOSTILE_NAMES = [
    "np", "numpy", "float", "int", "len", "getattr", "zip", "enumerate", "tuple", "set",
    "isinstance", "ValueError", "TypeError", "print", "open", "exec", "eval", "range",
    "_sigmoid", "_erf", "_dims", "_expect", "_DIMS_PASSED", "_F_ARGS", "_G_ARGS",
    "__builtins__", "__import__", "__class__", "__name__", "_", "self", "type", "object",
    "f_grad", "f_value_and_grad", "f_vjp", "f_jvp", "f_hvp", "f_hessian", "F", "COST",
    "cost", "ß", "ss", "ﬁ", "fi", "g", "value", "dx", "tx", "vx", "Hvx", "H", "out", "poly",
    "sum", "exp", "log", "mean", "Param", "Data", "N", "D", "shape", "dtype", "T", "e", "pi",
    "inf", "nan", "None", "True", "lambda", "x" * 300, "ℌ", "Ⅸ", "x_1", "dX", "tmp",
]

# Hostile text pieces for docstrings, strings, and file names.
HOSTILE_TEXT = [
    '"""', "'''", '"', "'", "\\", "\\\\", "\\N", "\\N{BULLET}", "\\x00", "\x00", "\\ud800",
    "\ud800", "\udcff", "\u2028", "\u2029", "\x0b", "\x0c", "\r", "\r\n", "\n", "\x1b[31m",
    "\x85", "\\xi", "\\underbrace{x}", "C:\\new\\table", "\t", "{", "}", "{x}", "%s",
    '"""+open("PWNED","w").name+"""', "'''+open('PWNED','w').name+'''",
    '\nopen("PWNED", "w")\n', '\n__import__("os").system("touch PWNED")\n', "# ", "\\\n",
    "é", "𝔵", "\ufeff", "\u202e", "a" * 200,
]

HOSTILE_FILENAMES = [
    "model.grad", "<string>", 'x"""+open("PWNED","w").name+""".grad',
    "x'''+open('PWNED','w').name+'''.grad", 'a\nopen("PWNED", "w")\n.grad', "dat\\x.grad",
    "C:\\new\\t.grad", "'.grad", '".grad', "\x1b[31mred.grad", "a\u2028b.grad", "nul\x00.grad",
    "sur\udcff.grad", "\ud800.grad", "a\rb.grad", "dir/sub/m.grad", "../up.grad", "{x}.grad",
    "%s.grad", " .grad", "é.grad", "x" * 300 + ".grad", "a\\\nb.grad", "#.grad",
    'x -*- coding: unicode_escape -*- \\x0aopen("PWNED", "w")\\x0a#.grad',
    "x -*- coding: utf-7 -*-.grad", "x -*- coding: nonesuch -*-.grad",
]

PY_TOKENS = [
    "def", "return", "if", "else", "for", "in", "while", "lambda", "import", "from", "class",
    "not", "and", "or", "is", "None", "True", "False", "pass", "global", "yield", "with",
    "(", ")", "[", "]", "{", "}", ",", ":", ";", ".", "->", "=", "==", "+", "-", "*", "/",
    "//", "%", "**", "@", "<", ">", "<=", ">=", "!=", "~", "&", "|", "^", "<<", ">>", "...",
    "\n", "\n    ", "\n        ", " ", "\t", "\\\n", "#", ":=", "*args", "**kw",
]
GRADGEN_TOKENS = [
    "Param", "Data", "float", "Param[N]", "Param[()]", "Data[N, D]", "Param[2, 3]",
    "sum", "mean", "exp", "log", "sqrt", "reshape", "zeros", "ones", "eye", "broadcast_to",
    "transpose", "einsum", "softmax", "squeeze", "axis=N", "axis=0", "axes=(N, 0)",
    "keepdims=True", "outer", "inv", "det", "logdet", "solve", "cholesky", "norm", "var",
    "max", "min", "where", "maximum", "concatenate", "stack", "sigmoid", "erf", "clip",
    "x", "y", "w", "N", "D", "x.T", "x[0]", "x[5:2]", "x[::-1]", "(N, 3)", "(N,)", "()",
    # language rev. 2: built-ins, their flags, and the statement forms of the name rules
    "log_sigmoid", "logaddexp", "xlogy", "gammaln", "digamma", "polygamma", "polygamma(1,",
    "polygamma(9, x)", "polygamma(-1, x)", "polygamma(x, x)", "cumsum", "cumprod",
    "logcumsumexp", "reverse=True", "reverse=x", "axis=None", "split", "split(x, 2)",
    "split(x, 0)", "split(x, N)", "tril", "triu", "k=-1", "k=N", "cho_solve",
    "solve_triangular", "lower=False", "lower=x", "inf", "-inf", "where(x > 0, x, -inf)",
    "+=", "-=", "*=", "/=", "**=", "@=", "//=", "%=", "x[0] = ", "x[0] += ", "x[:, 0] = ",
    "x[x > 0] = ", "x.T = ", "mean = mean(x)", "x = x * x", "sum = 1", "del x",
]
NUMBERS = [
    "0", "1", "2", "-1", "0.5", "1e308", "1e-308", "1e309", "9 ** 9 ** 9", "2 ** 2 ** 70",
    "2 ** 10 ** 10", "10 ** 100", "0x7fffffffffffffff", "1_000_000", "0b101", "0o17", "1j",
    "1_0.5e3", "0 / 0", "1 / 0", "0 ** -1", "(-8) ** (1 / 3)", "N ** 100000000", "N // 0",
    str(2 ** 64), "9" * 400, "nan", "inf", "1e-400", "-0.0", "-inf", "inf - inf", "0 * inf",
]


def hostile_string(ch) -> str:
    return "".join(pick(ch, HOSTILE_TEXT) if ch.bool(0.7) else pick(ch, ["a", " ", "x = 1"])
                   for _ in range(ch.int(1, 4)))


def string_literal(ch, text: str) -> str:
    """A Python string literal for `text`: sometimes valid (repr), often raw and hostile."""
    kind = ch.int(0, 5)
    if kind == 0:
        return repr(text)
    if kind == 1:
        return '"""' + text + '"""'
    if kind == 2:
        return "'''" + text + "'''"
    if kind == 3:
        return 'r"""' + text + '"""'
    if kind == 4:
        return '"' + text + '"'
    return "'" + text.replace("'", "\\'") + "'"


def filename(ch) -> str:
    return pick(ch, HOSTILE_FILENAMES) if ch.bool(0.5) else "t.grad"


# ---------------------------------------------------------------- strategy 1: mutations

_TOKEN = re.compile(r"[ \t]+|\n|\w+|\"\"\"|'''|\*\*|//|->|==|!=|<=|>=|.", re.S)


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text)


def mutate(ch) -> str:
    """A valid source with a few token or character mutations."""
    base = pick(ch, CORPUS) if ch.bool(0.6) else generate(ch).source
    toks = tokens(base)
    for _ in range(ch.int(1, 4)):
        if not toks:
            toks = [""]
        i = ch.int(0, len(toks) - 1)
        op = ch.int(0, 9)
        if op == 0:                                   # delete a token
            del toks[i]
        elif op == 1:                                 # duplicate a token
            toks.insert(i, toks[i])
        elif op == 2:                                 # swap two tokens
            j = ch.int(0, len(toks) - 1)
            toks[i], toks[j] = toks[j], toks[i]
        elif op == 3:                                 # insert a hostile token
            toks.insert(i, pick(ch, PY_TOKENS + GRADGEN_TOKENS))
        elif op == 4:                                 # replace a name by a hostile one
            names = [k for k, t in enumerate(toks) if t.isidentifier()]
            if names:
                toks[pick(ch, names)] = pick(ch, HOSTILE_NAMES)
        elif op == 5:                                 # replace a number
            nums = [k for k, t in enumerate(toks) if t[:1].isdigit()] or [i]
            toks[pick(ch, nums)] = pick(ch, NUMBERS)
        elif op == 6:                                 # a hostile string somewhere
            toks.insert(i, string_literal(ch, hostile_string(ch)))
        elif op == 7:                                 # a character change
            t = toks[i]
            k = ch.int(0, len(t))
            c = chr(pick(ch, [0, 9, 10, 11, 12, 13, 27, 34, 39, 92, 0x85, 0x2028, 0xFEFF,
                              0xD800, 0x10FFFF, ch.int(32, 126)]))
            toks[i] = t[:k] + c + t[k + 1:] if ch.bool(0.5) else t[:k] + c + t[k:]
        elif op == 8:                                 # duplicate a span (lines, blocks)
            j = min(len(toks), i + ch.int(1, 40))
            toks[i:i] = toks[i:j]
        else:                                         # wrap a token in deep nesting
            depth = pick(ch, [3, 50, 199, 200, 201, 1000])
            toks[i] = "(" * depth + toks[i] + ")" * depth
    return "".join(toks)


# ---------------------------------------------------------------- strategy 2: token soup

def soup(ch) -> str:
    """Random tokens, often inside an entry-point skeleton so they reach the later stages."""
    pools = [PY_TOKENS, GRADGEN_TOKENS, NUMBERS, HOSTILE_NAMES]
    parts = []
    for _ in range(ch.int(1, 30)):
        r = ch.int(0, 9)
        if r < 8:
            parts.append(pick(ch, pools[r % 4]))
        elif r == 8:
            parts.append(string_literal(ch, hostile_string(ch)))
        else:
            d = pick(ch, [2, 20, 150, 300])
            parts.append(pick(ch, ["(", "[", "-", "not ", "exp("]) * d)
    body = " ".join(parts) if ch.bool(0.7) else "".join(parts)
    shape = ch.int(0, 4)
    if shape == 0:
        return body
    if shape == 1:
        return f"def f(x: Param[N]):\n    return {body}\n"
    if shape == 2:
        return f"def f(x: Param[N], y: Data[N, D]):\n    z = {body}\n    return sum(z)\n"
    if shape == 3:
        return f"def f(x: Param[N]):\n    {body}\n    return sum(x)\n"
    # statements on a matrix that is then rebound and updated (the name rules of rev. 2)
    return (f"def f(x: Param[N, 3], y: Data[N, 3]):\n    {body}\n    x[0] += y[-1]\n"
            f"    x *= 2\n    return sum(x)\n")


# ---------------------------------------------------------------- strategy 3: hostile programs

_KEYWORDS = {"def", "return", "Param", "Data", "float", "import", "None", "True", "False",
             "and", "or", "not", "if", "else", "for", "in", "lambda", "is"}


def hostile_program(ch) -> str:
    """A well-formed program with hostile names (entry points, arguments, variables,
    dimensions, helpers) and a hostile docstring."""
    from gradgen.ops import BUILTINS

    source = generate(ch).source if ch.bool(0.7) else pick(ch, CORPUS)
    toks = tokens(source)
    idents = sorted({t for t in toks if t.isidentifier() and t not in BUILTINS
                     and t not in _KEYWORDS and not t.startswith("axis")})
    mapping = {}
    for name in idents:
        if ch.bool(0.35):
            mapping[name] = pick(ch, HOSTILE_NAMES)
    toks = [mapping.get(t, t) for t in toks]
    # a docstring on an entry point (or the module)
    if ch.bool(0.6):
        doc = string_literal(ch, hostile_string(ch))
        lines = "".join(toks).split("\n")
        defs = [k for k, line in enumerate(lines) if line.startswith("def ")]
        if defs and ch.bool(0.8):
            k = pick(ch, defs)
            # the def line may continue over several lines: put it after the colon line
            while k < len(lines) and not lines[k].rstrip().endswith(":"):
                k += 1
            lines.insert(k + 1, "    " + doc)
        else:
            lines.insert(0, doc)
        return "\n".join(lines)
    # a second entry point whose emitted names may collide with the first's
    if ch.bool(0.3):
        other = pick(ch, HOSTILE_NAMES)
        toks.append(f"\n\ndef {other}(x: Param[N]):\n    return sum(x * x)\n")
    return "".join(toks)


STRATEGIES = {"mutation": mutate, "soup": soup, "hostile": hostile_program}


@dataclass
class Input:
    text: str
    filename: str
    hessian: bool


def make_input(strategy: str, ch) -> Input:
    text = STRATEGIES[strategy](ch)
    return Input(text, filename(ch), ch.bool(0.3))


# ---------------------------------------------------------------- the checker

@dataclass
class Outcome:
    kind: str            # "compiled", "refused" or "failure"
    klass: str = ""      # the failure class (a short normalised description)
    detail: str = ""

    @property
    def failed(self) -> bool:
        return self.kind == "failure"


class _Timeout(BaseException):
    """Raised by the alarm (a BaseException: `except Exception` in gradgen does not eat it)."""


def _on_alarm(signum, frame):
    raise _Timeout()


def _normalise(message: str) -> str:
    message = message.split("\n")[0][:200]
    message = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", message)
    return re.sub(r"\d+", "#", message)


def _where(tb) -> str:
    """The innermost frame of gradgen (or of the generated module) in a traceback."""
    frames = traceback.extract_tb(tb)
    inside = [f for f in frames if "gradgen" in f.filename or "fuzzed" in f.filename]
    f = (inside or frames or [None])[-1]
    if f is None:
        return "?"
    name = f.filename
    if "gradgen/" in name:
        name = name[name.rindex("gradgen/"):]
    return f"{Path(name).name if 'fuzzed' in name else name}:{f.name}"


_CONTROL_OK = {"\t", "\n"}


def _bad_chars(text: str) -> list[str]:
    return sorted({repr(c) for c in text if unicodedata.category(c) == "Cc"
                   and c not in _CONTROL_OK})


def _files(where: Path) -> set[str]:
    return {str(p.relative_to(where)) for p in where.rglob("*")}


def _fail(klass: str, detail: str = "") -> Outcome:
    return Outcome("failure", klass, detail)


def check_in_child(inp: Input, workdir: Path) -> Outcome:
    """The whole check (runs in the child process, cwd = workdir)."""
    import numpy as np

    from gradgen import compiler
    from gradgen.verify import VerifyError, verify_module

    os.chdir(workdir)
    # The module compile_source renders is kept: its functions are the plan the module is
    # run by (`_import_and_run`), so the input is not compiled a second time for it. (This
    # process is the fork that checks one input: the patch ends with it.)
    rendered = []
    render = compiler.render_module

    def render_and_keep(module):
        rendered.append(module)
        return render(module)

    compiler.render_module = render_and_keep
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, TIME_LIMIT)
    try:
        text = gradgen.compile_source(inp.text, filename=inp.filename, hessian=inp.hessian)
    except _Timeout:
        return _fail("compile takes more than 10 s")
    except gradgen.CompileError as e:
        signal.setitimer(signal.ITIMER_REAL, 0)
        if not e.diagnostics:
            return _fail("CompileError without a diagnostic")
        for d in e.diagnostics:
            if not (isinstance(d.line, int) and isinstance(d.col, int)
                    and d.line >= 1 and d.col >= 1):
                return _fail("diagnostic not located", f"{d.line}:{d.col}: {d.message}")
            bad = _bad_chars(d.render())
            if bad:
                where = [part for part, text in (("file name", d.file), ("message", d.message),
                                                 ("source line", d.source_line))
                         if _bad_chars(text)]
                return _fail(f"diagnostic shows raw control characters (from the "
                             f"{' and '.join(where) or 'rendering'})",
                             f"{bad} in {d.render()!r}")
        if _files(workdir):
            return _fail("refusing wrote files", str(_files(workdir)))
        return Outcome("refused")
    except VerifyError as e:   # the test suite verifies inside render_module (conftest)
        return _fail(f"verifier: {_normalise(e.message)}", str(e))
    except MemoryError:
        return _fail("compile: MemoryError")
    except RecursionError:
        return _fail(f"compile: RecursionError at {_where(sys.exc_info()[2])}")
    except Exception as e:
        return _fail(f"compile: internal error {type(e).__name__} at "
                     f"{_where(e.__traceback__)}: {_normalise(str(e))}",
                     traceback.format_exc(limit=-8))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    if _files(workdir):
        return _fail("compiling wrote files", str(_files(workdir)))
    if not isinstance(text, str):
        return _fail("compile_source returned no str", repr(type(text)))
    try:
        verify_module(text)
    except VerifyError as e:
        return _fail(f"verifier: {_normalise(e.message)}", str(e))
    signal.setitimer(signal.ITIMER_REAL, RUN_TIME_LIMIT)
    try:
        return _import_and_run(inp, text, workdir, np, rendered[0] if len(rendered) == 1 else None)
    except _Timeout:
        return _fail("import and run take more than 20 s")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


_IMPLICIT = {"__builtins__", "__name__", "__doc__", "__loader__", "__spec__", "__package__"}


def _import_and_run(inp: Input, text: str, workdir: Path, np, plan=None) -> Outcome:
    """Import the module `text` and call each of its functions (`plan`: the compiler's
    Module it was rendered from, when compile_source rendered one; else compiled here)."""
    module = types.ModuleType("fuzzed_grad")
    try:
        code = compile(text, "fuzzed_grad.py", "exec")
        exec(code, module.__dict__)  # noqa: S102 - the module under test, in a child process
    except Exception as e:
        return _fail(f"import: {type(e).__name__}: {_normalise(str(e))}",
                     traceback.format_exc(limit=-3))
    if _files(workdir):
        return _fail("import wrote files", str(_files(workdir)))
    for name, value in module.__dict__.items():
        if name in _IMPLICIT:
            continue
        if isinstance(value, types.FunctionType):   # (np.errstate wraps _sigmoid)
            value = inspect.unwrap(value)
        ok = (value is np or isinstance(value, (tuple, set)) or (
            # `import numpy.typing as npt` and the annotations' aliases (`Array = ...`)
            value is sys.modules.get("numpy.typing")
            or isinstance(value, (types.GenericAlias, types.UnionType))) or (
            isinstance(value, types.FunctionType)
            and value.__code__.co_filename == "fuzzed_grad.py")
            # `len_ = len`: a built-in under another name (a user's entry point took it)
            or any(value is b for b in vars(builtins).values()))
        if not ok:
            return _fail("import binds an unexpected name", f"{name} = {value!r:.200}")
    if not isinstance(module.__doc__, str):
        return _fail("the module has no docstring")
    # the functions and their argument shapes (from the compiler's own module plan)
    from gradgen import compiler

    if plan is None:   # (a stand-in compiler rendered nothing)
        try:
            plan = compiler.compile_module(inp.text, inp.filename, compiler.make_options(
                hessian=inp.hessian))
        except Exception as e:
            return _fail(f"compile_module differs from compile_source: {type(e).__name__}")
    rng = np.random.default_rng(len(text))
    dims = {}
    calls = []
    for fn in plan.functions:
        func = module.__dict__.get(fn.name)
        if not isinstance(func, types.FunctionType):
            return _fail("an emitted function is missing or not a function", fn.name)
        shapes = []
        for node in fn.graph.inputs:
            shape = []
            for d in node.shape:
                free = getattr(d, "free_symbols", set())
                for s in free:
                    dims.setdefault(s, int(rng.integers(2, 5)))
                try:
                    v = int(d.subs(dims)) if free else int(d)
                except (TypeError, ValueError):
                    return Outcome("compiled", detail="not run: a shape not evaluable")
                if v < 0:
                    return Outcome("compiled", detail="not run: a negative size")
                shape.append(v)
            # literal sizes may be huge (Param[10 ** 9] compiles): too large to run
            if any(v > 10_000 for v in shape) or np.prod(shape, dtype=float) > 1e6:
                return Outcome("compiled", detail="not run: arguments too large")
            shapes.append((shape, node.dtype == INT))
        calls.append((fn, func, shapes))
    for fn, func, shapes in calls:
        args = []
        for shape, integer in shapes:
            if integer:   # an Index or int argument: in range of any axis (sizes are >= 2)
                args.append(rng.integers(0, 2, size=shape) if shape else int(rng.integers(2)))
            elif not shape and rng.random() < 0.5:
                args.append(float(rng.standard_normal()))        # a Python number
            else:
                args.append(rng.standard_normal(shape))
        before = [np.copy(a) for a in args]
        try:
            with np.errstate(all="ignore"):
                result = func(*args)
        except (np.linalg.LinAlgError, FloatingPointError):
            continue
        except Exception as e:
            return _fail(f"run {fn.kind}: {type(e).__name__} at {_where(e.__traceback__)}: "
                         f"{_normalise(str(e))}", traceback.format_exc(limit=-4))
        if _files(workdir):
            return _fail("running wrote files", str(_files(workdir)))
        for a, b in zip(args, before):
            if not np.array_equal(np.asarray(a), b, equal_nan=True):
                return _fail(f"run {fn.kind}: an argument was modified")
        flat = _flatten(result)
        for r in flat:
            if isinstance(r, np.ndarray):
                if any(isinstance(a, np.ndarray) and np.shares_memory(r, a) for a in args):
                    return _fail(f"run {fn.kind}: a result shares memory with an argument")
                if not r.flags.writeable:
                    return _fail(f"run {fn.kind}: a result is read-only")
        arrays = [r for r in flat if isinstance(r, np.ndarray) and r.size]
        for i, r in enumerate(arrays):
            if any(np.shares_memory(r, s) for s in arrays[i + 1:]):
                return _fail(f"run {fn.kind}: two results share memory")
    return Outcome("compiled")


def _flatten(result) -> list:
    if isinstance(result, tuple):
        return [x for r in result for x in _flatten(r)]
    return [result]


def check(inp: Input) -> Outcome:
    """Check one input in a forked child process (time and memory limited)."""
    workdir = Path(tempfile.mkdtemp(prefix="gradgen-fuzz-"))
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:   # the child
        code = 0
        try:
            os.close(read)
            soft, hard = resource.getrlimit(resource.RLIMIT_AS)
            vm = _vm_size()
            if vm:
                resource.setrlimit(resource.RLIMIT_AS, (vm + MEMORY_LIMIT, hard))
            try:
                out = check_in_child(inp, workdir)
            except BaseException as e:   # noqa: BLE001 - reported to the parent
                out = _fail(f"checker: {type(e).__name__}", traceback.format_exc(limit=-5))
            data = pickle.dumps(out)
            with os.fdopen(write, "wb") as f:
                f.write(data)
        except BaseException:   # noqa: BLE001
            code = 1
        finally:
            os._exit(code)
    os.close(write)
    deadline = time.monotonic() + TIME_LIMIT + RUN_TIME_LIMIT + 15
    chunks = []
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                os.kill(pid, signal.SIGKILL)
                return _fail("hang: no answer within the hard limit (killed)")
            ready, _, _ = select.select([read], [], [], left)
            if ready:
                chunk = os.read(read, 1 << 16)
                if not chunk:
                    break
                chunks.append(chunk)
    finally:
        os.close(read)
        _, status = os.waitpid(pid, 0)
        shutil.rmtree(workdir, ignore_errors=True)
    if not chunks:
        sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
        return _fail(f"the child died ({'signal ' + str(sig) if sig else 'status ' + str(status)})"
                     " - a crash or the memory limit")
    return pickle.loads(b"".join(chunks))


def _vm_size() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


# ---------------------------------------------------------------- a small process to fork from

@dataclass
class StandIn:
    """A stand-in for `gradgen.compile_source` (picklable, for `ForkServer.check`): it
    returns `text` whatever it is asked, or raises ZeroDivisionError when `text` is None."""
    text: str | None

    def __call__(self, *args, **kwargs) -> str:
        if self.text is None:
            return 1 / 0
        return self.text


class ForkServer:
    """`check`, with each child forked from a small helper process instead of the caller.

    A fork copies the forking process's page tables, and every page either side writes
    afterwards (reference counts included) is copied too: from a pytest worker that has
    run the op table and the random programs, an input cost twice the CPU it costs from a
    fresh interpreter (test_fuzz.py: 21 s in the suite, 10 s alone). The helper
    (`serve`, started once) imports this module and then only forks: every input is still
    checked by `check`, in a fresh fork, with the same limits and the same verifier;
    the suite's checks (`checks_now`) are set there as they are in the caller (the
    suite's conftest turns them on). What the caller monkeypatches is not seen there: tests that
    patch the compiler pass a `stand_in` (the helper patches it there).

    Forking from the caller instead is a risk, not only a cost: a pytest worker that ran
    the jax.jit rows of test_array_api has JAX's threads, and a fork of a multithreaded
    process may deadlock in the child (a lock held by a thread that is not copied). So the
    tests never call `check` in the worker; they all go through a ForkServer.

    warm=False skips the warm-up: the helper is then a fresh interpreter doing exactly
    what `check` does when called there (the reference the warm helper is compared to)."""

    def __init__(self, warm: bool = True) -> None:
        import subprocess

        self.proc = subprocess.Popen(
            [sys.executable, "-c", "import fuzzing; fuzzing.serve()",
             str(int(bool(warm))), *(str(int(bool(on))) for on in checks_now())],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=str(HERE))

    def check(self, inp: Input, stand_in: StandIn | None = None) -> Outcome:
        """The outcome of `check(inp)`, run by the helper; with `stand_in`, the helper's
        `gradgen.compile_source` is replaced by it for this input (the checker's own test:
        does it report a module that misbehaves?)."""
        try:
            _send(self.proc.stdin, pickle.dumps((inp, stand_in)))
            # `check` answers within its own hard limit; a little more for the helper
            data = _receive(self.proc.stdout, TIME_LIMIT + RUN_TIME_LIMIT + 30)
        except (OSError, EOFError, TimeoutError) as e:
            self.close()
            return _fail(f"the fork server failed ({type(e).__name__})")
        return pickle.loads(data)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass


def _send(f, data: bytes) -> None:
    f.write(len(data).to_bytes(8, "little") + data)
    f.flush()


def _receive(f, timeout: float | None) -> bytes:
    """One length-prefixed message from the pipe `f` (EOFError at its end, TimeoutError
    after `timeout` seconds; None: no time limit)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    fd, buf, size = f.fileno(), b"", None
    while size is None or len(buf) < size + 8:
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and (left <= 0 or not select.select([fd], [], [], left)[0]):
            raise TimeoutError
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            raise EOFError
        buf += chunk
        if size is None and len(buf) >= 8:
            size = int.from_bytes(buf[:8], "little")
    return buf[8:]


def _warm() -> None:
    """Compile, verify and import the examples once before forking: the lazy imports,
    templates and caches a compilation makes on first use are then made once, not in every
    child (a fork of the test worker inherited them from the tests that ran before)."""
    import gc

    from gradgen.verify import verify_module

    for text in CORPUS:
        if not text.startswith(("#", "def", "@", '"""')) or len(text) > 4000:
            continue
        try:
            module = gradgen.compile_source(text, "warm.grad", hessian=True)
        except gradgen.CompileError:   # (a non-scalar output has no Hessian)
            try:
                module = gradgen.compile_source(text, "warm.grad")
            except gradgen.CompileError:
                continue
        verify_module(module)
        exec(compile(module, "warm", "exec"), {})  # noqa: S102 - verified above
    gc.collect()
    gc.freeze()   # what is alive now stays out of the children's collections


def serve() -> None:
    """The helper of `ForkServer`: reads inputs from stdin, answers their outcomes on
    stdout (its own fds 0 and 1 then point elsewhere, so nothing a child prints can mix
    into the answers)."""
    set_checks(sys.argv[-2] == "1", sys.argv[-1] == "1")
    if sys.argv[-3] == "1":
        _warm()
    requests, answers = os.fdopen(os.dup(0), "rb"), os.fdopen(os.dup(1), "wb")
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(2, 1)
    while True:
        try:
            inp, stand_in = pickle.loads(_receive(requests, None))
        except EOFError:
            return
        if stand_in is None:
            outcome = check(inp)
        else:
            real = gradgen.compile_source
            gradgen.compile_source = stand_in
            try:
                outcome = check(inp)
            finally:
                gradgen.compile_source = real
        _send(answers, pickle.dumps(outcome))


# ---------------------------------------------------------------- a campaign

def checks_now() -> tuple[bool, bool]:
    """The suite's checks as this process has them (tests/conftest.py turns the first on,
    and the second for the files of its CHECK_INDEX_FILES, test_fuzz among them): each
    stage's graph verified (`compiler.CHECK_GRAPHS`), each rule the index leaves out
    tried and found not to apply (`rules.CHECK_INDEX`)."""
    from gradgen import compiler
    from gradgen.passes import rules

    return compiler.CHECK_GRAPHS, rules.CHECK_INDEX


def set_checks(graphs: bool, index: bool) -> None:
    """Set the suite's checks (`checks_now`) in this process: a helper the caller starts."""
    from gradgen import compiler
    from gradgen.passes import rules

    compiler.CHECK_GRAPHS, rules.CHECK_INDEX = graphs, index


def _one(job):
    strategy, seed = job
    inp = make_input(strategy, RandomChooser(zlib.crc32(f"{strategy}{seed}".encode())))
    return strategy, seed, inp, check(inp)


def campaign(n: int, first_seed: int = 0, strategies=tuple(STRATEGIES), workers: int = 1,
             out=None, examples: dict | None = None) -> collections.Counter:
    """`n` inputs per strategy (seeds first_seed...), checked by `workers` processes;
    prints the counts and each failure class with its shortest input; returns the
    classes' counts. `examples` (if given) receives class -> (input, outcome, strategy,
    seed)."""
    import multiprocessing

    out = out or sys.stdout
    counts: collections.Counter = collections.Counter()
    classes: collections.Counter = collections.Counter()
    examples = {} if examples is None else examples
    start = time.monotonic()
    jobs = [(s, seed) for s in strategies for seed in range(first_seed, first_seed + n)]
    if workers > 1:
        # Not a fork of the caller (a pytest worker may have JAX's threads: ForkServer says
        # why): the pool's processes are forked from a fresh server process, and are told
        # the caller's checks (conftest turns them on for the suite).
        pool = multiprocessing.get_context("forkserver").Pool(
            workers, initializer=set_checks, initargs=checks_now())
        results = pool.imap_unordered(_one, jobs, chunksize=4)
    else:
        pool, results = None, map(_one, jobs)
    try:
        for strategy, seed, inp, result in results:
            counts[result.kind] += 1
            counts[f"{strategy}:{result.kind}"] += 1
            if result.detail.startswith("not run"):
                counts["not run"] += 1
            if result.failed:
                classes[result.klass] += 1
                old = examples.get(result.klass)
                if old is None or len(inp.text) + len(inp.filename) < len(
                        old[0].text) + len(old[0].filename):
                    examples[result.klass] = (inp, result, strategy, seed)
    finally:
        if pool is not None:
            pool.terminate()
    print(f"{len(jobs)} inputs in {time.monotonic() - start:.0f} s: "
          f"{counts['compiled']} compiled, {counts['refused']} refused with a diagnostic, "
          f"{counts['failure']} failures ({len(classes)} classes); {counts['not run']} of the "
          "compiled modules not run (arguments too large)", file=out)
    for strategy in strategies:
        print(f"  {strategy}: " + ", ".join(f"{counts[f'{strategy}:{k}']} {k}"
                                            for k in ("compiled", "refused", "failure")),
              file=out)
    for klass, c in classes.most_common():
        inp, _, strategy, seed = examples[klass]
        print(f"{c:6d}  {klass}\n        shortest ({strategy} seed {seed}): "
              f"filename={inp.filename!r} hessian={inp.hessian} text={inp.text[:400]!r}",
              file=out)
    out.flush()
    return classes


if __name__ == "__main__":
    campaign(int(sys.argv[1]) if len(sys.argv) > 1 else 100,
             int(sys.argv[2]) if len(sys.argv) > 2 else 0,
             tuple(sys.argv[3].split(",")) if len(sys.argv) > 3 else tuple(STRATEGIES),
             int(sys.argv[4]) if len(sys.argv) > 4 else 1)
