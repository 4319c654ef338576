"""OTA on the device: a good package switches, a bad one never serves, and SIGKILL at any step
leaves a consistent, working model after restart."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from edgekit import package
from edgekit.agent.ota import STATE_VERSION, Deployment, Slots, StateVersionError, migrate_state
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


def _hand_made_deployment(tmp_path, server, members: list[tuple[str, bytes]], version: str, dep_id: str):
    """A plain tar of ``members``, published in the fleet's signed targets as fc ``version``: what
    a careless (or hostile) holder of the package key can make devices download and unpack."""
    path = tmp_path / f"fc-{version}.tar"
    with tarfile.open(path, "w") as tar:
        for name, payload in members:
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    server.publish(package.PackageInfo(path, digest, len(data), b"", {"name": "fc", "version": version}))
    return Deployment(dep_id, path.name, digest, len(data), f"{server.base}{digest}.tar", "fc", version)


@pytest.mark.parametrize(
    "members",
    [
        [("manifest.json", b"{not json")],
        [("manifest.json", b"[1, 2]")],
        [("manifest.json", b"{}"), ("a", b"x"), ("a/b", b"y")],
    ],
    ids=["not-json", "a-list", "file-and-folder"],
)
def test_a_package_that_cannot_be_unpacked_fails_and_is_given_up(tmp_path, server, members):
    """Red team finding 9: each of these escaped as JSONDecodeError, AttributeError or an OSError
    (read as disk trouble: retried at every redelivery), or unpacked; now each ends in `failed`,
    is given up, and leaves no half-made slot behind."""
    slots, log = Slots(tmp_path / "device", server.trust(tmp_path / "device")), Log()
    d = _hand_made_deployment(tmp_path, server, members, "5", "bad-5")
    assert not slots.deploy(d, log)
    assert log.steps[-1] == "failed" and "package" in log.details[-1][1]["reason"]
    state = slots.state()
    assert state["pending"] is None and state["given_up"] == ["bad-5"] and state["current"] is None
    assert list((tmp_path / "device" / "slots" / "a").glob("*")) == []
    assert list((tmp_path / "device" / "downloads").iterdir()) == []
    assert not slots.deploy(d, log) and log.steps.count("downloading") == 1  # not retried


def test_a_manifest_naming_a_model_outside_the_package_never_serves(tmp_path, server, models):
    """Red team finding 9(a): a package whose manifest names a working model elsewhere on the
    device (here planted next to the slots) passed unpack and the health check, and served."""
    slots, log = Slots(tmp_path / "device", server.trust(tmp_path / "device")), Log()
    planted = tmp_path / "device" / "planted.tflite"
    planted.write_bytes(models[0].read_bytes())
    manifest = {"schema": 1, "name": "fc", "version": "5", "model": "../../planted.tflite"}
    manifest["model_sha256"] = hashlib.sha256(planted.read_bytes()).hexdigest()
    d = _hand_made_deployment(tmp_path, server, [("manifest.json", json.dumps(manifest).encode())], "5", "out-5")
    assert not slots.deploy(d, log) and slots.current() is None
    assert log.steps[-1] == "failed" and "not one of the package's files" in log.details[-1][1]["reason"]
    assert slots.state()["given_up"] == ["out-5"]


def test_a_full_quota_mid_unpack_is_disk_trouble_retried_later(tmp_path, server, keys, models, monkeypatch):
    """EDQUOT is a full disk for this user: the archive and the half-made slot go (their space
    back), the deployment fails saying so, and is not given up (the desired state retries it)."""
    slots, log = Slots(tmp_path / "device", server.trust(tmp_path / "device")), Log()
    d = _deployment(tmp_path, server, keys, models[0], version="1")

    def quota_exceeded(archive, destination, **limits):
        Path(destination).mkdir(parents=True)
        (Path(destination) / "manifest.json").write_text("{}")
        raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))

    monkeypatch.setattr(package, "unpack", quota_exceeded)
    assert not slots.deploy(d, log)
    assert log.steps[-1] == "failed" and "no space left" in log.details[-1][1]["reason"]
    assert slots.state()["given_up"] == [] and slots.state()["pending"] is None
    assert not (tmp_path / "device" / "slots" / "a").exists()
    assert list((tmp_path / "device" / "downloads").iterdir()) == []


AGENT = """
import json, os, signal, sys
from edgekit.agent.ota import STATE_VERSION, Deployment, Slots, StateVersionError, migrate_state
from edgekit.agent.trust import UpdateTrust
slots = Slots(sys.argv[1], UpdateTrust(sys.argv[1] + "-tuf", open(sys.argv[2], "rb").read()))
kill_at = sys.argv[4] if len(sys.argv) > 4 else None
slots.after_step = lambda step: step == kill_at and os.kill(os.getpid(), signal.SIGKILL)
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
    # the agent kills itself (SIGKILL: nothing runs after it) once the step is persisted
    killed = subprocess.run([*run, json.dumps(second.__dict__), step], capture_output=True, text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, f"never reached {step}: {killed.stderr[-2000:]}"
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


# --- state.json versions (issue 22) -----------------------------------------------------------------


def test_a_new_state_json_carries_its_version(tmp_path, server):
    Slots(tmp_path / "device", server.trust(tmp_path / "device"))
    state = json.loads((tmp_path / "device" / "state.json").read_text())
    assert state == {
        "version": STATE_VERSION,
        "current": None,
        "previous": None,
        "pending": None,
        "given_up": [],
        "highest_versions": {},
    }


def test_an_unversioned_state_json_is_migrated_and_rewritten(tmp_path, server, keys, models):
    """A device updated from an agent that wrote no version: what serves, the version floor and
    the deployments given up on are all read, and the file is rewritten with its version."""
    device = tmp_path / "device"
    slots, log = Slots(device, server.trust(device)), Log()
    assert slots.deploy(_deployment(tmp_path, server, keys, models[0], version="1"), log)
    slots.commit("d1", log)
    serving = slots.current()
    # exactly what the agent before versions wrote after this deployment (no given_up yet)
    old = {"current": serving, "previous": None, "pending": None, "highest_versions": {"fc": "1"}}
    (device / "state.json").write_text(json.dumps(old))
    restarted = Slots(device, server.trust(device))
    assert restarted.current() == serving and restarted.resume(log) is None
    assert json.loads((device / "state.json").read_text()) == {**old, "version": 1, "given_up": []}
    assert load(restarted.current_model(), threads=1).inputs[0].name == "features"
    # the floor survived: an older version is a downgrade; a newer one installs
    again = _deployment(tmp_path, server, keys, models[1], version="0.9", dep_id="d2")
    assert not restarted.deploy(again, log) and "refusing a downgrade" in log.details[-1][1]["reason"]
    assert restarted.deploy(_deployment(tmp_path, server, keys, models[1], version="2", dep_id="d3"), log)
    assert restarted.state()["given_up"] == ["d2"] and restarted.state()["version"] == STATE_VERSION


def test_a_state_json_from_a_newer_agent_is_refused_and_its_model_keeps_serving(tmp_path, server, keys, models, caplog):
    device = tmp_path / "device"
    slots, log = Slots(device, server.trust(device)), Log()
    assert slots.deploy(_deployment(tmp_path, server, keys, models[0], version="1"), log)
    slots.commit("d1", log)
    newer = {**slots.state(), "version": STATE_VERSION + 1, "a_field_from_the_future": {"x": 1}}
    (device / "state.json").write_text(json.dumps(newer))
    before = (device / "state.json").read_bytes()
    with caplog.at_level("ERROR", logger="edgekit.agent"):
        restarted = Slots(device, server.trust(device))
    assert f"has version {STATE_VERSION + 1}, written by a newer agent" in caplog.text
    # what it names keeps serving ...
    assert restarted.current()["version"] == "1" and restarted.resume(log) is None
    assert load(restarted.current_model(), threads=1).inputs[0].name == "features"
    # ... and nothing changes it: an update fails with the reason, a rollback is refused
    assert not restarted.deploy(_deployment(tmp_path, server, keys, models[1], version="2", dep_id="d2"), log)
    step, details = log.details[-1]
    assert step == "failed" and f"reads up to {STATE_VERSION}: upgrade edgekit" in details["reason"]
    assert not restarted.rollback("d1", log, "error rate")
    restarted.commit("d1", log)  # logged, not raised: it runs on the application's invocations
    assert (device / "state.json").read_bytes() == before and restarted.current()["version"] == "1"


@pytest.mark.parametrize("state", [{"version": "1"}, {"version": -1}, {"version": True}, ["not", "a", "state"]])
def test_a_state_that_is_no_agent_state_is_refused_naming_the_file(state):
    with pytest.raises(StateVersionError, match=r"^models/state.json is not an agent state"):
        migrate_state(state, "models/state.json")
