"""Issue 25: a model that already takes NHWC (tf2onnx from Keras starts with Transpose(0, 3, 1, 2))
keeps its layout; it used to be "converted" to NHWC again and silently took [1, H, C, W]."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from edgekit.converters import convert, verify
from edgekit.converters.verification import TFLiteRunner


def keras_like(h: int = 16, w: int = 12) -> object:
    """As tf2onnx writes a Keras CNN: NHWC input, Transpose to NCHW, conv, ReLU, pooling, dense."""
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Transpose", ["keras_tensor"], ["t"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["t", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "d"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "keras",
        [helper.make_tensor_value_info("keras_tensor", TensorProto.FLOAT, [1, h, w, 3])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 5])],
        [
            numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "w"),
            numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "b"),
            numpy_helper.from_array(rng.standard_normal((5, 8)).astype(np.float32), "d"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_an_nhwc_input_keeps_its_layout(tmp_path):
    model = keras_like()
    out = tmp_path / "keras.tflite"
    result = convert(model, out)
    runner = TFLiteRunner(out.read_bytes())
    assert list(runner.input_details["keras_tensor"]["shape"]) == [1, 16, 12, 3]  # not [1, 16, 3, 12]
    assert result.io_layout["keras_tensor"].startswith("NHWC in ONNX already")
    assert result.transposes == 0 and result.partitions == 1, result.ops
    assert verify(model, out, samples=4).min_sqnr_db >= 60


def test_an_nhwc_input_in_int8_stays_in_one_partition(tmp_path):
    model = keras_like()
    calibration = np.random.default_rng(1).uniform(0, 1, (16, 1, 16, 12, 3)).astype(np.float32)
    out = tmp_path / "keras_int8.tflite"
    result = convert(model, out, quantize="int8", calibration=calibration)
    assert result.partitions == 1 and result.transposes == 0, result.ops
    assert verify(model, out, data={"keras_tensor": calibration[:4]}).min_sqnr_db >= 25
