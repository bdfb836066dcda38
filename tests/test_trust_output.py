"""Issue 8, the emitted text and the files: what a source echoes into the module is inert.

File names, docstrings and source lines reach the emitted module only through the escaping
functions of `gradgen.escape`; these tests attack every such place with payloads that would
create a file if they ran, and check, for any text hypothesis draws, that the module parses,
gives the text back, and does nothing on import and call but its arithmetic.
"""

from __future__ import annotations

import ast
import os
import types

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import gradgen
from gradgen import cli
from gradgen.escape import comment_text, docstring_literal, terminal_text

BODY = "    y = x * x\n    return sum(y)\n"
PAYLOAD = 'open("PWNED", "w").close()'
PROPERTY = settings(max_examples=60, derandomize=True, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])

# Any text: every code point, lone surrogates included, with the dangerous ones made likely.
NASTY = st.sampled_from(['"', "'", '"""', "\\", "\\N", "\\x", "\x00", "\n", "\r", "\x0b", "\x0c",
                         "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029", "\x1b[2J", "\ud800",
                         "\udcff", "\t", " ", "\u202e", "\ufeff", "#", PAYLOAD])
TEXT = st.lists(st.one_of(NASTY, st.characters(), st.text(max_size=5)), max_size=12).map("".join)


def docstring_source(doc: str) -> str:
    """A source whose entry point has docstring `doc` (written as a Python literal)."""
    return f"def f(x: Param[N]):\n    {doc!r}\n{BODY}"


def run_module(source: str, where) -> types.ModuleType:
    """Import `source` and call every function, with `where` as the working directory;
    nothing may appear there."""
    before = set(os.listdir(where))
    cwd = os.getcwd()
    os.chdir(where)
    try:
        ast.parse(source)
        module = types.ModuleType("emitted")
        exec(compile(source, "emitted.py", "exec"), module.__dict__)
        x = np.linspace(0.5, 1.5, 3)
        module.f(x), module.f_grad(x), module.f_value_and_grad(x)
        module.f_vjp(x, 1.0), module.f_jvp(x, x), module.f_hvp(x, x)
    finally:
        os.chdir(cwd)
    assert set(os.listdir(where)) == before
    expected = {"np", "_dims", "_expect", "_DIMS_PASSED", "_F_ARGS", "f", "f_grad",
                "f_value_and_grad", "f_vjp", "f_jvp", "f_hvp"}
    names = {n for n in vars(module) if not n.startswith("__")}
    assert names <= expected | {n for n in names if n.startswith("_") and callable(
        getattr(module, n)) and getattr(getattr(module, n), "__module__", None) is None}
    assert {"f", "f_grad", "np"} <= names
    return module


def dedent(doc: str) -> list[str]:
    """The lines of a function's docstring value without the 4-space indent gradgen adds."""
    return [line.removeprefix("    ") for line in doc.split("\n")]


def user_lines(doc: str) -> list[str]:
    """The lines of a user's docstring as gradgen shows them: split at newlines only (a form
    feed or U+2028 is part of its line), stripped."""
    doc = doc.strip()
    return [line.strip() for line in doc.split("\n")] if doc else []


# ---------------------------------------------------------------------------- escaping functions


@PROPERTY
@given(TEXT, st.sampled_from([None, "", "    "]))
def test_docstring_literal_round_trips_any_text(text, indent):
    literal = docstring_literal(text, indent)
    value = ast.literal_eval(literal)
    if indent is None:
        assert value == text
    else:
        lines = text.split("\n")
        want = "\n".join([lines[0], *(indent + ln if ln else ln for ln in lines[1:])]) + \
            "\n" + indent
        assert value == want
    assert literal.isascii() or all(ch == "\n" or ch.isprintable() for ch in literal)
    assert len(literal.splitlines()) == literal.count("\n") + 1   # no line break but \n


@pytest.mark.parametrize("text, literal", [
    ("The loss.", '"""The loss.\n    """'),
    ("Sum of x.\n\nMore, 'quoted' \"words\".", '"""Sum of x.\n\n    More, \'quoted\' "words".\n    """'),
    ("\u00c9nergie \u03b8, \u4e2d\u6587.", '"""\u00c9nergie \u03b8, \u4e2d\u6587.\n    """'),
])
def test_ordinary_docstrings_stay_as_written(text, literal):
    assert docstring_literal(text, "    ") == literal


@pytest.mark.parametrize("text", [r"\xi = \underbrace{x}", r"C:\Users\me", "\\N{x}\\"])
def test_backslashes_give_a_raw_literal_that_reads_as_written(text):
    literal = docstring_literal(text, "    ")
    assert literal == f'r"""{text}\n    """'
    assert ast.literal_eval(literal) == text + "\n    "


@PROPERTY
@given(TEXT)
def test_comment_and_terminal_text_end_no_line(text):
    for safe in (comment_text(text), terminal_text(text)):
        assert len(safe.splitlines()) <= 1
        assert "\x1b" not in safe and "\x00" not in safe
        safe.encode("utf-8")   # no lone surrogate
        assert len(list(__import__("tokenize").generate_tokens(
            iter([f"# {safe}\n"]).__next__))) == 3   # COMMENT, NL, ENDMARKER


def test_terminal_text_keeps_what_it_is_told_to():
    assert terminal_text("a\tb\x1b[31m\n", keep="\t\n") == "a\tb\\x1b[31m\n"


# ---------------------------------------------------------------------------- item 3: docstrings


@pytest.mark.parametrize("doc", [
    f'x"""\n{PAYLOAD}\n"""',           # closes the literal and runs code on every call
    f'x"""; {PAYLOAD}; """',
    r"\xi and \underbrace{x}", r"\N", r"C:\new\table", "\x00", '"""', "\ud800", '"', "a\\",
    "line\u2028sep\x0bvt\x0cff\x1c\x1d\x1e\x85", "\x1b[2J\x1b]0;title\x07", "\u202eevil",
])
def test_hostile_docstrings_are_inert(doc, tmp_path):
    source = gradgen.compile_source(docstring_source(doc), filename="t.grad")
    module = run_module(source, tmp_path)
    user = user_lines(doc)
    for fn in (module.f_grad, module.f_vjp, module.f_hvp):
        assert dedent(fn.__doc__)[2:2 + len(user)] == user


@PROPERTY
@given(TEXT)
@example('"""' + PAYLOAD)
@example("\\")
def test_any_docstring_round_trips_and_is_inert(tmp_path_factory, doc):
    tmp = tmp_path_factory.mktemp("doc")
    source = gradgen.compile_source(docstring_source(doc), filename="t.grad")
    module = run_module(source, tmp)
    user = user_lines(doc)
    # Each line of the user's docstring (stripped) is a line of every function's docstring;
    # f_grad's starts with gradgen's summary, then the user's text in order.
    got = dedent(module.f_grad.__doc__)
    assert got[2:2 + len(user)] == user if user else got[2] == "Args:"
    if user:
        assert dedent(module.f.__doc__)[0] == user[0]


# ---------------------------------------------------------------------------- item 2: file names


FILENAMES = [
    f'x"""+{PAYLOAD}+""".grad', f"x\n{PAYLOAD}\n.grad", f"x\r{PAYLOAD}\r.grad",
    f"x\u2028{PAYLOAD}.grad", "dat\\x.grad", "dat\\N.grad", "\\", '"', "a\x00b", "\ud800.grad",
    "\udcff\udcfe.grad", "sp ace;rm -rf ~.grad", "x'y.grad", "\x1b[2J.grad",
]


@pytest.mark.parametrize("name", FILENAMES)
def test_hostile_file_names_are_inert(name, tmp_path):
    source = gradgen.compile_source(f"def f(x: Param[N]):\n{BODY}", filename=name)
    module = run_module(source, tmp_path)
    assert module.__doc__ == f"NumPy functions and derivatives generated by gradgen from {name}."
    header = source.split("\n")[:3]
    assert header[0].startswith("# Generated by gradgen ")
    assert header[1].startswith("# Options: ")
    assert header[2].startswith("# Regenerate with: gradgen compile ")


@PROPERTY
@given(TEXT)
def test_any_file_name_is_inert(tmp_path_factory, name):
    tmp = tmp_path_factory.mktemp("name")
    source = gradgen.compile_source(f"def f(x: Param[N]):\n    'Doc.'\n{BODY}",
                                    filename=name + ".grad")
    module = run_module(source, tmp)
    base = os.path.basename(name + ".grad")
    assert module.__doc__ == f"NumPy functions and derivatives generated by gradgen from {base}."
    # The header is three comment lines, whatever the name holds.
    lines = source.split("\n")
    assert all(line.startswith("# ") for line in lines[:3]) and lines[3] == ""
    assert source.splitlines()[:3] == lines[:3]


def test_source_lines_in_comments_are_escaped(tmp_path):
    src = ("def f(x: Param[N]):\n    y = x * x  # \x1b[2J \u2028 \x0c\x0b\x85 "
           + PAYLOAD + "\n    return sum(y)\n")
    source = gradgen.compile_source(src, filename="t.grad")
    run_module(source, tmp_path)
    comments = {ln for ln in source.split("\n") if "of line 2:" in ln}
    assert comments == {r"    # grad of line 2: y = x * x  # \x1b[2J \u2028 \x0c\x0b\x85 " + PAYLOAD,
                        r"    # tangent of line 2: y = x * x  # \x1b[2J \u2028 \x0c\x0b\x85 " + PAYLOAD}
    assert source.splitlines() == source.split("\n")[:-1]


def test_load_with_a_hostile_file_name(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADGEN_CACHE", str(tmp_path / "cache"))
    work = tmp_path / "work"
    work.mkdir()
    path = work / f'x"""+{PAYLOAD}+"""\n{PAYLOAD}\n.grad'
    path.write_text(f"def f(x: Param[N]):\n{BODY}", encoding="utf-8")
    monkeypatch.chdir(work)
    module = gradgen.load(path)
    assert float(module.f(np.ones(3))) == 3.0
    assert sorted(os.listdir(work)) == [path.name]


def test_check_with_a_hostile_file_name(tmp_path, monkeypatch, capsys):
    path = tmp_path / f'x"""+{PAYLOAD}+"""\n{PAYLOAD}\n.grad'
    path.write_text(f"def f(x: Param[N]):\n    '''\"\"\"; {PAYLOAD}'''\n{BODY}",
                    encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["check", str(path)]) == 0
    assert sorted(os.listdir(tmp_path)) == [path.name]
    assert "all agree" in capsys.readouterr().out
