"""What the CLI prints (issue 20): --json carries the table's facts, --log-level is checked,
LiteRT's delegate line stays out of normal output, --version names the libraries, progress
shows on a terminal and as timestamped lines elsewhere."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "edgekit" / "samples" / "digits_cnn.onnx"
DELEGATE_LINE = "Created TensorFlow Lite XNNPACK delegate"


def edgekit(*argv: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "edgekit", *argv], cwd=cwd, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    from edgekit.converters import convert

    folder = tmp_path_factory.mktemp("output")
    convert(str(SAMPLE), folder / "model.tflite")
    assert edgekit("keys", "new", "k.key", "k.pub", cwd=folder).returncode == 0
    return folder


def test_inspect_tflite_json_holds_the_table_facts(work):
    table = edgekit("inspect", "model.tflite", cwd=work)
    document = edgekit("inspect", "model.tflite", "--json", cwd=work)
    assert table.returncode == document.returncode == 0, table.stderr + document.stderr
    facts = json.loads(document.stdout)
    lines = table.stdout.splitlines()
    assert lines[0] == f"model: model.tflite  ({facts['size_bytes']:,} bytes)"
    assert facts["size_bytes"] == (work / "model.tflite").stat().st_size
    assert lines[1] == "ops: " + ", ".join(f"{op} x{n}" for op, n in facts["ops"].items())
    assert lines[2] == f"XNNPACK partitions: {facts['xnnpack_partitions']}" and facts["xnnpack_partitions"] == 1
    assert facts["metadata"]["edgekit"]["source_sha256"] == hashlib.sha256(SAMPLE.read_bytes()).hexdigest()


def test_inspect_onnx_json_holds_the_table_facts():
    table = edgekit("inspect", str(SAMPLE))
    document = edgekit("inspect", str(SAMPLE), "--json")
    assert table.returncode == document.returncode == 0, table.stderr + document.stderr
    facts = json.loads(document.stdout)
    assert facts["inputs"] == [{"name": "image", "shape": [1, 1, 8, 8], "dtype": "float32"}]
    assert facts["cannot_lower"] == []
    for line in (
        "input  image: [1, 1, 8, 8] float32",
        f"parameters: {facts['parameters']:,}",
        f"MACs: {facts['macs']:,}",
        "ops: " + ", ".join(f"{op} x{n}" for op, n in facts["ops"].items()),
        f"model: {SAMPLE}  (opset {facts['opset']}, sha256 {facts['sha256'][:16]}...)",
    ):
        assert line in table.stdout.splitlines(), line


def test_bench_json_holds_the_table_facts(work):
    argv = ("bench", "model.tflite", "--threads", "1", "--runs", "5", "--min-secs", "0")
    table = edgekit(*argv, cwd=work)
    document = edgekit(*argv, "--json", cwd=work)
    assert table.returncode == document.returncode == 0, table.stderr + document.stderr
    facts = json.loads(document.stdout)
    assert facts["count"] >= 5 and facts["p50_ms"] > 0
    assert f"The input model file size (MB): {facts['model_size_mb']:.6g}" in table.stdout
    shown = (
        f"Backend: {facts['backend']}, threads: {facts['threads']}, delegate partitions: {facts['delegate_partitions']}"
    )
    assert shown in table.stdout


def test_package_json_describes_the_files_written(work):
    common = ("--name", "digits", "--version", "1.0.0", "--sign", "k.key")
    table = edgekit("package", "model.tflite", *common, "-o", "table.tar.xz", cwd=work)
    document = edgekit("package", "model.tflite", *common, "-o", "json.tar.xz", "--json", cwd=work)
    assert table.returncode == document.returncode == 0, table.stderr + document.stderr
    facts = json.loads(document.stdout)
    written = work / "json.tar.xz"
    assert facts["package"] == "json.tar.xz" and facts["size_bytes"] == written.stat().st_size
    assert facts["sha256"] == hashlib.sha256(written.read_bytes()).hexdigest()
    assert (work / facts["signature"]).is_file()
    assert facts["model_bytes"] == (work / "model.tflite").stat().st_size
    assert facts["manifest"]["name"] == "digits" and facts["manifest"]["version"] == "1.0.0"
    # the same model and manifest make the same archive, so the table names the same facts
    assert f"({facts['size_bytes']:,} bytes; model {facts['model_bytes']:,} bytes)" in table.stdout
    assert f"sha256 {facts['sha256']}" in table.stdout


@pytest.mark.parametrize("level", ["loud", "5", ""])
def test_a_bad_log_level_is_one_line_exit_2(level):
    result = edgekit("--log-level", level, "inspect", str(SAMPLE))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "--log-level" in result.stderr, result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("command", [("inspect", "model.tflite"), ("bench", "model.tflite", "--min-secs", "0")])
def test_the_delegate_line_is_kept_out_of_normal_output(work, command):
    quiet = edgekit(*command, cwd=work)
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr
    assert DELEGATE_LINE not in quiet.stdout
    debug = edgekit("--log-level", "debug", *command, cwd=work)
    assert debug.returncode == 0 and DELEGATE_LINE in debug.stderr, debug.stderr
    assert DELEGATE_LINE not in debug.stdout


def test_version_names_the_runtime_and_converter_libraries():
    result = edgekit("--version")
    assert result.returncode == 0, result.stderr
    from edgekit import __version__

    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"edgekit {__version__} ")
    for name in ("ai-edge-litert", "tflite-runtime", "onnxruntime", "onnx", "numpy"):
        try:
            expected = version(name)
        except PackageNotFoundError:
            expected = "not installed"
        assert [name, *expected.split()] in [line.split() for line in lines[1:]], (name, result.stdout)


def test_progress_is_timestamped_lines_off_a_terminal():
    from edgekit.progress import progress

    stream = io.StringIO()
    with progress("calibrating", total=4, unit="samples", stream=stream, line_interval_s=0) as bar:
        for _ in range(4):
            bar.update()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 4 and "\r" not in stream.getvalue()
    assert lines[0].endswith("calibrating: 1/4 samples (25%), 0 s, about 0 s left")
    assert lines[-1].endswith("calibrating: 4/4 samples (100%), 0 s")
    quiet = io.StringIO()
    with progress("short", total=3, stream=quiet) as bar:  # work shorter than the interval prints nothing
        bar.update(3)
    assert quiet.getvalue() == ""


def test_progress_is_a_bar_on_a_terminal():
    pytest.importorskip("tqdm")
    from edgekit.progress import progress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    with progress("bench", total=10, unit="runs", stream=stream) as bar:
        bar.set_total(20)
        bar.update(20)
    drawn = stream.getvalue()
    assert drawn.startswith("\rbench:") and "0/20 [" in drawn  # redrawn with the revised total
    assert drawn.endswith("\r") and drawn.rsplit("\r", 2)[-2].strip() == ""  # erased: the result stands alone


def test_native_log_lines_become_records_and_other_text_stays(capfd, caplog, monkeypatch):
    from edgekit.runtime.native_log import to_logging

    root = logging.getLogger()  # an in-process `edgekit` call earlier in the session left its stderr handler
    monkeypatch.setattr(root, "handlers", [h for h in root.handlers if not getattr(h, "edgekit_cli", False)])
    with caplog.at_level(logging.DEBUG, logger="edgekit.runtime.native_log"), to_logging():
        os.write(2, f"INFO: {DELEGATE_LINE} for CPU.\nERROR: a kernel failed\nnot a log line\n".encode())
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.DEBUG, f"{DELEGATE_LINE} for CPU."),
        (logging.ERROR, "a kernel failed"),
    ]
    assert capfd.readouterr().err == "not a log line\n"


def test_inspect_ops_lists_the_lowerable_ops_without_a_model():
    """The README's `edgekit inspect --ops`: it needed a model argument it then ignored."""
    result = edgekit("inspect", "--ops")
    assert result.returncode == 0, result.stderr
    assert {"Conv", "GRU", "ArgMax"} <= set(result.stdout.split())
