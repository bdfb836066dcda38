"""gradgen in the user's workflow (issue 14): CI and pre-commit (`compile` of several files,
`-o -`, `--check` with the options of the output's header, help text), emitted code that
`ruff format` leaves alone, and packaging.

The commands run in-process through `clirun.run`, as in tests/test_cli.py.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from clirun import run as gradgen_cli

import gradgen
from gradgen import cli

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
NEWTON = EXAMPLES / "newton"


def files(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir()}


@pytest.fixture
def newton(tmp_path) -> Path:
    """A directory with a copy of examples/newton: newton.grad and its module, which was
    compiled with --hessian (the header records it)."""
    for name in ("newton.grad", "newton_grad.py"):
        shutil.copy(NEWTON / name, tmp_path / name)
    assert "--hessian" in (tmp_path / "newton_grad.py").read_text(encoding="utf-8")
    return tmp_path


# ------------------------------------------------------- --check with the header's options


def test_check_compiles_with_the_options_in_the_header(newton):
    proc = gradgen_cli("compile", "--check", "newton.grad", cwd=newton)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "newton_grad.py: up to date\n", "")


def test_check_advice_carries_the_header_options_and_following_it_restores_the_file(newton):
    golden = (newton / "newton_grad.py").read_bytes()
    stale = golden.replace(b"import numpy as np\n", b"import numpy as np  # edited\n", 1)
    assert stale != golden
    (newton / "newton_grad.py").write_bytes(stale)
    proc = gradgen_cli("compile", "--check", "newton.grad", cwd=newton)
    assert proc.returncode == 1
    assert proc.stderr == ("newton_grad.py: out of date; run: "
                           "gradgen compile newton.grad --hessian\n")
    assert (newton / "newton_grad.py").read_bytes() == stale   # --check writes nothing
    # The advice, followed word for word, writes the module back as it was.
    advice = proc.stderr.split("run: gradgen ", 1)[1].split()
    assert gradgen_cli(*advice, cwd=newton).returncode == 0
    assert (newton / "newton_grad.py").read_bytes() == golden
    assert "def loss_hessian(" in golden.decode()


def test_options_on_the_command_line_replace_the_header_options(newton):
    # The module has loss_hessian; checked as a module without it, it is out of date.
    proc = gradgen_cli("compile", "--check", "newton.grad", "--modes", "grad", cwd=newton)
    assert proc.returncode == 1
    assert proc.stderr == ("newton_grad.py: out of date; run: "
                           "gradgen compile newton.grad --modes grad\n")
    proc = gradgen_cli("compile", "--check", "newton.grad", "--hessian", cwd=newton)
    assert proc.returncode == 0, proc.stderr


def test_check_advice_names_the_output_given_with_o(newton):
    shutil.move(newton / "newton_grad.py", newton / "other.py")
    (newton / "other.py").write_text("# not gradgen's\n", encoding="utf-8")
    proc = gradgen_cli("compile", "--check", "newton.grad", "-o", "other.py", cwd=newton)
    assert proc.returncode == 1
    # No header to read options from: the command line's (none) are used.
    assert proc.stderr == ("other.py: out of date; run: gradgen compile newton.grad "
                           "-o other.py\n")


@pytest.mark.parametrize("header_line, replacement", [
    (b"# Regenerate with: gradgen compile newton.grad --hessian",
     b"# Regenerate with: gradgen compile newton.grad --hessian --frobnicate"),
    (b"# Regenerate with: gradgen compile newton.grad --hessian",
     b"# Regenerate with: gradgen compile 'newton.grad --hessian"),
    (b"# Regenerate with: gradgen compile newton.grad --hessian",
     b"# Regenerate with: gradgen compile newton.grad --modes nope"),
])
def test_a_header_with_flags_gradgen_cannot_read_is_out_of_date(newton, header_line,
                                                                 replacement):
    out = newton / "newton_grad.py"
    text = out.read_bytes()
    assert header_line in text
    out.write_bytes(text.replace(header_line, replacement))
    proc = gradgen_cli("compile", "--check", "newton.grad", cwd=newton)
    assert proc.returncode == 1
    assert proc.stderr == "newton_grad.py: out of date; run: gradgen compile newton.grad\n"
    assert "Traceback" not in proc.stderr


def test_every_example_is_up_to_date_in_one_call():
    sources = sorted(str(p.relative_to(EXAMPLES)) for p in EXAMPLES.glob("*/*.grad"))
    assert len(sources) >= 4
    proc = gradgen_cli("compile", "--check", *sources, cwd=EXAMPLES)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count(": up to date\n") == len(sources)


# ------------------------------------------------------------- several files, -o -


def test_compile_several_files(tmp_path):
    for name in ("mlp", "logistic"):
        shutil.copy(EXAMPLES / name / f"{name}.grad", tmp_path / f"{name}.grad")
    proc = gradgen_cli("compile", "mlp.grad", "logistic.grad", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "wrote mlp_grad.py\nwrote logistic_grad.py\n"
    for name in ("mlp", "logistic"):
        assert (tmp_path / f"{name}_grad.py").read_bytes() == \
            (EXAMPLES / name / f"{name}_grad.py").read_bytes()


def test_several_files_go_on_after_a_failure_and_exit_1(tmp_path):
    shutil.copy(EXAMPLES / "mlp" / "mlp.grad", tmp_path / "mlp.grad")
    (tmp_path / "bad.grad").write_text("def f(x: Param[N]):\n    return sum(y)\n",
                                       encoding="utf-8")
    proc = gradgen_cli("compile", "bad.grad", "missing.grad", "mlp.grad", cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stdout == "wrote mlp_grad.py\n"
    assert proc.stderr.startswith("bad.grad:2:")
    assert "gradgen: error: cannot read missing.grad" in proc.stderr
    assert files(tmp_path) == {"bad.grad", "mlp.grad", "mlp_grad.py"}


def test_o_takes_one_file(tmp_path):
    shutil.copy(EXAMPLES / "mlp" / "mlp.grad", tmp_path / "mlp.grad")
    proc = gradgen_cli("compile", "mlp.grad", "mlp.grad", "-o", "out.py", cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.startswith("gradgen: error: -o names the output of one FILE")
    assert files(tmp_path) == {"mlp.grad"}


def test_o_dash_writes_the_module_to_standard_output(tmp_path):
    shutil.copy(EXAMPLES / "newton" / "newton.grad", tmp_path / "newton.grad")
    proc = gradgen_cli("compile", "newton.grad", "--hessian", "-o", "-", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (EXAMPLES / "newton" / "newton_grad.py").read_text(encoding="utf-8")
    assert proc.stderr == ""
    assert files(tmp_path) == {"newton.grad"}   # no file named '-'


def test_o_dash_with_check_is_refused(tmp_path):
    shutil.copy(EXAMPLES / "mlp" / "mlp.grad", tmp_path / "mlp.grad")
    proc = gradgen_cli("compile", "mlp.grad", "--check", "-o", "-", cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.startswith("gradgen: error: --check compares the output file")


# ------------------------------------------------------------------------- help text


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def test_every_subcommand_and_argument_has_help_text():
    parser = cli._parser()
    commands = _subparsers(parser)
    assert set(commands) >= {"compile", "show", "check", "graph"}
    for name, sub in commands.items():
        assert sub.description, f"`gradgen {name}` has no description"
        for action in sub._actions:
            assert action.help and action.help != argparse.SUPPRESS, \
                f"`gradgen {name}` argument {action.option_strings or action.dest} has no help"
    for action in parser._actions:
        assert action.help, f"`gradgen` argument {action.option_strings or action.dest}"


def test_compile_help_describes_several_files_and_o_dash(tmp_path):
    proc = gradgen_cli("compile", "--help", cwd=tmp_path)
    assert proc.returncode == 0
    assert "FILE [FILE ...]" in proc.stdout and "'-' for standard output" in proc.stdout
    assert "recorded in the output's header" in " ".join(proc.stdout.split())


def test_version_is_the_package_version(tmp_path):
    proc = gradgen_cli("--version", cwd=tmp_path)
    assert proc.stdout == f"gradgen {gradgen.__version__}\n"


# ------------------------------------------------------------------- ruff format


def _ruff_format(text: str, width: int) -> str:
    ruff = pytest.importorskip("ruff")   # in the test extra
    proc = subprocess.run([ruff.find_ruff_bin(), "format", "--isolated", "--no-cache",
                           f"--line-length={width}", "-"], input=text, capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_every_helper_is_as_ruff_format_writes_it():
    """The helpers an emitted module may carry, at ruff's default width and the project's
    (tests/test_ops.py checks every op's whole module at 100)."""
    from gradgen.codegen import runtime
    from gradgen.compiler import helper_sources

    helpers = [runtime.CHECK_DIMS, runtime.CHECK_SHAPE, runtime.WEAK_SCALAR,
               *helper_sources(workspace=True)]
    text = "\n\n".join(helpers)   # one ruff run per width
    for width in (88, 100):
        assert _ruff_format(text, width) == text, f"ruff format --line-length={width}"


# At 100, the project's width. At ruff's default 88 most modules are unchanged too, but the
# generator does not yet split every statement a spill leaves longer than 88 (issue 14).
@pytest.mark.parametrize("width", [100])
def test_the_examples_are_unchanged_by_ruff_format(width):
    for module in sorted(EXAMPLES.glob("*/*_grad.py")):
        text = module.read_text(encoding="utf-8")
        assert _ruff_format(text, width) == text, f"{module.name} at line length {width}"


# ------------------------------------------------------------------------- packaging


def test_import_gradgen_and_the_command_line_do_not_load_the_compiler():
    """`import gradgen` and `gradgen --version` stay quick: neither SymPy nor NumPy (nor
    Jinja2) is imported until something is compiled (issue 14: under 0.1 s)."""
    code = ("import sys, gradgen, gradgen.cli\n"
            "try:\n    gradgen.cli.main(['--version'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('sympy', 'numpy', 'jinja2', 'gradgen.compiler',"
            " 'gradgen.errors') if m in sys.modules))\n"
            "gradgen.CompileError\n"   # on first use
            "print('gradgen.errors' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False, cwd=ROOT)
    assert (proc.returncode, proc.stderr) == (0, "")
    assert proc.stdout == f"gradgen {gradgen.__version__}\n[]\nTrue\n"


def test_license_and_metadata():
    tomllib = pytest.importorskip("tomllib")   # Python 3.11+

    meta = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert meta["license"] == "MIT" and meta["license-files"] == ["LICENSE"]
    assert (ROOT / "LICENSE").read_text(encoding="utf-8").startswith("MIT License\n")
    assert meta["authors"] and meta["requires-python"] and meta["classifiers"]
