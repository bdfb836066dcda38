"""Names in the emitted module: the module's own names (the NumPy alias, helpers, spec
constants, the builtins it calls) never collide with the user's, and entry points whose
emitted functions would share a name are a diagnostic (issue 8, item 5)."""

from __future__ import annotations

import ast
import builtins
import itertools
from pathlib import Path

import numpy as np
import pytest
from compiled import compile_text
from emitted import calls, inputs, leaves, load
from test_random_programs import RandomChooser, generate

import gradgen
from gradgen.codegen.naming import ModuleNamer, rename_identifiers
from gradgen.compiler import helper_sources
from gradgen.ops import BUILTINS
from gradgen.passes import building

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*/*.grad"))

SMALL = [
    """
def f(x: Param[N], y: Data[N], s: Param[()]):
    z = sigmoid(x) * y + erf(s * x)
    w = z / log(N)
    return sum(w * w) + s * s
""",
    """
def f(A: Param[N, M], b: Data[M], t: float):
    u = A @ b
    v = transpose(A)[0] * t
    return sum(exp(u)) + sum(v) + mean(reshape(A, (M, N))) * pi
""",
    """
def loss(w: Param[K], c: Data[K]):
    return sum(c * w)


def g(x: Param[N], z: Param[N]):
    return x + z


def h(p: Param[()], q: Param[3]):
    return p * sum(q) + sum(softplus(q)) * p * p
""",
]

# Every name the issue reports, the module's internal names and the variants the module
# namer hands out when they are taken.
HELPERS = helper_sources(workspace=True)
_internal = ModuleNamer((), HELPERS)
COLLIDING = ["np", "float", "len", "getattr", "zip", "enumerate", "_dims", "_expect",
             "_DIMS_PASSED", "_G_ARGS", "_F_ARGS", "_COST_ARGS", "_sigmoid", "_erf", "numpy",
             "np_", "_dims_", "float_", "len_", "isinstance", "int", "complex", "ValueError",
             "tuple", "set"]
COLLIDING += [n for n in _internal.canonical if n not in COLLIDING]
COLLIDING += [n for n in (c + "_" for c in _internal.canonical) if n not in COLLIDING]
LOCAL_ONLY = ["__builtins__", "__name__"]   # names Python reserves at module level


def _user_names(tree: ast.Module) -> tuple[list[str], list[str]]:
    """(function names, every other name the source binds: arguments, dimensions,
    variables), each in order of first appearance."""
    fns, others = [], []
    for fn in tree.body:
        if isinstance(fn, ast.FunctionDef):
            fns.append(fn.name)
            for node in ast.walk(fn):
                if isinstance(node, ast.arg):
                    others.append(node.arg)
                    for n in ast.walk(node.annotation) if node.annotation else ():
                        if isinstance(n, ast.Name) and n.id not in (
                                "Param", "Data", "Index", "float", "int"):
                            others.append(n.id)
                elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                    others.append(node.id)
    # a built-in bound as a variable (`mean = mean(x)`) keeps its name: the same token also
    # calls the built-in before the binding
    return list(dict.fromkeys(fns)), [n for n in dict.fromkeys(others)
                                      if n not in fns and n not in BUILTINS]


def rename_colliding(source: str, offset: int = 0) -> str:
    """`source` with every entry point, helper, argument, dimension and variable renamed
    to a name the emitted module uses itself (token-level, so the program's meaning is
    unchanged)."""
    tree = ast.parse(source)
    present = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} | {
        a.arg for a in ast.walk(tree) if isinstance(a, ast.arg)} | {
        f.name for f in tree.body if isinstance(f, ast.FunctionDef)}
    fns, others = _user_names(tree)
    pool = [n for n in COLLIDING[offset:] + COLLIDING[:offset] if n not in present]
    fn_pool = iter(pool)
    other_pool = itertools.cycle(LOCAL_ONLY + pool)
    mapping = {}
    for name in fns:
        mapping[name] = next(fn_pool)
    used = set(mapping.values())
    for name in others:
        new = next(other_pool)
        while new in used:
            new = next(other_pool)
        mapping[name] = new
        used.add(new)
    return rename_identifiers(source, mapping)


_ORIGINALS: dict = {}   # the original of each corpus program is compiled once, not per offset


def _compile_original(source: str, **options):
    key = (source, tuple(sorted(options.items())))
    if key not in _ORIGINALS:
        try:
            _ORIGINALS[key] = gradgen.compile_source(source, "orig.grad", **options)
        except gradgen.CompileError as e:
            _ORIGINALS[key] = e
    if isinstance(_ORIGINALS[key], gradgen.CompileError):
        raise _ORIGINALS[key]
    return _ORIGINALS[key]


def _compile_both(source: str, renamed: str, **options):
    try:
        return (_compile_original(source, hessian=True, **options),
                gradgen.compile_source(renamed, "renamed.grad", hessian=True, **options))
    except gradgen.CompileError as e:
        if "--hessian" not in str(e):
            raise
    return (_compile_original(source, **options),
            gradgen.compile_source(renamed, "renamed.grad", **options))


CORPUS = ([p.read_text() for p in EXAMPLES] + SMALL
          + [generate(RandomChooser(seed)).source for seed in range(12)]
          # longer names used to make the scheduler write `np.multiply(1 / 3, x, out=x)`
          # where it wrote `x /= 3`, which rounds differently
          + [generate(RandomChooser(seed), 16).source for seed in (18, 80)])


@pytest.mark.parametrize("checks", [True, False], ids=["checks", "no-checks"])
@pytest.mark.parametrize("k", range(len(CORPUS)))
def test_renamed_to_colliding_names_computes_exactly_the_same(k, checks):
    source = CORPUS[k]
    for offset in (0, 7, 19) if checks else (7,):   # different names to different places
        renamed = rename_colliding(source, offset)
        text, text2 = _compile_both(source, renamed, checks=checks)
        mod, mod2 = load(text), load(text2)
        rng = np.random.default_rng(k)
        args = inputs(source, rng)
        fns = calls(mod, source, args, np.random.default_rng(k))
        fns2 = calls(mod2, renamed, dict(zip(_entry_names(renamed), args.values())),
                     np.random.default_rng(k))
        assert len(fns) == len(fns2) > 0
        for (name, a), (name2, a2) in zip(fns, fns2):
            r, r2 = getattr(mod, name)(*a), getattr(mod2, name2)(*a2)
            for x, y in zip(leaves(r), leaves(r2), strict=True):
                assert np.asarray(y).dtype == np.asarray(x).dtype, (name, name2)
                assert np.array_equal(x, y, equal_nan=True), (name, name2, renamed)
            # keyword calls use the names the user wrote
            kw = dict(zip(list(_signature(getattr(mod2, name2))), a2))
            for x, y in zip(leaves(r), leaves(getattr(mod2, name2)(**kw)), strict=True):
                assert np.array_equal(x, y, equal_nan=True)


def _entry_names(source: str) -> list[str]:
    from emitted import entries
    return [e for e, _ in entries(source)]


def _signature(fn):
    import inspect
    return inspect.signature(fn).parameters


def test_the_issue_examples():
    """`_sigmoid` as an entry point; arguments and dimensions named like the module's own
    names and builtins."""
    src = """
def _sigmoid(x: Param[N]):
    return sum(sigmoid(x))


def g(np: Param[len], float: Data[len], _dims: Param[()], _expect: Data[zip]):
    _DIMS_PASSED = sigmoid(np) * float
    getattr = log(len) * _DIMS_PASSED * _dims
    return sum(getattr) + sum(_expect) * sum(erf(np))


def len(getattr: Param[enumerate], __builtins__: Data[enumerate]):
    return sum(erf(getattr) * __builtins__)
"""
    mod = load(gradgen.compile_source(src, "t.grad", hessian=True))
    x = np.array([0.3, -1.2, 2.0])
    s = 1 / (1 + np.exp(-x))
    assert np.allclose(mod._sigmoid(x), s.sum())
    assert np.allclose(mod._sigmoid_grad(x), s * (1 - s))
    f = np.array([1.0, 2.0, 3.0])
    e = np.array([4.0, 5.0])
    v, (_, dd) = mod.g_value_and_grad(x, f, 2.0, e)
    from math import erf
    assert np.isclose(v, np.log(3) * 2.0 * (s * f).sum() + 9.0 * sum(map(erf, x)))
    assert np.isclose(dd, np.log(3) * (s * f).sum())
    assert mod.len_grad(x, f).shape == (3,)
    assert np.allclose(mod.len(x, f), sum(erf(a) * b for a, b in zip(x, f)))
    with pytest.raises(ValueError, match="argument 'float'"):   # the checks still work
        mod.g(x, e, 2.0, e)


@pytest.mark.parametrize("first,second,emitted", [
    ("f", "f_grad", "f_grad"),
    ("f", "f_value_and_grad", "f_value_and_grad"),
    ("f_grad", "f", "f_grad"),
    ("f", "f_hvp", "f_hvp"),
])
def test_entry_points_whose_functions_share_a_name_are_a_diagnostic(first, second, emitted):
    src = (f"def {first}(x: Param[N]):\n    return sum(x * x)\n\n\n"
           f"def {second}(y: Param[N]):\n    return sum(exp(y))\n")
    with pytest.raises(gradgen.CompileError) as info:
        gradgen.compile_source(src, "c.grad")
    message = str(info.value)
    assert message.startswith("c.grad:5:5: error: ")
    assert f"'{first}'" in message and f"'{second}'" in message and f"'{emitted}'" in message


def test_a_name_only_an_unemitted_function_would_take_is_fine():
    """`f` without Params emits no `f_grad`: an entry point `f_grad` is then no collision;
    nor with `--modes jvp`."""
    src = ("def f(x: Data[N]):\n    return sum(x)\n\n\n"
           "def f_grad(y: Param[N]):\n    return sum(y * y)\n")
    mod = load(gradgen.compile_source(src, "c.grad"))
    assert np.array_equal(mod.f_grad_grad(np.array([1.0, 2.0])), [2.0, 4.0])
    src2 = src.replace("Data", "Param")
    mod = load(gradgen.compile_source(src2, "c.grad", modes=["jvp"]))
    assert mod.f_grad(np.array([1.0, 2.0])) == 5.0


@pytest.mark.parametrize("a,b", [("cost", "COST"), ("ss", "ß"), ("f", "F"), ("q", "_Q")])
def test_entry_points_whose_spec_constants_used_to_collide(a, b):
    """Names that differ only as `upper()` sees them are different functions; each gets its
    own argument spec (these used to share `_COST_ARGS`, the later winning)."""
    src = (f"def {a}(x: Param[N]):\n    return sum(x * x)\n\n\n"
           f"def {b}(y: Param[N, 2]):\n    return sum(exp(y))\n")
    mod = load(gradgen.compile_source(src, "c.grad"))
    x, y = np.array([1.0, 2.0]), np.ones((3, 2))
    fa, fb = getattr(mod, a), getattr(mod, b)
    assert fa(x) == 5.0 and np.isclose(fb(y), 6 * np.e)
    assert np.array_equal(getattr(mod, a + "_grad")(x), 2 * x)
    with pytest.raises(ValueError, match="argument 'y'"):
        fb(x)
    with pytest.raises(ValueError, match="argument 'x'"):
        fa(y)


@pytest.mark.parametrize("name", ["__builtins__", "__getattr__", "__name__"])
def test_dunder_entry_points_are_a_diagnostic(name):
    src = f"def {name}(x: Param[N]):\n    return sum(x)\n"
    with pytest.raises(gradgen.CompileError, match=f"1:5: error: entry point '{name}'"):
        gradgen.compile_source(src, "c.grad")


def test_examples_keep_the_canonical_names():
    """No user name takes an internal one in the examples: nothing is renamed, no alias."""
    for p in EXAMPLES:
        text = compile_text(p.read_text(), p.name)
        assert "\nimport numpy as np\n" in text and "_dims_" not in text


# ---------------------------------------------------------------- the renaming function


def test_rename_identifiers_is_token_level():
    src = ('@np.errstate(over="ignore")  # np here is a comment\n'
           'def _h(x, out=None):\n'
           '    """np in a docstring"""\n'
           '    n = len(x) + np.len\n'
           '    return f"{len(x)!r:>{len(x)}} {{len}} np" + "len(np)", np.shape(x)\n')
    out = rename_identifiers(src, {"np": "numpy", "len": "len_", "_h": "_h_"})
    assert out == ('@numpy.errstate(over="ignore")  # np here is a comment\n'
                   'def _h_(x, out=None):\n'
                   '    """np in a docstring"""\n'
                   '    n = len_(x) + numpy.len\n'
                   '    return f"{len_(x)!r:>{len_(x)}} {{len}} np" + "len(np)", '
                   'numpy.shape(x)\n')
    with pytest.raises(ValueError, match="keyword"):
        rename_identifiers(src, {"out": "o"})


def test_module_namer_avoids_user_names_and_is_injective():
    names = ModuleNamer({"np", "numpy", "len", "_dims", "float_"}, HELPERS)
    assert names["np"] == "np_" and names["len"] == "len_" and names["_dims"] == "_dims_"
    assert names["float"] == "float" and names["_expect"] == "_expect"
    assert names["float"] in dir(builtins)
    a, b = names.fresh("_COST_ARGS"), names.fresh("_COST_ARGS")
    assert a == "_COST_ARGS" and b != a and b.isidentifier()
    assert "len_ = len" in names.aliases() and names.numpy_import() == "import numpy as np_"
    assert len(set(names.names.values())) == len(names.names)


def test_module_namer_finds_a_variant_whatever_the_user_took():
    taken = {"np", "numpy", "np_", *(f"np_{k}" for k in range(2, 300))}
    names = ModuleNamer(taken, HELPERS)
    assert names["np"] == "np_300"


def test_temporaries_are_named_after_their_operands():
    """`XV` for `X @ V`, `Q_scaled` for `2 * Q`, and a name from the nearest source name
    rather than a bare op name (`mul`, `diff`) however deep the expression."""
    from gradgen import ir
    from gradgen.codegen.naming import temp_name
    from gradgen.frontend import parse_program

    source = ("def f(X: Data[N, D], V: Param[D, M], Q: Data[N, M], Zeta: Data[M, K]):\n"
              "    return sum(X @ V) + sum(exp(Q * 2)) + sum(Q @ Zeta)"
              " + sum(exp(exp(exp(exp(X)))) * exp(exp(exp(exp(X)))))\n")
    with building():
        entry = parse_program(source, "t.grad").entries[0]
        nodes = ir.topo_order([entry.output])
        got = {}
        for n in nodes:
            if n.op in ("matmul", "mul") and not n.is_const:
                got.setdefault(n.op, []).append(temp_name(n, entry.names))
    assert "XV" in got["matmul"] and "Q_Zeta" in got["matmul"]
    assert "Q_scaled" in got["mul"]
    assert "X_mul" in got["mul"]   # exp(exp(exp(exp(X)))) squared: X is 5 nodes down


def _assigned(code: str, function: str) -> set[str]:
    """The names `function` of the module `code` assigns."""
    fn = next(f for f in ast.parse(code).body
              if isinstance(f, ast.FunctionDef) and f.name == function)
    return {t.id for n in ast.walk(fn) if isinstance(n, ast.Assign)
            for t in n.targets if isinstance(t, ast.Name)}


def test_temporaries_are_named_after_what_they_are_computed_from():
    """Not after a bias broadcast into them (`b_exp` for exp(X @ W + b - max)), an Index
    argument (`y_rows`), or the dtype's witness of a constant array (`X_full` for the
    starting cotangent); a cotangent rebuilt by a later pass keeps its primal's name
    (`dhsWy`, not `X_diff` after the first argument)."""
    source = ("def f(X: Data[N, D], y: Index[N], W: Param[D, C], b: Param[C]):\n"
              "    return -mean(log_softmax(X @ W + b, axis=1)[arange(N), y])\n")
    names = _assigned(gradgen.compile_source(source, modes=["grad"]), "f_grad")
    assert {"X_exp", "X_sum"} <= names, names
    assert not any(n.startswith(("b_", "y_")) or n.endswith("_full") for n in names), names
    rnn = ("def f(X: Data[T, N, D], Y: Index[T, N], Wx: Param[D, H], Wh: Param[H, H],\n"
           "      Wy: Param[H, C], h0: Data[N, H]):\n"
           "    h = h0\n"
           "    loss = 0.0\n"
           "    for t in range(T):\n"
           "        h = tanh(X[t] @ Wx + h @ Wh)\n"
           "        loss += -mean(log_softmax(h @ Wy, axis=1)[arange(N), Y[t]])\n"
           "    return loss / T\n")
    names = _assigned(gradgen.compile_source(rnn, modes=["grad"]), "f_grad")
    assert {"hs_exp", "dhsWy"} <= names, names
    assert not any(n.startswith(("X_", "Y_")) for n in names), names


def test_a_user_name_the_workspace_helper_takes_gets_the_helper_another_name():
    """`helper_sources(workspace=True)` lists the `Workspace` class (in COLLIDING above):
    an argument named `Workspace` keeps its name, the class takes a variant."""
    source = "def f(Workspace: Param[N], y: Data[N]):\n    return sum(Workspace * y * Workspace)\n"
    mod = load(gradgen.compile_source(source, "t.grad", workspace=True))
    classes = [v for k, v in vars(mod).items() if isinstance(v, type) and hasattr(v, "bind")]
    assert len(classes) == 1 and classes[0].__name__ != "Workspace"
    x, y = np.arange(3.0), np.ones(3)
    ws = classes[0]()
    assert np.array_equal(mod.f_grad(Workspace=x, y=y), mod.f_grad(x, y, workspace=ws))
    assert np.array_equal(mod.f_grad(x, y), 2 * x * y)


def test_a_dimension_is_read_only_where_the_code_names_it():
    """`_names_in` (which sizes a function's prologue reads off the arguments) finds a
    name only as a whole identifier in code: not in a comment, not as an attribute or as
    part of a longer name; the search starts at the name (`_reads`) and must agree with
    a look-behind pattern on every position."""
    import re

    from gradgen.codegen.function import _names_in, _reads
    lines = ["x_sum = x.sum()  # (N, D)", "y = x.D + dD + D_2 + ND", "z = np.zeros((M,))"]
    assert _names_in({"N", "D", "M", "K"}, lines) == {"M"}
    assert _names_in({"D"}, ["y = D"]) == {"D"} == _names_in({"D"}, ["y = (D, 1)"])
    rng = np.random.default_rng(0)
    alphabet = list("aD_. (\n1é")
    for _ in range(3000):
        code = "".join(rng.choice(alphabet, size=rng.integers(0, 10)))
        for name in ("D", "aD", "D1"):
            want = re.search(r"(?<![\w.])" + re.escape(name) + r"(?!\w)", code) is not None
            assert _reads(code, name) == want, (code, name)
