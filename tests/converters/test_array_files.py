"""Sample array files (.npy/.npz) are read in one place, and every way one can be wrong is one
edgekit error naming the file and what to give instead (the CLI probe found zipfile.BadZipFile
tracebacks for a truncated .npz in four commands). Samples that are NaN/Inf, or of another
shape than the model takes, are refused; a verification figure that is NaN never passes."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from edgekit.converters.quant.calibration_data import load_array_file, load_calibration, split_samples
from edgekit.converters.verification import OutputComparison, VerificationReport, load_samples
from edgekit.errors import CalibrationError, InputError, ParameterError


def _npz(folder: Path) -> Path:
    path = folder / "x.npz"
    np.savez(path, image=np.ones((4, 1, 8, 8), np.float32))
    return path


def _bad_files(folder: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, words its error must say)"""
    whole = _npz(folder).read_bytes()
    (folder / "trunc.npz").write_bytes(whole[:200])
    np.save(folder / "whole.npy", np.ones((4, 1, 8, 8), np.float32))
    (folder / "trunc.npy").write_bytes((folder / "whole.npy").read_bytes()[:100])
    (folder / "text.npy").write_text("not an array\n")
    np.save(folder / "objects.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    np.savez(folder / "objects.npz", image=np.array([[1], "x"], dtype=object))
    with zipfile.ZipFile(folder / "notes.npz", "w") as z:
        z.writestr("readme.txt", "hello")
    (folder / "adir").mkdir()
    return {
        "missing": (folder / "nope.npz", "does not exist"),
        "folder": (folder / "adir", "is a folder"),
        "truncated npz": (folder / "trunc.npz", "damaged or truncated .npz"),
        "truncated npy": (folder / "trunc.npy", "damaged or truncated .npy"),
        "text": (folder / "text.npy", "not a .npy/.npz array file"),
        "object npy": (folder / "objects.npy", "Python objects"),
        "object npz": (folder / "objects.npz", "Python objects"),
        "zip of other files": (folder / "notes.npz", "zip archive holding ['readme.txt']"),
    }


def test_every_bad_array_file_is_one_error_naming_it_and_what_to_give(tmp_path):
    for case, (path, words) in _bad_files(tmp_path).items():
        with pytest.raises(InputError) as caught:
            load_array_file(path, "data")
        message = str(caught.value)
        assert words in message and f"data {path}" in message, (case, message)
        assert "numpy.save" in message and "\n" not in message, (case, message)
        assert "allow_pickle" not in message, (case, message)  # numpy's advice to load unsafely is not repeated


def test_good_array_files_read_whole(tmp_path):
    arrays = load_array_file(_npz(tmp_path), "data")
    assert list(arrays) == ["image"] and arrays["image"].shape == (4, 1, 8, 8)
    np.save(tmp_path / "x.npy", np.arange(6.0).reshape(2, 3))
    assert load_array_file(tmp_path / "x.npy", "data").tolist() == [[0, 1, 2], [3, 4, 5]]


def test_calibration_validation_and_verification_data_share_the_reader(tmp_path):
    from edgekit.converters.quant.accuracy import load_validation

    trunc = tmp_path / "trunc.npz"
    trunc.write_bytes(_npz(tmp_path).read_bytes()[:200])
    with pytest.raises(CalibrationError, match=r"calibration data .*trunc.npz is a damaged or truncated .npz"):
        load_calibration(trunc)
    with pytest.raises(ParameterError, match=r"validation data .*trunc.npz is a damaged or truncated .npz"):
        load_validation(trunc)
    with pytest.raises(InputError, match=r"data .*trunc.npz is a damaged or truncated .npz"):
        load_samples(trunc, ["image"])
    (tmp_path / "samples").mkdir()
    (tmp_path / "samples" / "0.npy").write_bytes(b"\x93NUMPY")  # a folder of .npy samples, one cut short
    with pytest.raises(InputError, match=r"0.npy is a damaged or truncated .npy"):
        load_samples(tmp_path / "samples", ["image"])


def test_verification_data_must_be_finite(tmp_path):
    nan = np.ones((2, 1, 8, 8), np.float32)
    nan[1, 0, 3, 3] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    with pytest.raises(InputError, match="data for input 'image' contains 1 NaN/Inf"):
        load_samples(tmp_path / "nan.npy", ["image"])
    with pytest.raises(InputError, match="contains 1 NaN/Inf"):
        load_samples({"image": np.array([1.0, np.inf])}, ["image"])
    tokens = {"ids": np.array([[1, 2, 3]], np.int64)}  # whole-number inputs have no NaN to check
    assert load_samples(tokens, ["ids"])["ids"].tolist() == [[1, 2, 3]]


def test_a_nan_figure_never_passes_a_check():
    report = VerificationReport(samples=2)
    report.outputs = [OutputComparison("a", 45.0, 1.0, 0.0, None), OutputComparison("b", float("nan"), 1.0, 0.0, None)]
    assert np.isnan(report.min_sqnr_db)  # min() alone returns 45.0 here: NaN compares false both ways
    assert not report.meets(30.0)
    report.outputs.reverse()
    assert np.isnan(report.min_sqnr_db) and not report.meets(-1e9)
    report.outputs = [OutputComparison("a", 45.0, 1.0, 0.0, None), OutputComparison("b", float("inf"), 1.0, 0.0, None)]
    assert report.meets(45.0) and not report.meets(45.1)
    with pytest.raises(InputError, match="finite"):
        report.meets(float("nan"))


def test_samples_of_another_shape_are_refused_naming_the_models():
    want = (1, 1, 8, 8)
    assert [s.shape for s in split_samples(np.zeros((3, 1, 8, 8)), want, "x")] == [want] * 3
    assert [s.shape for s in split_samples(np.zeros((2, *want)), want, "x")] == [want] * 2
    for wrong in [(10, 3, 8, 8), (10, 1, 4, 4), (10, 64)]:
        with pytest.raises(InputError, match=r"have shape .*; the model takes \[1, 1, 8, 8\]"):
            split_samples(np.zeros(wrong), want, "x", InputError)
    assert [s.shape for s in split_samples(np.zeros(3), (), "x")] == [(), (), ()]  # a scalar input
