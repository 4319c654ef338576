"""ONNX LSTM lowered by unrolling (converters/lowering/recurrent.py), against onnxruntime."""

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
