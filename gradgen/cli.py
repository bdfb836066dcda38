"""The command line: argument parsing and printing only; the work is done by the API."""

from __future__ import annotations

import argparse
import atexit
import os
import sys

from .escape import terminal_text
from .version import __version__

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3
EXIT_BROKEN_PIPE = 128 + 13   # what a shell reports for a process killed by SIGPIPE
EXIT_INTERRUPTED = 128 + 2    # ... and by SIGINT (Ctrl-C)


class _Fail(Exception):
    """A user-facing error of the command line (not of the source)."""


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `gradgen` command."""
    try:
        return _main(argv)
    except KeyboardInterrupt:   # Ctrl-C at any time, start-up included: no traceback
        return EXIT_INTERRUPTED


def command() -> None:
    """The `gradgen` command itself (the console script, `python -m gradgen`): `main`, its
    output flushed, then the process ends at once (`os._exit`) where nothing is registered
    to run at exit. The interpreter's teardown (SymPy's and NumPy's modules freed, a full
    pass of the garbage collector) does nothing a finished command needs, and took 0.09 s
    CPU of each `gradgen compile` (files are written by `io.atomic_write`: closed, renamed).
    An `atexit` handler (a coverage tool's) gets the usual exit."""
    code = main()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):   # (broken or closed: nothing more can be said there)
            pass
    if getattr(atexit, "_ncallbacks", lambda: 1)() == 0:
        os._exit(code)
    sys.exit(code)


def _main(argv: list[str] | None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_USAGE
    # (imported here: `gradgen --version` and `--help` start without dataclasses)
    from .errors import CompileError
    from .gcpause import gc_paused

    stdout = sys.stdout
    sys.stdout = _Output(stdout)
    try:
        # Every command compiles: the compiler (SymPy, NumPy, Jinja2) imported without the
        # collector's passes over what it makes (0.04 s of 0.33 s).
        with gc_paused():
            from . import compiler  # noqa: F401
        code = args.run(args)
        sys.stdout.flush()
        return code
    except CompileError as e:
        print(str(e), file=sys.stderr)   # rendered diagnostics carry no control characters
        return EXIT_ERROR
    except _Fail as e:
        _error(str(e))
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`gradgen show f.grad | head`): stop quietly, as cat does.
        _discard(stdout)
        return EXIT_BROKEN_PIPE
    except _OutputFailed as e:
        _discard(stdout)
        _error(f"cannot write to standard output: {e.error.strerror or e.error}")
        return EXIT_ERROR
    except MemoryError:
        _error("out of memory (are the sizes given on the command line too large?)")
        return EXIT_ERROR
    except Exception as e:
        if os.environ.get("GRADGEN_DEBUG"):
            raise
        print(terminal_text(f"gradgen: internal error: {type(e).__name__}: {e}", keep="\n")
              + "\nThis is a bug in gradgen. Please report it with the source file "
              "(set GRADGEN_DEBUG=1 for a traceback).", file=sys.stderr)
        return EXIT_INTERNAL
    finally:
        sys.stdout = stdout


def _error(message: str) -> None:
    """`gradgen: error: MESSAGE` on standard error, control characters (of paths) escaped."""
    print(f"gradgen: error: {terminal_text(message)}", file=sys.stderr)


def _shown(path) -> str:
    """A path as printed: control characters, and undecodable bytes, escaped."""
    return terminal_text(str(path))


class _OutputFailed(Exception):
    """Writing to standard output failed (a full disk, ...), which is not gradgen's bug."""

    def __init__(self, error: OSError):
        super().__init__(str(error))
        self.error = error


class _Output:
    """Standard output, with write errors told apart from errors of gradgen itself."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            raise
        except OSError as e:
            raise _OutputFailed(e) from None

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            raise
        except OSError as e:
            raise _OutputFailed(e) from None

    def __getattr__(self, name):
        return getattr(self._stream, name)


def _discard(stream) -> None:
    """Send what is left in `stream`'s buffer nowhere, so that exiting does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gradgen", description="Compile cost functions to "
                                "standalone NumPy gradient code.")
    p.add_argument("--version", action="version", version=f"gradgen {__version__}",
                   help="print the version of gradgen and exit")
    sub = p.add_subparsers(dest="command", metavar="COMMAND",
                           help="run `gradgen COMMAND --help` for its arguments")

    c = sub.add_parser(
        "compile", help="write the generated module",
        description="Compile each FILE to a standalone NumPy module, written atomically to "
        "<stem>_grad.py beside it (or to -o OUT). A file that gradgen did not write is never "
        "overwritten without --force. With --check nothing is written: the exit status is 1 "
        "when an output is missing or differs from what would be written; the options are "
        "then those recorded in the output's header, unless the command line gives some.")
    c.add_argument("file", nargs="+", metavar="FILE", help="a .grad source file (several allowed)")
    c.add_argument("-o", "--output", metavar="OUT",
                   help="output path, '-' for standard output (only with one FILE; "
                   "default: <stem>_grad.py beside FILE)")
    _add_options(c)
    c.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 if OUT differs from what would be written")
    c.add_argument("--force", action="store_true",
                   help="overwrite OUT even if gradgen did not write it")
    c.set_defaults(run=_compile)

    s = sub.add_parser(
        "show", help="print the generated source",
        description="Print the module that `gradgen compile` would write (highlighted on a "
        "terminal when Pygments is installed), one of its functions, or the IR.")
    s.add_argument("file", metavar="FILE", help="the .grad source file")
    s.add_argument("--function", help="only this generated function")
    s.add_argument("--part", choices=("forward", "backward", "all"), default="all",
                   help="only the forward or the backward statements")
    s.add_argument("--ir", action="store_true", help="print the IR instead of Python")
    s.add_argument("--rules", action="store_true",
                   help="with --ir: also list the rewrite rules that fired, by source line")
    _add_options(s)
    s.set_defaults(run=_show)

    k = sub.add_parser(
        "check", help="compare derivatives with finite differences",
        description="Compile FILE in memory, draw random inputs of the declared shapes and "
        "compare every derivative with two-sided finite differences (and JVP with VJP); "
        "print a table of relative errors and exit 1 on a mismatch.")
    k.add_argument("file", metavar="FILE", help="the .grad source file")
    k.add_argument("--dim", action="append", default=[], metavar="N=5",
                   help="size of a dimension (repeatable)")
    k.add_argument("--seed", type=int, default=0, metavar="S",
                   help="seed of the random inputs (default: 0)")
    k.set_defaults(run=_check)

    g = sub.add_parser(
        "graph", help="draw the DAG as Graphviz",
        description="Draw the computation graph of an entry point (forward, or forward and "
        "backward) as Graphviz DOT, or as SVG/PNG when Graphviz's `dot` is installed.")
    g.add_argument("file", metavar="FILE", help="the .grad source file")
    g.add_argument("-o", "--output", metavar="OUT",
                   help="OUT.dot, OUT.svg or OUT.png (default: DOT on stdout)")
    g.add_argument("--backward", action="store_true", help="include the backward pass")
    g.add_argument("--function", help="entry point to draw (default: the first)")
    _add_options(g)
    g.set_defaults(run=_graph)
    return p


def _add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--wrt", help="comma-separated Params to differentiate (default: all)")
    p.add_argument("--modes", help="comma-separated subset of grad,vjp,jvp,hvp")
    p.add_argument("--hessian", action="store_true", help="also emit f_hessian")
    p.add_argument("--jacobian", action="store_true",
                   help="also emit f_jacobian (for non-scalar outputs)")
    p.add_argument("--no-checks", action="store_true", help="omit argument shape checks")
    p.add_argument("--hint", action="append", default=[], metavar="N=10000",
                   help="size of a dimension for ordering matrix products (repeatable)")
    p.add_argument("--checkpoint", type=int, metavar="K",
                   help="loops' gradients save the carried values every K steps and "
                        "recompute the rest (less memory for long loops)")
    p.add_argument("--target", choices=("numpy", "array-api"), default="numpy",
                   help="the array library the module is written for: NumPy (default, "
                        "fastest) or the Python array API standard (NumPy, CuPy, PyTorch, "
                        "JAX, Dask)")
    p.add_argument("--workspace", action="store_true",
                   help="the functions also take workspace=ws (ws = module.Workspace()) and "
                        "reuse its buffers across calls (NumPy target)")


def _read(path: str) -> str:
    from .io import read_source

    try:
        return read_source(path)
    except IsADirectoryError:
        raise _Fail(f"cannot read {path}: it is a directory") from None
    except OSError as e:
        raise _Fail(f"cannot read {path}: {e.strerror or e}") from None


def _options(args):
    from .compiler import make_options

    def split(s):
        # `--modes ''`: no derivative, the value only
        return [x for x in s.split(",") if x.strip()] if s is not None else None

    try:
        hints = {}
        for item in args.hint:
            name, _, value = item.partition("=")
            if not _size(value):
                raise ValueError(f"--hint expects NAME=SIZE, got {item!r}")
            hints[name] = int(value)
        return make_options(split(args.modes), args.hessian, split(args.wrt), not args.no_checks,
                            hints, args.checkpoint, args.target, args.jacobian,
                            args.workspace)
    except ValueError as e:
        raise _Fail(str(e)) from None


def _size(text: str) -> bool:
    """True for a size as the command line takes it: ASCII digits, 1 to 10**18."""
    return text.isascii() and text.isdigit() and len(text) <= 18 and int(text) >= 1


def _module(args):
    from .compiler import compile_module

    return compile_module(_read(args.file), args.file, _options(args))


def _compile(args) -> int:
    if args.output is not None and len(args.file) > 1:
        raise _Fail("-o names the output of one FILE; give one FILE with -o, or leave -o out "
                    "to write <stem>_grad.py beside each")
    if args.output == "-" and args.check:
        raise _Fail("--check compares the output file with what would be written: "
                    "use it without -o -")
    if len(args.file) == 1:
        return _compile_one(args, args.file[0])
    from .errors import CompileError

    status = EXIT_OK
    for file in args.file:   # every file is tried; the exit status says if any failed
        try:
            status = max(status, _compile_one(args, file))
        except CompileError as e:
            print(str(e), file=sys.stderr)
            status = EXIT_ERROR
        except _Fail as e:
            _error(str(e))
            status = EXIT_ERROR
    return status


def _compile_one(args, file: str) -> int:
    """`gradgen compile` of one FILE (to its output, to standard output, or `--check`)."""
    # (imported here, not at the top: `gradgen --version` starts without pathlib)
    from pathlib import Path

    from .codegen.emit import render_module
    from .compiler import compile_module
    from .io import atomic_write, same_file, written_by_gradgen

    if args.output == "-":
        print(render_module(compile_module(_read(file), file, _options(args))), end="")
        return EXIT_OK
    out = Path(args.output) if args.output else Path(file).with_name(Path(file).stem + "_grad.py")
    if args.check:
        return _check_one(args, file, out)
    source = render_module(compile_module(_read(file), file, _options(args)))
    if same_file(out, file):
        raise _Fail(f"{out} is the source file; choose another output with -o")
    if out.is_dir():
        raise _Fail(f"{out} is a directory")
    if out.exists() and not args.force and not written_by_gradgen(out):
        raise _Fail(f"{out} exists and was not written by gradgen; use --force to overwrite it")
    try:
        atomic_write(out, source)
    except OSError as e:
        raise _Fail(f"cannot write {out}: {e.strerror or e}") from None
    print(f"wrote {_shown(out)}")
    return EXIT_OK


def _check_one(args, file: str, out) -> int:
    """`gradgen compile --check`: compare `out` (a Path) with what would be written,
    compiling with the options recorded in `out`'s header unless the command line gives
    options."""
    import shlex

    from .codegen.emit import render_module
    from .compiler import compile_module
    from .io import without_version

    try:
        if not out.is_file():   # a directory, or a FIFO that reading would block on
            raise FileNotFoundError(out)
        current = out.read_bytes()
    except OSError:
        current = None
    options = _options(args)
    if current is not None and not _options_given(args):
        options = _recorded_options(current) or options
    source = render_module(compile_module(_read(file), file, options))
    if current is None:
        print(f"{_shown(out)}: missing (would be written)", file=sys.stderr)
        return EXIT_ERROR
    # Byte for byte (a form feed or U+2028 where a line end was changes what Python
    # reads), except the gradgen version in the first line.
    if without_version(current) != without_version(source.encode("utf-8")):
        command = f"gradgen compile {shlex.quote(file)}{options.flags()}"
        if args.output:
            command += f" -o {shlex.quote(args.output)}"
        print(f"{_shown(out)}: out of date; run: {_shown(command)}", file=sys.stderr)
        return EXIT_ERROR
    print(f"{_shown(out)}: up to date")
    return EXIT_OK


def _options_given(args) -> bool:
    """True when the command line sets any of the options that shape the module."""
    return bool(args.wrt or args.modes is not None or args.hessian or args.jacobian
                or args.no_checks or args.hint or args.checkpoint or args.target != "numpy"
                or args.workspace)


class _HeaderFlags(argparse.ArgumentParser):
    """Reads the flags of a header's "Regenerate with:" line; a mistake raises ValueError."""

    def error(self, message: str):
        raise ValueError(message)


def _recorded_options(module: bytes):
    """The options recorded in the header of a module gradgen wrote (None when there is no
    header, or its flags are not ones this gradgen reads)."""
    from .io import recorded_flags

    flags = recorded_flags(module)
    if flags is None:
        return None
    parser = _HeaderFlags(prog="gradgen compile", add_help=False)
    _add_options(parser)
    try:
        return _options(parser.parse_args(flags))
    except (ValueError, _Fail):
        return None


def _show(args) -> int:
    from .codegen.emit import render_module
    from .ir import pretty
    from .passes import recording

    if args.rules and not args.ir:
        raise _Fail("--rules lists the rewrites of the IR: use it with --ir")
    with recording() as fired:
        module = _module(args)
    functions = module.functions
    if args.function:
        functions = [f for f in functions if f.name == args.function]
        if not functions:
            names = ", ".join(f.name for f in module.functions)
            raise _Fail(f"no generated function '{args.function}' (there are: {names})")
    if args.ir:
        text = "".join(f"# {f.name}\n{pretty(f.graph)}\n\n" for f in functions)
        if args.rules:
            text += _rules_fired(fired)
    elif args.part != "all" or args.function:
        keep = {"forward": ("forward",), "backward": ("backward",)}.get(
            args.part, ("forward", "backward", "check", "return"))
        parts = []
        for f in functions:
            parts.append(f"def {f.name}({', '.join(f.args)}):\n")
            parts += [f"    {line}\n" for line, phase in zip(f.lines, f.phases) if phase in keep]
            parts.append("\n")
        text = "".join(parts)
    else:
        text = render_module(module)
    if sys.stdout.isatty():
        # Text from the source is escaped in the module already; on a terminal, make sure
        # nothing else could send it a control sequence either.
        text = terminal_text(text, keep="\n")
        if not args.ir and args.part == "all" and not args.function:
            text = _highlight(text)
    print(text, end="")
    return EXIT_OK


def _rules_fired(fired) -> str:
    """The rewrite rules that fired while the module was built: one line per rule and
    source line (in the order they first fired), with the number of firings."""
    counts: dict[tuple, int] = {}
    texts: dict = {}
    for f in fired:
        key = (f.line, f.rule.name, f.rule.tag, f.rule.op)
        counts[key] = counts.get(key, 0) + 1
        texts[f.line] = f.text
    lines = [f"# rules fired ({len(fired)} rewrites)"]
    for (line, name, tag, op), k in counts.items():
        where = f"line {line}" if line is not None else "no line"
        lines.append(f"{where:>9}: {name} [{tag}] on {op}" + (f" x{k}" if k > 1 else "")
                     + (f"   # {terminal_text(texts[line].strip())}" if texts.get(line) else ""))
    return "\n".join(lines) + "\n"


def _highlight(text: str) -> str:
    try:
        import pygments
        from pygments.formatters import TerminalFormatter
        from pygments.lexers import PythonLexer
    except ImportError:
        return text
    return pygments.highlight(text, PythonLexer(), TerminalFormatter())


def _check(args) -> int:
    from .checking import TooLarge, check_entry, format_table, load_with_hessian

    dims = {}
    for item in args.dim:
        name, _, value = item.partition("=")
        if not name.isidentifier() or not _size(value):
            raise _Fail(f"--dim expects NAME=SIZE with a positive size, got {item!r}")
        dims[name] = int(value)
    mod, entries, note = load_with_hessian(_read(args.file), args.file)
    results: list = []
    notes: list[str] = []
    for entry in entries:
        try:
            results += check_entry(mod, entry, dims, args.seed, notes)
        except TooLarge as e:
            raise _Fail(str(e)) from None
    for line in notes:
        print(f"note: {terminal_text(line)}")
    print(format_table(results))
    unchecked = [r for r in results if r.label is not None]    # nowhere finite
    results = [r for r in results if r.label is None]
    checked = sorted({r.function.rsplit("_", 1)[-1] if "_" in r.function else r.function
                      for r in results})
    bad = [r for r in results if not r.ok]
    if note:
        print(f"\n{terminal_text(note)}")
    print((f"\nchecked {len(results)} derivatives ({', '.join(checked)}): "
           + ("all agree" if not bad else f"{len(bad)} MISMATCH") if results
           else "\nchecked no derivatives")
          + (f"; {len(unchecked)} entry point(s) not checked (not finite at any inputs "
             "drawn)" if unchecked else ""))
    bad += unchecked
    return EXIT_ERROR if bad else EXIT_OK


def _graph(args) -> int:
    from pathlib import Path

    from .graphviz import module_dot, render
    from .io import atomic_write, same_file

    module = _module(args)
    dot = module_dot(module, args.backward, args.function)
    if dot is None:
        raise _Fail("nothing to draw")
    if not args.output:
        print(dot, end="")
        return EXIT_OK
    out = Path(args.output)
    if same_file(out, args.file):
        raise _Fail(f"{out} is the source file; choose another output with -o")
    if out.suffix == ".dot":
        atomic_write(out, dot)
    elif out.suffix in (".svg", ".png"):
        try:
            atomic_write(out, render(dot, out.suffix[1:]))
        except RuntimeError as e:
            raise _Fail(str(e)) from None
    else:
        raise _Fail("the output must end in .dot, .svg or .png")
    print(f"wrote {_shown(out)}")
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
