"""Issue 21: torch's default ONNX exporter (torch 2.9 and later) keeps the weights beside the model
in ``model.onnx.data``; edgekit read the .onnx bytes alone and refused every such model ("fails
the ONNX checker: Data of TensorProto ... should be stored in model.onnx.data"). The weights are
read from the model's folder now, and only from there."""

from __future__ import annotations

import subprocess
import sys

import onnx
from onnx import helper

from edgekit.converters import convert, verify
from tests.converters.onnx_models import model, rand


def _saved_with_external_data(path) -> onnx.ModelProto:
    m = model([helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1])], {"x": (1, 4, 8, 8)},
              {"y": None}, {"w": rand(6, 4, 3, 3, seed=1, scale=0.3), "b": rand(6, seed=2)})  # fmt: skip
    onnx.save(m, path, save_as_external_data=True, all_tensors_to_one_file=True, location=f"{path.name}.data",
              size_threshold=0)  # fmt: skip
    return m


def test_a_model_with_its_weights_beside_it_converts(tmp_path):
    path = tmp_path / "model.onnx"
    _saved_with_external_data(path)
    assert (tmp_path / "model.onnx.data").stat().st_size > 800
    assert len(path.read_bytes()) < 800  # the weights are not in the .onnx file
    result = convert(path, tmp_path / "model.tflite")
    assert result.partitions == 1
    assert verify(path, tmp_path / "model.tflite", samples=4).min_sqnr_db >= 60


def test_weights_outside_the_model_folder_are_refused(tmp_path):
    inside = tmp_path / "models"
    inside.mkdir()
    path = inside / "model.onnx"
    _saved_with_external_data(path)
    (tmp_path / "secret.data").write_bytes((inside / "model.onnx.data").read_bytes())
    m = onnx.load(path, load_external_data=False)
    for tensor in m.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = "../secret.data"
    onnx.save(m, path)
    run = subprocess.run([sys.executable, "-m", "edgekit", "convert", str(path), "-o", str(tmp_path / "m.tflite")],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert run.returncode == 2 and "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1
    assert "cannot read the weights it keeps in another file" in run.stderr
    assert not (tmp_path / "m.tflite").exists()
