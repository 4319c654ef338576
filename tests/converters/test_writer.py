"""The flatbuffer follows TFLite's file rules (TFLITE_INT8.md) and LiteRT loads it."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import tflite
from onnx import helper

from edgekit.converters import convert
from edgekit.converters.ir.graph import Graph
from edgekit.converters.tflite.reader import metadata
from edgekit.converters.tflite.writer import serialize, write_atomic
from edgekit.errors import OutputPathError
from tests.converters.onnx_models import model, rand

N = helper.make_node


@pytest.fixture
def converted(tmp_path):
    m = model(
        [
            N("Conv", ["image", "w"], ["a"], pads=[1, 1, 1, 1]),
            N("Relu", ["a"], ["b"]),
            N("Conv", ["b", "dw"], ["c"], group=4, dilations=[2, 2], pads=[2, 2, 2, 2]),
            N("Relu", ["c"], ["d"]),
            N("Conv", ["d", "w"], ["e"], pads=[1, 1, 1, 1]),
            N("GlobalAveragePool", ["e"], ["g"]),
            N("Flatten", ["g"], ["f"]),
            N("Gemm", ["f", "fc", "fb"], ["logits"], transB=1),
        ],
        {"image": (1, 4, 12, 12)},
        {"logits": None},
        {
            "w": rand(4, 4, 3, 3, seed=1),
            "dw": rand(4, 1, 3, 3, seed=2),
            "fc": rand(10, 4, seed=3),
            "fb": rand(10, seed=4),
        },
    )
    path = tmp_path / "m.onnx"
    path.write_bytes(m.SerializeToString())
    out = tmp_path / "m.tflite"
    convert(str(path), out)
    return path, out.read_bytes()


def _data_offset(buffer: tflite.Buffer) -> int | None:
    o = buffer._tab.Offset(4)
    return buffer._tab.Vector(o) if o else None


def test_file_rules(converted):
    onnx_path, data = converted
    m = tflite.Model.GetRootAs(data, 0)
    assert data[4:8] == b"TFL3"
    assert m.Version() == 3
    assert m.SubgraphsLength() == 1
    assert m.Buffers(0).DataLength() == 0
    sg = m.Subgraphs(0)
    produced = {
        sg.Operators(i).Outputs(j) for i in range(sg.OperatorsLength()) for j in range(sg.Operators(i).OutputsLength())
    }
    for t in range(sg.TensorsLength()):
        tensor = sg.Tensors(t)
        if t in produced or t in [sg.Inputs(i) for i in range(sg.InputsLength())]:
            assert tensor.Buffer() == 0, tensor.Name()
        else:
            assert tensor.Buffer() >= 1 and m.Buffers(tensor.Buffer()).DataLength() > 0, tensor.Name()
    for b in range(1, m.BuffersLength()):
        offset = _data_offset(m.Buffers(b))
        assert offset is None or offset % 16 == 0, f"buffer {b} at {offset}"
    codes = [(m.OperatorCodes(i).BuiltinCode(), m.OperatorCodes(i).Version()) for i in range(m.OperatorCodesLength())]
    assert len(codes) == len(set(codes))
    for i in range(m.OperatorCodesLength()):
        code = m.OperatorCodes(i)
        assert code.DeprecatedBuiltinCode() == min(code.BuiltinCode(), 127)
    versions = dict(codes)
    assert versions[tflite.BuiltinOperator.CONV_2D] == 1
    assert versions[tflite.BuiltinOperator.DEPTHWISE_CONV_2D] == 2  # dilated
    assert versions[tflite.BuiltinOperator.FULLY_CONNECTED] == 1
    sig = m.SignatureDefs(0)
    assert sig.SignatureKey() == b"serving_default"
    assert sig.Inputs(0).Name() == b"image" and sig.Outputs(0).Name() == b"logits"
    info = metadata(data)["edgekit"]
    assert info["source_sha256"] == hashlib.sha256(onnx_path.read_bytes()).hexdigest()
    assert info["io_layout"] == {"image": [0, 2, 3, 1]}


def test_litert_loads_it(converted):
    from ai_edge_litert.interpreter import Interpreter

    _, data = converted
    interpreter = Interpreter(model_content=data, num_threads=1)
    interpreter.allocate_tensors()
    assert interpreter.get_input_details()[0]["shape"].tolist() == [1, 12, 12, 4]


def test_duplicate_constants_share_a_buffer():
    g = Graph()
    g.add_tensor("x", (1, 4), np.float32)
    a = g.add_const(np.ones(4, np.float32), "a")
    b = g.add_const(np.ones(4, np.float32), "b")
    g.add_tensor("y", (1, 4), np.float32)
    g.add_tensor("z", (1, 4), np.float32)
    g.add_node("ADD", ["x", a], ["y"], {"fused_activation_function": "NONE"})
    g.add_node("ADD", ["y", b], ["z"], {"fused_activation_function": "NONE"})
    g.inputs, g.outputs = ["x"], ["z"]
    m = tflite.Model.GetRootAs(serialize(g), 0)
    assert m.BuffersLength() == 2  # the empty sentinel and one shared constant
    assert m.OperatorCodesLength() == 1


def test_write_atomic_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "m.tflite"
    with pytest.raises(TypeError):
        write_atomic(target, 42)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []
    target.write_bytes(b"old")
    (tmp_path / "sub").mkdir()
    with pytest.raises(OutputPathError):
        write_atomic(tmp_path / "sub", b"new")  # the rename fails: the old files stay, no temporary left
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["m.tflite", "sub"]


def test_outputs_follow_the_umask_and_secrets_are_owner_only(tmp_path):
    import os
    import stat

    from edgekit.keys import write_private

    old = os.umask(0o022)
    try:
        write_atomic(tmp_path / "m.tflite", b"x")
        write_private(tmp_path / "secret", "s")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "m.tflite").stat().st_mode) == 0o644  # not 0600 whatever the umask
    assert stat.S_IMODE((tmp_path / "secret").stat().st_mode) == 0o600
