"""Which ops XNNPACK leaves to TFLite's built-in kernels.

The Python interpreter does not say which nodes a delegate took, so each op is tried alone:
a one-op model with the op's real tensors (shapes, types, quantization, constants) is built
and loaded; an op XNNPACK takes comes back as one DELEGATE node."""

from __future__ import annotations

from collections import Counter

from edgekit.converters.harness import open_tflite
from edgekit.converters.ir.graph import Graph, Node
from edgekit.converters.tflite.submodel import single_op_model


def undelegated_ops(graph: Graph) -> list[Node]:
    left: list[Node] = []
    cache: dict[tuple, bool] = {}
    for node in graph.nodes:
        key = (
            node.op,
            tuple(sorted((k, str(v)) for k, v in node.attrs.items() if not k.startswith("_"))),
            tuple((graph.tensors[i].dtype.str, graph.tensors[i].shape) for i in node.inputs if i),
        )
        if key not in cache or node.op in ("ADD", "SUB", "MUL", "CONCATENATION"):
            with open_tflite(single_op_model(graph, node)) as session:
                cache[key] = bool(session.delegated_partitions())
        if not cache[key]:
            left.append(node)
    return left


def describe(nodes: list[Node]) -> str:
    return ", ".join(f"{op} x{n}" for op, n in Counter(n.op for n in nodes).most_common()) or "none"
