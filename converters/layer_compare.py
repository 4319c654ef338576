"""Per-layer comparison: every TFLite tensor that stands for an ONNX tensor, against it.

LiteRT runs without delegates and with every intermediate tensor preserved; onnxruntime
runs with every intermediate exposed. Tensors are matched by name (the converter keeps ONNX
names on op outputs) and through the layout record the converter stores in the model's
metadata (tensors moved to NHWC)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edgekit.converters.harness import TFLiteRunner, onnx_intermediates
from edgekit.converters.passes.layout import resolve_layout
from edgekit.converters.tflite.reader import metadata, operator_names
from edgekit.converters.verification import sqnr_db


@dataclass
class LayerError:
    tensor: str
    op: str
    sqnr_db: float
    max_abs_error: float


@dataclass
class LayerReport:
    layers: list[LayerError]

    def worst(self, n: int = 5) -> list[LayerError]:
        return sorted(self.layers, key=lambda layer: layer.sqnr_db)[:n]

    def table(self, limit: int | None = None) -> str:
        rows = self.layers if limit is None else self.layers[:limit]
        lines = [f"{'#':>4}  {'op':<20} {'SQNR dB':>9} {'max |err|':>11}  tensor"]
        for i, layer in enumerate(rows):
            lines.append(f"{i:>4}  {layer.op:<20} {layer.sqnr_db:>9.2f} {layer.max_abs_error:>11.3g}  {layer.tensor}")
        worst = ", ".join(f"{w.tensor} ({w.sqnr_db:.1f} dB)" for w in self.worst(3))
        lines.append(f"worst layers: {worst}")
        return "\n".join(lines)

    def to_json(self) -> str:
        return json.dumps({"layers": [asdict(layer) for layer in self.layers]}, indent=1, default=float)


def compare_layers(onnx_model, tflite_model: bytes | str | os.PathLike, sample: dict[str, np.ndarray]) -> LayerReport:
    """``sample``: one input per ONNX input name, in the ONNX layout (batch included)."""
    from edgekit.converters.onnx.frontend import read_model

    source = read_model(onnx_model)
    data = tflite_model if isinstance(tflite_model, bytes) else Path(tflite_model).read_bytes()
    info = metadata(data).get("edgekit", {})
    layouts = info.get("tensor_layouts", {}) if isinstance(info, dict) else {}
    reference = onnx_intermediates(source.model, sample)
    runner = TFLiteRunner(data, threads=1, xnnpack=False, preserve_all_tensors=True)
    runner(sample)  # the runner knows the model's layout and int8 inputs

    producers = _producer_ops(data)
    layers = []
    for spec in runner.session.tensors():
        if spec.index not in producers:
            continue
        src, perm = resolve_layout(spec.name, layouts)
        if src not in reference:
            continue
        value = runner.session.tensor(spec)
        if value is None:
            continue
        ref = np.asarray(reference[src], np.float32)
        if perm is not None:
            value = np.transpose(value, np.argsort(perm))
        if value.size != ref.size:
            continue
        value = value.reshape(ref.shape)
        layers.append(LayerError(src, producers[spec.index], sqnr_db(ref, value), float(np.max(np.abs(ref - value)))))
    return LayerReport(layers)


def _producer_ops(data: bytes) -> dict[int, str]:
    """tensor index -> the op that writes it."""
    import tflite

    model = tflite.Model.GetRootAs(data, 0)
    sg = model.Subgraphs(0)
    names = operator_names(data)
    produced = {}
    for i in range(sg.OperatorsLength()):
        op = sg.Operators(i)
        for j in range(op.OutputsLength()):
            produced[op.Outputs(j)] = names[i]
    return produced
