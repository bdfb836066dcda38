"""Dimension expressions where sizes are written (SPEC §1, rev. 2), and module-level constants.

Derivatives through the new shapes (strided slices, dimension bounds, `C // H`, solved
annotations, the concatenate regression) are checked to second order by the op harness
(tests/test_ops.py, the "dimension expressions" block). Here: the sizes bound and checked
at entry (their ValueErrors, word for word), the diagnostics with their locations, the
printing of dimension expressions, module-level constants and `gradgen check`.
"""

from __future__ import annotations

import textwrap

import clirun
import numpy as np
import pytest
import sympy

import gradgen
from gradgen.dims import bind_sizes, dim_symbol, fmt_dim, fmt_shape, print_expr
from gradgen.verify import verify_module

N, M, C, H, D = (dim_symbol(n) for n in "NMCHD")


def load(source: str, **options) -> tuple[dict, str]:
    """The emitted module of `source` (verified), executed: (namespace, code)."""
    code = gradgen.compile_source(textwrap.dedent(source).lstrip("\n"), "t.grad", **options)
    verify_module(code)
    namespace: dict = {}
    exec(compile(code, "t_grad.py", "exec"), namespace)  # noqa: S102 - our own output
    return namespace, code


def error(source: str, **options) -> str:
    """The report of a source that does not compile (head, source line, caret)."""
    with pytest.raises(gradgen.CompileError) as info:
        gradgen.compile_source(textwrap.dedent(source).lstrip("\n"), "t.grad", **options)
    return str(info.value)


def report(expected: str) -> str:
    return textwrap.dedent(expected).strip("\n")


# ---------------------------------------------------------------- printing

@pytest.mark.parametrize("expr, human, code", [
    (sympy.ceiling(N / 2), "ceil(N / 2)", "(N + 1) // 2"),
    (sympy.ceiling((N - 1) / 2), "N // 2", "N // 2"),
    (C / H, "C // H", "C // H"),                       # an exact division of sizes
    (C / 2 + N / 2, "(C + N) // 2", "(C + N) // 2"),   # never C // 2 + N // 2
    (2 * C / H + 1, "2 * C // H + 1", "2 * C // H + 1"),
    (N * C / H - 3, "C * N // H - 3", "C * N // H - 3"),
    (sympy.Mod(C, H), "C % H", "C % H"),
    (2 * M, "2 * M", "2 * M"),
    (N - 1, "N - 1", "N - 1"),
])
def test_sizes_print_as_people_write_them(expr, human, code):
    assert fmt_dim(expr) == human
    assert print_expr(expr, integer=True) == code
    n = {"N": 7, "C": 12, "H": 4, "M": 3}
    value = expr.xreplace({dim_symbol(k): v for k, v in n.items()})
    assert eval(code, {}, n) == int(value)   # the printed code computes the size


def test_a_value_division_stays_a_float_division():
    assert print_expr(C / H) == "C / H"
    assert fmt_shape((N, sympy.ceiling(N / 2))) == "(N, ceil(N / 2))"


def test_sizes_are_bound_alone_first_then_solved_from_one_unknown():
    bound, missing = bind_sizes([("w", (3 * M,)), ("x", (N, 2 * M + N)), ("y", (N * D,))])
    assert list(bound) == ["N", "M", "D"]
    assert (bound["M"].arg, bound["M"].axis) == ("w", 0) and not bound["M"].direct
    assert bound["D"].declared == N * D and missing == []
    assert bind_sizes([("w", (M * M,))]) == ({}, ["M"])


# ---------------------------------------------------------------- sizes solved at entry

SOLVED = """
def f(w: Param[3 * M], x: Data[N], v: Param[N + 2 * K]):
    return sum(w ** 2) * M + sum(v) * K + sum(x)
"""


@pytest.mark.parametrize("checks", [True, False])
def test_a_dimension_in_an_expression_is_solved_from_the_size(checks):
    ns, code = load(SOLVED, checks=checks)
    w, x, v = np.arange(12.0), np.ones(3), np.ones(7)   # M = 4, N = 3, K = 2
    assert ns["f"](w, x, v) == pytest.approx(np.sum(w ** 2) * 4 + 7 * 2 + 3)
    dw, dv = ns["f_grad"](w, x, v)
    np.testing.assert_allclose(dw, 2 * w * 4)
    np.testing.assert_allclose(dv, np.full(7, 2.0))
    if checks:
        assert 'M = _solve("w", 0, "3 * M", "M", w.shape[0], 3)' in code
        assert 'K = _solve("v", 0, "N + 2 * K", "K", v.shape[0], 2, 1, N)' in code
    else:
        assert "M = w.shape[0] // 3" in code and "K = (v.shape[0] - N) // 2" in code
        assert "_solve" not in code


@pytest.mark.parametrize("w, v, message", [
    (13, 7, "argument 'w', axis 0: size 13 is not 3 * M for any positive integer M"),
    (0, 7, "argument 'w', axis 0: size 0 is not 3 * M for any positive integer M"),
    (12, 8, "argument 'v', axis 0: size 8 is not N + 2 * K for any positive integer K"),
    (12, 3, "argument 'v', axis 0: size 3 is not N + 2 * K for any positive integer K"),
])
def test_a_size_that_does_not_solve_is_a_value_error_naming_it(w, v, message):
    ns, _ = load(SOLVED)
    for fn in ("f", "f_grad", "f_hvp"):
        args = [np.ones(w), np.ones(3), np.ones(v)]
        args += [np.ones(w), np.ones(v)] if fn == "f_hvp" else []
        with pytest.raises(ValueError) as info:
            ns[fn](*args)
        assert str(info.value) == message


def test_exact_division_is_checked_at_entry():
    ns, code = load("""
        def f(x: Param[B, C], h: Data[H]):
            y = reshape(x, (B, H, C // H))
            return sum(y * y) / sqrt(C // H) + C % H
        """)
    assert '_exact(C, H, "C", "H", 2)' in code
    x = np.arange(12.0).reshape(2, 6)
    assert ns["f"](x, np.ones(3)) == pytest.approx(np.sum(x * x) / np.sqrt(2))
    with pytest.raises(ValueError) as info:
        ns["f_grad"](x, np.ones(4))
    assert str(info.value) == "C // H (line 2) must divide exactly, and 6 // 4 does not"


def test_a_slice_bound_beyond_its_axis_for_some_sizes_is_checked_at_entry():
    ns, code = load("""
        def f(a: Param[N, C], h: Data[H]):
            return sum(a[:, H:2 * H] ** 2)
        """)
    assert '_within(2 * H, C, "2 * H", "C", 2)' in code
    a = np.arange(12.0).reshape(2, 6)
    assert ns["f"](a, np.ones(3)) == pytest.approx(np.sum(a[:, 3:6] ** 2))
    np.testing.assert_allclose(ns["f_grad"](a, np.ones(2)),
                               np.where(np.arange(6) // 2 == 1, 2 * a, 0.0))
    with pytest.raises(ValueError) as info:
        ns["f"](a, np.ones(4))
    assert str(info.value) == ("slice bound 2 * H (line 2) is 8, outside 0..6 (the size "
                               "of its axis, C)")
    ns, code = load("""
        def f(x: Param[N]):
            return sum(x[N - 3:])
        """)
    assert '_within(N - 3, N, "N - 3", "N", 2)' in code
    assert ns["f"](np.arange(5.0)) == 2 + 3 + 4
    with pytest.raises(ValueError) as info:   # NumPy would take x[-1:]
        ns["f"](np.arange(2.0))
    assert str(info.value) == ("slice bound N - 3 (line 2) is -1, outside 0..2 (the size "
                               "of its axis, N)")


def test_strided_slices_of_a_multiple_and_bounds_with_dimensions():
    ns, code = load("""
        def f(x: Param[2 * M]):
            return sum(x[::2] * x[1::2]) + sum(x[:M - 1] * x[M + 1:])
        """)
    assert "x[:M - 1] * x[M + 1:]" in code
    x = np.arange(1.0, 9.0)
    assert ns["f"](x) == pytest.approx(np.sum(x[::2] * x[1::2]) + np.sum(x[:3] * x[5:]))
    ns, code = load("""
        def f(x: Param[N]):
            return x[::2] * 2
        """)
    assert "cotangent of the output, shape (ceil(N / 2),)" in code
    assert '_expect("g", g, ((N + 1) // 2,))' in code and "# (ceil(N / 2),)" in code
    np.testing.assert_allclose(ns["f_vjp"](np.ones(5), np.ones(3)), [2, 0, 2, 0, 2.0])


def test_the_concatenate_of_a_slice_differentiates():
    """Issue 10 item 6a: the reverse sweep once compared `N - 2 >= 0` in Python."""
    src = """
        def f(y: Param[N]):
            return sum(concatenate([y[2:], y]) ** 2)
        """
    ns, _ = load(src, hessian=True)
    y = np.arange(1.0, 6.0)
    np.testing.assert_allclose(ns["f_grad"](y), 2 * y + np.concatenate([[0, 0], 2 * y[2:]]))
    np.testing.assert_allclose(ns["f_hessian"](y), np.diag([2, 2, 4, 4, 4.0]))


# ---------------------------------------------------------------- module-level constants

def test_module_constants_are_folded_and_usable_everywhere():
    ns, code = load("""
        EPS = 1e-8
        H = 4
        TAU = 2 * pi
        K = H ** 2 // 3 - 1

        def scaled(z):
            return z * TAU + EPS

        def f(x: Param[B, C]):
            y = reshape(x, (B, H, C // H))
            return sum(scaled(y)) * K

        def g(x: Param[H, 2]):
            return sum(x) + EPS
        """)
    assert "reshape((B, 4, C // 4))" in code and "1e-08" in code   # folded, never assigned
    assert not any(line.startswith(("EPS", "H =", "TAU", "K =")) for line in code.splitlines())
    x = np.arange(8.0).reshape(1, 8)
    assert ns["f"](x) == pytest.approx((np.sum(x) * 2 * np.pi + 8e-8) * 4)
    assert ns["g"](np.ones((4, 2))) == pytest.approx(8 + 1e-8)


@pytest.mark.parametrize("source, expected", [
    ("""
     X = zeros(3)
     def f(x: Param[N]):
         return sum(x)
     """, """
     t.grad:1:5: error: a module-level constant must be a number or an arithmetic expression of numbers and earlier constants (EPS = 1e-8, H = 4, TAU = 2 * pi)
     X = zeros(3)
         ^
     """),
    ("""
     X = Y + 1
     def f(x: Param[N]):
         return sum(x)
     """, """
     t.grad:1:5: error: 'Y' is not a module-level constant defined above this line; a module-level constant must be a number or an arithmetic expression of numbers and earlier constants (EPS = 1e-8, H = 4, TAU = 2 * pi)
     X = Y + 1
         ^
     """),
    ("""
     X = 1 / (2 - 2)
     def f(x: Param[N]):
         return sum(x)
     """, """
     t.grad:1:7: error: division by zero in a module-level constant
     X = 1 / (2 - 2)
           ^
     """),
    ("""
     X = 10 ** 100
     def f(x: Param[N]):
         return sum(x)
     """, """
     t.grad:1:8: error: this constant is too large
     X = 10 ** 100
            ^
     """),
    ("""
     EPS = 1e-8
     def f(x: Param[EPS]):
         return sum(x)
     """, """
     t.grad:2:16: error: 'EPS' = 1e-08 (a module-level constant) is not a positive integer, so it cannot be a size
     def f(x: Param[EPS]):
                    ^
     """),
    ("""
     EPS = 1e-8
     def EPS(x: Param[N]):
         return sum(x)
     """, """
     t.grad:2:5: error: 'EPS' is a module-level constant and cannot also be a function
     def EPS(x: Param[N]):
         ^
     """),
])
def test_module_constant_diagnostics(source, expected):
    assert error(source) == report(expected)


# ---------------------------------------------------------------- diagnostics

@pytest.mark.parametrize("source, expected", [
    ("""
     def f(w: Param[M * M]):
         return sum(w)
     """, """
     t.grad:1:16: error: dimension 'M' cannot be determined from the arguments' sizes: it appears only in M**2 (argument 'w', axis 0), not linearly, so it cannot be solved for; declare it alone in some argument's shape (Data[M]) or as a multiple (Param[3 * M])
     def f(w: Param[M * M]):
                    ^
     """),
    ("""
     def f(x: Data[N], w: Param[M * K]):
         return sum(w)
     """, """
     t.grad:1:28: error: dimension 'K' cannot be determined from the arguments' sizes: it appears only in K * M (argument 'w', axis 0), together with 'M'; declare it alone in some argument's shape (Data[K]) or as a multiple (Param[3 * K])
     def f(x: Data[N], w: Param[M * K]):
                                ^
     """),
    ("""
     def f(x: Param[N, 10]):
         return sum(reshape(x, (N, 2, 10 // 4)))
     """, """
     t.grad:2:37: error: 10 // 4 is not an exact division (10 is not a multiple of 4); sizes divide exactly
         return sum(reshape(x, (N, 2, 10 // 4)))
                                         ^
     """),
    ("""
     def f(x: Param[N]):
         return sum(x[:N + 1])
     """, """
     t.grad:2:19: error: slice bound N + 1 is beyond the size N of axis 0 for every size
         return sum(x[:N + 1])
                       ^
     """),
    ("""
     def f(x: Param[N]):
         return sum(x[::2] * x[1::2])
     """, """
     t.grad:2:23: error: shapes (ceil(N / 2),) and (N // 2,) cannot be broadcast together; a strided slice has ceil(N / k) elements for a length N: declare the length as a multiple of the step (2 * M, whose x[::2] and x[1::2] both have M elements)
         return sum(x[::2] * x[1::2])
                           ^
     """),
    ("""
     def f(x: Param[N]):
         return sum(x // 2)
     """, """
     t.grad:2:18: error: '//' is for integers (Index values and dimensions)
         return sum(x // 2)
                      ^
     """),
])
def test_size_diagnostics_are_located_and_say_how_to_fix(source, expected):
    assert error(source) == report(expected)


# ---------------------------------------------------------------- gradgen check

def test_check_draws_sizes_that_meet_the_requirements(tmp_path):
    (tmp_path / "heads.grad").write_text(textwrap.dedent("""
        H = 2
        def f(x: Param[B, T, C], w: Param[3 * M]):
            y = reshape(x, (B, T, H, C // H))
            return sum(y ** 2) + sum(w[::3] * w[1::3] * w[2::3])
        """))
    proc = clirun.run("check", "heads.grad", "--seed", "1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-1].endswith("all agree")


@pytest.mark.parametrize("shape, hints, expected", [
    ((N, N), (), 100 * 100),
    ((N + 1, 3), (), 101 * 3),
    ((N, M), (("N", 7),), 7 * 100),
    ((sympy.floor(N / 3), 2 * M), (("M", 5),), 33 * 10),
    ((C // H, H), (("C", 12), ("H", 4)), 3 * 4),
    ((), (), 1),
])
def test_nominal_size_is_the_product_of_the_evaluated_dimensions(shape, hints, expected):
    """The size the cost rules compare (`nominal_size`: each named dimension counted as its
    hint, else 100), evaluated one dimension at a time: as the symbolic product would be."""
    from gradgen.dims import nominal_size, size
    assert nominal_size(shape, dict(hints)) == expected
    n = size(shape)
    assert expected == int(n.subs({s: dict(hints).get(str(s), 100) for s in n.free_symbols}))
