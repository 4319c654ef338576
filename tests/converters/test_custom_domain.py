"""Issue 21: a model with onnxruntime's own ops (com.microsoft: what its quantizer and graph
optimizer write) is refused with every such op named and counted, not only the first."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper


def _contrib_model(path) -> None:
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((8, 8)).astype(np.float32), "w")
    nodes = [
        helper.make_node("FusedMatMul", ["x", "w"], ["m"], domain="com.microsoft", name="fused0", alpha=1.0),
        helper.make_node("Gelu", ["m"], ["g"], domain="com.microsoft", name="gelu0"),
        helper.make_node("Relu", ["g"], ["r"], name="relu0"),
        helper.make_node("Gelu", ["r"], ["y"], domain="com.microsoft", name="gelu1"),
    ]
    graph = helper.make_graph(
        nodes, "contrib", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])], [w],
    )  # fmt: skip
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    )
    onnx.save(model, path)


def test_every_com_microsoft_op_is_named(tmp_path):
    model, out = tmp_path / "contrib.onnx", tmp_path / "contrib.tflite"
    _contrib_model(model)
    ort.InferenceSession(str(model)).run(None, {"x": np.ones((1, 8), np.float32)})  # a model onnxruntime runs
    run = subprocess.run([sys.executable, "-m", "edgekit", "convert", str(model), "-o", str(out)],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    message = run.stderr.strip().splitlines()
    assert len(message) == 1, message
    assert "com.microsoft.FusedMatMul x1 (first: 'fused0')" in message[0]
    assert "com.microsoft.Gelu x2 (first: 'gelu0')" in message[0]
    assert not out.exists()
