"""int8 weight scales that also serve the bias and the kernel (issue 21, found by
bench/architectures.py on timm and torchvision models with random weights):

- a layer whose input scale is tiny (random-weight activations near 1e-9) had its int32 bias
  clipped without a word, so it answered about 0 instead of its bias (lraspp: 6.9 dB against
  onnxruntime's 45);
- a convolution whose weights are all zero (timm zero-initialises the last BatchNorm of residual
  branches; folded, the convolution before it is all zeros) got weight scale 1.0, a
  requantization multiplier outside XNNPACK's bounds, and LiteRT aborted the whole process.

Conversions run in a subprocess: the second bug killed the interpreter, not just the test."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _conv_model(path, weights: np.ndarray, bias: np.ndarray, scale_input: float) -> None:
    inits = [
        numpy_helper.from_array(np.array(scale_input, np.float32), "k"),
        numpy_helper.from_array(weights.astype(np.float32), "w"),
        numpy_helper.from_array(bias.astype(np.float32), "b"),
        numpy_helper.from_array(np.ones((1, weights.shape[0], 1, 1), np.float32), "one"),
    ]
    nodes = [
        helper.make_node("Mul", ["x", "k"], ["small"]),
        helper.make_node("Conv", ["small", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["c", "one"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], inits)  # fmt: skip
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def _int8_sqnr(tmp_path, name: str) -> float:
    calibration = tmp_path / "calibration.npy"
    np.save(calibration, np.random.default_rng(0).standard_normal((16, 1, 3, 8, 8)).astype(np.float32))
    command = ["convert", str(tmp_path / f"{name}.onnx"), "-o", str(tmp_path / f"{name}.tflite"), "--quantize", "int8",
               "--calibration", str(calibration), "--verify", "--no-speed-check"]  # fmt: skip
    run = subprocess.run([sys.executable, "-m", "edgekit", *command], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    row = next(line for line in run.stdout.splitlines() if line.startswith("y "))
    return float(row.split()[1])


def test_a_tiny_input_scale_keeps_the_bias(tmp_path):
    rng = np.random.default_rng(1)
    _conv_model(tmp_path / "tiny.onnx", rng.standard_normal((4, 3, 3, 3)), np.array([0.5, -1.0, 2.0, 0.25]), 1e-9)
    assert _int8_sqnr(tmp_path, "tiny") >= 30


def test_all_zero_weights_convert_and_answer_their_bias(tmp_path):
    _conv_model(tmp_path / "zero.onnx", np.zeros((4, 3, 3, 3)), np.array([0.5, -1.0, 2.0, 0.25]), 1000.0)
    assert _int8_sqnr(tmp_path, "zero") >= 30
