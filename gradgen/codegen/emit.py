"""The Jinja2 environment and the rendering of a module. Templates hold layout only."""

from __future__ import annotations

import functools
from pathlib import Path

import jinja2

from ..errors import InternalError
from ..escape import comment_text, docstring_literal


def template_dir() -> Path:
    """`gradgen/templates` in an installed wheel, `<checkout>/templates` otherwise."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "templates", here.parent / "templates"):
        if (candidate / "module.py.j2").is_file():
            return candidate
    raise InternalError(f"gradgen's templates were not found next to {here}")


@functools.lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    """The templates' environment: text from the source reaches the output only through
    the `docstring` and `comment` filters (`gradgen.escape`)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_dir())),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["docstring"] = docstring_literal
    env.filters["comment"] = comment_text
    env.filters["indented"] = indented
    return env


def indented(lines: list[str], indent: str) -> str:
    """The lines of a block (a function's body), each indented by `indent` (an empty line
    left empty), one a line: a filter, so that the template need not loop over a body of
    many thousand lines."""
    if not lines or "" in lines:   # (an empty line stays empty: rare, line by line)
        return "\n".join([indent + line if line else "" for line in lines])
    return indent + ("\n" + indent).join(lines)   # (one join of C speed: ~188k lines)


def render_module(module) -> str:
    """The source text of a compiled module."""
    return environment().get_template("module.py.j2").render(module=module)
