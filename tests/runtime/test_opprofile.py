"""Per-op profile: every op of the model is rebuilt alone, timed, and tabled."""

from __future__ import annotations

import subprocess
import sys

from edgekit.converters.tflite_import import read_graph
from edgekit.converters.tflite_writer import serialize
from edgekit.opprofile import profile_tflite
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
