"""The agent's outbox bound: past ``outbox_limit`` the oldest telemetry windows go first (progress
reports stay), the drops are counted in the SQLite file across restarts, and a window reports
them. On a real SQLite file, and end to end through a real Mosquitto that is down while the
agent produces more windows than the limit."""

from __future__ import annotations

import json
import threading
import time

from edgekit import protocol
from edgekit.agent.outbox import Outbox
from edgekit.agent.runner import Agent, AgentConfig
from tests.fleet.mosquitto import Mosquitto, free_port
from tests.fleet.test_fleet_mqtt import wait_for

PROGRESS = protocol.topic("f1", "dev00", "progress")
TELEMETRY = protocol.topic("f1", "dev00", "telemetry")


def _rows(outbox: Outbox) -> list[tuple[str, bytes]]:
    return [(topic, payload) for _, topic, payload in outbox.pending(1000)]


def test_oldest_telemetry_goes_first_and_the_count_survives_a_restart(tmp_path):
    path = tmp_path / "outbox.sqlite"
    outbox = Outbox(path, limit=5)
    # 3 progress reports among 10 telemetry windows: p0 t0..t3 p1 t4..t7 p2 t8 t9
    for i in range(10):
        if i % 4 == 0:
            outbox.put(PROGRESS, f"p{i // 4}".encode())
        outbox.put(TELEMETRY, f"t{i}".encode())
    kept = [(PROGRESS, b"p0"), (PROGRESS, b"p1"), (PROGRESS, b"p2"), (TELEMETRY, b"t8"), (TELEMETRY, b"t9")]
    assert _rows(outbox) == kept  # the newest telemetry, every progress report, in the order queued
    assert outbox.dropped() == 8 and len(outbox) == 5
    outbox.close()

    outbox = Outbox(path, limit=5)  # the agent restarts
    assert _rows(outbox) == kept and outbox.dropped() == 8
    # a payload built from the count sees the drop its own arrival causes (t8 goes)
    outbox.put(TELEMETRY, lambda dropped: f"t10 dropped={dropped}".encode())
    assert outbox.dropped() == 9 and _rows(outbox)[-2:] == [(TELEMETRY, b"t9"), (TELEMETRY, b"t10 dropped=9")]
    # more progress: telemetry still goes first (t9, then t10) ...
    outbox.put(PROGRESS, b"p3")
    outbox.put(PROGRESS, b"p4")
    assert [p for _, p in _rows(outbox)] == [b"p0", b"p1", b"p2", b"p3", b"p4"] and outbox.dropped() == 11
    # ... and with no telemetry left, the oldest progress report goes, or the new window itself
    outbox.put(PROGRESS, b"p5")
    outbox.put(TELEMETRY, lambda dropped: f"t11 dropped={dropped}".encode())
    assert [p for _, p in _rows(outbox)] == [b"p1", b"p2", b"p3", b"p4", b"p5"] and outbox.dropped() == 13
    outbox.close()
    assert Outbox(path, limit=5).dropped() == 13


def test_offline_agent_sends_the_newest_windows_with_the_drop_count(tmp_path, keys, server):
    """Broker down: the agent queues 8 windows into an outbox of 3; when the broker comes up a
    subscriber gets exactly the newest 3, each reporting the drops so far (the last: 5)."""
    import paho.mqtt.client as mqtt

    limit, produced = 3, 8
    broker = Mosquitto(tmp_path, port=free_port(), persistent=True)
    # the subscriber's persistent session exists before the agent runs, so whenever the agent
    # reconnects, the broker queues what it sends for the subscriber
    received: list[dict] = []
    lock = threading.Lock()

    def on_message(client, userdata, message) -> None:
        with lock:
            received.append(json.loads(message.payload))

    subscriber = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id="watcher", protocol=mqtt.MQTTv311, clean_session=False
    )
    subscriber.on_message = on_message
    broker.start()
    subscriber.connect("127.0.0.1", broker.port)
    subscriber.loop_start()
    agent = None
    try:
        subscribed = threading.Event()
        subscriber.on_subscribe = lambda *args: subscribed.set()
        subscriber.subscribe(TELEMETRY, qos=1)
        assert subscribed.wait(5), "no SUBACK"
        subscriber.disconnect()
        subscriber.loop_stop()
        broker.stop()  # the session is saved with the broker's state

        config = AgentConfig(
            fleet="f1",
            device="dev00",
            state_dir=str(tmp_path / "dev00"),
            trusted_root=server.root_bytes().decode(),
            port=broker.port,
            telemetry_interval_s=3600,  # no windows but ours
            outbox_limit=limit,
            allow_unsigned_commands=True,  # telemetry only: no command is sent here
        )
        agent = Agent(config)
        agent.start()
        for i in range(1, produced + 1):
            agent.telemetry(window={"count": i})
        assert not agent.client.is_connected()
        assert len(agent.outbox) == limit and agent.outbox.dropped() == produced - limit

        broker.start()
        subscriber.reconnect()
        subscriber.loop_start()
        wait_for(lambda: len(received) >= limit, timeout=15, what="the kept windows", detail=lambda: received)
        wait_for(lambda: len(agent.outbox) == 0, timeout=5, what="the outbox drained", detail=lambda: len(agent.outbox))
        time.sleep(0.5)  # anything more would have come by now
        with lock:
            windows = sorted(received, key=lambda w: w["seq"])
        assert [w["count"] for w in windows] == list(range(produced - limit + 1, produced + 1))
        assert [w["dropped"] for w in windows] == [w["count"] - limit for w in windows]  # drops so far
        assert windows[-1]["dropped"] == produced - limit
    finally:
        if agent is not None:
            agent.stop()
        subscriber.loop_stop()
        subscriber.disconnect()
        broker.stop()
