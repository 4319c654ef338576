"""Issue 20's matrix: every subcommand with bad input ends in one line on stderr naming what was
wrong, the exit code of a user mistake (2), no traceback, no file left behind, no input changed."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "edgekit" / "samples" / "digits_cnn.onnx"


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    from edgekit.converters import convert

    folder = tmp_path_factory.mktemp("matrix")
    (folder / "model.onnx").write_bytes(SAMPLE.read_bytes())
    convert(str(SAMPLE), folder / "model.tflite")
    np.save(folder / "empty.npy", np.zeros((0, 1, 8, 8), np.float32))
    nan = np.ones((4, 1, 8, 8), np.float32)
    nan[0, 0, 0, 0] = np.nan
    np.save(folder / "nan.npy", nan)
    np.save(folder / "ints.npy", np.ones((4, 1, 8, 8), np.int32))
    (folder / "trunc.tflite").write_bytes((folder / "model.tflite").read_bytes()[:100])
    (folder / "text.tflite").write_text("hello")
    (folder / "out").mkdir()
    subprocess.run([sys.executable, "-m", "edgekit", "keys", "new", "k.key", "k.pub"], cwd=folder, check=True)
    return folder


# (case id, argv, words the one line must hold)
CASES = [
    ("convert-no-args", ["convert"], ["required"]),
    ("convert-missing-model", ["convert", "nope.onnx", "-o", "x.tflite"], ["no such file"]),
    ("convert-not-onnx", ["convert", "text.tflite", "-o", "x.tflite"], ["not a readable ONNX"]),
    ("convert-over-input", ["convert", "model.onnx", "-o", "model.onnx"], ["input"]),
    ("convert-into-folder", ["convert", "model.onnx", "-o", "out"], ["folder"]),
    ("convert-into-proc", ["convert", "model.onnx", "-o", "/proc/x.tflite"], ["cannot write"]),
    ("convert-into-missing-folder", ["convert", "model.onnx", "-o", "nodir/x.tflite"], ["does not exist"]),
    ("convert-samples-0", ["convert", "model.onnx", "-o", "x.tflite", "--verify", "--samples", "0"], ["--samples"]),
    ("convert-samples-neg", ["convert", "model.onnx", "-o", "x.tflite", "--verify", "--samples", "-5"], ["--samples"]),
    (
        "convert-samples-huge",
        ["convert", "model.onnx", "-o", "x.tflite", "--verify", "--samples", "100000000"],
        ["1..100000"],
    ),
    ("convert-samples-text", ["convert", "model.onnx", "-o", "x.tflite", "--samples", "many"], ["whole number"]),
    (
        "convert-empty-calibration",
        ["convert", "model.onnx", "-o", "x.tflite", "--quantize", "int8", "--calibration", "empty.npy"],
        ["empty"],
    ),
    (
        "convert-nan-calibration",
        ["convert", "model.onnx", "-o", "x.tflite", "--quantize", "int8", "--calibration", "nan.npy"],
        ["NaN"],
    ),
    (
        "convert-int-calibration",
        ["convert", "model.onnx", "-o", "x.tflite", "--quantize", "int8", "--calibration", "ints.npy"],
        ["dtype"],
    ),
    (
        "convert-missing-calibration",
        ["convert", "model.onnx", "-o", "x.tflite", "--quantize", "int8", "--calibration", "no.npy"],
        ["does not exist"],
    ),
    ("convert-bad-quantize", ["convert", "model.onnx", "-o", "x.tflite", "--quantize", "int4"], ["invalid choice"]),
    ("convert-bad-input-shape", ["convert", "model.onnx", "-o", "x.tflite", "--input-shape", "nope=1,2"], ["nope"]),
    ("convert-bad-output-name", ["convert", "model.onnx", "-o", "x.tflite", "--outputs", "nope"], ["no tensor named"]),
    ("convert-bad-input-value", ["convert", "model.onnx", "-o", "x.tflite", "--input-value", "x"], ["NAME=VALUE"]),
    (
        "convert-input-value-unknown",
        ["convert", "model.onnx", "-o", "x.tflite", "--input-value", "sr=1"],
        ["no input 'sr'"],
    ),
    ("convert-report-folder", ["convert", "model.onnx", "-o", "x.tflite", "--report", "out"], ["folder"]),
    (
        "convert-calibration-without-quantize",
        ["convert", "model.onnx", "-o", "x.tflite", "--calibration", "nan.npy"],
        ["goes with --quantize"],
    ),
    (
        "convert-io-type-without-quantize",
        ["convert", "model.onnx", "-o", "x.tflite", "--io-type", "int8"],
        ["--io-type goes with --quantize"],
    ),
    (
        "convert-keep-float-without-quantize",
        ["convert", "model.onnx", "-o", "x.tflite", "--keep-float", "n"],
        ["--keep-float goes with"],
    ),
    (
        "convert-max-drop-without-auto-mixed",
        ["convert", "model.onnx", "-o", "x.tflite", "--quantize", "int8", "--max-sqnr-drop", "3"],
        ["--auto-mixed"],
    ),
    (
        "convert-io-layout-and-nchw-io",
        ["convert", "model.onnx", "-o", "x.tflite", "--io-layout", "nhwc", "--nchw-io"],
        ["--nchw-io"],
    ),
    (
        "convert-prune-round-to-0",  # the library's round_to, named by convert's own flag
        ["convert", "model.onnx", "-o", "x.tflite", "--prune-ratio", "0.5", "--prune-round-to", "0"],
        ["--prune-round-to 0"],
    ),
    (
        "convert-max-weight-values-1",
        ["convert", "model.onnx", "-o", "x.tflite", "--quantize", "int8", "--max-weight-values", "1"],
        ["--max-weight-values 1"],
    ),
    ("prune-over-input", ["prune", "model.onnx", "-o", "model.onnx", "--ratio", "0.5"], ["input"]),
    ("prune-bad-macs", ["prune", "model.onnx", "-o", "p.onnx", "--macs", "1.5"], ["--macs 1.5", "between 0 and 1"]),
    (
        "prune-round-to-0",
        ["prune", "model.onnx", "-o", "p.onnx", "--ratio", "0.5", "--round-to", "0"],
        ["--round-to 0"],
    ),
    ("prune-two-budgets", ["prune", "model.onnx", "-o", "p.onnx", "--macs", "0.5", "--params", "0.5"], ["not allowed"]),
    ("prune-into-folder", ["prune", "model.onnx", "-o", "out", "--ratio", "0.5"], ["folder"]),
    ("prune-bad-ratio", ["prune", "model.onnx", "-o", "p.onnx", "--ratio", "1.5"], ["between 0 and 1"]),
    ("prune-no-output", ["prune", "model.onnx", "--ratio", "0.5"], ["-o"]),
    ("verify-truncated", ["verify", "model.onnx", "trunc.tflite"], ["damaged TFLite file"]),
    ("verify-text", ["verify", "model.onnx", "text.tflite"], ["not a TFLite model"]),
    ("verify-samples-0", ["verify", "model.onnx", "model.tflite", "--samples", "0"], ["--samples"]),
    ("verify-missing-onnx", ["verify", "nope.onnx", "model.tflite"], ["no such file"]),
    ("inspect-truncated", ["inspect", "trunc.tflite"], ["damaged TFLite file"]),
    ("inspect-text", ["inspect", "text.tflite"], ["TFL3"]),
    ("inspect-missing", ["inspect", "nope.tflite"], ["nope.tflite"]),
    ("inspect-nothing", ["inspect"], ["give a model", "--ops"]),
    ("inspect-ops-and-model", ["inspect", "model.onnx", "--ops"], ["--ops", "takes no model"]),
    ("inspect-tflite-shape", ["inspect", "model.tflite", "--input-shape", "x=1,2"], ["--input-shape", "fixed"]),
    ("bench-threads-huge", ["bench", "model.tflite", "--threads", "100000"], ["--threads 100000 must be"]),
    ("bench-threads-neg", ["bench", "model.tflite", "--threads", "-3"], ["threads"]),
    ("bench-truncated", ["bench", "trunc.tflite"], ["damaged TFLite file"]),
    (
        "package-public-key-to-sign",
        ["package", "model.tflite", "--name", "m", "--version", "1", "--sign", "k.pub"],
        ["public key"],
    ),
    (
        "package-missing-key",
        ["package", "model.tflite", "--name", "m", "--version", "1", "--sign", "nokey"],
        ["signing key"],
    ),
    (
        "package-missing-model",
        ["package", "nope.tflite", "--name", "m", "--version", "1", "--sign", "k.key"],
        ["no such model"],
    ),
    (
        "package-bad-preprocess",
        ["package", "model.tflite", "--name", "m", "--version", "1", "--sign", "k.key", "--preprocess", "{x"],
        ["JSON"],
    ),
    (
        "package-misfit-preprocess",
        [
            "package",
            "model.tflite",
            "--name",
            "m",
            "--version",
            "1",
            "--sign",
            "k.key",
            "--preprocess",
            '{"layout": "nchw"}',
        ],
        ["does not fit"],
    ),
    ("package-no-args", ["package"], ["--sign"]),
    (
        "package-new-key-with-a-model",
        ["package", "model.tflite", "--name", "m", "--version", "1", "--new-key", "new.key", "new.pub"],
        ["--new-key only makes a key pair", "MODEL, --name, --version"],
    ),
    ("keys-overwrite", ["keys", "new", "k.key", "k.pub"], ["exists already"]),
    ("keys-same-path", ["keys", "new", "same", "same"], ["two different files"]),
    ("keys-show-missing", ["keys", "show", "nokey"], ["cannot read"]),
    ("keys-show-binary", ["keys", "show", "model.tflite"], ["not a key file"]),
    ("serve-port-neg", ["fleet", "serve", "--port", "-1"], ["--port"]),
    ("serve-http-port-huge", ["fleet", "serve", "--http-port", "99999"], ["--http-port"]),
    ("serve-db-missing-folder", ["fleet", "--db", "nodir/f.sqlite", "serve"], ["does not exist"]),
    ("serve-no-fleet", ["fleet", "serve", "--http-port", "0"], ["edgekit fleet init"]),
    ("init-public-root-key", ["fleet", "init", "--root-key", "k.pub", "--targets-key", "k.key"], ["public key"]),
    ("init-one-key-for-both", ["fleet", "init", "--root-key", "k.key", "--targets-key", "k.key"], ["two different"]),
    (
        "rotate-public-root-key",
        ["fleet", "--api", "http://127.0.0.1:9", "rotate-key", "--root-key", "k.pub", "--new-targets-key", "k.key"],
        ["public key"],
    ),
    ("fleet-api-not-url", ["fleet", "--api", "notaurl", "devices"], ["http(s) URL"]),
    ("fleet-api-unreachable", ["fleet", "--api", "http://127.0.0.1:9", "devices"], ["cannot reach"]),
    (
        "fleet-follow-without-rollout",
        ["fleet", "--api", "http://127.0.0.1:9", "rollouts", "--follow"],
        ["--follow needs"],
    ),
    ("provision-bad-name", ["fleet", "provision", "cam/1#", "--command-key", "k.pub"], ["device id"]),
    ("provision-private-key", ["fleet", "provision", "cam1", "--command-key", "k.key"], ["private key"]),
    ("provision-no-command-key", ["fleet", "provision", "cam1"], ["command key"]),
    ("provision-no-fleet", ["fleet", "provision", "cam1", "--command-key", "k.pub"], ["edgekit fleet init"]),
    ("provision-bad-port", ["fleet", "provision", "cam1", "--command-key", "k.pub", "--port", "70000"], ["--port"]),
    ("agent-missing-config", ["agent", "run", "--config", "nothere.toml"], ["cannot read"]),
    ("unknown-command", ["frobnicate"], ["invalid choice"]),
]


def _snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(folder.rglob("*"))
    }


@pytest.mark.parametrize(("argv", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(work, argv, words):
    before = _snapshot(work)
    result = subprocess.run(
        [sys.executable, "-m", "edgekit", *argv], cwd=work, capture_output=True, text=True, timeout=120
    )
    lines = [line for line in result.stderr.splitlines() if line.strip() and "XNNPACK" not in line]
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr and len(lines) == 1, result.stderr[-2000:]
    for word in words:
        assert word in lines[0], lines[0]
    assert _snapshot(work) == before  # no file written, none changed


def test_the_matrix_covers_every_subcommand():
    from edgekit.cli import COMMANDS

    covered = {c[1][0] for c in CASES}
    assert set(COMMANDS) - {"demo"} <= covered, set(COMMANDS) - covered
    assert len(CASES) >= 60
