"""The agent's health check (``python -m edgekit.agent.healthcheck``) on real .tflite models run by
LiteRT: a sound model passes with its p50 and outputs, a model with one NaN or one Inf output value
fails, a latency budget no model can meet fails, and a file that is no model fails, each with the
reason on stderr and exit status 1."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from edgekit.converters.ir import Graph
from edgekit.converters.tflite_writer import serialize
from tests.runtime.models import BIAS, WEIGHTS, float_model


def fc_model(weights: np.ndarray, bias: np.ndarray) -> bytes:
    """features (1, 6) -> FULLY_CONNECTED -> scores (1, 4), no activation (a NaN stays a NaN)."""
    g = Graph()
    g.add_tensor("features", (1, 6), np.float32)
    w, b = g.add_const(weights.astype(np.float32), "w"), g.add_const(bias.astype(np.float32), "b")
    g.add_tensor("scores", (1, 4), np.float32)
    g.add_node("FULLY_CONNECTED", ["features", w, b], ["scores"], {"fused_activation_function": "NONE"})
    g.inputs, g.outputs = ["features"], ["scores"]
    g.metadata["_signature"] = {"inputs": ["features"], "outputs": ["scores"]}
    return serialize(g)


def healthcheck(model, *args) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "edgekit.agent.healthcheck", str(model), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_a_sound_model_passes_with_its_figures(tmp_path):
    model = tmp_path / "good.tflite"
    model.write_bytes(float_model())
    done = healthcheck(model, "--budget-ms", "60000", "--runs", "3")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["outputs"] == ["scores"] and summary["backend"]
    assert 0 < summary["p50_ms"] < 60000
    assert done.stderr == ""


def test_one_nan_or_inf_output_value_is_unhealthy(tmp_path):
    for name, value in (("nan", np.nan), ("inf", np.inf)):
        bias = BIAS.copy()
        bias[2] = value  # one of four scores: every other value is finite
        model = tmp_path / f"{name}.tflite"
        model.write_bytes(fc_model(WEIGHTS, bias))
        done = healthcheck(model)
        assert done.returncode == 1, (name, done.stdout)
        assert done.stderr.strip() == "unhealthy: the model produces NaN or Inf" and done.stdout == ""


def test_a_latency_budget_that_cannot_be_met_is_unhealthy(tmp_path):
    model = tmp_path / "good.tflite"
    model.write_bytes(float_model())
    done = healthcheck(model, "--budget-ms", "1e-9", "--runs", "2")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("unhealthy: p50 latency ") and "over the 1e-09 ms budget" in done.stderr
    assert healthcheck(model, "--runs", "2").returncode == 0  # no budget: latency is not judged


def test_a_file_that_is_no_model_is_unhealthy(tmp_path):
    model = tmp_path / "broken.tflite"
    model.write_bytes(b"TFL3" + bytes(60))
    done = healthcheck(model)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("unhealthy: ") and "Traceback" not in done.stderr


def test_the_p50_is_in_milliseconds(tmp_path):
    """A 6x4 FULLY_CONNECTED runs in microseconds: its p50 lies between 1 us and 0.9 ms (a second
    counted as a millisecond, or a clock reading in place of a duration, falls outside)."""
    model = tmp_path / "good.tflite"
    model.write_bytes(float_model())
    done = healthcheck(model, "--runs", "20")
    assert done.returncode == 0, done.stderr
    assert 0.001 < json.loads(done.stdout)["p50_ms"] < 0.9


def test_importing_the_module_runs_nothing():
    code = "import edgekit.agent.healthcheck as h; print('imported', h.__name__)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout == "imported edgekit.agent.healthcheck\n", done.stderr
