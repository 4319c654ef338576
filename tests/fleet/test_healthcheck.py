"""The agent's health check (``python -m edgekit.agent.healthcheck``) on real .tflite models run by
LiteRT: a sound model passes with its p50 and outputs, a model with one NaN or one Inf output value
fails, a latency budget no model can meet fails, a file that is no model fails, and a model whose
signature differs from its manifest's or (without io_change) the serving model's fails, each with
the reason on stderr and exit status 1."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from edgekit.converters.ir.graph import Graph
from edgekit.converters.tflite.writer import serialize
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


def fc_variant(inputs: int = 6, extra_output: bool = False) -> bytes:
    """float_model's FULLY_CONNECTED with another input width, or a second output (its ReLU)."""
    g = Graph()
    g.add_tensor("features", (1, inputs), np.float32)
    w = g.add_const(np.ones((4, inputs), np.float32), "w")
    b = g.add_const(np.zeros(4, np.float32), "b")
    g.add_tensor("scores", (1, 4), np.float32)
    g.add_node("FULLY_CONNECTED", ["features", w, b], ["scores"], {"fused_activation_function": "NONE"})
    g.inputs, g.outputs = ["features"], ["scores"]
    if extra_output:
        g.add_tensor("positive", (1, 4), np.float32)
        g.add_node("RELU", ["scores"], ["positive"], {})
        g.outputs.append("positive")
    g.metadata["_signature"] = {"inputs": ["features"], "outputs": list(g.outputs)}
    return serialize(g)


def manifest_of(path, model: bytes, **fields) -> str:
    """A manifest.json as package.build writes it for ``model`` (its signature), plus ``fields``."""
    from edgekit.runtime.signature import Signature

    path.write_text(json.dumps({"io": Signature.from_model(".tflite", model).to_dict(), **fields}))
    return str(path)


def test_an_incompatible_model_is_unhealthy_with_the_tensor_named(tmp_path):
    """Issue 18: a valid model with another input shape or more outputs passed the health check
    (it ran random inputs of its own shape). Against the serving model's signature it fails,
    naming the tensor, unless its manifest says the change is intended."""
    serving = manifest_of(tmp_path / "serving.json", float_model())
    for name, model, says in (
        ("wider", fc_variant(inputs=7), "input 'features' shape [1, 7] instead of [1, 6]"),
        ("more", fc_variant(extra_output=True), "outputs ['scores', 'positive'] instead of ['scores']"),
    ):
        path = tmp_path / f"{name}.tflite"
        path.write_bytes(model)
        own = manifest_of(tmp_path / f"{name}.json", model)
        done = healthcheck(path, "--runs", "2", "--manifest", own, "--serving", serving)
        assert done.returncode == 1 and done.stdout == "", (name, done.stderr)
        assert done.stderr.strip() == f"unhealthy: incompatible with the serving model: {says} " + (
            "(package it with --io-change if the applications expect that)"
        )
        intended = manifest_of(tmp_path / f"{name}-intended.json", model, io_change=True)
        assert healthcheck(path, "--runs", "2", "--manifest", intended, "--serving", serving).returncode == 0
    same = tmp_path / "same.tflite"
    same.write_bytes(fc_variant())  # other weights, the same signature: compatible
    assert healthcheck(same, "--runs", "2", "--serving", serving).returncode == 0


def test_a_manifest_that_describes_another_model_is_unhealthy(tmp_path):
    model = tmp_path / "m.tflite"
    model.write_bytes(fc_variant(inputs=7))
    lying = manifest_of(tmp_path / "lying.json", float_model())
    done = healthcheck(model, "--runs", "2", "--manifest", lying)
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "unhealthy: the model is not the one its manifest describes: input 'features' shape [1, 7] instead of [1, 6]"
    )


def test_manifests_of_older_edgekit_still_pass(tmp_path):
    """A manifest written before signatures carried layouts (no layout keys) reads in both roles."""
    model = tmp_path / "m.tflite"
    model.write_bytes(float_model())
    old_io = {
        "inputs": [{"name": "features", "shape": [1, 6], "dtype": "float32"}],
        "outputs": [{"name": "scores", "shape": [1, 4], "dtype": "float32"}],
    }
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"schema": 1, "io": old_io, "preprocessing": {}}))
    done = healthcheck(model, "--runs", "2", "--manifest", str(old), "--serving", str(old))
    assert done.returncode == 0, done.stderr


def test_the_agent_hands_the_manifests_to_its_health_check(tmp_path):
    """ota.healthcheck, as a deployment calls it, passes the candidate's and the serving package's
    manifests: a model its manifest does not describe fails there."""
    import pytest

    from edgekit.agent.ota import HealthCheckError
    from edgekit.agent.ota import healthcheck as agent_healthcheck

    model = tmp_path / "m.tflite"
    model.write_bytes(fc_variant(inputs=7))
    lying = manifest_of(tmp_path / "lying.json", float_model())
    with pytest.raises(HealthCheckError, match="not the one its manifest describes: input 'features'"):
        agent_healthcheck(model, None, manifest=lying)
    serving = manifest_of(tmp_path / "serving.json", float_model())
    with pytest.raises(HealthCheckError, match="incompatible with the serving model"):
        agent_healthcheck(model, None, manifest=manifest_of(tmp_path / "own.json", model.read_bytes()), serving=serving)
    assert agent_healthcheck(model, None, manifest=manifest_of(tmp_path / "own2.json", model.read_bytes()))["outputs"]
