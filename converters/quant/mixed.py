"""Automatic mixed precision: find the layers that lose the most precision in int8 and keep
them in float.

A layer's loss is how many dB of SQNR its output has below its input's (the per-layer table
compares every intermediate tensor with onnxruntime); layers losing more than
``max_sqnr_drop`` dB are named, worst first, and the model is converted again with them in
float."""

from __future__ import annotations

import numpy as np

from edgekit.converters.layer_compare import compare_layers


def lossy_layers(onnx_model, tflite_model, sample: dict[str, np.ndarray], max_sqnr_drop: float) -> list[str]:
    """ONNX node names whose int8 output loses more than ``max_sqnr_drop`` dB."""
    from edgekit.converters.onnx.frontend import read_model

    model = read_model(onnx_model).model
    producer = {o: n for n in model.graph.node for o in n.output}
    report = compare_layers(model, tflite_model, sample)
    sqnr = {layer.tensor: layer.sqnr_db for layer in report.layers}
    inputs = {i.name for i in model.graph.input}
    losses = []
    for layer in report.layers:
        node = producer.get(layer.tensor)
        if node is None:
            continue
        before = [sqnr.get(i, np.inf if i in inputs or i not in producer else None) for i in node.input if i]
        before = [b for b in before if b is not None]
        if not before:
            continue
        drop = min(min(before), 120.0) - layer.sqnr_db
        if drop > max_sqnr_drop:
            losses.append((drop, node.name or layer.tensor))
    return [name for _, name in sorted(losses, reverse=True)]
