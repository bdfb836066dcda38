"""The DAG as Graphviz DOT text."""

from __future__ import annotations

from .dims import fmt_shape
from .ir import Graph, topo_order
from .ops.registry import REGISTRY


def to_dot(graph: Graph, title: str) -> str:
    """DOT source: one box per node (op, shape, source name), forward and backward coloured."""
    order = topo_order(graph.outputs)
    num = {id(n): i for i, n in enumerate(order)}
    lines = [f'digraph "{title}" {{', "  rankdir=TB;",
             '  node [shape=box, fontname="monospace", fontsize=10];']
    for n in order:
        label = n.op
        argument = REGISTRY[n.op].has("argument")
        if argument:
            label = f"{n.attr('name')} ({n.attr('role')})"
        elif n.is_const:
            label = str(n.attr("value"))
        name = graph.names.get(n)
        if name and not argument:
            label = f"{name} = {label}"
        label += f"\\n{fmt_shape(n.shape)}"
        color = "lightblue" if n.phase == "forward" else "mistyrose"
        lines.append(f'  n{num[id(n)]} [label="{label}", style=filled, fillcolor={color}];')
    for n in order:
        for a in n.args:
            lines.append(f"  n{num[id(a)]} -> n{num[id(n)]};")
    for i, o in enumerate(graph.outputs):
        lines.append(f'  out{i} [label="output {i}", shape=plaintext];')
        lines.append(f"  n{num[id(o)]} -> out{i};")
    lines.append("}")
    return "\n".join(lines) + "\n"
