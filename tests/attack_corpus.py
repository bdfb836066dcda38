"""Hostile corpus for the trust boundary (issue 8), outside pytest: one subprocess per case
(cwd = a fresh temporary directory, 20 s limit), each must print OK.

    python tests/attack_corpus.py CHECKOUT [substring-of-case-names]

As of this writing 210 of 213 pass; the 3 others are entry points with dunder names
(`__builtins__`, `__name__`, `__doc__`), which gradgen refuses with a diagnostic on purpose
(a module-level `def __builtins__` would break the module)."""
import os, subprocess, sys, tempfile, textwrap, json
ROOT = os.path.abspath(sys.argv[1])
FILT = sys.argv[2] if len(sys.argv) > 2 else ""
PRELUDE = r'''
import os, sys, io, contextlib, types, numpy as np
sys.path.insert(0, ROOT)
import gradgen
from gradgen import cli
def compile_ok(src, **kw):
    return gradgen.compile_source(src, **kw)
def diag(src, **kw):
    try:
        gradgen.compile_source(src, **kw)
    except gradgen.CompileError as e:
        d = e.diagnostics[0]
        assert d.line >= 1 and d.col >= 1, d
        return str(e)
    raise AssertionError("compiled, expected a diagnostic")
def load(src, name="m", **kw):
    code = gradgen.compile_source(src, **kw)
    mod = types.ModuleType(name)
    exec(compile(code, name, "exec"), mod.__dict__)
    return mod, code
def nofiles():
    extra = [f for f in os.listdir(".") if f != "src.grad" and not f.endswith("_grad.py") and not f.startswith("src")]
    assert "PWNED" not in os.listdir("."), os.listdir(".")
def run_cli(*args):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(list(args))
    return code, out.getvalue(), err.getvalue()
rng = np.random.default_rng(0)
'''
CASES = []
def case(name, body):
    CASES.append((name, textwrap.dedent(body)))

# ---- 1. code execution in compiler
for i, shape_src in enumerate([
        'sum(reshape(x, (N, "__import__(\'os\').system(\'touch PWNED\')")))',
        'sum(zeros((N, "__import__(\'os\').system(\'touch PWNED\')"))) + sum(x)',
        'sum(ones(("__import__(\'os\').system(\'touch PWNED\')",))) + sum(x)',
        'sum(broadcast_to(x, ("__import__(\'os\').system(\'touch PWNED\')", N)))',
        'sum(reshape(x, (("__import__(\'os\').system(\'touch PWNED\')",),)))']):
    src = f"def f(x: Param[N]):\n    return {shape_src}\n"
    case(f"1.sympify.{i}.compile", f"""
        open("src.grad","w").write({src!r})
        for cmd in (["compile","src.grad","--force"], ["show","src.grad"], ["graph","src.grad"], ["check","src.grad"]):
            code, out, err = run_cli(*cmd)
            assert code == 1, (cmd, code, err)
            assert "error" in err and "internal" not in err, err
        nofiles(); print("OK")""")

# ---- 2. file names
for i, fname in enumerate(['x"""+open("PWNED","w").name+""".grad', 'x\nopen("PWNED","w")\n.grad',
                           'dat\\x.grad', "x'''+open('PWNED','w').name+'''.grad", 'a\u2028open("PWNED","w")#.grad',
                           'a\rimport os;os.system("touch PWNED")\r.grad', 'é\udcff.grad', "x\x0bopen('PWNED','w').grad"]):
    case(f"2.filename.{i}", f"""
        fn = {fname!r}
        src = "def f(x: Param[N]):\\n    return sum(x * x)\\n"
        mod, code = load(src, filename=fn)
        import ast; ast.parse(code)
        mod.f_grad(np.ones(3))
        nofiles()
        try:
            open(fn, "w").write(src)
        except (OSError, UnicodeEncodeError, ValueError):
            print("OK"); raise SystemExit
        m2 = gradgen.load(fn); m2.f(np.ones(2))
        code2, out, err = run_cli("check", fn)
        assert code2 == 0, err
        code3, out, err = run_cli("compile", fn, "-o", "outmod_grad.py")
        assert code3 == 0, err
        import importlib.util
        spec = importlib.util.spec_from_file_location("outmod", "outmod_grad.py"); m3 = importlib.util.module_from_spec(spec); spec.loader.exec_module(m3)
        nofiles(); print("OK")""")

# ---- 3. docstrings
for i, doc in enumerate(["r'''hi\"\"\"\n+open(\"PWNED\",\"w\").name+\"\"\"'''",
                         "'''\"\"\"+open(\"PWNED\",\"w\").name+\"\"\"'''",
                         r'r"""LaTeX \xi \underbrace{x} \N and C:\new\path"""', r'"\N{"', r'"\x00 nul"',
                         "'''\"\"\"'''", r'"\ud800"', r'"a\u2028b\x0bc\x0cd\x1ce\x85f"', r'"ends with backslash \\"',
                         r'"""quote at end""""', '"""\\\nline"""']):
    case(f"3.docstring.{i}", f"""
        src = "def f(x: Param[N]):\\n    " + {doc!r} + "\\n    return sum(x * x)\\n"
        import ast
        try:
            want = ast.get_docstring(ast.parse(src).body[0], clean=False)
        except SyntaxError:
            diag(src); print("OK"); raise SystemExit
        mod, code = load(src, hessian=True)
        ast.parse(code)
        for fn in ("f", "f_grad", "f_value_and_grad", "f_hvp", "f_hessian"):
            pass
        mod.f(np.ones(3)); mod.f_grad(np.ones(3)); mod.f_hvp(np.ones(3), np.ones(3)); mod.f_hessian(np.ones(3))
        for line in want.strip().splitlines():
            assert line.strip() in mod.f.__doc__, (line, mod.f.__doc__)
        nofiles(); print("OK")""")

# ---- 4. aliasing
ALIAS = [
 ("sum_cw", "def loss(w: Param[N], c: Data[N]):\n    return sum(c * w)\n"),
 ("x_plus_z", "def f(x: Param[N], z: Param[N]):\n    return x + z\n"),
 ("x_times_1", "def f(x: Param[N]):\n    return x * 1\n"),
 ("hess_blocks", "def f(a: Param[N], b: Param[N]):\n    return sum(a * b)\n"),
 ("bcast", "def f(x: Param[N], s: Param[()]):\n    return sum(x) + s * N\n"),
 ("transpose", "def f(A: Param[N, M]):\n    return A.T\n"),
 ("slice", "def f(A: Param[N, M]):\n    return A[0]\n"),
 ("reshape", "def f(A: Param[N, M]):\n    return reshape(A, (N * M,))\n"),
 ("mean_b", "def f(x: Param[N, M]):\n    return mean(x)\n"),
 ("scalar", "def f(a: Param[()], x: Data[N]):\n    return a * sum(x)\n"),
 ("dup", "def f(x: Param[N]):\n    return sum(x) * sum(x)\n"),
 ("scalar_id", "def f(a: Param[()]):\n    return a\n"),
 ("bcast_out", "def f(a: Param[()], x: Data[N]):\n    return a + 0 * x\n"),
 ("two_params_lin", "def f(a: Param[N], b: Param[N], c: Data[N]):\n    return sum(a * c) + sum(b * c)\n"),
 ("expand", "def f(x: Param[N]):\n    return expand_dims(x, 1) * 1\n"),
 ("bt", "def f(x: Param[N], y: Data[M, N]):\n    return broadcast_to(x, (M, N))\n"),
]
for name, src in ALIAS:
    case(f"4.alias.{name}", f"""
        src = {src!r}
        import ast
        fdef = ast.parse(src).body[0]
        entry = fdef.name
        shapes = {{}}
        for a in fdef.args.args:
            ann = a.annotation
            items = ann.slice.elts if isinstance(ann.slice, ast.Tuple) else [ann.slice]
            shapes[a.arg] = tuple({{"N": 4, "M": 3}}[it.id] for it in items if isinstance(it, ast.Name))
        params = [a.arg for a in fdef.args.args if a.annotation.value.id == "Param"]
        try:
            mod, code = load(src, hessian=True)
        except gradgen.CompileError:
            mod, code = load(src)
        tree = ast.parse(code)
        base = [rng.standard_normal(shapes[a]) for a in shapes]
        out = getattr(mod, entry)(*base)
        for fd in tree.body:
            if not (isinstance(fd, ast.FunctionDef) and fd.name.startswith(entry)):
                continue
            f = getattr(mod, fd.name)
            extra = []
            if fd.name.endswith("_vjp"):
                extra = [rng.standard_normal(np.shape(out))]
            elif fd.name.endswith(("_jvp", "_hvp")):
                extra = [rng.standard_normal(shapes[p]) for p in params]
            args = [np.array(b, copy=True) for b in base] + extra
            before = [np.array(a, copy=True) for a in args]
            res = f(*args)
            flat = []
            def walk(r):
                if isinstance(r, tuple):
                    for x in r: walk(x)
                else: flat.append(r)
            walk(res)
            snaps = [np.array(r, copy=True) for r in flat]
            for k, r in enumerate(flat):
                if isinstance(r, np.ndarray):
                    assert r.flags.writeable, (fd.name, k, "read-only")
                    r += 1.0
                    for a, b in zip(args, before):
                        assert np.array_equal(a, b), (fd.name, "result aliases an argument")
                    for j, (r2, s2) in enumerate(zip(flat, snaps)):
                        if j != k:
                            assert np.array_equal(np.asarray(r2), s2), (fd.name, "results alias", k, j)
                    r[...] = snaps[k]
        print("OK")""")

# ---- 5. names
NAMES = ["np", "float", "len", "getattr", "zip", "enumerate", "_dims", "_expect", "_DIMS_PASSED", "_F_ARGS",
         "__builtins__", "_sigmoid", "isinstance", "ValueError", "int", "tuple", "__name__", "__doc__", "_erf", "complex", "range", "print", "object", "set"]
base = "def F(x: Param[N], y: Data[N]):\n    z = sigmoid(x) * y\n    return sum(z * z) / N\n"
for nm in NAMES:
    for role in ("entry", "arg", "dim", "var"):
        if role == "entry":
            src = base.replace("def F", f"def {nm}")
            fn = nm
        elif role == "arg":
            src = base.replace("x", nm).replace("F(", "F(")
            fn = "F"
        elif role == "dim":
            src = base.replace("[N]", f"[{nm}]").replace("/ N", f"/ {nm}")
            fn = "F"
        else:
            src = base.replace("z", nm)
            fn = "F"
        case(f"5.names.{role}.{nm}", f"""
            base = {base!r}; src = {src!r}
            m0, _ = load(base, "m0", hessian=True)
            m1, code = load(src, "m1", hessian=True)
            x = rng.standard_normal(5); y = rng.standard_normal(5); v = rng.standard_normal(5)
            for suffix, extra in (("", ()), ("_grad", ()), ("_value_and_grad", ()), ("_hvp", (v,)), ("_hessian", ()), ("_jvp", (v,)), ("_vjp", (np.float64(1.3),))):
                r0 = getattr(m0, "F" + suffix)(x, y, *extra)
                r1 = getattr(m1, {fn!r} + suffix)(x, y, *extra)
                r0 = np.asarray(r0, dtype=object) if False else r0
                def eq(a, b):
                    if isinstance(a, tuple): return len(a) == len(b) and all(eq(p, q) for p, q in zip(a, b))
                    return np.array_equal(a, b)
                assert eq(r0, r1), suffix
            print("OK")""")
for a, b in [("f", "f_grad"), ("f", "f_value_and_grad"), ("cost", "COST"), ("ss", "\u00df"), ("f", "F"), ("f", "f_hvp"), ("g", "g_jvp")]:
    case(f"5.collide.{a}.{b}", f"""
        src = "def {a}(x: Param[N]):\\n    return sum(x * x)\\n\\ndef {b}(x: Param[N]):\\n    return sum(x * x * x)\\n"
        try:
            mod, code = load(src)
        except gradgen.CompileError as e:
            assert "{a}" in str(e) and "{b}" in str(e), str(e)
            print("OK"); raise SystemExit
        x = rng.standard_normal(4)
        assert np.allclose(getattr(mod, "{a}")(x), np.sum(x*x)), "a wrong"
        assert np.allclose(getattr(mod, "{b}")(x), np.sum(x*x*x)), "b wrong"
        assert np.allclose(getattr(mod, "{a}_grad")(x), 2*x)
        assert np.allclose(getattr(mod, "{b}_grad")(x), 3*x*x)
        print("OK")""")

# ---- 6/7. hangs and towers
case("6.shorten", """
    src = "def f(first_intermediate_quantity_value: Param[N], second_intermediate_quantity_value: Param[N]):\\n    product_of_both = first_intermediate_quantity_value * second_intermediate_quantity_value\\n    return sum(product_of_both * first_intermediate_quantity_value)\\n"
    mod, code = load(src); print("OK")""")
for i, t in enumerate(["sum(x) * 9 ** 9 ** 9", "sum(x) * 2 ** 2 ** 70", "sum(x) * 2 ** 10**10", "sum(x) * 2 ** 10**8", "sum(x) * N ** 100000000", "sum(x) ** 100000000", "sum(x) * 10 ** 400", "sum(x) * (10 ** 200) * (10 ** 200)"]):
    case(f"7.tower.{i}", f"""
        src = "def f(x: Param[N]):\\n    return {t}\\n"
        try:
            mod, code = load(src)
        except gradgen.CompileError as e:
            print("OK"); raise SystemExit
        mod.f(np.ones(3)*0.5); mod.f_grad(np.ones(3)*0.5)
        print("OK")""")

# ---- 8. constant folding
for i, expr in enumerate(["x / 0", "x * 0 ** -1", "x * sqrt(-1)", "x * (-8) ** (1/3)", "x * (0 / 0)", "x * (1e308 * 1e308)", "x * 2.0 ** 10000", "outer(x, 2)", "x * log(0)", "x * exp(1000)", "x - (-1e308 * 10)", "x * (1 / 0)", "x * log(-1)", "x * 0.0 ** -1", "x * arctan(1e400 * 0)"]):
    case(f"8.fold.{i}", f"""
        src = "def f(x: Param[N]):\\n    return sum({expr})\\n"
        try:
            mod, code = load(src)
        except gradgen.CompileError as e:
            print("OK"); raise SystemExit
        import warnings
        with np.errstate(all="ignore"):
            mod.f(np.ones(3)); mod.f_grad(np.ones(3)); mod.f_hvp(np.ones(3), np.ones(3))
        print("OK")""")

# ---- 9. internal errors
for i, body in enumerate([r"sum(einsum('ii->', A))", r"sum(einsum('\u2028', A))", "sum(softmax(x, axis=N))", "sum(squeeze(x, axis=N))", "sum(transpose(A, axes=(N, 0)))", "sum(softmax(x, axis='a'))",
                          "sum(zeros((None, N))) + sum(x)", "sum(zeros(([], N))) + sum(x)", "sum(zeros((N // 0,))) + sum(x)", "sum(x[5:2])",
                          "sum(reshape(x, (N, 0)))", "sum(zeros((N - N,))) + sum(x)", "sum(x[N:])", "sum(sum(A, axis=(0, 0)))", "sum(x, axis=2)",
                          "sum(zeros((10**30,))) + sum(x)", "sum(zeros((2**2**70,))) + sum(x)", "sum(x[:10**30])", "sum(transpose(A, axes=(1, 1)))",
                          "sum(x[::0])", "sum(x[::-1])", "sum(concatenate([x, x], axis=N))", "sum(einsum('ij,jk->ik', A))"]):
    case(f"9.internal.{i}", f"""
        src = "def f(x: Param[N], A: Param[N, M]):\\n    return {body}\\n"
        try:
            mod, code = load(src)
        except gradgen.CompileError as e:
            d = e.diagnostics[0]; assert d.line == 2, str(e); print("OK"); raise SystemExit
        mod.f(np.ones(3), np.ones((3, 2))); mod.f_grad(np.ones(3), np.ones((3, 2)))
        print("OK")""")
case("9.nonutf8-filename", """
    fn = os.fsdecode(b"bad\\xff.grad")
    open(os.fsencode(fn), "w").write("def f(x: Param[N]):\\n    return sum(x)\\n")
    for cmd in (["compile", fn, "--force"], ["show", fn], ["check", fn]):
        code, out, err = run_cli(*cmd)
        assert code in (0, 1) and "internal" not in err, (cmd, code, err)
    print("OK")""")
case("9.check-binary", """
    open("src.grad", "w").write("def f(x: Param[N]):\\n    return sum(x)\\n")
    open("src_grad.py", "wb").write(b"\\xff\\xfe\\x00binary")
    code, out, err = run_cli("compile", "src.grad", "--check")
    assert code == 1 and "internal" not in err, (code, err); print("OK")""")
case("9.check-dim-huge", """
    open("src.grad", "w").write("def f(x: Param[N, N]):\\n    return sum(x)\\n")
    code, out, err = run_cli("check", "src.grad", "--dim", "N=1000000000")
    assert code in (1, 2) and "internal" not in err and "Traceback" not in err, (code, err); print("OK")""")

# ---- 10. --check bytes
for ch in ["\\x0b", "\\x0c", "\\u2028", "\\x1c", "\\x85"]:
    case(f"10.check.{ch}", f"""
        open("src.grad", "w").write("def f(x: Param[N]):\\n    return sum(x * x)\\n")
        code, out, err = run_cli("compile", "src.grad"); assert code == 0, err
        text = open("src_grad.py", encoding="utf-8").read()
        lines = text.split("\\n")
        # hide a line of code behind a comment + separator
        for k, l in enumerate(lines):
            if l.strip().startswith("return"):
                lines[k - 1] = lines[k - 1] + "  # note{ch}"
                break
        open("src_grad.py", "w", encoding="utf-8", newline="").write("\\n".join(lines))
        code, out, err = run_cli("compile", "src.grad", "--check")
        assert code == 1, (code, out, err); print("OK")""")

# ---- 11. argument types
case("11.pyfloat-scalar", """
    src = "def f(a: Param[()], x: Data[N]):\\n    return a * a * sum(x)\\n"
    mod, code = load(src, hessian=True)
    x = np.ones(3)
    mod.f(2.0, x); mod.f_grad(2.0, x); mod.f_value_and_grad(2.0, x); mod.f_hvp(2.0, x, 1.0); mod.f_hessian(2.0, x); mod.f_jvp(2.0, x, 1.0); mod.f_vjp(2.0, x, 1.0)
    x32 = np.ones(3, dtype=np.float32)
    v = mod.f(2.0, x32); assert np.asarray(v).dtype == np.float32, np.asarray(v).dtype
    g = mod.f_grad(2.0, x32); assert np.asarray(g).dtype == np.float32, np.asarray(g).dtype
    print("OK")""")
for i, arg in enumerate(["[1.0, 2.0, 3.0]", "np.arange(3)", "np.array(['a','b','c'])", "np.ones(3, dtype=bool)", "None", "'abc'", "np.ones(3, dtype=complex)"]):
    case(f"11.argtype.{i}", f"""
        src = "def f(x: Param[N], y: Data[N]):\\n    return sum(sigmoid(x) * y)\\n"
        mod, code = load(src, hessian=True)
        bad = {arg}
        for fn, args in (("f", (np.ones(3), bad)), ("f_grad", (bad, np.ones(3))), ("f_grad", (np.ones(3), bad)), ("f_value_and_grad", (np.ones(3), bad)), ("f_hvp", (bad, np.ones(3), np.ones(3))), ("f_hessian", (bad, np.ones(3)))):
            try:
                r = getattr(mod, fn)(*args)
            except (ValueError, TypeError) as e:
                assert ("'x'" in str(e) or "'y'" in str(e)), (fn, str(e))
                continue
            # accepted: must be right
            xs, ys = [np.asarray(a, dtype=float) for a in args[:2]]
            ref = getattr(mod, fn)(xs, ys, *args[2:])
            def eq(a, b):
                if isinstance(a, tuple): return all(eq(p, q) for p, q in zip(a, b))
                return np.allclose(a, b)
            assert eq(r, ref), fn
        print("OK")""")
case("11.empty-slice", """
    src = "def f(x: Param[N]):\\n    return sum(x[5:2])\\n"
    try:
        mod, code = load(src)
    except gradgen.CompileError as e:
        print("OK"); raise SystemExit
    mod.f_grad(np.ones(8)); print("OK")""")

# ---- 12. files
case("12.o-source", """
    src = "# Generated by gradgen, haha\\ndef f(x: Param[N]):\\n    return sum(x)\\n"
    open("src.grad", "w").write(src)
    code, out, err = run_cli("compile", "src.grad", "-o", "src.grad")
    assert open("src.grad").read() == src, "source overwritten"; print("OK")""")
case("12.graph-symlink", """
    open("src.grad", "w").write("def f(x: Param[N]):\\n    return sum(x)\\n")
    os.symlink("victim.txt", ".x.png.tmp"); open("victim.txt", "w").write("precious")
    import shutil
    code, out, err = run_cli("graph", "src.grad", "-o", "x.png")
    assert open("victim.txt").read() == "precious", "wrote through symlink"
    assert os.path.islink(".x.png.tmp") or not os.path.exists(".x.png.tmp"); print("OK")""")
case("12.load-cache-symlink", """
    os.mkdir("elsewhere"); os.symlink("elsewhere", "cache")
    os.environ["GRADGEN_CACHE"] = "cache"
    open("src.grad", "w").write("def f(x: Param[N]):\\n    return sum(x)\\n")
    m = gradgen.load("src.grad"); m.f(np.ones(2))
    assert os.listdir("elsewhere") == [], os.listdir("elsewhere"); print("OK")""")
case("12.esc-diag", """
    open("src.grad", "w").write("def f(x: Param[N]):\\n    return sum(x) + \\x1b[31mred\\n")
    code, out, err = run_cli("compile", "src.grad")
    assert "\\x1b" not in err, repr(err); print("OK")""")
case("12.esc-show", """
    open("src.grad", "w").write('def f(x: Param[N]):\\n    "doc \\x1b]0;title\\x07 \\x1b[2J"\\n    return sum(x)  # \\x1b[31m\\n')
    code, out, err = run_cli("show", "src.grad")
    assert code == 0, err
    assert "\\x1b" not in out and "\\x07" not in out, repr(out[:300]); print("OK")""")
case("12.esc-name", """
    open("src.grad", "w").write("def f(x: Param[N]):\\n    return sum(y)\\n")
    os.rename("src.grad", "s\\x1b[31m.grad")
    code, out, err = run_cli("compile", "s\\x1b[31m.grad")
    assert "\\x1b" not in err and "\\x1b" not in out, repr(err); print("OK")""")

def main():
    results = {}
    for name, body in CASES:
        if FILT and FILT not in name:
            continue
        with tempfile.TemporaryDirectory() as d:
            code = PRELUDE.replace("ROOT", repr(ROOT)) + body
            try:
                p = subprocess.run([sys.executable, "-c", code], cwd=d, capture_output=True, text=True, timeout=20,
                                   env={**os.environ, "GRADGEN_CACHE": os.path.join(d, ".cache")})
                ok = p.returncode == 0 and p.stdout.strip().endswith("OK")
                detail = (p.stderr.strip().splitlines() or [""])[-1][:200]
                pwned = [f for f in os.listdir(d) if f == "PWNED"]
                if pwned:
                    ok, detail = False, "PWNED " + detail
            except subprocess.TimeoutExpired:
                ok, detail = False, "TIMEOUT"
        results[name] = (ok, detail)
        if not ok:
            print(f"FAIL {name}: {detail}")
    n = len(results); bad = sum(not ok for ok, _ in results.values())
    print(f"{n - bad}/{n} pass, {bad} fail")
main()
