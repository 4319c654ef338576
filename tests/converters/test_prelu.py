"""PRelu: float32 keeps one PRELU op (XNNPACK runs it in float); int8 rewrites it into ops
XNNPACK runs in int8, as its delegate takes PRELU in float only and an int8 PRELU would split the
model in XNNPACK partitions around TFLite's reference kernel."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

from edgekit.converters import convert, pipeline, verify
from edgekit.converters.passes.xnnpack_forms import prelu_as_int8_arithmetic
from tests.converters.onnx_models import model, rand

CHANNELS = 16
# slopes of MTCNN's P/R/O-Nets span -1.28 to 1.30
MIXED = np.linspace(-1.3, 1.3, CHANNELS)  # negative, between 0 and 1, above 1
UP_TO_ONE = np.linspace(-0.6, 0.9, CHANNELS)
ABOVE_ONE = np.linspace(1.1, 2.0, CHANNELS)


def conv_prelu_conv(slope: np.ndarray) -> onnx.ModelProto:
    """NCHW Conv -> PRelu -> 1x1 Conv: PRelu inside the trunk, where int8 keeps it int8."""
    return model(
        [
            helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
            helper.make_node("PRelu", ["c", "slope"], ["p"]),
            helper.make_node("Conv", ["p", "w2"], ["y"]),
        ],
        {"x": (1, 3, 16, 16)},
        {"y": None},
        {"w": rand(CHANNELS, 3, 3, 3), "slope": slope.astype(np.float32), "w2": rand(4, CHANNELS, 1, 1, seed=2)},
    )


def gemm_prelu_gemm(slope: np.ndarray) -> onnx.ModelProto:
    """PRelu on a fully connected layer's [1, C] output (O-Net's and R-Net's heads)."""
    return model(
        [
            helper.make_node("Gemm", ["x", "w", "b"], ["c"], transB=1),
            helper.make_node("PRelu", ["c", "slope"], ["p"]),
            helper.make_node("Gemm", ["p", "w2"], ["y"], transB=1),
        ],
        {"x": (1, 24)},
        {"y": None},
        {
            "w": rand(CHANNELS, 24, scale=0.3),
            "b": rand(CHANNELS, seed=1, scale=0.1),
            "slope": slope.astype(np.float32),
            "w2": rand(4, CHANNELS, seed=2),
        },
    )


MODELS = {
    "mixed_c11": lambda: conv_prelu_conv(MIXED.reshape(CHANNELS, 1, 1)),
    "mixed_1c11": lambda: conv_prelu_conv(MIXED.reshape(1, CHANNELS, 1, 1)),
    "up_to_one_c11": lambda: conv_prelu_conv(UP_TO_ONE.reshape(CHANNELS, 1, 1)),
    "above_one_1c11": lambda: conv_prelu_conv(ABOVE_ONE.reshape(1, CHANNELS, 1, 1)),
    "scalar": lambda: conv_prelu_conv(np.array([0.25])),
    "equal_per_channel": lambda: conv_prelu_conv(np.full((CHANNELS, 1, 1), 0.2)),
    "fully_connected_mixed": lambda: gemm_prelu_gemm(MIXED),
}


def _calibration(m: onnx.ModelProto, count: int) -> np.ndarray:
    """``count`` samples of the input, uniform in [-1, 1] (a Gaussian's tails would make the
    min/max calibration, not PRelu, the error that shows)."""
    shape = [d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim]
    return np.random.default_rng(0).uniform(-1, 1, (count, *shape)).astype(np.float32)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_float32_keeps_one_prelu_op(name, tmp_path):
    m = MODELS[name]()
    result = convert(m, tmp_path / "m.tflite")
    report = verify(m, tmp_path / "m.tflite", samples=4)
    assert result.partitions == 1, result.ops
    assert sum(result.ops.get(op, 0) for op in ("PRELU", "LEAKY_RELU")) == 1, result.ops
    assert report.min_sqnr_db >= 60, report.table()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_int8_form_is_exact_in_float(name, tmp_path, monkeypatch):
    """The rewrite the int8 quantizer applies, converted in float: onnxruntime's PRelu to float
    precision."""
    lowered = pipeline.to_tflite_graph
    monkeypatch.setattr(pipeline, "to_tflite_graph", lambda *a, **k: prelu_as_int8_arithmetic(lowered(*a, **k)))
    m = MODELS[name]()
    result = convert(m, tmp_path / "m.tflite")
    assert "PRELU" not in result.ops, result.ops
    assert verify(m, tmp_path / "m.tflite", samples=4).min_sqnr_db >= 60


@pytest.mark.parametrize("name", sorted(MODELS))
def test_int8_runs_in_one_xnnpack_partition_and_matches_onnxruntime(name, tmp_path):
    m = MODELS[name]()
    out = tmp_path / "m.tflite"
    result = convert(m, out, quantize="int8", calibration=_calibration(m, 256))
    report = verify(m, out, data={"x": _calibration(m, 300)[256:]})
    print(name, result.ops, f"{report.min_sqnr_db:.2f} dB")
    assert "PRELU" not in result.ops, result.ops
    assert result.partitions == 1, result.ops
    assert report.min_sqnr_db >= 30, report.table()


@pytest.mark.parametrize("slope", [0.25, 0.2])
def test_one_shared_slope_is_leaky_relu(slope, tmp_path):
    """A shared slope, given once or per channel, is a LEAKY_RELU in both types: one op,
    exact, and XNNPACK runs it in int8."""
    for shape in ((1,), (CHANNELS, 1, 1)):
        result = convert(conv_prelu_conv(np.full(shape, slope)), tmp_path / "m.tflite")
        assert result.ops.get("LEAKY_RELU") == 1 and "PRELU" not in result.ops, result.ops


def test_zero_slope_is_relu(tmp_path):
    """XNNPACK refuses a LEAKY_RELU with alpha 0; a zero slope is a RELU, fused into the conv."""
    result = convert(conv_prelu_conv(np.zeros((CHANNELS, 1, 1))), tmp_path / "m.tflite")
    assert "LEAKY_RELU" not in result.ops and "PRELU" not in result.ops, result.ops
    assert result.partitions == 1, result.ops
