"""Which ops XNNPACK leaves to TFLite's built-in kernels, in the model as LiteRT loads it (the
runtime reads them off the DELEGATE nodes: :meth:`edgekit.runtime.Session.undelegated_ops`)."""

from __future__ import annotations

from collections import Counter

from edgekit.converters.harness import open_tflite
from edgekit.converters.ir.graph import Graph, Node
from edgekit.converters.tflite.writer import serialize


def undelegated_ops(graph: Graph) -> list[Node]:
    """The nodes of ``graph`` XNNPACK leaves to TFLite's kernels, in the whole model as LiteRT
    partitions it (the writer keeps the node order)."""
    with open_tflite(serialize(graph)) as session:
        return [graph.nodes[index] for index, _ in session.undelegated_ops()]


def describe(nodes: list[Node]) -> str:
    return ", ".join(f"{op} x{n}" for op, n in Counter(n.op for n in nodes).most_common()) or "none"
