"""Options convert and prune would ignore, found accepted by a red-team probe: each is refused in one line,
exit 2, before any work (the harness of test_cli_matrix)."""

from __future__ import annotations

import pytest

from tests.test_cli_matrix import test_bad_input_is_one_line_exit_2_and_changes_nothing as one_line_exit_2
from tests.test_cli_matrix import work  # noqa: F401 (the fixture)

CONVERT = ["convert", "model.onnx", "-o", "x.tflite"]
CASES = [  # (case id, extra argv, words the one line must hold)
    # --io-type int8 left a dynamic model's input float32, silently
    ("dynamic-io-type", ["--quantize", "dynamic", "--io-type", "int8"], ["--io-type", "int8 or int16x8"]),
    ("fp16-calibration", ["--quantize", "fp16", "--calibration", "nan.npy"], ["--calibration", "fp16"]),
    ("fp16-per-tensor", ["--quantize", "fp16", "--per-tensor"], ["--per-tensor"]),
    ("dynamic-keep-float", ["--quantize", "dynamic", "--keep-float", "conv"], ["--keep-float"]),
    ("equalize-float", ["--equalize"], ["--equalize goes with --quantize"]),
    ("data-without-verify", ["--data", "nan.npy"], ["--data goes with --verify"]),
    ("samples-without-verify", ["--samples", "4"], ["--samples", "random inputs"]),
    ("samples-with-data", ["--verify", "--data", "nan.npy", "--samples", "4"], ["--samples"]),
    ("criterion-without-budget", ["--prune-criterion", "l2"], ["--prune-ratio or --prune-macs"]),
    ("round-to-without-budget", ["--prune-round-to", "8"], ["--prune-round-to"]),
    ("mean-without-images", ["--quantize", "int8", "--calibration", "nan.npy", "--mean", "0.5"], ["images"]),
    ("scale-without-images", ["--scale", "0.5"], ["--scale", "images"]),
    ("decision-output-without-budget", ["--decision-output", "y"], ["--decision-output goes with --accuracy-budget"]),
]


@pytest.mark.parametrize(("argv", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_an_option_convert_would_ignore_is_refused(work, argv, words):  # noqa: F811
    one_line_exit_2(work, [*CONVERT, *argv], words)


PRUNE = ["prune", "model.onnx", "-o", "p.onnx"]
PRUNE_CASES = [  # (case id, extra argv, words the one line must hold)
    ("clusters-with-channel", ["--ratio", "0.5", "--clusters", "4"], ["--clusters goes with --method cluster"]),
    ("criterion-with-magnitude", ["--method", "magnitude", "--ratio", "0.5", "--criterion", "l2"], ["channel"]),
    ("scope-with-channel", ["--ratio", "0.5", "--scope", "layer"], ["--method magnitude"]),
    ("energy-and-rank", ["--method", "lowrank", "--energy", "0.9", "--rank", "0.5"], ["give one"]),
    ("threads-without-latency", ["--ratio", "0.5", "--threads", "2"], ["--allocation latency"]),
    ("labels-without-table", ["--ratio", "0.5", "--labels", "ints.npy"], ["--sensitivity"]),
    ("min-channels-negative", ["--ratio", "0.5", "--min-channels", "-3"], ["1 or more"]),
]


@pytest.mark.parametrize(("argv", "words"), [c[1:] for c in PRUNE_CASES], ids=[c[0] for c in PRUNE_CASES])
def test_an_option_prune_would_ignore_is_refused(work, argv, words):  # noqa: F811
    one_line_exit_2(work, [*PRUNE, *argv], words)
