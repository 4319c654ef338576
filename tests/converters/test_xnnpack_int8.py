"""int8 in forms LiteRT's XNNPACK delegate takes: each small model shows one pattern that used to
leave the delegate in trained models (PP-OCRv4, YOLOv8n, ddddocr, silero-vad), is converted in
one partition, and computes what onnxruntime computes."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from edgekit.converters import convert, verify
from tests.converters.onnx_models import model, rand
from tests.converters.test_recurrent import lstm_model

N = helper.make_node


def _int8(m, tmp_path, calibration):
    out = tmp_path / "m.tflite"
    result = convert(m, out, quantize="int8", calibration=calibration)
    return out, result


def _uniform(*shape: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)


def test_tiny_constant_add_and_nearest_upsample_stay_in_the_delegate(tmp_path):
    """Add(conv, 1e-6) and a nearest 2x upsample (a broadcasting ADD of zeros): each constant got a
    scale of its own range (1e-8, 4e-33), below XNNPACK's input/output bound of 2^-10 (PP-OCRv4
    det: 12 partitions, YOLOv8n: 3)."""
    m = model(
        [
            N("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
            N("Add", ["c1", "epsilon"], ["a"]),
            N("Resize", ["a", "", "scales"], ["up"], mode="nearest"),
            N("Conv", ["up", "w2", "b2"], ["y"], pads=[1, 1, 1, 1]),
        ],
        {"x": (1, 4, 8, 8)},
        {"y": (1, 8, 16, 16)},
        {
            "w1": rand(8, 4, 3, 3, scale=0.3),
            "b1": rand(8, seed=1),
            "epsilon": np.full((1, 1, 1, 1), 1e-6, np.float32),
            "scales": np.array([1, 1, 2, 2], np.float32),
            "w2": rand(8, 8, 3, 3, seed=2, scale=0.3),
            "b2": rand(8, seed=3),
        },
    )
    out, result = _int8(m, tmp_path, _uniform(8, 1, 4, 8, 8))
    assert result.partitions == 1, result.ops
    assert verify(m, out, data={"x": _uniform(4, 1, 4, 8, 8, seed=2)}).min_sqnr_db >= 30


def test_channel_of_denormal_weights_keeps_the_conv_in_the_delegate(tmp_path):
    """A trained channel with weights near 1e-40 had a denormal per-channel scale, which XNNPACK
    refuses (PP-OCRv4 rec: three squeeze-excitation convolutions)."""
    w = rand(8, 4, 1, 1, scale=0.5)
    w[3] = 1e-40
    m = model([N("Conv", ["x", "w", "b"], ["y"])], {"x": (1, 4, 6, 6)}, {"y": (1, 8, 6, 6)}, {"w": w, "b": rand(8)})
    out, result = _int8(m, tmp_path, _uniform(8, 1, 4, 6, 6))
    assert result.partitions == 1, result.ops
    assert verify(m, out, data={"x": _uniform(4, 1, 4, 6, 6, seed=2)}).min_sqnr_db >= 30


def test_attention_matmul_second_input_has_zero_point_zero(tmp_path):
    """Q @ K^T of activations: XNNPACK's int8 BATCH_MATMUL takes only a zero zero point on its
    second input (PP-OCRv4 rec's attention: four BATCH_MATMULs left out)."""
    m = model(
        [
            N("MatMul", ["x", "wq"], ["q"]),
            N("MatMul", ["x", "wk"], ["k"]),
            N("Add", ["k", "shift"], ["k_shifted"]),  # keys off-centre: an asymmetric range
            N("Transpose", ["k_shifted"], ["kt"], perm=[0, 2, 1]),
            N("MatMul", ["q", "kt"], ["y"]),
        ],
        {"x": (1, 10, 16)},
        {"y": (1, 10, 10)},
        {"wq": rand(16, 12, scale=0.3), "wk": rand(16, 12, seed=1, scale=0.3), "shift": np.float32(1.5)},
    )
    out, result = _int8(m, tmp_path, _uniform(16, 1, 10, 16))
    assert result.ops.get("BATCH_MATMUL") == 1 and result.partitions == 1, result.ops
    assert verify(m, out, data={"x": _uniform(4, 1, 10, 16, seed=2)}).min_sqnr_db >= 25


@pytest.mark.parametrize("clamp", ["Relu", "Clip"])
def test_lone_relu_is_a_requantization(tmp_path, clamp):
    """A RELU no op before it can take as a fused activation: XNNPACK has RELU only in float, so it
    split the graph (silero-vad: five). Saturating onto the output's grid [0, hi] is the same clamp."""
    clip_inputs = ["zero", "six"] if clamp == "Clip" else []
    m = model(
        [N(clamp, ["x", *clip_inputs], ["r"]), N("Conv", ["r", "w", "b"], ["y"])],
        {"x": (1, 4, 6, 6)},
        {"y": (1, 8, 6, 6)},
        {"w": rand(8, 4, 1, 1, scale=0.5), "b": rand(8), "zero": np.float32(0), "six": np.float32(6)},
    )
    calibration = _uniform(8, 1, 4, 6, 6) * 8
    out, result = _int8(m, tmp_path, calibration)
    assert clamp.upper() not in result.ops and "RELU" not in result.ops and result.partitions == 1, result.ops
    assert verify(m, out, data={"x": _uniform(4, 1, 4, 6, 6, seed=2) * 8}).min_sqnr_db >= 30


def test_reflect_pad_on_the_input_runs_before_the_delegate(tmp_path):
    """MIRROR_PAD has no XNNPACK kernel in any type: on a float input it stays float, ahead of the
    QUANTIZE, instead of cutting the int8 graph after it (silero-vad's STFT padding)."""
    m = model(
        [
            N("Pad", ["x", "pads"], ["p"], mode="reflect"),
            N("Conv", ["p", "w", "b"], ["y"]),
        ],
        {"x": (1, 4, 8, 8)},
        {"y": (1, 8, 8, 8)},
        {"pads": np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "w": rand(8, 4, 3, 3, scale=0.3), "b": rand(8)},
    )
    out, result = _int8(m, tmp_path, _uniform(8, 1, 4, 8, 8))
    assert result.partitions == 1, result.ops
    assert verify(m, out, data={"x": _uniform(4, 1, 4, 8, 8, seed=2)}).min_sqnr_db >= 30


@pytest.mark.parametrize("quantize", [None, "int8"])
def test_lstm_without_initial_state_is_one_partition(tmp_path, quantize):
    """An LSTM with no initial state over 8 steps: its first step multiplies and adds constant
    zeros (int8: tensors with an empty range, refused by XNNPACK) and its output concatenates 8
    steps (XNNPACK takes at most 5 inputs). ddddocr's recogniser: 4 partitions in int8, 2 in fp32."""
    m = lstm_model("bidirectional", with_state=False, seq=8)
    calibration = _uniform(16, 8, 2, 5)
    out = tmp_path / "lstm.tflite"
    options = {"quantize": quantize, "calibration": calibration} if quantize else {}
    result = convert(m, out, **options)
    assert result.partitions == 1, result.ops
    report = verify(m, out, data={"x": _uniform(4, 8, 2, 5, seed=2)})
    assert report.min_sqnr_db >= (20 if quantize else 60), report.table()
