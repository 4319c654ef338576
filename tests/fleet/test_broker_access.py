"""The default broker lets nobody in unasked (issue 17): on the embedded broker with `fleet
provision`'s files and on Mosquitto with the same files, anonymous and wrong-password clients are
refused, a device cannot publish under another device's topics nor read another's commands, and
a device's credentials cannot take over the manager's session. The embedded broker also times out
dead clients, cuts off oversized packets and keeps retained desired states across a restart."""

from __future__ import annotations

import socket
import threading
import time

import paho.mqtt.client as mqtt
import pytest

from edgekit import protocol
from edgekit.broker import Broker
from edgekit.fleet.access import BrokerAccess, check_password, hash_password
from edgekit.fleet.manager import FleetManager
from edgekit.fleet.provision import MANAGER_USER, ensure_manager, provision
from tests.fleet.mosquitto import Mosquitto
from tests.fleet.test_fleet_mqtt import wait_for


@pytest.fixture(params=["embedded", "mosquitto"])
def fleet_broker(request, tmp_path, keys, command_key):
    folder = tmp_path / "broker"
    creds = {d: provision(folder, "f1", d, "{}", command_key=command_key[1]) for d in ("dev01", "dev02")}
    manager_password = ensure_manager(folder)
    if request.param == "embedded":
        broker = Broker(port=0, access=BrokerAccess.read(folder), retained_path=folder / "retained.json").start()
    else:
        broker = Mosquitto(
            tmp_path,
            extra=f"password_file {folder / 'passwd'}\nacl_file {folder / 'acl'}\nuse_username_as_clientid true\n",
        )
        broker.conf.write_text(broker.conf.read_text().replace("allow_anonymous true", "allow_anonymous false"))
        broker.start()
    yield broker, creds, manager_password
    broker.stop()


def _connect(port, user=None, password=None, client_id="") -> tuple[mqtt.Client, list]:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    if user is not None:
        client.username_pw_set(user, password)
    answers: list = []
    client.on_connect = lambda c, u, f, rc, p: answers.append(rc.is_failure)
    client.connect("127.0.0.1", port)
    client.loop_start()
    wait_for(lambda: answers, timeout=10, what="CONNACK")
    return client, answers


def test_password_hashes_are_mosquittos():
    stored = hash_password("s3cret")
    assert stored.startswith("$7$101$") and check_password(stored, "s3cret") and not check_password(stored, "x")
    assert not check_password("plain", "plain")


def test_anonymous_and_wrong_passwords_are_refused(fleet_broker):
    broker, creds, _ = fleet_broker
    for user, password in ((None, None), ("dev01", "wrong"), ("nobody", "x"), ("dev01", creds["dev02"]["password"])):
        client, answers = _connect(broker.port, user, password)
        client.loop_stop()
        assert answers == [True], (user, password)
    client, answers = _connect(broker.port, "dev01", creds["dev01"]["password"])
    client.loop_stop()
    client.disconnect()
    assert answers == [False]


def test_a_device_cannot_speak_for_another_nor_read_its_commands(fleet_broker, tmp_path):
    broker, creds, manager_password = fleet_broker
    manager = FleetManager(
        tmp_path / "fleet.sqlite", port=broker.port, username=MANAGER_USER, password=manager_password
    )
    assert manager.start()
    dev01, _ = _connect(broker.port, "dev01", creds["dev01"]["password"], client_id="dev01")
    heard = []
    dev01.on_message = lambda c, u, m: heard.append(m.topic)
    dev01.subscribe(f"{protocol.PREFIX}/#", qos=1)
    try:
        own = protocol.encode("status", state="online", seq=1, ts=1.0)
        dev01.publish(protocol.topic("f1", "dev01", "status"), own, qos=1).wait_for_publish(5)
        dev01.publish(protocol.topic("f1", "dev02", "status"), own, qos=1).wait_for_publish(5)
        wait_for(lambda: manager.devices("f1") == ["dev01"], what="dev01's own status")
        manager.client.publish(protocol.topic("f1", "dev02", "cmd"), b"{}", qos=1).wait_for_publish(5)
        manager.client.publish(protocol.topic("f1", "dev01", "cmd"), b"{}", qos=1).wait_for_publish(5)
        wait_for(lambda: protocol.topic("f1", "dev01", "cmd") in heard, what="its own command")
        manager.flush(timeout=0.5)
        assert manager.devices("f1") == ["dev01"]  # the status forged for dev02 never arrived
        assert protocol.topic("f1", "dev02", "cmd") not in heard  # nor did dev02's command reach dev01
    finally:
        dev01.loop_stop()
        manager.stop()


def test_device_credentials_cannot_take_over_the_managers_session(fleet_broker, tmp_path):
    broker, creds, manager_password = fleet_broker
    manager = FleetManager(
        tmp_path / "fleet.sqlite", port=broker.port, username=MANAGER_USER, password=manager_password
    )
    assert manager.start()
    try:
        intruder, answers = _connect(broker.port, "dev01", creds["dev01"]["password"], client_id="edgekit-fleet")
        time.sleep(1.0)  # a takeover would disconnect the manager now
        assert manager.client.is_connected()
        intruder.loop_stop()
        intruder.disconnect()
    finally:
        manager.stop()


def test_embedded_broker_times_out_dead_clients_and_big_packets(tmp_path, keys, command_key):
    folder = tmp_path / "broker"
    creds = provision(folder, "f1", "dev01", "{}", command_key=command_key[1])
    broker = Broker(port=0, access=BrokerAccess.read(folder), max_packet=4096).start()
    try:
        # CONNECT with keepalive 1 s, then silence: the broker hangs up within 1.5 s
        sock = socket.create_connection(("127.0.0.1", broker.port))
        user, password = b"dev01", creds["password"].encode()
        body = (
            b"\x00\x04MQTT\x04\xc2\x00\x01"
            + b"\x00\x05dev01"
            + len(user).to_bytes(2, "big") + user
            + len(password).to_bytes(2, "big") + password
        )  # fmt: skip
        sock.sendall(bytes([0x10, len(body)]) + body)
        assert sock.recv(4) == b"\x20\x02\x00\x00"  # accepted
        sock.settimeout(5)
        started = time.time()
        assert sock.recv(1) == b""  # closed by the broker
        assert time.time() - started < 3
        sock.close()
        client, _ = _connect(broker.port, "dev01", creds["password"], client_id="dev01")
        gone = threading.Event()
        client.on_disconnect = lambda *a: gone.set()
        client.publish(protocol.topic("f1", "dev01", "telemetry"), b"x" * 8000, qos=0)
        assert gone.wait(5), "an oversized packet did not end the connection"
        client.loop_stop()
    finally:
        broker.stop()


def test_embedded_broker_keeps_retained_desired_states_across_a_restart(tmp_path):
    folder = tmp_path / "broker"
    manager_password = ensure_manager(folder)
    broker = Broker(port=0, access=BrokerAccess.read(folder), retained_path=folder / "retained.json").start()
    port = broker.port
    client, _ = _connect(port, MANAGER_USER, manager_password, client_id=MANAGER_USER)
    topic = protocol.topic("f1", "dev01", "deploy")
    client.publish(topic, b'{"desired": 1}', qos=1, retain=True).wait_for_publish(5)
    client.loop_stop()
    client.disconnect()
    broker.stop()
    again = Broker(port=0, access=BrokerAccess.read(folder), retained_path=folder / "retained.json").start()
    try:
        assert again.retained[topic][0] == b'{"desired": 1}'
    finally:
        again.stop()


def test_embedded_broker_is_loopback_only():
    with pytest.raises(ValueError, match="loopback only"):
        Broker("0.0.0.0", 0)
