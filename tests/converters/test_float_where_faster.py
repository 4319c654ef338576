"""int8 models with weighted ops kept in float: the HardSwish next to them is one float op, and an
int8 tensor read by float ops is dequantized once; checked against onnxruntime on LiteRT."""

from __future__ import annotations

import pytest
from onnx import helper

from edgekit.converters import convert
from edgekit.converters.verification import sqnr_db
from tests.converters.onnx_models import model, rand
from tests.converters.test_accuracy_budget import litert_outputs, onnx_outputs


def depthwise_block():
    """conv 3->8, HardSwish (as torch exports it), depthwise 3x3, HardSwish, conv 8->4: the
    MobileNetV3 / PP-LCNet pattern."""
    n = helper.make_node
    nodes = [
        n("Conv", ["x", "w1"], ["c1"], name="stem", pads=[1, 1, 1, 1]),
        n("HardSwish", ["c1"], ["h1"], name="hs1"),
        n("Conv", ["h1", "wd"], ["d"], name="depthwise", pads=[1, 1, 1, 1], group=8),
        n("HardSwish", ["d"], ["h2"], name="hs2"),
        n("Conv", ["h2", "w2"], ["y"], name="pointwise"),
    ]
    weights = {"w1": rand(8, 3, 3, 3), "wd": rand(8, 1, 3, 3, seed=1), "w2": rand(4, 8, 1, 1, seed=2)}
    return model(nodes, {"x": (1, 3, 16, 16)}, {"y": None}, weights)


@pytest.fixture
def block(tmp_path):
    path = tmp_path / "block.onnx"
    path.write_bytes(depthwise_block().SerializeToString())
    samples = rand(16, 3, 16, 16, seed=4)
    return path, rand(8, 3, 16, 16, seed=3), samples, onnx_outputs(str(path), samples)


def _sqnr(tflite, samples, expected) -> float:
    return sqnr_db(expected, litert_outputs(tflite, samples, nhwc=True).transpose(0, 3, 1, 2))


def _input_types(path) -> dict[str, list[str]]:
    """op -> the type of its first input, per op of a .tflite model."""
    from edgekit.converters.tflite.importer import read_graph

    graph = read_graph(path.read_bytes())
    found: dict[str, list[str]] = {}
    for node in graph.nodes:
        found.setdefault(node.op, []).append(str(graph.tensors[node.inputs[0]].dtype))
    return found


def test_a_hard_swish_next_to_a_float_convolution_is_one_float_op(block, tmp_path):
    """A depthwise convolution kept in float: the HardSwish before it (fed by the int8 stem) and
    the one after it (read by the int8 pointwise) stay float as one HARD_SWISH each, instead of
    three int8 ops each with a DEQUANTIZE or QUANTIZE next to them."""
    path, calibration, samples, expected = block
    int8 = convert(path, tmp_path / "int8.tflite", quantize="int8", calibration=calibration)
    kept = convert(path, tmp_path / "kept.tflite", quantize="int8", calibration=calibration, keep_float=["depthwise"])
    assert "HARD_SWISH" not in int8.ops and int8.ops["MUL"] == 4
    assert kept.ops["HARD_SWISH"] == 2 and "MUL" not in kept.ops and "ADD" not in kept.ops, kept.ops
    # in: the model's input, the depthwise's output; out: the stem's output, the model's output
    assert kept.ops["QUANTIZE"] == 2 and kept.ops["DEQUANTIZE"] == 2
    types = _input_types(tmp_path / "kept.tflite")
    assert types["DEPTHWISE_CONV_2D"] == ["float32"] and types["CONV_2D"] == ["int8", "int8"]
    assert kept.partitions == 1
    assert _sqnr(tmp_path / "kept.tflite", samples, expected) >= _sqnr(tmp_path / "int8.tflite", samples, expected)


def test_an_int8_tensor_read_by_two_float_ops_is_dequantized_once(tmp_path):
    n = helper.make_node
    nodes = [
        n("Conv", ["x", "w1"], ["c1"], name="stem", pads=[1, 1, 1, 1]),
        n("Relu", ["c1"], ["r"], name="relu"),
        n("Conv", ["r", "wa"], ["a"], name="left"),
        n("Conv", ["r", "wb"], ["b"], name="right"),
        n("Add", ["a", "b"], ["y"], name="add"),
    ]
    weights = {"w1": rand(8, 3, 3, 3), "wa": rand(4, 8, 1, 1, seed=1), "wb": rand(4, 8, 1, 1, seed=2)}
    path = tmp_path / "fork.onnx"
    path.write_bytes(model(nodes, {"x": (1, 3, 8, 8)}, {"y": None}, weights).SerializeToString())
    calibration, samples = rand(8, 3, 8, 8, seed=3), rand(8, 3, 8, 8, seed=4)
    options = {"quantize": "int8", "calibration": calibration, "keep_float": ["left", "right"]}
    kept = convert(path, tmp_path / "kept.tflite", **options)
    assert kept.ops["DEQUANTIZE"] == 1, kept.ops
    assert _sqnr(tmp_path / "kept.tflite", samples, onnx_outputs(str(path), samples)) > 30
