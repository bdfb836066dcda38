"""The model suite of `run.py --case models`: each model's source, sizes, inputs and NumPy reference.

Every model is a `.grad` source written as its authors would write it (benchmarks/models/,
or an example under examples/), an input generator, and a NumPy reference that returns
``(value, grads)`` in the layout of gradgen's ``f_value_and_grad`` (a bare array for one
Param, a tuple in declaration order otherwise). Where the reference is a hand-written
gradient (all of them today), it is also timed, as "hand-written NumPy".

Only NumPy is imported here, so the test suite can load this file on its own
(tests/test_benchmarks_smoke.py checks every reference against the emitted module, or,
for the models that need loops, against finite differences). The JAX and torch versions
of the same models are in peer_models.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import handwritten as hw
import numpy as np

__all__ = ["MODELS", "Model", "inputs"]

ROOT = Path(__file__).resolve().parent.parent
LOG2PI = np.log(2 * np.pi)


@dataclass(frozen=True)
class Model:
    """One benchmark model: where its source is, its sizes, inputs and NumPy reference."""

    name: str                                   # the key of --only
    title: str                                  # what it is, for the table
    source: str                                 # path of the .grad file, relative to the repo
    function: str                               # the entry point
    args: tuple[str, ...]                       # its arguments, in order
    params: tuple[str, ...]                     # the Params among them, in order
    sizes: dict[str, dict[str, int]]            # label -> dimensions, realistic sizes
    small: dict[str, int]                       # dimensions for the smoke test
    make: Callable[[dict[str, int], np.random.Generator], dict]   # inputs by argument name
    reference: Callable                         # NumPy (value, grads), or the Hessian
    kind: str = "grad"                          # "grad": value_and_grad; "hessian": f_hessian
    loops: bool = False                         # the source has a `for` loop
    hints: tuple[str, ...] = ()                 # dimensions given at each size (`--hint N=32`)

    @property
    def path(self) -> Path:
        return ROOT / self.source


def inputs(model: Model, dims: dict[str, int], seed: int = 0) -> list:
    """The arguments of `model.function` at `dims`, in order (fresh arrays, float64)."""
    values = model.make(dims, np.random.default_rng(seed))
    return [values[a] for a in model.args]


def _lsm(x, axis=-1):
    """log_softmax, stable."""
    m = x.max(axis=axis, keepdims=True)
    s = x - m
    return s - np.log(np.exp(s).sum(axis=axis, keepdims=True))


def _lse(x, axis=-1):
    m = x.max(axis=axis, keepdims=True)
    return np.log(np.exp(x - m).sum(axis=axis, keepdims=True)).squeeze(axis) + m.squeeze(axis)


def _softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


# --------------------------------------------------------------------------- softmax regression


def _softmax_data(d, rng):
    N, D, C = d["N"], d["D"], d["C"]
    X = rng.standard_normal((N, D))
    return {"X": X, "y": rng.integers(0, C, N), "W": 1e-3 * rng.standard_normal((D, C)),
            "lam": 1e-3}


def softmax_ref(X, y, W, lam):
    """cs231n's vectorized softmax loss and gradient."""
    N = X.shape[0]
    S = X @ W
    S = S - S.max(axis=1, keepdims=True)
    E = np.exp(S)
    Z = E.sum(axis=1, keepdims=True)
    value = np.mean(np.log(Z[:, 0]) - S[np.arange(N), y]) + 0.5 * lam * np.sum(W * W)
    dS = E / Z
    dS[np.arange(N), y] -= 1
    return value, X.T @ dS / N + lam * W


# --------------------------------------------------------------------------- MLP


def _mlp_data(d, rng):
    X, Y, V, W = hw.mlp_data(d["N"], d["D"], d["M"], d["C"],
                             seed=int(rng.integers(0, 2 ** 31)))
    return {"X": X, "Y": Y, "V": V, "W": W}


# --------------------------------------------------------------------------- Poisson GLM


def _poisson_data(d, rng):
    N, D = d["N"], d["D"]
    X = rng.standard_normal((N, D)) / np.sqrt(D)
    w_true = rng.standard_normal(D) * 0.5
    return {"w": 0.1 * rng.standard_normal(D), "X": X,
            "y": rng.poisson(np.exp(X @ w_true)).astype(float)}


def poisson_ref(w, X, y):
    eta = X @ w
    mu = np.exp(eta)
    return np.mean(mu - y * eta), X.T @ (mu - y) / X.shape[0]


# --------------------------------------------------------------------------- elastic net


def _enet_data(d, rng):
    N, D = d["N"], d["D"]
    X = rng.standard_normal((N, D))
    w_true = np.where(rng.random(D) < 0.2, rng.standard_normal(D), 0.0)
    return {"w": rng.standard_normal(D) * 0.1, "X": X,
            "y": X @ w_true + 0.1 * rng.standard_normal(N), "alpha": 0.1, "l1_ratio": 0.5}


def enet_ref(w, X, y, alpha, l1_ratio):
    N = X.shape[0]
    r = y - X @ w
    value = (r @ r / (2 * N) + alpha * l1_ratio * np.abs(w).sum()
             + 0.5 * alpha * (1 - l1_ratio) * (w @ w))
    return value, -(X.T @ r) / N + alpha * l1_ratio * np.sign(w) + alpha * (1 - l1_ratio) * w


# --------------------------------------------------------------------------- GP


def _gp_data(d, rng):
    N, D = d["N"], d["D"]
    X = rng.uniform(-3, 3, (N, D))
    y = np.sin(X).sum(axis=1) + 0.1 * rng.standard_normal(N)
    return {"log_ell": np.array(0.2), "log_sf": np.array(0.1), "log_sn": np.array(-1.0),
            "X": X, "y": y}


def gp_ref(log_ell, log_sf, log_sn, X, y):
    """Rasmussen & Williams eq. 5.9: dNLL/dtheta = 1/2 tr((K^-1 - alpha alpha^T) dK/dtheta)."""
    N = X.shape[0]
    sq = (X ** 2).sum(axis=1)
    d2 = sq[:, None] + sq[None, :] - 2 * X @ X.T
    ell2, sf2, sn2 = np.exp(2 * log_ell), np.exp(2 * log_sf), np.exp(2 * log_sn)
    Kf = sf2 * np.exp(-0.5 * d2 / ell2)
    K = Kf + sn2 * np.eye(N)
    L = np.linalg.cholesky(K)
    L_inv = np.linalg.inv(L)
    K_inv = L_inv.T @ L_inv
    alpha = K_inv @ y
    value = 0.5 * y @ alpha + np.log(np.diag(L)).sum() + 0.5 * N * LOG2PI
    W = K_inv - np.outer(alpha, alpha)
    return value, (0.5 * np.sum(W * Kf * d2) / ell2, np.sum(W * Kf), sn2 * np.trace(W))


# --------------------------------------------------------------------------- GMM


def _gmm_data(d, rng):
    N, K, D = d["N"], d["K"], d["D"]
    centres = 3 * rng.standard_normal((K, D))
    X = centres[rng.integers(0, K, N)] + rng.standard_normal((N, D))
    return {"logits": 0.1 * rng.standard_normal(K), "mu": X[rng.choice(N, K, replace=False)],
            "log_sigma": 0.1 * rng.standard_normal((K, D)), "X": X}


def gmm_ref(logits, mu, log_sigma, X):
    N, D = X.shape
    log_w = logits - _lse(logits)
    s = np.exp(log_sigma)
    z = (X[:, None, :] - mu) / s                                  # (N, K, D)
    lp = log_w - 0.5 * (z ** 2).sum(axis=2) - log_sigma.sum(axis=1) - 0.5 * D * LOG2PI
    lse = _lse(lp, axis=1)
    G = -np.exp(lp - lse[:, None]) / N                            # d value / d lp: -resp / N
    d_logits = G.sum(axis=0) - np.exp(log_w) * G.sum()
    Gz = G[:, :, None] * z
    return -lse.mean(), (d_logits, Gz.sum(axis=0) / s, (Gz * z).sum(axis=0) - G.sum(axis=0)[:, None])


# --------------------------------------------------------------------------- t-SNE


def _tsne_data(d, rng):
    N, E = d["N"], d["E"]
    A = rng.random((N, N)) ** 4
    P = A + A.T
    np.fill_diagonal(P, 0)
    P = np.maximum(P / P.sum(), 1e-12)
    return {"Y": rng.standard_normal((N, E)), "P": P}


def tsne_ref(Y, P):
    """The KL cost and its gradient 4 sum_j (p_ij - S q_ij) num_ij (y_i - y_j), S the mass of
    P where Q is not clipped (tsne.py's formula has S = 1 and ignores the clipping)."""
    sum_Y = (Y ** 2).sum(axis=1)
    num = 1 / (1 + sum_Y[:, None] + sum_Y[None, :] - 2 * Y @ Y.T)
    np.fill_diagonal(num, 0)
    Z = num.sum()
    Q_raw = num / Z
    Q = np.maximum(Q_raw, 1e-12)
    value = np.sum(P * np.log(P / Q))
    live = Q_raw > 1e-12
    S = P[live].sum()
    dd2 = np.where(live, P * num - S * Q_raw * num, 0.0)          # d value / d d2_ij
    dd2 = dd2 + dd2.T
    return value, 2 * (dd2.sum(axis=1)[:, None] * Y - dd2 @ Y)


# --------------------------------------------------------------------------- matrix factorisation


def _mf_data(d, rng):
    U, I, K = d["U"], d["I"], d["K"]
    M = (rng.random((U, I)) < d.get("density_pct", 6) / 100).astype(float)
    R = M * rng.integers(1, 6, (U, I))
    return {"P": 0.1 * rng.standard_normal((U, K)), "Q": 0.1 * rng.standard_normal((I, K)),
            "R": R, "M": M, "lam": 0.1}


def mf_ref(P, Q, R, M, lam):
    E = M * (R - P @ Q.T)
    value = 0.5 * np.sum(E ** 2) + 0.5 * lam * (np.sum(P ** 2) + np.sum(Q ** 2))
    dR = -(M * E)
    return value, (dR @ Q + lam * P, dR.T @ P + lam * Q)


# --------------------------------------------------------------------------- Rosenbrock


def _rosen_data(d, rng):
    return {"x": rng.uniform(-1.5, 1.5, d["N"])}


def rosen_ref(x):
    """scipy.optimize.rosen and rosen_der (their NumPy code)."""
    value = np.sum(100.0 * (x[1:] - x[:-1] ** 2.0) ** 2.0 + (1 - x[:-1]) ** 2.0)
    xm, xm_m1, xm_p1 = x[1:-1], x[:-2], x[2:]
    der = np.zeros_like(x)
    der[1:-1] = (200 * (xm - xm_m1 ** 2) - 400 * (xm_p1 - xm ** 2) * xm - 2 * (1 - xm))
    der[0] = -400 * x[0] * (x[1] - x[0] ** 2) - 2 * (1 - x[0])
    der[-1] = 200 * (x[-1] - x[-2] ** 2)
    return value, der


# --------------------------------------------------------------------------- attention, transformer

HEADS = 4                                       # H = 4 in attention.grad and transformer.grad


def _attention_data(d, rng):
    B, T, C = d["B"], d["T"], d["C"]
    return {"x": rng.standard_normal((B, T, C)), "target": rng.standard_normal((B, T, C)),
            "Wqkv": rng.standard_normal((C, 3 * C)) / np.sqrt(C),
            "Wo": rng.standard_normal((C, C)) / np.sqrt(C)}


def _heads(a, B, T, C):
    return a.reshape(B, T, HEADS, C // HEADS).transpose(0, 2, 1, 3)


def _unheads(a, B, T, C):
    return a.transpose(0, 2, 1, 3).reshape(B, T, C)


def _attn_forward(h, Wqkv):
    B, T, C = h.shape
    qkv = h @ Wqkv
    q, k, v = (_heads(a, B, T, C) for a in np.split(qkv, 3, axis=2))
    S = q @ k.transpose(0, 1, 3, 2) / np.sqrt(C // HEADS)
    S = np.where(np.tril(np.ones((T, T))) == 0, -np.inf, S)
    A = _softmax(S)
    return _unheads(A @ v, B, T, C), (q, k, v, A)


def _attn_backward(h, Wqkv, saved, dy):
    """(dh, dWqkv) of _attn_forward's output y, given dy."""
    B, T, C = h.shape
    q, k, v, A = saved
    dO = _heads(dy, B, T, C)
    dA = dO @ v.transpose(0, 1, 3, 2)
    dv = A.transpose(0, 1, 3, 2) @ dO
    dS = A * (dA - (dA * A).sum(axis=-1, keepdims=True)) / np.sqrt(C // HEADS)
    dq = dS @ k
    dk = dS.transpose(0, 1, 3, 2) @ q
    dqkv = np.concatenate([_unheads(a, B, T, C) for a in (dq, dk, dv)], axis=2)
    return dqkv @ Wqkv.T, h.reshape(-1, C).T @ dqkv.reshape(-1, 3 * C)


def attention_ref(x, target, Wqkv, Wo):
    C = x.shape[2]
    y, saved = _attn_forward(x, Wqkv)
    out = y @ Wo
    value = np.mean((out - target) ** 2)
    dout = 2 * (out - target) / out.size
    dWo = y.reshape(-1, C).T @ dout.reshape(-1, C)
    _, dWqkv = _attn_backward(x, Wqkv, saved, dout @ Wo.T)
    return value, (dWqkv, dWo)


def _transformer_data(d, rng):
    C = d["C"]
    out = _attention_data(d, rng)
    out.update(g1=1 + 0.1 * rng.standard_normal(C), b1=0.1 * rng.standard_normal(C),
               g2=1 + 0.1 * rng.standard_normal(C), b2=0.1 * rng.standard_normal(C),
               W1=rng.standard_normal((C, 4 * C)) / np.sqrt(C),
               c1=0.1 * rng.standard_normal(4 * C),
               W2=rng.standard_normal((4 * C, C)) / np.sqrt(4 * C),
               c2=0.1 * rng.standard_normal(C))
    return out


def _ln_forward(x, g, b):
    mu = x.mean(axis=-1, keepdims=True)
    rstd = 1 / np.sqrt(x.var(axis=-1, keepdims=True) + 1e-5)
    xhat = (x - mu) * rstd
    return xhat * g + b, (xhat, rstd)


def _ln_backward(dout, g, saved):
    xhat, rstd = saved
    dg = (dout * xhat).reshape(-1, xhat.shape[-1]).sum(axis=0)
    db = dout.reshape(-1, xhat.shape[-1]).sum(axis=0)
    dxhat = dout * g
    dx = rstd * (dxhat - dxhat.mean(axis=-1, keepdims=True)
                 - xhat * (dxhat * xhat).mean(axis=-1, keepdims=True))
    return dx, dg, db


GELU_C = 0.7978845608028654


def transformer_ref(x, target, g1, b1, Wqkv, Wo, g2, b2, W1, c1, W2, c2):
    """Forward and hand-written backward of the pre-norm block (as in Karpathy's llm.c)."""
    C = x.shape[2]
    h1, ln1 = _ln_forward(x, g1, b1)
    y, att = _attn_forward(h1, Wqkv)
    x1 = x + y @ Wo
    h2, ln2 = _ln_forward(x1, g2, b2)
    a = h2 @ W1 + c1
    t = np.tanh(GELU_C * (a + 0.044715 * a ** 3))
    m = 0.5 * a * (1 + t)
    out = x1 + m @ W2 + c2
    value = np.mean((out - target) ** 2)
    dout = 2 * (out - target) / out.size
    d2 = dout.reshape(-1, C)
    dW2 = m.reshape(-1, 4 * C).T @ d2
    dc2 = d2.sum(axis=0)
    dm = dout @ W2.T
    da = dm * (0.5 * (1 + t) + 0.5 * a * (1 - t ** 2) * GELU_C * (1 + 3 * 0.044715 * a ** 2))
    dW1 = h2.reshape(-1, C).T @ da.reshape(-1, 4 * C)
    dc1 = da.reshape(-1, 4 * C).sum(axis=0)
    dx1, dg2, db2 = _ln_backward(da @ W1.T, g2, ln2)
    dx1 = dx1 + dout
    dWo = y.reshape(-1, C).T @ dx1.reshape(-1, C)
    dh1, dWqkv = _attn_backward(h1, Wqkv, att, dx1 @ Wo.T)
    _, dg1, db1 = _ln_backward(dh1, g1, ln1)
    return value, (dg1, db1, dWqkv, dWo, dg2, db2, dW1, dc1, dW2, dc2)


# --------------------------------------------------------------------------- MDN


def _mdn_data(d, rng):
    N, D, H, K = d["N"], d["D"], d["H"], d["K"]
    y = rng.uniform(-10.5, 10.5, N)                      # Bishop's inverse problem:
    x = (7 * np.sin(0.75 * y) + 0.5 * y + rng.standard_normal(N))[:, None]  # x = f(y)
    x = np.repeat(x, D, axis=1) / 10
    def w(*shape):
        return rng.standard_normal(shape) / np.sqrt(shape[0])
    return {"x": x, "y": y, "W1": w(D, H), "b1": 0.1 * rng.standard_normal(H),
            "Wpi": w(H, K), "bpi": np.zeros(K), "Wmu": w(H, K),
            "bmu": rng.uniform(-10, 10, K), "Ws": w(H, K), "bs": np.ones(K)}


def mdn_ref(x, y, W1, b1, Wpi, bpi, Wmu, bmu, Ws, bs):
    N = x.shape[0]
    h = np.tanh(x @ W1 + b1)
    a = h @ Wpi + bpi
    log_pi = _lsm(a, axis=1)
    mu = h @ Wmu + bmu
    log_s = h @ Ws + bs
    z = (y[:, None] - mu) / np.exp(log_s)
    L = log_pi - 0.5 * z ** 2 - log_s - 0.5 * LOG2PI
    lse = _lse(L, axis=1)
    G = -np.exp(L - lse[:, None]) / N                       # d value / d L
    da = G - np.exp(log_pi) * G.sum(axis=1, keepdims=True)
    dmu = G * z / np.exp(log_s)
    dls = G * (z ** 2 - 1)
    dh = (da @ Wpi.T + dmu @ Wmu.T + dls @ Ws.T) * (1 - h ** 2)
    return -lse.mean(), (x.T @ dh, dh.sum(axis=0), h.T @ da, da.sum(axis=0),
                         h.T @ dmu, dmu.sum(axis=0), h.T @ dls, dls.sum(axis=0))


# --------------------------------------------------------------------------- logistic Hessian


def _logistic_data(d, rng):
    X, y, w, lam = hw.logistic_data(d["N"], d["D"], seed=int(rng.integers(0, 2 ** 31)))
    return {"X": X, "y": y, "w": w, "lam": lam}


# --------------------------------------------------------------------------- word2vec


def _w2v_data(d, rng):
    V, D, B, K = d["V"], d["D"], d["B"], d["K"]
    return {"E": 0.1 * rng.standard_normal((V, D)), "U": 0.1 * rng.standard_normal((V, D)),
            "center": rng.integers(0, V, B), "ctx": rng.integers(0, V, B),
            "noise": rng.integers(0, V, (B, K))}


def _log_sigmoid(x):
    return -np.logaddexp(0, -x)


def w2v_ref(E, U, center, ctx, noise):
    B = center.shape[0]
    h, Uc, Un = E[center], U[ctx], U[noise]
    sp = (h * Uc).sum(axis=1)
    sn = (Un * h[:, None, :]).sum(axis=2)
    value = -np.mean(_log_sigmoid(sp) + _log_sigmoid(-sn).sum(axis=1))
    dsp = -np.exp(_log_sigmoid(-sp)) / B                  # -(1 - sigmoid(sp)) / B
    dsn = np.exp(_log_sigmoid(sn)) / B                    # sigmoid(sn) / B
    dh = dsp[:, None] * Uc + (dsn[:, :, None] * Un).sum(axis=1)
    dE, dU = np.zeros_like(E), np.zeros_like(U)
    np.add.at(dE, center, dh)
    np.add.at(dU, ctx, dsp[:, None] * h)
    np.add.at(dU, noise, dsn[:, :, None] * h[:, None, :])
    return value, (dE, dU)


# --------------------------------------------------------------------------- RNN (loop)


def _rnn_data(d, rng):
    T, N, D, H, C = d["T"], d["N"], d["D"], d["H"], d["C"]
    chars = rng.integers(0, D, (T + 1, N))
    return {"X": np.eye(D)[chars[:-1]], "Y": chars[1:] % C,
            "Wx": 0.1 * rng.standard_normal((D, H)), "Wh": 0.1 * rng.standard_normal((H, H)),
            "Wy": 0.1 * rng.standard_normal((H, C)), "h0": np.zeros((N, H))}


def rnn_ref(X, Y, Wx, Wh, Wy, h0):
    """Backpropagation through time, as min-char-rnn.py writes it (batched)."""
    T, N, _ = X.shape
    hs, probs, loss = [h0], [], 0.0
    for t in range(T):
        hs.append(np.tanh(X[t] @ Wx + hs[-1] @ Wh))
        lp = _lsm(hs[-1] @ Wy, axis=1)
        loss -= lp[np.arange(N), Y[t]].mean()
        probs.append(np.exp(lp))
    dWx, dWh, dWy = np.zeros_like(Wx), np.zeros_like(Wh), np.zeros_like(Wy)
    dh_next = np.zeros_like(h0)
    for t in reversed(range(T)):
        dy = probs[t]
        dy[np.arange(N), Y[t]] -= 1
        dy /= N * T
        dWy += hs[t + 1].T @ dy
        da = (dy @ Wy.T + dh_next) * (1 - hs[t + 1] ** 2)
        dWx += X[t].T @ da
        dWh += hs[t].T @ da
        dh_next = da @ Wh.T
    return loss / T, (dWx, dWh, dWy)


def rnn_ref_hoisted(X, Y, Wx, Wh, Wy, h0):
    """The same loss and gradient with only the recurrence left in the loops: the input
    projection X[t] @ Wx, the output layer and the loss are computed for all steps at once
    before and after the forward loop, and dWx, dWh, dWy are one matrix product each after
    the backward loop. What a compiler could do to a scan whose body has work off the
    carried chain (benchmarks/findings-models.md, "Loops"); not timed by run.py."""
    T, N, D = X.shape
    H = Wh.shape[0]
    XW = (X.reshape(T * N, D) @ Wx).reshape(T, N, H)
    hs = np.empty((T + 1, N, H))
    hs[0] = h0
    for t in range(T):
        np.tanh(XW[t] + hs[t] @ Wh, out=hs[t + 1])
    lp = _lsm(hs[1:].reshape(T * N, H) @ Wy, axis=1)
    rows, cols = np.arange(T * N), Y.reshape(-1)
    value = -lp[rows, cols].sum() / (N * T)
    dlogits = np.exp(lp)
    dlogits[rows, cols] -= 1
    dlogits /= N * T
    dWy = hs[1:].reshape(-1, H).T @ dlogits
    dA = (dlogits @ Wy.T).reshape(T, N, H)            # dh from the outputs, then da in place
    dA *= 1 - hs[1:] ** 2
    for t in range(T - 1, 0, -1):                     # da_{t-1} += (da_t @ Wh.T) * tanh'
        dA[t - 1] += (dA[t] @ Wh.T) * (1 - hs[t] ** 2)
    dA2 = dA.reshape(-1, H)
    return value, (X.reshape(-1, D).T @ dA2, hs[:-1].reshape(-1, H).T @ dA2, dWy)


def rnn_ref_lowmem(X, Y, Wx, Wh, Wy, h0):
    """The emitted `rnn_loss_value_and_grad`'s computation in a layout of hand-written
    BPTT's peak memory (findings-models.md, "rnn T=50 peak memory"): X @ Wx written into
    the rows h_steps fills, the value's entries gathered before exp (then exp in place),
    the one-hot added into the softmax's buffer, dhs and dWh per step in the backward loop
    and the row gradients written into the rows of h_steps it no longer reads. The design
    target for the compiler; not timed by run.py."""
    T, N, D = X.shape
    H, C = Wx.shape[1], Wy.shape[1]
    h_steps = np.empty((T + 1, N, H), dtype=np.result_type(X, Wx, Wh, h0))
    h_steps[0] = h0
    np.matmul(X, Wx, out=h_steps[1:])                 # XWx[t] in the row step t fills
    h = h0
    for t in range(T):
        h = h @ Wh
        h += h_steps[t + 1]
        np.tanh(h, out=h)
        h_steps[t + 1] = h
    hs = h_steps[1:]
    z = hs @ Wy
    z -= z.max(axis=2, keepdims=True)
    steps, rows = np.arange(T)[:, None], np.arange(N)
    picked = z[steps, rows, Y]                         # before exp: z dies there
    p = np.exp(z, out=z)
    s = np.einsum("ijk->ij", p)[:, :, None]
    value = -(picked - np.log(s[:, :, 0])).mean(axis=1).sum() / T
    dz = np.multiply(p, 1 / (N * T * s), out=p)        # softmax / (N T), then minus one-hot
    np.add.at(dz, (steps, rows, Y), -1 / (N * T))
    dWy = hs.reshape(-1, H).T @ dz.reshape(-1, C)
    dWh, dh, WyT = np.zeros_like(Wh), np.zeros_like(h0), Wy.T
    for t in reversed(range(T)):
        da = dz[t] @ WyT
        da += dh
        da *= 1 - h_steps[t + 1] ** 2
        dWh += h_steps[t].T @ da                       # row t of h_steps still the state
        h_steps[t + 1] = da                            # row t + 1 read for the last time
        dh = da @ Wh.T
    return value, (X.reshape(-1, D).T @ h_steps[1:].reshape(-1, H), dWh, dWy)


# --------------------------------------------------------------------------- HMM (loop)


def _hmm_data(d, rng):
    K, M, N, T = d["K"], d["M"], d["N"], d["T"]
    return {"pi_logits": 0.5 * rng.standard_normal(K), "A_logits": rng.standard_normal((K, K)),
            "B_logits": rng.standard_normal((K, M)), "obs": rng.integers(0, M, (N, T))}


def hmm_ref(pi_logits, A_logits, B_logits, obs):
    """The forward algorithm in log space and its reverse pass written out by hand."""
    N, T = obs.shape
    log_pi, log_A, log_B = _lsm(pi_logits), _lsm(A_logits, axis=1), _lsm(B_logits, axis=1)
    alphas = [log_pi + log_B[:, obs[:, 0]].T]
    for t in range(1, T):
        alphas.append(_lse(alphas[-1][:, :, None] + log_A, axis=1) + log_B[:, obs[:, t]].T)
    lse = _lse(alphas[-1], axis=1)
    dalpha = -np.exp(alphas[-1] - lse[:, None]) / N
    dA, dBt = np.zeros_like(log_A), np.zeros_like(log_B.T)    # dBt: (M, K)
    for t in range(T - 1, 0, -1):
        np.add.at(dBt, obs[:, t], dalpha)
        S = alphas[t - 1][:, :, None] + log_A                    # (N, K, K)
        dS = dalpha[:, None, :] * np.exp(S - _lse(S, axis=1)[:, None, :])
        dA += dS.sum(axis=0)
        dalpha = dS.sum(axis=2)
    np.add.at(dBt, obs[:, 0], dalpha)
    dB, dpi = dBt.T, dalpha.sum(axis=0)

    def through_lsm(g, logp, axis):
        return g - np.exp(logp) * g.sum(axis=axis, keepdims=True)

    return -lse.mean(), (through_lsm(dpi, log_pi, 0), through_lsm(dA, log_A, 1),
                         through_lsm(dB, log_B, 1))


# --------------------------------------------------------------------------- the suite


MODELS: dict[str, Model] = {m.name: m for m in [
    Model("softmax", "softmax regression (cs231n, CIFAR-10 size)", "examples/softmax/softmax.grad",
          "cost", ("X", "y", "W", "lam"), ("W",),
          {"N=1000 D=3073 C=10": {"N": 1000, "D": 3073, "C": 10}}, {"N": 20, "D": 6, "C": 4},
          _softmax_data, softmax_ref),
    Model("mlp", "two-layer MLP, logistic hidden units", "examples/mlp/mlp.grad",
          "cost", ("X", "Y", "V", "W"), ("V", "W"),
          {"N=150 D=3 M=16 C=3": {"N": 150, "D": 3, "M": 16, "C": 3},
           "N=1000 D=100 M=256 C=10": {"N": 1000, "D": 100, "M": 256, "C": 10},
           "N=10000 D=784 M=512 C=10": {"N": 10000, "D": 784, "M": 512, "C": 10}},
          {"N": 9, "D": 3, "M": 5, "C": 4}, _mlp_data, hw.mlp_plain),
    Model("poisson", "Poisson GLM (log link)", "benchmarks/models/poisson.grad",
          "poisson_nll", ("w", "X", "y"), ("w",),
          {"N=100000 D=20": {"N": 100000, "D": 20}}, {"N": 30, "D": 4}, _poisson_data, poisson_ref),
    Model("elasticnet", "elastic net (scikit-learn's objective)",
          "benchmarks/models/elasticnet.grad", "enet", ("w", "X", "y", "alpha", "l1_ratio"),
          ("w",), {"N=20000 D=200": {"N": 20000, "D": 200}}, {"N": 30, "D": 5}, _enet_data,
          enet_ref),
    Model("gp", "Gaussian-process marginal likelihood (RBF)", "benchmarks/models/gp.grad",
          "gp_nll", ("log_ell", "log_sf", "log_sn", "X", "y"), ("log_ell", "log_sf", "log_sn"),
          {"N=500 D=3": {"N": 500, "D": 3}}, {"N": 12, "D": 2}, _gp_data, gp_ref),
    Model("gmm", "Gaussian mixture log-likelihood (diagonal)", "benchmarks/models/gmm.grad",
          "gmm_nll", ("logits", "mu", "log_sigma", "X"), ("logits", "mu", "log_sigma"),
          {"N=10000 K=16 D=8": {"N": 10000, "K": 16, "D": 8}}, {"N": 20, "K": 3, "D": 2}, _gmm_data,
          gmm_ref),
    Model("tsne", "t-SNE KL cost", "benchmarks/models/tsne.grad", "tsne_kl", ("Y", "P"), ("Y",),
          {"N=1000 E=2": {"N": 1000, "E": 2}}, {"N": 10, "E": 2}, _tsne_data, tsne_ref),
    Model("mf", "matrix factorisation (MovieLens-100k shape)", "benchmarks/models/mf.grad",
          "mf_loss", ("P", "Q", "R", "M", "lam"), ("P", "Q"),
          {"U=943 I=1682 K=20": {"U": 943, "I": 1682, "K": 20}}, {"U": 7, "I": 9, "K": 3, "density_pct": 50},
          _mf_data, mf_ref),
    Model("rosen", "scipy.optimize.rosen", "benchmarks/models/rosen.grad", "rosen", ("x",),
          ("x",), {"N=100000": {"N": 100000}}, {"N": 11}, _rosen_data, rosen_ref),
    Model("attention", "causal multi-head self-attention (H=4)",
          "benchmarks/models/attention.grad", "attention_loss", ("x", "target", "Wqkv", "Wo"),
          ("Wqkv", "Wo"), {"B=16 T=128 C=128": {"B": 16, "T": 128, "C": 128}},
          {"B": 2, "T": 5, "C": 8}, _attention_data, attention_ref),
    Model("transformer", "pre-norm transformer block (H=4, GELU MLP)",
          "benchmarks/models/transformer.grad", "block_loss",
          ("x", "target", "g1", "b1", "Wqkv", "Wo", "g2", "b2", "W1", "c1", "W2", "c2"),
          ("g1", "b1", "Wqkv", "Wo", "g2", "b2", "W1", "c1", "W2", "c2"),
          {"B=8 T=128 C=128": {"B": 8, "T": 128, "C": 128}}, {"B": 2, "T": 5, "C": 8},
          _transformer_data, transformer_ref),
    Model("mdn", "mixture-density network (Bishop)", "benchmarks/models/mdn.grad", "mdn_nll",
          ("x", "y", "W1", "b1", "Wpi", "bpi", "Wmu", "bmu", "Ws", "bs"),
          ("W1", "b1", "Wpi", "bpi", "Wmu", "bmu", "Ws", "bs"),
          {"N=10000 H=32 K=16": {"N": 10000, "D": 1, "H": 32, "K": 16}}, {"N": 15, "D": 1, "H": 4, "K": 3},
          _mdn_data, mdn_ref),
    Model("logistic_hessian", "logistic-regression full Hessian (vs the closed form)",
          "examples/logistic/logistic.grad", "loss", ("X", "y", "w", "lam"), ("w",),
          {"N=1000 D=10": {"N": 1000, "D": 10}, "N=1000 D=100": {"N": 1000, "D": 100},
           "N=5000 D=500": {"N": 5000, "D": 500}}, {"N": 40, "D": 6}, _logistic_data,
          hw.logistic_hessian, kind="hessian"),
    Model("word2vec", "word2vec skip-gram, negative sampling (indexing)",
          "examples/word2vec/word2vec.grad", "loss", ("E", "U", "center", "ctx", "noise"),
          ("E", "U"), {"V=10000 D=100 B=1024 K=5": {"V": 10000, "D": 100, "B": 1024, "K": 5}},
          {"V": 11, "D": 4, "B": 6, "K": 3}, _w2v_data, w2v_ref),
    Model("rnn", "vanilla-RNN language model (loop)", "benchmarks/models/rnn.grad", "rnn_loss",
          ("X", "Y", "Wx", "Wh", "Wy", "h0"), ("Wx", "Wh", "Wy"),
          {"T=25 N=1 H=100 (min-char-rnn)": {"T": 25, "N": 1, "D": 65, "H": 100, "C": 65},
           "T=50 N=32 H=128": {"T": 50, "N": 32, "D": 65, "H": 128, "C": 65}},
          {"T": 4, "N": 3, "D": 5, "H": 4, "C": 5}, _rnn_data, rnn_ref, loops=True,
          hints=("N",)),   # (per-step gradient products only at N >= 16: reuse_state_rows)
    Model("hmm", "HMM forward-algorithm log-likelihood (loop)", "benchmarks/models/hmm.grad",
          "hmm_nll", ("pi_logits", "A_logits", "B_logits", "obs"),
          ("pi_logits", "A_logits", "B_logits"),
          {"K=16 M=32 N=64 T=100": {"K": 16, "M": 32, "N": 64, "T": 100}}, {"K": 3, "M": 4, "N": 5, "T": 6},
          _hmm_data, hmm_ref, loops=True),
]}
