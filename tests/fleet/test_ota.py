"""OTA on the device: a good package switches, a bad one never serves, and SIGKILL at any step
leaves a consistent, working model after restart."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from edgekit import package
from edgekit.agent.ota import Deployment, Slots
from edgekit.runtime import load


def _deployment(tmp_path, server, keys, model, name="fc", version="1", budget=None, dep_id="d1") -> Deployment:
    base = server.base
    info = package.build(
        model,
        tmp_path / f"{name}-{version}.tar",
        name=name,
        version=version,
        signing_key=keys[0],
        latency_budget_ms=budget,
        validate=False,  # some tests package a broken model on purpose: the device must refuse it
    )
    server.publish(info)
    return Deployment(dep_id, info.path.name, info.sha256, info.size, f"{base}{info.sha256}.tar", name, version)


class Log:
    def __init__(self):
        self.steps = []

    def __call__(self, deployment, step, details):
        self.steps.append(step)
        self.details = getattr(self, "details", []) + [(step, details)]


def test_good_package_switches_and_serves(tmp_path, server, keys, models):
    slots, log = Slots(tmp_path / "device", server.trust(tmp_path / "device")), Log()
    assert slots.deploy(_deployment(tmp_path, server, keys, models[0]), log)
    slots.commit("d1", log)
    assert log.steps == ["received", "downloading", "verified", "installed", "health_ok", "switched", "committed"]
    assert load(slots.current_model(), threads=1).inputs[0].name == "features"
    assert slots.deploy(_deployment(tmp_path, server, keys, models[1], version="2", dep_id="d2"), log)
    assert slots.current()["version"] == "2" and slots.state()["previous"]["version"] == "1"
    assert slots.rollback("d2", log, "error rate") and slots.current()["version"] == "1"


def test_interrupted_download_resumes_with_range(tmp_path, server, keys, models):
    """A download cut off half-way (process killed mid-transfer) continues from where it stopped."""
    slots, log = Slots(tmp_path / "device", server.trust(tmp_path / "device")), Log()
    d = _deployment(tmp_path, server, keys, models[0])
    archive = (tmp_path / f"{d.package}").read_bytes()
    (tmp_path / "device" / "downloads" / f"{d.sha256}.tar").write_bytes(archive[: len(archive) // 2])
    assert slots.deploy(d, log)
    assert ("downloading", {"offset": len(archive) // 2, "attempt": 1}) in log.details
    assert slots.current()["sha256"] == d.sha256


def test_given_up_deployment_is_not_retried(tmp_path, server, keys, models):
    slots, log = Slots(tmp_path / "device", server.trust(tmp_path / "device")), Log()
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(models[0].read_bytes()[:200])
    d = _deployment(tmp_path, server, keys, broken, version="bad")
    assert not slots.deploy(d, log) and not slots.deploy(d, log)  # the retained desired state comes back
    assert log.steps.count("downloading") == 1 and log.steps[-1] == "failed"


def test_bad_packages_never_serve(tmp_path, server, keys, models):
    slots, log = Slots(tmp_path / "device", server.trust(tmp_path / "device")), Log()
    assert slots.deploy(_deployment(tmp_path, server, keys, models[0]), log)
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(models[0].read_bytes()[:200])
    assert not slots.deploy(_deployment(tmp_path, server, keys, broken, version="bad", dep_id="d2"), log)
    assert log.steps[-1] == "failed" and slots.current()["version"] == "1"
    slow = _deployment(tmp_path, server, keys, models[1], version="slow", budget=1e-6, dep_id="d3")
    assert not slots.deploy(slow, log) and slots.current()["version"] == "1"
    tampered = _deployment(tmp_path, server, keys, models[1], version="3", dep_id="d4")
    tampered.sha256 = "0" * 64
    assert not slots.deploy(tampered, log) and slots.current()["version"] == "1"
    unlisted = _deployment(tmp_path, server, keys, models[1], version="4", dep_id="d5")
    unlisted.package = "fc-5.tar"  # a package the signed targets metadata does not name
    assert not slots.deploy(unlisted, log) and slots.current()["version"] == "1"
    assert "not in the fleet's signed targets metadata" in log.details[-1][1]["reason"]


AGENT = """
import json, sys
from edgekit.agent.ota import Deployment, Slots
from edgekit.agent.trust import UpdateTrust
slots = Slots(sys.argv[1], UpdateTrust(sys.argv[1] + "-tuf", open(sys.argv[2], "rb").read()))
retry = slots.resume(lambda *a: None)
d = Deployment(**json.loads(sys.argv[3]))
ok = slots.deploy(d, lambda *a: None)
if ok:
    slots.commit(d.id, lambda *a: None)
print(json.dumps(slots.current()))
"""


@pytest.mark.parametrize("step", ["downloading", "verified", "installed", "health_ok", "switched"])
def test_sigkill_at_every_step(tmp_path, server, keys, models, step):
    device = tmp_path / "device"
    first = _deployment(tmp_path, server, keys, models[0])
    second = _deployment(tmp_path, server, keys, models[1], version="2", dep_id="d2")
    run = [sys.executable, "-c", AGENT, str(device), str(server.repo.file("root.json"))]
    assert subprocess.run([*run, json.dumps(first.__dict__)], capture_output=True, timeout=120).returncode == 0
    marker = tmp_path / "paused"
    env = {**os.environ, "EDGEKIT_OTA_PAUSE_AT": step, "EDGEKIT_OTA_PAUSE_MARKER": str(marker)}
    proc = subprocess.Popen(
        [*run, json.dumps(second.__dict__)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.time() + 60
    while not marker.exists() and time.time() < deadline:
        time.sleep(0.05)
    assert marker.exists(), proc.stderr.read().decode()[-2000:] if proc.poll() is not None else "never paused"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # the model serving right now, straight after the kill
    slots = Slots(device, server.trust(device))
    serving = slots.current()["version"]
    assert serving == ("2" if step == "switched" else "1")
    assert load(slots.current_model(), threads=1).run({"features": __import__("numpy").zeros((1, 6), "float32")})
    # restart: the agent settles the interrupted deployment; before the switch it retries and ends on
    # version 2, after an uncommitted switch it rolls back to 1 and the deployment counts as failed
    result = subprocess.run([*run, json.dumps(second.__dict__)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1])["version"] == ("1" if step == "switched" else "2")
    assert Slots(device, server.trust(device)).state()["pending"] is None
