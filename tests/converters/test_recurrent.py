"""ONNX LSTM lowered by unrolling (converters/onnx/lowering/recurrent.py), against onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgekit.converters import convert, verify


def lstm_model(direction: str, with_state: bool, seq: int = 3, batch: int = 2, features: int = 5, hidden: int = 4):
    rng = np.random.default_rng(0)
    d = 2 if direction == "bidirectional" else 1
    weights = {
        "W": rng.standard_normal((d, 4 * hidden, features)).astype(np.float32) * 0.5,
        "R": rng.standard_normal((d, 4 * hidden, hidden)).astype(np.float32) * 0.5,
        "B": rng.standard_normal((d, 8 * hidden)).astype(np.float32) * 0.5,
    }
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [seq, batch, features])]
    names = ["x", "W", "R", "B"]
    if with_state:
        inputs += [helper.make_tensor_value_info(n, TensorProto.FLOAT, [d, batch, hidden]) for n in ("h0", "c0")]
        names += ["", "h0", "c0"]
    outputs = [
        helper.make_tensor_value_info("y", TensorProto.FLOAT, [seq, d, batch, hidden]),
        helper.make_tensor_value_info("yh", TensorProto.FLOAT, [d, batch, hidden]),
        helper.make_tensor_value_info("yc", TensorProto.FLOAT, [d, batch, hidden]),
    ]
    node = helper.make_node("LSTM", names, ["y", "yh", "yc"], hidden_size=hidden, direction=direction)
    graph = helper.make_graph(
        [node], "lstm", inputs, outputs, [numpy_helper.from_array(v, k) for k, v in weights.items()]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("with_state", [True, False])
def test_lstm_matches_onnxruntime_in_one_partition(tmp_path, direction, with_state):
    model = lstm_model(direction, with_state)
    out = tmp_path / "lstm.tflite"
    result = convert(model, out)
    assert "LSTM" not in str(result.ops) and result.partitions == 1, result.ops
    report = verify(model, out, samples=4)
    assert report.min_sqnr_db >= 60, report.table()


@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
def test_lstm_without_initial_state_quantizes_to_int8(tmp_path, direction):
    """No initial state (CRNN text recognisers export their LSTM so): the first step's recurrence
    is a FULLY_CONNECTED on a constant zero state. int8 made it float in, int8 weights, int8 out,
    which LiteRT refuses to load. It now folds away; the int8 model is close to onnxruntime."""
    model = lstm_model(direction, with_state=False, seq=6)
    calibration = np.random.default_rng(1).uniform(-1, 1, (16, 6, 2, 5)).astype(np.float32)
    out = tmp_path / "lstm_int8.tflite"
    result = convert(model, out, quantize="int8", calibration=calibration)
    assert result.partitions is not None  # LiteRT loads it
    report = verify(model, out, data={"x": np.random.default_rng(2).uniform(-1, 1, (4, 6, 2, 5)).astype(np.float32)})
    assert report.min_sqnr_db >= 20, report.table()


def test_weighted_op_on_a_constant_stays_float_and_the_self_check_refuses_it_int8(tmp_path, monkeypatch):
    """Without the folding, the step on the zero state must stay a float FULLY_CONNECTED; forced to
    int8 output on its float input, the writer's self-check refuses the graph."""
    from edgekit.converters.ir.graph import QuantParams
    from edgekit.converters.passes import cleanup
    from edgekit.converters.pipeline import import_onnx, to_tflite_graph
    from edgekit.converters.quant.int8_rules import Int8RuleError, check_int8
    from edgekit.converters.quant.quantizer import quantize_graph, symmetric_weights

    monkeypatch.delitem(cleanup.CONST_EVALUATORS, "FULLY_CONNECTED")
    model = lstm_model("forward", with_state=False, seq=6)
    calibration = np.random.default_rng(1).uniform(-1, 1, (16, 6, 2, 5)).astype(np.float32)
    out = tmp_path / "lstm_int8.tflite"
    convert(model, out, quantize="int8", calibration=calibration)
    report = verify(model, out, data={"x": np.random.default_rng(2).uniform(-1, 1, (4, 6, 2, 5)).astype(np.float32)})
    assert report.min_sqnr_db >= 20, report.table()

    graph = import_onnx(model)
    quantized = quantize_graph(to_tflite_graph(graph), graph, mode="int8", calibration=calibration)
    (on_constant,) = [n for n in quantized.nodes if n.op == "FULLY_CONNECTED" and quantized.is_const(n.inputs[0])]
    weights = quantized.tensors[on_constant.inputs[1]]  # what the quantizer made of it before the fix
    weights.data, weights.quant = symmetric_weights(weights.data, 0)
    weights.dtype = np.dtype(np.int8)
    output = quantized.tensors[on_constant.outputs[0]]
    output.dtype, output.quant = np.dtype(np.int8), QuantParams(np.float32(0.01), 0)
    with pytest.raises(Int8RuleError, match="need an int8 input"):
        check_int8(quantized)
