"""Issue 21: a quantized model is not always faster (a tiny model, an audio front end): convert
times it against a float32 conversion of the same model on this machine and says so. What the
figures are depends on the machine; the tests check they are measured and reported, not their
direction."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
DIGITS = ROOT / "edgekit" / "samples" / "digits_cnn.onnx"


def _convert(tmp_path, *options: str) -> subprocess.CompletedProcess:
    calibration = tmp_path / "calibration.npy"
    np.save(calibration, np.load(ROOT / "edgekit" / "samples" / "digits_data.npz")["x_calib"][:16])
    command = ["convert", str(DIGITS), "-o", str(tmp_path / "q.tflite"), "--calibration", str(calibration), *options]
    return subprocess.run([sys.executable, "-m", "edgekit", *command], capture_output=True, text=True, timeout=300)


def test_int8_is_timed_against_float32_and_reported(tmp_path):
    run = _convert(tmp_path, "--quantize", "int8", "--report", str(tmp_path / "r.json"))
    assert run.returncode == 0, run.stderr
    line = next(x for x in run.stdout.splitlines() if x.startswith("speed on this machine"))
    said = re.match(r"speed on this machine \(1 thread\): int8 (\S+) (us|ms), float32 (\S+) (us|ms): "
                    r"int8 takes (\d+\.\d\d)x float32's time", line)  # fmt: skip
    assert said, line
    speed = json.loads((tmp_path / "r.json").read_text())["speed"]
    assert speed["mode"] == "int8" and speed["threads"] == 1
    assert speed["quantized_ms"] > 0 and speed["float_ms"] > 0
    assert abs(speed["ratio"] - speed["quantized_ms"] / speed["float_ms"]) < 1e-9
    assert f"{speed['ratio']:.2f}" == said.group(5)


def test_no_speed_check_skips_it_and_needs_a_quantized_model(tmp_path):
    run = _convert(tmp_path, "--quantize", "int8", "--no-speed-check")
    assert run.returncode == 0 and "speed on this machine" not in run.stdout
    refused = subprocess.run([sys.executable, "-m", "edgekit", "convert", str(DIGITS), "-o", str(tmp_path / "f.tflite"),
                              "--no-speed-check"], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert refused.returncode == 2 and "--no-speed-check goes with --quantize" in refused.stderr
    assert not (tmp_path / "f.tflite").exists()
