"""Agents, fleet manager and a real Mosquitto broker: telemetry lands in SQLite, a good package
reaches every device through canary and waves, a bad one stops in the canary."""

from __future__ import annotations

import contextlib
import time

import pytest

from edgekit import package, protocol
from edgekit.agent.runner import Agent, AgentConfig
from edgekit.fleet.manager import FleetManager
from edgekit.fleet.repository import target_path
from tests.fleet.mosquitto import Mosquitto


def wait_for(condition, timeout: float = 60.0, what: str = "condition", detail=None) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}" + (f": {detail()}" if detail else ""))


@pytest.fixture(params=["mosquitto", "embedded"])
def broker(request, tmp_path):
    """Every integration test runs against Mosquitto and against edgekit's embedded broker."""
    if request.param == "mosquitto":
        b = Mosquitto(tmp_path).start()
    else:
        from edgekit.broker import Broker

        b = Broker(port=0).start()
    yield b
    b.stop()


def _agents(tmp_path, broker, trusted_root: str, n: int, command_key: str | None = None) -> list[Agent]:
    agents = []
    for i in range(n):
        config = AgentConfig(
            fleet="f1",
            device=f"dev{i:02d}",
            state_dir=str(tmp_path / f"dev{i:02d}"),
            trusted_root=trusted_root,
            port=broker.port,
            telemetry_interval_s=3600,
            watch_invocations=0,
            tags=["cameras"] if i % 2 == 0 else ["doors"],
            command_key=command_key,
            allow_unsigned_commands=command_key is None,
        )
        agent = Agent(config)
        agent.start()
        agents.append(agent)
    return agents


def _deploy_message(info: package.PackageInfo, base: str, deployment: str) -> dict:
    return {
        "deployment": deployment,
        "package": target_path(info.manifest["name"], info.manifest["version"]),
        "sha256": info.sha256,
        "size": info.size,
        "url": f"{base}{info.sha256}.tar",
        "name": info.manifest["name"],
        "version": info.manifest["version"],
    }


def test_telemetry_and_rollouts(tmp_path, broker, keys, models, server, command_key):
    store, base = server
    manager = FleetManager(tmp_path / "fleet.sqlite", port=broker.port, command_key=command_key[0])
    assert manager.start()
    agents = _agents(tmp_path, broker, server.root_bytes().decode(), 6, command_key[1])
    try:
        wait_for(lambda: len(manager.devices("f1")) == 6, what="six devices registered")
        assert manager.devices("f1", tag="cameras") == ["dev00", "dev02", "dev04"]
        # MQTT 5 where the broker speaks it (Mosquitto), 3.1.1 otherwise (the embedded broker)
        expected = 5 if isinstance(broker, Mosquitto) else 4
        assert manager.mqtt_version == expected and {a.mqtt_version for a in agents} == {expected}
        for agent in agents:
            agent.telemetry(window={"count": 5, "p50_ms": 1.0})
        wait_for(lambda: manager.store.query("SELECT COUNT(*) FROM telemetry")[0][0] == 6, what="telemetry stored")

        good = package.build(models[0], tmp_path / "good.tar", name="fc", version="1", signing_key=keys[0])
        server.publish(good)
        rollout = manager.start_rollout(
            "f1",
            _deploy_message(good, base, "r1"),
            manager.devices("f1"),
            canary=0.2,
            waves=(0.5, 1.0),
            max_failures=0.1,
        )
        wait_for(lambda: manager.rollout_status(rollout)["state"] == "done", what="good rollout done")
        assert all(a.slots.current()["version"] == "1" for a in agents)

        broken_model = tmp_path / "broken.tflite"
        broken_model.write_bytes(models[0].read_bytes()[:300])
        bad = package.build(
            broken_model, tmp_path / "bad.tar", name="fc", version="2", signing_key=keys[0], validate=False
        )
        server.publish(bad)
        rollout = manager.start_rollout(
            "f1",
            _deploy_message(bad, base, "r2"),
            manager.devices("f1"),
            canary=0.2,
            waves=(0.5, 1.0),
            max_failures=0.1,
        )
        wait_for(lambda: manager.rollout_status(rollout)["state"] == "aborted", what="bad rollout aborted")
        status = manager.rollout_status(rollout)
        assert set(status["steps"]) == {"dev00", "dev01"}  # the canary (20% of 6 -> 2) and nobody else
        assert all(a.slots.current()["version"] == "1" for a in agents)
    finally:
        for agent in agents:
            agent.stop()
        manager.stop()


def test_malformed_messages_are_counted_not_fatal(tmp_path, broker):
    import paho.mqtt.client as mqtt

    manager = FleetManager(tmp_path / "fleet.sqlite", port=broker.port)
    assert manager.start()  # subscribed: nothing published from here on is missed
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        t = protocol.topic("f1", "dev9", "telemetry")
        for payload in (b"{not json", b'{"schema": 99, "seq": 1}', b"[1, 2]", b"\xff\xfe"):
            client.publish(t, payload, qos=1).wait_for_publish(5)
        client.publish(t, protocol.encode("telemetry", seq=1, ts=1.0, window_s=10, count=3), qos=1).wait_for_publish(5)
        wait_for(lambda: manager.counters.malformed == 4 and manager.counters.stored == 1, what="counted")
    finally:
        client.loop_stop()
        manager.stop()


BAD_PAYLOADS = (
    b"{not json",
    b"\xff\xfe",
    b"[1, 2]",
    b'{"schema": 99, "seq": 1, "ts": 1, "state": "online", "window_s": 1, "count": 1}',
    b'{"schema": 1}',
    # every field present, some of the wrong type
    b'{"schema": 1, "seq": "7", "ts": "now", "state": 1, "window_s": 1, "count": true, "deployment": 5,'
    b' "step": "committed", "id": 3, "ok": "yes", "command": ["rollback"], "package": 1, "sha256": 2,'
    b' "url": 3, "size": "big"}',
)


def test_malformed_messages_on_every_topic(tmp_path, broker, keys, command_key, server):
    """Each side counts what it cannot read and goes on: the manager on status, telemetry,
    progress and cmd/resp, the agent on deploy and cmd."""
    import paho.mqtt.client as mqtt

    manager = FleetManager(tmp_path / "fleet.sqlite", port=broker.port, command_key=command_key[0])
    assert manager.start()
    [agent] = _agents(tmp_path, broker, server.root_bytes().decode(), 1, command_key[1])
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    responses = []

    def on_message(c, u, message) -> None:
        with contextlib.suppress(protocol.ProtocolError):  # our own bad payloads, echoed
            responses.append(protocol.decode("cmd/resp", message.payload))

    client.on_message = on_message
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        wait_for(lambda: manager.devices("f1") == ["dev00"] and agent.client.is_connected(), what="agent up")
        client.subscribe(protocol.topic("f1", "dev00", "cmd/resp"), qos=1)
        for channel in ("status", "telemetry", "progress", "cmd/resp", "deploy", "cmd"):
            for payload in BAD_PAYLOADS:
                client.publish(protocol.topic("f1", "dev00", channel), payload, qos=1).wait_for_publish(5)
        bad = len(BAD_PAYLOADS)
        wait_for(lambda: agent.malformed == 2 * bad, what="agent counted", detail=lambda: agent.malformed)
        # the manager also hears what is sent to it on cmd/resp: 4 channels' worth
        wait_for(lambda: manager.counters.malformed == 4 * bad, what="manager counted", detail=lambda: manager.counters)
        agent.telemetry(window={"count": 2})
        wait_for(lambda: manager.store.query("SELECT COUNT(*) FROM telemetry")[0][0] == 1, what="still ingesting")
        from edgekit.signing import CommandSigner

        status = CommandSigner(command_key[0]).sign({"id": "c1", "command": "status"}, "f1", "dev00", 60)
        client.publish(protocol.topic("f1", "dev00", "cmd"), protocol.encode("cmd", **status), qos=1)
        wait_for(lambda: any(r.get("id") == "c1" and r["ok"] for r in responses), what="agent still answers")
        assert agent.slots.current() is None  # no deployment came of any of it
    finally:
        client.loop_stop()
        agent.stop()
        manager.stop()


def test_topic_wildcards():
    from edgekit.broker import topic_matches

    assert topic_matches("edgekit/v1/+/+/status", "edgekit/v1/f/d/status")
    assert topic_matches("edgekit/v1/#", "edgekit/v1/f/d/cmd/resp")
    assert not topic_matches("edgekit/v1/+/+/status", "edgekit/v1/f/d/telemetry")
    assert not topic_matches("edgekit/v1/+/status", "edgekit/v1/f/d/status")


def test_last_will_marks_a_dead_device_offline(tmp_path, broker, keys, command_key, server):
    manager = FleetManager(tmp_path / "fleet.sqlite", port=broker.port, command_key=command_key[0])
    assert manager.start()
    [agent] = _agents(tmp_path, broker, server.root_bytes().decode(), 1, command_key[1])
    try:
        wait_for(lambda: manager.store.query("SELECT state FROM devices") == [("online",)], what="online")
        agent.client._sock.close()  # the connection dies without a DISCONNECT: the broker sends the will
        agent.client.loop_stop()
        wait_for(lambda: manager.store.query("SELECT state FROM devices") == [("offline",)], what="offline")
    finally:
        manager.stop()


def test_broker_restart_mid_rollout_loses_no_telemetry(tmp_path, keys, models, server, command_key):
    store, base = server
    broker = Mosquitto(tmp_path, persistent=True).start()  # production brokers persist sessions
    manager = FleetManager(tmp_path / "fleet.sqlite", port=broker.port, command_key=command_key[0])
    assert manager.start()
    agents = _agents(tmp_path, broker, server.root_bytes().decode(), 3, command_key[1])
    try:
        wait_for(lambda: len(manager.devices("f1")) == 3, what="registered")
        good = package.build(models[0], tmp_path / "good.tar", name="fc", version="1", signing_key=keys[0])
        server.publish(good)
        time.sleep(1.5)  # let the broker autosave the manager's session
        rollout = manager.start_rollout(
            "f1", _deploy_message(good, base, "r1"), manager.devices("f1"), canary=0.3, waves=(1.0,)
        )
        wait_for(lambda: any(a.slots.state()["pending"] for a in agents), what="the canary at work")
        broker.stop()
        time.sleep(0.5)
        for agent in agents:  # written to the outbox while the broker is down
            for _ in range(5):
                agent.telemetry(window={"count": 1})
        assert all(len(a.outbox) >= 5 for a in agents)  # the canary's progress reports wait there too
        broker.start()
        wait_for(
            lambda: manager.store.query("SELECT COUNT(*) FROM telemetry")[0][0] == 15,
            timeout=90,
            what="all 15 windows stored after the restart",
            detail=lambda: (
                manager.store.query("SELECT device, seq FROM telemetry"),
                [len(a.outbox) for a in agents],
                [a.client.is_connected() for a in agents],
                manager.client.is_connected(),
                manager.counters,
            ),
        )
        wait_for(lambda: all(len(a.outbox) == 0 for a in agents), what="outboxes drained")
        wait_for(lambda: manager.rollout_status(rollout)["state"] == "done", what="the rollout completes")
        assert all(a.slots.current()["version"] == "1" for a in agents)
    finally:
        for agent in agents:
            agent.stop()
        manager.stop()
        broker.stop()


def test_manager_restart_resumes_the_rollout(tmp_path, keys, models, server, command_key):
    store, base = server
    broker = Mosquitto(tmp_path).start()
    manager = FleetManager(tmp_path / "fleet.sqlite", port=broker.port, command_key=command_key[0])
    assert manager.start()
    agents = _agents(tmp_path, broker, server.root_bytes().decode(), 4, command_key[1])
    try:
        wait_for(lambda: len(manager.devices("f1")) == 4, what="registered")
        good = package.build(models[0], tmp_path / "good.tar", name="fc", version="1", signing_key=keys[0])
        server.publish(good)
        rollout = manager.start_rollout(
            "f1", _deploy_message(good, base, "r1"), manager.devices("f1"), canary=0.25, waves=(1.0,), max_failures=0.5
        )
        manager.stop()  # right after the canary was sent
        manager = FleetManager(tmp_path / "fleet.sqlite", port=broker.port, command_key=command_key[0])
        assert manager.start()
        wait_for(lambda: manager.rollout_status(rollout)["state"] == "done", what="resumed rollout done")
        assert all(a.slots.current()["version"] == "1" for a in agents)
    finally:
        for agent in agents:
            agent.stop()
        manager.stop()
        broker.stop()
