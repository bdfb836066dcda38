"""The frontend package stays in its layer (issue 9, item 8; the size limits of every module
of gradgen/ are checked in tests/test_structure.py)."""

import ast
from pathlib import Path

import pytest

import gradgen
from gradgen.errors import InternalError
from gradgen.ops.registry import BUILTINS, defbuiltin

FRONTEND = Path(gradgen.__file__).parent / "frontend"
BELOW = {"errors", "dims", "ir", "ops"}   # the layers the frontend may import from


def _modules():
    files = sorted(FRONTEND.glob("*.py"))
    assert len(files) > 1, "gradgen/frontend/ is a package of several modules"
    return [(f, ast.parse(f.read_text(encoding="utf-8"))) for f in files]


def _gradgen_imports(tree: ast.Module):
    """The gradgen modules a frontend module imports, as top-level names under gradgen."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:
                continue                  # the frontend's own modules
            if node.level == 2:
                parts = [node.module] if node.module else [a.name for a in node.names]
                yield from (p.split(".")[0] for p in parts)
            elif node.module and node.module.split(".")[0] == "gradgen":
                yield (node.module.split(".") + [""])[1] or "gradgen"
            elif node.level > 2:
                yield f"{'.' * node.level}{node.module or ''}"
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "gradgen":
                    yield (a.name.split(".") + [""])[1] or "gradgen"


def test_the_frontend_imports_only_from_the_layers_below_it():
    upward = {(f.name, m) for f, tree in _modules() for m in _gradgen_imports(tree)
              if m not in BELOW}
    assert not upward


def test_the_import_check_sees_an_upward_import():
    tree = ast.parse("from ..codegen import naming\nfrom .. import compiler\n"
                     "import gradgen.passes\nfrom ..ops import BUILTINS\n")
    assert list(_gradgen_imports(tree)) == ["codegen", "compiler", "passes", "ops"]


def test_the_comparison_parameter_of_a_builtin_is_declared_in_the_registry():
    """The frontend reads which parameter takes a comparison from `Builtin.condition`."""
    assert {b.name: b.condition for b in BUILTINS.values() if b.condition} == \
        {"where": "condition"}
    with pytest.raises(InternalError, match="not an array parameter"):
        defbuiltin("_test_bad_condition", ("x", "axis"), lambda x, axis: x,
                   static=("axis",), condition="axis")
    with pytest.raises(InternalError, match="not an array parameter"):
        defbuiltin("_test_bad_condition", ("x",), lambda x: x, condition="c")
    assert "_test_bad_condition" not in BUILTINS
