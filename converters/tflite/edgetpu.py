"""The Edge TPU compiler's rules, checked on a quantized graph before it leaves the converter.

The compiler maps one contiguous run of ops from the model's start: the first op it cannot
take, and every op after it, run on the CPU. Rules (Coral's "TensorFlow models on the Edge
TPU"): fully int8/uint8 tensors, static shapes, at most the 3 innermost dimensions larger
than 1, only some ops, and low op versions (the compiler embeds an old TFLite): an op's
``edgetpu`` entry in :mod:`edgekit.converters.tflite.op_table` is the highest version it maps.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edgekit.converters.ir.graph import Graph, Node
from edgekit.converters.tflite.op_table import facts
from edgekit.converters.tflite.ops import op_version

QUANTIZED = (np.dtype(np.int8), np.dtype(np.uint8), np.dtype(np.int32))


@dataclass
class EdgeTpuReport:
    mapped: list[Node] = field(default_factory=list)
    on_cpu: list[tuple[Node, str]] = field(default_factory=list)

    @property
    def fully_mapped(self) -> bool:
        return not self.on_cpu

    def summary(self) -> str:
        lines = [f"Edge TPU: {len(self.mapped)} op(s) mapped, {len(self.on_cpu)} left to the CPU"]
        for node, reason in self.on_cpu[:20]:
            lines.append(f"  {node.op:<24} {reason}  [{node.name}]")
        if len(self.on_cpu) > 20:
            lines.append(f"  ... and {len(self.on_cpu) - 20} more")
        return "\n".join(lines)


def _rank_rule(shape: tuple[int, ...]) -> bool:
    return sum(1 for d in shape[:-3] if d > 1) == 0


def why_not(graph: Graph, node: Node, trunk: bool) -> str | None:
    """Why the Edge TPU would not take ``node`` (None when it would)."""
    highest = facts(node.op).edgetpu
    if highest is None:
        return "operation not supported by the Edge TPU"
    version = op_version(node, lambda n: graph.tensors[n])
    if version > highest:
        return f"op version {version} is newer than the compiler accepts ({highest})"
    for name in [*node.inputs, *node.outputs]:
        if not name:
            continue
        t = graph.tensors[name]
        if node.op == "QUANTIZE" and name == node.inputs[0]:
            continue
        if node.op == "DEQUANTIZE" and name == node.outputs[0]:
            continue
        if t.dtype not in QUANTIZED:
            return f"tensor '{name}' is {t.dtype}, not int8/uint8"
        if any(d <= 0 for d in t.shape):
            return f"tensor '{name}' has a dynamic shape"
        if not t.is_const and not _rank_rule(t.shape):  # a rule for activations: filters are 4-D
            return f"tensor '{name}' {list(t.shape)} has more than 3 innermost dimensions larger than 1"
    if node.op == "TRANSPOSE" and trunk:
        return "TRANSPOSE between convolutions (not supported in the trunk)"
    return None


def check_edgetpu(graph: Graph) -> EdgeTpuReport:
    """Walk the ops in order; from the first refusal on, everything stays on the CPU."""
    report = EdgeTpuReport()
    convs_left = sum(1 for n in graph.nodes if n.op in ("CONV_2D", "DEPTHWISE_CONV_2D"))
    stopped: str | None = None
    for node in graph.nodes:
        reason = stopped and f"after an unmapped op ({stopped})"
        if reason is None:
            own = why_not(graph, node, trunk=convs_left > 0)
            if own is not None:
                stopped = node.op
                reason = own
        if node.op in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            convs_left -= 1
        if reason is None:
            report.mapped.append(node)
        else:
            report.on_cpu.append((node, reason))
    return report
