"""A model of some ops of a graph alone, with their real tensors and constants: what the per-op
profiler (:mod:`edgekit.runtime.opprofile`) loads one op at a time."""

from __future__ import annotations

from edgekit.converters.ir.graph import Graph, Node
from edgekit.converters.tflite.writer import serialize


def ops_model(graph: Graph, nodes: list[Node]) -> bytes:
    """A model of ``nodes`` alone (in order): their real tensors and constants; its inputs are
    what they read and do not make, its outputs what the last one makes."""
    g = Graph()
    made: set[str] = set()
    inputs: list[str] = []
    for node in nodes:
        for name in [*node.inputs, *node.outputs]:
            if name:
                g.tensors[name] = graph.tensors[name]
        inputs += [i for i in node.inputs if i and i not in made and not graph.is_const(i)]
        made.update(node.outputs)
    g.nodes = list(nodes)
    g.inputs = list(dict.fromkeys(inputs))
    g.outputs = list(nodes[-1].outputs)
    return serialize(g)
