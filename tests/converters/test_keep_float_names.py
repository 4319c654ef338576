"""keep_float names ONNX nodes to leave in float; a name that matches none was ignored without a
word (the model came out all int8). It is refused before any work, naming the parameter and the
model's closest node names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgekit.converters import convert
from edgekit.errors import ParameterError

SAMPLES = Path(__file__).resolve().parents[2] / "edgekit" / "samples"
DIGITS = str(SAMPLES / "digits_cnn.onnx")


def test_a_keep_float_name_that_matches_no_node_is_refused(tmp_path):
    calibration = np.load(SAMPLES / "digits_data.npz")["x_calib"][:8]
    out = tmp_path / "m.tflite"
    with pytest.raises(ParameterError) as caught:
        convert(
            DIGITS,
            out,
            quantize="int8",
            calibration=calibration,
            keep_float=["/classifier/Gemm", "/features/features.0/Conf"],
        )
    message = str(caught.value)
    assert message.startswith("keep_float: the model has no node named '/features/features.0/Conf'"), message
    assert "'/features/features.0/Conv'" in message and "/classifier/Gemm'" not in message.split(";")[0], message
    assert caught.value.renamed({"keep_float": "--keep-float"}).startswith("--keep-float: ")
    assert not out.exists()
    with pytest.raises(ParameterError, match=r"no node named '\{x\}'; its nodes are named like \['/Flatten'"):
        convert(DIGITS, out, quantize="int8", calibration=calibration, keep_float=["{x}"])  # braces said as they are
