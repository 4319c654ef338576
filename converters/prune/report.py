"""Size report: parameters, MACs, and bytes of the converted .tflite (fp32 and int8) raw and
compressed — zstd and gzip, and xz at the preset the caller gives (``edgekit.package.XZ_PRESET``
for the size of an edgekit package: packaging is the layer above, so its choice is passed in)."""

from __future__ import annotations

import gzip
import lzma
import tempfile
from pathlib import Path

import numpy as np
import onnx

SIZE_KEYS = (
    "params",
    "macs",
    "tflite_fp32_bytes",
    "tflite_fp32_zstd",
    "tflite_fp32_gzip",
    "tflite_int8_bytes",
    "tflite_int8_zstd",
    "tflite_int8_gzip",
    "tflite_int8_xz",
)


def compressed_sizes(data: bytes, prefix: str, xz_preset: int | None = None) -> dict[str, int]:
    """``{prefix}_bytes``, ``_zstd`` (-1 without zstandard) and ``_gzip``; ``_xz`` too, at
    ``xz_preset``, when one is given."""
    try:
        import zstandard

        zstd = len(zstandard.ZstdCompressor(level=19).compress(data))
    except ImportError:  # pragma: no cover - zstandard comes with the dev extra
        zstd = -1
    sizes = {f"{prefix}_bytes": len(data), f"{prefix}_zstd": zstd, f"{prefix}_gzip": len(gzip.compress(data, 9))}
    if xz_preset is not None:
        sizes[f"{prefix}_xz"] = len(lzma.compress(data, preset=xz_preset))
    return sizes


def size_report(model: onnx.ModelProto, calibration: np.ndarray | None = None, *, xz_preset: int) -> dict[str, int]:
    """Sizes of ``model`` converted to fp32 and to int8 (the int8 file also xz-compressed at
    ``xz_preset``). The int8 activation ranges come from ``calibration`` (model-layout samples)
    or, when it is None, from 8 random inputs: weights, scales and biases then still have their
    real sizes, which is all this report is about."""
    from edgekit.converters.ir.analysis import count_macs, count_params
    from edgekit.converters.onnx.frontend import fixed_input_shapes
    from edgekit.converters.pipeline import convert, import_onnx, to_tflite_graph
    from edgekit.converters.tflite.writer import serialize

    graph = import_onnx(model)
    tfl = to_tflite_graph(graph)
    tfl.metadata = {"_signature": tfl.metadata["_signature"]}
    report = {"params": count_params(graph), "macs": count_macs(graph)}
    report.update(compressed_sizes(serialize(tfl), "tflite_fp32"))
    if calibration is None:
        shape = next(iter(fixed_input_shapes(model, None).values()))
        calibration = np.random.default_rng(0).standard_normal((8, *shape[1:])).astype(np.float32)
    with tempfile.TemporaryDirectory(prefix="edgekit-size-") as tmp:
        out = Path(tmp) / "int8.tflite"
        convert(model, out, quantize="int8", calibration=calibration)
        report.update(compressed_sizes(out.read_bytes(), "tflite_int8", xz_preset))
    return report
