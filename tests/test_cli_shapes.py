"""--input-shape and --input-value mistakes a red-team probe found accepted, and options typed
in the wrong place: each is one line, exit 2, and nothing written (the harness of test_cli_matrix)."""

from __future__ import annotations

import pytest

from tests.test_cli_matrix import test_bad_input_is_one_line_exit_2_and_changes_nothing as one_line_exit_2
from tests.test_cli_matrix import work  # noqa: F401 (the fixture)

CASES = [  # (case id, argv, words the one line must hold)
    ("inspect-unknown-input", ["inspect", "model.onnx", "--input-shape", "foo=1,1,16"], ["'foo'", "inputs are"]),
    ("inspect-wrong-rank", ["inspect", "model.onnx", "--input-shape", "image=1,1"], ["2 dimensions", "has 4"]),
    ("inspect-contradicts", ["inspect", "model.onnx", "--input-shape", "image=1,3,16,16"], ["contradicts"]),
    (
        "shape-given-twice",
        ["convert", "model.onnx", "-o", "x.tflite", "--input-shape", "image=1,1,8,8", "--input-shape", "image=1,1,8,8"],
        ["twice"],
    ),
    ("shape-zero", ["inspect", "model.onnx", "--input-shape", "image=0,1,8,8"], ["above 0"]),
    (
        "input-value-every-input",
        ["convert", "model.onnx", "-o", "x.tflite", "--input-value", "image=3"],
        ["every input"],
    ),
    # an option typed after the action: say where it goes, or which --help to read
    ("option-after-action", ["fleet", "devices", "--api", "http://x"], ["--api belongs to 'edgekit fleet'"]),
    ("top-option-after-action", ["inspect", "model.onnx", "--log-level", "debug"], ["belongs to 'edgekit'"]),
    ("unknown-option", ["inspect", "model.onnx", "--bogus"], ["see edgekit inspect --help"]),
]


@pytest.mark.parametrize(("argv", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_shape_mistakes_are_one_line_exit_2(work, argv, words):  # noqa: F811
    one_line_exit_2(work, argv, words)


def test_an_empty_or_foreign_model_file_is_named_and_called_so(tmp_path):
    """A probe found "no nodes or no outputs" for an empty .onnx and messages without the file's
    name for a text or empty .tflite."""
    from edgekit.converters.onnx.frontend import read_model
    from edgekit.converters.tflite.reader import load_model
    from edgekit.errors import InvalidModelError

    for name, read in (("e.onnx", read_model), ("e.tflite", load_model)):
        (tmp_path / name).write_bytes(b"")
        with pytest.raises(InvalidModelError, match=f"{name} is an empty file"):
            read(tmp_path / name)
    (tmp_path / "t.tflite").write_text("hello")
    with pytest.raises(InvalidModelError, match="t.tflite is not a TFLite flatbuffer"):
        load_model(tmp_path / "t.tflite")
