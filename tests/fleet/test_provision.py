"""Provisioning on a real Mosquitto with a password file and ACL: a device can publish only
under its own topics."""

from __future__ import annotations

import subprocess
import sys
import time

import paho.mqtt.client as mqtt

from edgekit import protocol
from edgekit.fleet.manager import FleetManager
from edgekit.fleet.provision import MANAGER_USER, provision
from edgekit.keys import create as create_key
from tests.fleet.mosquitto import Mosquitto


def _client(port, user, password):
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=user)
    client.username_pw_set(user, password)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def test_device_cannot_publish_as_another(tmp_path, keys, command_key):
    creds = {d: provision(tmp_path / "broker", "f1", d, "{}", command_key=command_key[1]) for d in ("dev01", "dev02")}
    assert "trusted_root" in (tmp_path / "broker" / "devices" / "dev01.toml").read_text()
    broker = Mosquitto(
        tmp_path,
        extra=f"allow_anonymous false\npassword_file {tmp_path / 'broker' / 'passwd'}\n"
        f"acl_file {tmp_path / 'broker' / 'acl'}\n",
    )
    broker.conf.write_text(broker.conf.read_text().replace("allow_anonymous true\n", ""))
    broker.start()
    manager = FleetManager(
        tmp_path / "fleet.sqlite",
        port=broker.port,
        username=MANAGER_USER,
        password=(tmp_path / "broker" / "manager.secret").read_text(),
    )
    assert manager.start()
    try:
        dev01 = _client(broker.port, "dev01", creds["dev01"]["password"])
        time.sleep(0.5)
        own = protocol.encode("status", state="online", seq=1, ts=1.0)
        dev01.publish(protocol.topic("f1", "dev01", "status"), own, qos=1).wait_for_publish(5)
        forged = protocol.encode("status", state="online", seq=1, ts=1.0)
        dev01.publish(protocol.topic("f1", "dev02", "status"), forged, qos=1).wait_for_publish(5)
        deadline = time.time() + 10
        while time.time() < deadline and not manager.devices("f1"):
            time.sleep(0.1)
        time.sleep(1.0)
        assert manager.devices("f1") == ["dev01"]  # the forged dev02 status never arrived
        bad = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="intruder")
        bad.username_pw_set("dev01", "wrong-password")
        results = []
        bad.on_connect = lambda c, u, f, rc, p: results.append(rc.is_failure)
        bad.connect("127.0.0.1", broker.port)
        bad.loop_start()
        deadline = time.time() + 5
        while not results and time.time() < deadline:
            time.sleep(0.05)
        bad.loop_stop()
        assert results == [True]
        dev01.loop_stop()
        # a manager with the wrong password hears nothing: start says so, and serve refuses to run
        impostor = FleetManager(tmp_path / "other.sqlite", port=broker.port, username=MANAGER_USER, password="wrong")
        try:
            assert impostor.start(wait_s=10) is False
            assert impostor.refused and not impostor.subscribed.is_set()
        finally:
            impostor.stop()
        create_key(tmp_path / "root.key", tmp_path / "root.pub")
        fleet = [sys.executable, "-m", "edgekit", "fleet", "--db", str(tmp_path / "serve.sqlite")]
        init = ["init", "--root-key", str(tmp_path / "root.key"), "--targets-key", str(keys[0])]
        subprocess.run(fleet + init, check=True, capture_output=True, timeout=60)
        serve = subprocess.run(
            [*fleet, "serve"]
            + ["--host", "127.0.0.1", "--port", str(broker.port), "--username", MANAGER_USER, "--password", "wrong"]
            + ["--http-port", "0", "--packages", str(tmp_path / "packages")],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert serve.returncode != 0 and "refused the fleet manager" in serve.stderr, serve.stderr
        assert len(serve.stderr.strip().splitlines()) == 1 and "Traceback" not in serve.stderr
    finally:
        manager.stop()
        broker.stop()
