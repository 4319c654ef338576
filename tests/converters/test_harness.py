"""The converters' one harness (edgekit.converters.harness) against LiteRT and onnxruntime used
directly: the same partitions, intermediates and int8 I/O numbers."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from ai_edge_litert.interpreter import Interpreter, OpResolverType
from onnx import helper

from edgekit.converters import convert
from edgekit.converters.harness import OnnxRunner, TFLiteRunner, onnx_intermediates, open_tflite, xnnpack_delegation
from edgekit.errors import BackendError
from edgekit.runtime.backends.onnx import OnnxRuntimeBackend
from tests.converters.onnx_models import model, rand
from tests.runtime.models import float_model, int8_model

N = helper.make_node
CONVERTERS = Path(__file__).resolve().parents[2] / "converters"


def _cnn():
    return model(
        [N("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), N("Relu", ["c"], ["r"]), N("Sigmoid", ["r"], ["y"])],
        {"x": (1, 3, 6, 6)},
        {"y": None},
        {"w": rand(4, 3, 3, 3, seed=1)},
    )


def _litert(data: bytes, **options) -> Interpreter:
    interpreter = Interpreter(model_content=data, num_threads=1, **options)
    interpreter.allocate_tensors()
    return interpreter


def test_partitions_are_litert_delegate_nodes(tmp_path):
    convert(_cnn(), tmp_path / "cnn.tflite")
    models = {
        "float": (float_model(), ()),
        "int8": (int8_model(), ()),
        # XNNPACK has no uint8 <-> int8 QUANTIZE: uint8 I/O costs two ops on TFLite's kernels
        "uint8": (int8_model("uint8"), ("QUANTIZE", "QUANTIZE")),
        "converted": ((tmp_path / "cnn.tflite").read_bytes(), ()),
    }
    for name, (data, cpu_ops) in models.items():
        ops = _litert(data)._get_ops_details()
        assert xnnpack_delegation(data).partitions == sum(op["op_name"] == "DELEGATE" for op in ops) == 1, name
        assert xnnpack_delegation(data).cpu_ops == cpu_ops, name
        assert open_tflite(data, xnnpack=False).delegated_partitions() == 0


def test_preserved_intermediates_are_litert_values(tmp_path):
    convert(_cnn(), tmp_path / "cnn.tflite")
    data = (tmp_path / "cnn.tflite").read_bytes()
    x = rand(1, 6, 6, 3, seed=2)
    resolver = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    reference = _litert(data, experimental_preserve_all_tensors=True, experimental_op_resolver_type=resolver)
    reference.set_tensor(reference.get_input_details()[0]["index"], x)
    reference.invoke()
    session = open_tflite(data, xnnpack=False, preserve_all_tensors=True)
    session.run(x)
    tensors = {t.name: t for t in session.tensors()}
    assert set(tensors) == {d["name"] for d in reference.get_tensor_details()}
    for detail in reference.get_tensor_details():
        np.testing.assert_array_equal(session.tensor(tensors[detail["name"]]), reference.get_tensor(detail["index"]))


def test_int8_io_runs_as_litert_with_the_models_scales():
    data = int8_model("uint8")
    x = np.random.default_rng(3).uniform(-3, 3, (1, 6)).astype(np.float32)
    interpreter = _litert(data)
    given, taken = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    (in_scale, in_zero), (out_scale, out_zero) = given["quantization"], taken["quantization"]
    interpreter.set_tensor(given["index"], np.clip(np.round(x / in_scale + in_zero), 0, 255).astype(np.uint8))
    interpreter.invoke()
    expected = (interpreter.get_tensor(taken["index"]).astype(np.float32) - out_zero) * np.float32(out_scale)
    runner = TFLiteRunner(data, threads=1)
    np.testing.assert_array_equal(runner({"features": x})["scores"], expected)
    assert runner.tensors["features"].quant == (in_scale, in_zero)
    assert runner.tensors["scores"].dtype == np.uint8


def test_onnx_intermediates_are_onnxruntime_outputs():
    m = _cnn()
    x = rand(1, 3, 6, 6, seed=4)
    exposed = helper.make_model(m.graph, opset_imports=m.opset_import)
    del exposed.graph.output[:]
    exposed.graph.output.extend(helper.ValueInfoProto(name=n) for n in ("c", "r", "y"))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(exposed.SerializeToString(), options, providers=["CPUExecutionProvider"])
    expected = dict(zip(["c", "r", "y"], session.run(None, {"x": x}), strict=True))
    got = onnx_intermediates(m, {"x": x})
    assert list(got) == ["c", "r", "y"]
    for name, value in expected.items():
        np.testing.assert_array_equal(got[name], value)
    plain = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(OnnxRunner(m)({"x": x})["y"], plain.run(None, {"x": x})[0])


def test_onnx_backend_takes_an_optimization_level_by_name():
    data = _cnn().SerializeToString()
    levels = {"none": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC"}
    for name, level in levels.items():
        backend = OnnxRuntimeBackend(data, 1, optimization=name)
        assert backend.session.get_session_options().graph_optimization_level == getattr(
            ort.GraphOptimizationLevel, level
        )
    with pytest.raises(BackendError, match="unknown optimization 'fast'"):
        OnnxRuntimeBackend(data, 1, optimization="fast")
    with pytest.raises(BackendError, match="keeps no intermediates"):
        OnnxRuntimeBackend(data, 1, preserve_all_tensors=True)


def test_converters_open_interpreters_through_the_harness_only():
    """One place makes interpreters: a module of converters/ building its own is a second one."""
    pattern = re.compile(r"\b(Interpreter|InferenceSession)\(|ai_edge_litert|tflite_runtime|import onnxruntime")
    own = {
        str(path.relative_to(CONVERTERS))
        for path in CONVERTERS.rglob("*.py")
        if pattern.search(path.read_text()) and path.name != "harness.py"
    }
    assert not own, sorted(own)


def test_per_layer_report_feeds_a_scalar_input_as_a_scalar(tmp_path):
    """A 0-d input (silero-vad's sample rate) went in as shape [1], which LiteRT refused."""
    from edgekit.converters.layer_compare import compare_layers

    m = model([N("Mul", ["x", "s"], ["m"]), N("Tanh", ["m"], ["y"])], {"x": (1, 4), "s": ()}, {"y": None})
    convert(m, tmp_path / "scalar.tflite")
    sample = {"x": rand(1, 4, seed=5), "s": np.array(0.5, np.float32)}
    report = compare_layers(m, tmp_path / "scalar.tflite", sample)
    assert {layer.tensor for layer in report.layers} == {"m", "y"} and min(r.sqnr_db for r in report.layers) > 60
