"""The DAG as Graphviz DOT text, and a drawing that a notebook shows inline."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Sequence

from .dims import fmt_shape
from .ir import Graph, Node, topo_order
from .ops.registry import REGISTRY

__all__ = ["Drawing", "module_dot", "render", "to_dot"]

FORWARD, BACKWARD, ARGUMENT, OUTPUT = "lightblue", "mistyrose", "white", "lightyellow"


def _quoted(text: str) -> str:
    """`text` as the inside of a DOT string: quotes and backslashes escaped, control
    characters (a newline included) shown as spaces."""
    text = re.sub(r"[\x00-\x1f\x7f]", " ", text)
    return text.replace("\\", "\\\\").replace('"', '\\"')


def to_dot(graph: Graph, title: str, labels: Sequence[str | None] = ()) -> str:
    """DOT source: one box per node (op, shape, source name; the source line in its
    tooltip), forward and backward coloured, the outputs labelled with their names
    (`labels`, else the graph's names), a legend. Ops that only pass their argument on
    (`stop_gradient`: trait "transparent") are not drawn; a node holding a region (a loop)
    is drawn as one node, `loop`."""
    order = topo_order(graph.outputs)
    hidden = {id(n) for n in order if REGISTRY[n.op].has("transparent") and n.args}

    def shown(n: Node) -> Node:
        while id(n) in hidden:
            n = n.args[0]
        return n

    num = {id(n): i for i, n in enumerate(n for n in order if id(n) not in hidden)}
    lines = [f'digraph "{_quoted(title)}" {{', "  rankdir=TB;",
             '  node [shape=box, fontname="monospace", fontsize=10];']
    for n in order:
        if id(n) in hidden:
            continue
        argument = REGISTRY[n.op].has("argument")
        if argument:
            label = f"{n.attr('name')} ({n.attr('role')})"
        elif n.is_const:
            label = str(n.attr("value"))
        elif n.regions:
            label = "loop"
        else:
            label = n.op
        name = graph.names.get(n)
        if name and not argument:
            label = f"{name} = {label}"
        label = _quoted(label) + f"\\n{_quoted(fmt_shape(n.shape))}"
        color = ARGUMENT if argument else FORWARD if n.phase == "forward" else BACKWARD
        extra = ""
        if n.origin is not None:
            extra = f', tooltip="line {n.origin.line}: {_quoted(n.origin.text)}"'
        lines.append(f'  n{num[id(n)]} [label="{label}", style=filled, fillcolor={color}'
                     f"{extra}];")
    for n in order:
        if id(n) in hidden:
            continue
        for a in dict.fromkeys(shown(a) for a in n.args):
            lines.append(f"  n{num[id(a)]} -> n{num[id(n)]};")
    for i, o in enumerate(graph.outputs):
        label = (labels[i] if i < len(labels) else None) or graph.names.get(o) \
            or f"output {i}"
        lines.append(f'  out{i} [label="{_quoted(label)}", shape=ellipse, style=filled, '
                     f"fillcolor={OUTPUT}];")
        lines.append(f"  n{num[id(shown(o))]} -> out{i};")
    lines += [
        "  subgraph cluster_legend {",
        '    label="legend"; fontname="monospace"; fontsize=10; style=dashed;',
        f'    legend_arg [label="argument (Param, Data)", style=filled, fillcolor={ARGUMENT}];',
        f'    legend_fwd [label="forward", style=filled, fillcolor={FORWARD}];',
        f'    legend_bwd [label="backward (derivatives)", style=filled, fillcolor={BACKWARD}];',
        f'    legend_out [label="result", shape=ellipse, style=filled, fillcolor={OUTPUT}];',
        "    legend_arg -> legend_fwd -> legend_bwd -> legend_out [style=invis];",
        "  }",
        "}",
    ]
    return "\n".join(lines) + "\n"


def module_dot(module, backward: bool, function: str | None) -> str | None:
    """The DOT text of an entry point of a compiled module (the first, or `function`):
    its forward graph, or with `backward` that of f_value_and_grad (f_vjp for a vector
    output); None when there is no such function."""
    entries = [f for f in module.functions
               if f.kind == ("value_and_grad" if backward else "forward")]
    if backward and not entries:
        entries = [f for f in module.functions if f.kind == "vjp"]
    if function:
        entries = [f for f in entries if f.entry == function]
    if not entries:
        return None
    fn = entries[0]
    # the results' names as the docstring gives them ("dV: the gradient for V, ...")
    returned = fn.doc.split("Returns:")[-1].splitlines()
    labels = [line.split(":")[0].strip() if ":" in line else "value"
              for line in returned if line.strip()]
    return to_dot(fn.graph, fn.name, labels if len(labels) == len(fn.graph.outputs) else ())


def render(dot: str, fmt: str) -> bytes:
    """`dot` rendered by Graphviz's `dot` program (`fmt`: svg, png, ...); RuntimeError when
    it is not installed or fails."""
    exe = shutil.which("dot")
    if exe is None:
        raise RuntimeError("Graphviz 'dot' is not installed; write a .dot file instead")
    proc = subprocess.run([exe, f"-T{fmt}"], input=dot.encode(), capture_output=True,
                          check=False, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"dot failed: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout


class Drawing:
    """A graph drawn by `gradgen.graph`: `source` is its DOT text; a notebook shows it as
    SVG (`_repr_svg_`, when Graphviz's `dot` is installed); `save(path)` writes .dot,
    .svg or .png."""

    def __init__(self, source: str):
        self.source = source

    def __repr__(self) -> str:
        return f"<gradgen.Drawing: {self.source.count(' -> ')} edges; .source is its DOT>"

    def _repr_svg_(self) -> str | None:
        if shutil.which("dot") is None:
            return None   # the notebook falls back to the text repr
        return render(self.source, "svg").decode("utf-8")

    def save(self, path: str) -> None:
        """Write the drawing to `path` (.dot, .svg or .png; the two last need `dot`)."""
        from pathlib import Path

        suffix = Path(path).suffix
        if suffix == ".dot":
            Path(path).write_text(self.source, encoding="utf-8")
        elif suffix in (".svg", ".png"):
            Path(path).write_bytes(render(self.source, suffix[1:]))
        else:
            raise ValueError("the output must end in .dot, .svg or .png")
