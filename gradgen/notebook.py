"""The `%%gradgen` cell magic of IPython and Jupyter: `%load_ext gradgen`, then

    %%gradgen [NAME] [--hessian] [--jacobian] [--wrt p,q] [--modes grad,hvp] [--no-checks] [--show]
    def cost(x: Param[N], A: Data[M, N]):
        return sum(log1p(exp(A @ x)))

compiles the cell (as `gradgen.load_source` does) and binds the module's functions
(`cost`, `cost_grad`, ...) in the notebook, and the module itself to NAME when given;
`--show` displays the emitted source. A mistake shows its diagnostics alone.
"""

from __future__ import annotations

import argparse
import shlex
from typing import Any

__all__ = ["gradgen_cell", "load_ipython_extension"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="%%gradgen", add_help=False)
    p.add_argument("name", nargs="?", help="bind the compiled module to this name")
    p.add_argument("--hessian", action="store_true")
    p.add_argument("--jacobian", action="store_true")
    p.add_argument("--no-checks", action="store_true")
    p.add_argument("--wrt")
    p.add_argument("--modes")
    p.add_argument("--show", action="store_true")
    return p


def gradgen_cell(line: str, cell: str, namespace: dict[str, Any]) -> Any:
    """Compile `cell` with the options of `line` and bind its functions in `namespace`;
    the module when `--show` is given (the notebook then displays its source), else None."""
    from .api import load_source

    try:
        args = _parser().parse_args(shlex.split(line))
    except SystemExit:   # argparse's own message was printed
        raise ValueError(f"%%gradgen: bad options {line!r}; usage: %%gradgen [NAME] "
                         "[--hessian] [--jacobian] [--wrt p,q] [--modes grad,hvp] [--no-checks] "
                         "[--show]") from None
    options: dict[str, Any] = {"hessian": args.hessian, "jacobian": args.jacobian,
                               "checks": not args.no_checks}
    if args.wrt:
        options["wrt"] = args.wrt.split(",")
    if args.modes:
        options["modes"] = args.modes.split(",")
    module = load_source(cell, f"{args.name or 'cell'}.grad", **options)
    for key, value in vars(module).items():
        if callable(value) and not key.startswith("_") and getattr(
                value, "__module__", None) == module.__name__:
            namespace[key] = value
    if args.name:
        namespace[args.name] = module
    return module if args.show else None


def load_ipython_extension(ipython: Any) -> None:
    """`%load_ext gradgen`: register the `%%gradgen` cell magic."""
    def magic(line: str, cell: str) -> Any:
        return gradgen_cell(line, cell, ipython.user_ns)

    magic.__doc__ = __doc__
    ipython.register_magic_function(magic, magic_kind="cell", magic_name="gradgen")
