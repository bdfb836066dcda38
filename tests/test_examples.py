"""The examples: golden generated modules, the MLP against hand-written backprop."""

from __future__ import annotations

import ast
import importlib.util
import math
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from compiled import compile_text

import gradgen

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*/*.grad"))
# Compile options of the checked-in modules (as their headers record).
OPTIONS = {"newton": {"hessian": True}, "cox": {"hessian": True}, "negbin": {"hessian": True}}


def _load(source: str, name: str = "generated") -> types.ModuleType:
    mod = types.ModuleType(name)
    exec(compile(source, name, "exec"), mod.__dict__)
    return mod


@pytest.mark.parametrize("src", EXAMPLES, ids=lambda p: p.parent.name)
def test_checked_in_module_is_current(src: Path, update_golden: bool):
    """The generated module beside each example is exactly what the compiler emits now.

    Run `pytest --update-golden` after an intended change, and read the diff.
    """
    text = src.read_text(encoding="utf-8")
    emitted = compile_text(text, src.name, **OPTIONS.get(src.parent.name, {}))
    golden = src.with_name(src.stem + "_grad.py")
    if update_golden:
        golden.write_text(emitted, encoding="utf-8")
    assert golden.read_text(encoding="utf-8") == emitted


@pytest.mark.parametrize("src", EXAMPLES, ids=lambda p: p.parent.name)
def test_compilation_is_deterministic(src: Path):
    text = src.read_text(encoding="utf-8")
    # (one compilation shared with the other tests, maybe made earlier, one made now)
    assert compile_text(text, src.name) == gradgen.compile_source(text, src.name)


@pytest.fixture(scope="module")
def mlp():
    src = ROOT / "examples" / "mlp" / "mlp.grad"
    return _load(compile_text(src.read_text(), src.name), "mlp_generated")


def _mlp_data(rng, N=11, D=4, M=6, C=3, dtype=np.float64):
    X = rng.normal(size=(N, D))
    Y = np.eye(C)[rng.integers(0, C, size=N)]
    V = 0.7 * rng.normal(size=(D, M))
    W = 0.7 * rng.normal(size=(M, C))
    return [a.astype(dtype) for a in (X, Y, V, W)]


def _handwritten(X, Y, V, W):
    N = X.shape[0]
    Z = 1 / (1 + np.exp(-(X @ V)))
    U = Z @ W
    Yh = np.exp(U - U.max(axis=1, keepdims=True))
    Yh /= Yh.sum(axis=1, keepdims=True)
    loss = -np.mean(np.log(np.sum(Yh * Y, axis=1)))
    dY = Yh - Y
    dW = Z.T @ dY / N
    dZ = dY @ W.T
    dV = X.T @ (dZ * Z * (1 - Z)) / N
    return loss, dV, dW


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mlp_gradient_equals_handwritten_backprop(mlp, seed):
    X, Y, V, W = _mlp_data(np.random.default_rng(seed))
    loss, dV, dW = _handwritten(X, Y, V, W)
    value, (gV, gW) = mlp.cost_value_and_grad(X, Y, V, W)
    assert value == pytest.approx(loss, rel=1e-12)
    np.testing.assert_allclose(gV, dV, rtol=1e-12, atol=1e-15 * np.abs(dV).max())
    np.testing.assert_allclose(gW, dW, rtol=1e-12, atol=1e-15 * np.abs(dW).max())
    gV2, gW2 = mlp.cost_grad(X, Y, V, W)
    np.testing.assert_array_equal(gV2, gV)
    np.testing.assert_array_equal(gW2, gW)


def _function_body(module_source: str, name: str) -> ast.FunctionDef:
    tree = ast.parse(module_source)
    return next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name)


def _count_matmuls(fn: ast.FunctionDef) -> int:
    count = 0
    for node in ast.walk(fn):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.MatMult):
            count += 1
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr in ("dot", "matmul", "tensordot", "inner"):
            count += 1
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr == "einsum" and _einsum_multiplies_matrices(node):
            count += 1
    return count


def _einsum_multiplies_matrices(call: ast.Call) -> bool:
    """Whether an `np.einsum` call is a matrix product: two operands, each with an index
    the other lacks (not a row sum "ij->i", not a row-wise dot "ij,ij->i" or "ik,ijk->ij")."""
    spec = call.args[0].value if call.args and isinstance(call.args[0], ast.Constant) else None
    if not isinstance(spec, str):
        return True
    ins = [set(labels) for labels in spec.split("->")[0].split(",")]
    return len(ins) >= 2 and not any(a <= b for a in ins for b in ins if a is not b)


def test_mlp_value_and_grad_does_five_matrix_products():
    src = ROOT / "examples" / "mlp" / "mlp.grad"
    module = compile_text(src.read_text(), src.name)
    assert _count_matmuls(_function_body(module, "cost_value_and_grad")) == 5
    assert _count_matmuls(_function_body(module, "cost")) == 2
    assert _count_matmuls(_function_body(module, "cost_grad")) == 5


def test_mlp_float32_stays_float32(mlp):
    X, Y, V, W = _mlp_data(np.random.default_rng(3), dtype=np.float32)
    value, (gV, gW) = mlp.cost_value_and_grad(X, Y, V, W)
    assert np.asarray(value).dtype == np.float32
    assert gV.dtype == np.float32 and gW.dtype == np.float32
    _, dV, dW = _handwritten(*(a.astype(np.float64) for a in (X, Y, V, W)))
    np.testing.assert_allclose(gV, dV, rtol=1e-3, atol=1e-5)


def test_mlp_shape_check_names_argument_axis_and_sizes(mlp):
    X, Y, V, W = _mlp_data(np.random.default_rng(4))
    with pytest.raises(ValueError, match=r"argument 'Y', axis 0: size 10 does not match "
                                         r"N = 11 \(from argument 'X', axis 0\)"):
        mlp.cost(X, Y[:10], V, W)
    with pytest.raises(ValueError, match=r"argument 'W': expected 2 dimension"):
        mlp.cost(X, Y, V, W[0])


def test_generated_module_imports_only_numpy():
    src = ROOT / "examples" / "mlp" / "mlp.grad"
    tree = ast.parse(compile_text(src.read_text(), src.name))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert imported == {"numpy"}


@pytest.mark.parametrize("src", EXAMPLES, ids=lambda p: p.parent.name)
def test_generated_module_passes_ruff(src: Path):
    ruff = pytest.importorskip("ruff")
    exe = Path(ruff.find_ruff_bin())
    module = src.with_name(src.stem + "_grad.py")
    proc = subprocess.run([str(exe), "check", "--no-cache", "--isolated", str(module)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = subprocess.run([str(exe), "check", "--no-cache", str(module)], cwd=ROOT,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # pycodestyle's errors and warnings (blank lines too: preview rules in ruff), pyflakes
    # and import order, at the project's line length
    proc = subprocess.run([str(exe), "check", "--no-cache", "--preview", "--select", "E,W,F,I",
                           str(module)], cwd=ROOT, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_newton_converges_in_few_iterations_and_matches_gradient_descent():
    script = ROOT / "examples" / "newton" / "train.py"
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    newton = proc.stdout.split("Newton:")[1]
    iterations = int(newton.split()[0])
    assert iterations <= 10
    newton_loss = float(newton.split("final loss")[1].split(",")[0])
    gd_loss = float(proc.stdout.split("Gradient descent:")[1].split("final loss")[1].split()[0])
    assert newton_loss == pytest.approx(gd_loss, abs=1e-9)
    if importlib.util.find_spec("scipy") is not None:   # gradgen.scipy: trust-exact, no glue
        scipy_loss = float(proc.stdout.split("trust-exact")[1].split("final loss")[1]
                           .split(",")[0])
        assert scipy_loss == pytest.approx(newton_loss, abs=1e-9)


@pytest.mark.parametrize("example", ["mlp", "logistic", "softmax"])
def test_training_script_runs_and_learns(example):
    script = ROOT / "examples" / example / "train.py"
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    losses = [float(line.split("loss")[1].split()[0]) for line in proc.stdout.splitlines()
              if " loss " in line]
    assert len(losses) >= 2 and losses[-1] < 0.5 * losses[0]
    accuracy = float(proc.stdout.split("training accuracy:")[1].split()[0])
    assert accuracy >= 0.85
    if example == "mlp" and importlib.util.find_spec("scipy") is not None:
        # gradgen.scipy: L-BFGS and trust-ncg (with cost_hvp) get below gradient descent
        values = [float(line.split("final value")[1].split()[0])
                  for line in proc.stdout.splitlines() if "final value" in line]
        assert len(values) == 2 and max(values) < losses[-1]


def test_readme_excerpt_matches_generated_code():
    """The README's excerpt of emitted code is the current output, line for line."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index("def cost_value_and_grad")
    excerpt = readme[start:readme.index("```", start)]
    golden = (ROOT / "examples" / "mlp" / "mlp_grad.py").read_text(encoding="utf-8")
    body = golden[golden.index("def cost_value_and_grad"):].splitlines()
    for line in excerpt.splitlines():
        if '"""' not in line:   # whole lines (a shortened line is no excerpt)
            assert line in body, f"README excerpt line not in emitted code: {line!r}"


def test_gaussian_fit_reaches_the_maximum_likelihood_covariance():
    script = ROOT / "examples" / "gaussian" / "train.py"
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    nll = [float(line.split("nll")[1]) for line in proc.stdout.splitlines()
           if line.startswith("step")]
    assert nll[-1] < nll[0] - 1.0
    gap = float(proc.stdout.split("covariance entry:")[1].split(";")[0])
    assert gap < 1e-6


@pytest.mark.parametrize("src", EXAMPLES, ids=lambda p: p.parent.name)
def test_no_array_expression_is_computed_twice_in_a_function(src: Path):
    """CSE across the forward, backward and second-order graphs: within each emitted
    function (value_and_grad, hvp, hessian, ...) every array expression appears once.
    Expressions of dimension sizes only (`2 * N`) are Python numbers and may repeat."""
    module = compile_text(src.read_text(encoding="utf-8"), src.name,
                          **OPTIONS.get(src.parent.name, {}))
    checked = 0
    for fn in ast.parse(module).body:
        if not isinstance(fn, ast.FunctionDef) or fn.name.startswith("_"):
            continue
        dims = {t.id for st in fn.body if isinstance(st, ast.Assign)
                and isinstance(st.value, ast.Subscript) and ast.unparse(st.value).startswith(
                    tuple(f"{a.arg}.shape[" for a in fn.args.args))
                for t in st.targets if isinstance(t, ast.Name)}
        # a loop's index is an integer like the sizes (`t + 1`); its loops and buffers
        # (`range(T)`, `np.empty(...)`, their dtype) are no array expressions
        dims |= {n.target.id for n in ast.walk(fn) if isinstance(n, ast.For)
                 and isinstance(n.target, ast.Name)}
        seen: dict[str, int] = {}
        for node in ast.walk(fn):
            if not isinstance(node, (ast.BinOp, ast.Call, ast.UnaryOp)):
                continue
            names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
            text = ast.unparse(node)
            if names <= dims | {"float", "np"} or text.startswith(
                    ("_dims(", "_expect(", "range(", "reversed(", "np.result_type(",
                     "np.empty(", "np.zeros(", "np.zeros_like(")) or text.endswith(".copy()"):
                continue   # (a copy is a buffer of its own: two loops carry two of them)
            seen[text] = seen.get(text, 0) + 1
        repeated = {k: v for k, v in seen.items() if v > 1}
        assert not repeated, f"{src.parent.name}: {fn.name} computes {repeated} more than once"
        checked += 1
    assert checked >= 5


@pytest.mark.parametrize("src", EXAMPLES, ids=lambda p: p.parent.name)
def test_header_says_how_to_regenerate_the_module(src: Path, tmp_path: Path):
    """`# Regenerate with: gradgen compile FILE FLAGS` in the checked-in module, run as it
    says, writes that very module (so `--hessian` and the like are never forgotten)."""
    from gradgen.cli import main

    golden = src.with_name(src.stem + "_grad.py")
    line = next(x for x in golden.read_text(encoding="utf-8").splitlines()
                if x.startswith("# Regenerate with: gradgen compile "))
    argv = line.removeprefix("# Regenerate with: gradgen ").split()
    assert argv[1] == src.name
    out = tmp_path / golden.name
    assert main([argv[0], str(src), *argv[2:], "-o", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == golden.read_text(encoding="utf-8")


# ---------------------------------------------------------------- Cox proportional hazards

def _cox_reference(X, event, beta, lam):
    """The Breslow partial likelihood with the N x N risk-set matrix (rows sorted by time,
    distinct: row j is at risk at time i when j >= i), its gradient and Hessian, by hand."""
    n = len(event)
    at_risk = np.triu(np.ones((n, n), dtype=bool))     # at_risk[i, j]: j >= i
    eta = X @ beta
    shift = np.maximum.accumulate(eta[::-1])[::-1]     # the largest eta of each risk set
    w = np.exp(np.where(at_risk, eta[None, :] - shift[:, None], -np.inf))   # <= 1
    s0 = w.sum(axis=1)                                 # sum of exp(eta - shift_i) per set
    s1 = w @ X
    s2 = np.einsum("ij,jk,jl->ikl", w, X, X)
    value = -np.sum(event * (eta - shift - np.log(s0))) / n + lam / 2 * beta @ beta
    mean_x = s1 / s0[:, None]
    grad = -np.sum(event[:, None] * (X - mean_x), axis=0) / n + lam * beta
    cov = s2 / s0[:, None, None] - np.einsum("ik,il->ikl", mean_x, mean_x)
    hess = np.einsum("i,ikl->kl", event, cov) / n + lam * np.eye(len(beta))
    return value, grad, hess


def test_cox_against_the_risk_set_matrix():
    src = ROOT / "examples" / "cox" / "cox.grad"
    cox = _load((ROOT / "examples" / "cox" / "cox_grad.py").read_text(), "cox_generated")
    sys.path.insert(0, str(src.parent))
    try:
        from train import make_data
    finally:
        sys.path.remove(str(src.parent))
    X, event, time = make_data(60, seed=4)
    assert np.all(np.diff(time) > 0)
    beta = np.array([0.3, -0.2, 0.5, 0.1, -0.4])
    value, grad, hess = _cox_reference(X, event, beta, 0.1)
    v, g = cox.nll_value_and_grad(X, event, beta, 0.1)
    assert v == pytest.approx(value, rel=1e-13)
    np.testing.assert_allclose(g, grad, rtol=1e-11, atol=1e-14)
    np.testing.assert_allclose(cox.nll_hessian(X, event, beta, 0.1), hess, rtol=1e-11,
                               atol=1e-14)
    t = np.array([1.0, -0.5, 0.25, 2.0, 0.0])
    np.testing.assert_allclose(cox.nll_hvp(X, event, beta, 0.1, t), hess @ t, rtol=1e-11,
                               atol=1e-14)
    # linear predictors beyond exp's range (it overflows float64 at 709) stay right
    big = beta * 600
    value, grad, hess = _cox_reference(X, event, big, 0.0)
    assert np.max(np.abs(X @ big)) > 709
    v, g = cox.nll_value_and_grad(X, event, big, 0.0)
    assert v == pytest.approx(value, rel=1e-12)
    np.testing.assert_allclose(g, grad, rtol=1e-9, atol=1e-12)
    # here each risk set is nearly one subject: the Hessian, E[x x^T] - E[x] E[x]^T over
    # them, is a cancellation of O(1) terms down to 1e-10, right to about 1e-14 absolute
    np.testing.assert_allclose(cox.nll_hessian(X, event, big, 0.0), hess, rtol=1e-8,
                               atol=1e-12)


def test_cox_fit_recovers_the_coefficients():
    script = ROOT / "examples" / "cox" / "train.py"
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    iterations = int(proc.stdout.split("converged in")[1].split()[0])
    assert iterations <= 10
    z = float(proc.stdout.split("largest |fitted - true| / std.err:")[1])
    assert z < 4


def _negbin_nll(X, y, beta, alpha) -> float:
    """The negative-binomial regression loss, written here from its formula (math.lgamma)."""
    mu, r = np.exp(X @ beta), math.exp(alpha)
    ll = [math.lgamma(k + r) - math.lgamma(r) - math.lgamma(k + 1) + r * math.log(r / (r + m))
          + k * math.log(m / (r + m)) for k, m in zip(y, mu)]
    return -sum(ll) / len(ll)


def test_negbin_newton_finds_the_maximum_likelihood_estimate():
    """examples/negbin: Newton's method with the emitted Hessian converges quadratically to
    the maximum of the likelihood (checked against differences of a reference written from
    the formula) near the parameters the data were drawn with."""
    import importlib.util

    here = ROOT / "examples" / "negbin"
    spec = importlib.util.spec_from_file_location("negbin_fit", here / "fit.py")
    fit = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fit)
    mod = _load((here / "negbin_grad.py").read_text(encoding="utf-8"), "negbin_generated")
    beta_true = np.array([0.6, -0.4, 0.3, 1.2])
    X, y = fit.make_data(1000, 3, beta_true, 2.5)
    beta, alpha, iterations, gnorm = fit.newton(mod, X, y, 1e-10)
    assert iterations <= 8 and gnorm < 1e-10
    assert mod.nll(X, y, beta, alpha) == pytest.approx(_negbin_nll(X, y, beta, alpha), rel=1e-12)
    theta, eps = np.append(beta, alpha), 1e-5
    for i in range(len(theta)):   # the reference's gradient vanishes there too
        d = np.zeros_like(theta)
        d[i] = eps
        up, down = theta + d, theta - d
        slope = (_negbin_nll(X, y, up[:-1], up[-1]) - _negbin_nll(X, y, down[:-1], down[-1]))
        assert abs(slope / (2 * eps)) < 1e-8
    assert np.allclose(beta, beta_true, atol=0.15) and abs(math.exp(alpha) - 2.5) < 0.6
# ---------------------------------------------------------------- integer labels and indices

def test_softmax_gradient_equals_handwritten_with_integer_labels():
    """examples/softmax: -mean(log_softmax(X @ W)[arange(N), y]) + lam/2 |W|^2 against the
    textbook gradient X.T @ (P - onehot(y)) / N + lam W, in float64 and float32."""
    src = ROOT / "examples" / "softmax" / "softmax.grad"
    mod = _load(compile_text(src.read_text(), src.name), "softmax_generated")
    rng = np.random.default_rng(3)
    X, W = rng.normal(size=(13, 4)), rng.normal(size=(4, 3))
    y = rng.integers(0, 3, size=13)
    Z = X @ W
    P = np.exp(Z - Z.max(axis=1, keepdims=True))
    P /= P.sum(axis=1, keepdims=True)
    loss = -np.mean(np.log(P[np.arange(13), y])) + 0.5 * 0.1 * np.sum(W ** 2)
    grad = X.T @ (P - np.eye(3)[y]) / 13 + 0.1 * W
    value, dW = mod.cost_value_and_grad(X, y, W, 0.1)
    assert value == pytest.approx(loss, rel=1e-12) and np.allclose(dW, grad, rtol=1e-12)
    value32, dW32 = mod.cost_value_and_grad(X.astype(np.float32), y, W.astype(np.float32), 0.1)
    assert value32.dtype == np.float32 and dW32.dtype == np.float32


def test_word2vec_learns_the_topics():
    script = ROOT / "examples" / "word2vec" / "train.py"
    proc = subprocess.run([sys.executable, str(script), "--steps", "900"], capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    losses = [float(line.split("loss")[1].split()[0]) for line in proc.stdout.splitlines()
              if " loss " in line]
    assert len(losses) >= 3 and losses[-1] < 0.75 * losses[0]
    purity = float(proc.stdout.split("purity after training:")[1].split()[0])
    assert purity >= 0.9


# ---------------------------------------------------------------- loops (issue 11 item 7)

def _run_script(example: str, script: str, *args: str) -> str:
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / example / script), *args],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _golden(example: str) -> types.ModuleType:
    return _load((ROOT / "examples" / example / f"{example}_grad.py").read_text(encoding="utf-8"),
                 f"{example}_generated")


def _charrnn_bptt(Wxh, Whh, bh, Why, by, x, y, h0):
    """min-char-rnn's forward pass and backpropagation through time, written out by hand
    (one-hot inputs as rows of Wxh), over a batch and averaged over T and B."""
    T, B = x.shape
    hs, ps, loss = [h0], [], 0.0
    for t in range(T):
        hs.append(np.tanh(Wxh[x[t]] + hs[-1] @ Whh + bh))
        z = hs[-1] @ Why + by
        p = np.exp(z - z.max(axis=1, keepdims=True))
        ps.append(p / p.sum(axis=1, keepdims=True))
        loss -= np.log(ps[-1][np.arange(B), y[t]]).sum()
    grads = [np.zeros_like(a) for a in (Wxh, Whh, bh, Why, by)]
    dnext = np.zeros_like(h0)
    for t in reversed(range(T)):
        dz = ps[t].copy()
        dz[np.arange(B), y[t]] -= 1
        grads[3] += hs[t + 1].T @ dz
        grads[4] += dz.sum(axis=0)
        draw = (dz @ Why.T + dnext) * (1 - hs[t + 1] ** 2)
        np.add.at(grads[0], x[t], draw)
        grads[1] += hs[t].T @ draw
        grads[2] += draw.sum(axis=0)
        dnext = draw @ Whh.T
    return loss / (T * B), [g / (T * B) for g in grads]


def test_charrnn_gradient_equals_backpropagation_through_time():
    mod = _golden("charrnn")
    rng = np.random.default_rng(5)
    V, H, T, B = 7, 5, 6, 3
    params = [rng.normal(size=s) for s in ((V, H), (H, H), (H,), (H, V), (V,))]
    x, y = rng.integers(0, V, size=(T, B)), rng.integers(0, V, size=(T, B))
    x[:, 0] = 2   # a repeated character: its row of Wxh gathers several contributions
    h0 = rng.normal(size=(B, H))
    loss, grads = _charrnn_bptt(*params, x, y, h0)
    value, got = mod.loss_value_and_grad(*params, x, y, h0)
    assert value == pytest.approx(loss, rel=1e-12)
    assert mod.loss(*params, x, y, h0) == pytest.approx(loss, rel=1e-12)
    for g, ref in zip(got, grads):
        np.testing.assert_allclose(g, ref, rtol=1e-10, atol=1e-14)


def test_charrnn_training_lowers_the_loss_and_samples_a_line():
    out = _run_script("charrnn", "train.py", "--steps", "150")
    assert "public domain" in (ROOT / "examples" / "charrnn" / "train.py").read_text()
    uniform = float(out.split("uniform guess:")[1].split()[0])
    losses = [float(line.split("loss")[1]) for line in out.splitlines()
              if line.startswith("step")]
    assert losses[0] == pytest.approx(uniform, abs=0.01)   # small weights: nearly uniform
    assert len(losses) >= 3 and losses[-1] < 0.6 * losses[0]
    line = ast.literal_eval(out.split("sampled:")[1].strip())
    assert line.startswith("Shall ") and len(line) == len("Shall ") + 60


def _hmm_reference(A, pi, E, obs):
    """The mean log-likelihood of the sequences (columns of obs) by the scaled forward
    algorithm in probability space (Rabiner's normalisation), not in log space."""
    def softmax(z, axis):
        e = np.exp(z - z.max(axis=axis, keepdims=True))
        return e / e.sum(axis=axis, keepdims=True)
    trans, start, emit = softmax(A, 1), softmax(pi, 0), softmax(E, 0)
    total = 0.0
    for seq in obs.T:
        a = start * emit[seq[0]]
        for s in seq[1:]:
            total += np.log(a.sum())
            a = (a / a.sum()) @ trans * emit[s]
        total += np.log(a.sum())
    return total / obs.shape[1]


def test_hmm_against_the_scaled_forward_algorithm_and_differences():
    mod = _golden("hmm")
    rng = np.random.default_rng(6)
    A, pi, E = rng.normal(size=(3, 3)), rng.normal(size=3), rng.normal(size=(4, 3))
    obs = rng.integers(0, 4, size=(9, 5))
    value, grads = mod.loglik_value_and_grad(A, pi, E, obs)
    assert value == pytest.approx(_hmm_reference(A, pi, E, obs), rel=1e-12)
    params, eps = [A, pi, E], 1e-6
    for which, g in enumerate(grads):
        for i in np.ndindex(g.shape):
            up = [p.copy() for p in params]
            down = [p.copy() for p in params]
            up[which][i] += eps
            down[which][i] -= eps
            slope = (_hmm_reference(*up, obs) - _hmm_reference(*down, obs)) / (2 * eps)
            assert g[i] == pytest.approx(slope, abs=1e-7)


def test_hmm_fit_reaches_the_true_models_likelihood():
    out = _run_script("hmm", "train.py", "--steps", "200")
    values = [float(line.split("log-likelihood")[1]) for line in out.splitlines()
              if line.startswith("step")]
    assert len(values) >= 3 and values[-1] > values[0] + 5
    last = out.splitlines()[-1]   # fitted log-likelihood F, true model's T, gap G
    final, true = (float(last.split(key)[1].split(",")[0])
                   for key in ("fitted log-likelihood", "true model's"))
    # the maximum-likelihood fit explains its data at least as well as the true model
    assert true < final < true + 1


def _kalman_reference(theta, y, m0, P0):
    """The local-level model's negative log-likelihood from the joint Gaussian of y:
    mean m0, covariance P0 + q min(s, t) + r [s = t] (steps counted from 1)."""
    q, r = np.exp(theta)
    t = np.arange(1, len(y) + 1)
    cov = P0 + q * np.minimum.outer(t, t) + r * np.eye(len(y))
    _, logdet = np.linalg.slogdet(cov)
    d = y - m0
    return 0.5 * (logdet + d @ np.linalg.solve(cov, d) + len(y) * np.log(2 * np.pi))


def test_kalman_filter_equals_the_joint_gaussian_likelihood():
    mod = _golden("kalman")
    rng = np.random.default_rng(7)
    y, m0, P0 = np.cumsum(rng.normal(size=12)) + rng.normal(size=12), 0.3, 2.0
    theta, eps = np.array([-0.4, 0.2]), 1e-5
    value, grad = mod.nll_value_and_grad(theta, y, m0, P0)
    assert value == pytest.approx(_kalman_reference(theta, y, m0, P0), rel=1e-12)
    basis = np.eye(2) * eps
    slopes = [(_kalman_reference(theta + d, y, m0, P0) - _kalman_reference(theta - d, y, m0, P0))
              / (2 * eps) for d in basis]
    np.testing.assert_allclose(grad, slopes, rtol=1e-7, atol=1e-9)
    v = np.array([1.0, -0.5])   # the HVP (forward over the reversed loop) against differences
    slope = (mod.nll_grad(theta + eps * v, y, m0, P0)
             - mod.nll_grad(theta - eps * v, y, m0, P0)) / (2 * eps)
    np.testing.assert_allclose(mod.nll_hvp(theta, y, m0, P0, v), slope, rtol=1e-7, atol=1e-9)


def test_kalman_log_likelihood_terms_are_vector_operations():
    """sink_steps on scalars per step: the filter's loop keeps F and v (`Fs[t] = F`), the
    log-density terms and their cotangents are one vector expression each after the loop,
    and the backward loop reads their cotangents (`dFs[t]`); no per-step copy."""
    text = (ROOT / "examples/kalman/kalman_grad.py").read_text()
    plain = text.split("\ndef nll(")[1].split("\ndef ")[0]
    assert "total" not in plain and "        Fs[t] = F\n" in plain and "np.log(Fs)" in plain
    grad = text.split("\ndef nll_grad(")[1].split("\ndef ")[0]
    backward = grad.split("reversed(range(T)):\n")[1].split("\n    del ")[0]
    assert "dFs[t]" in backward and "dvs[t]" in backward and "dtotal" not in grad
    assert ".copy()" not in backward and "] = 0\n" not in backward


def test_kalman_fit_by_lbfgs_and_trust_ncg_agree():
    pytest.importorskip("scipy")
    out = _run_script("kalman", "fit.py")
    fits = [line for line in out.splitlines() if "negative log-likelihood" in line
            and "after" in line]
    assert len(fits) == 2
    values = [float(line.split("negative log-likelihood")[1].split()[0]) for line in fits]
    truth = float(out.split("at the truth")[1].split(",")[0])
    assert values[0] == pytest.approx(values[1], abs=1e-6) and values[0] < truth
    assert all(float(line.split("|gradient|")[1]) < 1e-4 for line in fits)


@pytest.mark.parametrize("script", ["mlp/train.py", "newton/train.py"])
def test_training_script_runs_without_scipy(script):
    """README's quick start installs gradgen alone: a script whose SciPy part is optional
    runs its NumPy part and says what it skipped (gradgen.scipy imports SciPy only when
    `minimize` is called, so importing it is no test of SciPy's presence)."""
    hide = ("import runpy, sys; sys.modules['scipy'] = None; "
            f"runpy.run_path({str(ROOT / 'examples' / script)!r}, run_name='__main__')")
    proc = subprocess.run([sys.executable, "-c", hide], capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "gradgen.scipy needs gradgen and scipy installed" in proc.stdout
