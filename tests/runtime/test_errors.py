"""edgekit.errors.mapped: library exceptions become one edgekit error with their first line."""

from __future__ import annotations

import pytest

from edgekit.errors import BackendError, InputError, InvalidModelError, first_line, mapped
from edgekit.runtime import load


def test_a_library_exception_becomes_the_named_error_with_its_first_line():
    with pytest.raises(BackendError, match=r"^loading: bad header$") as caught, mapped(BackendError, "loading"):
        raise RuntimeError("bad header\n  at frame 3\n  at frame 4")
    assert isinstance(caught.value.__cause__, RuntimeError)  # the library's own exception, for debugging


def test_only_the_given_types_are_mapped_and_edgekit_errors_pass_unchanged():
    with pytest.raises(KeyError), mapped(BackendError, "loading", (ValueError,)):
        raise KeyError("not a ValueError")
    with pytest.raises(InputError, match="^already one line$"), mapped(BackendError, "loading"):
        raise InputError("already one line")


def test_an_exception_without_a_message_is_named_by_its_type():
    assert first_line(ValueError()) == "ValueError"
    assert first_line(ValueError("  \n ")) == "ValueError"
    assert first_line(ValueError("x" * 500)) == "x" * 300


def test_a_damaged_model_is_one_line_from_the_interpreter():
    with pytest.raises(InvalidModelError) as caught:
        load(bytes(4) + b"TFL3" + bytes(56))  # the identifier right, the rest zeros
    assert "\n" not in str(caught.value)


def test_xnnpack_off_for_an_onnx_model_is_refused_not_ignored(tmp_path):
    """A red-team probe's `bench model.onnx --no-xnnpack` ran onnxruntime as if nothing was asked."""
    from edgekit.errors import InputError

    model = tmp_path / "m.onnx"
    model.write_bytes(b"not parsed: refused before")
    with pytest.raises(InputError, match="xnnpack=False is for .tflite models"):
        load(model, xnnpack=False)
