"""Each pass on graphs built as the source is written: golden before/after IR, the rewrite
rules that fired, the same values before and after (run on random inputs), and the result a
fixed point of the pass.

The graphs are built in a builder without rewrite rules (`ir.building(REGISTRY)`), so the
rules are seen at work; a compilation's builder (`gradgen.passes.building`) applies them as
nodes are made. Nodes are interned in both, so a subexpression written twice is one node.

Refresh the golden files with `pytest --update-golden` after an intended change, and read
the diff: it is the review of what the pass does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gradgen import ir
from gradgen.codegen.naming import Namer
from gradgen.codegen.printer import NumpyPrinter
from gradgen.codegen.schedule import schedule
from gradgen.frontend import parse_program
from gradgen.ops import REGISTRY
from gradgen.passes import (building, dce, fuse, hoist_steps, loops, lower, optimize,
                            recording, simplify, sink_steps)

GOLDEN = Path(__file__).parent / "golden" / "passes"

PASSES = {"simplify": simplify, "fuse": fuse, "dce": dce, "optimize": optimize,
          "hoist_steps": hoist_steps,
          "sink_steps": lambda g: dce(loops(sink_steps(g))),   # (the loop then pruned)
          "lower": lambda g: lower(optimize(g)),
          # (the loops' steps batched first, as the compiler does before lowering)
          "lower_loops": lambda g: lower(optimize(dce(loops(sink_steps(hoist_steps(
              optimize(g)))))))}

# name: (pass, what it shows, source)
CASES = {
    "simplify_identities": ("simplify", "x * 1, x + 0, --x, double transpose, folding", """\
def f(x: Param[N], A: Param[N, N]):
    return sum(x * 1 + 0) + sum(-(-x) * (2 * 3)) + sum(transpose(transpose(A)) @ x)
"""),
    "simplify_exp_log": ("simplify", "exp(log x) and log(exp x) cancel", """\
def f(x: Param[N]):
    return sum(exp(log(x)) + log(exp(x)))
"""),
    "simplify_broadcast_sum": ("simplify", "a sum of a broadcast is a multiplication by the size",
                               """\
def f(s: Param[()], x: Data[N]):
    return sum(broadcast_to(s, (N,))) + mean(broadcast_to(s * 2, (N, 3))) + sum(x)
"""),
    "simplify_linear_reductions": ("simplify", "signs and scalar factors leave sums and means",
                                   """\
def f(x: Param[N, D]):
    return sum(sum(-x, axis=0) * 3) + mean(-(2 * x))
"""),
    "simplify_zeros": ("simplify", "zeros propagate through *, + and -", """\
def f(x: Param[N], y: Param[N]):
    return sum(0 * x + y * x - zeros((N,)) * x)
"""),
    "simplify_common_factor": ("simplify", "A @ C + B @ C is (A + B) @ C: one product", """\
def f(A: Param[N, N], B: Data[N, N], x: Param[N]):
    return sum(A @ x + B @ x) + sum(A @ B + A @ A.T)
"""),
    "simplify_scalars": ("simplify", "scalar factors collected in front, c*a + c*b = c*(a+b)",
                         """\
def f(x: Param[N], y: Param[N]):
    return sum(x / 4 + y / 4) + sum((2 * x) * (3 * y))
"""),
    "simplify_einsum_contraction": ("simplify", "a two-operand einsum is one matrix product "
                                    "of its operands reshaped (BLAS, not np.einsum's loop)", """\
def f(x: Param[N, D, C], W: Param[K, C, M], y: Param[N, D, M]):
    return sum(einsum("ndc,kcm->nkm", x, W) ** 2) + sum(einsum("ndm,kcm->nk", y, W) ** 2)
"""),
    "simplify_sum_batched_product": ("simplify", "a batch of products summed over the batch "
                                     "is one product of the flattened batch", """\
def f(X: Data[N, K, D], W: Param[D, M]):
    return sum(transpose(X, (0, 2, 1)) @ (X @ W), axis=0)[0, 0]
"""),
    "simplify_squared_distance": ("simplify", "a squared distance of all row pairs is matrix "
                                  "products, no (N, K, D) temporary", """\
def f(X: Data[N, D], mu: Param[K, D], log_s: Param[K, D]):
    z = (X[:, None, :] - mu[None, :, :]) / exp(log_s)[None, :, :]
    return sum(logsumexp(-sum(z ** 2, axis=2), axis=1)) + sum(sum((mu[None] - X[:, None]) ** 2, axis=2))
"""),
    "simplify_triangular_inverse": ("simplify", "a product with the inverse of a triangular "
                                    "matrix is a triangular solve", """\
def f(A: Param[N, N], b: Param[N, D]):
    return sum(inv(triu(A)) @ b) + sum(b.T @ inv(tril(A)).T)
"""),
    "simplify_symmetric_solve": ("simplify", "S.T is S for S symmetric by construction, and "
                                 "a scalar leaves a solve: solve(S.T, b / 4) is solve(S, b) / 4",
                                 """\
def f(A: Param[N, N], b: Param[N, D]):
    S = A @ A.T + eye(N) / 10
    return sum(solve(S.T, b / 4) - solve(S, -b)) + sum(inv(S).T * S.T)
"""),
    "simplify_like_terms": ("simplify", "like terms add up: x + x is 2 * x, 3 * x + x / 2 is "
                            "3.5 * x", """\
def f(x: Param[N], y: Param[N]):
    return sum(x * y + x * y) + sum(3 * x + x / 2)
"""),
    "simplify_filled": ("simplify", "a product with an array of one repeated number is a "
                        "scalar product", """\
def f(x: Param[N, D]):
    return sum(ones((N,))[:, None] * x) + sum(ones((N, 1)) / x)
"""),
    "simplify_cancel": ("simplify", "(x / y) * y and (x * y) / y are x; a sign leaves a squeeze, "
                        "so a squeezed kept-axes sum is a plain sum", """\
def f(x: Param[N, D], y: Param[N, D]):
    return sum(x / y * y + y * x / y) + sum(squeeze(-sum(x, axis=1, keepdims=True), axis=1))
"""),
    "fuse_logistic": ("fuse", "the logistic function written out becomes sigmoid", """\
def f(z: Param[N]):
    return sum(1 / (1 + exp(-z)))
"""),
    "fuse_log_sigmoid": ("fuse", "log(sigmoid(z)) becomes -softplus(-z)", """\
def f(z: Param[N]):
    return sum(log(sigmoid(z)))
"""),
    "fuse_log_one_minus_sigmoid": ("fuse", "log(1 - sigmoid(z)) becomes -softplus(-z) - z", """\
def f(z: Param[N], x: Data[N]):
    p = sigmoid(z)
    return -sum(x * log(p) + (1 - x) * log(1 - p))
"""),
    "fuse_sigmoid_of_negation": ("fuse", "sigmoid(-z) becomes sigmoid_neg(z), 1 / (1 + exp(z)): "
                                 "no pass to negate z; log of it becomes -softplus(z); "
                                 "softplus(-z) is softplus_neg(z), one array",
                                 """\
def f(z: Param[N], y: Data[N]):
    return sum(sigmoid(-z) * y) + sum(log(sigmoid(-(y * z)))) + sum(softplus(-z))
"""),
    "fuse_log_softmax": ("fuse", "log(softmax(U)) becomes U - max - log(sum(exp))", """\
def f(U: Param[N, C], Y: Data[N, C]):
    return -sum(Y * log(softmax(U, axis=1)))
"""),
    "fuse_transposed_product": ("fuse", "(A.T @ B.T).T is B @ A: no transpose around it", """\
def f(A: Param[N, N], B: Param[N, N]):
    return sum((A.T @ B.T).T * A)
"""),
    "dce_unused": ("dce", "names of values the output does not need are dropped", """\
def f(x: Param[N]):
    unused = exp(x)
    also_unused = unused * 2
    y = tanh(x)
    return sum(y)
"""),
    "optimize_mlp": ("optimize", "every pass to a fixed point on the MLP cost", """\
def cost(X: Data[N, D], Y: Data[N, C], V: Param[D, M], W: Param[M, C]):
    Z = 1 / (1 + exp(-(X @ V)))
    U = Z @ W
    return -mean(sum(Y * log(softmax(U, axis=1)), axis=1))
"""),
    "optimize_matchain": ("optimize", "matrix chains in the cheaper order, after simplification",
                          """\
def f(A: Data[N, K], B: Data[K, M], x: Param[M]):
    return sum(A @ (B * 1) @ x)
"""),
    "lower_scalars": ("lower", "a scalar factor moves onto the smallest operand", """\
def f(p: Param[N], Q: Data[D, N]):
    return sum(exp((p * Q) / N))
"""),
    "lower_small_powers": ("lower", "small integer powers are squares, products and a "
                           "reciprocal (NumPy's general pow is ~15x slower)", """\
def f(x: Param[N], A: Param[N, D], s: Param[()]):
    return sum(x ** 3 + exp(x) ** 4 + x ** -1 + x ** 2.0) + sum(A.T @ x ** -2) + s ** 3
"""),
    # h-tsne (issue 12): t-SNE's and MDN's passes over (N, N) and (N, K) arrays
    "lower_sum_product_vdot": ("lower", "a sum of all elements of a product is one dot "
                              "product (not a broadcast product, not along an axis)", """\
def f(x: Param[N], A: Param[N, D], B: Data[N, D], s: Param[()]):
    return sum(A * B) + sum(x ** 2) + sum(A * B / s) + sum(A * x[:, None]) + sum(sum(A * B, axis=0) * x[:D])
"""),
    "lower_tie_split": ("lower", "maximum's adjoint (ties split) as a product with weights, "
                        "not two wheres", """\
def f(x: Param[N], y: Param[N], g: Param[N]):
    return sum(where(x > y, g, where(x == y, g / 2, 0)) + where(y < x, exp(g), where(x == y, exp(g) / 2, 0)))
"""),
    "lower_broadcast_terms_last": ("lower", "u + v - M with u, v broadcast: the product "
                                   "first, the small terms added into its buffer", """\
def f(Y: Param[N, D], X: Data[M, D]):
    s = sum(Y ** 2, axis=1)
    t = sum(X ** 2, axis=1)
    return sum(exp(-(s[:, None] + t[None, :] - 2 * Y @ X.T))) + sum(log(1 + s[:, None] + s[None, :] - Y @ Y.T))
"""),
    "lower_zero_diagonal": ("lower", "a product with 1 - eye(N) sets the diagonal to 0 "
                            "(no identity, no mask), also as (1 - eye(N)) / d", """\
def f(A: Param[N, N], B: Data[N, N]):
    return sum(exp(A) * (1 - eye(N))) + sum((1 - eye(N)) / (A * B + 1)) + sum(B * (1 - eye(N)))
"""),
    # -- fewer full-size temporaries (issue 12, h-alloc)
    "simplify_sum_product_dot": ("simplify", "the sum of a product or square of vectors is a "
                                 "dot product (no temporary); a sum of such terms is split",
                                 """\
def f(x: Param[N], y: Param[N], A: Param[N, D]):
    return sum(100.0 * (x[1:] - x[:-1] ** 2.0) ** 2.0 + (1 - x[:-1]) ** 2.0) \\
        + sum(x * y) - sum(A * A) + sum(x * exp(y) - y)
"""),
    # ---- h-loophoist: loops
    "hoist_steps_rnn": ("hoist_steps", "a loop's per-step values that read no carried value "
                        "computed for all steps before it, read a row per step", """\
def f(X: Data[T, N, D], W: Param[D, M], U: Param[M, M], b: Param[M], h0: Data[N, M]):
    h = h0
    s = 0.0
    for t in range(T):
        h = tanh(X[t] @ W + b + h @ U)
        s += sum(h)
    for t in range(1, T):
        s = s * 0.5 + sum(exp(X[t - 1] * 0.1))
    return s
"""),
    # h-rnn (issue 12): a loop's accumulated terms that feed no carried value after it
    "sink_steps_rnn": ("sink_steps", "a loop's accumulated terms that feed no carried value "
                       "computed after it for all steps at once, over the values it saves "
                       "per step (or already writes: H[t] = g)", """\
def f(X: Data[T, N, D], W: Param[D, M], U: Param[M, M], V: Param[M, C], y: Index[T, N],
      h0: Data[N, M]):
    h = h0
    loss = 0.0
    for t in range(T):
        h = tanh(X[t] @ W + h @ U)
        loss += -mean(log_softmax(h @ V, axis=1)[arange(N), y[t]])
    H = zeros((T, N, M))
    g = h0
    s = 0.0
    for t in range(T):
        g = tanh(g @ U)
        H[t] = g
        s += sum(exp(g) * 2.0)
    return loss / T + s + sum(H)
"""),
    # h-rnn2 (issue 12 item 4): the entries taken before exp (codegen/schedule
    # `_gathers_first`), which then computes in the logits' buffer
    "lower_gather_before_exp": ("lower", "log_softmax(X @ W)[rows, y] beside the softmax: the "
                                "entries gathered into a variable first, exp in place after",
                                """\
def f(X: Data[N, D], W: Param[D, C], y: Index[N]):
    p = softmax(X @ W, axis=1)
    return -mean(log_softmax(X @ W, axis=1)[arange(N), y]) + sum(p * p)
"""),
    # h-rnn2 (issue 12 item 4): one value per row of a (T, N) grid scattered into (T, N, C)
    # zeros: its sums over C are the values; minus a full array it is added into that
    # array's buffer (log_softmax's cotangent: softmax, then `-= 1 / (N * T)` at y)
    "lower_scatter_into_difference": ("lower", "A = zeros; A[steps, rows, y] += g: "
                                      "sum(A, axis=2) is g, A - exp(Z) is -exp(Z) with g "
                                      "added at [steps, rows, y]", """\
def f(g: Param[T, N], y: Index[T, N], Z: Param[T, N, C]):
    A = zeros((T, N, C))
    A[arange(T)[:, None], arange(N), y] += g
    return sum(sum(A, axis=2) * g) + sum((A - exp(Z)) * Z)
"""),
    # h-rnn2 (issue 12 item 4): the input projection of all steps computed into the rows
    # the loop fills (not where the loop's array is read elsewhere first, or B otherwise)
    "lower_loops_fill_shifted_rows": ("lower_loops", "a loop filling g_steps[t + 1] reads "
                                      "sin(X[t]) @ W of all steps from the row it fills: "
                                      "computed there before the loop (not X @ W, read "
                                      "twice)", """\
def f(X: Data[T, N, D], W: Param[D, M], U: Param[M, M], V: Param[M, C], h0: Data[N, M]):
    h = h0
    loss = 0.0
    for t in range(T):
        h = tanh(X[t] @ W + h @ U)
        loss += sum(exp(h @ V))
    g = h0
    s = 0.0
    for t in range(T):
        g = tanh(sin(X[t]) @ W + g @ U)
        s += sum(exp(g @ V))
    return loss + s + sum(X @ W)
"""),
    # h-gp (issue 12): a scalar or a sign leaves a matrix product.
    "simplify_matmul_scalar_outwards": ("simplify", "a scalar factor of a vector, or a sign, "
                                        "leaves a matrix product unless the product is larger",
                                        """\
def f(w: Param[D], X: Data[N, D], y: Data[N], V: Param[D, K], A: Data[5, 3], v: Param[3]):
    r = y - X @ w
    return sum(X.T @ (-r / N)) + sum(X.T @ (-(X @ V))) + sum(A @ (2 * v))
"""),
    # h-hmm (issue 12): row sums of short rows (softmax's, the HMM's logsumexp over states)
    "lower_sum_inner_einsum": ("lower", "a sum over inner axes that keeps the first is one "
                               "einsum; over the first axis or all axes it stays sum", """\
def f(S: Param[N, K, K], A: Param[N, K]):
    return sum(log(sum(exp(S), axis=1))) + sum(log(sum(exp(A), axis=1, keepdims=True))) \\
        + sum(sum(S, axis=(1, 2)) * sum(A, axis=0)[0]) + sum(A)
"""),
    # h-hmm4 (issue 12): a batch of square matrices times a batch of vectors is a matmul
    # (hmm's backward step); of non-square matrices it stays einsum.
    "lower_einsum_batched_matvec": ("lower", "sum(v[:, None, :] * W, axis=2), W a batch of "
                                    "square matrices: W @ v[:, :, None]; not for (N, M, K)", """\
def f(W: Param[N, K, K], v: Param[N, K], U: Param[N, M, K]):
    return sum(sum(v[:, None, :] * W, axis=2) ** 2) + sum(sum(v[:, None, :] * U, axis=2) ** 2)
"""),
    # h-rnn2 (issue 12 item 4): the entries a gather takes computed alone, no full-size
    # temporary; not where the operands are both full or the difference is read again.
    "lower_gather_before_elementwise": ("lower", "(Z - log(s))[rows, y], s broadcast along "
                                        "the indexed axis: the entries gathered first", """\
def f(Z: Param[N, C], U: Param[N, C], y: Index[N]):
    s = sum(exp(Z), axis=1, keepdims=True)
    d = Z - U
    return sum((Z - log(s))[arange(N), y]) + sum((s * U)[arange(N), y]) \\
        + sum((Z * U)[arange(N), y]) + sum(d[arange(N), y]) + sum(d)
"""),
    # h-gp (issue 12): the Cholesky composites, a solve and the log-determinant of spd(K)
    # (from one factor), lowered back to that factor.
    "simplify_cholesky_composites": ("simplify", "cho_solve(cholesky(K), y) is solve(spd(K, "
                                     "L), y) and sum(log(diag(L))) is logdet(spd(K, L)) / 2",
                                     """\
def f(A: Param[N, N], y: Param[N]):
    L = cholesky(A @ A.T + eye(N))
    return y @ cho_solve(L, y) / 2 + sum(log(diag(L)))
"""),
    "lower_cholesky_composites": ("lower", "a solve and the log-determinant of spd(K, L) are "
                                  "computed from the factor L", """\
def f(A: Param[N, N], y: Param[N]):
    L = cholesky(A @ A.T + eye(N))
    return 0.5 * y @ cho_solve(L, y) + sum(log(diag(L)))
"""),
    # h-probe (issue 12, held-out probe): relu's db1 and dW1 read one product
    "lower_sum_shared_product": ("lower", "a sum over the first axis of a product a matrix "
                                 "product also reads sums that product (no einsum of its "
                                 "factors: it is computed anyway)", """\
def f(X: Data[N, D], A: Param[N, M], B: Param[N, M]):
    P = A * B
    return sum(X.T @ P) + sum(sum(P, axis=0) ** 2) + sum(sum(A * X[:, :1], axis=0) ** 2)
"""),
    # h-probe (issue 12, held-out probe): a product over a contracted axis of length 1
    "simplify_matmul_outer_unit": ("simplify", "a @ b over an axis of length 1 is the "
                                   "broadcast product a * b", """\
def f(a: Param[N, 1], W: Param[D, 1], x: Param[N, D]):
    return sum((a @ W.T) * x)
"""),
    # h-chunk (issue 12, held-out probe): Styblinski-Tang's passes over (N,)
    "lower_horner": ("lower", "a polynomial in one array written as terms is evaluated by "
                     "Horner's rule (one buffer updated in place); a product of sums, a form "
                     "that is not shorter, and new float coefficients stay as written", """\
def f(x: Param[N], y: Param[N], z: Param[N], w: Param[N]):
    return sum(x ** 4 - 16 * x ** 2 + 5 * x) / 2 + sum(2 * y ** 3 - 16 * y + 5 / 2) \\
        + sum((z - 1) * (z + 1) * w) + sum(w ** 4 + 1) + sum(tanh(0.5 * (z + 0.25 * z ** 3)))
"""),
    # h-hess2 (issue 12, the logistic Hessian): symmetric results, the identity not built
    "simplify_weighted_gram_symmetric": ("simplify", "X.T @ diag(v) @ X is symmetric: the "
                                         "transpose of (v * X.T) @ X or X.T @ (v[:, None] * X) "
                                         "plus c * I is the matrix, and so is eye(D) * u's",
                                         """\
def f(X: Data[N, D], v: Param[N], A: Param[D, D], c: Param[()], u: Param[D]):
    return sum(((v * X.T) @ X + c * eye(D)).T * A) + sum((X.T @ (v[:, None] * X)).T * A) \\
        + sum((eye(D) * u).T * A)
"""),
    "lower_plus_diagonal": ("lower", "c * eye(N) added to a square matrix adds c to its "
                            "diagonal (no identity built), into the matrix's buffer", """\
def f(A: Param[N, N], c: Param[()]):
    return sum(exp(A @ A + c * eye(N))) + sum(log(A * A + eye(N))) + sum(A + eye(N) * 2) \\
        + sum(exp(A - 2 * (c * eye(N))))
"""),
    "simplify_trace_of_identity_product": ("simplify", "the sum of A * eye(N) is trace(A) "
                                           "(the cotangent of c in A + c * eye(N))", """\
def f(A: Param[N, N], B: Data[N, N], c: Param[()]):
    return sum(A * eye(N)) + sum(eye(N) * (A @ B)) * c
"""),
}

SIZES = {"N": 5, "D": 3, "C": 4, "M": 6, "K": 2, "T": 4}


def _raw(source: str):
    """The graph of the first entry point as written (no rewriting; call inside a builder
    without rules)."""
    entry = parse_program(source, "case.grad").entries[0]
    graph = ir.Graph(tuple(a.node for a in entry.args), (entry.output,), dict(entry.names))
    return entry, graph


def _emitted(entry, graph) -> tuple[NumpyPrinter, list[str], str]:
    """The printer, the emitted statements and the expression of the graph's output."""
    names = dict(graph.names)
    arg_names = {a.name for a in entry.args}
    printer = NumpyPrinter()
    body = schedule(list(graph.outputs), names, Namer(arg_names | set(SIZES)), printer,
                    keep=frozenset(arg_names))
    return printer, list(body.lines), printer.code[id(graph.outputs[0])][0]


def _code(entry, graph) -> str:
    """The emitted statements, and the returned expression."""
    _, lines, result = _emitted(entry, graph)
    return "\n".join(lines + [f"return {result}"])


def _run(entry, graph, values: dict) -> np.ndarray:
    """Evaluate the graph's output with the emitted statements."""
    printer, lines, result = _emitted(entry, graph)
    env = {"np": np, **values, **SIZES}
    for prelude in printer.preludes.values():
        exec(prelude, env)
    exec("\n".join(lines), env)
    return eval(result, env)


def _show(graph) -> str:
    """The printed IR, and the source names the graph records."""
    return ir.pretty(graph) + "\nnames: " + ", ".join(sorted(graph.names.values()))


def _fired(log) -> str:
    """The rules that fired, in order; repeats of one rule on one line counted."""
    lines: list[list] = []
    for f in log:
        text = f"line {f.line}: {f.rule.name} [{f.rule.tag}]"
        if lines and lines[-1][0] == text:
            lines[-1][1] += 1
        else:
            lines.append([text, 1])
    return "\n".join(t + (f" x{k}" if k > 1 else "") for t, k in lines) or "(none)"


def _values(entry, rng) -> dict:
    out = {}
    for a in entry.args:
        shape = tuple(int(d.subs({s: SIZES[s.name] for s in d.free_symbols}))
                      for d in a.shape)   # (`T + 1` too)
        out[a.name] = rng.uniform(0.5, 1.5, size=shape)   # positive: log(x) is defined
        if a.node.attr("role") == "index":   # (Index arguments: integers in range)
            out[a.name] = rng.integers(0, 2, size=shape)
    return out


def _matches_golden(name: str, header: str, entry, before, after, log=None,
                    update: bool = False, before_text: str | None = None) -> None:
    """Compare (or with `update` write) the golden file `name`: `header`, the IR before,
    the rules fired (when `log` is given), the IR after, and the code emitted from each."""
    fired = "" if log is None else f"\n## rules fired\n{_fired(log)}\n"
    text = (header + f"\n## before\n{before_text or _show(before)}\n{fired}"
            + f"\n## after\n{_show(after)}\n"
            + f"\n## emitted before\n{_code(entry, before)}\n"
            + f"\n## emitted after\n{_code(entry, after)}\n")
    golden = GOLDEN / f"{name}.txt"
    if update:
        golden.write_text(text, encoding="utf-8")
    assert golden.read_text(encoding="utf-8") == text


def _hand_built(name: str, header: str, entry, before, run, update: bool, *,
                rules: bool = True, fixed_point: bool = True, rtol: float = 1e-12):
    """`run` on a graph built by hand (`before`, of `entry`'s arguments): both graphs
    verified, the golden file `name` matched (with the rules fired, if `rules`), a fixed
    point (if `fixed_point`), the same values before and after; the graph after."""
    ir.verify(before)
    with recording() as log:
        after = run(before)
    ir.verify(after)
    _matches_golden(name, header, entry, before, after, log if rules else None, update)
    if fixed_point:
        assert run(after) is after, "not a fixed point: a second run changed the graph"
    values = _values(entry, np.random.default_rng(7))
    np.testing.assert_allclose(_run(entry, after, values), _run(entry, before, values),
                               rtol=rtol)
    return after


@pytest.mark.parametrize("name", sorted(CASES))
def test_pass(name: str, update_golden: bool):
    pass_name, what, source = CASES[name]
    run = PASSES[pass_name]
    with ir.building(REGISTRY):
        entry, before = _raw(source)
        ir.verify(before)
        before_text = _show(before)
        with recording() as log:
            after = run(before)
        ir.verify(after)
        header = (f"# {pass_name}: {what}\n#\n"
                  + "".join(f"#   {line}\n" for line in source.splitlines()))
        _matches_golden(name, header, entry, before, after, log, update_golden, before_text)
        assert after is not before, "the case shows nothing: the pass changed nothing"
        if not pass_name.startswith("lower"):
            assert run(after) is after, "not a fixed point: a second run changed the graph"
        rng = np.random.default_rng(7)
        values = _values(entry, rng)
        np.testing.assert_allclose(_run(entry, after, values), _run(entry, before, values),
                                   rtol=1e-12)


def test_a_compilations_graphs_are_canonical_by_construction():
    """In a compilation's builder every node is made with the rules applied: the graph the
    frontend builds is what the passes make of the same graph built as written, and the
    pipeline returns it unchanged."""
    source = CASES["optimize_mlp"][2]
    with ir.building(REGISTRY):
        _, raw = _raw(source)
        expected = ir.pretty(optimize(raw))
    with building():
        _, graph = _raw(source)
        ir.verify(graph)
        assert ir.pretty(graph) == expected
        assert optimize(graph) is graph
        assert simplify(graph) is graph and fuse(graph) is graph


# -- fewer full-size temporaries (issue 12, h-alloc): a pattern only derivatives make, so the
# graph is built by hand (the gradient of x[:-1], x[1:] and x[2:], each used once)

def test_fuse_scatters_one_buffer(update_golden: bool):
    """`scatters_one_buffer`: scatters of slices into zeros shaped like x, summed, become
    one zero-filled buffer with the later slices added into it (golden IR and emitted
    code; the same values; a fixed point)."""
    source = "def f(x: Param[N], u: Param[N]):\n    return x\n"
    sl = {"head": (("slice", None, -1, 1),), "tail": (("slice", 1, None, 1),),
          "tail2": (("slice", 2, None, 1),)}
    with ir.building(REGISTRY):
        entry, _ = _raw(source)
        x, u = (a.node for a in entry.args)
        head = ir.make("index", u, index=sl["head"])
        parts = [ir.make("scatter", ir.const(-2) * head, x, index=sl["head"]),
                 ir.make("scatter", ir.const(200.0) * ir.make("index", u, index=sl["tail"]),
                         x, index=sl["tail"]),
                 ir.make("scatter", ir.make("index", u, index=sl["tail2"]), x,
                         index=sl["tail2"])]
        out = parts[0] + parts[1] + parts[2]
        before = ir.Graph((x, u), (out,), {x: "x", u: "u", out: "dx"})
        after = _hand_built("fuse_scatters_one_buffer",
                            "# fuse: scatters of slices of one shape, summed, are one buffer\n",
                            entry, before, fuse, update_golden)
        assert _code(entry, before).count("zeros_like") == 3
        assert _code(entry, after).count("zeros_like") == 1   # one full-size buffer


# -- the inverse of spd(K, L) (issue 12, h-gp): only the adjoint of the Cholesky composites
# makes it (dK = (K^-1 - a a^T) / 2), so the graph is built by hand

def test_lower_spd_inverse(update_golden: bool):
    """`spd_inverse_by_factor`: inv(spd(K, L)) is Li.T @ Li with Li = solve_triangular(L, I):
    no LU inverse of K (golden IR and emitted code; the same values)."""
    source = "def f(A: Param[N, N], B: Data[N, N]):\n    return A\n"
    with ir.building(REGISTRY):
        entry, _ = _raw(source)
        a, b = (arg.node for arg in entry.args)
        k = a @ a.T + ir.make("eye", a, n=a.shape[0], m=a.shape[0])
        factor = ir.make("cholesky", k)
        out = ir.make("sum", ir.make("inv", ir.make("spd", k, factor)) * b, axes=(0, 1),
                      keepdims=False)
        before = ir.Graph((a, b), (out,), {a: "A", b: "B", factor: "L"})
        after = _hand_built("lower_spd_inverse",
                            "# lower: the inverse of spd(K, L) from the factor L\n",
                            entry, before, PASSES["lower"], update_golden, fixed_point=False,
                            rtol=1e-10)
        assert "linalg.inv" in _code(entry, before) and "linalg.inv" not in _code(entry, after)


# -- emitted-code nits (h-nits): a backward loop's `dH[t] = 0` (the cotangent of the zeros a
# forward loop's `H[t] = h` wrote into) is only made by differentiation: built by hand

def test_loops_drop_dead_row_writes(update_golden: bool):
    """`drop_dead_row_writes` (passes/loops.py): a loop's write `dH[t] = 0` into a carried
    array whose final value nobody reads and whose rows the body reads only at t goes; the
    same write stays where the body reads the whole array (`sum(dK)`) (golden IR and
    emitted code; the same values; a fixed point)."""
    from gradgen.passes.loops import drop_dead_row_writes

    source = "def f(G: Data[T, N, D], h0: Param[N, D]):\n    return h0\n"
    with ir.building(REGISTRY):
        entry, _ = _raw(source)
        G, h0 = (a.node for a in entry.args)
        T, N, D = G.shape
        outs = []
        for name, whole in (("dH", False), ("dK", True)):
            t = ir.make("input", name="t", role="index", shape=())
            dA = ir.make("input", name=name, role="carry", shape=(T, N, D))
            dh = ir.make("input", name="dh", role="carry", shape=(N, D))
            row = ir.make("gather", dA, t, axis=0)
            if whole:
                row = row + ir.make("sum", dA, axes=(0, 1, 2), keepdims=False)
            nexts = (ir.make("update", dA, ir.make("full", dA, value=0, shape=(N, D)), t,
                             index=(), axis=0),
                     (dh + row) * ir.const(0.5))
            scan = ir.make("scan", ir.const(2) * G, h0, length=T, reverse=True,
                           body=ir.Region((t, dA, dh), nexts))
            outs.append(ir.make("part", scan, index=1))
        out = ir.make("sum", outs[0] + outs[1], axes=(0, 1), keepdims=False)
        before = ir.Graph((G, h0), (out,), {G: "G", h0: "h0"})
        after = _hand_built("loops_drop_dead_row_writes",
                            "# loops: a write into a row nothing reads again is dropped\n",
                            entry, before, drop_dead_row_writes, update_golden, rules=False)
        assert _code(entry, before).count("] = 0\n") == 2
        assert _code(entry, after).count("] = 0\n") == 1   # dK's stays: sum(dK) reads it


# -- h-mem (issue 12, peak memory): a backward loop filling a new array row by row writes
# into the rows of an array it has just read, which nothing reads after it

def test_loops_share_row_buffers(update_golden: bool):
    """`share_row_buffers` (passes/loops.py): a loop writing `dA[t] = g` into a new array
    and reading another of its shape only as `B[t]` (before the write) writes into B's
    rows (`B[t] = g`, no `np.empty`); not where B is read after the loop too (golden IR and
    emitted code; the same values; a fixed point)."""
    from gradgen.passes.loops import share_row_buffers

    source = "def f(G: Data[T, N, D], h0: Param[N, D]):\n    return h0\n"
    with ir.building(REGISTRY):
        entry, _ = _raw(source)
        G, h0 = (a.node for a in entry.args)
        T, N, D = G.shape
        outs = []
        for name, read_after in (("dA", False), ("dC", True)):
            t = ir.make("input", name="t", role="index", shape=())
            dA = ir.make("input", name=name, role="carry", shape=(T, N, D))
            dh = ir.make("input", name="dh", role="carry", shape=(N, D))
            B = ir.make("input", name="B", role="outside", shape=(T, N, D))
            g = dh + ir.make("gather", B, t, axis=0)
            scan = ir.make("scan", ir.make("empty", G, shape=(T, N, D), name=name), h0,
                           ir.const(2) * G if not read_after else ir.const(3) * G,
                           length=T, reverse=True,
                           body=ir.Region((t, dA, dh, B),
                                          (ir.make("update", dA, g, t, index=(), axis=0),
                                           g * ir.const(0.5))))
            outs.append(ir.make("sum", ir.make("part", scan, index=0), axes=(0,),
                                keepdims=False) + ir.make("part", scan, index=1))
            if read_after:
                outs.append(ir.make("sum", ir.const(3) * G, axes=(0,), keepdims=False))
        out = ir.make("sum", outs[0] * outs[1] + outs[2], axes=(0, 1), keepdims=False)
        before = ir.Graph((G, h0), (out,), {G: "G", h0: "h0"})
        after = _hand_built("loops_share_row_buffers",
                            "# loops: rows of a new array written into those of one just read\n",
                            entry, before, share_row_buffers, update_golden, rules=False)
        assert _code(entry, before).count("np.empty(") == 2
        assert _code(entry, after).count("np.empty(") == 1   # dC's stays: 3 * G read after


def test_lower_reuse_state_rows(update_golden: bool):
    """`reuse_state_rows` (passes/rows.py, h-rnn3, issue 12 item 4): a backward loop
    reading `A[t]` of `A = P @ M` and writing `A[t] = g`, reading the states S only as
    rows, with `S[:T]`'s rows times A as one product after it, computes `P[t] @ M` in the
    step, accumulates that product per step and writes g into row t + 1 of S (golden IR
    and emitted code; the same values). Only with a hint that a step has >= 16 rows."""
    from gradgen.ops.control import REGIONS_BUILT
    from gradgen.passes import reuse_state_rows

    source = ("def f(P: Data[T, N, C], W: Param[C, D], Q: Param[T + 1, N, D], "
              "U: Param[D, D], d0: Param[N, D]):\n    return d0\n")
    with ir.building(REGISTRY) as b:
        b.memo[REGIONS_BUILT] = True
        entry, _ = _raw(source)
        P, W, Q, U, d0 = (a.node for a in entry.args)
        T, N, C = P.shape
        D = W.shape[1]
        S = ir.make("exp", Q)
        t = ir.make("input", name="t", role="index", shape=())
        A = ir.make("input", name="dA", role="carry", shape=(T, N, D))
        dh = ir.make("input", name="dh", role="carry", shape=(N, D))
        Sx = ir.make("input", name="S", role="outside", shape=tuple(S.shape))
        Ux = ir.make("input", name="U", role="outside", shape=(D, D))
        row = ir.make("gather", Sx, ir.make("add", t, ir.const(1)), axis=0)
        g = ir.make("mul", ir.make("add", dh, ir.make("gather", A, t, axis=0)),
                    ir.make("sub", ir.const(1), ir.make("mul", row, row)))
        scan = ir.make("scan", ir.make("matmul", P, W), d0, S, U, length=T, reverse=True,
                       body=ir.Region((t, A, dh, Sx, Ux),
                                      (ir.make("update", A, g, t, index=(), axis=0),
                                       ir.make("matmul", g, Ux))))
        F = ir.make("part", scan, index=0)
        flat = ir.make("reshape", F, shape=(N * T, D))
        states = ir.make("reshape", ir.make("index", S, index=(("slice", 0, T, 1),)),
                         shape=(N * T, D))
        dW = ir.make("matmul", ir.make("transpose", states, axes=(1, 0)), flat)
        dV = ir.make("matmul", ir.make("transpose", ir.make("reshape", ir.make("exp", P),
                                                             shape=(N * T, C)), axes=(1, 0)),
                     flat)
        out = ir.make("add", ir.make("add", ir.make("sum", dW, axes=(0, 1), keepdims=False),
                                     ir.make("sum", dV, axes=(0, 1), keepdims=False)),
                      ir.make("sum", ir.make("part", scan, index=1), axes=(0, 1),
                              keepdims=False))
        before = ir.Graph((P, W, Q, U, d0), (out,), {P: "P", W: "W", Q: "Q", U: "U", d0: "d0",
                                                     S: "S", dW: "dW"})
        assert reuse_state_rows(before) is before   # (no hint: N unknown)
        assert reuse_state_rows(before, {"N": 8}) is before   # (too few rows a step)
        after = _hand_built("lower_reuse_state_rows",
                            "# lower: a backward loop's rows written into the states' rows\n",
                            entry, before, lambda g: reuse_state_rows(g, {"N": 32}),
                            update_golden, rules=False, fixed_point=False)
        code = _code(entry, after)
        assert "dW += S[t].T @ " in code and "S[t + 1] = " in code and "S.copy()" not in code
        assert "np.empty(" not in code and code.count(" @ W") == 1   # (P[t] @ W in the step)
