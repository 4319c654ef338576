"""Tiny .tflite models built with edgekit's own writer (no converter dependencies, so these
tests also run where only a runtime is installed)."""

from __future__ import annotations

import numpy as np

from edgekit.converters.ir.graph import Graph
from edgekit.converters.tflite.writer import serialize

WEIGHTS = np.random.default_rng(0).standard_normal((4, 6)).astype(np.float32)
BIAS = np.linspace(-1, 1, 4).astype(np.float32)


def reference(x: np.ndarray) -> np.ndarray:
    return np.maximum(x @ WEIGHTS.T + BIAS, 0)


def float_graph() -> Graph:
    g = Graph()
    g.add_tensor("features", (1, 6), np.float32)
    w = g.add_const(WEIGHTS, "w")
    b = g.add_const(BIAS, "b")
    g.add_tensor("scores", (1, 4), np.float32)
    g.add_node("FULLY_CONNECTED", ["features", w, b], ["scores"], {"fused_activation_function": "RELU"})
    g.inputs, g.outputs = ["features"], ["scores"]
    g.metadata["_signature"] = {"inputs": ["features"], "outputs": ["scores"]}
    return g


def float_model() -> bytes:
    return serialize(float_graph())


def int8_model(io_type: str = "int8") -> bytes:
    from edgekit.converters.quant.quantizer import quantize_int8

    ranges = {"features": (-3.0, 3.0), "scores": (0.0, 8.0)}
    return serialize(quantize_int8(float_graph(), ranges, io_type=io_type))
