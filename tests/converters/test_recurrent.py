"""ONNX LSTM, GRU and RNN lowered by unrolling (converters/onnx/lowering/recurrent.py), against
onnxruntime."""

from __future__ import annotations

import io

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgekit.converters import convert, verify
from edgekit.errors import UnsupportedModelError

GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
STATES = {"LSTM": ("h0", "c0"), "GRU": ("h0",), "RNN": ("h0",)}


def recurrent_model(
    op: str,
    direction: str,
    with_state: bool,
    with_bias: bool = True,
    seq: int = 3,
    batch: int = 2,
    features: int = 5,
    hidden: int = 4,
    **attrs,
):
    """One ``op`` node with random constant W, R (and B); ``with_state``: initial states are inputs."""
    rng = np.random.default_rng(0)
    d = 2 if direction == "bidirectional" else 1
    gates = GATES[op]
    weights = {
        "W": rng.standard_normal((d, gates * hidden, features)).astype(np.float32) * 0.5,
        "R": rng.standard_normal((d, gates * hidden, hidden)).astype(np.float32) * 0.5,
    }
    if with_bias:
        weights["B"] = rng.standard_normal((d, 2 * gates * hidden)).astype(np.float32) * 0.5
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [seq, batch, features])]
    names = ["x", "W", "R", "B" if with_bias else ""]
    if with_state:
        inputs += [helper.make_tensor_value_info(n, TensorProto.FLOAT, [d, batch, hidden]) for n in STATES[op]]
        names += ["", *STATES[op]]
    while not names[-1]:
        names.pop()
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [seq, d, batch, hidden])] + [
        helper.make_tensor_value_info(n, TensorProto.FLOAT, [d, batch, hidden]) for n in ("yh", "yc")[: len(STATES[op])]
    ]
    node = helper.make_node(op, names, [o.name for o in outputs], hidden_size=hidden, direction=direction, **attrs)
    graph = helper.make_graph(
        [node], op.lower(), inputs, outputs, [numpy_helper.from_array(v, k) for k, v in weights.items()]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    model.ir_version = 8
    return model


def lstm_model(direction: str, with_state: bool, seq: int = 3, batch: int = 2, features: int = 5, hidden: int = 4):
    return recurrent_model("LSTM", direction, with_state, seq=seq, batch=batch, features=features, hidden=hidden)


def assert_unrolled_like_onnxruntime(model, out) -> None:
    """Converted without the recurrent op, in one XNNPACK partition, at fp32 precision."""
    result = convert(model, out)
    assert not {"LSTM", "GRU", "RNN"} & set(result.ops), result.ops
    assert result.partitions == 1, result.ops
    report = verify(model, out, samples=4)
    assert len(report.outputs) == len(model.graph.output)
    assert report.min_sqnr_db >= 60, report.table()


@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("with_state", [True, False])
def test_lstm_matches_onnxruntime_in_one_partition(tmp_path, direction, with_state):
    assert_unrolled_like_onnxruntime(lstm_model(direction, with_state), tmp_path / "lstm.tflite")


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


# --- GRU and RNN -----------------------------------------------------------------------------

BIAS_AND_STATE = [(True, True), (True, False), (False, True), (False, False)]


@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("linear_before_reset", [0, 1])
@pytest.mark.parametrize(("with_bias", "with_state"), BIAS_AND_STATE)
def test_gru_matches_onnxruntime_in_one_partition(tmp_path, direction, linear_before_reset, with_bias, with_state):
    """linear_before_reset=1 is what torch exports: Rb_h goes inside the reset gate's product."""
    model = recurrent_model("GRU", direction, with_state, with_bias, linear_before_reset=linear_before_reset)
    assert_unrolled_like_onnxruntime(model, tmp_path / "gru.tflite")


@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("activations", [None, ["Relu"], ["Relu", "Tanh"]])
@pytest.mark.parametrize(("with_bias", "with_state"), BIAS_AND_STATE)
def test_rnn_matches_onnxruntime_in_one_partition(tmp_path, direction, activations, with_bias, with_state):
    """``activations`` of the first direction, then (bidirectional) of the second: Tanh by default."""
    d = 2 if direction == "bidirectional" else 1
    attrs = {} if activations is None else {"activations": (activations * 2)[:d]}
    model = recurrent_model("RNN", direction, with_state, with_bias, **attrs)
    assert_unrolled_like_onnxruntime(model, tmp_path / "rnn.tflite")


@pytest.mark.parametrize(
    ("op", "attrs", "message"),
    [
        ("GRU", {"activations": ["Relu", "Tanh"]}, r"GRU activations \['Relu', 'Tanh'\]; only \(Sigmoid, Tanh\)"),
        ("RNN", {"activations": ["Sigmoid"]}, r"RNN activations \['Sigmoid'\]; only \(Tanh\) or \(Relu\)"),
        ("LSTM", {"activations": ["Sigmoid", "Relu", "Tanh"]}, r"LSTM activations .*only \(Sigmoid, Tanh, Tanh\)"),
        ("RNN", {"clip": 1.0}, r"RNN with clip; export it without clip"),
        ("LSTM", {"input_forget": 1}, r"LSTM with peepholes or input_forget; export it without them"),
    ],
)
def test_recurrent_refusals_say_what_is_not_lowered(tmp_path, op, attrs, message):
    model = recurrent_model(op, "forward", with_state=False, **attrs)
    with pytest.raises(UnsupportedModelError, match=f"unsupported_attribute: {message}"):
        convert(model, tmp_path / "m.tflite")


@pytest.mark.parametrize("op", ["GRU", "RNN", "LSTM"])
def test_batch_first_layout_is_refused(op):
    """onnxruntime refuses layout 1 itself (so the frontend does before lowering); the lowering
    still says so rather than unroll the wrong axis."""
    from edgekit.converters.onnx.lowering import LOWERINGS, Lowering, NotLowerable
    from edgekit.converters.pipeline import import_onnx

    graph = import_onnx(recurrent_model(op, "forward", with_state=False))
    (node,) = graph.nodes
    node.attrs["layout"] = 1
    with pytest.raises(NotLowerable, match=rf"unsupported_attribute: {op} with layout 1 \(batch first\); export"):
        LOWERINGS[op](Lowering(graph), node)


@pytest.mark.parametrize("op", ["GRU", "RNN", "LSTM"])
def test_shorter_sequence_lens_is_refused(tmp_path, op):
    """The unrolling runs every step; a shorter sequence would need its Y zeroed and Y_h taken early."""
    model = recurrent_model(op, "forward", with_state=False)
    node = model.graph.node[0]
    model.graph.initializer.append(numpy_helper.from_array(np.array([3, 2], np.int32), "lens"))
    node.input.extend(["lens"])
    with pytest.raises(UnsupportedModelError, match=rf"{op} with sequence_lens \[3, 2\] shorter than the input's 3"):
        convert(model, tmp_path / "m.tflite")


@pytest.mark.parametrize("op", ["GRU", "RNN", "LSTM"])
def test_full_sequence_lens_is_unrolled(tmp_path, op):
    model = recurrent_model(op, "bidirectional", with_state=False)
    model.graph.initializer.append(numpy_helper.from_array(np.array([3, 3], np.int32), "lens"))
    model.graph.node[0].input.extend(["lens"])
    assert_unrolled_like_onnxruntime(model, tmp_path / "m.tflite")


@pytest.mark.parametrize(
    ("op", "direction", "attrs"),
    [
        ("GRU", "forward", {"linear_before_reset": 0}),
        ("GRU", "bidirectional", {"linear_before_reset": 1}),
        ("RNN", "forward", {}),
        ("RNN", "bidirectional", {"activations": ["Relu", "Relu"]}),
    ],
)
@pytest.mark.parametrize("with_state", [True, False])
def test_gru_and_rnn_quantize_to_int8(tmp_path, op, direction, attrs, with_state):
    """As the LSTM: one XNNPACK partition, close to onnxruntime's float. GRU's h = (1 - z) n + z h
    keeps each product within [-1, 1]; written n + z (h - n), the bidirectional GRU was 21-24 dB."""
    model = recurrent_model(op, direction, with_state, seq=8, **attrs)
    rng = np.random.default_rng(1)
    d = 2 if direction == "bidirectional" else 1
    feeds = {"x": rng.uniform(-1, 1, (20, 8, 2, 5)).astype(np.float32)}
    if with_state:
        feeds["h0"] = rng.uniform(-1, 1, (20, d, 2, 4)).astype(np.float32)
    calibration = {k: v[:16] for k, v in feeds.items()}
    out = tmp_path / "int8.tflite"
    result = convert(model, out, quantize="int8", calibration=calibration if with_state else calibration["x"])
    assert result.partitions == 1, result.ops
    report = verify(model, out, data={k: v[16:] for k, v in feeds.items()})
    assert report.min_sqnr_db >= {"GRU": 25, "RNN": 20}[op], report.table()


@pytest.mark.parametrize(
    ("module", "options", "with_h0"),
    [
        ("GRU", {}, True),
        ("GRU", {"num_layers": 2, "bidirectional": True}, False),
        ("RNN", {"bidirectional": True, "nonlinearity": "relu"}, True),
    ],
)
def test_torch_export_converts(tmp_path, module, options, with_h0):
    """torch.nn.GRU / RNN (batch_first=False) as torch.onnx.export writes them: GRU with
    linear_before_reset=1, B always given, a zero initial state made by Shape/Expand when none
    is passed (or h0 sliced per layer), Y transposed after the node."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    layer = getattr(torch.nn, module)(5, 4, **options).eval()
    x = torch.randn(4, 2, 5)
    states = options.get("num_layers", 1) * (2 if options.get("bidirectional") else 1)
    args = (x, torch.randn(states, 2, 4)) if with_h0 else (x,)
    buffer = io.BytesIO()
    torch.onnx.export(
        layer,
        args,
        buffer,
        dynamo=False,
        opset_version=14,
        input_names=["x", "h0"][: len(args)],
        output_names=["y", "yh"],
    )
    model = onnx.load_model_from_string(buffer.getvalue())
    (node, *_) = [n for n in model.graph.node if n.op_type == module]
    if module == "GRU":
        assert helper.get_node_attr_value(node, "linear_before_reset") == 1
    assert_unrolled_like_onnxruntime(model, tmp_path / "torch.tflite")
