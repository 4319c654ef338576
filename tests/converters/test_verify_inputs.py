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
