"""onnxruntime's own int8 (quantize_static: QDQ, per-channel int8 weights, int8 activations),
the peer every int8 figure of edgekit is compared with, made one way for tests and benches."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def ort_static_int8(
    source: Path, out: Path, input_name: str, calibration: np.ndarray, *, preprocess: bool = True, reduce_range=False
) -> None:
    """Quantize ``source`` to ``out`` on ``calibration`` (one sample per row, without its batch
    axis); ``preprocess`` runs onnxruntime's recommended shape inference first."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(calibration)

        def get_next(self):
            item = next(self.items, None)
            return None if item is None else {input_name: item[None]}

    model = source
    if preprocess:
        model = out.with_suffix(".pre.onnx")
        quant_pre_process(str(source), str(model))
    quantize_static(
        str(model),
        str(out),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        reduce_range=reduce_range,
    )
