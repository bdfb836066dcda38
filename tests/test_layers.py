"""The layers of ARCHITECTURE.md: a module imports only from its own layer or below.

Every `import`/`from ... import` in every module of the package counts, including the
lazy ones inside functions. Run this file as a script to print the import table
(`python tests/test_layers.py`).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "gradgen"

# From the ground up. A module's layer is that of its first component below `gradgen`.
LAYERS: list[tuple[str, ...]] = [
    ("version", "escape", "errors", "dims", "options", "gcpause"),   # ground: each other
    ("ir",),                                   # knows no op by name
    ("ops",),                                  # the op table
    ("autodiff",),                             # derivative graphs
    ("passes",),                               # rule engine, whole-graph passes
    ("frontend",),                             # source text -> IR
    ("codegen", "graphviz"),                   # statements, names, code text; pictures
    ("compiler",),                             # the pipeline
    ("io", "verify", "checking", "api", "cli", "scipy", "notebook", "__init__", "__main__"),   # the surface
]
LAYER_OF = {name: i for i, names in enumerate(LAYERS) for name in names}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _top(module: str) -> str:
    """The layer key of a dotted module name inside gradgen."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported gradgen module) for every import in the file."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names
                      if a.name.split(".")[0] == "gradgen"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "gradgen":
                continue
            if node.module is None:   # from . import x: each name may be a module
                found += [(node.lineno, f"{target}.{a.name}") for a in node.names]
            else:
                found.append((node.lineno, target))
    return found


def import_table() -> list[tuple[str, int, str, bool]]:
    """(module, line, imported module, upward?) for every gradgen import in the package."""
    rows = []
    for path in sorted(PACKAGE.rglob("*.py")):
        src = _module_name(path)
        mine = LAYER_OF[_top(src) if path.name != "__init__.py" or src != "gradgen"
                        else "__init__"]
        for line, target in _imports(path):
            key = _top(target)
            if key not in LAYER_OF:
                raise AssertionError(f"{src}:{line}: {target} is in no layer of LAYERS")
            rows.append((src, line, target, LAYER_OF[key] > mine))
    return rows


def test_every_module_has_a_layer():
    for path in PACKAGE.rglob("*.py"):
        name = _module_name(path)
        assert (_top(name) if name != "gradgen" else "__init__") in LAYER_OF, name


# Upward imports still being removed (issue 9): none may be added.
KNOWN_UPWARD: set[tuple[str, str]] = set()


def test_no_module_imports_upward():
    upward = [f"{src}:{line} imports {target}" for src, line, target, up in import_table()
              if up and (src, target) not in KNOWN_UPWARD]
    assert not upward, "upward imports:\n" + "\n".join(upward)


@pytest.mark.parametrize("ground", LAYERS[0])
def test_ground_floor_imports_only_the_ground(ground):
    path = PACKAGE / f"{ground}.py"
    for _line, target in _imports(path):
        assert _top(target) in LAYERS[0], (ground, target)


if __name__ == "__main__":
    rows = import_table()
    for src, line, target, up in rows:
        print(f"{'UPWARD ' if up else ''}{src}:{line} -> {target}")
    print(f"{len(rows)} imports, {sum(r[3] for r in rows)} upward")
