"""The CLI probe's data-file defects: a truncated .npz given to any command that reads samples
(convert --calibration / --verify --data / --validation-data, verify --data, prune --data) was a
zipfile.BadZipFile traceback; prune silently reshaped samples of the wrong shape; verify passed
--min-sqnr on NaN data and took --min-sqnr nan; verify --report could overwrite the model it
checks; convert --keep-float ignored a name that matches no node. Each is now one line on
stderr, exit 2, and no file written or changed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgekit.cli import main
from tests.test_cli_paths import _refused

SAMPLE = Path(__file__).resolve().parent.parent / "edgekit" / "samples"


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    from edgekit.converters import convert

    folder = tmp_path_factory.mktemp("data_files")
    (folder / "model.onnx").write_bytes((SAMPLE / "digits_cnn.onnx").read_bytes())  # takes image [1, 1, 8, 8]
    convert(str(folder / "model.onnx"), folder / "model.tflite")
    calibration = np.load(SAMPLE / "digits_data.npz")["x_calib"][:16]
    np.save(folder / "calib.npy", calibration)
    np.savez(folder / "whole.npz", image=calibration)
    (folder / "trunc.npz").write_bytes((folder / "whole.npz").read_bytes()[:200])
    np.save(folder / "small.npy", calibration[:10, :, :4, :4])  # [10, 1, 4, 4]
    np.save(folder / "three.npy", np.repeat(calibration[:10], 3, axis=1))  # [10, 3, 8, 8]: reshapes to 30 samples
    nan = calibration[:4].copy()
    nan[0, 0, 0, 0] = np.nan
    np.save(folder / "nan.npy", nan)
    np.save(folder / "objects.npy", np.array([calibration[0], None], dtype=object), allow_pickle=True)
    return folder


INT8 = ["convert", "model.onnx", "-o", "out.tflite", "--quantize", "int8"]
BIAS = ["prune", "model.onnx", "-o", "p.onnx", "--ratio", "0.5", "--bias-correct"]

# (case id, argv, words the one line must hold)
CASES = [
    ("B1 calibration", [*INT8, "--calibration", "trunc.npz"], ["calibration data", "trunc.npz", "truncated"]),
    ("B2 verify", ["verify", "model.onnx", "model.tflite", "--data", "trunc.npz"], ["trunc.npz", "truncated"]),
    (
        "B2 convert --verify",
        ["convert", "model.onnx", "-o", "out.tflite", "--verify", "--data", "trunc.npz"],
        ["--data", "trunc.npz", "truncated"],
    ),
    (
        "B3 validation",
        [*INT8, "--calibration", "calib.npy", "--accuracy-budget", "0.01", "--validation-data", "trunc.npz"],
        ["validation data", "trunc.npz", "truncated"],
    ),
    ("B4 prune", [*BIAS, "--data", "trunc.npz"], ["--data", "trunc.npz", "truncated"]),
    ("B5 prune small", [*BIAS, "--data", "small.npy"], ["[10, 1, 4, 4]", "[N, 1, 8, 8]"]),
    ("C4 prune channels", [*BIAS, "--data", "three.npy"], ["[10, 3, 8, 8]", "[N, 1, 8, 8]"]),
    ("C4 sensitivity", ["prune", "model.onnx", "--sensitivity", "--data", "three.npy"], ["[N, 1, 8, 8]"]),
    ("prune nan", [*BIAS, "--data", "nan.npy"], ["--data", "NaN"]),
    (
        "C1 verify nan",
        ["verify", "model.onnx", "model.tflite", "--data", "nan.npy", "--min-sqnr", "30"],
        ["NaN/Inf", "'image'"],
    ),
    (
        "C1 convert --verify nan",
        ["convert", "model.onnx", "-o", "out.tflite", "--verify", "--data", "nan.npy"],
        ["--data", "NaN/Inf"],
    ),
    ("C2 nan", ["verify", "model.onnx", "model.tflite", "--min-sqnr", "nan"], ["--min-sqnr", "finite"]),
    ("C2 inf", ["verify", "model.onnx", "model.tflite", "--min-sqnr=-inf"], ["--min-sqnr", "finite"]),
    ("C2 text", ["verify", "model.onnx", "model.tflite", "--min-sqnr", "high"], ["--min-sqnr"]),
    ("A2 report over model", ["verify", "model.onnx", "model.tflite", "--report", "model.tflite"], ["--report"]),
    ("A2 report over onnx", ["verify", "model.onnx", "model.tflite", "--report", "model.onnx"], ["--report"]),
    (
        "A2 report over data",
        ["verify", "model.onnx", "model.tflite", "--data", "calib.npy", "--report", "calib.npy"],
        ["--report"],
    ),
    (
        "C7 keep-float",
        [*INT8, "--calibration", "calib.npy", "--keep-float", "nosuchnode"],
        ["--keep-float", "'nosuchnode'"],
    ),
    ("pickled", ["verify", "model.onnx", "model.tflite", "--data", "objects.npy"], ["objects.npy", "Python objects"]),
    ("labels", ["prune", "model.onnx", "--sensitivity", "--labels", "calib.npy"], ["--labels", "whole-number"]),
]


@pytest.mark.parametrize(("argv", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_data_is_one_line_exit_2_and_changes_nothing(work, capsys, monkeypatch, argv, words):
    line = _refused(work, monkeypatch, capsys, argv)
    assert "allow_pickle" not in line, line
    for word in words:
        assert word in line, line


def test_keep_float_takes_the_models_node_names(work, capsys, monkeypatch):
    """A real node name still converts (the check refuses only names that match nothing)."""
    monkeypatch.chdir(work)
    code = main([*INT8, "--calibration", "calib.npy", "--keep-float", "/classifier/Gemm", "--no-speed-check"])
    assert code == 0, capsys.readouterr().err
    (work / "out.tflite").unlink()
