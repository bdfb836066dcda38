"""Fit a discrete hidden Markov model (hmm.grad, the forward algorithm in log space) by
gradient ascent on its log-likelihood, to sequences sampled from a known HMM.

The parameters are unconstrained logits (softmax rows for the transitions, softmax
columns for the emissions), so plain Adam steps on `loglik_value_and_grad` stay valid
probabilities. The script prints the mean log-likelihood per sequence rising toward that
of the true model on the same data (a maximum-likelihood fit ends slightly above it).

By default this uses the generated module ``hmm_grad.py`` beside this script, so it
needs nothing but NumPy:

    python examples/hmm/train.py --steps 1000

Regenerate that module with ``gradgen compile examples/hmm/hmm.grad --force``,
or compile the source afresh in memory (needs gradgen installed) with ``--compile``.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

# The true model: three states that mostly stay put, each favouring one or two of 4 symbols.
TRANS = np.array([[0.90, 0.05, 0.05],
                  [0.10, 0.80, 0.10],
                  [0.05, 0.15, 0.80]])
START = np.array([0.5, 0.3, 0.2])
EMIT = np.array([[0.70, 0.10, 0.10],     # EMIT[m, k]: probability of symbol m in state k
                 [0.20, 0.70, 0.10],
                 [0.05, 0.10, 0.40],
                 [0.05, 0.10, 0.40]])


def sample(rng, T, N):
    """N sequences of T symbols from the true model, as an array (T, N) of symbol ids."""
    states = np.empty((T, N), dtype=int)
    states[0] = rng.choice(3, size=N, p=START)
    for t in range(1, T):
        u = rng.random(N)[:, None]
        states[t] = (u > np.cumsum(TRANS[states[t - 1]], axis=1)).sum(axis=1)
    u = rng.random((T, N))[..., None]
    return (u > np.cumsum(EMIT.T[states], axis=2)).sum(axis=2)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compile", action="store_true",
                        help="compile hmm.grad with gradgen instead of importing hmm_grad.py")
    parser.add_argument("--steps", type=int, default=300, help="Adam steps")
    parser.add_argument("--length", type=int, default=30, help="symbols per sequence (T)")
    parser.add_argument("--sequences", type=int, default=150, help="sequences (N)")
    parser.add_argument("--lr", type=float, default=0.05, help="Adam learning rate")
    parser.add_argument("--seed", type=int, default=0, help="seed of data and start")
    parser.add_argument("--every", type=int, default=50, help="print every N steps")
    args = parser.parse_args(argv)

    if args.compile:
        import gradgen

        mod = gradgen.load(HERE / "hmm.grad")
    else:
        sys.path.insert(0, str(HERE))
        import hmm_grad as mod

    rng = np.random.default_rng(args.seed)
    obs = sample(rng, args.length, args.sequences)
    # log-probabilities are logits of themselves: log_softmax(log p) = log p
    true = mod.loglik(np.log(TRANS), np.log(START), np.log(EMIT), obs)
    print(f"{args.sequences} sequences of {args.length} symbols; "
          f"true model's log-likelihood per sequence: {true:.4f}")

    params = [0.1 * rng.normal(size=(3, 3)), np.zeros(3), 0.1 * rng.normal(size=(4, 3))]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    for step in range(1, args.steps + 1):
        value, grads = mod.loglik_value_and_grad(*params, obs)
        if step == 1 or step % args.every == 0 or step == args.steps:
            print(f"step {step:5d}  log-likelihood {value:.4f}")
        for p, g, m_, v_ in zip(params, grads, m, v):   # Adam, ascending
            m_ += 0.1 * (g - m_)
            v_ += 0.001 * (g * g - v_)
            p += args.lr * (m_ / (1 - 0.9 ** step)) / (np.sqrt(v_ / (1 - 0.999 ** step)) + 1e-8)

    final = mod.loglik(*params, obs)
    print(f"fitted log-likelihood {final:.4f}, true model's {true:.4f}, "
          f"gap {final - true:+.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
