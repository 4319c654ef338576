"""Automatic mixed precision: find the layers that lose the most precision in int8 and keep
them in float.

A layer's loss is how many dB of SQNR its output has below its input's (the per-layer table
compares every intermediate tensor with onnxruntime); layers losing more than
``max_sqnr_drop`` dB are named, worst first, and the model is converted again with them in
float. The accuracy-aware mode (:mod:`edgekit.converters.quant.accuracy`) takes the same
ranking with no threshold and keeps the shortest prefix that holds its budget."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgekit.converters.ir.graph import Graph
from edgekit.converters.layer_compare import compare_layers


@dataclass(frozen=True)
class RankedLayer:
    """One compared tensor and the nodes that make it from the compared tensors before it (one
    node, or a chain the converter fused, e.g. Conv + Relu): its int8 loss in dB."""

    tensor: str
    nodes: tuple[str, ...]  # as the converter names them (``keep_float`` takes these names)
    ops: tuple[str, ...]  # their ONNX op types (HardSwish, Gelu: a pattern the converter matched)
    sqnr_drop: float


RANKING_SAMPLES = 4  # samples a ranking averages over: one silent sample (a VAD's pause) says nothing


def ranked_layers(onnx_model, graph: Graph, tflite_model, samples: list[dict[str, np.ndarray]]) -> list[RankedLayer]:
    """Every layer whose int8 output is not exact, worst loss first. A layer's loss is the SQNR
    of the tensors it reads (the worst of them; inputs and constants are exact) minus its own,
    each the mean over ``samples`` of its finite SQNRs. Layers are nodes of ``graph``, the
    ONNX-level IR ``tflite_model`` was converted from (its node names are what ``keep_float``
    matches); nodes whose outputs the converted model does not hold (fused away) join the layer
    that reads them."""
    producer = graph.producers()
    sqnr = _mean_sqnr(onnx_model, tflite_model, samples)
    ranked = []
    for tensor, sqnr_db in sqnr.items():
        if tensor not in producer or not np.isfinite(sqnr_db):
            continue
        chain, before = _chain(graph, tensor, producer, sqnr)
        if before:
            drop = min(min(before), 120.0) - sqnr_db
            ranked.append(RankedLayer(tensor, tuple(n.name for n in chain), tuple(n.op for n in chain), drop))
    return sorted(ranked, key=lambda layer: -layer.sqnr_drop)


def _mean_sqnr(onnx_model, tflite_model, samples: list[dict[str, np.ndarray]]) -> dict[str, float]:
    """Tensor -> the mean of its finite SQNRs over ``samples`` (exact on all: inf; none: NaN). A
    silent sample makes every tensor's SQNR 0/0 or inf, which says nothing of the others."""
    found: dict[str, list[float]] = {}
    for sample in samples:
        for layer in compare_layers(onnx_model, tflite_model, sample).layers:
            found.setdefault(layer.tensor, []).append(layer.sqnr_db)
    averaged = {}
    for tensor, values in found.items():
        finite = [v for v in values if np.isfinite(v)]
        averaged[tensor] = float(np.mean(finite)) if finite else (np.inf if np.inf in values else np.nan)
    return averaged


def _chain(graph: Graph, tensor: str, producer: dict, sqnr: dict[str, float]) -> tuple[list, list[float]]:
    """The nodes from the compared tensors (or inputs, constants) back from ``tensor`` up to
    ``tensor``, and the SQNR of what they read."""
    chain, before, todo, seen = [], [], [tensor], set()
    while todo:
        node = producer[todo.pop()]
        if node.name in seen:
            continue
        seen.add(node.name)
        chain.append(node)
        for i in filter(None, node.inputs):
            if i in sqnr:
                before.append(sqnr[i])
            elif i in producer and not graph.is_const(i):
                todo.append(i)
            else:  # a graph input or a constant: exact
                before.append(np.inf)
    return chain[::-1], before


def lossy_layers(
    onnx_model, graph: Graph, tflite_model, samples: list[dict[str, np.ndarray]], max_sqnr_drop: float
) -> list[str]:
    """Node names of the layers whose int8 output loses more than ``max_sqnr_drop`` dB, worst first."""
    return [
        name
        for layer in ranked_layers(onnx_model, graph, tflite_model, samples)
        if layer.sqnr_drop > max_sqnr_drop
        for name in layer.nodes
    ]


def first_samples(graph: Graph, calibration, count: int = RANKING_SAMPLES) -> list[dict[str, np.ndarray]]:
    """The first ``count`` samples of calibration data (an array, or input name -> array), by
    input name, split as calibration splits it (rows of [N, ...] or of [N, 1, ...] alike)."""
    from edgekit.converters.quant.calibration import prepare_samples

    return prepare_samples(calibration if isinstance(calibration, dict) else np.asarray(calibration), graph)[:count]


def lossy_layers_on_calibration(
    onnx_model, graph: Graph, quantized: Graph, calibration, max_sqnr_drop: float
) -> list[str]:
    """:func:`lossy_layers` of the int8 TFLite-level graph ``quantized`` (converted from the
    ONNX-level ``graph``), measured on the first calibration sample."""
    return lossy_layers(onnx_model, graph, runnable(quantized), first_samples(graph, calibration), max_sqnr_drop)


def runnable(tfl: Graph) -> bytes:
    """A TFLite-level graph mid-conversion as a .tflite model the harness can feed and read in
    the source model's layout (the metadata convert writes at the end, the parts runs need)."""
    from edgekit.converters.tflite.writer import serialize

    probe = tfl.copy()
    probe.metadata = {
        "_signature": tfl.metadata["_signature"],
        "edgekit": {"io_layout": tfl.metadata.get("io_layout", {}), "tensor_layouts": tfl.metadata.get("layouts", {})},
    }
    return serialize(probe)
