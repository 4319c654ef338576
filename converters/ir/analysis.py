"""Model statistics: parameters and multiply-accumulates of an ONNX-level IR graph."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from edgekit.converters.ir.graph import Graph, Node


def _conv_macs(g: Graph, n: Node) -> int:
    w = g.shape(n.inputs[1])
    out = g.shape(n.outputs[0])
    return int(np.prod(out)) * int(np.prod(w[1:]))


def _conv_transpose_macs(g: Graph, n: Node) -> int:
    w = g.shape(n.inputs[1])  # [Cin, Cout/g, k...]
    return int(np.prod(g.shape(n.inputs[0]))) * int(np.prod(w[1:]))


def _gemm_macs(g: Graph, n: Node) -> int:
    out = g.shape(n.outputs[0])
    a = g.shape(n.inputs[0])
    k = a[0] if n.attrs.get("transA", 0) else a[-1]
    return int(np.prod(out)) * int(k)


MAC_RULES: dict[str, Callable[[Graph, Node], int]] = {
    "Conv": _conv_macs,
    "ConvTranspose": _conv_transpose_macs,
    "Gemm": _gemm_macs,
    "MatMul": _gemm_macs,
}


def count_macs(graph: Graph) -> int:
    return sum(MAC_RULES[n.op](graph, n) for n in graph.nodes if n.op in MAC_RULES)


def count_params(graph: Graph) -> int:
    used = {i for n in graph.nodes for i in n.inputs if i}
    return sum(
        int(t.data.size)
        for name, t in graph.tensors.items()
        if t.data is not None and name in used and np.issubdtype(t.data.dtype, np.floating)
    )
