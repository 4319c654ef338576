"""Patterns from current architectures that used to leave LiteRT's XNNPACK delegate (issue 21):
each converts to one partition in fp32 and int8, matches onnxruntime, and the op XNNPACK
refused is gone."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx
import pytest
from onnx import helper

from edgekit.converters import convert, verify
from tests.converters.onnx_models import model, rand

N = helper.make_node
NCHW = {"x": (1, 8, 10, 12)}
END = np.iinfo(np.int64).max


def _slice(x: str, y: str, name: str, starts, axes, steps) -> list:
    return [
        N("Constant", [], [f"{name}_st"], value=helper.make_tensor("v", 7, [len(starts)], starts)),
        N("Constant", [], [f"{name}_en"], value=helper.make_tensor("v", 7, [len(axes)], [END] * len(axes))),
        N("Constant", [], [f"{name}_ax"], value=helper.make_tensor("v", 7, [len(axes)], axes)),
        N("Constant", [], [f"{name}_sp"], value=helper.make_tensor("v", 7, [len(steps)], steps)),
        N("Slice", [x, f"{name}_st", f"{name}_en", f"{name}_ax", f"{name}_sp"], [y]),
    ]


def levit_subsample() -> onnx.ModelProto:
    """LeViT's Subsample, ``x.view(B, H, W, C)[:, ::2, ::2]`` between two linear layers: the
    exporters write one Slice per axis, on a channels-last tensor (7 -> 4, odd)."""
    return model(
        [
            N("MatMul", ["x", "w1"], ["a"]),
            N("Reshape", ["a", "hw"], ["grid"]),
            *_slice("grid", "rows", "s1", [0], [1], [2]),
            *_slice("rows", "sub", "s2", [0], [2], [2]),
            N("Reshape", ["sub", "tokens"], ["t"]),
            N("MatMul", ["t", "w2"], ["y"]),
        ],
        {"x": (1, 49, 16)},
        {"y": None},
        {
            "w1": rand(16, 16, seed=1, scale=0.3),
            "w2": rand(16, 8, seed=2, scale=0.3),
            "hw": np.array([1, 7, 7, 16], np.int64),
            "tokens": np.array([1, 16, 16], np.int64),
        },
    )


def nchw_strided_slice() -> onnx.ModelProto:
    """``x[:, :, 1::2, ::3]`` after a convolution: an offset start and two different steps."""
    return model(
        [
            N("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
            *_slice("c", "s", "s", [1, 0], [2, 3], [2, 3]),
            N("Conv", ["s", "w2"], ["y"]),
        ],
        NCHW,
        {"y": None},
        {"w": rand(6, 8, 3, 3, seed=3, scale=0.3), "w2": rand(4, 6, 1, 1, seed=12, scale=0.3)},
    )


def nchw_row_slice() -> onnx.ModelProto:
    """``x[:, :, ::2]`` between convolutions: one strided axis, the NHWC trunk's height."""
    return model(
        [
            N("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
            *_slice("c", "s", "s", [0], [2], [2]),
            N("Conv", ["s", "w2"], ["y"]),
        ],
        NCHW,
        {"y": None},
        {"w": rand(6, 8, 3, 3, seed=3, scale=0.3), "w2": rand(4, 6, 1, 1, seed=12, scale=0.3)},
    )


def pool_1x1_stride2(op: str) -> Callable[[], onnx.ModelProto]:
    """EfficientFormerV2's attention query pool: a 1x1 pool with stride 2 (7 -> 4, odd)."""
    return lambda: model(
        [
            N("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
            N(op, ["c"], ["p"], kernel_shape=[1, 1], strides=[2, 2]),
            N("Conv", ["p", "w2"], ["y"]),
        ],
        {"x": (1, 8, 7, 7)},
        {"y": None},
        {"w": rand(8, 8, 3, 3, seed=4, scale=0.3), "w2": rand(8, 8, 1, 1, seed=5, scale=0.3)},
    )


def identity_gather() -> onnx.ModelProto:
    """The head torch's dynamo exporter writes for convnext/edgenext: a keep-dim mean, a flatten
    and a Gather of every index in order (``as_strided``)."""
    return model(
        [
            N("Conv", ["x", "w"], ["c"]),
            N("ReduceMean", ["c", "axes"], ["m"], keepdims=1),
            N("Reshape", ["m", "flat"], ["f"]),
            N("Gather", ["f", "order"], ["g"], axis=0),
            N("Conv", ["g", "w2"], ["y"]),
        ],
        NCHW,
        {"y": None},
        {
            "w": rand(16, 8, 1, 1, seed=6, scale=0.3),
            "axes": np.array([2, 3], np.int64),
            "flat": np.array([-1], np.int64),
            "order": np.arange(16, dtype=np.int64).reshape(1, 16, 1, 1),
            "w2": rand(4, 16, 1, 1, seed=13, scale=0.3),
        },
        opset=18,
    )


def pad_with_ones() -> onnx.ModelProto:
    """EfficientViT's LiteMLA: ``F.pad(v, (0, 1), value=1)`` appends a column of ones."""
    return model(
        [
            N("MatMul", ["x", "w"], ["v"]),
            N("Pad", ["v", "pads", "one"], ["p"], mode="constant"),
            N("MatMul", ["p", "w2"], ["y"]),
        ],
        {"x": (1, 4, 49, 8)},
        {"y": None},
        {
            "w": rand(8, 8, seed=7, scale=0.3),
            "pads": np.array([0, 0, 0, 0, 0, 0, 0, 1], np.int64),
            "one": np.array(1.0, np.float32),
            "w2": rand(9, 8, seed=8, scale=0.3),
        },
    )


def gather_range() -> onnx.ModelProto:
    """A Gather of consecutive indices (channels 2..5) is a slice."""
    return model(
        [N("Gather", ["x", "order"], ["g"], axis=1), N("Conv", ["g", "w"], ["y"])],
        NCHW,
        {"y": None},
        {"order": np.arange(2, 6, dtype=np.int64), "w": rand(4, 4, 1, 1, seed=14, scale=0.3)},
    )


def pad_minus_inf_before_max_pool() -> onnx.ModelProto:
    """timm's MaxPool2dSame: ``F.pad(x, pads, value=-inf)`` and a max pool without padding. In
    int8 the border must saturate to the bottom of the range, not stretch the range to -inf."""
    return model(
        [
            N("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
            N("Pad", ["c", "pads", "minus_inf"], ["p"], mode="constant"),
            N("MaxPool", ["p"], ["m"], kernel_shape=[3, 3], strides=[2, 2]),
            N("Conv", ["m", "w2"], ["y"]),
        ],
        NCHW,
        {"y": None},
        {
            "w": rand(8, 8, 3, 3, seed=15, scale=0.3),
            "pads": np.array([0, 0, 0, 0, 0, 0, 1, 1], np.int64),
            "minus_inf": np.array(-np.inf, np.float32),
            "w2": rand(4, 8, 1, 1, seed=16, scale=0.3),
        },
    )


def concat_constant_channels() -> onnx.ModelProto:
    """A convolution trunk concatenating a constant feature map: the NHWC pass must permute
    the constant (it has no producer) to move the layout transposes past the concatenation."""
    return model(
        [
            N("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
            N("Concat", ["c", "k"], ["j"], axis=1),
            N("Conv", ["j", "w2"], ["y"]),
        ],
        NCHW,
        {"y": None},
        {"w": rand(6, 8, 3, 3, seed=9, scale=0.3), "k": rand(1, 2, 10, 12, seed=10), "w2": rand(4, 8, 1, 1, seed=11)},
    )


def concat_constant_last_axis() -> onnx.ModelProto:
    """The KeyError the sweep found: a Concat of a 4-D input and a constant of ones."""
    return model(
        [N("Concat", ["x", "ones"], ["y"], axis=3)],
        {"x": (1, 196, 8, 16)},
        {"y": None},
        {"ones": np.ones((1, 196, 8, 1), np.float32)},
    )


def max_of_two_branches() -> onnx.ModelProto:
    """Max of two convolutions' outputs and a Clip to arbitrary bounds: XNNPACK runs MAXIMUM and
    MINIMUM in float only, and int8 ones split the partition (kept float inside it now)."""
    return model(
        [
            N("Conv", ["x", "w"], ["a"]),
            N("Conv", ["x", "w2"], ["b"]),
            N("Max", ["a", "b"], ["m"]),
            N("Clip", ["m", "lo", "hi"], ["c"]),
            N("Conv", ["c", "w3"], ["y"]),
        ],
        NCHW,
        {"y": None},
        {
            "w": rand(8, 8, 1, 1, seed=17, scale=0.3),
            "w2": rand(8, 8, 1, 1, seed=18, scale=0.3),
            "lo": np.array(-0.5, np.float32),
            "hi": np.array(0.7, np.float32),
            "w3": rand(4, 8, 1, 1, seed=19, scale=0.3),
        },
    )


@dataclass(frozen=True)
class Pattern:
    build: Callable[[], onnx.ModelProto]
    gone: str | None  # the TFLite op XNNPACK refused, which must no longer be emitted


PATTERNS = {
    "levit_subsample": Pattern(levit_subsample, "STRIDED_SLICE"),
    "nchw_strided_slice": Pattern(nchw_strided_slice, "STRIDED_SLICE"),
    "nchw_row_slice": Pattern(nchw_row_slice, "STRIDED_SLICE"),
    "average_pool_1x1_stride2": Pattern(pool_1x1_stride2("AveragePool"), "AVERAGE_POOL_2D"),
    "max_pool_1x1_stride2": Pattern(pool_1x1_stride2("MaxPool"), "MAX_POOL_2D"),
    "identity_gather": Pattern(identity_gather, "GATHER"),
    "gather_range": Pattern(gather_range, "GATHER"),
    "pad_with_ones": Pattern(pad_with_ones, "PADV2"),
    "pad_minus_inf_before_max_pool": Pattern(pad_minus_inf_before_max_pool, "PADV2"),
    "concat_constant_channels": Pattern(concat_constant_channels, None),
    "concat_constant_last_axis": Pattern(concat_constant_last_axis, None),
    "max_of_two_branches": Pattern(max_of_two_branches, None),
}


@pytest.mark.parametrize("mode", ["fp32", "int8"])
@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_pattern_is_one_partition_and_matches_onnxruntime(name, mode, tmp_path):
    pattern = PATTERNS[name]
    m = pattern.build()
    shape = [d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim]
    out = tmp_path / f"{name}.tflite"
    if mode == "fp32":
        result = convert(m, out)
    else:
        calibration = np.random.default_rng(0).standard_normal((16, *shape[1:])).astype(np.float32)
        result = convert(m, out, quantize="int8", calibration=calibration)
    report = verify(m, out, samples=4)
    print(name, mode, result.partitions, f"{report.min_sqnr_db:.1f}", result.ops)
    assert result.partitions == 1, result.ops
    assert pattern.gone not in result.ops, result.ops
    assert report.min_sqnr_db >= (60 if mode == "fp32" else 25), report.table()


@pytest.mark.parametrize("name", ["nchw_strided_slice", "nchw_row_slice", "average_pool_1x1_stride2"])
def test_subsampling_in_a_convolution_trunk_needs_no_transpose(name, tmp_path):
    """The subsampling runs over the NHWC trunk's channels: the layout pass cancels every
    TRANSPOSE around it (a depthwise convolution over another axis would keep two)."""
    result = convert(PATTERNS[name].build(), tmp_path / "m.tflite")
    assert result.transposes == 0, result.ops


def test_the_ops_between_partitions_are_named(tmp_path):
    """A GATHER with shuffled indices (XNNPACK has none) splits two convolutions into two
    partitions; the runtime names it as the one op left to TFLite's kernels, from the loaded
    interpreter's DELEGATE nodes, and a model XNNPACK takes whole has none."""
    from edgekit.runtime import load

    m = model(
        [N("Conv", ["x", "w"], ["c"]), N("Gather", ["c", "i"], ["g"], axis=1), N("Conv", ["g", "w2"], ["y"])],
        {"x": (1, 4, 8, 8)},
        {"y": None},
        {"w": rand(6, 4, 1, 1), "i": np.array([2, 0, 1, 5, 4, 3], np.int64), "w2": rand(3, 6, 1, 1, seed=2)},
    )
    result = convert(m, tmp_path / "split.tflite")
    session = load(tmp_path / "split.tflite")
    assert session.delegated_partitions() == result.partitions == 2
    assert [op for _, op in session.undelegated_ops()] == ["GATHER"]
    assert result.cpu_ops == {"GATHER": 1}  # what convert prints and reports
    whole = model([N("Conv", ["x", "w"], ["y"])], {"x": (1, 4, 8, 8)}, {"y": None}, {"w": rand(6, 4, 1, 1)})
    convert(whole, tmp_path / "whole.tflite")
    assert load(tmp_path / "whole.tflite").undelegated_ops() == []
