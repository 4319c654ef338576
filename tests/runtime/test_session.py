"""Session on the real interpreters: I/O handling, validation, hooks, bad models."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from edgekit.errors import BackendError, InputError, InvalidModelError
from edgekit.runtime import LatencyWindow, available, load
from tests.runtime.models import float_model, int8_model, reference

TFLITE_BACKEND = "litert" if "litert" in available() else "tflite-runtime"
X = np.random.default_rng(1).uniform(-2, 2, (1, 6)).astype(np.float32)


@pytest.fixture
def float_path(tmp_path):
    path = tmp_path / "fc.tflite"
    path.write_bytes(float_model())
    return path


@pytest.fixture
def int8_path(tmp_path):
    path = tmp_path / "fc_int8.tflite"
    path.write_bytes(int8_model())
    return path


def test_float_model_all_input_forms(float_path):
    session = load(float_path, threads=2)
    assert session.backend == TFLITE_BACKEND and session.threads == 2
    assert [s.name for s in session.inputs] == ["features"] and [s.name for s in session.outputs] == ["scores"]
    want = reference(X)
    for inputs in ({"features": X}, X, [X]):
        np.testing.assert_allclose(session.run(inputs)["scores"], want, rtol=1e-5, atol=1e-5)


def test_int8_io_quantized_for_the_caller(int8_path):
    session = load(int8_path, backend=TFLITE_BACKEND, threads=1)
    spec = session.inputs[0]
    assert spec.dtype == np.int8 and spec.quant is not None
    out = session.run({"features": X})["scores"]
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, reference(X), atol=0.25)
    scale, zero_point = spec.quant
    raw_in = np.clip(np.round(X / scale + zero_point), -128, 127).astype(np.int8)
    raw = session.run({"features": raw_in}, raw=True)["scores"]
    assert raw.dtype == np.int8
    with pytest.raises(InputError, match="raw=True"):
        session.run({"features": raw_in})


def test_bad_inputs(float_path):
    session = load(float_path, threads=1)
    with pytest.raises(InputError, match="no input named 'image'"):
        session.run({"image": X})
    with pytest.raises(InputError, match=r"shape \[1, 5\]"):
        session.run(np.zeros((1, 5), np.float32))
    with pytest.raises(InputError, match="int32"):
        session.run(np.zeros((1, 6), np.int32))
    with pytest.raises(InputError, match="1 inputs"):
        session.run([X, X])


def test_batch_resize(float_path):
    session = load(float_path, threads=1)
    batch = np.random.default_rng(2).uniform(-1, 1, (3, 6)).astype(np.float32)
    np.testing.assert_allclose(session.run(batch)["scores"], reference(batch), rtol=1e-5, atol=1e-5)


def test_hooks_see_every_invoke(float_path):
    session = load(float_path, threads=1)
    window = LatencyWindow(size=10)
    session.add_hook(window)
    for _ in range(25):
        session.run(X)
    summary = window.summary()
    assert summary["count"] == 10 and window.total == 25
    assert 0 < summary["p50_ms"] <= summary["p99_ms"] <= summary["max_ms"]
    assert summary["throughput_ips"] > 0 and summary["peak_rss_mb"] > 0
    session.remove_hook(window)
    session.run(X)
    assert window.total == 25


def test_xnnpack_switch(float_path):
    assert load(float_path, threads=1).delegated_partitions() == 1
    assert load(float_path, threads=1, xnnpack=False).delegated_partitions() == 0


def test_undelegated_ops_are_read_off_the_delegate_nodes(float_path):
    with_xnnpack, without = load(float_path, threads=1), load(float_path, threads=1, xnnpack=False)
    assert with_xnnpack.undelegated_ops() == []
    every_op = [(d["index"], d["op_name"]) for d in without._backend.interpreter._get_ops_details()]
    assert without.undelegated_ops() == every_op and every_op


def test_missing_edgetpu_library(float_path):
    with pytest.raises(BackendError, match="libedgetpu.so.1"):
        load(float_path, delegate="edgetpu:usb")
    with pytest.raises(InputError, match="usb, usb:N"):
        load(float_path, delegate="edgetpu:wifi")


def test_truncated_and_corrupt_models(tmp_path, float_path):
    data = float_path.read_bytes()
    for cut in (0, 7, 16, len(data) // 3, len(data) - 9):
        bad = tmp_path / f"cut{cut}.tflite"
        bad.write_bytes(data[:cut])
        with pytest.raises(InvalidModelError):
            load(bad)
    with pytest.raises(InvalidModelError, match="missing.tflite: no such file; give the model's .tflite or .onnx"):
        load(tmp_path / "missing.tflite")
    (tmp_path / "models").mkdir()
    with pytest.raises(InvalidModelError, match="models: is a folder; give the model's .tflite or .onnx file"):
        load(tmp_path / "models")


def test_random_corruption_never_crashes_the_process(float_path):
    """Flip bytes all over the file: every load either works or raises a clean error."""
    script = f"""
import numpy as np
from edgekit.errors import EdgekitError
from edgekit.runtime import load
data = bytearray(open({str(float_path)!r}, "rb").read())
rng = np.random.default_rng(0)
for trial in range(600):
    bad = bytearray(data)
    for i in rng.integers(8, len(bad), size=int(rng.integers(1, 6))):
        bad[i] = int(rng.integers(0, 256))
    try:
        load(bytes(bad), threads=1).run(np.zeros((1, 6), np.float32))
    except EdgekitError:
        pass
print("survived")
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "survived" in result.stdout, result.stderr[-2000:]


def test_onnx_backend(tmp_path):
    pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    from tests.runtime.models import BIAS, WEIGHTS

    graph = helper.make_graph(
        [
            helper.make_node("Gemm", ["features", "w", "b"], ["g"], transB=1),
            helper.make_node("Relu", ["g"], ["scores"]),
        ],
        "fc",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, 6])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 4])],
        [numpy_helper.from_array(WEIGHTS, "w"), numpy_helper.from_array(BIAS, "b")],
    )
    path = tmp_path / "fc.onnx"
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    session = load(path, threads=1)
    assert session.backend == "onnxruntime"
    np.testing.assert_allclose(session.run(X)["scores"], reference(X), rtol=1e-5, atol=1e-5)
    del onnx


def test_bench_cli_json(float_path):
    import json

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgekit",
            "bench",
            str(float_path),
            "--runs",
            "20",
            "--min-secs",
            "0.05",
            "--threads",
            "1",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["count"] >= 20 and report["min_ms"] <= report["p50_ms"] <= report["max_ms"]
    assert report["threads"] == 1 and report["delegate_partitions"] == 1


def _fixed_batch_model() -> bytes:
    """The FC model behind a RESHAPE to a constant [1, 6]: like a converted CNN's flatten, it runs
    batch 1 only (LiteRT's XNNPACK cannot reshape it; the builtin kernels refuse it too)."""
    from edgekit.converters.tflite.writer import serialize
    from tests.runtime.models import float_graph

    g = float_graph()
    g.add_tensor("flat", (1, 6), np.float32)
    shape = g.add_const(np.array([1, 6], np.int32), "shape")
    g.nodes.insert(0, type(g.nodes[0])("RESHAPE", ["features", shape], ["flat"], {}, name="flatten"))
    g.nodes[1].inputs[0] = "flat"
    return serialize(g)


@pytest.mark.parametrize("kind", ["float", "int8", "fixed"])
def test_batch_1_4_1_7_returns_what_each_sample_alone_returns(tmp_path, kind):
    """Issue 24: batch 4 on a batch-1 model raised LiteRT's raw error and left the session failing
    batch 1 too. Every batch size now gives what running each sample alone gives."""
    model = {"float": float_model, "int8": int8_model, "fixed": _fixed_batch_model}[kind]()
    path = tmp_path / f"{kind}.tflite"
    path.write_bytes(model)
    session = load(path, threads=1)
    x = np.random.default_rng(3).uniform(-2, 2, (7, 6)).astype(np.float32)
    alone = np.concatenate([session.run(x[i : i + 1])["scores"] for i in range(7)])
    for batch in (1, 4, 1, 7):
        np.testing.assert_array_equal(session.run(x[:batch])["scores"], alone[:batch])


def test_a_failed_call_leaves_the_session_working(float_path):
    session = load(float_path, threads=1)
    for bad in (np.zeros((2, 5), np.float32), np.zeros((1, 6, 1), np.float32), "features", [[1, 2], [3]]):
        with pytest.raises(InputError):
            session.run(bad)
        np.testing.assert_allclose(session.run(X)["scores"], reference(X), rtol=1e-5, atol=1e-5)


def test_bad_arguments_get_the_right_error(float_path, int8_path):
    import os

    for threads in (-3, 0, 4 * (os.cpu_count() or 1) + 1, 100_000, 1.5, True):
        with pytest.raises(InputError, match=r"^threads=\S+ must be a whole number from 1 to"):
            load(float_path, threads=threads)
    session = load(float_path, threads=1)
    with pytest.raises(InputError, match="not str"):
        session.run("string")
    nan = X.copy()
    nan[0, 2] = np.nan
    assert np.isnan(session.run(nan)["scores"]).any()  # float model: NaN flows through, visibly
    with pytest.raises(InputError, match="NaN or Inf"):
        load(float_path, threads=1, reject_nonfinite=True).run(nan)
    with pytest.raises(InputError, match="NaN or Inf"):  # int8: NaN would silently become a number
        load(int8_path, threads=1).run(nan)


def test_bench_refuses_absurd_thread_counts(float_path):
    result = subprocess.run(
        [sys.executable, "-m", "edgekit", "bench", str(float_path), "--threads", "100000"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "--threads 100000 must be" in result.stderr and "Traceback" not in result.stderr
