"""Fuse clamping activations (RELU / RELU6 / RELU_N1_TO_1: op table entries with a ``clamp``)
into the op that produces their input."""

from __future__ import annotations

from edgekit.converters.ir.graph import Graph
from edgekit.converters.tflite.op_table import ops_where

# activations that fuse (fused_activation_function names the op), and ops that take one
FUSABLE = ops_where(lambda f: f.clamp is not None)
FUSABLE_ACTIVATION_OPS = ops_where(lambda f: f.fused_activation)


def _distribute_over_concat(graph: Graph) -> None:
    """act(CONCATENATION(a, b, ...)) -> CONCATENATION(act(a), act(b), ...) with each act fused
    into the op producing that input, when every input allows it."""
    consumers, producers = graph.consumers(), graph.producers()
    for act in [n for n in graph.nodes if n.op in FUSABLE]:
        concat = producers.get(act.inputs[0])
        if concat is None or concat.op != "CONCATENATION" or len(consumers.get(act.inputs[0], [])) != 1:
            continue
        if act.inputs[0] in graph.outputs:
            continue
        feeding = [producers.get(i) for i in concat.inputs]
        if not all(
            p is not None
            and p.op in FUSABLE_ACTIVATION_OPS
            and p.attrs.get("fused_activation_function", "NONE") == "NONE"
            and len(consumers.get(p.outputs[0], [])) == 1
            and p.outputs[0] not in graph.outputs
            for p in feeding
        ):
            continue
        for p in feeding:
            p.attrs["fused_activation_function"] = act.op
        concat.outputs = [act.outputs[0]]
        graph.nodes.remove(act)


def fuse_activations(graph: Graph) -> Graph:
    _distribute_over_concat(graph)
    consumers = graph.consumers()
    producers = graph.producers()
    for act in [n for n in graph.nodes if n.op in FUSABLE]:
        src = act.inputs[0]
        producer = producers.get(src)
        if producer is None or producer.op not in FUSABLE_ACTIVATION_OPS:
            continue
        if producer.attrs.get("fused_activation_function", "NONE") != "NONE":
            continue
        if len(consumers.get(src, [])) != 1 or src in graph.outputs or len(producer.outputs) != 1:
            continue
        producer.attrs["fused_activation_function"] = act.op
        producer.outputs = [act.outputs[0]]
        graph.nodes.remove(act)
        producers[act.outputs[0]] = producer
    graph.remove_unused()
    return graph
