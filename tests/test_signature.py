"""The model's signature, read once from the file and carried end to end: converter metadata ->
package manifest -> the device's Session and agent; the fallback rule for files that record no
layout; manifests written before layouts were recorded still read."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from edgekit import package
from edgekit.agent.runner import image_preprocessing
from edgekit.converters.ir.graph import Graph
from edgekit.converters.tflite.writer import serialize
from edgekit.runtime import load
from edgekit.runtime.signature import LayoutRecord, Signature, TensorSignature
from tests.runtime.models import float_model, int8_model

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "edgekit" / "samples" / "digits_cnn.onnx"

# manifest io exactly as edgekit wrote it before signatures carried layouts: digits_cnn converted
# (auto), and the int8 model of tests/runtime/models
OLD_DIGITS_IO = {
    "inputs": [{"name": "image", "shape": [1, 8, 8, 1], "dtype": "float32"}],
    "outputs": [{"name": "logits", "shape": [1, 10], "dtype": "float32"}],
}
OLD_INT8_IO = {
    "inputs": [{"name": "features", "shape": [1, 6], "dtype": "int8", "scale": 0.0235, "zero_point": 0}],
    "outputs": [{"name": "scores", "shape": [1, 4], "dtype": "int8", "scale": 0.0314, "zero_point": -128}],
}


def relu_model(shape=(1, 4, 4, 3), edgekit_metadata: dict | None = None) -> bytes:
    """image -> RELU -> out, both of ``shape``; with ``edgekit_metadata`` as convert records it."""
    g = Graph()
    g.add_tensor("image", shape, np.float32)
    g.add_tensor("out", shape, np.float32)
    g.add_node("RELU", ["image"], ["out"], {})
    g.inputs, g.outputs = ["image"], ["out"]
    g.metadata["_signature"] = {"inputs": ["image"], "outputs": ["out"]}
    if edgekit_metadata is not None:
        g.metadata["edgekit"] = edgekit_metadata
    return serialize(g)


@pytest.fixture
def keys(tmp_path):
    private, public = tmp_path / "fleet.key", tmp_path / "fleet.pub"
    return private, package.generate_key(private, public)


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> dict[str, Path]:
    """digits_cnn.onnx (an NCHW image [1, 1, 8, 8]) converted with --io-layout auto and keep."""
    from edgekit.converters import convert

    folder = tmp_path_factory.mktemp("digits")
    models = {}
    for io_layout in ("auto", "keep"):
        models[io_layout] = folder / f"digits_{io_layout}.tflite"
        convert(str(DIGITS), models[io_layout], io_layout=io_layout)
    return models


def test_an_nhwc_model_carries_its_layout_from_converter_to_manifest_to_device(tmp_path, digits, keys):
    info = package.build(digits["auto"], tmp_path / "d.tar.xz", name="d", version="1", signing_key=keys[0])
    assert info.manifest["io"]["inputs"][0] == {
        "name": "image",
        "shape": [1, 8, 8, 1],
        "dtype": "float32",
        "layout": "NHWC",
        "source_layout": "NCHW",
    }
    manifest = package.unpack(info.path, tmp_path / "device")  # as the device reads it
    recorded = package.manifest_signature(manifest)
    with load(tmp_path / "device" / manifest["model"], threads=1) as session:
        assert session.signature == recorded and not session.signature.differences(recorded)
        image = session.signature.inputs[0]
        assert (image.layout, image.source_perm) == ("NHWC", (0, 2, 3, 1))
        # the layout is true: the ONNX model's NCHW array, moved as the signature says, gives
        # onnxruntime's answer on LiteRT
        x = np.random.default_rng(0).uniform(0, 1, (1, 1, 8, 8)).astype(np.float32)
        want = ort.InferenceSession(str(DIGITS), providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]
        got = session.run(np.transpose(x, image.source_perm))["logits"]
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
        # the agent feeds images in that layout, read from the signature and not guessed
        assert image_preprocessing(image) == {"resize": [8, 8], "color": "L", "layout": "nhwc"}


def test_a_kept_nchw_layout_reaches_the_device_and_the_preprocessing_check(tmp_path, digits, keys):
    with load(digits["keep"], threads=1) as session:
        image = session.signature.inputs[0]
        assert (image.shape, image.layout, image.source_perm) == ((1, 1, 8, 8), "NCHW", None)
        assert image_preprocessing(image) == {"resize": [8, 8], "color": "L", "layout": "nchw"}
    with pytest.raises(package.PackageError, match="layout nhwc for input 'image', which is NCHW"):
        package.build(
            digits["keep"], tmp_path / "k.tar", name="d", version="1", signing_key=keys[0], preprocessing={"color": "L"}
        )
    ok = package.build(
        digits["keep"],
        tmp_path / "k.tar",
        name="d",
        version="1",
        signing_key=keys[0],
        preprocessing={"color": "L", "layout": "nchw"},
    )
    assert ok.manifest["io"]["inputs"][0]["layout"] == "NCHW"


def test_an_old_format_manifest_still_reads(tmp_path, digits):
    old = Signature.from_dict(OLD_INT8_IO)
    features = old.inputs[0]
    assert (features.layout, features.source_layout, features.quant) == (None, None, (0.0235, 0))
    assert features.dtype == np.int8 and features.shape == (1, 6)
    assert not Signature.from_model("m.tflite", int8_model()).differences(old)
    old_digits = Signature.from_dict(OLD_DIGITS_IO)
    now = Signature.from_model(digits["auto"].name, digits["auto"].read_bytes())
    assert now.inputs[0].layout == "NHWC" and old_digits.inputs[0].layout is None
    assert not now.differences(old_digits) and not old_digits.differences(now)  # unknown layout: no difference
    assert package.io_differences(OLD_DIGITS_IO, now.to_dict()) == []
    assert package.preprocessing_problems({"color": "L"}, OLD_DIGITS_IO) == []
    assert Signature.from_dict(now.to_dict()) == now
    with pytest.raises(ValueError, match="shape"):
        Signature.from_dict({"inputs": [{"name": "x", "dtype": "float32"}]})
    with pytest.raises(ValueError, match="unknown layout"):
        Signature.from_dict({"inputs": [{**OLD_DIGITS_IO["inputs"][0], "layout": "HWC"}]})


def test_differences_name_the_tensor():
    serving = Signature.from_dict(OLD_INT8_IO)
    wider = Signature.from_dict({**OLD_INT8_IO, "inputs": [{**OLD_INT8_IO["inputs"][0], "shape": [1, 7]}]})
    assert wider.differences(serving) == ["input 'features' shape [1, 7] instead of [1, 6]"]
    extra = {**OLD_INT8_IO["outputs"][0], "name": "x"}
    more = Signature.from_dict({**OLD_INT8_IO, "outputs": [*OLD_INT8_IO["outputs"], extra]})
    assert more.differences(serving) == ["outputs ['scores', 'x'] instead of ['scores']"]
    nchw = TensorSignature("image", (1, 3, 3, 3), np.dtype("float32"), "NCHW")
    nhwc = TensorSignature("image", (1, 3, 3, 3), np.dtype("float32"), "NHWC")
    assert Signature((nhwc,), ()).differences(Signature((nchw,), ())) == ["input 'image' layout NHWC instead of NCHW"]


def test_the_fallback_rule_for_files_that_record_no_layout(tmp_path):
    """The format's convention, never the shape: [1, 3, 3, 3] reads as NHWC in a .tflite file."""
    bare = Signature.from_model("m.tflite", relu_model((1, 3, 3, 3)))
    assert [t.layout for t in (*bare.inputs, *bare.outputs)] == ["NHWC", "NHWC"]
    assert Signature.from_model("m.tflite", float_model()).inputs[0].layout is None  # 2-D: no layout
    # convert's record is authoritative: a 4-D tensor it gives no layout has none
    recorded = relu_model(edgekit_metadata={"io_layouts": {"image": "NCHW"}})
    assert [t.layout for t in (*Signature.from_model("m.tflite", recorded).inputs,)] == ["NCHW"]
    assert Signature.from_model("m.tflite", recorded).outputs[0].layout is None
    # edgekit before --io-layout recorded only the transposes it made (NCHW -> NHWC)
    older = Signature.from_model("m.tflite", relu_model(edgekit_metadata={"io_layout": {"image": [0, 2, 3, 1]}}))
    assert (older.inputs[0].layout, older.inputs[0].source_perm) == ("NHWC", (0, 2, 3, 1))
    assert (older.outputs[0].layout, older.outputs[0].source_perm) == ("NHWC", None)
    onnx_signature = Signature.from_model(DIGITS.name, DIGITS.read_bytes())
    assert onnx_signature.inputs[0].layout == "NCHW" and onnx_signature.inputs[0].shape == (1, 1, 8, 8)
    assert LayoutRecord(".onnx").label(TensorSignature("x", (2, 2), np.dtype("float32"))).layout is None


def test_the_session_signature_follows_the_backend(tmp_path, digits):
    with load(DIGITS, threads=1) as session:  # onnxruntime: the ONNX file's own layout
        assert session.signature == Signature.from_model(DIGITS.name, DIGITS.read_bytes())
    model = tmp_path / "relu.tflite"
    model.write_bytes(relu_model(edgekit_metadata={"io_layouts": {"image": "NCHW", "out": "NCHW"}}))
    with load(model, threads=1) as session:
        session.resize("image", (3, 4, 4, 3))
        image = session.signature.inputs[0]
        assert (image.shape, image.layout) == ((3, 4, 4, 3), "NCHW")  # the file's record, kept on a new interpreter
        assert session.inputs[0].layout == "NCHW"  # the backend's TensorSpec is a TensorSignature


def test_images_are_not_fed_to_an_input_whose_layout_is_unknown():
    unknown = TensorSignature("grid", (1, 2, 3, 4), np.dtype("float32"))
    with pytest.raises(ValueError, match="package the model with a preprocessing spec"):
        image_preprocessing(unknown)


def test_inspect_and_package_show_the_signature(tmp_path, digits, keys, capsys):
    from edgekit.cli import main as edgekit

    assert edgekit(["inspect", str(digits["auto"])]) == 0
    assert "input  image: NHWC [1,8,8,1] float32 (NCHW in the source model)" in capsys.readouterr().out
    assert edgekit(["inspect", str(digits["auto"]), "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["signature"] == Signature.from_model(".tflite", digits["auto"].read_bytes()).to_dict()
    argv = ["package", str(digits["keep"]), "--name", "d", "--version", "1", "--sign", str(keys[0])]
    assert edgekit([*argv, "-o", str(tmp_path / "d.tar")]) == 0
    assert "input  image: NCHW [1,1,8,8] float32" in capsys.readouterr().out.splitlines()
