"""Fuse RELU / RELU6 / RELU_N1_TO_1 into the op that produces their input."""

from __future__ import annotations

from edgekit.converters.ir import Graph
from edgekit.converters.tflite_ops import FUSABLE_ACTIVATION_OPS

FUSABLE = {"RELU": "RELU", "RELU6": "RELU6", "RELU_N1_TO_1": "RELU_N1_TO_1"}


def fuse_activations(graph: Graph) -> Graph:
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
        producer.attrs["fused_activation_function"] = FUSABLE[act.op]
        producer.outputs = [act.outputs[0]]
        graph.nodes.remove(act)
        producers[act.outputs[0]] = producer
    graph.remove_unused()
    return graph
