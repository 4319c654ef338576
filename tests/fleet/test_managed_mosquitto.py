"""Issue 17: the broker ``fleet serve`` runs by default is Mosquitto as a managed child, with the
config it generates from provision's files: every client authenticated on both listeners, the ACL
held, the client id bound to the user name, devices over TLS with the generated CA (and no other),
a device provisioned while it runs let in, retained desired states kept across a restart."""

from __future__ import annotations

import os
import ssl
import stat

import paho.mqtt.client as mqtt
import pytest

from edgekit import protocol
from edgekit.fleet import mosquitto
from edgekit.fleet.provision import MANAGER_USER, ensure_manager, provision
from tests.fleet.mosquitto import free_port
from tests.fleet.test_fleet_mqtt import wait_for


def _client(port, user=None, password=None, ca=None, client_id=""):
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    if user is not None:
        client.username_pw_set(user, password)
    if ca is not None:
        client.tls_set(ca_certs=str(ca))
    answers: list = []
    client.on_connect = lambda c, u, f, rc, p: answers.append(rc.is_failure)
    client.on_disconnect = lambda c, u, f, rc, p: answers.append(True) if not answers else None
    try:
        client.connect("127.0.0.1", port)
    except (ssl.SSLError, OSError):
        return client, [True]
    client.loop_start()
    wait_for(lambda: answers, timeout=10, what="CONNACK")
    if answers[0]:  # refused: stop paho's reconnecting, or it comes back once the broker reloads
        client.loop_stop()
        client.disconnect()
    return client, answers


@pytest.fixture
def managed(tmp_path):
    if mosquitto.binary() is None:
        pytest.skip("mosquitto is not installed (scripts/dev test installs it)")
    folder = tmp_path / "broker"
    manager_password = ensure_manager(folder)
    broker = mosquitto.ManagedMosquitto(folder, free_port(), free_port()).start()
    yield broker, folder, manager_password
    broker.stop()


def test_every_client_authenticates_and_devices_use_tls(managed, tmp_path):
    broker, folder, manager_password = managed
    creds = provision(folder, "f1", "dev01", "{}", command_key="cd" * 32, tls_ca=(folder / "ca.pem").read_text())
    ca = folder / mosquitto.CA_FILE
    wait_for(lambda: _client(broker.tls_port, "dev01", creds["password"], ca, "dev01")[1] == [False],
             what="the device provisioned while Mosquitto runs is let in over TLS")  # fmt: skip
    for port, tls in ((broker.port, None), (broker.tls_port, ca)):
        assert _client(port, ca=tls)[1] == [True]  # anonymous
        assert _client(port, "dev01", "wrong", tls, "dev01")[1] == [True]
        assert _client(port, MANAGER_USER, "wrong", tls, MANAGER_USER)[1] == [True]
    # a CA other than the broker's: the device refuses the broker (no password is sent)
    other = tmp_path / "other"
    other.mkdir()
    mosquitto.ensure_tls(other, ["localhost"])
    assert _client(broker.tls_port, "dev01", creds["password"], other / mosquitto.CA_FILE, "dev01")[1] == [True]
    assert "tls_ca_pem" in (folder / "devices" / "dev01.toml").read_text()
    for secret in ("ca.key", "server.key", "passwd", "manager.secret", "devices/dev01.toml"):
        assert stat.S_IMODE(os.stat(folder / secret).st_mode) == 0o600, secret


def test_acl_client_id_and_retained_state_across_a_restart(managed):
    broker, folder, manager_password = managed
    creds = {d: provision(folder, "f1", d, "{}", command_key="cd" * 32) for d in ("dev01", "dev02")}
    ca = folder / mosquitto.CA_FILE
    manager, answers = _client(broker.port, MANAGER_USER, manager_password, client_id=MANAGER_USER)
    assert answers == [False]
    heard: list = []
    manager.on_message = lambda c, u, m: heard.append(m.topic)
    manager.subscribe(f"{protocol.PREFIX}/#", qos=1)
    # the device's credentials under the manager's client id: Mosquitto uses the user name instead
    attempts: list = []

    def device_connects() -> bool:
        attempts.append(_client(broker.tls_port, "dev01", creds["dev01"]["password"], ca, MANAGER_USER))
        return attempts[-1][1] == [False]

    wait_for(device_connects, what="the provisioned device connects (Mosquitto reloads passwd on SIGHUP)")
    dev01 = attempts[-1][0]
    dev01.publish(protocol.topic("f1", "dev02", "status"), b"{}", qos=1).wait_for_publish(5)
    dev01.publish(protocol.topic("f1", "dev01", "status"), b"{}", qos=1).wait_for_publish(5)
    wait_for(lambda: protocol.topic("f1", "dev01", "status") in heard, what="the device's own status")
    assert protocol.topic("f1", "dev02", "status") not in heard  # the ACL dropped the forged one
    assert manager.is_connected()  # not kicked off by the device's connection
    desired = protocol.topic("f1", "dev01", "deploy")
    manager.publish(desired, b'{"desired": 1}', qos=1, retain=True).wait_for_publish(5)
    for c in (manager, dev01):
        c.loop_stop()
        c.disconnect()
    broker.stop()
    broker.start()
    got: list = []
    dev01, _ = _client(broker.tls_port, "dev01", creds["dev01"]["password"], ca, "dev01")
    dev01.on_message = lambda c, u, m: got.append(m.payload)
    dev01.subscribe(desired, qos=1)
    wait_for(lambda: got == [b'{"desired": 1}'], what="the retained desired state after a restart")
    dev01.loop_stop()
