"""Rewrites into the forms LiteRT's XNNPACK delegate takes, exact in float and in int8."""

from __future__ import annotations

from edgekit.converters.ir.graph import Graph, Node

# XNNPACK's CONCATENATION takes 2 to 5 inputs (xnnpack_delegate.cc, VisitConcatenationNode)
MAX_CONCAT_INPUTS = 5


def split_wide_concatenations(graph: Graph) -> Graph:
    """A CONCATENATION of more than five inputs (a recurrent layer's steps) -> a tree of
    concatenations of at most five along the same axis."""
    for node in [n for n in graph.nodes if n.op == "CONCATENATION" and len(n.inputs) > MAX_CONCAT_INPUTS]:
        axis = node.attrs["axis"] % len(graph.shape(node.outputs[0]))
        parts = list(node.inputs)
        while len(parts) > MAX_CONCAT_INPUTS:
            joined = []
            for start in range(0, len(parts), MAX_CONCAT_INPUTS):
                chunk = parts[start : start + MAX_CONCAT_INPUTS]
                if len(chunk) == 1:
                    joined += chunk
                    continue
                shape = list(graph.shape(chunk[0]))
                shape[axis] = sum(graph.shape(name)[axis] for name in chunk)
                part = graph.add_tensor(f"{node.outputs[0]}_part", tuple(shape), graph.dtype(chunk[0]), unique=True)
                attrs = {**node.attrs, "fused_activation_function": "NONE"}
                graph.nodes.insert(
                    graph.nodes.index(node),
                    Node("CONCATENATION", chunk, [part], attrs, name=f"{node.name}/part{start // MAX_CONCAT_INPUTS}"),
                )
                joined.append(part)
            parts = joined
        node.inputs = parts
    return graph
