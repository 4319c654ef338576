"""Rewrites into the forms LiteRT's XNNPACK delegate takes, exact in float: in every type
(:func:`split_wide_concatenations`, one of the TFLite passes), or for int8 only where the float op
is one XNNPACK op already (:func:`prelu_as_int8_arithmetic`, from the quantizer's
``expand_for_int8``)."""

from __future__ import annotations

import numpy as np

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


def prelu_as_int8_arithmetic(graph: Graph) -> Graph:
    """PRELU with a constant slope ``a`` -> ops XNNPACK runs in int8, for the int8 quantizer
    only: its delegate takes PRELU in float only (VisitBinaryNode checks PRELU's tensors for
    float), so an int8 PRELU splits the partition, while a float PRELU is one XNNPACK op. With
    ``d = 1 - a`` per channel, exact in float:

    - every ``d >= 0`` (slopes up to 1): ``x + RELU(-d * x)``;
    - every ``d <= 0``: ``x - RELU(d * x)``;
    - mixed signs: ``x + d * RELU(-x)``, one more op (and one more int8 rounding).

    Each product is a MUL with a fused RELU, or a 1x1 DEPTHWISE_CONV_2D when the factor varies
    along an NHWC tensor's channels only (per-channel int8 weights, where a MUL has one scale)."""
    for node in [n for n in graph.nodes if n.op == "PRELU" and graph.is_const(n.inputs[1])]:
        x, out = node.inputs[0], node.outputs[0]
        d = (1.0 - graph.const(node.inputs[1])).astype(np.float32)
        if np.all(d >= 0):
            _insert(graph, node, "ADD", [x, _scaled(graph, node, x, -d, "RELU")], "sum", out)
        elif np.all(d <= 0):
            _insert(graph, node, "SUB", [x, _scaled(graph, node, x, d, "RELU")], "sum", out)
        else:
            negative_part = _scaled(graph, node, x, np.float32(-1.0), "RELU", "negative_part")
            _insert(graph, node, "ADD", [x, _scaled(graph, node, negative_part, d, "NONE")], "sum", out)
        graph.nodes.remove(node)
    return graph


def _scaled(graph: Graph, node: Node, x: str, factor: np.ndarray, activation: str, part: str = "correction") -> str:
    """``activation(factor * x)`` computed before ``node``: the name of the result."""
    shape = graph.shape(x)
    channels = shape[-1]
    along_channels = factor.ndim == 0 or factor.shape[:-1] == (1,) * (factor.ndim - 1)
    if len(shape) != 4 or not along_channels:
        return _insert(graph, node, "MUL", [x, graph.add_const(factor, "prelu_factor")], part, activation=activation)
    weights = np.broadcast_to(factor.reshape(-1), (channels,)).reshape(1, 1, 1, channels)
    depthwise = {
        "padding": "VALID",
        "stride_w": 1,
        "stride_h": 1,
        "depth_multiplier": 1,
        "dilation_w_factor": 1,
        "dilation_h_factor": 1,
    }
    inputs = [x, graph.add_const(weights, "prelu_factor"), graph.add_const(np.zeros(channels, np.float32), "zero_bias")]
    return _insert(graph, node, "DEPTHWISE_CONV_2D", inputs, part, activation=activation, **depthwise)


def _insert(
    graph: Graph, node: Node, op: str, inputs: list[str], part: str, out: str | None = None, activation="NONE", **attrs
) -> str:
    """A new ``op`` computing ``part`` of ``node`` (and of its source), before it, writing
    ``out`` or a new tensor shaped like ``node``'s output: the name of what it writes."""
    if out is None:
        out = graph.add_tensor(f"{node.outputs[0]}_{part}", graph.shape(node.outputs[0]), np.float32, unique=True)
    attrs |= {"fused_activation_function": activation, "_source": node.attrs.get("_source", "")}
    graph.nodes.insert(graph.nodes.index(node), Node(op, inputs, [out], attrs, name=f"{node.name}/{part}"))
    return out
