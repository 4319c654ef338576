"""The quantizer's numbers, exactly: int8/int16 activation parameters, symmetric per-channel
weights, quantized values, int32 biases (``round``, not ``floor``) and the bias correction of
each weighted op (its sign and its grouping), checked against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.converters.quant.quantizer import (
    _bias_correction,
    activation_params,
    quantize_int8,
    quantize_values,
    symmetric16_params,
    symmetric_weights,
)
from tests.runtime.models import BIAS, WEIGHTS, float_graph


def test_int16_parameters_are_symmetric_over_the_wider_side():
    q = symmetric16_params(-3.0, 1.0)
    assert q.scale[0] == np.float32(3.0 / 32767.0) and q.zero_point[0] == 0
    assert symmetric16_params(-1.0, 2.0).scale[0] == np.float32(2.0 / 32767.0)
    assert symmetric16_params(-1.0, 2.0, min_scale=0.5).scale[0] == np.float32(0.5)
    assert symmetric16_params(0.0, 0.0).scale[0] == np.float32(1e-30 / 32767.0)


@pytest.mark.parametrize(
    ("lo", "hi", "scale", "zero_point"),
    [
        (-1.0, 3.0, 4 / 255, -64),  # -128 + 63.75 = -64.25 rounds to -64 (floor would give -65)
        (-1.0, 0.5, 1.5 / 255, 42),  # -128 + 170 = 42
        (2.0, 5.0, 5 / 255, -128),  # the range always holds 0
        (-5.0, -2.0, 5 / 255, 127),
        (-0.3, 0.0, 0.3 / 255, 127),
    ],
)
def test_int8_activation_parameters(lo, hi, scale, zero_point):
    q = activation_params(lo, hi)
    assert q.scale[0] == np.float32(scale) and q.zero_point[0] == zero_point


def test_int8_activation_parameters_of_an_empty_range_and_a_minimum_scale():
    q = activation_params(0.0, 0.0)
    assert q.scale[0] == np.float32(1e-30 / 255) and q.zero_point[0] == -128
    # (0, 1) at a least scale of 0.1: the range widens around its centre 0.5 to [-12.25, 13.25]
    q = activation_params(0.0, 1.0, min_scale=0.1)
    assert q.scale[0] == np.float32(0.1) and q.zero_point[0] == round(-128 + 122.5)
    # a least scale under the range's own changes nothing
    q = activation_params(-1.0, 3.0, min_scale=0.001)
    assert q.scale[0] == np.float32(4 / 255) and q.zero_point[0] == -64
    # [0, 11] at a least scale of 0.1: centre 5.5, widened to [-7.25, 18.25]
    q = activation_params(10.0, 11.0, min_scale=0.1)
    assert q.scale[0] == np.float32(0.1) and q.zero_point[0] == -56
    # widened far beyond the data (a range of 765 around 0.00005), and a small range widened a little
    q = activation_params(-0.0001, 0.0002, min_scale=3.0)
    assert q.scale[0] == np.float32(3.0) and q.zero_point[0] == -1
    q = activation_params(-0.0001, 0.004, min_scale=0.0002)  # centre 0.00195: [-0.02355, 0.02745]
    assert q.scale[0] == np.float32(0.0002) and q.zero_point[0] == -10
    q = activation_params(-1.0, 0.0, min_scale=0.012)  # centre -0.5: [-2.03, 1.03]
    assert q.scale[0] == np.float32(0.012) and q.zero_point[0] == 41
    q = activation_params(0.0, 1e5, min_scale=1000.0)  # centre 5e4: [-77500, 177500]
    assert q.scale[0] == np.float32(1000.0) and q.zero_point[0] == -50


def test_symmetric_weights_per_channel_and_per_tensor():
    w = np.array([[3.0, -1.0, 0.5], [0.0, 0.0, 0.0], [-0.2, 0.11, 0.05]])
    q, params = symmetric_weights(w, 0)
    assert q.dtype == np.int8 and params.axis == 0
    np.testing.assert_array_equal(params.scale, np.float32([3 / 127, 1.0, 0.2 / 127]))
    np.testing.assert_array_equal(params.zero_point, [0, 0, 0])
    np.testing.assert_array_equal(q, [[127, -42, 21], [0, 0, 0], [-127, 70, 32]])
    q, params = symmetric_weights(w, 1)  # along the other axis: amax per column 3, 1, 0.5
    assert params.axis == 1
    np.testing.assert_array_equal(params.scale, np.float32([3 / 127, 1 / 127, 0.5 / 127]))
    np.testing.assert_array_equal(q, [[127, -127, 127], [0, 0, 0], [-8, 14, 13]])
    q, params = symmetric_weights(w, None)
    assert params.scale.size == 1 and params.scale[0] == np.float32(3 / 127) and params.zero_point.tolist() == [0]
    np.testing.assert_array_equal(q, [[127, -42, 21], [0, 0, 0], [-8, 5, 2]])
    q, params = symmetric_weights(np.zeros((2, 2)), None)
    assert params.scale[0] == 1.0 and not q.any()
    q, params = symmetric_weights(np.array([[0.5, -0.2], [0.1, 0.0]]), None)  # a range under 1
    assert params.scale[0] == np.float32(0.5 / 127) and params.axis == 0  # per tensor: axis 0, as TFLite writes
    np.testing.assert_array_equal(q, [[127, -51], [25, 0]])


def test_a_channel_of_denormal_weights_gets_a_normal_scale_and_zeros():
    """XNNPACK refuses a float32 denormal scale: a channel's range is at least 2^-20 of the largest."""
    w = np.array([[1.0, -0.5], [1e-40, -1e-40], [0.0, 0.0], [2.0**-30, 0.0]])
    q, params = symmetric_weights(w, 0)
    floor = np.float32(2.0**-20 / 127)
    np.testing.assert_array_equal(params.scale, [np.float32(1 / 127), floor, np.float32(1.0), floor])
    np.testing.assert_array_equal(q, [[127, -64], [0, 0], [0, 0], [0, 0]])
    q, params = symmetric_weights(np.array([[2.0**-10, 0.0], [2.0**-12, 0.0]]), 0)  # above the floor: own range
    np.testing.assert_array_equal(params.scale, np.float32([2.0**-10 / 127, 2.0**-12 / 127]))


def test_quantized_values_round_offset_and_saturate():
    from edgekit.converters.ir.graph import QuantParams

    q = QuantParams(0.5, 3)
    np.testing.assert_array_equal(quantize_values(np.array([0.0, 1.2, -1.2, 100.0, -100.0]), q), [3, 5, 1, 127, -128])
    np.testing.assert_array_equal(
        quantize_values(np.array([1.2, 1e6, -1e6]), q, np.int16), np.array([5, 32767, -32768], np.int16)
    )
    assert quantize_values(np.array([1.0]), q).dtype == np.int8


def test_bias_correction_of_each_weighted_op():
    rng = np.random.default_rng(0)
    fc = rng.standard_normal((4, 6))
    mean = rng.standard_normal(6)
    np.testing.assert_allclose(_bias_correction("FULLY_CONNECTED", fc, mean), [fc[o] @ mean for o in range(4)])
    # depthwise: weights (1, h, w, in * multiplier); output channel c reads input c // multiplier
    dw = rng.standard_normal((1, 3, 3, 6))
    mean3 = rng.standard_normal(3)
    expected = [dw[..., c].sum() * mean3[c // 2] for c in range(6)]
    np.testing.assert_allclose(_bias_correction("DEPTHWISE_CONV_2D", dw, mean3), expected)
    # a grouped convolution: weights (out, h, w, in / groups); 2 groups of 2 outputs over 2 inputs each
    conv = rng.standard_normal((4, 3, 3, 2))
    mean4 = rng.standard_normal(4)
    expected = [conv[o].sum(axis=(0, 1)) @ mean4[(o // 2) * 2 : (o // 2) * 2 + 2] for o in range(4)]
    np.testing.assert_allclose(_bias_correction("CONV_2D", conv, mean4), expected)
    plain = rng.standard_normal((3, 1, 1, 4))
    np.testing.assert_allclose(_bias_correction("CONV_2D", plain, mean4), [plain[o, 0, 0] @ mean4 for o in range(3)])
    np.testing.assert_array_equal(_bias_correction("TRANSPOSE_CONV", conv, mean4), np.zeros(4))


def _fc(graph):
    (node,) = [n for n in graph.nodes if n.op == "FULLY_CONNECTED"]
    return node, [graph.tensors[name] for name in node.inputs]


@pytest.mark.parametrize("per_channel", [True, False])
def test_bias_is_rounded_to_the_input_times_weight_scale(per_channel):
    g = quantize_int8(float_graph(), {"features": (-3.0, 3.0), "scores": (0.0, 8.0)}, per_channel=per_channel)
    node, (x, w, b) = _fc(g)
    assert w.dtype == np.int8 and b.dtype == np.int32 and w.quant.per_channel is per_channel
    q, params = symmetric_weights(WEIGHTS, 0 if per_channel else None)
    np.testing.assert_array_equal(w.data, q)
    bias_scale = (x.quant.scale[0].astype(np.float64) * params.scale.astype(np.float64)).astype(np.float32)
    np.testing.assert_array_equal(b.quant.scale, bias_scale)
    np.testing.assert_array_equal(b.quant.zero_point, np.zeros(bias_scale.size))
    np.testing.assert_array_equal(b.data, np.round(BIAS / bias_scale.astype(np.float64)).astype(np.int32))


def test_bias_correction_subtracts_the_expected_shift():
    mean = np.linspace(-1.0, 2.0, 6)
    ranges = {"features": (-3.0, 3.0), "scores": (0.0, 8.0)}
    g = quantize_int8(float_graph(), ranges, channel_means={"features": mean})
    _, (x, w, b) = _fc(g)
    q, params = symmetric_weights(WEIGHTS, 0)
    error = q * params.scale.astype(np.float64)[:, None] - WEIGHTS.astype(np.float64)
    bias_scale = (x.quant.scale[0].astype(np.float64) * params.scale.astype(np.float64)).astype(np.float32)
    expected = np.round((BIAS - error @ mean) / bias_scale.astype(np.float64))
    np.testing.assert_array_equal(b.data, expected.astype(np.int32))
    assert not np.array_equal(expected, np.round(BIAS / bias_scale.astype(np.float64)))  # the correction shows


def test_int16x8_biases_are_int64_and_a_bias_too_big_for_int32_raises_its_weight_scale():
    """A bias past the int32 range of input scale x weight scale was clipped without a word; the
    channel's weight scale now grows until the bias fits, and the bias keeps its value."""
    g = quantize_int8(float_graph(), {"features": (-3.0, 3.0), "scores": (0.0, 8.0)}, activations="int16")
    _, (_, _, b) = _fc(g)
    assert b.dtype == np.int64
    big = float_graph()
    big.tensors[big.nodes[0].inputs[2]].data = np.float32([1e9, -1e9, 0.0, 1.0])
    _, (_, _, b) = _fc(quantize_int8(big, {"features": (-3.0, 3.0), "scores": (0.0, 8.0)}))
    assert b.data.dtype == np.int32
    assert np.all(np.abs(b.data.astype(np.int64)) < np.iinfo(np.int32).max)
    kept = b.data.astype(np.float64) * b.quant.scale.astype(np.float64)
    assert abs(kept[0] - 1e9) <= b.quant.scale[0] and abs(kept[1] + 1e9) <= b.quant.scale[1]


def test_transpose_conv_bias_takes_the_scale_of_its_data_input():
    """TRANSPOSE_CONV's inputs are (output shape, weights, data, bias): the bias scale is the data
    input's scale times the weights', never the output-shape constant's."""
    from edgekit.converters.ir.graph import Graph

    rng = np.random.default_rng(3)
    g = Graph()
    shape = g.add_const(np.array([1, 4, 4, 2], np.int32), "shape")
    weights = rng.standard_normal((2, 2, 2, 3)).astype(np.float32)
    w = g.add_const(weights, "w")
    g.add_tensor("x", (1, 2, 2, 3), np.float32)
    b = g.add_const(np.float32([0.3, -0.2]), "b")
    g.add_tensor("y", (1, 4, 4, 2), np.float32)
    op = "".join(["TRANSPOSE", "_CONV"])  # equal to the literal, another object: compared by value
    g.add_node(op, [shape, w, "x", b], ["y"], {"padding": "SAME", "stride_h": 2, "stride_w": 2})
    g.inputs, g.outputs = ["x"], ["y"]
    q = quantize_int8(g, {"x": (-1.0, 1.0), "y": (-4.0, 4.0)}, channel_means={"x": np.ones(3)})
    (node,) = [n for n in q.nodes if n.op == "TRANSPOSE_CONV"]
    x, bias = q.tensors[node.inputs[2]], q.tensors[node.inputs[3]]
    _, params = symmetric_weights(weights, 0)
    bias_scale = (x.quant.scale[0].astype(np.float64) * params.scale.astype(np.float64)).astype(np.float32)
    np.testing.assert_array_equal(bias.quant.scale, bias_scale)
    # no bias correction on a transposed convolution: the bias is the float bias, rounded
    np.testing.assert_array_equal(bias.data, np.round(np.float32([0.3, -0.2]) / bias_scale.astype(np.float64)))


def test_a_weighted_op_without_bias_gets_none():
    g = float_graph()
    g.nodes[0].inputs = g.nodes[0].inputs[:2]
    node, tensors = _fc(quantize_int8(g, {"features": (-3.0, 3.0), "scores": (0.0, 8.0)}))
    assert len(node.inputs) == 2 and tensors[1].dtype == np.int8


def test_the_op_name_is_compared_by_value():
    fc, mean = np.ones((2, 3)), np.arange(3.0)
    name = "".join(["FULLY_", "CONNECTED"])  # an equal string that is another object
    np.testing.assert_array_equal(_bias_correction(name, fc, mean), [3.0, 3.0])
    conv = np.ones((2, 1, 1, 3))
    np.testing.assert_array_equal(_bias_correction("".join(["CONV", "_2D"]), conv, mean), [3.0, 3.0])
    dw = np.ones((1, 1, 1, 3))
    np.testing.assert_array_equal(_bias_correction("".join(["DEPTHWISE", "_CONV_2D"]), dw, mean), [0.0, 1.0, 2.0])


def test_shared_and_colliding_tensor_names_keep_each_nodes_numbers():
    """Two FULLY_CONNECTED nodes: one bias shared by both (each quantizes it at its own input scale),
    and the second node's weights named as the first's int8 copy would be ("w_int8")."""
    from edgekit.converters.ir.graph import Graph

    rng = np.random.default_rng(5)
    w1, w2 = rng.standard_normal((4, 6)), rng.standard_normal((4, 6)) * 3
    g = Graph()
    g.add_tensor("x1", (1, 6), np.float32)
    g.add_tensor("x2", (1, 6), np.float32)
    g.add_tensor("w", (4, 6), np.float32, w1.astype(np.float32))
    g.add_tensor("w_int8", (4, 6), np.float32, w2.astype(np.float32))
    g.add_tensor("b", (4,), np.float32, BIAS)
    for x, w, y in (("x1", "w", "y1"), ("x2", "w_int8", "y2")):
        g.add_tensor(y, (1, 4), np.float32)
        g.add_node("FULLY_CONNECTED", [x, w, "b"], [y], {"fused_activation_function": "NONE"})
    g.inputs, g.outputs = ["x1", "x2"], ["y1", "y2"]
    q = quantize_int8(g, {"x1": (-1.0, 1.0), "x2": (-4.0, 4.0), "y1": (-8.0, 8.0), "y2": (-30.0, 30.0)})
    for node, weights in zip([n for n in q.nodes if n.op == "FULLY_CONNECTED"], (w1, w2), strict=True):
        x, w, b = (q.tensors[name] for name in node.inputs)
        expected, params = symmetric_weights(weights.astype(np.float32), 0)
        np.testing.assert_array_equal(w.data, expected)
        bias_scale = (x.quant.scale[0].astype(np.float64) * params.scale.astype(np.float64)).astype(np.float32)
        np.testing.assert_array_equal(b.quant.scale, bias_scale)
        np.testing.assert_array_equal(b.data, np.round(BIAS / bias_scale.astype(np.float64)).astype(np.int32))


def test_a_fused_clamp_the_output_cannot_reach_is_dropped_so_the_reference_kernels_load(tmp_path):
    """A convolution whose output calibrates to ~1e-7 (random-weight MobileNetV2 has such layers)
    with a fused RELU6: at that output scale 6 does not fit an int32, and TFLite's reference
    kernels refused the whole model when preparing the op (XNNPACK took it), so --report,
    verify --per-layer and boards without XNNPACK failed. The clamp becomes RELU: the same codes,
    and the scale stays the range's own (a floor on scales zeroed MobileNetV2's int8)."""
    import tflite
    from onnx import helper

    from edgekit.converters import convert, verify
    from edgekit.converters.tflite.importer import read_graph
    from edgekit.runtime import load
    from tests.converters.onnx_models import model, rand

    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Clip", ["c", "lo", "hi"], ["r"]),
        helper.make_node("Conv", ["r", "w2"], ["y"]),
    ]
    inits = {
        "w": rand(4, 3, 3, 3, scale=1e-9),
        "lo": np.array(0.0, np.float32),
        "hi": np.array(6.0, np.float32),
        "w2": rand(2, 4, 1, 1, seed=2),
    }
    m = model(nodes, {"x": (1, 3, 8, 8)}, {"y": None}, inits)
    out = tmp_path / "small.tflite"
    result = convert(m, out, quantize="int8", calibration=rand(8, 3, 8, 8, seed=3))
    assert result.ops.get("CONV_2D") == 2 and "RELU6" not in result.ops, result.ops  # fused
    first = next(n for n in read_graph(out.read_bytes()).nodes if n.op == "CONV_2D")
    assert first.attrs["fused_activation_function"] == tflite.ActivationFunctionType.RELU
    x = rand(1, 8, 8, 3, seed=4)
    reference = load(out, xnnpack=False).run({"x": x})
    np.testing.assert_allclose(reference["y"], load(out).run({"x": x})["y"], rtol=1e-5)  # float dequantization
    assert verify(m, out, samples=4).min_sqnr_db >= 20  # 25 dB, with or without the clamp (XNNPACK)
