"""Issue 21: a transposed convolution whose kernel equals its stride (the upsampling head of U-Net
and DBNet-style text detectors) is written as a 1x1 CONV_2D and DEPTH_TO_SPACE, which XNNPACK
runs far faster than its int8 TRANSPOSE_CONV; the result must still match onnxruntime, in float
exactly and in int8 as closely as the TRANSPOSE_CONV did."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from edgekit.converters import convert, verify
from tests.converters.onnx_models import model, rand

N = helper.make_node


def _upsample(block: int, cin: int = 8, cout: int = 5, bias: bool = True):
    inputs = ["x", "w", "b"] if bias else ["x", "w"]
    consts = {"w": rand(cin, cout, block, block, seed=11, scale=0.4)}
    if bias:
        consts["b"] = rand(cout, seed=12)
    nodes = [N("ConvTranspose", inputs, ["u"], strides=[block, block]), N("Relu", ["u"], ["y"])]
    return model(nodes, {"x": (1, cin, 9, 7)}, {"y": None}, consts)


@pytest.mark.parametrize("block,bias", [(2, True), (3, False)])
def test_kernel_equal_to_stride_upsampling_is_depth_to_space(block, bias, tmp_path):
    m = _upsample(block, bias=bias)
    result = convert(m, tmp_path / "f.tflite")
    assert "TRANSPOSE_CONV" not in result.ops and "DEPTH_TO_SPACE" in result.ops, result.ops
    assert verify(m, tmp_path / "f.tflite", samples=4).min_sqnr_db >= 60
    calibration = np.random.default_rng(3).standard_normal((16, 8, 9, 7)).astype(np.float32)
    q = convert(m, tmp_path / "q.tflite", quantize="int8", calibration=calibration)
    assert "TRANSPOSE_CONV" not in q.ops and q.partitions == 1, (q.ops, q.partitions)
    assert verify(m, tmp_path / "q.tflite", samples=4).min_sqnr_db >= 30


def test_overlapping_transposed_convolution_keeps_transpose_conv(tmp_path):
    m = model([N("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2])], {"x": (1, 8, 9, 7)}, {"y": None},
              {"w": rand(8, 5, 3, 3, seed=11, scale=0.4)})  # fmt: skip
    result = convert(m, tmp_path / "f.tflite")
    assert "TRANSPOSE_CONV" in result.ops
    assert verify(m, tmp_path / "f.tflite", samples=4).min_sqnr_db >= 60
