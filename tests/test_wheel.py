"""The built wheel installs into a fresh virtual environment and works away from the checkout.

Builds the wheel, installs it (pulling numpy, sympy and jinja2 from the package index or
pip's cache) into a new venv without system site-packages, then, from an unrelated working
directory, compiles examples/mlp/mlp.grad with the installed ``gradgen`` command and runs
the emitted module. Skips only when nothing can be installed at all (no index, no cache).

For speed the venv gets no pip of its own (`ensurepip` costs seconds): this interpreter's
pip installs into it (`pip --python VENV_PYTHON install`), and with `--no-compile`, since
byte-compiling all of sympy at install time costs several times what the one process that
imports it here spends compiling the modules it needs. And the venv is given the runtime
dependencies this interpreter has installed (numpy, sympy, jinja2 and what they need,
linked, not copied): pip then finds the wheel's requirements satisfied instead of
unpacking some 10,000 files of them again, and the emitted code imports byte-compiled
modules (this made the test 5 s shorter). That the wheel declares every package gradgen
imports is checked on its metadata instead (`test_wheel_declares_what_gradgen_imports`);
without links (a platform without symlinks) pip installs them as before.
"""

import os
import re
import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MLP_SOURCE = ROOT / "examples" / "mlp" / "mlp.grad"
TIMEOUT = 300  # seconds for one subprocess; the whole test normally takes well under 2 minutes


def _version():
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    return re.search(r'^version\s*=\s*"([^"]+)"', text, re.MULTILINE).group(1)


def _env():
    """The environment for subprocesses: nothing points back into the checkout."""
    env = dict(os.environ)
    for name in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"):
        env.pop(name, None)
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _run(cmd, cwd):
    return subprocess.run(
        [str(c) for c in cmd], cwd=cwd, env=_env(), capture_output=True, text=True,
        timeout=TIMEOUT, check=False,
    )


def _can_fetch_packages(tmp_path):
    """True when pip can obtain a dependency at all (index, find-links or its cache)."""
    probe = _run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
         "-d", tmp_path / "probe", "jinja2"],
        cwd=tmp_path,
    )
    return probe.returncode == 0


def _check(result, what, tmp_path):
    """Fail with the full output, or skip when the failure is that nothing can be installed."""
    if result.returncode == 0:
        return
    output = f"$ {' '.join(map(str, result.args))}\n{result.stdout}\n{result.stderr}"
    if not _can_fetch_packages(tmp_path):
        pytest.skip(f"{what} failed and pip can reach neither a package index nor cached "
                    f"wheels (no network?):\n{output}")
    pytest.fail(f"{what} failed (exit {result.returncode}):\n{output}")


@pytest.mark.long
def test_sdist_carries_the_license_and_the_pre_commit_hooks(tmp_path):
    dist = tmp_path / "dist"
    build = _run([sys.executable, "-m", "build", "--sdist", "--outdir", dist, ROOT], cwd=ROOT)
    _check(build, "building the sdist", tmp_path)
    (sdist,) = dist.glob("gradgen-*.tar.gz")
    with tarfile.open(sdist) as tf:
        names = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
        license_text = tf.extractfile(f"gradgen-{_version()}/LICENSE").read()
    assert {"LICENSE", ".pre-commit-hooks.yaml", "pyproject.toml", "README.md"} <= names
    assert license_text == (ROOT / "LICENSE").read_bytes()


def _requires(wheel: Path) -> list[str]:
    """The distribution names the wheel requires (its METADATA's Requires-Dist, no extras)."""
    with zipfile.ZipFile(wheel) as zf:
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        text = zf.read(meta).decode("utf-8")
    return [_dist_name(line.split(":", 1)[1]) for line in text.splitlines()
            if line.startswith("Requires-Dist:") and "extra ==" not in line]


def _dist_name(requirement: str) -> str:
    return re.split(r"[\s;<>=!~\[(]", requirement.strip(), maxsplit=1)[0]


def _site_packages(python: Path) -> Path:
    code = "import sysconfig; print(sysconfig.get_path('purelib'))"
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, env=_env(),
                         timeout=TIMEOUT, check=True)
    return Path(out.stdout.strip())


def _link_dependencies(names: list[str], site: Path) -> None:
    """Link the installed distributions `names` (and what they require) into `site`: their
    top-level packages and dist-info folders, as this interpreter has them. Nothing
    (pip installs them) where a link cannot be made."""
    import importlib.metadata as md
    todo, seen = list(names), set()
    while todo:
        name = todo.pop()
        if name.lower() in seen:
            continue
        seen.add(name.lower())
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            continue
        todo += [_dist_name(r) for r in dist.requires or () if "extra ==" not in r]
        base = Path(dist.locate_file(""))
        for top in {Path(f).parts[0] for f in dist.files or () if Path(f).parts[0] != ".."}:
            target = site / top
            if (base / top).exists() and not target.exists():
                try:
                    target.symlink_to(base / top)
                except OSError:
                    return


def test_wheel_declares_what_gradgen_imports():
    """Every package outside the standard library that a module of gradgen imports (but
    for optional ones, imported in a `try`) is a runtime dependency in pyproject.toml (the
    wheel's Requires-Dist come from there; the test below links the dependencies in, so it
    would not notice a missing one)."""
    import ast
    declared = re.search(r"^dependencies = \[(.*?)\]", (ROOT / "pyproject.toml").read_text(
        encoding="utf-8"), re.MULTILINE | re.DOTALL).group(1)
    declared = {_dist_name(d.strip().strip('"')).lower() for d in declared.split(",") if d.strip()}
    imported = set()   # (an import inside `try` is optional: pygments, for colours)
    for path in (ROOT / "gradgen").rglob("*.py"):
        if path.name == "scipy.py":   # gradgen.scipy: the `scipy` extra (checked below)
            continue
        stack = [ast.parse(path.read_text(encoding="utf-8"))]
        while stack:
            node = stack.pop()
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
            elif isinstance(node, ast.Try):
                stack += node.handlers + node.orelse + node.finalbody
            else:
                stack += ast.iter_child_nodes(node)
    third_party = imported - set(sys.stdlib_module_names) - {"gradgen", "__future__"}
    assert third_party == {"numpy", "sympy", "jinja2", "mpmath"}, third_party
    assert third_party <= declared, third_party - declared
    assert re.search(r'^scipy = \["scipy"\]$', (ROOT / "pyproject.toml").read_text(
        encoding="utf-8"), re.MULTILINE), "gradgen.scipy needs the `scipy` extra"


def test_wheel_installs_and_compiles_outside_checkout(tmp_path):
    # 1. Build the wheel from the checkout.
    dist = tmp_path / "dist"
    build = _run([sys.executable, "-m", "build", "--wheel", "--outdir", dist, ROOT], cwd=ROOT)
    if build.returncode != 0 and "No module named build" in build.stderr:
        build = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", dist, ROOT],
                     cwd=ROOT)
    _check(build, "building the wheel", tmp_path)
    wheels = sorted(dist.glob("gradgen-*.whl"))
    assert len(wheels) == 1, f"expected one gradgen wheel in {dist}, found {wheels}"
    wheel = wheels[0]

    # The wheel carries the package and the templates mapped into it.
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    assert "gradgen/__init__.py" in names
    assert "gradgen/cli.py" in names
    assert "gradgen/py.typed" in names, "py.typed (PEP 561: the package is typed) is missing"
    assert any(n.startswith("gradgen/templates/") for n in names), \
        "templates/ is missing from the wheel (expected under gradgen/templates/)"
    # The license travels with the wheel (PEP 639: SPDX expression and license file).
    info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
    assert f"{info}/licenses/LICENSE" in names, "LICENSE is missing from the wheel"
    with zipfile.ZipFile(wheel) as zf:
        metadata = zf.read(f"{info}/METADATA").decode("utf-8")
        assert zf.read(f"{info}/licenses/LICENSE") == (ROOT / "LICENSE").read_bytes()
    assert "\nLicense-Expression: MIT\n" in metadata and "\nAuthor: " in metadata

    # 2. A fresh venv, without system site-packages, with the wheel installed.
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False, system_site_packages=False, clear=True).create(env_dir)
    bindir = env_dir / ("Scripts" if os.name == "nt" else "bin")
    python = bindir / "python"
    gradgen_cmd = bindir / "gradgen"
    _link_dependencies(_requires(wheel), _site_packages(python))
    install = _run([sys.executable, "-m", "pip", "--python", python, "install", "-q",
                    "--no-compile", wheel], cwd=tmp_path)
    _check(install, "installing the wheel into a fresh venv", tmp_path)

    # 3. Work from a directory that has nothing to do with the checkout.
    work = tmp_path / "work"
    work.mkdir()
    source = work / "mlp.grad"
    source.write_text(MLP_SOURCE.read_text(encoding="utf-8"), encoding="utf-8")

    version = _run([python, "-m", "gradgen", "--version"], cwd=work)
    assert version.returncode == 0, version.stderr
    assert _version() in version.stdout + version.stderr

    compiled = _run([gradgen_cmd, "compile", source, "-o", "out.py"], cwd=work)
    assert compiled.returncode == 0, f"{compiled.stdout}\n{compiled.stderr}"
    out = work / "out.py"
    assert out.is_file()
    assert "gradgen" not in [
        line.split()[1].split(".")[0]
        for line in out.read_text(encoding="utf-8").splitlines()
        if line.startswith(("import ", "from "))
    ], "the emitted module must not import gradgen"

    check = r"""
import sys
import numpy as np
import out

assert not any(m == "gradgen" or m.startswith("gradgen.") for m in sys.modules), \
    "importing the emitted module pulled in gradgen"

rng = np.random.default_rng(0)
N, D, M, C = 5, 3, 4, 2
X = rng.standard_normal((N, D))
Y = np.eye(C)[rng.integers(0, C, size=N)]
V = rng.standard_normal((D, M))
W = rng.standard_normal((M, C))

U = (1 / (1 + np.exp(-(X @ V)))) @ W
lse = np.log(np.sum(np.exp(U), axis=1))
expected = -np.mean(np.sum(U * Y, axis=1) - lse)

value = out.cost(X, Y, V, W)
assert np.isfinite(value) and np.ndim(value) == 0, value
assert np.isclose(value, expected, rtol=1e-10, atol=1e-12), (value, expected)

value2, (dV, dW) = out.cost_value_and_grad(X, Y, V, W)
assert np.isclose(value2, expected, rtol=1e-10, atol=1e-12)
assert dV.shape == V.shape and dW.shape == W.shape
gV, gW = out.cost_grad(X, Y, V, W)
assert np.allclose(gV, dV) and np.allclose(gW, dW)
print("ok")
"""
    ran = _run([python, "-c", check], cwd=work)
    assert ran.returncode == 0, f"{ran.stdout}\n{ran.stderr}"
    assert ran.stdout.strip().endswith("ok")
