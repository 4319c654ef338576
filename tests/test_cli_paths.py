"""Outputs that would destroy something (the cli-redteam probe): no command writes over one of its
own inputs (the signing key, calibration, verification or validation data) or over its other
output, nor a model under the other format's name; bad --data is refused before a model is
written; package names, versions and latency budgets are checked. Each refusal is one line,
exit 2, and leaves every file as it was."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest

from edgekit import package
from edgekit.cli import main
from edgekit.errors import OutputPathError, PackageError
from edgekit.files import check_output_path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "edgekit" / "samples" / "digits_cnn.onnx"
DIGITS = ROOT / "edgekit" / "samples" / "digits_data.npz"


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    from edgekit.converters import convert

    folder = tmp_path_factory.mktemp("paths")
    (folder / "model.onnx").write_bytes(SAMPLE.read_bytes())
    (folder / "victim.onnx").write_bytes(SAMPLE.read_bytes())
    convert(str(SAMPLE), folder / "model.tflite")
    samples = np.load(DIGITS)["x_calib"]
    for name in ("calib.npy", "data.npy", "val.npy"):
        np.save(folder / name, samples[:16])
    np.save(folder / "labels.npy", np.zeros(16, np.int64))
    np.save(folder / "wrongshape.npy", np.zeros((10, 3, 8, 8), np.float32))
    np.savez(folder / "empty.npz")
    package.generate_key(folder / "k.key", folder / "k.pub")
    package.generate_key(folder / "pkg.sig", folder / "pkg.pub")  # a key whose name is another package's .sig
    return folder


@pytest.fixture
def work(template, tmp_path) -> Path:
    """A fresh copy of the files for each test: one that wrongly writes over them spoils no other."""
    folder = tmp_path / "work"
    shutil.copytree(template, folder)
    return folder


def _snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*")}


def _refused(work: Path, monkeypatch, capsys, argv: list[str]) -> str:
    """Run ``edgekit argv`` in ``work``: it must exit 2 with one line and change no file; the line."""
    monkeypatch.chdir(work)
    before = _snapshot(work)
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's refusals
        code = exc.code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip() and "XNNPACK" not in line]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, (code, err)
    assert _snapshot(work) == before
    return lines[0]


PACKAGE = ["package", "model.tflite", "--name", "digits", "--version", "1.0"]
CONVERT = ["convert", "model.onnx", "-o", "x.tflite"]
INT8 = [*CONVERT, "--quantize", "int8", "--calibration", "calib.npy", "--no-speed-check"]


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        ([*PACKAGE, "--sign", "k.key", "-o", "k.key"], ["(--sign)", "another -o"]),  # A1: the key was replaced
        ([*PACKAGE, "--sign", "pkg.sig", "-o", "pkg"], ["pkg.sig", "(--sign)"]),  # the .sig would replace it
        ([*INT8, "--report", "calib.npy"], ["(--calibration)", "another --report"]),  # A3
        ([*CONVERT, "--verify", "--data", "data.npy", "--report", "data.npy"], ["(--data)", "another --report"]),
        (
            [*INT8, "--accuracy-budget", "1%", "--validation-data", "val.npy", "--report", "val.npy"],
            ["(--validation-data)", "another --report"],
        ),
        ([*CONVERT, "--report", "model.onnx"], ["(MODEL)", "another --report"]),  # F: it said "another -o"
        ([*CONVERT, "--report", "x.tflite"], ["--report and -o", "different files"]),  # A4
        ([*CONVERT, "--report", "./x.tflite"], ["--report and -o"]),
        (["verify", "model.onnx", "model.tflite", "--report", "model.tflite"], ["(TFLITE_MODEL)"]),  # A2
        (["verify", "model.onnx", "model.tflite", "--data", "data.npy", "--report", "data.npy"], ["(--data)"]),
        (["prune", "model.onnx", "--sensitivity", "--labels", "labels.npy", "-o", "labels.npy"], ["(--labels)"]),
    ],
)
def test_no_output_replaces_an_input_or_the_other_output(work, monkeypatch, capsys, argv, words):
    line = _refused(work, monkeypatch, capsys, argv)
    for word in words:
        assert word in line, line


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["convert", "model.onnx", "-o", "victim.onnx"], ["victim.onnx", "ONNX", "TFLite", "-o a .tflite name"]),
        (["convert", "model.onnx", "-o", "new.ONNX"], ["-o a .tflite name"]),
        (["prune", "model.onnx", "-o", "p.tflite", "--ratio", "0.5"], ["-o a .onnx name"]),
    ],
)
def test_a_model_is_never_written_under_the_other_formats_name(work, monkeypatch, capsys, argv, words):
    line = _refused(work, monkeypatch, capsys, argv)
    for word in words:
        assert word in line, line


def test_only_the_other_formats_name_is_refused(tmp_path):
    for name, model_format in (("m.tflite", "tflite"), ("m.bin", "tflite"), ("m", "tflite"), ("m.onnx", "onnx")):
        assert check_output_path(tmp_path / name, model_format=model_format) == tmp_path / name
    with pytest.raises(OutputPathError, match="give output a .onnx name"):
        check_output_path(tmp_path / "m.tflite", option="output", model_format="onnx")


def test_two_outputs_are_refused_as_one_file_even_through_a_link(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(OutputPathError, match="report and output both name"):
        check_output_path(tmp_path / "link" / "r.json", option="report", outputs={"output": tmp_path / "real/r.json"})
    assert check_output_path(tmp_path / "r.json", option="report", outputs={"output": tmp_path / "m.tflite"})


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ("missing.npy", ["--data missing.npy"]),
        ("wrongshape.npy", ["[10, 3, 8, 8]", "[1, 1, 8, 8]", "[N, 1, 8, 8]"]),
        ("empty.npz", ["--data empty.npz"]),
        ("model.onnx", ["--data model.onnx"]),
    ],
)
def test_bad_verification_data_is_refused_before_the_model_is_written(work, monkeypatch, capsys, data, words):
    """D1: --data was read only after the conversion, which left the model written on exit 2."""
    line = _refused(work, monkeypatch, capsys, [*CONVERT, "--verify", "--data", data])
    for word in words:
        assert word in line, line


def test_good_verification_data_still_verifies(work, monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(work)
    assert main(["convert", "model.onnx", "-o", str(tmp_path / "v.tflite"), "--verify", "--data", "data.npy"]) == 0
    assert "(16 samples)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("flag", "value", "words"),
    [
        ("--name", "../evil", ["--name", "'../evil'", "1 to 64 characters"]),  # C6: wrote ../evil-1.0.tar.xz
        ("--name", "a/b", ["--name"]),
        ("--version", "../1", ["--version"]),
        ("--version", "", ["--version"]),
        ("--latency-budget-ms", "nan", ["--latency-budget-ms", "> 0"]),  # C3: NaN signed into the manifest
        ("--latency-budget-ms", "-5", ["--latency-budget-ms", "> 0"]),
        ("--latency-budget-ms", "inf", ["--latency-budget-ms"]),
        ("--latency-budget-ms", "0", ["--latency-budget-ms"]),
        ("--preprocess", '{"mean": [NaN], "resize": [8, 8], "color": "L", "layout": "nhwc"}', ["NaN"]),
        ("--preprocess", '{"std": [1e999], "resize": [8, 8], "color": "L", "layout": "nhwc"}', ["1e999"]),
    ],
)
def test_package_refuses_names_and_numbers_devices_could_not_use(work, monkeypatch, capsys, flag, value, words):
    argv = ["package", "model.tflite", "--name", "digits", "--version", "1.0", "--sign", "k.key", flag, value]
    line = _refused(work, monkeypatch, capsys, argv)
    for word in words:
        assert word in line, line
    assert list(work.parent.iterdir()) == [work]  # nothing beside the folder (C6 wrote ../evil-1.0.tar.xz)


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"name": "../evil"}, ["package name", "'../evil'"]),
        ({"version": "1.0/../x"}, ["package version"]),
        ({"latency_budget_ms": math.nan}, ["latency_budget_ms", "nan"]),
        ({"latency_budget_ms": -5.0}, ["latency_budget_ms"]),
        ({"latency_budget_ms": math.inf}, ["latency_budget_ms"]),
        ({"latency_budget_ms": True}, ["latency_budget_ms"]),
        ({"preprocessing": {"resize": [8, 8], "color": "L", "layout": "nhwc", "mean": [math.nan]}}, ["preprocessing"]),
        ({"extra": {"note": math.inf}}, ["note"]),
    ],
)
def test_the_library_refuses_them_too_naming_its_parameters(work, tmp_path, options, words):
    request = {"name": "digits", "version": "1.0", "signing_key": work / "k.key", **options}
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(PackageError) as caught:
        package.build(work / "model.tflite", out / "p.tar.xz", **request)
    for word in words:
        assert word in str(caught.value), caught.value
    assert list(out.iterdir()) == []


def test_the_library_never_writes_over_its_signing_key(work, tmp_path):
    key = tmp_path / "k.key"
    key.write_bytes((work / "k.key").read_bytes())
    with pytest.raises(OutputPathError, match=r"\(signing_key\)"):
        package.build(work / "model.tflite", key, name="digits", version="1.0", signing_key=key)
    assert key.read_bytes() == (work / "k.key").read_bytes()


def test_a_valid_budget_is_signed_as_strict_json(work, tmp_path):
    info = package.build(
        work / "model.tflite", tmp_path / "p.tar.xz", name="digits", version="1.0-rc_2", signing_key=work / "k.key",
        latency_budget_ms=50,
    )  # fmt: skip
    with tarfile.open(info.path) as tar:
        text = tar.extractfile("manifest.json").read().decode()
    manifest = json.loads(text, parse_constant=lambda c: pytest.fail(f"manifest holds {c}"))
    assert (manifest["name"], manifest["version"], manifest["latency_budget_ms"]) == ("digits", "1.0-rc_2", 50)
