"""The models of models.py written for JAX and for torch, as a user of each would write them.

`jax_loss(name)` and `torch_loss(name)` return a function of the model's arguments (in the
order of models.Model.args) that returns the scalar loss; peers.model_contender wraps it in
`jax.jit(jax.value_and_grad(...))` or torch autograd. The loop models use `lax.scan` in JAX
and a Python loop in torch (how torch users write an RNN by hand). Imported only in the
worker processes of the benchmark, never by the test suite.
"""

from __future__ import annotations

import math

HEADS = 4
GELU_C = 0.7978845608028654
LOG2PI = math.log(2 * math.pi)


# --------------------------------------------------------------------------- JAX


def jax_loss(name: str):
    import jax
    import jax.numpy as jnp
    from jax import lax
    from jax.nn import log_softmax, softmax
    from jax.scipy.linalg import cho_solve
    from jax.scipy.special import logsumexp

    def softmax_cost(X, y, W, lam):
        lp = log_softmax(X @ W, axis=1)
        return -jnp.mean(lp[jnp.arange(X.shape[0]), y]) + 0.5 * lam * jnp.sum(W ** 2)

    def mlp(X, Y, V, W):
        Z = 1 / (1 + jnp.exp(-(X @ V)))
        U = Z @ W
        return -jnp.mean(jnp.sum(U * Y, axis=1) - logsumexp(U, axis=1))

    def poisson(w, X, y):
        eta = X @ w
        return jnp.mean(jnp.exp(eta) - y * eta)

    def enet(w, X, y, alpha, l1_ratio):
        r = y - X @ w
        return (jnp.sum(r ** 2) / (2 * X.shape[0]) + alpha * l1_ratio * jnp.sum(jnp.abs(w))
                + 0.5 * alpha * (1 - l1_ratio) * jnp.sum(w ** 2))

    def gp(log_ell, log_sf, log_sn, X, y):
        N = X.shape[0]
        sq = jnp.sum(X ** 2, axis=1)
        d2 = sq[:, None] + sq[None, :] - 2 * X @ X.T
        K = (jnp.exp(2 * log_sf) * jnp.exp(-0.5 * d2 / jnp.exp(2 * log_ell))
             + jnp.exp(2 * log_sn) * jnp.eye(N))
        L = jnp.linalg.cholesky(K)
        alpha = cho_solve((L, True), y)
        return 0.5 * y @ alpha + jnp.sum(jnp.log(jnp.diag(L))) + 0.5 * N * LOG2PI

    def gmm(logits, mu, log_sigma, X):
        D = X.shape[1]
        z = (X[:, None, :] - mu[None]) / jnp.exp(log_sigma)[None]
        lp = (log_softmax(logits) - 0.5 * jnp.sum(z ** 2, axis=2) - jnp.sum(log_sigma, axis=1)
              - 0.5 * D * LOG2PI)
        return -jnp.mean(logsumexp(lp, axis=1))

    def tsne(Y, P):
        N = Y.shape[0]
        sum_Y = jnp.sum(Y ** 2, axis=1)
        num = 1 / (1 + sum_Y[:, None] + sum_Y[None, :] - 2 * Y @ Y.T)
        num = num * (1 - jnp.eye(N))
        Q = jnp.maximum(num / jnp.sum(num), 1e-12)
        return jnp.sum(P * jnp.log(P / Q))

    def mf(P, Q, R, M, lam):
        E = M * (R - P @ Q.T)
        return 0.5 * jnp.sum(E ** 2) + 0.5 * lam * (jnp.sum(P ** 2) + jnp.sum(Q ** 2))

    def rosen(x):
        return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2.0) ** 2.0 + (1 - x[:-1]) ** 2.0)

    def attn(h, Wqkv):
        B, T, C = h.shape
        q, k, v = jnp.split(h @ Wqkv, 3, axis=2)

        def heads(a):
            return a.reshape(B, T, HEADS, C // HEADS).transpose(0, 2, 1, 3)

        q, k, v = heads(q), heads(k), heads(v)
        att = q @ k.transpose(0, 1, 3, 2) / math.sqrt(C // HEADS)
        att = jnp.where(jnp.tril(jnp.ones((T, T))) == 0, -jnp.inf, att)
        return (softmax(att, axis=-1) @ v).transpose(0, 2, 1, 3).reshape(B, T, C)

    def attention(x, target, Wqkv, Wo):
        return jnp.mean((attn(x, Wqkv) @ Wo - target) ** 2)

    def layer_norm(x, g, b):
        mu = jnp.mean(x, axis=-1, keepdims=True)
        return (x - mu) / jnp.sqrt(jnp.var(x, axis=-1, keepdims=True) + 1e-5) * g + b

    def gelu(x):
        return 0.5 * x * (1 + jnp.tanh(GELU_C * (x + 0.044715 * x ** 3)))

    def transformer(x, target, g1, b1, Wqkv, Wo, g2, b2, W1, c1, W2, c2):
        x = x + attn(layer_norm(x, g1, b1), Wqkv) @ Wo
        x = x + gelu(layer_norm(x, g2, b2) @ W1 + c1) @ W2 + c2
        return jnp.mean((x - target) ** 2)

    def mdn(x, y, W1, b1, Wpi, bpi, Wmu, bmu, Ws, bs):
        h = jnp.tanh(x @ W1 + b1)
        log_pi = log_softmax(h @ Wpi + bpi, axis=1)
        mu = h @ Wmu + bmu
        log_s = h @ Ws + bs
        z = (y[:, None] - mu) / jnp.exp(log_s)
        return -jnp.mean(logsumexp(log_pi - 0.5 * z ** 2 - log_s - 0.5 * LOG2PI, axis=1))

    def logistic(X, y, w, lam):
        return jnp.mean(jnp.logaddexp(0.0, -y * (X @ w))) + lam / 2 * jnp.sum(w ** 2)

    def w2v(E, U, center, ctx, noise):
        h, Uc, Un = E[center], U[ctx], U[noise]
        sp = jnp.sum(h * Uc, axis=1)
        sn = jnp.sum(Un * h[:, None, :], axis=2)
        return -jnp.mean(jax.nn.log_sigmoid(sp) + jnp.sum(jax.nn.log_sigmoid(-sn), axis=1))

    def rnn(X, Y, Wx, Wh, Wy, h0):
        N = X.shape[1]

        def step(h, xy):
            x, y = xy
            h = jnp.tanh(x @ Wx + h @ Wh)
            return h, -jnp.mean(log_softmax(h @ Wy, axis=1)[jnp.arange(N), y])

        _, losses = lax.scan(step, h0, (X, Y))
        return jnp.mean(losses)

    def hmm(pi_logits, A_logits, B_logits, obs):
        log_A, log_B = log_softmax(A_logits, axis=1), log_softmax(B_logits, axis=1)

        def step(alpha, o):
            return logsumexp(alpha[:, :, None] + log_A[None], axis=1) + log_B[:, o].T, None

        alpha, _ = lax.scan(step, log_softmax(pi_logits) + log_B[:, obs[:, 0]].T, obs[:, 1:].T)
        return -jnp.mean(logsumexp(alpha, axis=1))

    return {"softmax": softmax_cost, "mlp": mlp, "poisson": poisson, "elasticnet": enet,
            "gp": gp, "gmm": gmm, "tsne": tsne, "mf": mf, "rosen": rosen,
            "attention": attention, "transformer": transformer, "mdn": mdn,
            "logistic_hessian": logistic, "word2vec": w2v, "rnn": rnn, "hmm": hmm}[name]


# --------------------------------------------------------------------------- torch


def torch_loss(name: str):
    import torch
    from torch.nn.functional import log_softmax, logsigmoid, softmax

    def softmax_cost(X, y, W, lam):
        lp = log_softmax(X @ W, dim=1)
        return -lp[torch.arange(X.shape[0]), y].mean() + 0.5 * lam * (W ** 2).sum()

    def mlp(X, Y, V, W):
        U = torch.sigmoid(X @ V) @ W
        return -torch.mean(torch.sum(U * Y, dim=1) - torch.logsumexp(U, dim=1))

    def poisson(w, X, y):
        eta = X @ w
        return torch.mean(torch.exp(eta) - y * eta)

    def enet(w, X, y, alpha, l1_ratio):
        r = y - X @ w
        return ((r ** 2).sum() / (2 * X.shape[0]) + alpha * l1_ratio * w.abs().sum()
                + 0.5 * alpha * (1 - l1_ratio) * (w ** 2).sum())

    def gp(log_ell, log_sf, log_sn, X, y):
        N = X.shape[0]
        sq = (X ** 2).sum(dim=1)
        d2 = sq[:, None] + sq[None, :] - 2 * X @ X.T
        K = (torch.exp(2 * log_sf) * torch.exp(-0.5 * d2 / torch.exp(2 * log_ell))
             + torch.exp(2 * log_sn) * torch.eye(N, dtype=X.dtype))
        L = torch.linalg.cholesky(K)
        alpha = torch.cholesky_solve(y[:, None], L)[:, 0]
        return 0.5 * y @ alpha + torch.log(torch.diagonal(L)).sum() + 0.5 * N * LOG2PI

    def gmm(logits, mu, log_sigma, X):
        D = X.shape[1]
        z = (X[:, None, :] - mu[None]) / torch.exp(log_sigma)[None]
        lp = (log_softmax(logits, dim=0) - 0.5 * (z ** 2).sum(dim=2) - log_sigma.sum(dim=1)
              - 0.5 * D * LOG2PI)
        return -torch.logsumexp(lp, dim=1).mean()

    def tsne(Y, P):
        N = Y.shape[0]
        sum_Y = (Y ** 2).sum(dim=1)
        num = 1 / (1 + sum_Y[:, None] + sum_Y[None, :] - 2 * Y @ Y.T)
        num = num * (1 - torch.eye(N, dtype=Y.dtype))
        Q = torch.clamp(num / num.sum(), min=1e-12)
        return (P * torch.log(P / Q)).sum()

    def mf(P, Q, R, M, lam):
        E = M * (R - P @ Q.T)
        return 0.5 * (E ** 2).sum() + 0.5 * lam * ((P ** 2).sum() + (Q ** 2).sum())

    def rosen(x):
        return torch.sum(100.0 * (x[1:] - x[:-1] ** 2.0) ** 2.0 + (1 - x[:-1]) ** 2.0)

    def attn(h, Wqkv):
        B, T, C = h.shape
        q, k, v = (h @ Wqkv).split(C, dim=2)

        def heads(a):
            return a.reshape(B, T, HEADS, C // HEADS).transpose(1, 2)

        q, k, v = heads(q), heads(k), heads(v)
        att = q @ k.transpose(-2, -1) / math.sqrt(C // HEADS)
        mask = torch.tril(torch.ones(T, T, dtype=h.dtype)) == 0
        att = softmax(att.masked_fill(mask, float("-inf")), dim=-1)
        return (att @ v).transpose(1, 2).reshape(B, T, C)

    def attention(x, target, Wqkv, Wo):
        return ((attn(x, Wqkv) @ Wo - target) ** 2).mean()

    def layer_norm(x, g, b):
        mu = x.mean(dim=-1, keepdim=True)
        return (x - mu) / torch.sqrt(x.var(dim=-1, keepdim=True, unbiased=False) + 1e-5) * g + b

    def gelu(x):
        return 0.5 * x * (1 + torch.tanh(GELU_C * (x + 0.044715 * x ** 3)))

    def transformer(x, target, g1, b1, Wqkv, Wo, g2, b2, W1, c1, W2, c2):
        x = x + attn(layer_norm(x, g1, b1), Wqkv) @ Wo
        x = x + gelu(layer_norm(x, g2, b2) @ W1 + c1) @ W2 + c2
        return ((x - target) ** 2).mean()

    def mdn(x, y, W1, b1, Wpi, bpi, Wmu, bmu, Ws, bs):
        h = torch.tanh(x @ W1 + b1)
        log_pi = log_softmax(h @ Wpi + bpi, dim=1)
        mu = h @ Wmu + bmu
        log_s = h @ Ws + bs
        z = (y[:, None] - mu) / torch.exp(log_s)
        return -torch.logsumexp(log_pi - 0.5 * z ** 2 - log_s - 0.5 * LOG2PI, dim=1).mean()

    def logistic(X, y, w, lam):
        return torch.nn.functional.softplus(-y * (X @ w)).mean() + lam / 2 * (w ** 2).sum()

    def w2v(E, U, center, ctx, noise):
        h, Uc, Un = E[center], U[ctx], U[noise]
        sp = (h * Uc).sum(dim=1)
        sn = (Un * h[:, None, :]).sum(dim=2)
        return -(logsigmoid(sp) + logsigmoid(-sn).sum(dim=1)).mean()

    def rnn(X, Y, Wx, Wh, Wy, h0):
        T, N = X.shape[0], X.shape[1]
        h, loss, rows = h0, 0.0, torch.arange(N)
        for t in range(T):
            h = torch.tanh(X[t] @ Wx + h @ Wh)
            loss = loss - log_softmax(h @ Wy, dim=1)[rows, Y[t]].mean()
        return loss / T

    def hmm(pi_logits, A_logits, B_logits, obs):
        log_A, log_B = log_softmax(A_logits, dim=1), log_softmax(B_logits, dim=1)
        alpha = log_softmax(pi_logits, dim=0) + log_B[:, obs[:, 0]].T
        for t in range(1, obs.shape[1]):
            alpha = torch.logsumexp(alpha[:, :, None] + log_A[None], dim=1) + log_B[:, obs[:, t]].T
        return -torch.logsumexp(alpha, dim=1).mean()

    return {"softmax": softmax_cost, "mlp": mlp, "poisson": poisson, "elasticnet": enet,
            "gp": gp, "gmm": gmm, "tsne": tsne, "mf": mf, "rosen": rosen,
            "attention": attention, "transformer": transformer, "mdn": mdn,
            "logistic_hessian": logistic, "word2vec": w2v, "rnn": rnn, "hmm": hmm}[name]
