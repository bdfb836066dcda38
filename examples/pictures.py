"""Regenerate the pictures the README shows (needs gradgen, SciPy, matplotlib and Graphviz's
`dot`: ``pip install -e .[examples]`` and ``apt-get install graphviz``):

    python examples/pictures.py

writes ``examples/mlp/training.png`` (loss curves of gradient descent, L-BFGS and trust-ncg
with ``cost_hvp`` on Iris; decision regions of the trust-ncg fit) and
``examples/mlp/backward.svg`` (the forward and backward graph of ``cost_value_and_grad``).
"""

import sys
from pathlib import Path

import gradgen

HERE = Path(__file__).resolve().parent


def main() -> int:
    sys.path.insert(0, str(HERE / "mlp"))
    import train

    train.main(["--figure", str(HERE / "mlp" / "training.png"), "--every", "1000"])
    out = HERE / "mlp" / "backward.svg"
    gradgen.graph(HERE / "mlp" / "mlp.grad", backward=True).save(str(out))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
