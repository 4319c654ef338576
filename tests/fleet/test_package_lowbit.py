"""The package's compression report counts binary and ternary weights (int8 tensors holding 2 or
3 values per channel) from the .tflite flatbuffer, as LiteRT reads the same tensors."""

from __future__ import annotations

import numpy as np
import pytest

from edgekit import package

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


def _conv_model(path, levels: list[float], seed: int = 0) -> None:
    """Image [1, 4, 8, 8] -> Conv 3x3 (16 channels, weights drawn from ``levels`` times a scale of
    each channel) -> Relu -> Conv 1x1 (8 channels, dense weights)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    low = rng.choice(levels, (16, 4, 3, 3)) * rng.uniform(0.5, 2.0, (16, 1, 1, 1))
    dense = rng.standard_normal((8, 16, 1, 1))
    weights = {
        "w1": low,
        "b1": rng.standard_normal(16),
        "w2": dense,
        "b2": rng.standard_normal(8),
    }
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["image", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c1"], ["r1"]),
            helper.make_node("Conv", ["r1", "w2", "b2"], ["out"]),
        ],
        "lowbit",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 4, 8, 8])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 8, 8, 8])],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def _litert_low_bit(model: bytes) -> tuple[int, int]:
    """(tensors, values) of the int8 constant tensors LiteRT holds with 2-4 values per channel."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model)
    interpreter.allocate_tensors()
    tensors = values = 0
    for detail in interpreter.get_tensor_details():
        quant = detail["quantization_parameters"]
        if detail["dtype"] != np.int8 or len(quant["scales"]) < 2:
            continue
        data = interpreter.get_tensor(detail["index"])
        axis = quant["quantized_dimension"]
        channels = np.moveaxis(data, axis, 0).reshape(data.shape[axis], -1)
        if 2 <= max(len(np.unique(c)) for c in channels) <= package.LOW_BIT_MAX_VALUES:
            tensors, values = tensors + 1, values + data.size
    return tensors, values


@pytest.mark.parametrize(("levels", "bits"), [([-1.0, 1.0], 1), ([-1.0, 0.0, 1.0], 2)])
def test_compression_report_counts_binary_and_ternary_weights(tmp_path, keys, levels, bits):
    from edgekit.converters import convert

    source, model = tmp_path / "m.onnx", tmp_path / "m.tflite"
    _conv_model(source, levels)
    rng = np.random.default_rng(1)
    convert(str(source), model, quantize="int8", calibration=rng.uniform(0, 1, (16, 4, 8, 8)).astype(np.float32))
    info = package.build(model, tmp_path / "m.tar.xz", name="m", version="1", signing_key=keys[0])
    report = info.manifest["compression"]["low_bit_weights"]
    tensors, values = _litert_low_bit(model.read_bytes())
    assert (report["tensors"], report["values"]) == (tensors, values) == (1, 16 * 4 * 3 * 3)
    assert report["model_bytes"] == values  # one byte per int8 weight in the model
    assert report["packed_bytes"] == values * bits // 8
    assert report["int8_weight_bytes"] == values + 8 * 16  # with the dense 1x1 conv's


def test_compression_report_of_a_dense_model_has_no_low_bit_weights(tmp_path, keys, models):
    info = package.build(models[1], tmp_path / "m.tar.xz", name="m", version="1", signing_key=keys[0])
    assert "low_bit_weights" not in info.manifest["compression"]
    assert "low_bit_weights" not in package._compression_report(b"not a model", "xz")
    damaged = b"\0\0\0\0TFL3" + bytes(range(256)) * 4  # the magic, then no flatbuffer: reported without
    assert "low_bit_weights" not in package._compression_report(damaged, "xz")
