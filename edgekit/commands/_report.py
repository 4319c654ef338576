"""Per-layer tables and JSON reports shared by convert and verify."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def op_counts(ops: dict[str, int]) -> str:
    """``{"CONV_2D": 3, ...}`` as the commands print it: "CONV_2D x3, ..."."""
    return ", ".join(f"{op} x{n}" for op, n in ops.items())


def per_layer(onnx_model: str, tflite_model: str, data, seed: int = 0):
    """Per-layer report on the first sample of ``data`` (or one random sample)."""
    import numpy as np

    from edgekit.converters.layer_compare import compare_layers
    from edgekit.converters.onnx.frontend import graph_inputs, input_dtype, read_model
    from edgekit.converters.verification import TFLiteRunner, load_samples

    source = read_model(onnx_model)
    runner = TFLiteRunner(Path(tflite_model).read_bytes())
    inputs = {vi.name: vi for vi in graph_inputs(source.model)}
    sample = {}
    if data is not None:
        for name, values in load_samples(data, runner.input_names).items():
            sample[name] = np.asarray(values[:1], dtype=input_dtype(inputs[name]))
    else:
        rng = np.random.default_rng(seed)
        for name in runner.input_names:
            sample[name] = rng.standard_normal(runner.source_shape(name)).astype(input_dtype(inputs[name]))
    for name, value in sample.items():  # the converted model's shapes: dynamic ONNX dimensions made fixed
        want = runner.source_shape(name)
        if value.size == int(np.prod(want)):
            sample[name] = value.reshape(want)
    return compare_layers(source.model, tflite_model, sample)


def write_report(path: str, report: dict[str, Any]) -> None:
    from edgekit.converters.tflite.writer import write_atomic

    write_atomic(path, json.dumps(report, indent=1, default=float).encode())
