"""Run the `gradgen` command in-process, as a user's shell would see it.

`run("compile", "mlp.grad", cwd=work)` calls `gradgen.cli.main([...])` in this process
(about 50 times cheaper than `python -m gradgen` in a subprocess) and returns what a
subprocess would have given: the exit status and the text of standard output and standard
error. To keep the tests' assertions meaning what they meant with a subprocess:

- the exit status is `main`'s return value, or the code of a `SystemExit` (argparse raises
  it for --help, --version and usage errors) mapped as the interpreter maps it;
- standard output and standard error are UTF-8 byte streams (strict on stdout, as
  `python -m gradgen` has them under a UTF-8 locale) read back with universal newlines,
  as `subprocess.run(text=True)` reads them;
- warnings that escape `main` are printed to standard error as the interpreter's default
  filters would print them (so "no SyntaxWarning is shown" is still checked);
- the working directory is `cwd` and GRADGEN_DEBUG is unset while the command runs.

Subprocess smoke tests (`python -m gradgen`, the installed console script, a real closed
pipe, hash randomisation) use `run_subprocess`.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

from gradgen import cli

ROOT = Path(__file__).resolve().parents[1]

# The categories the interpreter's default warning filters hide (outside __main__).
_HIDDEN_BY_DEFAULT = (DeprecationWarning, PendingDeprecationWarning, ImportWarning,
                      ResourceWarning)


@dataclass
class Result:
    """What `subprocess.run(..., capture_output=True, text=True)` returns, in short."""

    args: list
    returncode: int
    stdout: str
    stderr: str


def _exit_status(code) -> tuple[int, str]:
    """The status a process exiting with `SystemExit(code)` reports, and what it prints."""
    if code is None:
        return 0, ""
    if isinstance(code, int):
        return code, ""
    return 1, f"{code}\n"


def _read(stream: io.TextIOWrapper) -> str:
    stream.flush()
    data = stream.buffer.getvalue()
    return io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", errors="strict").read()


def run(*args, cwd) -> Result:
    """`gradgen ARGS` run in `cwd`, in-process."""
    argv = [str(a) for a in args]
    stdout = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict")
    stderr = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="backslashreplace")
    saved = sys.stdout, sys.stderr, os.getcwd(), os.environ.pop("GRADGEN_DEBUG", None)
    try:
        os.chdir(cwd)
        sys.stdout, sys.stderr = stdout, stderr
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                code, message = cli.main(argv), ""
            except SystemExit as e:
                code, message = _exit_status(e.code)
        for w in caught:
            if not issubclass(w.category, _HIDDEN_BY_DEFAULT):
                stderr.write(warnings.formatwarning(w.message, w.category, w.filename,
                                                    w.lineno, w.line))
        stderr.write(message)
    finally:
        sys.stdout, sys.stderr = saved[0], saved[1]
        os.chdir(saved[2])
        if saved[3] is not None:
            os.environ["GRADGEN_DEBUG"] = saved[3]
    return Result(["gradgen", *argv], code, _read(stdout), _read(stderr))


def subprocess_env(**extra) -> dict:
    """The environment of `python -m gradgen` from this checkout (GRADGEN_DEBUG unset)."""
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [e.get("PYTHONPATH")])])
    e.pop("GRADGEN_DEBUG", None)
    e.update(extra)
    return e


def run_subprocess(*args, cwd, **extra_env) -> subprocess.CompletedProcess:
    """`python -m gradgen ARGS` in a real subprocess (for the few smoke tests)."""
    return subprocess.run([sys.executable, "-m", "gradgen", *map(str, args)], cwd=cwd,
                          env=subprocess_env(**extra_env), capture_output=True, text=True,
                          encoding="utf-8", timeout=300)
