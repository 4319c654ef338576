"""QDQ models (onnxruntime's quantize_static, PyTorch QAT exports): keep the scales they were
trained or calibrated with.

QuantizeLinear -> DequantizeLinear pairs on activations are removed and their parameters kept
in ``graph.metadata["qdq"]`` (tensor -> [scale, zero point, qmin, qmax]); the quantizer uses them
as the activation ranges instead of recalibrating. DequantizeLinear of constant int8 weights
folds to float weights at import (on the int8 grid, which symmetric requantization keeps)."""

from __future__ import annotations

import numpy as np

from edgekit.converters.ir.graph import Graph


def strip_activation_qdq(graph: Graph) -> Graph:
    consumers = graph.consumers()
    record = graph.metadata.setdefault("qdq", {})
    for q in [n for n in graph.nodes if n.op == "QuantizeLinear"]:
        scale, zero = graph.const(q.inputs[1]), graph.const(q.inputs[2]) if len(q.inputs) > 2 and q.inputs[2] else None
        users = consumers.get(q.outputs[0], [])
        if scale is None or scale.size != 1 or not users or any(u.op != "DequantizeLinear" for u in users):
            continue
        x = q.inputs[0]
        zp = 0 if zero is None else int(zero.reshape(()))
        info = np.iinfo(zero.dtype if zero is not None else np.uint8)
        record[x] = [float(scale.reshape(())), zp, int(info.min), int(info.max)]
        for d in users:
            graph.replace_uses(d.outputs[0], x)
            graph.nodes.remove(d)
        graph.nodes.remove(q)
    graph.remove_unused()
    return graph


def qdq_ranges(record: dict[str, list]) -> dict[str, tuple[float, float]]:
    return {name: ((qmin - zp) * scale, (qmax - zp) * scale) for name, (scale, zp, qmin, qmax) in record.items()}
