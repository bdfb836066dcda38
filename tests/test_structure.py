"""No class over 300 lines and no function over 80 anywhere in gradgen/ (issue 9, item 8)."""

import ast
from pathlib import Path

import gradgen

PACKAGE = Path(gradgen.__file__).parent
CLASS_LINES, FUNCTION_LINES = 300, 80


def _too_long(tree: ast.Module, where: str) -> list[str]:
    """`where:line name (n lines)` for every class or function (methods and nested ones
    included) over its limit."""
    found = []
    for node in ast.walk(tree):
        limit = (CLASS_LINES if isinstance(node, ast.ClassDef)
                 else FUNCTION_LINES if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                 else None)
        size = node.end_lineno - node.lineno + 1 if limit is not None else 0
        if limit is not None and size > limit:
            found.append(f"{where}:{node.lineno} {node.name} ({size} lines)")
    return found


def test_no_class_over_300_lines_nor_function_over_80_in_the_package():
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 20 and PACKAGE / "verify.py" in files
    too_long = [x for f in files
                for x in _too_long(ast.parse(f.read_text(encoding="utf-8")),
                                   str(f.relative_to(PACKAGE)))]
    assert not too_long


def test_the_check_sees_a_long_class_a_long_method_and_a_long_nested_function():
    body = "\n".join(f"    x{i} = {i}" for i in range(80))
    source = (f"def short():\n    def inner():\n{body.replace('    ', '        ')}\n"
              f"class Big:\n    def method(self):\n{body.replace('    ', '        ')}\n"
              + "\n".join(f"    y{i} = {i}" for i in range(220)) + "\n"
              "def exact():\n" + "\n".join(f"    z{i} = {i}" for i in range(79)) + "\n")
    assert _too_long(ast.parse(source), "m.py") == [
        "m.py:1 short (82 lines)", "m.py:83 Big (302 lines)", "m.py:2 inner (81 lines)",
        "m.py:84 method (81 lines)"]
