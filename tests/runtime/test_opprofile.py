"""Per-op profile: every op of the model is rebuilt alone, timed, and tabled."""

from __future__ import annotations

import subprocess
import sys

from edgekit.converters.tflite.importer import read_graph
from edgekit.converters.tflite.writer import serialize
from edgekit.runtime.opprofile import profile_tflite
from tests.runtime.models import float_graph, int8_model


def test_reader_round_trips_the_writer():
    g = read_graph(int8_model())
    assert [n.op for n in g.nodes] == ["FULLY_CONNECTED"]  # int8 I/O: no QUANTIZE at the edges
    fc = next(n for n in g.nodes if n.op == "FULLY_CONNECTED")
    assert fc.attrs["fused_activation_function"] == 1  # RELU, as the schema's enum value
    weights = g.tensors[fc.inputs[1]]
    assert weights.dtype.name == "int8" and weights.quant is not None and weights.data.shape == (4, 6)
    again = read_graph(serialize(read_graph(serialize(float_graph()))))
    assert [n.op for n in again.nodes] == ["FULLY_CONNECTED"]


def test_profile_tables(tmp_path):
    path = tmp_path / "m.tflite"
    path.write_bytes(int8_model(io_type="float32"))
    prof = profile_tflite(path, threads=1, runs=5)
    assert [o.op for o in prof.ops] == ["QUANTIZE", "FULLY_CONNECTED", "DEQUANTIZE"]
    assert all(o.avg_ms > 0 and isinstance(o.delegated, bool) for o in prof.ops)
    text = prof.tables()
    assert "Run Order" in text and "Summary by node type" in text and "delegate coverage" in text
    from edgekit.runtime import available

    if "litert" in available():  # LiteRT's XNNPACK takes all three; tflite-runtime 2.14's takes fewer
        assert all(o.delegated for o in prof.ops) and "3 of 3 ops" in text


def _pad_conv_model() -> bytes:
    """PAD (height and width) then a VALID 3x3 stride-2 CONV_2D, as the converter writes an
    ONNX convolution whose padding TFLite's SAME cannot express."""
    import numpy as np

    from edgekit.converters.ir.graph import Graph

    g = Graph()
    g.add_tensor("image", (1, 64, 64, 3), np.float32)
    paddings = g.add_const(np.array([[0, 0], [1, 1], [1, 1], [0, 0]], np.int32), "paddings")
    g.add_tensor("padded", (1, 66, 66, 3), np.float32)
    g.add_node("PAD", ["image", paddings], ["padded"], {})
    w = g.add_const(np.random.default_rng(0).standard_normal((16, 3, 3, 3)).astype(np.float32), "w")
    b = g.add_const(np.zeros(16, np.float32), "b")
    g.add_tensor("features", (1, 32, 32, 16), np.float32)
    g.add_node("CONV_2D", ["padded", w, b], ["features"], {"padding": "VALID", "stride_h": 2, "stride_w": 2})
    g.inputs, g.outputs = ["image"], ["features"]
    g.metadata["_signature"] = {"inputs": ["image"], "outputs": ["features"]}
    return serialize(g)


def test_pad_fused_into_the_convolution_is_timed_with_it(tmp_path):
    path = tmp_path / "pad_conv.tflite"
    path.write_bytes(_pad_conv_model())
    prof = profile_tflite(path, threads=1, runs=5)
    pad, conv = prof.ops
    assert (pad.op, conv.op) == ("PAD", "CONV_2D")
    assert "timed with the next convolution" in pad.name and conv.avg_ms > 0 and pad.avg_ms >= 0
    alone = profile_tflite(path, threads=1, runs=5, xnnpack=False)  # TFLite's own kernels: each op alone
    assert all(o.avg_ms > 0 for o in alone.ops) and "timed with" not in alone.ops[0].name


def test_bench_op_profile_cli(tmp_path):
    path = tmp_path / "m.tflite"
    path.write_bytes(int8_model())
    result = subprocess.run(
        [sys.executable, "-m", "edgekit", "bench", str(path), "--op-profile", "--min-secs", "0.05", "--threads", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "Top by Computation Time" in result.stdout and "per-op total / measured" in result.stdout
