"""One message from one device credential (or from whoever holds the broker) must not stop the
manager's ingest or the agent's link, nor wedge what comes after it. Each payload below did,
before its fix: a JSON text nested thousands deep or an integer of 5,000 digits raised out of
``protocol.decode`` (RecursionError, ValueError) and killed paho's loop thread; a ``seq`` of
2**70 passed validation and raised OverflowError in the writer thread, which then died; a status
whose ``model`` was an object made SQLite raise ProgrammingError, which the manager took for a
database outage, so it held that message unacknowledged and retried it ahead of everything else,
forever. Retained, each did it again at every restart."""

from __future__ import annotations

import json
import time

import paho.mqtt.client as mqtt
import pytest

from edgekit import protocol
from edgekit.fleet.manager import FleetManager
from tests.fleet.test_fleet_mqtt import _agents, broker, wait_for  # noqa: F401  (broker is a fixture)

WINDOW = '"schema":1,"ts":1,"window_s":1,"count":1'
HOSTILE = {
    "nested 5000 deep": ("telemetry", '{"seq":1,' + WINDOW + ',"x":' + "[" * 5000 + "]" * 5000 + "}"),
    "a 5000-digit seq": ("telemetry", '{"seq":' + "1" * 5000 + "," + WINDOW + "}"),
    "seq 2**70": ("telemetry", f'{{"seq":{2**70},{WINDOW}}}'),
    "ts 2**400": ("telemetry", f'{{"seq":1,"schema":1,"ts":{2**400},"window_s":1,"count":1}}'),
    "ts Infinity": ("telemetry", '{"seq":1,"schema":1,"ts":Infinity,"window_s":1,"count":1}'),
    "errors -1": ("telemetry", '{"seq":1,' + WINDOW + ',"errors":-1}'),
    "model an object": ("status", '{"schema":1,"state":"online","seq":1,"ts":1,"model":{"x":1}}'),
    "version a list": ("status", '{"schema":1,"state":"online","seq":1,"ts":1,"version":[1]}'),
    "tags of numbers": ("status", '{"schema":1,"state":"online","seq":1,"ts":1,"tags":[1,2]}'),
}


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_payloads_are_protocol_errors(name):
    channel, text = HOSTILE[name]
    with pytest.raises(protocol.ProtocolError):
        protocol.decode(channel, text.encode())


def test_the_largest_counters_and_times_devices_send_still_pass():
    largest = protocol.encode("telemetry", seq=time.time_ns(), ts=time.time(), window_s=1, count=2**63 - 1)
    assert protocol.decode("telemetry", largest)["count"] == 2**63 - 1
    status = protocol.encode("status", state="online", seq=1, ts=1.0, model=None, version="1.0+cpu", tags=["a"])
    assert protocol.decode("status", status)["version"] == "1.0+cpu"


def _loop_alive(client) -> bool:
    return client._thread is not None and client._thread.is_alive()


def _ingest_after_hostile_messages(tmp_path, port: int, evil, restart: int) -> None:
    manager = FleetManager(tmp_path / "fleet.sqlite", port=port, client_id=f"manager{restart}")
    assert manager.start()
    try:
        for channel, text in HOSTILE.values():
            evil.publish(protocol.topic("f1", "evil", channel), text.encode(), qos=1).wait_for_publish(5)
        good = protocol.encode("telemetry", seq=restart, ts=time.time(), window_s=1, count=1)
        evil.publish(protocol.topic("f1", "honest", "telemetry"), good, qos=1).wait_for_publish(5)
        wait_for(
            lambda: manager.store.query("SELECT COUNT(*) FROM telemetry")[0][0] == restart + 1,
            timeout=20,
            what="the honest window",
            detail=lambda: manager.counters,
        )
        assert _loop_alive(manager.client) and manager._writer_thread.is_alive()
        assert manager.counters.malformed >= len(HOSTILE) and manager.counters.storage_errors == 0
    finally:
        manager.stop()


def test_the_manager_keeps_ingesting_after_every_hostile_message(tmp_path, broker):  # noqa: F811
    evil = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="evil")
    evil.connect("127.0.0.1", broker.port)
    evil.loop_start()
    deep_status = HOSTILE["nested 5000 deep"][1].encode()
    evil.publish(protocol.topic("f1", "evil", "status"), deep_status, qos=1, retain=True).wait_for_publish(5)
    for restart in range(2):  # the retained one comes again to a restarted manager
        _ingest_after_hostile_messages(tmp_path, broker.port, evil, restart)
    evil.loop_stop()


def test_content_the_database_refuses_is_dropped_not_retried_as_an_outage(tmp_path):
    """Past the protocol's checks (a future field, a bug of ours): SQLite's ProgrammingError on a
    row's content is the message's fault, acknowledged and counted, and the next one is stored."""
    manager = FleetManager(tmp_path / "fleet.sqlite", port=1)
    try:
        status = {"schema": 1, "state": "online", "seq": 1, "ts": 1.0, "model": {"x": 1}}
        window = json.loads(protocol.encode("telemetry", seq=1, ts=1.0, window_s=1, count=1))
        manager.queue.put((("f1", "d1", "status", status), (1, 0)))
        manager.queue.put((("f1", "d2", "telemetry", window), (2, 0)))
        manager.flush()
        assert manager.counters.malformed == 1 and manager.counters.storage_errors == 0
        assert manager.counters.stored == 1 and manager._unstored == []
    finally:
        manager.store.close()


def test_unsigned_junk_on_its_deploy_topic_does_not_cut_the_agent_off(tmp_path, broker, server, command_key):  # noqa: F811
    evil = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="evil")
    evil.connect("127.0.0.1", broker.port)
    evil.loop_start()
    junk = "[" * 3000 + "]" * 3000
    evil.publish(protocol.topic("f1", "dev00", "deploy"), junk.encode(), qos=1, retain=True).wait_for_publish(5)
    evil.loop_stop()
    (agent,) = _agents(tmp_path, broker, server.root_bytes().decode(), 1, command_key[1])
    try:
        wait_for(lambda: agent.malformed >= 1, timeout=20, what="the junk received")
        time.sleep(0.5)
        assert _loop_alive(agent.client)
    finally:
        agent.stop()
