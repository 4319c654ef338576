"""Fold BatchNormalization (and per-channel Mul/Add by constants, on either side) into the
Conv, ConvTranspose, Gemm or MatMul by a constant matrix that produces its input (ONNX level,
before lowering).

A MatMul takes its folded bias as a third input, which ONNX's MatMul does not have: the IR is
never written back to ONNX, and its lowering makes that input FULLY_CONNECTED's bias. Keras
Dense layers exported by tf2onnx are MatMul + Add, on 2-D and N-D activations alike; left as an
ADD, the bias costs int8 a requantization of the product without it."""

from __future__ import annotations

import numpy as np

from edgekit.converters.ir.graph import Graph, Node

_LINEAR = ("Conv", "ConvTranspose", "Gemm", "MatMul")
_CHANNELS_LAST = ("Gemm", "MatMul")  # output channels on the last axis, not axis 1


def _per_channel(value: np.ndarray, channels: int, rank: int, axis: int) -> np.ndarray | None:
    """``value`` as a [channels] vector if it broadcasts along ``axis`` of a rank-``rank`` tensor
    without changing its shape."""
    if value.ndim > rank:
        return None
    if value.size == 1:
        return np.full(channels, float(value.reshape(())), np.float64)
    shape = (1,) * (rank - value.ndim) + value.shape
    expected = [1] * rank
    expected[axis] = channels
    if list(shape) != expected:
        return None
    return value.reshape(channels).astype(np.float64)


def _weights_and_bias(graph: Graph, node: Node) -> tuple[np.ndarray, np.ndarray, int] | None:
    """(weights, bias, output-channel axis of the weights) of a foldable producer."""
    weights = graph.const(node.inputs[1])
    if weights is None:
        return None
    if node.op == "MatMul" and (weights.ndim != 2 or len(graph.shape(node.inputs[0])) < 2):
        return None
    if node.op in _CHANNELS_LAST:  # a MatMul is a Gemm without attributes
        if node.attrs.get("transA", 0) or float(node.attrs.get("alpha", 1.0)) != 1.0:
            return None
        if len(node.inputs) > 2 and node.inputs[2] and float(node.attrs.get("beta", 1.0)) != 1.0:
            return None
        axis = 0 if node.attrs.get("transB", 0) else 1
        cout = weights.shape[axis]
    elif node.op == "ConvTranspose":
        if int(node.attrs.get("group", 1)) != 1:
            return None
        axis, cout = 1, weights.shape[1]
    else:
        axis, cout = 0, weights.shape[0]
    if len(node.inputs) > 2 and node.inputs[2]:
        bias = graph.const(node.inputs[2])
        if bias is None or bias.size != cout:
            return None
        bias = bias.reshape(cout)
    else:
        bias = np.zeros(cout, weights.dtype)
    return weights, bias, axis


def _apply(graph: Graph, producer: Node, weights, bias, axis: int, scale, shift, new_out: str) -> None:
    shape = [1] * weights.ndim
    shape[axis] = -1
    w = (weights.astype(np.float64) * scale.reshape(shape)).astype(np.float32)
    b = (bias.astype(np.float64) * scale + shift).astype(np.float32)
    producer.inputs = [
        producer.inputs[0],
        graph.add_const(w, f"{producer.name}_w_folded"),
        graph.add_const(b, f"{producer.name}_b_folded"),
    ]
    producer.outputs = [new_out]


def fold_batchnorm(graph: Graph) -> Graph:
    changed = True
    while changed:
        changed = False
        producers = graph.producers()
        consumers = graph.consumers()
        for node in list(graph.nodes):
            if node.op not in ("BatchNormalization", "Mul", "Add"):
                continue
            x = node.inputs[0]
            if node.op != "BatchNormalization":  # Mul(scale, conv) as well as Mul(conv, scale)
                if len(node.inputs) != 2:
                    continue
                x = next((i for i in node.inputs if graph.const(i) is None), node.inputs[0])
            producer = producers.get(x)
            if producer is None or producer.op not in _LINEAR or len(consumers.get(x, [])) != 1:
                continue
            if x in graph.outputs:
                continue
            found = _weights_and_bias(graph, producer)
            if found is None:
                continue
            weights, bias, axis = found
            channels = bias.size
            rank = len(graph.shape(x))
            channel_axis = rank - 1 if producer.op in _CHANNELS_LAST else 1
            if node.op == "BatchNormalization":
                if channel_axis != 1:  # BatchNormalization normalizes axis 1: the tokens of a [B, T, C] MatMul
                    continue
                stats = [graph.const(n) for n in node.inputs[1:5]]
                if any(s is None for s in stats) or len([o for o in node.outputs if o]) != 1:
                    continue
                gamma, beta, mean, var = (s.astype(np.float64) for s in stats)
                scale = gamma / np.sqrt(var + float(node.attrs.get("epsilon", 1e-5)))
                shift = beta - mean * scale
            else:
                other = node.inputs[1] if node.inputs[0] == x else node.inputs[0]
                value = graph.const(other)
                vec = None if value is None else _per_channel(value, channels, rank, channel_axis)
                if vec is None:
                    continue
                scale, shift = (vec, np.zeros(channels)) if node.op == "Mul" else (np.ones(channels), vec)
            _apply(graph, producer, weights, bias, axis, scale, shift, node.outputs[0])
            graph.nodes.remove(node)
            changed = True
            break
    graph.remove_unused()
    return graph
