"""Hand-written NumPy reference implementations for the benchmarks.

Only NumPy is imported here, so the test suite can load this file on its own
(tests/test_benchmarks_smoke.py) to check the references against gradgen's emitted code.

MLP (examples/mlp/mlp.grad): a two-layer perceptron with logistic hidden units and a softmax
cross-entropy loss, averaged over the N rows,

    Z = sigmoid(X @ V),  U = Z @ W,  cost = mean(logsumexp(U, axis=1) - sum(U * Y, axis=1)).

Every MLP function returns ``(value, (dV, dW))``, the layout of gradgen's
``cost_value_and_grad``.

Logistic regression (examples/logistic/logistic.grad):

    loss = mean(softplus(-y * (X @ w))) + lam / 2 * sum(w ** 2),   y in {-1, +1}.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "logistic_data",
    "logistic_hessian",
    "logistic_loss",
    "mlp_data",
    "mlp_plain",
    "mlp_tuned",
]


# --------------------------------------------------------------------------- data


def mlp_data(N: int, D: int, M: int, C: int, seed: int = 0):
    """Random float64 inputs (X, Y, V, W) for the MLP: Gaussian X, one-hot Y, scaled weights."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, D))
    Y = np.eye(C)[rng.integers(0, C, size=N)]
    V = rng.standard_normal((D, M)) / np.sqrt(D)
    W = rng.standard_normal((M, C)) / np.sqrt(M)
    return X, Y, V, W


def logistic_data(N: int, D: int, seed: int = 0):
    """Random float64 inputs (X, y, w, lam) for logistic regression; labels are -1 or +1."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, D))
    y = np.where(rng.random(N) < 0.5, -1.0, 1.0)
    w = rng.standard_normal(D) / np.sqrt(D)
    lam = 0.1
    return X, y, w, lam


# --------------------------------------------------------------------------- MLP


def mlp_plain(X, Y, V, W):
    """The textbook backprop, as most people would write it (the 1.00 of every ratio)."""
    N = X.shape[0]
    Z = 1 / (1 + np.exp(-(X @ V)))
    U = Z @ W
    U_max = U.max(axis=1, keepdims=True)
    E = np.exp(U - U_max)
    S = E.sum(axis=1, keepdims=True)
    Yh = E / S
    value = np.mean(np.log(S[:, 0]) + U_max[:, 0] - np.sum(U * Y, axis=1))
    dY = Yh - Y
    dW = Z.T @ dY / N
    dZ = dY @ W.T
    dV = X.T @ (dZ * Z * (1 - Z)) / N
    return value, (dV, dW)


def mlp_tuned(X, Y, V, W):
    """The same maths tuned by hand: the target the emitted code should reach.

    - one transcendental call per element for the sigmoid (``exp``; never ``tanh``, which is
      about 3x slower in NumPy) and one ``exp`` for the softmax, whose output also gives the
      log-sum-exp;
    - the sigmoid derivative from the sigmoid's output, ``Z * (1 - Z)``;
    - every elementwise step written into a buffer that already exists (``out=``, augmented
      assignment on arrays nobody else holds), so the only (N, M) allocations are the
      outputs of the two (N, M) matrix products;
    - the 1/N folded into the small (N, C) array instead of the (D, M) and (M, C) results;
    - ``sum(U * Y)`` as one dot product (no (N, C) temporary).

    Inputs are never written to. ``1 / (1 + exp(-q))`` is exact where ``exp`` overflows
    (it gives 0), so only a RuntimeWarning could appear, for |q| > 709.
    """
    N = X.shape[0]
    Z = X @ V                                   # Q, overwritten in place by sigmoid(Q)
    np.negative(Z, out=Z)
    np.exp(Z, out=Z)
    Z += 1
    np.reciprocal(Z, out=Z)                     # Z = sigmoid(X @ V)
    U = Z @ W                                   # (N, C)
    U_max = U.max(axis=1, keepdims=True)        # (N, 1)
    E = U - U_max
    np.exp(E, out=E)
    S = E.sum(axis=1, keepdims=True)            # (N, 1)
    value = (np.log(S).sum() + U_max.sum() - np.vdot(U, Y)) / N
    E /= S                                      # softmax(U)
    E -= Y
    E *= 1 / N                                  # dU = (softmax(U) - Y) / N
    dW = Z.T @ E
    dQ = E @ W.T                                # dZ, turned into dQ in place
    dQ *= Z
    np.subtract(1, Z, out=Z)                    # Z is dead after this: reuse it for 1 - Z
    dQ *= Z                                     # dQ = dZ * Z * (1 - Z)
    dV = X.T @ dQ
    return value, (dV, dW)


# --------------------------------------------------------------------------- logistic


def logistic_loss(X, y, w, lam):
    """The logistic-regression loss (for checks)."""
    z = y * (X @ w)
    return np.mean(np.logaddexp(0, -z)) + lam / 2 * np.dot(w, w)


def logistic_hessian(X, y, w, lam):
    """The closed-form Hessian ``X.T @ (s[:, None] * X) / N + lam * I``.

    s = sigmoid(z) * (1 - sigmoid(z)) with z = y * (X @ w); y ** 2 = 1 for labels in {-1, +1}.
    """
    N, D = X.shape
    z = y * (X @ w)
    sig = 1 / (1 + np.exp(-z))
    s = sig * (1 - sig)
    return X.T @ (s[:, None] * X) / N + lam * np.eye(D)
