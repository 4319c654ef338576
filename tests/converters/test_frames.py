"""Strided 1-D convolutions on few channels rewritten over frames (converters/passes/frames.py):
the numbers onnxruntime computes on the original model, in float and int8, and only where meant."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from edgekit.converters import convert, verify
from edgekit.converters.pipeline import import_onnx
from tests.converters.onnx_models import model, rand

N = helper.make_node


def strided_conv1d(cin: int, length: int, kernel: int, stride: int, pads=(0, 0), bias: bool = True, **attrs):
    """Conv1d(kernel, stride) -> Relu -> Conv1d(1): an audio front-end and a layer reading it."""
    inputs = ["x", "w", "b"] if bias else ["x", "w"]
    conv = N("Conv", inputs, ["c"], kernel_shape=[kernel], strides=[stride], pads=list(pads), **attrs)
    if attrs.get("auto_pad"):
        conv = N("Conv", inputs, ["c"], kernel_shape=[kernel], strides=[stride], **attrs)
    nodes = [conv, N("Relu", ["c"], ["r"]), N("Conv", ["r", "w2"], ["y"])]
    weights = {"w": rand(16, cin // attrs.get("group", 1), kernel, seed=1, scale=0.2)}
    weights["w2"] = rand(8, 16, 1, seed=3, scale=0.3)
    if bias:
        weights["b"] = rand(16, seed=2, scale=0.1)
    return model(nodes, {"x": (1, cin, length)}, {"y": None}, weights)


CASES = {  # name: (channels, length, kernel, stride, pads)
    "stft_256_128_cut": (1, 576, 256, 128, (0, 0)),  # silero-vad: the last 64 samples are never read
    "wav2vec_10_5": (1, 400, 10, 5, (0, 0)),
    "padded_3_2": (2, 33, 3, 2, (1, 1)),
    "kernel_shorter_than_stride": (1, 64, 3, 4, (0, 0)),
    "four_channels_asymmetric_pads": (4, 50, 7, 3, (2, 0)),
}


def _frame_convs(m) -> list:
    graph = import_onnx(m)
    return [n for n in graph.nodes if n.op == "Conv" and "_w_frames" in n.inputs[1]]


def _unframed(monkeypatch) -> None:
    from edgekit.converters.passes import frames

    monkeypatch.setattr(frames, "_frameable", lambda graph, node: False)


@pytest.mark.parametrize("name", sorted(CASES))
def test_framed_conv_matches_onnxruntime_in_float(name, tmp_path, monkeypatch):
    m = strided_conv1d(*CASES[name])
    assert len(_frame_convs(m)) == 1
    result = convert(m, tmp_path / "f.tflite")
    assert result.partitions == 1
    assert verify(m, tmp_path / "f.tflite", samples=4).min_sqnr_db >= 60
    _unframed(monkeypatch)
    plain = convert(m, tmp_path / "p.tflite")
    # one channel: the frames are a reshape; more: one transpose of the (at most 4-channel) input
    added = 0 if CASES[name][0] == 1 else 1
    assert result.ops.get("TRANSPOSE", 0) <= plain.ops.get("TRANSPOSE", 0) + added, (result.ops, plain.ops)


def test_valid_padding_and_no_bias(tmp_path):
    m = strided_conv1d(1, 64, 8, 4, bias=False, auto_pad="VALID")
    assert len(_frame_convs(m)) == 1
    convert(m, tmp_path / "f.tflite")
    assert verify(m, tmp_path / "f.tflite", samples=4).min_sqnr_db >= 60


def test_framed_int8_is_as_close_to_onnxruntime_as_before(tmp_path, monkeypatch):
    """The one convolution is quantized as before (per output channel, the same ranges), so int8
    loses no more; what changes is the kernel XNNPACK runs it with (its figures: docs/benchmarks.md)."""
    m = strided_conv1d(1, 576, 256, 128)
    data = np.random.default_rng(0).uniform(-1, 1, (24, 1, 576)).astype(np.float32)
    calibration, test = data[:16], data[16:]
    framed = convert(m, tmp_path / "framed.tflite", quantize="int8", calibration=calibration)
    framed_db = verify(m, tmp_path / "framed.tflite", data=test).min_sqnr_db
    _unframed(monkeypatch)
    plain = convert(m, tmp_path / "plain.tflite", quantize="int8", calibration=calibration)
    plain_db = verify(m, tmp_path / "plain.tflite", data=test).min_sqnr_db
    assert framed.partitions == plain.partitions == 1
    assert framed_db > 30 and framed_db > plain_db - 1.0, (plain_db, framed_db)


@pytest.mark.parametrize(
    "args, why",
    [
        ((5, 64, 4, 2), "more than 4 channels"),
        ((1, 64, 4, 1), "stride 1"),
    ],
)
def test_only_strided_convs_on_few_channels_are_rewritten(args, why):
    assert not _frame_convs(strided_conv1d(*args)), why


def test_dilated_and_grouped_convs_are_left_alone():
    assert not _frame_convs(strided_conv1d(1, 64, 3, 2, dilations=[2]))
    assert not _frame_convs(strided_conv1d(2, 64, 3, 2, group=2))
