"""Size report: parameters, MACs, and bytes of the converted .tflite raw and compressed."""

from __future__ import annotations

import gzip

import onnx


def size_report(model: onnx.ModelProto) -> dict[str, int]:
    from edgekit.converters.analysis import count_macs, count_params
    from edgekit.converters.pipeline import import_onnx, to_tflite_graph
    from edgekit.converters.tflite_writer import serialize

    graph = import_onnx(model)
    tfl = to_tflite_graph(graph)
    tfl.metadata = {"_signature": tfl.metadata["_signature"]}
    data = serialize(tfl)
    try:
        import zstandard

        zstd = len(zstandard.ZstdCompressor(level=19).compress(data))
    except ImportError:  # pragma: no cover - zstandard comes with the dev extra
        zstd = -1
    return {
        "params": count_params(graph),
        "macs": count_macs(graph),
        "tflite_fp32_bytes": len(data),
        "tflite_fp32_zstd": zstd,
        "tflite_fp32_gzip": len(gzip.compress(data, 9)),
    }
