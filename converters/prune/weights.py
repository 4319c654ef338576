"""Weight-level compression of an ONNX model: unstructured magnitude sparsity and k-means
weight sharing. Shapes stay; the zeros and the few distinct values make the model compress
far better for over-the-air updates."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from edgekit.errors import InputError

WEIGHTED_OPS = {"Conv": 1, "ConvTranspose": 1, "Gemm": 1, "MatMul": 1}


def weight_tensors(model: onnx.ModelProto, exclude: set[str] | frozenset[str] = frozenset()) -> dict[str, str]:
    """Initializer name -> the node that uses it as a weight."""
    inits = {i.name for i in model.graph.initializer}
    found = {}
    for node in model.graph.node:
        index = WEIGHTED_OPS.get(node.op_type)
        if index is None or len(node.input) <= index or node.input[index] not in inits:
            continue
        if node.name in exclude:
            continue
        found[node.input[index]] = node.name or node.output[0]
    return found


def _replace(model: onnx.ModelProto, updates: dict[str, np.ndarray]) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for init in out.graph.initializer:
        if init.name in updates:
            init.CopyFrom(numpy_helper.from_array(updates[init.name].astype(np.float32), init.name))
    return out


def magnitude_prune(
    model: onnx.ModelProto, sparsity: float, scope: str = "global", exclude: set[str] | frozenset[str] = frozenset()
) -> tuple[onnx.ModelProto, dict[str, float]]:
    """Zero the smallest-magnitude weights: ``sparsity`` of all weights together (global) or of
    each layer (layer). Returns the model and each layer's resulting sparsity."""
    if not 0 < sparsity < 1:
        raise InputError("sparsity must lie strictly between 0 and 1, e.g. --ratio 0.8")
    names = weight_tensors(model, exclude)
    if not names:
        raise InputError("nothing to prune: no Conv/Gemm/MatMul weights (or every one excluded)")
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer if i.name in names}
    if scope == "global":
        threshold = np.quantile(np.concatenate([np.abs(w).ravel() for w in inits.values()]), sparsity)
        updates = {n: np.where(np.abs(w) <= threshold, 0.0, w) for n, w in inits.items()}
    elif scope == "layer":
        updates = {n: np.where(np.abs(w) <= np.quantile(np.abs(w), sparsity), 0.0, w) for n, w in inits.items()}
    else:
        raise InputError(f"scope must be global or layer, not {scope!r}")
    report = {names[n]: float(np.mean(w == 0)) for n, w in updates.items()}
    return _replace(model, updates), report


def kmeans_1d(values: np.ndarray, clusters: int, iterations: int = 25) -> tuple[np.ndarray, np.ndarray]:
    """Centroids and assignments of 1-D k-means, initialised on quantiles (deterministic)."""
    centroids = np.quantile(values, np.linspace(0, 1, clusters))
    for _ in range(iterations):
        assign = np.abs(values[:, None] - centroids[None, :]).argmin(1)
        for k in range(clusters):
            members = values[assign == k]
            if members.size:
                centroids[k] = members.mean()
    return centroids, np.abs(values[:, None] - centroids[None, :]).argmin(1)


def cluster_weights(
    model: onnx.ModelProto, clusters: int, per_channel: bool = True, exclude: set[str] | frozenset[str] = frozenset()
) -> onnx.ModelProto:
    """k-means weight sharing. Centroids are snapped to the symmetric per-channel int8 grid the
    quantizer will use (scale = max|w| / 127 per output channel), so int8 keeps exactly the
    clustered values. Weights that are exactly zero (magnitude pruning's) stay zero and count as
    one of the ``clusters`` values, so sparsity and clustering compound."""
    if not 2 <= clusters <= 256:
        raise InputError("clusters must be between 2 and 256")
    names = weight_tensors(model, exclude)
    if not names:
        raise InputError("nothing to cluster: no Conv/Gemm/MatMul weights (or every one excluded)")
    updates = {}
    for init in model.graph.initializer:
        if init.name not in names:
            continue
        w = numpy_helper.to_array(init).astype(np.float64)
        rows = w.reshape(w.shape[0], -1) if per_channel and w.ndim > 1 else w.reshape(1, -1)
        out = np.empty_like(rows)
        for r, row in enumerate(rows):
            amax = np.abs(row).max()
            if amax == 0:
                out[r] = row
                continue
            nonzero = row != 0
            values = row[nonzero]
            budget = clusters - 1 if values.size < row.size else clusters
            centroids, assign = kmeans_1d(values, min(budget, np.unique(values).size))
            step = amax / 127.0
            centroids = np.clip(np.round(centroids / step), -127, 127) * step
            centroids[np.argmax(np.abs(centroids))] = np.sign(centroids[np.argmax(np.abs(centroids))]) * amax
            out[r] = 0.0
            out[r, nonzero] = centroids[assign]
        updates[init.name] = out.reshape(w.shape)
    return _replace(model, updates)
