"""The fleet manager's HTTP API on a real broker with real agents: token for changes, signed
uploads, rollouts to tags with pause/resume, telemetry health gates, rollback by command, and an
OpenAPI description that matches the routes."""

from __future__ import annotations

import contextlib
import json
import threading
import time
import urllib.request

import numpy as np
import pytest

from edgekit import package
from edgekit.errors import FleetError, InputError
from edgekit.fleet.api import ROUTES, serve_api
from edgekit.fleet.client import FleetClient
from edgekit.fleet.manager import FleetManager
from edgekit.fleet.packages import PackageStore
from edgekit.fleet.repository import signer_from_file
from tests.fleet.test_fleet_mqtt import _agents, broker, wait_for  # noqa: F401  (broker is a fixture)

TOKEN = "s3cret-token"


def LATENCY(p90_ms: float) -> dict:  # noqa: N802  (a window's latency block, as the collector writes it)
    return {"p50_ms": p90_ms / 2, "p90_ms": p90_ms, "p99_ms": p90_ms * 1.5}


@contextlib.contextmanager
def manager_with_agents(tmp_path, mqtt_broker, command_key, server, count: int = 4):
    """A fleet manager with its HTTP API (fleet "f1") and ``count`` real agents registered (dev00,
    dev02, ... are cameras): yields (manager, client with the token, agents, API URL)."""
    manager = FleetManager(tmp_path / "fleet.sqlite", port=mqtt_broker.port, command_key=command_key[0])
    assert manager.start()
    httpd, api = serve_api(manager, PackageStore(tmp_path / "api-store", server.repo), TOKEN)
    api.fleet = "f1"
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    agents = _agents(tmp_path, mqtt_broker, server.root_bytes().decode(), count, command_key[1])
    try:
        wait_for(lambda: len(manager.devices("f1")) == count, what=f"{count} devices registered")
        yield manager, FleetClient(url, TOKEN, fleet="f1"), agents, url
    finally:
        for agent in agents:
            agent.stop()
        manager.stop()
        httpd.shutdown()


@pytest.fixture
def fleet(tmp_path, broker, keys, command_key, server):  # noqa: F811
    with manager_with_agents(tmp_path, broker, command_key, server) as running:
        yield running


def _upload(client: FleetClient, info: package.PackageInfo, key) -> None:
    """Upload and publish: the package key signs the next targets metadata, as fleet deploy --sign does."""
    client.upload(info.path)
    client.publish(info.path, info.manifest, signer_from_file(key, "package key"))


def _package(tmp_path, model, key, version: str) -> package.PackageInfo:
    return package.build(model, tmp_path / f"fc-{version}.tar", name="fc", version=version, signing_key=key)


def test_changes_need_the_token_and_uploads_a_valid_signature(tmp_path, fleet, keys, models):
    manager, client, agents, url = fleet
    info = _package(tmp_path, models[0], keys[0], "1")
    with pytest.raises(FleetError, match="token"):
        FleetClient(url, "wrong", fleet="f1").upload(info.path)
    with pytest.raises(InputError, match="token"):
        FleetClient(url, None, fleet="f1").upload(info.path)
    other_private, other_public = tmp_path / "other.key", tmp_path / "other.pub"
    package.generate_key(other_private, other_public)
    forged = package.build(models[0], tmp_path / "forged.tar", name="fc", version="9", signing_key=other_private)
    with pytest.raises(FleetError, match="does not verify"):
        client.upload(forged.path)
    assert client.upload(info.path)["sha256"] == info.sha256
    assert [p["version"] for p in client.packages()] == ["1"]
    with pytest.raises(FleetError, match="no stored package"):
        client.deploy("0" * 64, ["all"])
    with pytest.raises(FleetError, match="not in the fleet's signed targets metadata"):
        client.deploy(info.sha256, ["all"])  # uploaded, not published: no device would accept it
    with pytest.raises(FleetError, match="not signed by this key"):
        client.publish(info.path, info.manifest, signer_from_file(other_private, "package key"))
    client.publish(info.path, info.manifest, signer_from_file(keys[0], "package key"))
    with pytest.raises(FleetError, match="matches no registered device"):
        client.deploy(info.sha256, ["tag:nothing"])
    assert client.devices("cameras")[0]["device"] == "dev00"
    assert len(client.devices()) == 4


def test_rollout_to_a_tag_with_pause_and_resume(tmp_path, fleet, keys, models):
    manager, client, agents, url = fleet
    info = _package(tmp_path, models[0], keys[0], "1")
    _upload(client, info, keys[0])
    status = client.deploy(info.sha256, ["tag:cameras"], canary=0.05, waves=[1.0], rollout_id="r1")
    assert status["devices"] == ["dev00", "dev02"] and status["cuts"] == [1, 2]
    assert client.control("r1", "pause")["state"] == "paused"
    wait_for(lambda: client.rollout("r1")["steps"].get("dev00") == "committed", what="canary committed")
    assert client.rollout("r1")["steps"].get("dev02") is None and client.rollout("r1")["state"] == "paused"
    client.control("r1", "resume")
    wait_for(lambda: client.rollout("r1")["state"] == "done", what="rollout done")
    assert [a.slots.current() and a.slots.current()["version"] for a in agents] == ["1", None, "1", None]
    with pytest.raises(FleetError, match="cannot make it paused"):
        client.control("r1", "pause")
    # rollback by command: v2 reaches both cameras, then both go back to v1
    info2 = _package(tmp_path, models[1], keys[0], "2")
    _upload(client, info2, keys[0])
    client.deploy(info2.sha256, ["id:dev00,dev02"], canary=0.5, waves=[1.0], rollout_id="r2")
    wait_for(lambda: client.rollout("r2")["state"] == "done", what="second rollout done")
    assert client.control("r2", "rollback")["state"] == "rolled_back"
    wait_for(
        lambda: [agents[i].slots.current()["version"] for i in (0, 2)] == ["1", "1"],
        what="cameras back on v1",
        detail=lambda: client.rollout("r2"),
    )


def test_latency_gate_stops_the_canary_and_rolls_it_back(tmp_path, fleet, keys, models):
    manager, client, agents, url = fleet
    v1 = _package(tmp_path, models[0], keys[0], "1")
    _upload(client, v1, keys[0])
    client.deploy(v1.sha256, ["all"], canary=0.0, waves=[1.0], rollout_id="base")
    wait_for(lambda: client.rollout("base")["state"] == "done", what="v1 everywhere")
    for agent in agents:  # the fleet's latency on v1
        agent.telemetry(window={"count": 100, "errors": 0, "latency": LATENCY(2.0), "window_s": 0.001})
    v2 = _package(tmp_path, models[1], keys[0], "2")
    _upload(client, v2, keys[0])
    gates = {"max_latency_regression": 1.5, "telemetry_windows": 1}
    client.deploy(v2.sha256, ["all"], canary=0.25, waves=[1.0], gates=gates, rollout_id="slow")
    wait_for(lambda: client.rollout("slow")["steps"].get("dev00") == "committed", what="canary committed")
    assert client.rollout("slow")["state"] == "running"  # waiting for the canary's telemetry
    agents[0].telemetry(window={"count": 100, "errors": 0, "latency": LATENCY(5.0), "window_s": 0.001})  # 2.5x slower
    wait_for(lambda: client.rollout("slow")["state"] == "aborted", what="gate tripped")
    assert "p90 latency" in client.rollout("slow")["reason"]
    wait_for(lambda: agents[0].slots.current()["version"] == "1", what="canary rolled back")
    assert all(a.slots.current()["version"] == "1" for a in agents)
    assert set(client.rollout("slow")["steps"]) == {"dev00"}


def test_openapi_describes_every_route(fleet):
    manager, client, agents, url = fleet
    with urllib.request.urlopen(f"{url}/openapi.json") as response:
        spec = json.loads(response.read())
    assert spec["openapi"].startswith("3.")
    for route in ROUTES:
        operation = spec["paths"][route.path][route.method.lower()]
        assert ("security" in operation) == (not route.public)
    # telemetry and the device list are not public: every read but what devices fetch needs the token
    for path in ("/api/v1/devices?fleet=f1", "/api/v1/devices/dev00/telemetry?fleet=f1", "/api/v1/packages",
                 "/api/v1/rollouts"):  # fmt: skip
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{url}{path}")
        assert refused.value.code == 401, path
    with pytest.raises(InputError, match="needs its token"):
        FleetClient(url, None, fleet="f1").devices()
    with urllib.request.urlopen(f"{url}/tuf/root.json") as response:  # devices fetch metadata without it
        assert json.loads(response.read())["signed"]["_type"] == "root"
    authorized = urllib.request.Request(f"{url}/api/v1/devices?fleet=f1&tag=doors")
    authorized.add_header("Authorization", f"Bearer {TOKEN}")
    with urllib.request.urlopen(authorized) as response:
        assert [d["device"] for d in json.loads(response.read())] == ["dev01", "dev03"]
    request = urllib.request.Request(f"{url}/api/v1/rollouts", data=b"{not json", method="POST")
    request.add_header("Authorization", f"Bearer {TOKEN}")
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(request)
    assert error.value.code == 400 and "not JSON" in json.loads(error.value.read())["error"]
    # a wrong token is told so; a device that does not exist is not an empty table (a CLI probe's finds)
    wrong = urllib.request.Request(f"{url}/api/v1/devices?fleet=f1")
    wrong.add_header("Authorization", "Bearer not-the-token")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(wrong)
    assert refused.value.code == 401 and "given is wrong" in json.loads(refused.value.read())["error"]
    with pytest.raises(FleetError, match="no device 'nosuch'"):
        client.telemetry("nosuch")


def test_offline_device_gets_the_rollout_when_it_returns(tmp_path, fleet, keys, models):
    from edgekit.agent.runner import Agent

    manager, client, agents, url = fleet
    agents[3].stop()  # dev03 goes offline before the rollout
    wait_for(lambda: client.devices("doors")[1]["state"] == "offline", what="dev03 offline")
    info = _package(tmp_path, models[0], keys[0], "1")
    _upload(client, info, keys[0])
    client.deploy(info.sha256, ["all"], canary=0.25, waves=[1.0], gates={"wave_timeout_s": 10}, rollout_id="r1")
    wait_for(lambda: client.rollout("r1")["state"] == "done", what="done without the offline device")
    assert "dev03" not in client.rollout("r1")["steps"]
    returning = Agent(agents[3].config)  # the device comes back: the retained desired state is waiting
    agents[3] = returning
    returning.start()
    wait_for(lambda: client.rollout("r1")["steps"].get("dev03") == "committed", what="dev03 caught up")
    assert returning.slots.current()["version"] == "1"


def _v1_then_v2_canary(tmp_path, client, keys, models, gates: dict, rollout_id: str):
    """v1 on every device, then v2 to a 25% canary (dev00) under ``gates``; returns v2's package
    once the canary has committed it."""
    v1 = _package(tmp_path, models[0], keys[0], "1")
    _upload(client, v1, keys[0])
    client.deploy(v1.sha256, ["all"], canary=0.0, waves=[1.0], rollout_id="base")
    wait_for(lambda: client.rollout("base")["state"] == "done", what="v1 everywhere")
    v2 = _package(tmp_path, models[1], keys[0], "2")
    _upload(client, v2, keys[0])
    client.deploy(v2.sha256, ["all"], canary=0.25, waves=[1.0], gates=gates, rollout_id=rollout_id)
    wait_for(lambda: client.rollout(rollout_id)["steps"].get("dev00") == "committed", what="canary committed")
    return v2


def test_error_rate_gate(tmp_path, fleet, keys, models):
    manager, client, agents, url = fleet
    gates = {"max_error_rate": 0.05, "telemetry_windows": 1}
    _v1_then_v2_canary(tmp_path, client, keys, models, gates, "errors")
    agents[0].telemetry(window={"count": 70, "errors": 30, "window_s": 0.001})  # 70 succeeded, 30 raised
    wait_for(lambda: client.rollout("errors")["state"] == "aborted", what="error-rate gate tripped")
    assert "error rate 30.0%" in client.rollout("errors")["reason"]
    wait_for(lambda: agents[0].slots.current()["version"] == "1", what="the canary back on v1")
    assert [a.slots.current()["version"] for a in agents] == ["1"] * 4


def test_power_gate_on_an_estimate(tmp_path, fleet, keys, models):
    """The canary reports watts the way a board without a power sensor does: the collector reads
    a Raspberry Pi 4's procfs (device-tree model, an idle /proc/stat) from a folder, so the
    estimate is the board profile's idle power, 2.7 W, flagged estimated; the gate is 2 W."""
    from edgekit.agent.telemetry import TelemetryCollector

    manager, client, agents, url = fleet
    board = tmp_path / "pi4"
    (board / "proc/device-tree").mkdir(parents=True)
    (board / "proc/device-tree/model").write_bytes(b"Raspberry Pi 4 Model B Rev 1.4\x00")
    (board / "proc/stat").write_text("cpu  1000 0 500 90000 100 0 10 0 0 0\n")
    collector = agents[0].collector = TelemetryCollector(root=str(board))  # what dev00 measures with
    try:
        gates = {"max_power_w": 2.0, "telemetry_windows": 1}
        v2 = _v1_then_v2_canary(tmp_path, client, keys, models, gates, "hot")
        assert client.rollout("hot")["state"] == "running"  # waiting for the canary's telemetry
        collector.window()  # the window that began before the switch is not evidence: start a new one
        session = agents[0].session()
        for _ in range(30):  # min_invocations
            session.run(np.zeros((1, 6), np.float32))
        agents[0].telemetry()  # the collector's window: the estimate, over the new model's invocations
        wait_for(lambda: client.rollout("hot")["state"] == "aborted", what="power gate tripped")
        assert "median power 2.70 W > 2.00 W" in client.rollout("hot")["reason"]
        [(payload,)] = manager.store.query("SELECT payload FROM telemetry WHERE device='dev00'")
        window = json.loads(payload)
        assert window["sha256"] == v2.sha256
        assert window["power"]["estimated"] and window["power"]["source"] == "estimate"
        wait_for(lambda: agents[0].slots.current()["version"] == "1", what="the canary back on v1")
        assert [a.slots.current()["version"] for a in agents] == ["1"] * 4
        assert set(client.rollout("hot")["steps"]) == {"dev00"}
    finally:
        collector.meter.end()  # its sampling thread


def test_a_wave_without_evidence_pauses_at_its_timeout(tmp_path, fleet, keys, models):
    """Issue 18: no telemetry plus the wave timeout used to pass the gate and finish the rollout.
    Now it stops at the canary, paused, saying what evidence is missing."""
    manager, client, agents, url = fleet
    gates = {"max_error_rate": 0.05, "wave_timeout_s": 5.0}
    _v1_then_v2_canary(tmp_path, client, keys, models, gates, "silent")
    wait_for(lambda: client.rollout("silent")["state"] == "paused", what="paused for want of evidence")
    status = client.rollout("silent")
    assert status["reason"].startswith("no verdict yet: 1 of 1 devices (dev00)") and "wave timeout" in status["reason"]
    assert set(status["steps"]) == {"dev00"}  # nobody past the canary
    assert [a.slots.current()["version"] for a in agents] == ["2", "1", "1", "1"]


def test_why_a_device_failed_is_served_and_logged(tmp_path, fleet, keys, models):
    """Issue 18: the reason sat only in the manager's progress details. Now the rollout shows each
    failed device's reason, its event log says what happened in order, and the registry follows
    the gate's rollback at once."""
    manager, client, agents, url = fleet
    v1 = _package(tmp_path, models[0], keys[0], "1")
    _upload(client, v1, keys[0])
    client.deploy(v1.sha256, ["all"], canary=0.0, waves=[1.0], rollout_id="base")
    wait_for(lambda: client.rollout("base")["state"] == "done", what="v1 everywhere")
    broken = tmp_path / "nan.tflite"
    broken.write_bytes(models[1].read_bytes()[:300])
    bad = package.build(broken, tmp_path / "bad.tar", name="fc", version="2", signing_key=keys[0], validate=False)
    _upload(client, bad, keys[0])
    client.deploy(bad.sha256, ["all"], canary=0.25, waves=[1.0], rollout_id="bad")
    wait_for(lambda: client.rollout("bad")["state"] == "aborted", what="canary failure stops the rollout")
    status = client.rollout("bad")
    assert list(status["failures"]) == ["dev00"] and "health check failed" in status["failures"]["dev00"]
    kinds = [(e["kind"], e["device"]) for e in client.events("bad")]
    assert kinds[0] == ("started", None) and ("device_failed", "dev00") in kinds and kinds[-1] == ("aborted", None)
    failed = next(e for e in client.events("bad") if e["kind"] == "device_failed")
    assert failed["message"] == status["failures"]["dev00"]
    assert client.events("bad", since=client.events("bad")[-1]["ts"]) == []
    with pytest.raises(FleetError, match="no rollout"):
        client.events("nope")
    assert {d["device"]: d["version"] for d in client.devices()} == dict.fromkeys(
        ["dev00", "dev01", "dev02", "dev03"], "1"
    )


def test_a_flood_of_progress_is_one_row(tmp_path, fleet):
    """Issue 18: 12,000 progress messages from one device for one deployment made one rollouts
    query take 38 s. They are one upserted row: the newest step by the device's clock wins."""
    manager, client, agents, url = fleet
    flood = [
        ("f1", "dev00", "progress", {"deployment": "r9", "step": "downloading", "ts": 1000.0 + i})
        for i in range(12_000)
    ]
    flood.append(("f1", "dev00", "progress", {"deployment": "r9", "step": "failed", "ts": 500.0}))  # older: loses
    manager.store.write(flood)
    rows = manager.store.query("SELECT step, ts FROM deployment_state WHERE deployment='r9'")
    assert rows == [("downloading", 1000.0 + 11_999)]


def test_idle_connections_cannot_stop_the_api(fleet):
    """Issue 18: idle HTTP connections took a thread each without bound. They now hold one of a
    bounded set of workers for at most the idle timeout; the API keeps answering."""
    import socket

    manager, client, agents, url = fleet
    port = int(url.rsplit(":", 1)[1])
    before = threading.active_count()
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(100)]
    try:
        wait_for(lambda: threading.active_count() - before >= 64, what="the workers busy with idle clients")
        assert threading.active_count() - before <= 64  # not a thread per idle connection
        assert [d["device"] for d in client.devices()] == ["dev00", "dev01", "dev02", "dev03"]
    finally:
        for s in idle:
            s.close()


def test_an_empty_canary_still_holds_one_device(tmp_path, fleet, keys, models):
    """canary=0 must not mean 'no canary': the first wave is at least one device."""
    manager, client, agents, url = fleet
    info = _package(tmp_path, models[0], keys[0], "1")
    _upload(client, info, keys[0])
    status = client.deploy(info.sha256, ["all"], canary=0.0, waves=[1.0], rollout_id="c0")
    assert status["cuts"][0] == 1


def test_abort_clears_the_retained_desired_state(tmp_path, fleet, keys, models):
    """An aborted rollout must not reach a device that comes online later: its retained deploy
    message is replaced by a signed withdrawal, for every device it was sent to."""
    import paho.mqtt.client as mqtt

    from edgekit import protocol

    manager, client, agents, url = fleet
    info = _package(tmp_path, models[0], keys[0], "1")
    _upload(client, info, keys[0])
    client.deploy(info.sha256, ["all"], canary=0.25, waves=[1.0], rollout_id="stop", gates={"max_error_rate": 0.05})
    wait_for(lambda: client.rollout("stop")["steps"].get("dev00") == "committed", what="canary committed")
    client.control("stop", "abort")
    retained: dict[str, bytes] = {}
    late = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    late.on_message = lambda c, u, m: retained.__setitem__(m.topic, m.payload)
    late.connect("127.0.0.1", manager.port)
    late.loop_start()
    late.subscribe(f"{protocol.PREFIX}/f1/+/deploy", qos=1)
    time.sleep(1.0)  # retained messages arrive right after the SUBACK; an empty one is never delivered
    late.loop_stop()
    withdrawn = {topic for topic, payload in retained.items() if protocol.decode("deploy", payload).get("cancel")}
    left = [topic for topic, payload in retained.items() if payload and topic not in withdrawn]
    assert left == [], f"retained desired states left after abort: {left}"
    assert f"{protocol.PREFIX}/f1/dev00/deploy" in withdrawn
