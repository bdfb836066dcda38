"""The probe of `run.py --case probe`: real models kept OUT of the tuned suite (issue 12's
held-out check, rehearsed).

Each probe is a `.grad` source in benchmarks/probe/ written as its authors write the model
(cs231n, CLIP's paper, LLaMA, PyTorch's VAE example, scikit-learn, statsmodels, pycox,
optimisation test functions), an input generator at a realistic size, and the same loss
written for JAX (`jax_loss`) as a JAX user would write it. There is no hand-written
gradient: before timing, gradgen's value and gradients are checked against JAX's
(`jax.grad` of an independent source), and only contenders that agree are timed.

The compiler is not tuned on these models: a fix found through one must be a general rule
or pass (with its own golden), never a change to the probe's source.
"""

from __future__ import annotations

import math

import numpy as np
from models import Model

__all__ = ["PROBES", "jax_loss"]


def _captioning_data(d, rng):
    N, T, D, W, H, V = d["N"], d["T"], d["D"], d["W"], d["H"], d["V"]
    lengths = rng.integers(T // 2, T + 1, N)                       # <NULL> after the end
    mask = (np.arange(T)[None, :] < lengths[:, None]).astype(float)
    captions = rng.integers(3, V, (N, T + 1))
    def w(*shape):
        return rng.standard_normal(shape) / math.sqrt(shape[0])
    return {"features": rng.standard_normal((N, D)), "captions_in": captions[:, :-1],
            "captions_out": captions[:, 1:], "mask": mask,
            "W_proj": w(D, H), "b_proj": np.zeros(H), "W_embed": rng.standard_normal((V, W)) / 100,
            "Wx": w(W, H), "Wh": w(H, H), "b": np.zeros(H), "W_vocab": w(H, V),
            "b_vocab": np.zeros(V)}


def _clip_data(d, rng):
    B, Di, Dt, E = d["B"], d["Di"], d["Dt"], d["E"]
    return {"I_f": rng.standard_normal((B, Di)), "T_f": rng.standard_normal((B, Dt)),
            "W_i": rng.standard_normal((Di, E)) / math.sqrt(Di),
            "W_t": rng.standard_normal((Dt, E)) / math.sqrt(Dt),
            "log_t": np.array(math.log(1 / 0.07))}          # CLIP's initial temperature


def _swiglu_data(d, rng):
    B, T, C, F = d["B"], d["T"], d["C"], d["F"]
    return {"x": rng.standard_normal((B, T, C)), "target": rng.standard_normal((B, T, C)),
            "g": 1 + 0.1 * rng.standard_normal(C), "W1": rng.standard_normal((C, F)) / math.sqrt(C),
            "W3": rng.standard_normal((C, F)) / math.sqrt(C),
            "W2": rng.standard_normal((F, C)) / math.sqrt(F)}


def _vae_data(d, rng):
    N, P, H, Z = d["N"], d["P"], d["H"], d["Z"]
    def w(*shape):
        return rng.uniform(-1, 1, shape) / math.sqrt(shape[0])     # nn.Linear's init
    return {"x": (rng.random((N, P)) < 0.13).astype(float), "eps": rng.standard_normal((N, Z)),
            "W1": w(P, H), "b1": w(P, H)[0], "W21": w(H, Z), "b21": w(H, Z)[0],
            "W22": w(H, Z), "b22": w(H, Z)[0], "W3": w(Z, H), "b3": w(Z, H)[0],
            "W4": w(H, P), "b4": w(H, P)[0]}


def _huber_data(d, rng):
    N, D = d["N"], d["D"]
    X = rng.standard_normal((N, D))
    y = X @ rng.standard_normal(D) + 0.5 * rng.standard_normal(N)
    outliers = rng.random(N) < 0.05
    y[outliers] += 20 * rng.standard_normal(int(outliers.sum()))
    return {"w": 0.1 * rng.standard_normal(D), "intercept": np.array(0.1),
            "sigma": np.array(1.2), "X": X, "y": y, "epsilon": 1.35, "alpha": 1e-4}


def _svc_data(d, rng):
    N, D = d["N"], d["D"]
    X = rng.standard_normal((N, D))
    y = np.sign(X @ rng.standard_normal(D) + 0.5 * rng.standard_normal(N))
    return {"w": 0.05 * rng.standard_normal(D), "b": np.array(0.05), "X": X, "y": y, "C": 1.0}


def _ordinal_data(d, rng):
    N, D, K = d["N"], d["D"], d["K"]
    X = rng.standard_normal((N, D))
    latent = X @ rng.standard_normal(D) / 2 + rng.logistic(size=N)
    cuts = np.quantile(latent, np.linspace(0, 1, K + 2)[1:-1])
    return {"beta": 0.1 * rng.standard_normal(D),
            "th_params": np.concatenate([[-1.0], np.full(K - 1, np.log(0.6))]),
            "X": X, "y": np.searchsorted(cuts, latent).astype(np.int64)}


def _coxmlp_data(d, rng):
    N, D, H = d["N"], d["D"], d["H"]
    return {"x": rng.standard_normal((N, D)), "events": (rng.random(N) < 0.7).astype(float),
            "W1": rng.standard_normal((D, H)) / math.sqrt(D), "b1": np.zeros(H),
            "W2": rng.standard_normal((H, 1)) / math.sqrt(H)}


def _studentt_data(d, rng):
    N, D = d["N"], d["D"]
    X = rng.standard_normal((N, D))
    return {"w": 0.1 * rng.standard_normal(D), "log_sigma": np.array(0.1),
            "log_nu": np.array(math.log(4.0)), "X": X,
            "y": X @ rng.standard_normal(D) + rng.standard_t(3, N)}


def _lngelu_data(d, rng):
    N, C, F, K = d["N"], d["C"], d["F"], d["K"]
    return {"x": rng.standard_normal((N, C)), "y": rng.integers(0, K, N),
            "g": 1 + 0.1 * rng.standard_normal(C), "b": 0.1 * rng.standard_normal(C),
            "W1": rng.standard_normal((C, F)) / math.sqrt(C), "c1": np.zeros(F),
            "W2": rng.standard_normal((F, K)) / math.sqrt(F), "c2": np.zeros(K)}


def _vector(lo, hi):
    return lambda d, rng: {"x": rng.uniform(lo, hi, d["N"])}


def _probe(name, title, function, args, params, sizes, small, make):
    return Model(name, title, f"benchmarks/probe/{name}.grad", function, args, params, sizes,
                 small, make, reference=None)


PROBES: dict[str, Model] = {m.name: m for m in [
    _probe("captioning", "cs231n image-captioning RNN loss (loop, masked)", "caption_loss",
           ("features", "captions_in", "captions_out", "mask", "W_proj", "b_proj", "W_embed",
            "Wx", "Wh", "b", "W_vocab", "b_vocab"),
           ("W_proj", "b_proj", "W_embed", "Wx", "Wh", "b", "W_vocab", "b_vocab"),
           {"N=50 T=16 H=512 V=1004": dict(N=50, T=16, D=512, W=256, H=512, V=1004)},
           dict(N=3, T=4, D=5, W=3, H=4, V=7), _captioning_data),
    _probe("clip", "CLIP symmetric InfoNCE loss", "clip_loss",
           ("I_f", "T_f", "W_i", "W_t", "log_t"), ("W_i", "W_t", "log_t"),
           {"B=256 E=512": dict(B=256, Di=768, Dt=512, E=512)}, dict(B=5, Di=4, Dt=3, E=2),
           _clip_data),
    _probe("swiglu", "RMSNorm + SwiGLU feed-forward (LLaMA)", "ffn_loss",
           ("x", "target", "g", "W1", "W3", "W2"), ("g", "W1", "W3", "W2"),
           {"B=8 T=128 C=256 F=688": dict(B=8, T=128, C=256, F=688)},
           dict(B=2, T=3, C=4, F=6), _swiglu_data),
    _probe("vae", "VAE negative ELBO (PyTorch example)", "vae_loss",
           ("x", "eps", "W1", "b1", "W21", "b21", "W22", "b22", "W3", "b3", "W4", "b4"),
           ("W1", "b1", "W21", "b21", "W22", "b22", "W3", "b3", "W4", "b4"),
           {"N=128 784-400-20": dict(N=128, P=784, H=400, Z=20)},
           dict(N=4, P=6, H=5, Z=2), _vae_data),
    _probe("huber", "scikit-learn HuberRegressor objective", "huber_loss",
           ("w", "intercept", "sigma", "X", "y", "epsilon", "alpha"), ("w", "intercept", "sigma"),
           {"N=50000 D=50": dict(N=50000, D=50)}, dict(N=30, D=3), _huber_data),
    _probe("svc", "LinearSVC squared hinge + L2 primal", "svc_objective",
           ("w", "b", "X", "y", "C"), ("w", "b"),
           {"N=50000 D=100": dict(N=50000, D=100)}, dict(N=30, D=3), _svc_data),
    _probe("ordinal", "statsmodels OrderedModel (logit)", "ordinal_nll",
           ("beta", "th_params", "X", "y"), ("beta", "th_params"),
           {"N=20000 D=10 levels=5": dict(N=20000, D=10, K=4)}, dict(N=40, D=3, K=3),
           _ordinal_data),
    _probe("coxmlp", "pycox CoxPH (DeepSurv) loss on an MLP", "coxph_loss",
           ("x", "events", "W1", "b1", "W2"), ("W1", "b1", "W2"),
           {"N=5000 D=20 H=64": dict(N=5000, D=20, H=64)}, dict(N=12, D=3, H=4), _coxmlp_data),
    _probe("studentt", "Student-t robust regression", "t_nll",
           ("w", "log_sigma", "log_nu", "X", "y"), ("w", "log_sigma", "log_nu"),
           {"N=100000 D=20": dict(N=100000, D=20)}, dict(N=30, D=3), _studentt_data),
    _probe("lngelu", "LayerNorm + exact-GELU MLP classifier head", "head_loss",
           ("x", "y", "g", "b", "W1", "c1", "W2", "c2"), ("g", "b", "W1", "c1", "W2", "c2"),
           {"N=512 C=384 F=1536 K=100": dict(N=512, C=384, F=1536, K=100)},
           dict(N=6, C=4, F=5, K=3), _lngelu_data),
    _probe("ackley", "Ackley function", "ackley", ("x",), ("x",),
           {"N=10^6": dict(N=10 ** 6)}, dict(N=7), _vector(-5, 5)),
    _probe("styblinski", "Styblinski-Tang function", "styblinski_tang", ("x",), ("x",),
           {"N=10^6": dict(N=10 ** 6)}, dict(N=7), _vector(-5, 5)),
    _probe("rastrigin", "Rastrigin function", "rastrigin", ("x",), ("x",),
           {"N=10^6": dict(N=10 ** 6)}, dict(N=7), _vector(-5.12, 5.12)),
]}


def jax_loss(name: str):
    """The probe `name` written for JAX, as a JAX user writes it (arguments in
    Model.args order)."""
    import jax
    import jax.numpy as jnp
    from jax.nn import log_softmax, relu, sigmoid
    from jax.scipy.special import erf, gammaln

    def caption_loss(features, captions_in, captions_out, mask, W_proj, b_proj, W_embed,
                     Wx, Wh, b, W_vocab, b_vocab):
        N, T = captions_in.shape
        h0 = features @ W_proj + b_proj
        x = W_embed[captions_in]

        def step(h, xt):
            h = jnp.tanh(xt @ Wx + h @ Wh + b)
            return h, h

        _, hs = jax.lax.scan(step, h0, jnp.swapaxes(x, 0, 1))
        scores = jnp.swapaxes(hs, 0, 1) @ W_vocab + b_vocab           # (N, T, V)
        V = scores.shape[2]
        lp = log_softmax(scores.reshape(N * T, V), axis=1)
        y, m = captions_out.reshape(N * T), mask.reshape(N * T)
        return -jnp.sum(m * lp[jnp.arange(N * T), y]) / N

    def clip_loss(I_f, T_f, W_i, W_t, log_t):
        I_e = I_f @ W_i
        T_e = T_f @ W_t
        I_e = I_e / jnp.linalg.norm(I_e, axis=1, keepdims=True)
        T_e = T_e / jnp.linalg.norm(T_e, axis=1, keepdims=True)
        logits = I_e @ T_e.T * jnp.exp(log_t)
        labels = jnp.arange(I_f.shape[0])
        loss_i = -jnp.mean(log_softmax(logits, axis=0)[labels, labels])
        loss_t = -jnp.mean(log_softmax(logits, axis=1)[labels, labels])
        return (loss_i + loss_t) / 2

    def ffn_loss(x, target, g, W1, W3, W2):
        h = x * jax.lax.rsqrt(jnp.mean(x ** 2, axis=-1, keepdims=True) + 1e-6) * g
        out = x + (jax.nn.silu(h @ W1) * (h @ W3)) @ W2
        return jnp.mean((out - target) ** 2)

    def vae_loss(x, eps, W1, b1, W21, b21, W22, b22, W3, b3, W4, b4):
        h1 = relu(x @ W1 + b1)
        mu, logvar = h1 @ W21 + b21, h1 @ W22 + b22
        z = mu + eps * jnp.exp(0.5 * logvar)
        recon = sigmoid(relu(z @ W3 + b3) @ W4 + b4)
        bce = -jnp.sum(x * jnp.log(recon) + (1 - x) * jnp.log(1 - recon))
        kld = -0.5 * jnp.sum(1 + logvar - mu ** 2 - jnp.exp(logvar))
        return bce + kld

    def huber_loss(w, intercept, sigma, X, y, epsilon, alpha):
        linear_loss = y - X @ w - intercept
        abs_linear_loss = jnp.abs(linear_loss)
        outlier = abs_linear_loss > epsilon * sigma
        squared_loss = jnp.where(outlier, 0.0, linear_loss ** 2 / sigma)
        outlier_loss = jnp.where(outlier, 2 * epsilon * abs_linear_loss
                                 - sigma * epsilon ** 2, 0.0)
        return (X.shape[0] * sigma + jnp.sum(squared_loss) + jnp.sum(outlier_loss)
                + alpha * w @ w)

    def svc_objective(w, b, X, y, C):
        margin = y * (X @ w + b)
        return 0.5 * w @ w + C * jnp.sum(jnp.maximum(0, 1 - margin) ** 2)

    def ordinal_nll(beta, th_params, X, y):
        th = jnp.cumsum(jnp.concatenate([th_params[:1], jnp.exp(th_params[1:])]))
        thresh = jnp.concatenate([jnp.array([-jnp.inf]), th, jnp.array([jnp.inf])])
        xb = X @ beta
        prob = sigmoid(thresh[y + 1] - xb) - sigmoid(thresh[y] - xb)
        return -jnp.sum(jnp.log(prob))

    def coxph_loss(x, events, W1, b1, W2):
        log_h = (relu(x @ W1 + b1) @ W2)[:, 0]
        gamma = jnp.max(log_h)
        log_cumsum_h = jnp.log(jnp.cumsum(jnp.exp(log_h - gamma)) + 1e-7) + gamma
        return -jnp.sum(events * (log_h - log_cumsum_h)) / jnp.sum(events)

    def t_nll(w, log_sigma, log_nu, X, y):
        nu, sigma = jnp.exp(log_nu), jnp.exp(log_sigma)
        r = (y - X @ w) / sigma
        lp = (gammaln((nu + 1) / 2) - gammaln(nu / 2) - 0.5 * jnp.log(nu * jnp.pi) - log_sigma
              - (nu + 1) / 2 * jnp.log1p(r ** 2 / nu))
        return -jnp.sum(lp)

    def head_loss(x, y, g, b, W1, c1, W2, c2):
        mu = jnp.mean(x, axis=-1, keepdims=True)
        h = (x - mu) / jnp.sqrt(jnp.var(x, axis=-1, keepdims=True) + 1e-5) * g + b
        a = h @ W1 + c1
        logits = 0.5 * a * (1 + erf(a / jnp.sqrt(2.0))) @ W2 + c2
        return -jnp.mean(log_softmax(logits, axis=1)[jnp.arange(x.shape[0]), y])

    def ackley(x):
        return (-20 * jnp.exp(-0.2 * jnp.sqrt(jnp.mean(x ** 2)))
                - jnp.exp(jnp.mean(jnp.cos(2 * jnp.pi * x))) + 20 + jnp.e)

    def styblinski_tang(x):
        return jnp.sum(x ** 4 - 16 * x ** 2 + 5 * x) / 2

    def rastrigin(x):
        return 10 * x.shape[0] + jnp.sum(x ** 2 - 10 * jnp.cos(2 * jnp.pi * x))

    return {"captioning": caption_loss, "clip": clip_loss, "swiglu": ffn_loss,
            "vae": vae_loss, "huber": huber_loss, "svc": svc_objective,
            "ordinal": ordinal_nll, "coxmlp": coxph_loss, "studentt": t_nll,
            "lngelu": head_loss, "ackley": ackley, "styblinski": styblinski_tang,
            "rastrigin": rastrigin}[name]
