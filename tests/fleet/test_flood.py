"""Issue 18: nothing a single device sends makes the manager slower for the others. A device past
its message budget is barred from the broker (Mosquitto managed by serve, or the embedded one):
disconnected, refused while the bar lasts, let back in after; every message the broker took from
it before the bar is stored, and the other devices are heard throughout."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from edgekit import protocol
from edgekit.broker import Broker
from edgekit.fleet import mosquitto
from edgekit.fleet.access import BrokerAccess, active_passwd, quarantine, quarantined
from edgekit.fleet.manager import FleetManager
from edgekit.fleet.provision import MANAGER_USER, ensure_manager, provision
from edgekit.fleet.ratelimit import LONGEST_BAR_S, DeviceBudget, DeviceLimiter
from tests.fleet.mosquitto import free_port
from tests.fleet.test_fleet_mqtt import wait_for


def test_a_device_is_barred_once_per_overdraw_and_longer_each_time():
    now, bars = [0.0], []
    limiter = DeviceLimiter(DeviceBudget(rate=10, burst=20, first_bar_s=30), lambda f, d, s: bars.append((d, s)),
                            clock=lambda: now[0])  # fmt: skip
    assert all(limiter.admit("f", "dev") for _ in range(20))  # the burst
    assert not limiter.admit("f", "dev") and bars == [("dev", 30)]
    assert limiter.admit("f", "other")  # its own budget
    for _ in range(100):  # still arriving while barred: counted, not reported again
        limiter.admit("f", "dev")
    assert bars == [("dev", 30)]
    now[0] = 31.0
    for _ in range(200):
        limiter.admit("f", "dev")
    assert bars == [("dev", 30), ("dev", 60)]
    now[0] = 31.0 + 60 + LONGEST_BAR_S + 1  # well behaved for an hour since: back to the first bar
    for _ in range(200):
        limiter.admit("f", "dev")
    assert bars[-1] == ("dev", 30)
    now[0] += 1000
    assert limiter.admit("f", "dev")  # the bucket refills at its rate
    with pytest.raises(ValueError, match="rate > 0"):
        DeviceBudget(rate=0)
    for unbounded in ({"rate": float("inf")}, {"burst": float("inf")}, {"rate": float("nan")}):  # no budget at all
        with pytest.raises(ValueError, match="finite rate"):
            DeviceBudget(**unbounded)


def test_a_bar_leaves_the_passwd_file_alone_and_ends(tmp_path):
    ensure_manager(tmp_path)
    provision(tmp_path, "f1", "dev01", "{}", command_key="cd" * 32)
    passwd = (tmp_path / "passwd").read_text()
    until = quarantine(tmp_path, "dev01", 30, now=1000.0)
    assert until == 1030.0 and quarantined(tmp_path, now=1029.0) == {"dev01": 1030.0}
    assert "dev01:" not in active_passwd(tmp_path, now=1029.0) and MANAGER_USER in active_passwd(tmp_path, now=1029.0)
    assert "dev01:" in active_passwd(tmp_path, now=1031.0)
    assert (tmp_path / "passwd").read_text() == passwd  # provisioning's file is never rewritten by a bar
    (tmp_path / "quarantine.json").write_text("not json")
    assert quarantined(tmp_path) == {}  # a damaged bar file bars nobody


@pytest.fixture(params=["embedded", "mosquitto"])
def barring_broker(request, tmp_path):
    folder = tmp_path / "broker"
    creds = {d: provision(folder, "f1", d, "{}", command_key="cd" * 32)["password"] for d in ("flood", "dev01")}
    manager_password = ensure_manager(folder)
    if request.param == "embedded":
        broker = Broker(port=0, access=BrokerAccess.read(folder)).start()
        port = broker.port
    else:
        if mosquitto.binary() is None:
            pytest.skip("mosquitto is not installed (scripts/dev test installs it)")
        port = free_port()
        broker = mosquitto.ManagedMosquitto(folder, port, None).start()
    yield port, folder, creds, manager_password
    broker.stop()


def _device(port: int, user: str, password: str) -> tuple[mqtt.Client, dict]:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=user, reconnect_on_failure=False)
    client.username_pw_set(user, password)
    seen = {"connack": [], "acked": 0, "gone": threading.Event()}
    client.on_connect = lambda c, u, f, rc, p: seen["connack"].append(rc.is_failure)
    client.on_disconnect = lambda c, u, f, rc, p: seen["gone"].set()

    def on_publish(c, u, mid, rc, p):
        seen["acked"] += 1

    client.on_publish = on_publish
    client.connect("127.0.0.1", port)
    client.loop_start()
    wait_for(lambda: seen["connack"], timeout=10, what="CONNACK")
    if seen["connack"][0]:
        client.loop_stop()
    return client, seen


def _window(seq: int) -> bytes:
    return protocol.encode("telemetry", seq=seq, ts=float(seq), window_s=1, count=10)


def test_a_flooding_device_is_barred_and_nothing_it_sent_is_lost(barring_broker, tmp_path):
    port, folder, creds, manager_password = barring_broker
    budget = DeviceBudget(rate=50, burst=200, first_bar_s=3)
    manager = FleetManager(tmp_path / "fleet.sqlite", port=port, username=MANAGER_USER, password=manager_password,
                           client_id=MANAGER_USER, budget=budget, broker_folder=folder)  # fmt: skip
    assert manager.start()
    try:
        flood, flood_seen = _device(port, "flood", creds["flood"])
        dev01, _ = _device(port, "dev01", creds["dev01"])
        assert flood_seen["connack"] == [False]
        topic, seq, deadline = protocol.topic("f1", "flood", "telemetry"), 0, time.monotonic() + 20
        while not flood_seen["gone"].is_set() and time.monotonic() < deadline:
            flood.publish(topic, _window(seq), qos=1)
            seq += 1
            if seq % 200 == 0:
                time.sleep(0.01)  # paho's queue, not the broker, would otherwise be what fills up
        assert flood_seen["gone"].is_set(), f"the flooding device was never disconnected ({seq} sent)"
        flood.loop_stop()
        assert manager.counters.barred == 1 and "flood" in quarantined(folder)
        _, refused = _device(port, "flood", creds["flood"])
        assert refused["connack"] == [True]  # barred: refused at CONNECT

        def stored(device: str) -> int:
            rows = manager.store.query("SELECT COUNT(*) FROM telemetry WHERE device=?", (device,))
            return rows[0][0]

        acked = flood_seen["acked"]
        assert acked > budget.burst  # it did flood past its burst before the bar
        # every acknowledged window is stored; a few more may be, whose PUBACK the disconnect cut off
        wait_for(lambda: stored("flood") >= acked, timeout=30, what="every window the broker took from it stored",
                 detail=lambda: (stored("flood"), acked))  # fmt: skip
        assert stored("flood") <= seq  # and nothing it did not send
        for i in range(5):  # another device is heard while the bar holds
            dev01.publish(protocol.topic("f1", "dev01", "telemetry"), _window(i), qos=1).wait_for_publish(5)
        wait_for(lambda: stored("dev01") == 5, what="the other device's windows")
        dev01.loop_stop()
        wait_for(lambda: _device(port, "flood", creds["flood"])[1]["connack"] == [False], timeout=15,
                 what="the device let back in once its bar ended")  # fmt: skip
    finally:
        manager.stop()


def test_fleet_serve_bars_a_flooding_device_from_its_broker(tmp_path):
    """Through the command line: serve's own broker, the budget from its options."""
    import tomllib

    from tests.fleet.test_cli import edgekit, spawn

    edgekit("keys", "new", "root.key", "root.pub", cwd=tmp_path)
    edgekit("keys", "new", "fleet.key", "fleet.pub", cwd=tmp_path)
    edgekit("fleet", "init", "--root-key", "root.key", "--targets-key", "fleet.key", cwd=tmp_path)
    refused = edgekit("fleet", "serve", "--device-burst", "0", cwd=tmp_path, check=False)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and "--device-burst" in refused.stderr
    mqtt_port, http_port, tls_port = free_port(), free_port(), free_port()
    log = tmp_path / "serve.log"
    server = spawn("fleet", "serve", "--port", str(mqtt_port), "--http-port", str(http_port), "--tls-port",
                   str(tls_port), "--device-rate", "20", "--device-burst", "50", cwd=tmp_path, log=log)  # fmt: skip
    try:
        wait_for(lambda: "fleet manager" in log.read_text(), what="manager up", detail=log.read_text)
        edgekit("fleet", "provision", "flood", "--no-tls", "--port", str(mqtt_port), cwd=tmp_path)
        password = tomllib.loads((tmp_path / "broker" / "devices" / "flood.toml").read_text())["agent"]["password"]
        flood, seen = None, {"connack": [False]}

        def connects() -> bool:  # Mosquitto learns of a device provisioned while it runs within a second
            nonlocal flood, seen
            flood, seen = _device(mqtt_port, "flood", password)
            return seen["connack"] == [False]

        wait_for(connects, what="the provisioned device connects")
        topic = protocol.topic("default", "flood", "telemetry")
        for seq in range(500):
            if seen["gone"].is_set():
                break
            flood.publish(topic, _window(seq), qos=1)
            time.sleep(0.001)
        wait_for(seen["gone"].is_set, timeout=20, what="the flooding device put out", detail=log.read_text)
        flood.loop_stop()
        assert (
            "flood sent more than 20 messages a second (burst 50): barred from the broker for 30 s" in log.read_text()
        )
        assert _device(mqtt_port, "flood", password)[1]["connack"] == [True]
    finally:
        server.terminate()
        server.wait(timeout=30)


def _brokers_in(folder) -> list[int]:
    """Pids of the Mosquitto processes running with ``folder`` as their working directory."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            ours = proc.name.isdigit() and b"mosquitto" in (proc / "cmdline").read_bytes()
            if ours and Path(os.readlink(proc / "cwd")) == Path(folder):
                found.append(int(proc.name))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_stopping_fleet_serve_stops_its_mosquitto(tmp_path, how):
    """systemd stops serve with SIGTERM: its Mosquitto was left running, holding the fleet's ports
    and files. It stops with serve now, and dies with it even on kill -9."""
    from tests.fleet.test_cli import edgekit, spawn

    if mosquitto.binary() is None:
        pytest.skip("mosquitto is not installed (scripts/dev test installs it)")
    edgekit("keys", "new", "root.key", "root.pub", cwd=tmp_path)
    edgekit("keys", "new", "fleet.key", "fleet.pub", cwd=tmp_path)
    edgekit("fleet", "init", "--root-key", "root.key", "--targets-key", "fleet.key", cwd=tmp_path)
    log = tmp_path / "serve.log"
    server = spawn("fleet", "serve", "--port", str(free_port()), "--http-port", str(free_port()), "--tls-port",
                   str(free_port()), cwd=tmp_path, log=log)  # fmt: skip
    try:
        wait_for(lambda: "fleet manager" in log.read_text(), what="manager up", detail=log.read_text)
        assert len(_brokers_in(tmp_path)) == 1
        server.send_signal(how)
        server.wait(timeout=30)
        wait_for(lambda: not _brokers_in(tmp_path), timeout=15, what="serve's Mosquitto gone with it")
    finally:
        server.kill()
        for pid in _brokers_in(tmp_path):
            os.kill(pid, signal.SIGKILL)
