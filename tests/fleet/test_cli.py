"""The fleet end to end through the command line, every part its own process: ``edgekit fleet
serve`` (embedded broker), ``edgekit agent run`` with the built-in image workload, ``edgekit
package`` and ``edgekit fleet deploy``; telemetry with real latency comes back."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tomllib

from edgekit.fleet.client import FleetClient
from tests.fleet.mosquitto import free_port
from tests.fleet.test_fleet_mqtt import wait_for

ROOT = Path(__file__).resolve().parents[2]


def edgekit(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "edgekit", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def spawn(*args: str, cwd: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "edgekit", *args], cwd=cwd, stdout=log.open("w"), stderr=subprocess.STDOUT
    )


@pytest.fixture
def digits_tflite(tmp_path) -> Path:
    from edgekit.converters import convert

    out = tmp_path / "digits.tflite"
    convert(str(ROOT / "edgekit" / "samples" / "digits_cnn.onnx"), out)
    return out


def test_serve_deploy_and_workload_telemetry(tmp_path, digits_tflite):
    from PIL import Image

    edgekit("keys", "new", "root.key", "root.pub", cwd=tmp_path)
    edgekit("package", "--new-key", "fleet.key", "fleet.pub", cwd=tmp_path)
    edgekit("fleet", "init", "--root-key", "root.key", "--targets-key", "fleet.key", cwd=tmp_path)
    edgekit("package", str(digits_tflite), "--name", "digits", "--version", "1", "--sign", "fleet.key", cwd=tmp_path)
    images = tmp_path / "images"
    images.mkdir()
    x = np.load(ROOT / "edgekit" / "samples" / "digits_data.npz")["x_calib"][:8]
    for i, sample in enumerate(x):
        Image.fromarray((sample.reshape(8, 8) * 255 / max(sample.max(), 1e-6)).astype(np.uint8), "L").save(
            images / f"{i}.png"
        )
    mqtt_port, http_port, tls_port = free_port(), free_port(), free_port()
    server = spawn(
        "fleet", "serve", "--port", str(mqtt_port), "--http-port", str(http_port), "--tls-port", str(tls_port),
        cwd=tmp_path, log=tmp_path / "serve.log",
    )  # fmt: skip
    agent = None
    api = ("fleet", "--api", f"http://127.0.0.1:{http_port}")
    try:
        log = tmp_path / "serve.log"
        wait_for(lambda: "fleet manager" in log.read_text(), what="manager up", detail=log.read_text)
        # the embedded broker admits provisioned devices only: provision cam1, then run it from here
        # Mosquitto, run by serve, with a TLS listener: provisioned devices use it, pinning its CA
        edgekit("fleet", "provision", "cam1", "--port", str(tls_port), cwd=tmp_path)
        provisioned = tomllib.loads((tmp_path / "broker" / "devices" / "cam1.toml").read_text())["agent"]
        settings = {**provisioned, "state_dir": "state", "telemetry_interval_s": 1.0, "watch_invocations": 5}
        settings.update(tags=["cameras"], workload_images=str(images), workload_rate_hz=50)
        (tmp_path / "agent.toml").write_text(
            "[agent]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in settings.items())
        )
        agent = spawn("agent", "run", "--config", "agent.toml", cwd=tmp_path, log=tmp_path / "agent.log")
        wait_for(lambda: "cam1" in edgekit(*api, "devices", cwd=tmp_path).stdout, what="agent registered")

        refused = edgekit(*api, "--token", "wrong", "deploy", "digits-1.tar.xz", cwd=tmp_path, check=False)
        assert refused.returncode != 0 and "token" in refused.stderr and "Traceback" not in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1
        bad_gate = edgekit(*api, "deploy", "digits-1.tar.xz", "--max-latency-regression", "0", cwd=tmp_path,
                           check=False)  # fmt: skip
        assert bad_gate.returncode == 2 and "Traceback" not in bad_gate.stderr
        says = "edgekit fleet: error: --max-latency-regression 0 must lie in (0, inf]"  # the flag, not the field
        assert bad_gate.stderr.strip() == says
        token = (tmp_path / "fleet.token").read_text().strip()
        for secret in (
            "fleet.token",
            "fleet.command.key",
            "broker/manager.secret",
            "broker/passwd",
            "broker/ca.key",
            "broker/server.key",
            "broker/devices/cam1.toml",
        ):
            assert os.stat(tmp_path / secret).st_mode & 0o077 == 0, f"{secret} is readable by others"
        assert FleetClient(f"http://127.0.0.1:{http_port}", token=token).packages() == []  # refused before upload

        unsigned = edgekit(*api, "deploy", "digits-1.tar.xz", "--to", "tag:cameras", cwd=tmp_path, check=False)
        assert unsigned.returncode == 2 and "pass --sign PACKAGE.key" in unsigned.stderr
        out = edgekit(*api, "deploy", "digits-1.tar.xz", "--sign", "fleet.key", "--to", "tag:cameras", "--canary",
                      "0%", "--waves", "100", "--id", "r1", cwd=tmp_path).stdout  # fmt: skip
        assert "rollout r1: 1 devices" in out
        wait_for(lambda: "done" in edgekit(*api, "rollouts", cwd=tmp_path).stdout, what="rollout done",
                 detail=lambda: (tmp_path / "agent.log").read_text()[-2000:])  # fmt: skip

        listed = json.loads(edgekit(*api, "devices", "--json", cwd=tmp_path).stdout)
        assert [(d["device"], d["version"]) for d in listed] == [("cam1", "1")]
        from edgekit.devices import boards

        assert listed[0]["board"] == boards.detect().id  # reported in status, kept by the registry
        packages = json.loads(edgekit(*api, "packages", "--json", cwd=tmp_path).stdout)
        assert [(p["name"], p["version"], p["published"]) for p in packages] == [("digits", "1", True)]
        rollout = json.loads(edgekit(*api, "rollouts", "r1", "--json", cwd=tmp_path).stdout)
        assert rollout["state"] == "done" and any(e["kind"] == "done" for e in rollout["events"]), rollout
        client = FleetClient(f"http://127.0.0.1:{http_port}", token=token)
        wait_for(
            lambda: any(w["count"] > 0 and w["version"] == "1" for w in client.telemetry("cam1", 20)),
            what="telemetry windows with inferences on v1",
        )
        window = next(w for w in client.telemetry("cam1", 20) if w["count"] > 0)
        assert 0 < window["latency"]["p50_ms"] <= window["latency"]["p99_ms"] and window["errors"] == 0
        assert window["power"]["estimated"] is True  # no power sensor on this machine: flagged as an estimate
        table = edgekit(*api, "telemetry", "cam1", cwd=tmp_path).stdout
        assert f"{window['latency']['p50_ms']}" in table
        state = json.loads((tmp_path / "state" / "models" / "state.json").read_text())
        assert state["current"]["version"] == "1" and state["pending"] is None  # committed after 5 invocations

        # rotate the package key with the device online: no re-provisioning; the old key is refused
        edgekit("keys", "new", "fleet2.key", "fleet2.pub", cwd=tmp_path)
        edgekit(*api, "rotate-key", "--root-key", "root.key", "--new-targets-key", "fleet2.key", cwd=tmp_path)
        for key, version in (("fleet.key", "2"), ("fleet2.key", "3")):
            edgekit("package", str(digits_tflite), "--name", "digits", "--version", version, "--sign", key,
                    "-o", f"{key}.tar", cwd=tmp_path)  # fmt: skip
        old = edgekit(*api, "deploy", "fleet.key.tar", "--sign", "fleet.key", cwd=tmp_path, check=False)
        assert old.returncode != 0 and "does not verify" in old.stderr, old.stderr
        edgekit(*api, "deploy", "fleet2.key.tar", "--sign", "fleet2.key", "--canary", "0%", "--waves", "100",
                "--id", "r2", cwd=tmp_path)  # fmt: skip
        wait_for(lambda: json.loads((tmp_path / "state" / "models" / "state.json").read_text())["current"]["version"]
                 == "3", what="v3, signed by the new key, serves",
                 detail=lambda: (tmp_path / "agent.log").read_text()[-2000:])  # fmt: skip
        assert (tmp_path / "state" / "tuf" / "root_history" / "2.root.json").exists()  # the device follows the new root
    finally:
        for proc in (agent, server):
            if proc is not None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()


def test_clients_without_a_manager_get_one_line(tmp_path):
    port = free_port()
    result = edgekit("fleet", "--api", f"http://127.0.0.1:{port}", "devices", cwd=tmp_path, check=False)
    assert result.returncode != 0 and "cannot reach the fleet manager" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    env_result = subprocess.run(
        [sys.executable, "-m", "edgekit", "fleet", "--api", f"http://127.0.0.1:{port}", "deploy", "missing.tar"],
        cwd=tmp_path, capture_output=True, text=True, env={**os.environ, "EDGEKIT_FLEET_TOKEN": "x"},
    )  # fmt: skip
    assert env_result.returncode != 0 and "missing.tar" in env_result.stderr


def test_an_agent_that_cannot_reach_its_broker_says_so(tmp_path, server):
    """Issue 20: an agent pointed at no broker printed nothing, forever."""
    config = tmp_path / "agent.toml"
    root = json.dumps(json.loads(server.root_bytes()))
    config.write_text(
        f'[agent]\nfleet = "f1"\ndevice = "cam1"\nstate_dir = "state"\nport = {free_port()}\n'
        f"trusted_root = '''{root}'''\nallow_unsigned_commands = true\n"
    )
    agent = spawn("agent", "run", "--config", str(config), cwd=tmp_path, log=tmp_path / "agent.log")
    try:
        log = tmp_path / "agent.log"
        wait_for(lambda: "cannot reach the broker at 127.0.0.1" in log.read_text(), what="the agent saying so",
                 detail=log.read_text)  # fmt: skip
    finally:
        agent.send_signal(signal.SIGINT)
        try:
            agent.wait(timeout=15)
        except subprocess.TimeoutExpired:
            agent.kill()


def _run_agent_with(tmp_path, setting: str):
    """``edgekit agent run`` on a lab config plus one setting line."""
    config = tmp_path / "agent.toml"
    config.write_text(
        '[agent]\nfleet = "f1"\ndevice = "cam1"\nstate_dir = "state"\ntrusted_root = "{}"\n'
        f"allow_unsigned_commands = true\n{setting}\n"
    )
    return edgekit("agent", "run", "--config", str(config), cwd=tmp_path, check=False)


def test_a_workload_without_a_rate_is_refused(tmp_path):
    """Issue 20: workload_rate_hz = 0 meant "as fast as it goes" and took a whole core."""
    result = _run_agent_with(tmp_path, "workload_rate_hz = 0")
    assert result.returncode == 2 and "workload_rate_hz must be a rate" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "state").exists()


def test_an_unknown_board_is_refused(tmp_path):
    result = _run_agent_with(tmp_path, 'board = "raspberry-pi-9"')
    assert result.returncode == 2 and "board 'raspberry-pi-9' is not a known profile" in result.stderr
    assert "raspberry-pi-4" in result.stderr and len(result.stderr.strip().splitlines()) == 1
