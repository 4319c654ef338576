"""Options convert would ignore, found accepted by a red-team probe: each is refused in one line,
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
]


@pytest.mark.parametrize(("argv", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_an_option_convert_would_ignore_is_refused(work, argv, words):  # noqa: F811
    one_line_exit_2(work, [*CONVERT, *argv], words)
