"""Every kind of mistake in a source is reported as `FILE:LINE:COL: error: MESSAGE`, the
source line and a caret (SPEC §5).

Each test writes the whole expected report, so the caret can be checked by eye: it must
sit under the character the message is about. Columns are 1-based and count characters,
not bytes (tests with non-ASCII text, tabs, a BOM and CRLF line ends check that).
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import clirun
import pytest

import gradgen
from gradgen import CompileError, Diagnostic

ROOT = Path(__file__).resolve().parents[1]
HEAD = re.compile(r"^(?P<file>[^:\n]+):(?P<line>\d+):(?P<col>\d+): error: (?P<message>.*)$")


def diagnose(source: str, **options) -> CompileError:
    with pytest.raises(CompileError) as info:
        gradgen.compile_source(source, filename="t.grad", **options)
    return info.value


def check(source: str, expected: str, **options) -> None:
    """Compile `source` (dedented) and compare the report with `expected` (dedented).

    `expected` is the three-line report: head, source line, caret line. The structured
    `Diagnostic` must say the same thing as the rendered text.
    """
    source = textwrap.dedent(source).lstrip("\n")
    expected = textwrap.dedent(expected).strip("\n")
    error = diagnose(source, **options)
    assert str(error) == expected
    head, source_line, caret = expected.split("\n")
    m = HEAD.match(head)
    assert m, head
    assert error.diagnostics == (Diagnostic(m["file"], int(m["line"]), int(m["col"]),
                                            m["message"], source_line),)
    # The caret line is blank up to the column: a cross-check of the expectation itself.
    assert caret.strip(" \t") == "^" and len(caret) == int(m["col"])


# ---------------------------------------------------------------------------- syntax


def test_syntax_error_points_at_the_unexpected_token():
    check("""
        def f(x: Param[N]):
            return sum(x +)
        """, """
        t.grad:2:19: error: syntax error: invalid syntax
            return sum(x +)
                          ^
        """)


def test_unclosed_parenthesis_points_at_the_parenthesis():
    check("""
        def f(x: Param[N]):
            y = x * 2
            return sum(y
        """, """
        t.grad:3:15: error: syntax error: '(' was never closed
            return sum(y
                      ^
        """)


def test_unexpected_indent_points_at_the_statement():
    check("""
        def f(x: Param[N]):
            y = x
              z = y
            return sum(z)
        """, """
        t.grad:3:7: error: syntax error: unexpected indent
              z = y
              ^
        """)


def test_inconsistent_dedent_points_at_the_statement():
    # Python itself reports the end of the line; the statement is what is misplaced.
    check("""
        def f(x: Param[N]):
            y = x
          return sum(y)
        """, """
        t.grad:3:3: error: syntax error: unindent does not match any outer indentation level
          return sum(y)
          ^
        """)


def test_unterminated_string():
    check("""
        def f(x: Param[N]):
            y = 'abc
            return sum(x)
        """, """
        t.grad:2:9: error: syntax error: unterminated string literal (detected at line 2)
            y = 'abc
                ^
        """)


def test_null_character_is_located():
    # The diagnostic holds the line as it is; its rendering shows the NUL escaped (issue 8:
    # no control character from a source reaches the terminal).
    error = diagnose("def f(x: Param[N]):\n    return sum(x)\0\n")
    assert error.diagnostics == (Diagnostic("t.grad", 2, 18, "the source contains a null "
                                            "character", "    return sum(x)\0"),)
    assert str(error) == ("t.grad:2:18: error: the source contains a null character\n"
                          "    return sum(x)\\x00\n"
                          "                 ^")


# ---------------------------------------------------------------------------- names


def test_unknown_name():
    check("""
        def f(x: Param[N]):
            return sum(z)
        """, """
        t.grad:2:16: error: unknown name 'z'
            return sum(z)
                       ^
        """)


def test_unknown_function():
    check("""
        def f(x: Param[N]):
            return foo(x)
        """, """
        t.grad:2:12: error: unknown function 'foo'
            return foo(x)
                   ^
        """)


def test_function_used_as_a_value():
    check("""
        def f(x: Param[N]):
            y = exp
            return sum(x)
        """, """
        t.grad:2:9: error: 'exp' is a function; call it with arguments
            y = exp
                ^
        """)


def test_annotation_name_cannot_be_assigned():
    check("""
        def f(x: Param[N]):
            Param = x
            return sum(Param)
        """, """
        t.grad:2:5: error: 'Param' is a built-in name and cannot be assigned
            Param = x
            ^
        """)


def test_builtin_shadowed_by_a_variable_cannot_be_called():
    # `mean = mean(x)` is fine (the right side still sees the built-in); a later call is
    # the error, naming the line that shadowed it.
    check("""
        def f(x: Param[N]):
            mean = mean(x)
            return mean * mean(x)
        """, """
        t.grad:3:19: error: 'mean' is a variable of 'f' (assigned on line 2), which shadows the built-in mean() from there on; rename the variable to call mean()
            return mean * mean(x)
                          ^
        """)  # noqa: E501


def test_builtin_shadowed_by_an_argument_cannot_be_called():
    check("""
        def f(x: Param[N], sign: Data[N]):
            return sum(sign(x) * sign)
        """, """
        t.grad:2:16: error: 'sign' is an argument of 'f', which shadows the built-in sign() from there on; rename the variable to call sign()
            return sum(sign(x) * sign)
                       ^
        """)  # noqa: E501


def test_calling_a_variable():
    check("""
        def f(x: Param[N]):
            y = x
            return sum(y(x))
        """, """
        t.grad:3:16: error: 'y' is a variable of 'f' (assigned on line 2), not a function
            return sum(y(x))
                       ^
        """)


def test_builtin_name_cannot_be_redefined_as_a_function():
    check("""
        def sum(x: Param[N]):
            return x
        """, """
        t.grad:1:5: error: 'sum' is a built-in name and cannot be redefined
        def sum(x: Param[N]):
            ^
        """)


def test_function_defined_twice():
    check("""
        def f(x: Param[N]):
            return sum(x)
        def f(x: Param[N]):
            return sum(x)
        """, """
        t.grad:3:5: error: function 'f' is defined twice (first on line 1)
        def f(x: Param[N]):
            ^
        """)


# ---------------------------------------------------------------------------- arguments


def test_too_many_arguments_points_at_the_first_extra_one():
    check("""
        def f(x: Param[N]):
            return sum(exp(x, x))
        """, """
        t.grad:2:23: error: exp() takes 1 argument but 2 were given
            return sum(exp(x, x))
                              ^
        """)


def test_too_many_arguments_to_a_helper():
    check("""
        def g(a):
            return a
        def f(x: Param[N]):
            return sum(g(x, x))
        """, """
        t.grad:4:21: error: g() takes 1 argument but 2 were given
            return sum(g(x, x))
                            ^
        """)


def test_missing_argument():
    check("""
        def f(x: Param[N]):
            return sum(clip(x, 1))
        """, """
        t.grad:2:16: error: clip() missing required argument 'hi'
            return sum(clip(x, 1))
                       ^
        """)


def test_missing_argument_to_a_helper():
    check("""
        def g(a, b):
            return a * b
        def f(x: Param[N]):
            return sum(g(x))
        """, """
        t.grad:4:16: error: g() missing required argument 'b'
            return sum(g(x))
                       ^
        """)


def test_unknown_keyword_points_at_the_keyword():
    check("""
        def f(x: Param[N]):
            return sum(x, axis=0, color=1)
        """, """
        t.grad:2:27: error: sum() got an unexpected keyword argument 'color'
            return sum(x, axis=0, color=1)
                                  ^
        """)


def test_duplicate_keyword():
    check("""
        def f(x: Param[N]):
            return sum(x, axis=0, axis=0)
        """, """
        t.grad:2:27: error: sum() got multiple values for argument 'axis'
            return sum(x, axis=0, axis=0)
                                  ^
        """)


def test_keyword_repeating_a_positional_argument():
    check("""
        def f(x: Param[N]):
            return sum(x, 0, axis=0)
        """, """
        t.grad:2:22: error: sum() got multiple values for argument 'axis'
            return sum(x, 0, axis=0)
                             ^
        """)


def test_double_star_arguments_in_a_call():
    check("""
        def f(x: Param[N]):
            return sum(x, **k)
        """, """
        t.grad:2:19: error: '**' unpacking is not supported
            return sum(x, **k)
                          ^
        """)


def test_static_argument_must_be_a_literal():
    check("""
        def f(x: Param[N]):
            return sum(x, axis=1.5)
        """, """
        t.grad:2:24: error: an axis must be an integer literal (axis arguments are an integer, a tuple of integers or None)
            return sum(x, axis=1.5)
                               ^
        """)  # noqa: E501


# ---------------------------------------------------------------------------- shapes


def test_broadcast_of_different_dimension_names_points_at_the_operator():
    check("""
        def f(x: Param[N], y: Param[M]):
            return sum(x + y)
        """, """
        t.grad:2:18: error: shapes (N,) and (M,) cannot be broadcast together
            return sum(x + y)
                         ^
        """)


def test_broadcast_of_different_literal_sizes():
    check("""
        def f(x: Param[3], y: Param[4]):
            return sum(x * y)
        """, """
        t.grad:2:18: error: shapes (3,) and (4,) cannot be broadcast together
            return sum(x * y)
                         ^
        """)


def test_broadcast_of_n_against_2n():
    check("""
        def f(x: Param[N], y: Param[2 * N]):
            return sum(x - y)
        """, """
        t.grad:2:18: error: shapes (N,) and (2 * N,) cannot be broadcast together
            return sum(x - y)
                         ^
        """)


def test_the_failing_operator_of_a_chain_is_the_one_pointed_at():
    # All three `+` start at `a` in the AST; the third one is the mistake.
    check("""
        def f(a: Param[N], b: Param[N], c: Param[M]):
            return sum(a + b + c)
        """, """
        t.grad:2:22: error: shapes (N,) and (M,) cannot be broadcast together
            return sum(a + b + c)
                             ^
        """)


def test_operator_on_its_own_line_between_comments():
    check("""
        def f(x: Param[N], y: Param[M]):
            z = ((x)  # first
                 +  # the operator
                 y)
            return sum(z)
        """, """
        t.grad:3:10: error: shapes (N,) and (M,) cannot be broadcast together
                 +  # the operator
                 ^
        """)


def test_matmul_inner_dimensions():
    check("""
        def f(A: Param[N, M], B: Param[K, M]):
            return sum(A @ B)
        """, """
        t.grad:2:18: error: matrix product of shapes (N, M) and (K, M): inner dimensions M and K differ
            return sum(A @ B)
                         ^
        """)  # noqa: E501


def test_reshape_size():
    check("""
        def f(A: Param[N, M]):
            return sum(reshape(A, (N, 3)))
        """, """
        t.grad:2:16: error: reshape(): cannot reshape an array of shape (N, M) into shape (N, 3)
            return sum(reshape(A, (N, 3)))
                       ^
        """)


def test_reduction_axis_out_of_range():
    check("""
        def f(A: Param[N, M]):
            return sum(sum(A, axis=2))
        """, """
        t.grad:2:16: error: sum(): axis 2 is out of range for an array of 2 dimensions
            return sum(sum(A, axis=2))
                       ^
        """)


def test_where_branches_of_different_shapes():
    check("""
        def f(x: Param[N], y: Param[M]):
            return sum(where(x > 0, x, y))
        """, """
        t.grad:2:16: error: where(): shapes (N,) and (N,) and (M,) cannot be broadcast together
            return sum(where(x > 0, x, y))
                       ^
        """)


def test_index_out_of_bounds_points_at_the_index():
    check("""
        def f(x: Param[3]):
            return sum(x[5])
        """, """
        t.grad:2:18: error: index 5 is out of bounds for axis 0 of size 3
            return sum(x[5])
                         ^
        """)


def test_shape_error_inside_a_helper_names_the_call():
    check("""
        def g(a, b):
            return a + b


        def f(x: Param[N], y: Param[M]):
            return sum(g(x, y))
        """, """
        t.grad:2:14: error: shapes (N,) and (M,) cannot be broadcast together (in helper 'g', inlined from line 6)
            return a + b
                     ^
        """)  # noqa: E501


def test_shape_error_in_nested_helpers_names_the_chain():
    check("""
        def h(a, b):
            return a @ b
        def g(a, b):
            return h(a, b) * 2
        def f(x: Param[N, K], y: Param[M, K]):
            return sum(g(x, y))
        """, """
        t.grad:2:14: error: matrix product of shapes (N, K) and (M, K): inner dimensions K and M differ (in helper 'h', inlined via 'g' from line 6)
            return a @ b
                     ^
        """)  # noqa: E501


def test_non_positive_dimension():
    check("""
        def f(x: Param[N, -1]):
            return sum(x)
        """, """
        t.grad:1:19: error: dimensions must be positive, got -1
        def f(x: Param[N, -1]):
                          ^
        """)


# ---------------------------------------------------------------------------- names once


def test_reassigning_a_dimension_name():
    check("""
        def f(x: Param[N]):
            y = x
            N = y * 2
            return sum(y)
        """, """
        t.grad:3:5: error: 'N' is a dimension; a variable may not share its name
            N = y * 2
            ^
        """)


def test_duplicate_argument():
    check("""
        def f(x: Param[N], x: Param[N]):
            return sum(x)
        """, """
        t.grad:1:20: error: duplicate argument 'x'
        def f(x: Param[N], x: Param[N]):
                           ^
        """)


# ---------------------------------------------------------------------------- recursion


def test_direct_recursion():
    check("""
        def g(a):
            return g(a)
        def f(x: Param[N]):
            return sum(g(x))
        """, """
        t.grad:2:12: error: helper 'g' calls itself; helpers are inlined, so recursion is not allowed
            return g(a)
                   ^
        """)  # noqa: E501


def test_mutual_recursion_names_the_cycle():
    check("""
        def g(a):
            return h(a) * 2
        def h(a):
            return g(a)
        def f(x: Param[N]):
            return sum(g(x))
        """, """
        t.grad:4:12: error: helper 'g' is recursive: g -> h -> g; helpers are inlined, so recursion is not allowed
            return g(a)
                   ^
        """)  # noqa: E501


# ---------------------------------------------------------------------------- unsupported


LOOP = ("a loop runs over range(...), not over an array: write for t in range(N): and "
        "i = x[t] in the body")


def test_for_loop():
    check("""
        def f(x: Param[N]):
            for i in x:
                y = i
            return sum(x)
        """, f"""
        t.grad:2:14: error: {LOOP}
            for i in x:
                     ^
        """)


def test_while_loop():
    check("""
        def f(x: Param[N]):
            while True:
                y = x
            return sum(x)
        """, """
        t.grad:2:5: error: 'while' loops are not supported: write a loop over range(...) (for t in range(T)), whose number of steps is known from the sizes
            while True:
            ^
        """)  # noqa: E501


def test_if_statement():
    check("""
        def f(x: Param[N]):
            if x > 0:
                y = x
            return sum(x)
        """, """
        t.grad:2:5: error: 'if' statements are not supported; use where(condition, a, b)
            if x > 0:
            ^
        """)


def test_if_expression():
    check("""
        def f(x: Param[N]):
            return sum(x if x > 0 else -x)
        """, """
        t.grad:2:16: error: conditional expressions are not supported; use where(condition, a, b)
            return sum(x if x > 0 else -x)
                       ^
        """)


def test_attribute_other_than_T():
    check("""
        def f(x: Param[N]):
            return sum(x.shape)
        """, """
        t.grad:2:16: error: attribute access '.shape' is not supported (only '.T')
            return sum(x.shape)
                       ^
        """)


def test_T_is_allowed():
    assert "def f(" in gradgen.compile_source(
        "def f(A: Param[N, M]):\n    return sum(A.T @ A)\n", filename="t.grad")


def test_method_call():
    check("""
        def f(x: Param[N]):
            return x.sum()
        """, """
        t.grad:2:12: error: method calls are not supported: write sum(x, ...) instead of x.sum(...)
            return x.sum()
                   ^
        """)


def test_import_at_top_level():
    check("""
        import numpy as np
        def f(x: Param[N]):
            return sum(x)
        """, """
        t.grad:1:1: error: imports are not supported (the source is never executed)
        import numpy as np
        ^
        """)


def test_import_in_a_function():
    check("""
        def f(x: Param[N]):
            from numpy import exp
            return sum(x)
        """, """
        t.grad:2:5: error: imports are not supported (the source is never executed)
            from numpy import exp
            ^
        """)


def test_lambda():
    check("""
        def f(x: Param[N]):
            g = lambda y: y
            return sum(x)
        """, """
        t.grad:2:9: error: lambda expressions are not supported
            g = lambda y: y
                ^
        """)


def test_list_comprehension():
    check("""
        def f(x: Param[N]):
            return sum([y for y in x])
        """, """
        t.grad:2:16: error: comprehensions are not supported; write vectorized operations
            return sum([y for y in x])
                       ^
        """)


def test_generator_expression():
    check("""
        def f(x: Param[N]):
            return sum(y * 2 for y in x)
        """, """
        t.grad:2:16: error: comprehensions are not supported; write vectorized operations
            return sum(y * 2 for y in x)
                       ^
        """)


def test_augmented_assignment_with_an_operator_the_language_lacks():
    check("""
        def f(x: Param[N]):
            y = x
            y //= 2
            return sum(y)
        """, """
        t.grad:3:5: error: augmented assignment '//=' is not supported (only += -= *= /= **= @=)
            y //= 2
            ^
        """)  # noqa: E501


def test_module_level_statement():
    check("""
        x[0] = 1
        def f(x: Param[N]):
            return sum(x)
        """, """
        t.grad:1:1: error: only function definitions and constants (EPS = 1e-8) are allowed at the top level
        x[0] = 1
        ^
        """)  # noqa: E501


def test_class():
    check("""
        class A:
            pass
        """, """
        t.grad:1:1: error: classes are not supported
        class A:
        ^
        """)


def test_decorator_points_at_the_at_sign():
    check("""
        @jit
        def f(x: Param[N]):
            return sum(x)
        """, """
        t.grad:1:1: error: decorators are not supported
        @jit
        ^
        """)


def test_default_argument():
    check("""
        def g(x, y=1):
            return x
        def f(x: Param[N]):
            return sum(g(x))
        """, """
        t.grad:1:12: error: default argument values are not supported
        def g(x, y=1):
                   ^
        """)


def test_star_args():
    check("""
        def g(*xs):
            return xs
        def f(x: Param[N]):
            return sum(x)
        """, """
        t.grad:1:8: error: '*xs' is not supported: a function takes a fixed list of plain arguments
        def g(*xs):
               ^
        """)  # noqa: E501


def test_star_star_kwargs():
    check("""
        def g(a, **kw):
            return a
        def f(x: Param[N]):
            return sum(x)
        """, """
        t.grad:1:12: error: '**kw' is not supported: a function takes a fixed list of plain arguments
        def g(a, **kw):
                   ^
        """)  # noqa: E501


def test_nested_function():
    check("""
        def f(x: Param[N]):
            def g(a):
                return a
            return sum(x)
        """, """
        t.grad:2:5: error: nested functions are not supported; define helpers at the top level
            def g(a):
            ^
        """)


def test_expression_statement_has_no_effect():
    check("""
        def f(x: Param[N]):
            exp(x)
            return sum(x)
        """, """
        t.grad:2:5: error: this expression has no effect; assign it to a name or return it
            exp(x)
            ^
        """)


def test_string_constant():
    check("""
        def f(x: Param[N]):
            return sum(x) + 'a'
        """, """
        t.grad:2:21: error: strings are not supported here
            return sum(x) + 'a'
                            ^
        """)


def test_number_too_large_for_a_float():
    check("""
        def f(x: Param[N]):
            return 1e400 * sum(x)
        """, """
        t.grad:2:12: error: this number is too large: it is not a finite floating-point value
            return 1e400 * sum(x)
                   ^
        """)


def test_no_entry_point():
    check("""
        def g(a):
            return a
        """, """
        t.grad:1:1: error: no entry point: annotate the arguments of at least one function with Param[...] or Data[...]
        def g(a):
        ^
        """)  # noqa: E501


# ---------------------------------------------------------------------------- gradients


NON_SCALAR = """
    def f(A: Param[N, M], x: Data[M]):
        y = A @ x
        return  exp(y)
    """


@pytest.mark.parametrize("mode", ["grad", "hvp"])
def test_gradient_of_a_non_scalar_output_points_at_the_return_expression(mode):
    check(NON_SCALAR, f"""
        t.grad:3:13: error: '{mode}' needs a scalar output, but 'f' returns shape (N,); use 'f_vjp' instead
            return  exp(y)
                    ^
        """, modes=[mode])  # noqa: E501


def test_non_scalar_output_gets_no_gradient_by_default():
    source = gradgen.compile_source(textwrap.dedent(NON_SCALAR), filename="t.grad")
    assert "def f_vjp(" in source and "def f_jvp(" in source
    assert "def f_grad(" not in source and "def f_hvp(" not in source


def test_vjp_of_a_non_scalar_output_is_fine():
    source = gradgen.compile_source(textwrap.dedent(NON_SCALAR), filename="t.grad",
                                    modes=["vjp"])
    assert "def f_vjp(" in source


def test_unknown_wrt():
    check("""
        def f(x: Param[N]):
            return sum(x)
        """, """
        t.grad:1:1: error: --wrt y: 'f' has no Param named 'y'
        def f(x: Param[N]):
        ^
        """, wrt=["y"])


# ---------------------------------------------------------------------------- comparisons


COMPARISON = "a comparison can only be the condition of where(...)"


def test_comparison_as_an_argument():
    check("""
        def f(x: Param[N]):
            return sum(x > 0)
        """, f"""
        t.grad:2:16: error: {COMPARISON}
            return sum(x > 0)
                       ^
        """)


def test_comparison_as_an_operand_points_at_the_comparison():
    check("""
        def f(x: Param[N]):
            return sum(x * (x > 0))
        """, f"""
        t.grad:2:21: error: {COMPARISON}
            return sum(x * (x > 0))
                            ^
        """)


def test_comparison_returned():
    check("""
        def f(x: Param[N]):
            return x > 0
        """, """
        t.grad:2:12: error: an entry point must return numbers, not a comparison; use where(condition, a, b)
            return x > 0
                   ^
        """)  # noqa: E501


def test_where_condition_must_be_a_comparison():
    check("""
        def f(x: Param[N]):
            return sum(where(x, x, -x))
        """, """
        t.grad:2:22: error: the condition of where(...) must be a comparison such as x > 0
            return sum(where(x, x, -x))
                             ^
        """)


def test_chained_comparison():
    check("""
        def f(x: Param[N]):
            return sum(where(0 < x < 1, x, -x))
        """, """
        t.grad:2:22: error: chained comparisons are not supported
            return sum(where(0 < x < 1, x, -x))
                             ^
        """)


def test_a_named_comparison_is_a_valid_condition():
    source = gradgen.compile_source(
        "def f(x: Param[N]):\n    positive = x > 0\n    return sum(where(positive, x, -x))\n",
        filename="t.grad")
    assert "def f_grad(" in source


# ---------------------------------------------------------------------------- dimensions


def test_variable_named_like_a_dimension():
    check("""
        def f(x: Param[N]):
            N = sum(x)
            return N
        """, """
        t.grad:2:5: error: 'N' is a dimension; a variable may not share its name
            N = sum(x)
            ^
        """)


def test_argument_named_like_a_dimension():
    check("""
        def f(x: Param[N], N: Data[N]):
            return sum(x)
        """, """
        t.grad:1:20: error: argument 'N' has the same name as a dimension
        def f(x: Param[N], N: Data[N]):
                           ^
        """)


def test_dimension_used_as_a_value_is_allowed():
    source = gradgen.compile_source("def f(x: Param[N]):\n    return sum(x) / N\n",
                                    filename="t.grad")
    assert "def f_grad(" in source


# ---------------------------------------------------------------------------- functions


def test_mixed_annotated_and_unannotated_arguments():
    check("""
        def f(x: Param[N], y):
            return sum(x)
        """, """
        t.grad:1:20: error: argument 'y' of entry point 'f' has no annotation: annotate every argument (Param[...], Data[...] or float) or none
        def f(x: Param[N], y):
                           ^
        """)  # noqa: E501


def test_unknown_annotation():
    check("""
        def f(x: Tensor[N]):
            return sum(x)
        """, """
        t.grad:1:10: error: unknown annotation 'Tensor[N]': use Param[...], Data[...], Index[...], float or int
        def f(x: Tensor[N]):
                 ^
        """)


def test_missing_return():
    check("""
        def f(x: Param[N]):
            y = sum(x)
        """, """
        t.grad:1:1: error: function 'f' has no 'return' statement
        def f(x: Param[N]):
        ^
        """)


def test_missing_return_in_a_helper():
    check("""
        def g(a):
            y = a * 2
        def f(x: Param[N]):
            return sum(g(x))
        """, """
        t.grad:1:1: error: function 'g' has no 'return' statement
        def g(a):
        ^
        """)


def test_return_without_a_value():
    check("""
        def f(x: Param[N]):
            return
        """, """
        t.grad:2:5: error: 'return' needs a value
            return
            ^
        """)


def test_statement_after_return():
    check("""
        def f(x: Param[N]):
            return sum(x)
            y = x
        """, """
        t.grad:3:5: error: unreachable statement after 'return'
            y = x
            ^
        """)


# ---------------------------------------------------------------------------- tuples


TUPLE_HELPER = "def g(a):\n    return a, a * 2\n"


def test_entry_point_returning_a_helper_tuple():
    check(TUPLE_HELPER + """\
def f(x: Param[N]):
    return g(x)
""", """
        t.grad:4:12: error: entry point 'f' must return a single array, not a tuple of 2
            return g(x)
                   ^
        """)


def test_entry_point_returning_a_tuple():
    check("""
        def f(x: Param[N]):
            return sum(x), sum(x * x)
        """, """
        t.grad:2:12: error: entry point 'f' must return a single array, not a tuple of 2
            return sum(x), sum(x * x)
                   ^
        """)


def test_tuple_assigned_to_one_name():
    check(TUPLE_HELPER + """\
def f(x: Param[N]):
    y = g(x)
    return sum(y)
""", """
        t.grad:4:9: error: this returns a tuple of 2 arrays; unpack it: a, b = ...
            y = g(x)
                ^
        """)


def test_unpacking_a_single_array():
    check("""
        def g(a):
            return a
        def f(x: Param[N]):
            a, b = g(x)
            return sum(a)
        """, """
        t.grad:4:12: error: cannot unpack a single array into 2 names; only a helper that returns a tuple can be unpacked
            a, b = g(x)
                   ^
        """)  # noqa: E501


def test_unpacking_into_the_wrong_number_of_names():
    check(TUPLE_HELPER + """\
def f(x: Param[N]):
    a, b, c = g(x)
    return sum(a)
""", """
        t.grad:4:5: error: cannot unpack 2 values into 3 names
            a, b, c = g(x)
            ^
        """)


def test_tuple_passed_where_an_array_is_expected():
    # This used to crash with an AttributeError (an internal error) instead of a diagnostic.
    check(TUPLE_HELPER + """\
def f(x: Param[N]):
    return sum(g(x))
""", """
        t.grad:4:16: error: expected an array, got a tuple of 2 arrays
            return sum(g(x))
                       ^
        """)


def test_tuple_passed_to_a_helper():
    check(TUPLE_HELPER + """\
def h(a):
    return a
def f(x: Param[N]):
    return sum(h(g(x)))
""", """
        t.grad:6:18: error: expected an array, got a tuple of 2 arrays
            return sum(h(g(x)))
                         ^
        """)


def test_tuple_unpacking_of_a_helper_is_allowed():
    source = gradgen.compile_source(TUPLE_HELPER + "def f(x: Param[N]):\n    a, b = g(x)\n"
                                    "    return sum(a * b)\n", filename="t.grad")
    assert "def f_grad(" in source


# ---------------------------------------------------------------------------- characters


def test_columns_count_characters_not_bytes():
    # 'é' is two bytes in UTF-8: a byte offset would put the caret one place too far.
    check("""
        def f(x: Param[N]):
            é = x
            return sum(é + zz)
        """, """
        t.grad:3:20: error: unknown name 'zz'
            return sum(é + zz)
                           ^
        """)


def test_columns_after_wide_identifiers():
    check("""
        def f(变量: Param[N]):
            return sum(变量 + zz)
        """, """
        t.grad:2:21: error: unknown name 'zz'
            return sum(变量 + zz)
                            ^
        """)


def test_columns_after_a_four_byte_character():
    # U+1D465 is four bytes in UTF-8 (and two UTF-16 units); Python reads it as `x`.
    check("""
        def f(\U0001d465: Param[N]):
            return sum(\U0001d465 + zz)
        """, """
        t.grad:2:20: error: unknown name 'zz'
            return sum(\U0001d465 + zz)
                           ^
        """)


def test_syntax_error_column_after_non_ascii_text():
    check("""
        def f(x: Param[N]):
            y = 'ééé' $ x
            return sum(y)
        """, """
        t.grad:2:15: error: syntax error: invalid syntax
            y = 'ééé' $ x
                      ^
        """)


def test_tab_counts_as_one_column_and_the_caret_line_keeps_it():
    source = "def f(x: Param[N]):\n\ty = x\n\treturn sum(y) + \tzz\n"
    error = diagnose(source)
    assert error.diagnostics == (Diagnostic("t.grad", 3, 19, "unknown name 'zz'",
                                            "\treturn sum(y) + \tzz"),)
    assert str(error) == ("t.grad:3:19: error: unknown name 'zz'\n"
                          "\treturn sum(y) + \tzz\n"
                          "\t" + " " * 16 + "\t^")


def test_bom_is_not_a_column():
    source = "\ufeffdef f(x: Param[N], y):\n    return sum(x)\n"
    error = diagnose(source)
    assert error.diagnostics[0].col == 20
    assert error.diagnostics[0].source_line == "def f(x: Param[N], y):"


def test_crlf_line_ends():
    source = "def f(x: Param[N]):\r\n    y = x\r\n    return sum(y + zz)\r\n"
    assert diagnose(source).diagnostics == (
        Diagnostic("t.grad", 3, 20, "unknown name 'zz'", "    return sum(y + zz)"),)


def test_bom_and_crlf_in_a_syntax_error():
    source = "\ufeffdef f(x: Param[N]):\r\n    y = (x +\r\n    return sum(y)\r\n"
    d = diagnose(source).diagnostics[0]
    assert (d.line, d.col, d.source_line) == (2, 9, "    y = (x +")
    assert d.message == "syntax error: '(' was never closed"


def test_form_feed_and_line_separator_do_not_shift_lines():
    # str.splitlines() would break lines at U+2028 and form feed; Python does not.
    source = ("def f(x: Param[N]):\n    # a comment \u2028 with a line separator\n"
              "    y = x\x0c\n    return sum(zz)\n")
    d = diagnose(source).diagnostics[0]
    assert (d.line, d.col, d.source_line) == (4, 16, "    return sum(zz)")


def test_compiles_with_bom_crlf_and_non_ascii():
    source = ("\ufeffdef f(θ: Param[N]):\r\n    \"\"\"Énergie.\"\"\"\r\n"
              "    return sum(θ * θ)\r\n")
    text = gradgen.compile_source(source, filename="t.grad")
    assert "def f_grad(θ: Array)" in text


# ---------------------------------------------------------------------------- the CLI


# In-process (tests/clirun.py), except one subprocess smoke test of the exit status.
run_cli = clirun.run


def test_cli_reports_a_diagnostic_without_traceback(tmp_path):
    (tmp_path / "bad.grad").write_text("def f(x: Param[N], y: Param[M]):\n"
                                       "    return sum(x + y)\n", encoding="utf-8")
    proc = clirun.run_subprocess("compile", "bad.grad", cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr == ("bad.grad:2:18: error: shapes (N,) and (M,) cannot be broadcast "
                           "together\n    return sum(x + y)\n                 ^\n")
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert not (tmp_path / "bad_grad.py").exists()


def test_cli_reads_bom_and_crlf_bytes(tmp_path):
    (tmp_path / "bad.grad").write_bytes("\ufeffdef f(é: Param[N]):\r\n    return sum(é) + zz\r\n"
                                        .encode("utf-8"))
    proc = run_cli("show", "bad.grad", cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr == ("bad.grad:2:21: error: unknown name 'zz'\n"
                           "    return sum(é) + zz\n" + " " * 20 + "^\n")


@pytest.mark.parametrize("command", ["compile", "show", "check", "graph"])
def test_every_command_reports_source_errors_the_same_way(tmp_path, command):
    (tmp_path / "bad.grad").write_text("def f(x: Param[N]):\n    for i in x:\n"
                                       "        y = i\n    return sum(x)\n", encoding="utf-8")
    proc = run_cli(command, "bad.grad", cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"bad.grad:2:14: error: {LOOP}\n    for i in x:\n"
                                  + " " * 13 + "^\n")
    assert "Traceback" not in proc.stderr


def test_cli_rejects_a_file_that_is_not_utf8(tmp_path):
    (tmp_path / "latin.grad").write_bytes(b"def f(x: Param[N]):\n    return sum(x) # \xe9\n")
    proc = run_cli("compile", "latin.grad", cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr == ("latin.grad:2:21: error: the file is not valid UTF-8 (byte 0xE9); "
                           "save it as UTF-8\n    return sum(x) # \ufffd\n" + " " * 20 + "^\n")
    assert not (tmp_path / "latin_grad.py").exists()


# ---------------------------------------------------------------------------- rendering


@pytest.mark.parametrize("col", [1, 3, 120, 251, 400, 501])
def test_long_source_lines_are_shown_around_the_column(col):
    line = "".join("X" if i == col - 1 else "ab"[i % 2] for i in range(501))
    head, shown, caret = Diagnostic("t.grad", 7, col, "m", line).render().split("\n")
    assert head == f"t.grad:7:{col}: error: m"
    assert len(shown) <= 160 + 2 * len("...")
    assert shown[len(caret) - 1] == "X" and caret.strip() == "^"
    assert shown.startswith("...") == (col > 81)
    assert shown.endswith("...") == (col < 501 - 79)


def test_short_source_lines_are_shown_whole():
    line = "    return sum(x + y)"
    assert Diagnostic("t.grad", 2, 18, "m", line).render() == (
        "t.grad:2:18: error: m\n    return sum(x + y)\n                 ^")


def test_deep_nesting_report_stays_readable():
    source = "def f(x: Param[N]):\n    return sum(" + "(" * 5000 + "x" + ")" * 5000 + ")\n"
    text = str(diagnose(source))
    assert len(text) < 400 and text.count("\n") == 2


def test_python_syntax_warnings_are_not_printed(tmp_path):
    # `1if` makes Python warn "invalid decimal literal"; only our diagnostic may appear.
    (tmp_path / "w.grad").write_text("def f(x: Param[N]):\n    y = x * 1if 1 else x\n"
                                     "    return sum(y)\n", encoding="utf-8")
    proc = run_cli("compile", "w.grad", cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr == ("w.grad:2:9: error: conditional expressions are not supported; use "
                           "where(condition, a, b)\n    y = x * 1if 1 else x\n        ^\n")
