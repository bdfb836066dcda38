"""Train word2vec (skip-gram with negative sampling, word2vec.grad) on a synthetic corpus
whose sentences each talk about one topic, then check that words of a topic end up
nearest to each other.

By default this uses the generated module ``word2vec_grad.py`` beside this script, so it
needs nothing but NumPy:

    python examples/word2vec/train.py

Regenerate that module with ``gradgen compile examples/word2vec/word2vec.grad --force``,
or compile the source afresh in memory (needs gradgen installed) with ``--compile``.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def corpus(rng, topics=5, words_per_topic=40, sentences=3000, length=12, stray=0.1):
    """Sentences of word ids: each draws its words from one topic (a `stray` fraction from
    anywhere). Returns the sentences and each word's topic."""
    V = topics * words_per_topic
    topic_of = np.repeat(np.arange(topics), words_per_topic)
    t = rng.integers(0, topics, size=sentences)
    words = t[:, None] * words_per_topic + rng.integers(0, words_per_topic, (sentences, length))
    strays = rng.random((sentences, length)) < stray
    words[strays] = rng.integers(0, V, size=strays.sum())
    return words, topic_of


def skipgram_pairs(sentences, window=2):
    """(center, context) pairs of every two words at most `window` apart in a sentence."""
    centers, contexts = [], []
    for offset in range(1, window + 1):
        for a, b in ((sentences[:, :-offset], sentences[:, offset:]),
                     (sentences[:, offset:], sentences[:, :-offset])):
            centers.append(a.ravel())
            contexts.append(b.ravel())
    return np.concatenate(centers), np.concatenate(contexts)


def neighbour_purity(E, topic_of):
    """The fraction of words whose nearest other word (cosine similarity) shares its topic."""
    unit = E / np.linalg.norm(E, axis=1, keepdims=True)
    sim = unit @ unit.T
    np.fill_diagonal(sim, -np.inf)
    return np.mean(topic_of[np.argmax(sim, axis=1)] == topic_of)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compile", action="store_true",
                        help="compile word2vec.grad with gradgen instead of importing "
                             "word2vec_grad.py")
    parser.add_argument("--steps", type=int, default=1500, help="minibatch SGD steps")
    parser.add_argument("--batch", type=int, default=256, help="pairs per minibatch (B)")
    parser.add_argument("--noise", type=int, default=5, help="noise words per pair (K)")
    parser.add_argument("--dim", type=int, default=16, help="embedding size (D)")
    parser.add_argument("--lr", type=float, default=2.0, help="learning rate")
    parser.add_argument("--seed", type=int, default=0, help="seed of corpus and weights")
    parser.add_argument("--every", type=int, default=300, help="print the loss every N steps")
    args = parser.parse_args(argv)

    if args.compile:
        import gradgen

        mod = gradgen.load(HERE / "word2vec.grad")
    else:
        sys.path.insert(0, str(HERE))
        import word2vec_grad as mod

    rng = np.random.default_rng(args.seed)
    sentences, topic_of = corpus(rng)
    V = len(topic_of)
    centers, contexts = skipgram_pairs(sentences)
    counts = np.bincount(sentences.ravel(), minlength=V)
    noise_p = counts ** 0.75 / np.sum(counts ** 0.75)   # the usual unigram^(3/4) noise
    E = (rng.random((V, args.dim)) - 0.5) / args.dim
    U = np.zeros((V, args.dim))
    print(f"{V} words, {len(centers)} (center, context) pairs; "
          f"nearest-neighbour topic purity before training: {neighbour_purity(E, topic_of):.2f}")

    smoothed = None
    for step in range(args.steps + 1):
        pick = rng.integers(0, len(centers), size=args.batch)
        noise = rng.choice(V, size=(args.batch, args.noise), p=noise_p)
        loss, (dE, dU) = mod.loss_value_and_grad(E, U, centers[pick], contexts[pick], noise)
        smoothed = loss if smoothed is None else 0.9 * smoothed + 0.1 * loss
        if step % args.every == 0 or step == args.steps:
            print(f"step {step:5d}  loss {smoothed:.4f}")
        E -= args.lr * dE
        U -= args.lr * dU

    purity = neighbour_purity(E, topic_of)
    print(f"nearest-neighbour topic purity after training: {purity:.2f} "
          f"(chance: {(V / 5 - 1) / (V - 1):.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
