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
# (The runs of text are of every character but surrogates, as `st.text()`'s default
# alphabet `characters(codec="utf-8")`, named by category: that codec makes hypothesis
# encode all 1.1 million code points once per process when its cache is cold, as in CI.)
NASTY = st.sampled_from(['"', "'", '"""', "\\", "\\N", "\\x", "\x00", "\n", "\r", "\x0b", "\x0c",
                         "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029", "\x1b[2J", "\ud800",
                         "\udcff", "\t", " ", "\u202e", "\ufeff", "#", PAYLOAD])
TEXT = st.lists(st.one_of(NASTY, st.characters(), st.text(st.characters(exclude_categories=["Cs"]), max_size=5)), max_size=12).map("".join)


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
    expected = {"np", "npt", "Array", "Scalar", "_dims", "_expect", "_DIMS_PASSED", "_weak",
                "_reuse_freed_memory",
                "_F_ARGS", "f", "f_grad",
                "f_value_and_grad", "f_vjp", "f_jvp", "f_hvp"}
    assert {n for n in vars(module) if not n.startswith("__")} == expected
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
    header = source.split("\n")[:5]
    assert header[0] == f"# Generated by gradgen {gradgen.__version__}. Do not edit."
    assert header[1] == "# Edit the source and compile it again with the command below."
    assert header[2].startswith("# Source: ")
    assert header[3].startswith("# Options: ")
    assert header[4].startswith("# Regenerate with: gradgen compile ")


@PROPERTY
@given(TEXT)
def test_any_file_name_is_inert(tmp_path_factory, name):
    tmp = tmp_path_factory.mktemp("name")
    source = gradgen.compile_source(f"def f(x: Param[N]):\n    'Doc.'\n{BODY}",
                                    filename=name + ".grad")
    module = run_module(source, tmp)
    base = os.path.basename(name + ".grad")
    assert module.__doc__ == f"NumPy functions and derivatives generated by gradgen from {base}."
    # The header is five comment lines, whatever the name holds, and the first two are
    # always the same (Python reads an encoding declaration there).
    lines = source.split("\n")
    assert all(line.startswith("# ") for line in lines[:5]) and lines[5] == ""
    assert source.splitlines()[:5] == lines[:5]
    assert lines[:2] == [f"# Generated by gradgen {gradgen.__version__}. Do not edit.",
                         "# Edit the source and compile it again with the command below."]


def test_source_lines_in_comments_are_escaped(tmp_path):
    src = ("def f(x: Param[N]):\n    y = x * x  # \x1b[2J \u2028 \x0c\x0b\x85 "
           + PAYLOAD + "\n    return sum(exp(y))\n")
    source = gradgen.compile_source(src, filename="t.grad")
    run_module(source, tmp_path)
    comments = {ln for ln in source.split("\n") if "of line 2:" in ln}
    escaped = r"y = x * x  # \x1b[2J \u2028 \x0c\x0b\x85 " + PAYLOAD
    assert comments == {f"    # {label} of line 2: {escaped}"
                        for label in ("grad", "tangent", "tangent of grad")}
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


# ---------------------------------------------------------------------------- item 10: --check

SOURCE = "def f(x: Param[N]):\n    'Doc.'\n    y = abs(x) * x\n    return sum(y)\n"


@pytest.fixture
def compiled(tmp_path, monkeypatch) -> types.SimpleNamespace:
    """f.grad and f_grad.py as `gradgen compile f.grad` writes them, in the working directory."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "f.grad").write_text(SOURCE, encoding="utf-8")
    assert cli.main(["compile", "f.grad"]) == 0
    out = tmp_path / "f_grad.py"
    return types.SimpleNamespace(dir=tmp_path, src=tmp_path / "f.grad", out=out,
                                 data=out.read_bytes())


@pytest.mark.parametrize("sep", [b"\x0b", b"\x0c", "\u2028".encode(), "\x85".encode(), b"\r"])
def test_check_sees_a_line_end_replaced_after_a_comment(compiled, sep, capsys):
    # After '# grad of line 3: ...' Python would read the next statement as part of the
    # comment; str.splitlines() still splits there, so a line-based compare saw no change.
    assert cli.main(["compile", "f.grad", "--check"]) == 0
    at = compiled.data.index(b"# grad of line 3:")
    end = compiled.data.index(b"\n", at)
    tampered = compiled.data[:end] + sep + compiled.data[end + 1:]
    assert tampered.decode().splitlines() == compiled.data.decode().splitlines()
    compiled.out.write_bytes(tampered)
    capsys.readouterr()
    assert cli.main(["compile", "f.grad", "--check"]) == 1
    assert "out of date" in capsys.readouterr().err
    assert compiled.out.read_bytes() == tampered


def test_check_ignores_only_the_version(compiled, capsys):
    compiled.out.write_bytes(compiled.data.replace(b"gradgen 0.1.0 from", b"gradgen 9.9 from", 1))
    assert cli.main(["compile", "f.grad", "--check"]) == 0
    compiled.out.write_bytes(compiled.data.replace(b"\n", b"\r\n"))
    assert cli.main(["compile", "f.grad", "--check"]) == 1
    compiled.out.write_bytes(compiled.data + b"\n")
    assert cli.main(["compile", "f.grad", "--check"]) == 1


@pytest.mark.parametrize("junk", [b"\xff\xfe\x00\x81binary", b"", b"\xc3("])
def test_check_against_a_binary_file_is_out_of_date(compiled, junk, capsys):
    compiled.out.write_bytes(junk)
    assert cli.main(["compile", "f.grad", "--check"]) == 1
    err = capsys.readouterr().err
    assert err == "f_grad.py: out of date; run: gradgen compile f.grad\n"


# ---------------------------------------------------------------------------- item 12: files


def test_output_onto_the_source_is_refused(tmp_path, monkeypatch, capsys):
    from gradgen.io import written_by_gradgen

    monkeypatch.chdir(tmp_path)
    text = "# Generated by gradgen, but a source\n" + SOURCE
    src = tmp_path / "f.grad"
    src.write_text(text, encoding="utf-8")
    os.link(src, tmp_path / "hard.grad")
    os.symlink("f.grad", tmp_path / "soft.grad")
    for out in ("f.grad", "./f.grad", str(src), "hard.grad", "soft.grad"):
        assert cli.main(["compile", "f.grad", "-o", out, "--force"]) == 1
        assert "is the source file" in capsys.readouterr().err
    assert cli.main(["compile", "soft.grad", "-o", "f.grad"]) == 1
    assert src.read_text(encoding="utf-8") == text
    assert not written_by_gradgen(src)


def test_graph_output_onto_the_source_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "g.dot").write_text(SOURCE, encoding="utf-8")
    assert cli.main(["graph", "g.dot", "-o", "./g.dot"]) == 1
    assert "is the source file" in capsys.readouterr().err
    assert (tmp_path / "g.dot").read_text(encoding="utf-8") == SOURCE


def test_a_fifo_as_output_is_not_read(compiled, capsys):
    os.mkfifo(compiled.dir / "fifo.py")
    assert cli.main(["compile", "f.grad", "-o", "fifo.py", "--check"]) == 1
    assert cli.main(["compile", "f.grad", "-o", "fifo.py"]) == 1
    assert "was not written by gradgen" in capsys.readouterr().err


def test_written_by_gradgen_wants_the_whole_header(compiled):
    from gradgen.io import written_by_gradgen

    assert written_by_gradgen(compiled.out)
    other = compiled.dir / "other.py"
    for text in (b"# Generated by gradgen\nimport os\n",
                 b"# Generated by gradgen 0.1.0 from f.grad. Do not edit.\nimport os\n",
                 compiled.data.split(b"\n\n", 1)[0] + b"\nimport os\n"):
        other.write_bytes(text)
        assert not written_by_gradgen(other)
        assert cli.main(["compile", "f.grad", "-o", "other.py"]) == 1
        assert other.read_bytes() == text
    other.write_bytes(compiled.data.replace(b"f.grad", b"g.grad"))
    assert cli.main(["compile", "f.grad", "-o", "other.py"]) == 0
    other.write_bytes(compiled.data.replace(b"\n", b"\r\n"))   # after git's autocrlf
    assert cli.main(["compile", "f.grad", "-o", "other.py"]) == 0


def test_graph_image_does_not_write_through_a_planted_symlink(compiled, monkeypatch):
    import shutil
    import subprocess

    victim = compiled.dir / "victim.txt"
    victim.write_text("precious", encoding="utf-8")
    os.symlink(victim, compiled.dir / ".x.png.tmp")
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/dot")
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(
        a, 0, b"\x89PNG image", b""))
    assert cli.main(["graph", "f.grad", "-o", "x.png"]) == 0
    assert victim.read_text(encoding="utf-8") == "precious"
    assert (compiled.dir / "x.png").read_bytes() == b"\x89PNG image"
    assert not (compiled.dir / "x.png").is_symlink()


def test_atomic_write_bytes_and_text(tmp_path):
    from gradgen.io import atomic_write

    atomic_write(tmp_path / "a", b"\x00\xff")
    atomic_write(tmp_path / "b", "\u00e9\n")
    assert (tmp_path / "a").read_bytes() == b"\x00\xff"
    assert (tmp_path / "b").read_bytes() == "\u00e9\n".encode()
    assert sorted(os.listdir(tmp_path)) == ["a", "b"]


@pytest.mark.parametrize("kind", ["symlink", "world-writable", "group-writable"])
def test_load_does_not_write_into_an_unsafe_cache(tmp_path, monkeypatch, kind):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cache = tmp_path / "cache"
    if kind == "symlink":
        os.symlink(elsewhere, cache)
    else:
        cache.mkdir()
        os.chmod(cache, 0o777 if kind == "world-writable" else 0o770)
    monkeypatch.setenv("GRADGEN_CACHE", str(cache))
    src = tmp_path / "u.grad"
    src.write_text(SOURCE.replace("Doc.", f"Doc {kind}."), encoding="utf-8")
    module = gradgen.load(src)
    assert float(module.f(np.ones(2))) == 2.0
    assert module.__file__.startswith("<gradgen")
    assert os.listdir(elsewhere) == [] and (kind == "symlink" or os.listdir(cache) == [])


def test_load_writes_into_a_private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADGEN_CACHE", str(tmp_path / "new" / "cache"))
    src = tmp_path / "p.grad"
    src.write_text(SOURCE.replace("Doc.", "Private."), encoding="utf-8")
    module = gradgen.load(src)
    assert os.path.dirname(module.__file__) == str(tmp_path / "new" / "cache")
    assert os.stat(tmp_path / "new" / "cache").st_mode & 0o077 == 0


# ------------------------------------------------------------------ item 12: terminal output


ESC_SOURCE = ("def f(x: Param[N]):\n    '''\x1b]0;owned\x07\x1b[2J doc'''\n"
              "    y = exp(x) * x  # \x1b[31m red \x9b1m\n    return sum(zz)  # \x1b[5m\n")


def test_diagnostics_carry_no_control_characters(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "e\x1b[2J.grad").write_text(ESC_SOURCE, encoding="utf-8")
    assert cli.main(["compile", "e\x1b[2J.grad"]) == 1
    err = capsys.readouterr().err
    assert err == ("e\\x1b[2J.grad:4:16: error: unknown name 'zz'\n"
                   "    return sum(zz)  # \\x1b[5m\n"
                   "               ^\n")
    with pytest.raises(gradgen.CompileError) as info:
        gradgen.compile_source("def f(x: Param[N]):\n\ty = x \x0c\t+ zz\n\treturn sum(y)\n",
                               "t.grad")
    # Tabs stay (they align the caret); an escaped character is as wide as its escape.
    assert str(info.value).split("\n")[1:] == ["\ty = x \\x0c\t+ zz", "\t" + " " * 10 + "\t  ^"]


def test_a_diagnostic_is_three_lines_whatever_it_quotes():
    forged = "x\nevil.grad:1:1: error: \x1b[2Jforged"
    with pytest.raises(gradgen.CompileError) as info:
        gradgen.compile_source(SOURCE, "t\n.grad", wrt=[forged])
    lines = str(info.value).split("\n")
    assert len(lines) == 3 and lines[0].startswith("t\\n.grad:1:1: error: --wrt x\\nevil.grad")
    assert "\x1b" not in str(info.value)
    assert info.value.diagnostics[0].message.startswith(f"--wrt {forged}")


class _Terminal:
    def __init__(self):
        self.parts = []

    def write(self, text):
        self.parts.append(text)
        return len(text)

    def flush(self):
        pass

    def isatty(self):
        return True


@pytest.mark.parametrize("options", [[], ["--part", "backward"], ["--function", "f_grad"],
                                     ["--ir"]])
def test_show_on_a_terminal_has_no_control_characters_but_colours(tmp_path, monkeypatch,
                                                                  options):
    import re

    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.grad").write_text(ESC_SOURCE.replace("sum(zz)", "sum(y)"), encoding="utf-8")
    term = _Terminal()
    monkeypatch.setattr("sys.stdout", term)
    assert cli.main(["show", "s.grad", *options]) == 0
    without_colours = re.sub(r"\x1b\[[0-9;]*m", "", "".join(term.parts))
    assert "f_grad" in without_colours
    assert all(ch == "\n" or ch.isprintable() for ch in without_colours)
    if not options:
        assert "\\x1b]0;owned\\x07" in without_colours
    if options[:1] == ["--part"]:
        assert "# grad of line 3: y = exp(x) * x  # \\x1b[31m red \\x9b1m" in without_colours


def test_ctrl_c_anywhere_exits_130_quietly(monkeypatch, capsys):
    def interrupt(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_parser", interrupt)
    assert cli.main(["show", "x.grad"]) == 130
    assert capsys.readouterr() == ("", "")


def test_the_command_line_starts_without_the_heavy_imports():
    # A Ctrl-C while NumPy and SymPy load must reach main()'s handler: they are imported
    # when a command runs, not when the package is.
    import subprocess
    import sys

    code = ("import sys, gradgen.cli; print(sorted(m for m in ('numpy', 'sympy', 'jinja2', "
            "'gradgen.api') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert proc.stdout == "[]\n", proc.stderr


# ---------------------------------------------------------------------------- item 9: CLI


@pytest.mark.parametrize("dim", ["N=1000000000", "N=999999999999999999"])
def test_check_refuses_huge_dimensions(tmp_path, monkeypatch, capsys, dim):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "f.grad").write_text(SOURCE, encoding="utf-8")
    assert cli.main(["check", "f.grad", "--dim", dim]) == 1
    err = capsys.readouterr().err
    assert err.startswith("gradgen: error: 'f': the arguments would have ")
    assert "give smaller --dim sizes" in err


def test_check_refuses_a_huge_hessian(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "f.grad").write_text(SOURCE, encoding="utf-8")
    assert cli.main(["check", "f.grad", "--dim", "N=5000"]) == 1
    assert "the Hessian would have 25,000,000 elements" in capsys.readouterr().err


@pytest.mark.parametrize("dim", ["N=\u00b2", "N=" + "9" * 5000, "N=0", "N=-1"])
def test_check_bad_dim_sizes(tmp_path, monkeypatch, capsys, dim):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "f.grad").write_text(SOURCE, encoding="utf-8")
    assert cli.main(["check", "f.grad", "--dim", dim]) == 1
    assert capsys.readouterr().err.startswith("gradgen: error: --dim expects NAME=SIZE")


def test_out_of_memory_is_a_clean_error(monkeypatch, capsys):
    def exhausted(args):
        raise MemoryError

    monkeypatch.setattr(cli, "_check", exhausted)
    parser = cli._parser

    def patched():
        p = parser()
        p._subparsers._group_actions[0].choices["check"].set_defaults(run=exhausted)
        return p

    monkeypatch.setattr(cli, "_parser", patched)
    assert cli.main(["check", "x.grad"]) == 1
    assert capsys.readouterr().err == ("gradgen: error: out of memory (are the sizes given on "
                                       "the command line too large?)\n")


NON_UTF8 = os.fsdecode(b"caf\xe9-\xff.grad")


@pytest.mark.parametrize("command", [["compile"], ["show"], ["check"], ["graph"],
                                     ["compile", "--check"]])
def test_non_utf8_file_names(tmp_path, monkeypatch, capsys, command):
    monkeypatch.chdir(tmp_path)
    with open(os.fsencode(NON_UTF8), "w", encoding="utf-8") as f:
        f.write(SOURCE)
    code = cli.main([command[0], NON_UTF8, *command[1:]])
    out, err = capsys.readouterr()
    (out + err).encode("utf-8")   # printable: the undecodable bytes are shown escaped
    assert "internal error" not in err
    if command == ["compile", "--check"]:
        assert code == 1 and err == "caf\\udce9-\\udcff_grad.py: missing (would be written)\n"
        return
    assert code == 0, err
    if command == ["compile"]:
        assert out == "wrote caf\\udce9-\\udcff_grad.py\n"
        written = os.fsencode(NON_UTF8.replace(".grad", "_grad.py"))
        module = types.ModuleType("m")
        exec(compile(open(written, encoding="utf-8").read(), "m", "exec"), module.__dict__)
        assert module.__doc__.endswith(f"from {NON_UTF8}.")
        assert cli.main(["compile", NON_UTF8, "--check"]) == 0


def test_non_utf8_file_name_in_a_diagnostic(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with open(os.fsencode(NON_UTF8), "w", encoding="utf-8") as f:
        f.write(SOURCE.replace("sum(y)", "sum(zz)"))
    assert cli.main(["compile", NON_UTF8]) == 1
    assert capsys.readouterr().err.startswith(
        "caf\\udce9-\\udcff.grad:4:16: error: unknown name 'zz'\n")


def test_templates_echo_text_only_through_the_escaping_filters():
    # The structural half of the guarantee: in the templates, the fields that carry text
    # from the source (file name, docstrings, options, the regenerate command) are always
    # filtered by `docstring` or `comment`; the other fields are code gradgen generated.
    import re

    from gradgen.codegen.emit import template_dir

    text_fields = ("filename", "doc", "regenerate", "describe", "version")
    seen = set()
    for path in template_dir().glob("*.j2"):
        for expr in re.findall(r"\{\{(.*?)\}\}", path.read_text(encoding="utf-8")):
            names = [f for f in text_fields if re.search(rf"\b{f}\b", expr)]
            if names:
                seen.update(names)
                assert re.search(r"\|\s*(docstring|comment)\b", expr), (path.name, expr)
    assert seen == set(text_fields)


def test_an_encoding_declaration_in_the_file_name_stays_inert(tmp_path):
    # Python honours `coding: ...` in the first two lines of a file: a file name that
    # declares unicode_escape would turn `\x0a` into a newline and the rest into code.
    name = 'x -*- coding: unicode_escape -*- \\x0aopen("PWNED", "w")\\x0a#.grad'
    source = gradgen.compile_source(f"def f(x: Param[N]):\n{BODY}", filename=name)
    out = tmp_path / "m_grad.py"
    out.write_text(source, encoding="utf-8")
    import importlib.util

    spec = importlib.util.spec_from_file_location("m_grad", out)
    module = importlib.util.module_from_spec(spec)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        spec.loader.exec_module(module)
    finally:
        os.chdir(cwd)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m_grad.py"]
    assert module.f(np.ones(3)) == 3.0


def test_modules_written_before_the_encoding_line_may_be_replaced(tmp_path):
    from gradgen.io import written_by_gradgen

    old = tmp_path / "old_grad.py"
    old.write_bytes(b"# Generated by gradgen 0.1.0 from f.grad. Do not edit.\n"
                    b"# Options: modes=default checks\n"
                    b"# Regenerate with: gradgen compile f.grad\n\n"
                    b'"""NumPy functions and derivatives generated by gradgen from f.grad."""\n')
    assert written_by_gradgen(old)


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_an_endless_source_is_refused_without_reading_it_all(capsys):
    assert cli.main(["compile", "/dev/zero", "-o", os.devnull]) == 1
    assert capsys.readouterr().err.startswith("/dev/zero:1:1: error: source is larger than")
