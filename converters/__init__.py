"""Server-side converters: ONNX (and PyTorch through ONNX) -> TFLite flatbuffers.

Heavy imports (onnx, onnxruntime) happen when a function is called, so the flatbuffer
writer stays importable on a device that has only ``flatbuffers`` and ``tflite``.
"""

from __future__ import annotations


def convert(model, output=None, **options):
    """Convert an ONNX model; see :func:`edgekit.converters.pipeline.convert`."""
    from edgekit.converters.pipeline import convert as _convert

    return _convert(model, output, **options)


def verify(onnx_model, tflite_model, **options):
    """Compare a TFLite model against its ONNX source; see :mod:`edgekit.converters.verification`."""
    from edgekit.converters.verification import verify as _verify

    return _verify(onnx_model, tflite_model, **options)


__all__ = ["convert", "verify"]
