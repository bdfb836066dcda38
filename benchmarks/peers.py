"""The contenders of the runtime cases, each built from plain arguments.

`mlp_contender(key, size, seed, gradgen_source)` and
`hessian_contender(key, size, seed, gradgen_source, gradgen_kind)` rebuild the inputs from
(size, seed) with handwritten.py's generators and return a `timing.Local`, so that run.py
can build each contender in a worker process of its own (`timing.Isolated`) or in its own
process. A contender whose library is not importable raises ImportError.

- `run()` is the call that is timed: inputs already in the contender's own array type,
  result ready (`block_until_ready` for JAX);
- `result()` is one call converted to NumPy, for the agreement check (MLP:
  `(value, (dV, dW))`; Hessian: the (D, D) matrix).

All peers compute in float64: JAX with `jax_enable_x64`, torch with float64 tensors.
Optional dependencies: `pip install -e '.[bench]'` (jax, autograd); torch is not in the
extra (see pyproject.toml).
"""

from __future__ import annotations

import functools
import importlib.util
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import handwritten as hw
from timing import Local

__all__ = ["HESSIAN_KEYS", "MLP_KEYS", "MODEL_KEYS", "hessian_contender", "load_source",
           "mlp_contender", "model_contender"]

MLP_KEYS = ["plain", "gradgen", "tuned", "jax", "torch", "autograd"]
HESSIAN_KEYS = ["closed", "gradgen", "jax"]
MODEL_KEYS = ["jax", "gradgen", "gradgen+ws", "torch", "numpy"]
OPTIONAL = {"jax", "torch", "autograd"}


def load_source(source: str, stem: str):
    """Import emitted module source from a temporary file (so tracebacks show its lines)."""
    target = Path(tempfile.mkdtemp(prefix="gradgen-bench-")) / f"{stem}.py"
    target.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location(f"bench_{stem}", target)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _jax():
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    return jax, jnp


# --------------------------------------------------------------------------- MLP


def mlp_contender(key: str, size: tuple, seed: int, gradgen_source: str | None = None) -> Local:
    X, Y, V, W = hw.mlp_data(*size, seed=seed)
    if key == "plain":
        return Local("plain hand-written NumPy", lambda: hw.mlp_plain(X, Y, V, W))
    if key == "tuned":
        return Local("hand-tuned NumPy (target)", lambda: hw.mlp_tuned(X, Y, V, W))
    if key == "gradgen":
        mod = load_source(gradgen_source, "mlp_grad")
        return Local("gradgen cost_value_and_grad", lambda: mod.cost_value_and_grad(X, Y, V, W))
    return {"jax": mlp_jax, "torch": mlp_torch, "autograd": mlp_autograd}[key](X, Y, V, W)


def mlp_jax(X, Y, V, W) -> Local:
    jax, jnp = _jax()
    from jax.scipy.special import logsumexp

    def cost(X, Y, V, W):
        Z = 1 / (1 + jnp.exp(-(X @ V)))
        U = Z @ W
        return -jnp.mean(jnp.sum(U * Y, axis=1) - logsumexp(U, axis=1))

    f = jax.jit(jax.value_and_grad(cost, argnums=(2, 3)))
    args = [jax.device_put(a) for a in (X, Y, V, W)]
    assert all(a.dtype == jnp.float64 for a in args)

    def run():
        return jax.block_until_ready(f(*args))

    def result():
        value, (dV, dW) = run()
        return float(value), (np.asarray(dV), np.asarray(dW))

    return Local(f"jax {jax.__version__} jit(value_and_grad), f64", run, result,
                 traced_memory=False)


def mlp_torch(X, Y, V, W) -> Local:
    import torch

    Xt, Yt = torch.from_numpy(X), torch.from_numpy(Y)
    Vt = torch.from_numpy(V.copy()).requires_grad_()
    Wt = torch.from_numpy(W.copy()).requires_grad_()

    def run():
        Z = 1 / (1 + torch.exp(-(Xt @ Vt)))
        U = Z @ Wt
        loss = -torch.mean(torch.sum(U * Yt, dim=1) - torch.logsumexp(U, dim=1))
        dV, dW = torch.autograd.grad(loss, (Vt, Wt))
        return loss, (dV, dW)

    def result():
        value, (dV, dW) = run()
        return float(value.detach()), (dV.numpy(), dW.numpy())

    return Local(f"torch {torch.__version__.split('+')[0]} autograd, f64", run, result,
                 traced_memory=False)


def mlp_autograd(X, Y, V, W) -> Local:
    import autograd.numpy as anp
    from autograd import value_and_grad
    from autograd.scipy.special import logsumexp

    def cost(V, W):
        Z = 1 / (1 + anp.exp(-anp.dot(X, V)))
        U = anp.dot(Z, W)
        return -anp.mean(anp.sum(U * Y, axis=1) - logsumexp(U, axis=1))

    f = value_and_grad(cost, argnum=(0, 1))

    def result():
        value, (dV, dW) = f(V, W)
        return float(value), (np.asarray(dV), np.asarray(dW))

    return Local("HIPS autograd", lambda: f(V, W), result)


# --------------------------------------------------------------------------- Hessian


def hessian_contender(key: str, size: tuple, seed: int, gradgen_source: str | None = None,
                      gradgen_kind: str = "hessian") -> Local:
    """`gradgen_kind`: "hessian" (the module has loss_hessian) or "hvp" (assemble it from D
    calls of loss_hvp with unit vectors)."""
    X, y, w, lam = hw.logistic_data(*size, seed=seed)
    if key == "closed":
        return Local("closed form (NumPy)", lambda: hw.logistic_hessian(X, y, w, lam))
    if key == "gradgen":
        mod = load_source(gradgen_source, "logistic_grad")
        if gradgen_kind == "hessian":
            return Local("gradgen loss_hessian", lambda: mod.loss_hessian(X, y, w, lam))

        def from_hvp():
            eye = np.eye(w.shape[0])
            return np.column_stack([mod.loss_hvp(X, y, w, lam, eye[:, j])
                                    for j in range(w.shape[0])])

        return Local("gradgen D x loss_hvp (fallback)", from_hvp)
    if key == "jax":
        return hessian_jax(X, y, w, lam)
    raise ValueError(key)


def hessian_jax(X, y, w, lam) -> Local:
    jax, jnp = _jax()

    def loss(w, X, y, lam):
        return jnp.mean(jnp.logaddexp(0.0, -(y * (X @ w)))) + lam / 2 * jnp.sum(w ** 2)

    f = jax.jit(jax.hessian(loss))
    args = [jax.device_put(a) for a in (w, X, y)] + [jnp.float64(lam)]

    def run():
        return jax.block_until_ready(f(*args))

    return Local(f"jax {jax.__version__} jit(hessian), f64", run, lambda: np.asarray(run()),
                 traced_memory=False)


# --------------------------------------------------------------------------- the model suite


def _as_result(value, grads) -> tuple[float, tuple]:
    """(value, grads) as (float, tuple of NumPy arrays), whatever the library."""
    grads = grads if isinstance(grads, (tuple, list)) else (grads,)
    return float(np.asarray(value)), tuple(np.asarray(g, dtype=np.float64) for g in grads)


def model_contender(key: str, name: str, dims: dict, seed: int,
                    gradgen_source: str | dict | None = None) -> Local:
    """One contender of one model of models.py at `dims`: "gradgen" (`f_value_and_grad`, or
    `f_hessian` for a Hessian model), "gradgen+ws" (the same compiled with `workspace=True`,
    called with one `Workspace` reused across calls, as a training loop would), "numpy"
    (the hand-written reference), "jax"
    (`jax.jit(jax.value_and_grad)`, or `jax.jit(jax.hessian)`) or "torch" (eager autograd;
    `torch.func.hessian` for a Hessian model). `result()` gives (value, grads) as floats and
    NumPy arrays, or the Hessian."""
    import models

    m = _find_model(name)
    args = models.inputs(m, dims, seed)
    idx = tuple(m.args.index(p) for p in m.params)
    hessian = m.kind == "hessian"
    if key == "numpy":
        if m.reference is None:
            raise ValueError(f"{name} has no hand-written reference")
        what = "closed form" if hessian else "hand-written"
        if hessian:
            return Local(f"NumPy {what}", lambda: m.reference(*args),
                         lambda: np.asarray(m.reference(*args)))
        return Local(f"NumPy {what}", lambda: m.reference(*args),
                     lambda: _as_result(*m.reference(*args)))
    if key in ("gradgen", "gradgen+ws"):
        source = gradgen_source[key] if isinstance(gradgen_source, dict) else gradgen_source
        mod = load_source(source, f"{name}_grad" + ("_ws" if key != "gradgen" else ""))
        fn = getattr(mod, f"{m.function}_{'hessian' if hessian else 'value_and_grad'}")
        if key == "gradgen+ws":
            fn = functools.partial(fn, workspace=mod.Workspace())
        return Local(key, lambda: fn(*args),
                     (lambda: np.asarray(fn(*args))) if hessian
                     else (lambda: _as_result(*fn(*args))))
    if key == "jax":
        return _model_jax(m, args, idx, hessian)
    if key == "torch":
        return _model_torch(m, args, idx, hessian)
    raise ValueError(key)


def _find_model(name: str):
    """A model of the suite (models.py) or of the held-out probe (probes.py), by name."""
    import models
    import probes

    return models.MODELS[name] if name in models.MODELS else probes.PROBES[name]


def _model_jax(m, args, idx, hessian) -> Local:
    jax, jnp = _jax()
    import peer_models
    import probes

    loss = (probes.jax_loss if m.name in probes.PROBES else peer_models.jax_loss)(m.name)
    f = jax.jit(jax.hessian(loss, argnums=idx[0]) if hessian
                else jax.value_and_grad(loss, argnums=idx))
    jargs = [jax.device_put(a) if isinstance(a, np.ndarray) else a for a in args]
    assert all(a.dtype in (jnp.float64, jnp.int64) for a in jargs if hasattr(a, "dtype"))

    def run():
        return jax.block_until_ready(f(*jargs))

    def result():
        return np.asarray(run()) if hessian else _as_result(*run())

    return Local(f"jax {jax.__version__}", run, result, traced_memory=False)


def _model_torch(m, args, idx, hessian) -> Local:
    import peer_models
    import torch

    loss = peer_models.torch_loss(m.name)
    targs = [torch.from_numpy(a.copy()) if isinstance(a, np.ndarray) else a for a in args]
    params = [targs[i].requires_grad_() for i in idx]
    if hessian:
        i = idx[0]

        def of_param(p):
            return loss(*targs[:i], p, *targs[i + 1:])

        fh = torch.func.hessian(of_param)
        p0 = targs[i].detach()

        def run():
            return fh(p0)

        return Local(f"torch {torch.__version__.split('+')[0]}", run,
                     lambda: run().numpy(), traced_memory=False)

    def run():
        value = loss(*targs)
        return value, torch.autograd.grad(value, params)

    def result():
        value, grads = run()
        return _as_result(value.detach().numpy(), tuple(g.numpy() for g in grads))

    return Local(f"torch {torch.__version__.split('+')[0]}", run, result, traced_memory=False)
