"""Train a character-level vanilla-RNN language model (charrnn.grad) on a few Shakespeare
sonnets, then sample a line from it.

The text, sonnets.txt, is eight of Shakespeare's sonnets (1, 2, 12, 18, 29, 73, 116 and
130; published 1609, in the public domain) in modern spelling, about 5 KB. Training is
Adagrad on minibatches of B random windows of T + 1 characters, as in Karpathy's
min-char-rnn, with `loss_value_and_grad` of the generated module; the sampling at the end
is plain NumPy with the trained weights.

By default this uses the generated module ``charrnn_grad.py`` beside this script, so it
needs nothing but NumPy:

    python examples/charrnn/train.py --steps 3000

Regenerate that module with ``gradgen compile examples/charrnn/charrnn.grad --force``,
or compile the source afresh in memory (needs gradgen installed) with ``--compile``.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def sample(params, start, n, chars, rng, temperature=0.8):
    """`n` characters drawn one at a time from the RNN after reading the string `start`."""
    Wxh, Whh, bh, Why, by = params
    index = {c: i for i, c in enumerate(chars)}
    h = np.zeros(Whh.shape[0])
    out = []
    for c in start:
        h = np.tanh(Wxh[index[c]] + h @ Whh + bh)
    for _ in range(n):
        z = (h @ Why + by) / temperature
        p = np.exp(z - z.max())
        i = rng.choice(len(chars), p=p / p.sum())
        out.append(chars[i])
        h = np.tanh(Wxh[i] + h @ Whh + bh)
    return start + "".join(out)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compile", action="store_true",
                        help="compile charrnn.grad with gradgen instead of importing "
                             "charrnn_grad.py")
    parser.add_argument("--steps", type=int, default=400, help="Adagrad steps")
    parser.add_argument("--batch", type=int, default=32, help="windows per minibatch (B)")
    parser.add_argument("--length", type=int, default=25, help="characters per window (T)")
    parser.add_argument("--hidden", type=int, default=64, help="state size (H)")
    parser.add_argument("--lr", type=float, default=0.1, help="Adagrad learning rate")
    parser.add_argument("--seed", type=int, default=0, help="seed of weights and windows")
    parser.add_argument("--every", type=int, default=100, help="print the loss every N steps")
    args = parser.parse_args(argv)

    if args.compile:
        import gradgen

        mod = gradgen.load(HERE / "charrnn.grad")
    else:
        sys.path.insert(0, str(HERE))
        import charrnn_grad as mod

    text = (HERE / "sonnets.txt").read_text(encoding="utf-8")
    chars = sorted(set(text))
    data = np.array([chars.index(c) for c in text])
    V, H, T, B = len(chars), args.hidden, args.length, args.batch
    rng = np.random.default_rng(args.seed)
    params = [0.01 * rng.normal(size=(V, H)), 0.01 * rng.normal(size=(H, H)), np.zeros(H),
              0.01 * rng.normal(size=(H, V)), np.zeros(V)]
    memory = [np.zeros_like(p) for p in params]
    h0 = np.zeros((B, H))
    print(f"{len(text)} characters, {V} distinct; loss of a uniform guess: {np.log(V):.4f}")

    smoothed = None
    for step in range(args.steps + 1):
        start = rng.integers(0, len(data) - T - 1, size=B)
        window = data[start[None, :] + np.arange(T + 1)[:, None]]    # (T + 1, B)
        loss, grads = mod.loss_value_and_grad(*params, window[:-1], window[1:], h0)
        smoothed = loss if smoothed is None else 0.95 * smoothed + 0.05 * loss
        if step % args.every == 0 or step == args.steps:
            print(f"step {step:5d}  loss {smoothed:.4f}")
        for p, g, m in zip(params, grads, memory):
            np.clip(g, -5, 5, out=g)       # as min-char-rnn, against exploding gradients
            m += g * g
            p -= args.lr * g / np.sqrt(m + 1e-8)

    print("sampled:", repr(sample(params, "Shall ", 60, chars, rng)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
