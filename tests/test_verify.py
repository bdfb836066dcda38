"""The emitted-module verifier (`gradgen.verify`): every module the generator writes passes
it; any statement or expression injected into one, in any position, fails it.

(tests/conftest.py also runs it on every module any test renders.)
"""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

import pytest
from compiled import compile_text

import gradgen
from gradgen.verify import VerifyError, verify_module

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = sorted(ROOT.glob("examples/*/*_grad.py"))
SOURCES = sorted(ROOT.glob("examples/*/*.grad"))
MLP = (ROOT / "examples/mlp/mlp_grad.py").read_text(encoding="utf-8")


@pytest.mark.parametrize("path", GOLDEN, ids=[p.name for p in GOLDEN])
def test_every_example_module_passes(path):
    verify_module(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("options", [{}, {"hessian": True}, {"checks": False},
                                     {"modes": ["vjp"]}], ids=["default", "hessian",
                                                               "no-checks", "vjp"])
@pytest.mark.parametrize("path", SOURCES, ids=[p.name for p in SOURCES])
def test_every_example_compiles_to_a_module_that_passes(path, options):
    try:
        text = compile_text(path.read_text(encoding="utf-8"), path.name, **options)
    except gradgen.CompileError:
        pytest.skip("these options do not apply to this example")   # e.g. --hessian
    verify_module(text)


def test_another_numpy_alias_is_followed():
    """The alias is whatever `import numpy as X` says (a user name may take `np`)."""
    text = re.sub(r"\bnp\.", "_np.", MLP).replace("import numpy as np", "import numpy as _np")
    verify_module(text)
    with pytest.raises(VerifyError, match="'np' is not defined"):
        verify_module(text.replace("_np.exp(", "np.exp(", 1))


def test_argument_checks_a_helper_may_need_pass():
    """What an argument-conversion helper would write (the type's name in a message)."""
    helper = ('def _array(name, x):\n'
              '    if not isinstance(x, np.ndarray) or not np.issubdtype(x.dtype, np.floating):\n'
              '        raise TypeError(f"argument {name!r}: expected a float array, got "\n'
              '                        f"{type(x).__name__}")\n'
              '    return x\n')
    text = MLP.replace("\n\n\ndef _expect(", "\n\n\n" + helper + "\n\ndef _expect(")
    assert helper in text
    verify_module(text)


def test_a_function_named_like_an_unused_builtin_passes():
    verify_module(MLP + "\n\ndef sorted(x):\n    return x\n")


def test_dunder_arguments_and_locals_pass_but_not_dunder_globals():
    # A user's argument may be called `__builtins__` (a local changes nothing); reading a
    # dunder name that is not local (`__import__`, `__builtins__`) is refused.
    verify_module(MLP.replace("def cost(X: Array, Y: Array, V: Array, W: Array) -> Scalar:",
                                  "def cost(X: Array, Y: Array, V: Array, W: Array, __builtins__) -> Scalar:"))
    with pytest.raises(VerifyError):
        verify_module(MLP.replace("def cost(X: Array, Y: Array, V: Array, W: Array) -> Scalar:\n",
                                  "def cost(X: Array, Y: Array, V: Array, W: Array) -> Scalar:\n    __builtins__\n"))


# ---------------------------------------------------------------- injections


@functools.lru_cache(maxsize=None)   # (called ~75 times on one text while collecting)
def _function_body_line(text: str, name: str) -> int:
    """The line (1-based) after the docstring of function `name`."""
    for node in ast.parse(text).body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return node.body[0].end_lineno + 1
    raise AssertionError(name)


def in_function(stmt: str, fn: str = "cost") -> str:
    """MLP's module with `stmt` (lines) inserted at the start of `fn`'s body."""
    lines = MLP.split("\n")
    at = _function_body_line(MLP, fn) - 1
    return "\n".join(lines[:at] + ["    " + s for s in stmt.split("\n")] + lines[at:])


def in_helper(stmt: str) -> str:
    return in_function(stmt, "_dims")


def at_module(stmt: str, after: str = "import numpy as np") -> str:
    """MLP's module with `stmt` inserted at module level after the line `after`."""
    return MLP.replace(after + "\n", after + "\n" + stmt + "\n", 1)


def replaced(old: str, new: str) -> str:
    assert old in MLP, old
    return MLP.replace(old, new, 1)


INJECTIONS = {
    # at import: module-level statements
    "import-os": at_module("import os"),
    "import-from": at_module("from os import system"),
    "second-numpy-import": at_module("import numpy as np2"),
    "import-in-function": in_function("import os"),
    "module-call": at_module('open("PWNED", "w")'),
    "module-call-of-entry": MLP + "\n\ncost(1.0, 1.0, 1.0, 1.0)\n",
    "module-call-with-argument": MLP + "\n\n_sigmoid(1.0)\n",
    "module-call-before-def": at_module("_reuse_freed_memory()"),
    "module-call-twice": MLP + "\n\n_reuse_freed_memory()\n",
    "module-call-of-attribute": at_module("np.empty(10)"),
    "module-call-with-keyword": replaced("_reuse_freed_memory()\n", "_reuse_freed_memory(x=1)\n"),
    "module-print": at_module('print("hi")'),
    "module-assign-public": at_module("X = 1"),
    "module-assign-dunder-import": at_module('_os = __import__("os")'),
    "module-spec-with-call": at_module('_G_ARGS = (("x", (open("PWNED", "w"),)),)'),
    "module-state-not-a-set": replaced("_DIMS_PASSED = set[tuple[object, object]]()", '_DIMS_PASSED = open("P", "w")'),
    "module-string-statement": at_module('"""not the docstring"""'),
    "module-class": at_module("class C:\n    pass"),
    "module-if": at_module("if True:\n    X = 1"),
    "module-with": at_module('with open("PWNED", "w"):\n    pass'),
    "module-try": at_module("try:\n    pass\nexcept Exception:\n    pass"),
    "module-global": at_module("global X"),
    "module-lambda": at_module("_f = lambda: 0"),
    "module-docstring-expression": replaced(
        '"""NumPy functions and derivatives generated by gradgen from mlp.grad."""',
        '"""doc""" + open("PWNED", "w").name'),
    "module-redefines-helper": at_module("def _sigmoid(x):\n    return x", after="_DIMS_PASSED = set[tuple[object, object]]()"),
    "module-redefines-entry": MLP + "\n\ndef cost(X, Y, V, W):\n    return 0\n",
    "module-shadows-used-builtin": MLP + "\n\ndef len(x):\n    return 0\n",
    "module-rebinds-np": at_module("def np(x):\n    return x", after="_DIMS_PASSED = set[tuple[object, object]]()"),
    "decorator-not-errstate": replaced("def cost(X: Array, Y: Array, V: Array, W: Array) -> Scalar:",
                                       "@print\ndef cost(X: Array, Y: Array, V: Array, W: Array) -> Scalar:"),
    "decorator-errstate-call-arg": replaced('@np.errstate(over="ignore")',
                                            '@np.errstate(over=open("PWNED", "w").name)'),
    "default-argument-call": replaced("def cost(X: Array, Y: Array, V: Array, W: Array) -> Scalar:",
                                      'def cost(X: Array, Y: Array, V: Array, W: Array = open("PWNED", "w")) -> Scalar:'),
    "keyword-only-argument": replaced("def cost(X: Array, Y: Array, V: Array, W: Array) -> Scalar:", "def cost(X: Array, Y: Array, V: Array, *, W: Array) -> Scalar:"),
    "type-alias-call": replaced("Array = npt.NDArray[np.floating]",
                                'Array = npt.NDArray[open("PWNED", "w")]'),
    "type-alias-after-def": MLP + "\n\nArray = npt.NDArray[np.floating]\n",
    "return-annotation-call": replaced("def cost(X: Array, Y: Array, V: Array, W: Array) -> Scalar:",
                                      'def cost(X: Array, Y: Array, V: Array, W: Array) -> print("x"):'),
    "second-typing-import": replaced("import numpy.typing as npt", "import os as npt"),
    "annotation": replaced("def cost(X: Array, Y: Array, V: Array, W: Array) -> Scalar:", 'def cost(X: Array, Y: Array, V: Array, W: print("x")) -> Scalar:'),
    "async-def": at_module("async def _a(x):\n    return x", after="_DIMS_PASSED = set[tuple[object, object]]()"),
    "argument-shadows-np": replaced("def cost(X: Array, Y: Array, V: Array, W: Array) -> Scalar:", "def cost(X: Array, Y: Array, V: Array, W: Array, np) -> Scalar:"),
    "argument-shadows-helper": replaced("def cost(X: Array, Y: Array, V: Array, W: Array) -> Scalar:",
                                        "def cost(X: Array, Y: Array, V: Array, W: Array, _dims) -> Scalar:"),
    # at a call: statements in a function
    "os-system": in_function('os.system("touch PWNED")'),
    "open": in_function('open("PWNED", "w")'),
    "open-assigned": in_function('f = open("PWNED", "w")'),
    "dunder-import": in_function('__import__("os").system("touch PWNED")'),
    "exec": in_function('exec("1")'),
    "eval": in_function('eval("1")'),
    "compile": in_function('compile("1", "f", "exec")'),
    "print": in_function("print(X)"),
    "input-builtin": in_function("input()"),
    "globals": in_function("g = globals()"),
    "dunder-globals": in_function("g = _sigmoid.__globals__"),
    "dunder-class-chain": in_function("g = X.__class__.__bases__"),
    "dunder-subclasses": in_function("g = X.__class__.__subclasses__()"),
    "dunder-builtins-name": in_function("g = __builtins__"),
    "getattr-variable-name": in_function("g = getattr(X, Y)"),
    "getattr-dunder": in_function('g = getattr(X, "__class__")'),
    "getattr-numpy-load": in_function('g = getattr(np, "load")'),
    "call-of-call": in_function('getattr(X, "shape")()'),
    "call-of-subscript": in_function("X[0]()"),
    "numpy-save": in_function('np.save("PWNED", X)'),
    "numpy-load": in_function('g = np.load("PWNED")'),
    "numpy-deep-chain": in_function('np.lib.npyio.savetxt("PWNED", X)'),
    "numpy-as-value": in_function("g = np"),
    "numpy-attribute-store": in_function("np.pi = 3"),
    "array-tofile": in_function('X.tofile("PWNED")'),
    "array-method-dump": in_function('X.dump("PWNED")'),
    "array-attribute-ctypes": in_function("g = X.ctypes"),
    "attribute-store": in_function("X.shape = (1,)"),
    "string-statement": in_function('"""a string statement"""'),
    "string-argument": in_function('g = np.exp("x")'),
    "bytes": in_function('g = b"x"'),
    "fstring-outside-raise": in_function('g = f"{X}"'),
    "class": in_function("class C:\n    pass"),
    "lambda": in_function("g = lambda: 0"),
    "lambda-called": in_function("(lambda: 0)()"),
    "global": in_function("global _DIMS_PASSED"),
    "nonlocal-in-nested": in_helper("def h():\n    nonlocal shapes"),
    "nested-def-in-entry": in_function("def h():\n    return 0"),
    "while": in_function("while True:\n    pass"),
    "try": in_function("try:\n    pass\nexcept Exception:\n    pass"),
    "with": in_function("with np.errstate():\n    pass"),
    "assert": in_function("assert X"),
    "del-numpy-attribute": in_function("del np.pi"),
    "yield": in_function("yield X"),
    "await": in_function("await X"),
    "comprehension": in_function("g = [x for x in X]"),
    "generator": in_function("g = sum(x for x in X)"),
    "set-literal": in_function("g = {1}"),
    "walrus": in_function("g = (h := 1)"),
    "starred-call": in_function("_dims(_COST_ARGS, *X)"),
    "kwargs-call": in_function("g = np.sum(X, **{})"),
    "unknown-keyword": in_function("g = np.sum(X, where=X)"),
    "raise-systemexit": in_function("raise SystemExit(1)"),
    "raise-from": in_function('raise ValueError("x") from None'),
    "raise-computed": in_function("raise ValueError(open('PWNED'))"),
    "undefined-name": in_function("g = nan"),
    "local-value-called": in_function("X()"),
    "local-shadows-used-builtin": in_helper("len = 1"),
    "einsum-odd-spec": in_function('g = np.einsum("ij\'; import os", X)'),
    "function-as-value": in_function("g = _sigmoid"),
    "bare-expression": in_function("X + 1"),
    "complex-constant": in_function("g = 1j"),
    "method-on-numpy-module": in_function("g = np.sum.copy()"),
    "range-loop": in_function("for i in range(10 ** 12):\n    continue"),
    "reversed-range-loop": in_function("for i in reversed(range(2, 2 ** 40)):\n    pass"),
    "range-of-a-call": in_function("for i in range(len(x) * 10 ** 9):\n    pass"),
    "augassign-argument": in_function("X += 1"),
    "subscript-store-argument": in_function("X[0] = 1"),
    "out-into-argument": in_function("np.exp(X, out=X)"),
    "type-making-a-class": in_function('g = type("C", (), {})'),
    "type-dunder-other-than-name": in_function("g = type(X).__subclasses__"),
    "hasattr-dunder": in_function('g = hasattr(X, "__class__")'),
    "dunder-class-as-value": in_helper("g = spec.__class__"),
}


# Reported where the injection takes effect, not where it is.
REPORTED_AT_USE = {"local-shadows-used-builtin": "len("}   # the first call of len


@pytest.mark.parametrize("name", INJECTIONS)
def test_injection_fails(name):
    text = INJECTIONS[name]
    try:
        ast.parse(text)
    except SyntaxError:   # an injection a generated module could never carry
        pytest.fail("the injected module does not parse: fix the test")
    with pytest.raises(VerifyError) as info:
        verify_module(text)
    assert info.value.line >= 1
    # the location points at the injection (a line that differs from the original's), or
    # at the definition the injection breaks (a name bound twice or shadowed)
    original = MLP.split("\n")
    line = text.split("\n")[info.value.line - 1]
    if name in REPORTED_AT_USE:
        assert REPORTED_AT_USE[name] in line, (info.value, line)
        return
    assert line not in original or text.count(line) > MLP.count(line) \
        or line.startswith("def "), (info.value, line)


def test_injections_are_single_changes():
    """Each injected module differs from the original by the injection only."""
    for name, text in INJECTIONS.items():
        assert text != MLP, name


@pytest.mark.parametrize("codec", ["unicode_escape", "utf-7", "latin-1", "no-such-codec"])
def test_a_coding_declaration_other_than_utf8_fails(codec):
    """A file name in the header could declare the codec a file of the module is read in:
    `unicode_escape` turns `\\x0a` in the comment into a line of code at import."""
    first, rest = MLP.split("\n", 1)
    text = first + f" -*- coding: {codec} -*- \\x0aopen('PWNED', 'w')\\x0a#\n" + rest
    with pytest.raises(VerifyError, match="coding declaration") as info:
        verify_module(text)
    assert info.value.line == 1
    verify_module(first + " -*- coding: utf-8 -*-\n" + rest)


def test_a_lone_surrogate_fails_where_it_is():
    text = in_function("g = 1")
    text = text.replace("g = 1", "g = 1  # \udcff")
    with pytest.raises(VerifyError, match="lone surrogate") as info:
        verify_module(text)
    assert info.value.line == _function_body_line(MLP, "cost")
    assert info.value.col == len("    g = 1  # ") + 1


def test_unparsable_text_fails():
    with pytest.raises(VerifyError, match="does not parse"):
        verify_module(MLP + "\ndef (\n")
    with pytest.raises(VerifyError, match="does not parse"):
        verify_module("import numpy as np\nx = '\x00'\n")


def test_error_names_the_line_and_what():
    with pytest.raises(VerifyError) as info:
        verify_module(in_function('open("PWNED", "w")'))
    line = _function_body_line(MLP, "cost")
    assert (info.value.line, info.value.col) == (line, 5)
    assert "a call of 'open'" in str(info.value)
    assert str(info.value).startswith(f"line {line}, column 5: ")


def test_an_entry_point_named_like_a_helpers_local_function_passes():
    # _erf defines and calls a local `poly`; a user's entry point `poly` is another name
    # (found by the fuzz campaign: the verifier took the local call for a module call).
    source = gradgen.compile_source("def poly(x: Param[N]):\n    return sum(erf(x))\n")
    assert "def poly(" in source and "_erf(" in source
    verify_module(source)


# The verifier parses a module in parts cut at top-level lines after two blank lines, and
# remembers parts (from their second sighting on) and the helpers that passed
# (verify_module's docstring): a cut inside a string or brackets, or a helper in another
# module context, is verified as before.

def test_a_part_is_kept_from_its_second_sighting_on():
    """A module's own functions are rarely seen again: the verifier keeps a part's syntax
    tree only once its text comes a second time (a kept tree is scanned by every full pass
    of the garbage collector of a long-lived process)."""
    from gradgen import verify

    # (compile_source verified its module once: this text, renamed, is new to the verifier)
    source = gradgen.compile_source("def probe(x: Param[N]):\n    return sum(x * x)\n")
    source = source.replace("probe", "kept_part_probe")

    def kept() -> bool:
        return any(t.startswith("def kept_part_probe_grad(") for t in verify._PARTS)

    verify_module(source)
    assert not kept()
    verify_module(source)
    assert kept()


def test_a_cut_inside_a_string_is_only_text():
    code = "\n\n\nimport os\n\n\ndef evil():\n    os.system('x')\n\n\n"
    verify_module(MLP.replace("NumPy functions and", f"NumPy functions{code}and", 1))
    with pytest.raises(VerifyError, match="an import of something other than numpy"):
        verify_module(MLP.replace("NumPy functions and", f'NumPy functions"""{code}"""and', 1))


def test_a_helper_that_passed_is_checked_again_in_another_module_context():
    verify_module(MLP)
    verify_module(MLP)   # (seen twice: its parts are kept) its helpers passed, in its context
    # The same helpers in a module where one of their locals shadows a module-level name
    # (NumPy imported as `shape`, a local of _dims): refused.
    with pytest.raises(VerifyError, match="'shape' in function '_dims' shadows"):
        verify_module(re.sub(r"\bnp\b", "shape", MLP))


def test_an_error_after_cached_parts_names_its_line():
    verify_module(MLP)
    verify_module(MLP)
    bad = in_helper('open("PWNED", "w")')
    with pytest.raises(VerifyError) as info:
        verify_module(bad)
    line = bad[:bad.index('open("PWNED"')].count("\n") + 1
    assert info.value.line == line
