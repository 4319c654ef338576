"""Cross-layer equalization (Nagel et al., "Data-Free Quantization", 2019).

For two convolutions in a row with only a ReLU (positively homogeneous) between them, output
channel i of the first can be divided by s_i and input channel i of the second multiplied by
s_i without changing the function. With s_i = sqrt(r1_i / r2_i) (r = the channels' weight
ranges) both channels end up with the same range, which is what per-channel int8 wants from
depthwise-heavy networks whose channel ranges differ by orders of magnitude. ONNX level, after
BatchNormalization folding."""

from __future__ import annotations

import numpy as np

from edgekit.converters.ir.graph import Graph, Node

HOMOGENEOUS = ("Relu",)


def _pairs(graph: Graph) -> list[tuple[Node, Node]]:
    producers, consumers = graph.producers(), graph.consumers()
    pairs = []
    for second in graph.nodes:
        if second.op != "Conv" or graph.const(second.inputs[1]) is None:
            continue
        x = second.inputs[0]
        between = producers.get(x)
        first = between
        if between is not None and between.op in HOMOGENEOUS:
            if len(consumers.get(x, [])) != 1 or x in graph.outputs:
                continue
            first = producers.get(between.inputs[0])
            x = between.inputs[0]
        if first is None or first.op != "Conv" or graph.const(first.inputs[1]) is None:
            continue
        if len(consumers.get(x, [])) != 1 or x in graph.outputs:
            continue
        pairs.append((first, second))
    return pairs


def _set(graph: Graph, node: Node, index: int, value: np.ndarray) -> None:
    node.inputs[index] = graph.add_const(value.astype(np.float32), f"{node.name}_equalized")


def equalize(graph: Graph, iterations: int = 4) -> Graph:
    for _ in range(iterations):
        for first, second in _pairs(graph):
            w1 = graph.const(first.inputs[1]).astype(np.float64)
            w2 = graph.const(second.inputs[1]).astype(np.float64)
            channels = w1.shape[0]
            groups = int(second.attrs.get("group", 1))
            per_group_in = w2.shape[1]
            per_group_out = w2.shape[0] // groups
            if per_group_in * groups != channels:
                continue
            r1 = np.abs(w1.reshape(channels, -1)).max(axis=1)
            r2 = np.zeros(channels)
            for c in range(channels):
                g, k = divmod(c, per_group_in)
                r2[c] = np.abs(w2[g * per_group_out : (g + 1) * per_group_out, k]).max()
            ok = (r1 > 0) & (r2 > 0)
            s = np.ones(channels)
            s[ok] = np.sqrt(r1[ok] / r2[ok])
            if np.allclose(s, 1.0, rtol=1e-3):
                continue
            shape = (channels,) + (1,) * (w1.ndim - 1)
            _set(graph, first, 1, w1 / s.reshape(shape))
            if len(first.inputs) > 2 and first.inputs[2]:
                _set(graph, first, 2, graph.const(first.inputs[2]).astype(np.float64) / s)
            for c in range(channels):
                g, k = divmod(c, per_group_in)
                w2[g * per_group_out : (g + 1) * per_group_out, k] *= s[c]
            _set(graph, second, 1, w2)
    graph.remove_unused()
    return graph
