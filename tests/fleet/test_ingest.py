"""Ingest never drops what it acknowledged (issue 18): a message is acknowledged to the broker
only once it is in the database, so a manager killed mid-burst loses nothing (the broker
redelivers to its persistent session) and a full database holds messages back instead of
counting them as malformed."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

import paho.mqtt.client as mqtt
import pytest

from edgekit import protocol
from edgekit.fleet.manager import FleetManager
from edgekit.fleet.store import FleetStore
from tests.fleet.mosquitto import Mosquitto
from tests.fleet.test_fleet_mqtt import broker, wait_for  # noqa: F401  (broker is a fixture)

# the queue limits fleet provision's mosquitto.conf sets: Mosquitto's defaults drop past 1000
ZERO_LOSS = "max_inflight_messages 1000\nmax_queued_messages 1000000\n"


def _publish(port: int, devices: int, per_device: int) -> None:
    clients = []
    for d in range(devices):
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pub{d}")
        c.max_inflight_messages_set(100)
        c.connect("127.0.0.1", port)
        c.loop_start()
        clients.append(c)
    infos = []
    for seq in range(per_device):
        for d, c in enumerate(clients):
            payload = protocol.encode("telemetry", seq=seq, ts=1000.0 + seq, window_s=1, count=1)
            infos.append(c.publish(protocol.topic("f1", f"d{d:02d}", "telemetry"), payload, qos=1))
    for info in infos:
        info.wait_for_publish(120)
    for c in clients:
        c.disconnect()
        c.loop_stop()


def _stored(db) -> int:
    store = FleetStore(db)
    try:
        return store.query("SELECT COUNT(*) FROM telemetry")[0][0]
    finally:
        store.close()


MANAGER = """
import sys, time
from edgekit.fleet.manager import FleetManager
manager = FleetManager(sys.argv[1], port=int(sys.argv[2]), client_id="ingest-test", batch_size=100)
assert manager.start()
print("subscribed", flush=True)
while True:
    time.sleep(1)
"""


def _manager_process(db, port) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", MANAGER, str(db), str(port)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "subscribed"
    return proc


def test_kill_9_of_the_manager_mid_burst_loses_nothing(tmp_path):
    mosquitto = Mosquitto(tmp_path, extra=ZERO_LOSS).start()
    db = tmp_path / "fleet.sqlite"
    manager = _manager_process(db, mosquitto.port)
    try:
        devices, per_device = 10, 1000
        publisher = subprocess.Popen(
            [sys.executable, "-c", f"from tests.fleet.test_ingest import _publish; _publish({mosquitto.port}, "
             f"{devices}, {per_device})"],
            cwd=os.getcwd(),
        )  # fmt: skip
        wait_for(lambda: _stored(db) >= 1000, timeout=60, what="the burst under way")
        # a slow disk: hold the database for two seconds while windows keep arriving, then kill -9.
        # Whatever the manager had received but not stored is lost unless it was never acknowledged.
        lock = sqlite3.connect(db, timeout=10, isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")
        time.sleep(2.0)
        manager.send_signal(signal.SIGKILL)
        manager.wait()
        lock.execute("ROLLBACK")
        lock.close()
        at_kill = _stored(db)
        assert publisher.wait(timeout=120) == 0
        assert at_kill < devices * per_device, "the burst ended before the kill; nothing was tested"
        manager = _manager_process(db, mosquitto.port)
        wait_for(
            lambda: _stored(db) == devices * per_device, timeout=120, what="every window", detail=lambda: _stored(db)
        )
    finally:
        manager.kill()
        manager.wait()
        mosquitto.stop()


def test_a_full_database_holds_messages_back_and_loses_none(tmp_path, broker):  # noqa: F811
    manager = FleetManager(tmp_path / "fleet.sqlite", port=broker.port, batch_size=50)
    assert manager.start()
    try:
        pages = manager.store.query("PRAGMA page_count")[0][0]
        manager.store.query(f"PRAGMA max_page_count = {pages + 1}")  # SQLITE_FULL as on a full disk
        _publish(broker.port, 3, 200)
        wait_for(lambda: manager.counters.storage_errors > 0, what="the database full")
        time.sleep(1.0)
        assert manager.counters.malformed == 0  # the database's trouble is not the messages' fault
        held = 600 - manager.store.query("SELECT COUNT(*) FROM telemetry")[0][0]
        assert held > 0
        manager.store.query("PRAGMA max_page_count = 1073741823")  # room again
        wait_for(
            lambda: manager.store.query("SELECT COUNT(*) FROM telemetry")[0][0] == 600,
            what="every held window stored",
            detail=lambda: manager.counters,
        )
        assert manager.counters.malformed == 0
    finally:
        manager.stop()


@pytest.mark.parametrize("bad", [b"{not json", b'{"schema": 1, "seq": 1}'])
def test_malformed_messages_are_acknowledged_not_redelivered_forever(tmp_path, broker, bad):  # noqa: F811
    manager = FleetManager(tmp_path / "fleet.sqlite", port=broker.port)
    assert manager.start()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        client.publish(protocol.topic("f1", "d1", "telemetry"), bad, qos=1).wait_for_publish(5)
        wait_for(lambda: manager.counters.malformed == 1, what="counted")
        manager.stop()
        manager = FleetManager(tmp_path / "fleet.sqlite", port=broker.port)
        assert manager.start()
        time.sleep(1.0)
        assert manager.counters.received == 0  # acknowledged the first time: not redelivered
    finally:
        client.loop_stop()
        manager.stop()
