"""Per-layer comparison finds every layer and tells a right conversion from a wrong one."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
from onnx import helper

from edgekit.converters import convert
from edgekit.converters.layer_compare import compare_layers
from tests.converters.onnx_models import model, rand

N = helper.make_node


def _cnn(seed: int):
    return model(
        [
            N("Conv", ["x", "w1"], ["a"], pads=[1, 1, 1, 1]),
            N("Relu", ["a"], ["r"]),
            N("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
            N("Conv", ["p", "w2"], ["c"]),
            N("GlobalAveragePool", ["c"], ["g"]),
            N("Flatten", ["g"], ["y"]),
        ],
        {"x": (1, 3, 8, 8)},
        {"y": None},
        {"w1": rand(4, 3, 3, 3, seed=seed), "w2": rand(5, 4, 1, 1, seed=seed + 1)},
    )


def test_every_layer_matches_for_a_right_conversion(tmp_path):
    m = _cnn(1)
    convert(m, tmp_path / "m.tflite")
    report = compare_layers(m, tmp_path / "m.tflite", {"x": rand(1, 3, 8, 8, seed=9)})
    assert {layer.tensor for layer in report.layers} == {"r", "p", "c", "g", "y"}
    assert min(layer.sqnr_db for layer in report.layers) > 60


def test_a_wrong_model_shows_in_its_first_layer(tmp_path):
    convert(_cnn(1), tmp_path / "m.tflite")
    report = compare_layers(_cnn(5), tmp_path / "m.tflite", {"x": rand(1, 3, 8, 8, seed=9)})
    assert report.layers[0].tensor == "r" and report.layers[0].sqnr_db < 20
    assert report.worst(1)[0].sqnr_db < 20


def test_verify_cli_writes_a_json_report(tmp_path):
    m = _cnn(1)
    onnx_path = tmp_path / "m.onnx"
    onnx_path.write_bytes(m.SerializeToString())
    convert(str(onnx_path), tmp_path / "m.tflite")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgekit",
            "verify",
            str(onnx_path),
            str(tmp_path / "m.tflite"),
            "--per-layer",
            "--report",
            str(tmp_path / "r.json"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "worst layers" in result.stdout
    import json

    layers = json.loads((tmp_path / "r.json").read_text())["layers"]
    assert len(layers) == 5 and all(np.isfinite(layer["max_abs_error"]) for layer in layers)
