"""Issue 21: verification on models whose inputs are not image batches: a 0-d input (a scalar such
as silero-vad's sample rate) crashed --verify with an IndexError."""

from __future__ import annotations

import subprocess
import sys

import onnx
from onnx import TensorProto, helper


def _scaled(path) -> None:
    inputs = [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4]),
        helper.make_tensor_value_info("s", TensorProto.FLOAT, []),
    ]
    graph = helper.make_graph([helper.make_node("Mul", ["x", "s"], ["y"])], "scaled", inputs,
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])  # fmt: skip
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def test_verify_takes_a_scalar_input(tmp_path):
    model, out = tmp_path / "scaled.onnx", tmp_path / "scaled.tflite"
    _scaled(model)
    run = subprocess.run([sys.executable, "-m", "edgekit", "convert", str(model), "-o", str(out), "--verify"],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert run.returncode == 0, run.stderr
    row = next(line for line in run.stdout.splitlines() if line.startswith("y "))
    assert row.split()[1] == "inf"  # a product of two inputs: exact in float32 against onnxruntime


def test_report_on_a_dynamic_batch_model_uses_the_given_shape(tmp_path):
    """convert --report on a model whose batch is dynamic ran the per-layer reference with batch 0
    (ValueError) even with --input-shape given."""
    import json

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "dynamic",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])])  # fmt: skip
    model, out, report = tmp_path / "dynamic.onnx", tmp_path / "dynamic.tflite", tmp_path / "report.json"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), model)
    command = ["convert", str(model), "-o", str(out), "--input-shape", "x=2,4", "--report", str(report)]
    run = subprocess.run([sys.executable, "-m", "edgekit", *command], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    layers = json.loads(report.read_text())["layers"]
    assert [layer["tensor"] for layer in layers] == ["y"] and layers[0]["sqnr_db"] == float("inf")


def test_the_table_names_outputs_whole():
    """basic-pitch's three outputs all printed as `StatefulPartitionedCall:` (cut at 24 characters)."""
    from edgekit.converters.verification import OutputComparison, VerificationReport

    names = [f"StatefulPartitionedCall:{k}" for k in range(3)]
    report = VerificationReport(3, [OutputComparison(name, 40.0, 0.99, 0.1, None) for name in names])
    rows = report.table().splitlines()[1:-1]
    assert [row.split()[0] for row in rows] == names
    assert len({len(row) for row in report.table().splitlines()[:-1]}) == 1  # the columns still line up
