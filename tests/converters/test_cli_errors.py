"""Bad input to the converter CLI: one line on stderr, non-zero exit, no output file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from onnx import helper

from tests.converters.onnx_models import model, rand

N = helper.make_node


def edgekit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgekit", *args], capture_output=True, text=True, timeout=120)


@pytest.fixture
def good_model(tmp_path: Path) -> Path:
    m = model(
        [N("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])], {"x": (1, 3, 8, 8)}, {"y": None}, {"w": rand(4, 3, 3, 3)}
    )
    path = tmp_path / "good.onnx"
    path.write_bytes(m.SerializeToString())
    return path


def assert_user_error(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip() and "XNNPACK" not in line]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_truncated_onnx(tmp_path, good_model):
    bad = tmp_path / "truncated.onnx"
    bad.write_bytes(good_model.read_bytes()[:100])
    out = tmp_path / "out.tflite"
    assert_user_error(edgekit("convert", str(bad), "-o", str(out)), "truncated")
    assert not out.exists()


def test_not_onnx(tmp_path):
    bad = tmp_path / "photo.onnx"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    out = tmp_path / "out.tflite"
    assert_user_error(edgekit("convert", str(bad), "-o", str(out)), "ONNX")
    assert not out.exists()


def test_unsupported_ops_are_all_listed(tmp_path):
    m = model(
        [N("Relu", ["x"], ["r"]), N("Hardmax", ["r"], ["h"]), N("Hardmax", ["h"], ["h2"]), N("Celu", ["h2"], ["y"])],
        {"x": (1, 4)},
        {"y": None},
    )
    path = tmp_path / "m.onnx"
    path.write_bytes(m.SerializeToString())
    out = tmp_path / "out.tflite"
    result = edgekit("convert", str(path), "-o", str(out))
    assert_user_error(result, "Hardmax x2", "Celu x1", "cut the graph at the tensors they read (--outputs NAME ...)")
    assert not out.exists()
    cut = edgekit("convert", str(path), "-o", str(out), "--outputs", "r")  # what the message says to do
    assert cut.returncode == 0 and out.exists(), cut.stderr


def test_dynamic_shape_needs_input_shape(tmp_path):
    m = model([N("Relu", ["x"], ["y"])], {"x": ("batch", 3, 8, 8)}, {"y": ("batch", 3, 8, 8)})
    path = tmp_path / "dyn.onnx"
    path.write_bytes(m.SerializeToString())
    out = tmp_path / "out.tflite"
    assert_user_error(edgekit("convert", str(path), "-o", str(out)), "'x'", "--input-shape x=1,3,8,8")
    assert not out.exists()
    ok = edgekit("convert", str(path), "-o", str(out), "--input-shape", "x=2,3,8,8", "--verify")
    assert ok.returncode == 0, ok.stderr
    assert out.exists()


def test_dynamic_image_sizes_get_placeholders_not_a_1x1_example(tmp_path):
    """The hint once read --input-shape x=1,3,1,1: it converts, to a model of 1x1 images."""
    m = model([N("Relu", ["x"], ["y"])], {"x": ("batch", 3, "h", "w")}, {"y": None})
    path = tmp_path / "dyn.onnx"
    path.write_bytes(m.SerializeToString())
    result = edgekit("convert", str(path), "-o", str(tmp_path / "out.tflite"))
    assert_user_error(result, "--input-shape x=1,3,H,W, putting your sizes for H, W")


def test_output_in_missing_folder(tmp_path, good_model):
    out = tmp_path / "no" / "such" / "dir" / "out.tflite"
    assert_user_error(edgekit("convert", str(good_model), "-o", str(out)), "does not exist")
    assert not out.parent.exists()


def test_input_shape_names_unknown_input(tmp_path, good_model):
    out = tmp_path / "out.tflite"
    assert_user_error(
        edgekit("convert", str(good_model), "-o", str(out), "--input-shape", "image=1,3,8,8"),
        "'image'",
        "inputs are: x",
    )
    assert not out.exists()


def test_missing_file(tmp_path):
    assert_user_error(edgekit("convert", str(tmp_path / "nope.onnx"), "-o", str(tmp_path / "o.tflite")), "no such file")


def test_int8_without_calibration(tmp_path, good_model):
    out = tmp_path / "out.tflite"
    assert_user_error(edgekit("convert", str(good_model), "-o", str(out), "--quantize", "int8"), "--calibration")
    assert not out.exists()


def test_convert_verify_and_inspect_succeed(tmp_path, good_model):
    out = tmp_path / "out.tflite"
    result = edgekit("convert", str(good_model), "-o", str(out), "--verify")
    assert result.returncode == 0, result.stderr
    assert "SQNR" in result.stdout and "TRANSPOSE ops remaining: 0" in result.stdout
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp files left
    inspect = edgekit("inspect", str(good_model))
    assert inspect.returncode == 0 and "MACs: 6,912" in inspect.stdout, inspect.stdout
    tfl = edgekit("inspect", str(out))
    assert "CONV_2D x1" in tfl.stdout and "XNNPACK partitions: 1" in tfl.stdout
    data = tmp_path / "x.npy"
    np.save(data, rand(3, 1, 3, 8, 8, seed=4))
    verified = edgekit("verify", str(good_model), str(out), "--data", str(data), "--min-sqnr", "60")
    assert verified.returncode == 0 and "(3 samples)" in verified.stdout, verified.stdout + verified.stderr
    # a model below the floor is the checked thing failing: exit 1 with its own line, not a usage error
    strict = edgekit("verify", str(good_model), str(out), "--data", str(data), "--min-sqnr", "500")
    assert strict.returncode == 1 and "FAIL" in strict.stdout and "500" in strict.stdout, strict.stdout + strict.stderr
    assert "Traceback" not in strict.stderr


def test_inspect_lists_unsupported(tmp_path):
    m = model([N("Hardmax", ["x"], ["y"])], {"x": (1, 4)}, {"y": None})
    path = tmp_path / "m.onnx"
    path.write_bytes(m.SerializeToString())
    result = edgekit("inspect", str(path))
    assert result.returncode == 1 and "Hardmax x1" in result.stdout


def test_edgetpu_target_needs_int8(tmp_path, good_model):
    out = tmp_path / "out.tflite"
    assert_user_error(edgekit("convert", str(good_model), "-o", str(out), "--target", "edgetpu"), "--quantize int8")
    assert not out.exists()


@pytest.mark.parametrize("command", ["convert", "prune"])
def test_the_input_is_never_overwritten(tmp_path, good_model, command):
    """Issue 20: `convert M.onnx -o M.onnx` and `prune m.onnx -o m.onnx` overwrote the source (rc 0)."""
    before = good_model.read_bytes()
    result = edgekit(command, str(good_model), "-o", str(good_model))
    assert_user_error(result, "input", "destroy")
    assert result.returncode == 2 and good_model.read_bytes() == before
    alias = tmp_path / "alias.onnx"
    alias.symlink_to(good_model)
    assert_user_error(edgekit(command, str(good_model), "-o", str(alias)), "input")
    assert good_model.read_bytes() == before


@pytest.mark.parametrize("command", ["convert", "prune"])
def test_output_paths_that_cannot_be_files(tmp_path, good_model, command):
    folder = tmp_path / "out"
    folder.mkdir()
    for output, word in ((folder, "folder"), ("/proc/edgekit-test.out", "cannot write"), ("/dev/null", "regular file")):
        result = edgekit(
            command, str(good_model), "-o", str(output), *(["--ratio", "0.5"] if command == "prune" else [])
        )
        assert_user_error(result, word)
        assert result.returncode == 2
    assert list(folder.iterdir()) == [] and list(tmp_path.glob(".*.tmp")) == []


def test_a_report_path_that_is_a_folder_is_refused_before_any_work(tmp_path, good_model):
    out = tmp_path / "m.tflite"
    result = edgekit("convert", str(good_model), "-o", str(out), "--report", str(tmp_path))
    assert_user_error(result, "folder")
    assert not out.exists()  # refused before the model was written


def _ternary_model(path: Path) -> Path:
    """A conv whose weights take 3 values per output channel ({-a, 0, a}, a different a in each)."""
    levels = np.random.default_rng(1).integers(-1, 2, (4, 3, 3, 3)).astype(np.float32)
    levels[:, 0, 0, 0] = [-1, 0, 1, 1]  # every channel has a nonzero weight
    levels[:, 0, 0, 1] = [1, 1, 0, -1]
    scales = np.array([0.5, 0.25, 1.5, 0.75], np.float32).reshape(4, 1, 1, 1)
    m = model(
        [N("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])],
        {"x": (1, 3, 8, 8)},
        {"y": None},
        {"w": levels * scales},
    )
    path.write_bytes(m.SerializeToString())
    return path


def _per_channel_int8_weights(tflite_path: Path) -> list[np.ndarray]:
    """The per-channel int8 weight tensors of a .tflite model, as LiteRT reads them."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(tflite_path))
    interpreter.allocate_tensors()
    return [
        interpreter.get_tensor(d["index"])
        for d in interpreter.get_tensor_details()
        if d["dtype"] == np.int8 and len(d["quantization_parameters"]["scales"]) > 1
    ]


def test_max_weight_values_passes_ternary_and_refuses_dense(tmp_path, good_model):
    """convert --max-weight-values N: the writer's self-check refuses int8 weights holding more
    than N distinct values in an output channel (exit 2, one line, no file); a ternary model passes."""
    np.save(tmp_path / "calib.npy", rand(16, 3, 8, 8, seed=3))
    common = ["--quantize", "int8", "--calibration", str(tmp_path / "calib.npy")]
    ternary = _ternary_model(tmp_path / "ternary.onnx")
    out = tmp_path / "ternary.tflite"
    ok = edgekit("convert", str(ternary), "-o", str(out), *common, "--max-weight-values", "3", "--verify")
    assert ok.returncode == 0, ok.stderr
    (weights,) = _per_channel_int8_weights(out)
    assert [len(np.unique(channel)) for channel in weights.reshape(len(weights), -1)] == [3, 3, 3, 3]
    assert "SQNR" in ok.stdout
    binary = tmp_path / "binary.tflite"
    refused = edgekit("convert", str(ternary), "-o", str(binary), *common, "--max-weight-values", "2")
    assert_user_error(refused, "distinct weight values", "at most 2")
    assert refused.returncode == 2 and not binary.exists()
    dense = tmp_path / "dense.tflite"
    refused = edgekit("convert", str(good_model), "-o", str(dense), *common, "--max-weight-values", "3")
    assert_user_error(refused, "distinct weight values", "at most 3")
    assert refused.returncode == 2 and not dense.exists()


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--quantize", "int8", "--max-weight-values", "1"], ["--max-weight-values 1", ">= 2"]),
        (["--quantize", "int16x8", "--max-weight-values", "3"], ["--max-weight-values goes with --quantize int8"]),
        (["--max-weight-values", "3"], ["--max-weight-values goes with --quantize"]),  # no --calibration here
    ],
)
def test_max_weight_values_is_refused_where_it_cannot_apply(tmp_path, good_model, args, words):
    np.save(tmp_path / "calib.npy", rand(4, 3, 8, 8, seed=3))
    calibration = ["--calibration", str(tmp_path / "calib.npy")] if "--quantize" in args else []
    out = tmp_path / "out.tflite"
    result = edgekit("convert", str(good_model), "-o", str(out), *calibration, *args)
    assert_user_error(result, *words)
    assert result.returncode == 2 and not out.exists()


def test_library_errors_name_parameters_and_the_cli_names_its_flags(tmp_path, good_model):
    """convert --prune-round-to 0 once answered with `--round-to 0`, a flag convert does not have."""
    from edgekit.converters.config import PruneConfig
    from edgekit.errors import ParameterError

    with pytest.raises(ParameterError, match=r"^round_to=0 must be a positive channel count") as raised:
        PruneConfig(ratio=0.5, round_to=0)
    assert "--" not in str(raised.value)
    out = tmp_path / "out.tflite"
    result = edgekit("convert", str(good_model), "-o", str(out), "--prune-ratio", "0.5", "--prune-round-to", "0")
    assert_user_error(result, "--prune-round-to 0 must be a positive channel count")
    assert "--round-to" not in result.stderr.replace("--prune-round-to", "")
    assert result.returncode == 2 and not out.exists()


def test_shares_are_written_as_percentages_or_fractions(tmp_path):
    """prune --ratio 50% once said "invalid float value", while --accuracy-budget took 5%."""
    sample = Path(__file__).resolve().parents[2] / "edgekit" / "samples" / "digits_cnn.onnx"
    outputs = []
    for ratio in ("50%", "0.5"):
        out = tmp_path / f"pruned-{ratio.rstrip('%')}.onnx"
        assert edgekit("prune", str(sample), "-o", str(out), "--ratio", ratio).returncode == 0
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]
    out = tmp_path / "half.onnx"
    assert_user_error(edgekit("prune", str(sample), "-o", str(out), "--ratio", "half"), "--ratio", "50% or 0.5")
    assert_user_error(
        edgekit("prune", str(sample), "-o", str(out), "--ratio", "150%"), "--ratio 1.5", "between 0 and 1"
    )
    assert not out.exists()


@pytest.mark.parametrize("outlier", [1000.0, None])
def test_verify_warns_of_an_output_int8_loses(tmp_path, outlier):
    """openwakeword's int8 mel spectrogram verified at -8.6 dB (97% of its values at the floor),
    and convert said nothing. A calibration outlier does the same here: inputs within +-1 on a
    grid of step 8."""
    path = tmp_path / "conv.onnx"
    conv = model(
        [helper.make_node("Conv", ["x", "w"], ["y"])], {"x": (1, 4, 8, 8)}, {"y": None}, {"w": rand(4, 4, 1, 1)}
    )
    path.write_bytes(conv.SerializeToString())
    calibration = rand(8, 4, 8, 8, seed=1)
    if outlier is not None:
        calibration[0, 0, 0, 0] = outlier
    np.save(tmp_path / "calib.npy", calibration)
    np.save(tmp_path / "data.npy", rand(8, 4, 8, 8, seed=2))
    args = ["--quantize", "int8", "--calibration", str(tmp_path / "calib.npy"), "--no-speed-check", "--verify"]
    result = edgekit(
        "convert", str(path), "-o", str(tmp_path / "q.tflite"), *args, "--data", str(tmp_path / "data.npy")
    )
    assert result.returncode == 0, result.stderr
    warned = [line for line in result.stdout.splitlines() if line.startswith("warning: output y is far from")]
    if outlier is None:
        assert not warned, result.stdout
    else:
        assert len(warned) == 1 and "--accuracy-budget" in warned[0] and "ship float32" in warned[0], result.stdout
