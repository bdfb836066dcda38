"""The pre-commit hook of .pre-commit-hooks.yaml, run by pre-commit itself (a `long` test:
set GRADGEN_LONG=1).

pre-commit is installed into a fresh virtual environment; a scratch git repository holds
copies of two examples (newton is compiled with --hessian, which its header records); the
hook runs there through `pre-commit try-repo <this checkout> gradgen-check`, which installs
gradgen from the checkout (its working tree, uncommitted changes included) into pre-commit's
own environment, as a user's `pre-commit run` would. Checked: up-to-date modules pass; an
edited .grad fails with the command that rewrites its module (options included); following
that command makes the hook pass again. Skips when nothing can be installed (no index, no
cache).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
TIMEOUT = 600   # seconds for one subprocess: pre-commit's first run installs gradgen


def _env(tmp_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")
           and not k.startswith("GIT_")}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PRE_COMMIT_HOME=str(tmp_path / "cache"),
               GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.invalid",
               GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.invalid",
               GIT_CONFIG_NOSYSTEM="1", HOME=str(tmp_path / "home"))
    return env


def _run(cmd, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=TIMEOUT, check=False)


@pytest.mark.long
def test_the_pre_commit_hook_checks_the_modules_of_changed_grad_files(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    env = _env(tmp_path)
    (tmp_path / "home").mkdir()
    # 1. pre-commit in a venv of its own.
    tools = tmp_path / "tools"
    venv.create(tools, with_pip=False)
    python = tools / "bin" / "python"
    pip = _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-compile",
                "pre-commit"], tmp_path, env)
    if pip.returncode != 0:
        pytest.skip(f"cannot install pre-commit (no package index?):\n{pip.stderr[-2000:]}")
    # (pre-commit makes the hook's environment with virtualenv, which brings its own pip.)

    # 2. A scratch repository with two examples and their modules.
    repo = tmp_path / "repo"
    for name in ("newton", "logistic"):
        (repo / name).mkdir(parents=True)
        for f in (f"{name}.grad", f"{name}_grad.py"):
            shutil.copy(EXAMPLES / name / f, repo / name / f)
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"],
                ["git", "commit", "-q", "-m", "examples"]):
        assert _run(cmd, repo, env).returncode == 0

    def hook():
        return _run([python, "-m", "pre_commit", "try-repo", ROOT, "gradgen-check",
                     "--all-files", "--color", "never"], repo, env)

    # 3. Up to date: the hook passes (newton is checked with its --hessian).
    proc = hook()
    if proc.returncode != 0 and "gradgen compile --check" not in proc.stdout:
        pytest.fail(f"pre-commit could not run the hook:\n{proc.stdout}\n{proc.stderr}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Passed" in proc.stdout

    # 4. An edited source: the hook fails and says how to rewrite the module.
    grad = repo / "newton" / "newton.grad"
    edited = grad.read_text(encoding="utf-8").replace("lam / 2", "lam / 4")
    grad.write_text(edited, encoding="utf-8")
    proc = hook()
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Failed" in proc.stdout
    assert ("newton/newton_grad.py: out of date; run: gradgen compile newton/newton.grad "
            "--hessian") in proc.stdout, proc.stdout

    # 5. Following the advice (with this gradgen) makes the hook pass again.
    from clirun import run as gradgen_cli

    assert gradgen_cli("compile", "newton/newton.grad", "--hessian", cwd=repo).returncode == 0
    proc = hook()
    assert proc.returncode == 0, proc.stdout + proc.stderr
