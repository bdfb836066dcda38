"""The printer interface: a second target plugs in by implementing `Printer`'s construct
methods. A toy target (namespace `xp`, no method forms, no `out=`) prints a small graph
whose NumPy code uses every kind of NumPy-only construct; its code runs (with NumPy
standing in for `xp`) and gives the NumPy printer's values."""

from __future__ import annotations

import re
import types

import numpy as np
import pytest

from gradgen.codegen.naming import Namer
from gradgen.codegen.printer import NumpyPrinter, Printer, printer_for
from gradgen.codegen.schedule import schedule
from gradgen.errors import InternalError
from gradgen.frontend import parse_program
from gradgen.passes import building

SOURCE = """\
def f(X: Data[N, D], w: Param[D], b: Param[()]):
    z = X @ w + b
    s = sigmoid(z)
    h = s * (1 - s)
    t = reshape(h, (N, 1)) * ones((N, D))
    c = concatenate([h, h])
    return mean(h) + sum(t.T, axis=1)[0] + logdet(eye(D) + outer(w, w)) + sum(c * c)
"""

SIZES = {"N": 5, "D": 3}


class ToyPrinter(Printer):
    """An array-API-like target: the namespace is `xp`, functions instead of methods,
    nothing computed in place (`supports_out` is False, so `into` refuses)."""

    target = "array_api"
    namespace = "xp"

    def reduction(self, name, node, kwargs):
        return self.call(name, [self.arg(node, 0, 0)], kwargs)

    def method(self, x_code, name, args=()):
        return self.call(name, [x_code, *args])

    def full_transpose(self, x_code, ndim=2):
        return self.call("matrix_transpose", [x_code])

    def dtype_of(self, x_code):
        return f"{x_code}.dtype"

    def result_type(self, args):
        return self.call("result_type", args) if args else self.fn("float64")

    def creation(self, kind, shape, dtype, value=None):
        return self.call(kind, [shape] if value is None else [shape, value], [f"dtype={dtype}"])

    def copy(self, x_code, prec, scalar=False):
        return self.call("asarray", [x_code], ["copy=True"])


def _print(printer: Printer):
    with building():
        entry = parse_program(SOURCE, "toy.grad").entries[0]
        names = dict(entry.names)
        arg_names = {a.name for a in entry.args}
        body = schedule([entry.output], names, Namer(arg_names | set(SIZES)), printer,
                        keep=frozenset(arg_names))
    return body.lines, printer.code_of(entry.output)[0]


def _run(lines, result, printer, values):
    env = {"np": np, "xp": np, **values, **SIZES}   # NumPy 2 has the standard's names
    env["_logdet"] = lambda a: np.linalg.slogdet(a).logabsdet   # the toy target's helper
    for prelude in printer.preludes.values():
        exec(prelude, env)
    exec("\n".join(lines), env)
    return eval(result, env)


def test_numpy_printer_is_the_default_target():
    assert isinstance(printer_for("numpy"), NumpyPrinter)
    with pytest.raises(InternalError, match="no printer"):
        printer_for("fortran")


def test_a_second_printer_plugs_in():
    numpy_printer = NumpyPrinter()
    np_lines, np_result = _print(numpy_printer)
    numpy_code = "\n".join(np_lines + [np_result])
    # The NumPy printer uses the constructs the toy target must spell differently.
    for construct in ("out=", ".sum(", ".T", ".reshape(", "np.eye(", "dtype=", "[1]",
                      "np.concatenate(["):
        assert construct in numpy_code, construct

    toy = ToyPrinter()
    lines, result = _print(toy)
    code = "\n".join(lines + [result])
    assert "np." not in code and "out=" not in code
    assert not any(op in code for op in ("+=", "-=", "*=", "/="))
    assert not re.search(r"(?<!\bxp)\.(sum|mean|reshape|T|copy|astype)\b", code), code
    assert "xp.eye(D, dtype=w.dtype)" in code
    assert "xp.matrix_transpose(" in code and "xp.reshape(" in code
    # logdet declares its emission per target: the array API's helper _logdet (slogdet's
    # named tuple, or Dask's per-block fallback: runtime_xp), not NumPy's slogdet(...)[1]
    assert "_logdet(" in code and "slogdet" not in code and "[1]" not in code
    # concatenate: one rule for every target ("default") but the array API's own name
    assert "xp.concat([" in code and "concatenate" not in code
    with pytest.raises(InternalError, match="in place"):
        toy.into("add", ["a", "b"], "a")

    rng = np.random.default_rng(0)
    values = {"X": rng.normal(size=(5, 3)), "w": 0.3 * rng.normal(size=3), "b": 0.2}
    expected = _run(np_lines, np_result, numpy_printer, dict(values))
    got = _run(lines, result, toy, dict(values))
    assert got == pytest.approx(expected, rel=1e-12)


def test_an_op_without_emission_for_a_target_is_an_internal_error():
    """logdet declares its emission per target (numpy, array_api) and no default: a target
    it does not name has none."""
    class OtherPrinter(ToyPrinter):
        target = "other"

    source = 'def f(A: Param[N, N]):\n    return logdet(A)\n'
    with building():
        entry = parse_program(source, "toy.grad").entries[0]
        with pytest.raises(InternalError, match="no emission for target 'other'"):
            schedule([entry.output], dict(entry.names), Namer({"A", "N"}), OtherPrinter())


def test_constants_print_as_the_expressions_written():
    """`D * log(2 * pi)` prints as that expression, as a Python float (float32 stays
    float32) computed in float64; sin(pi) still folds as float64 does (not to sympy's 0)."""
    import math

    import gradgen

    source = ("def f(x: Param[D]):\n"
              "    return sum(x * x) + D * log(2 * pi) + exp(2) * log(3) + sin(pi)\n")
    text = gradgen.compile_source(source, "c.grad", modes=("grad",))
    assert "D * float(np.log(2 * np.pi))" in text
    assert "1.2246467991473532e-16" in text
    mod = types.ModuleType("c_grad")
    exec(compile(text, "c_grad.py", "exec"), mod.__dict__)
    x = np.arange(3.0)
    expected = 5.0 + 3 * math.log(2 * math.pi) + math.exp(2) * math.log(3) + math.sin(math.pi)
    assert mod.f(x) == pytest.approx(expected, rel=1e-15)
    assert np.asarray(mod.f(x.astype(np.float32))).dtype == np.float32
