"""TLS between agents, manager and a real Mosquitto: telemetry flows with the fleet's CA, and a
device that does not trust the broker's certificate never connects."""

from __future__ import annotations

import subprocess
import time

from edgekit.agent.runner import Agent, AgentConfig
from edgekit.fleet.manager import FleetManager
from tests.fleet.mosquitto import Mosquitto
from tests.fleet.test_fleet_mqtt import wait_for


def _ca(folder, name: str) -> tuple:
    key, cert = folder / f"{name}-ca.key", folder / f"{name}-ca.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name} CA",
         "-keyout", key, "-out", cert],
        check=True, capture_output=True,
    )  # fmt: skip
    return key, cert


def _server_cert(folder, ca_key, ca_cert) -> tuple:
    key, csr, cert, ext = folder / "server.key", folder / "server.csr", folder / "server.pem", folder / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    subprocess.run(
        ["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", key, "-out", csr],
        check=True, capture_output=True,
    )  # fmt: skip
    subprocess.run(
        ["openssl", "x509", "-req", "-in", csr, "-CA", ca_cert, "-CAkey", ca_key, "-CAcreateserial", "-days", "2",
         "-extfile", ext, "-out", cert],
        check=True, capture_output=True,
    )  # fmt: skip
    return key, cert


def _agent(tmp_path, name, port, trusted_root, ca) -> Agent:
    config = AgentConfig(
        fleet="f1", device=name, state_dir=str(tmp_path / name), trusted_root=trusted_root, port=port,
        telemetry_interval_s=3600, tls_ca=str(ca), allow_unsigned_commands=True,  # telemetry only
    )  # fmt: skip
    agent = Agent(config)
    agent.start()
    return agent


def test_fleet_over_tls(tmp_path, keys, server):
    ca_key, ca_cert = _ca(tmp_path, "fleet")
    key, cert = _server_cert(tmp_path, ca_key, ca_cert)
    _, other_ca = _ca(tmp_path, "other")
    broker = Mosquitto(tmp_path, extra=f"cafile {ca_cert}\ncertfile {cert}\nkeyfile {key}\n").start()
    manager = FleetManager(tmp_path / "fleet.sqlite", port=broker.port, tls={"ca": str(ca_cert)})
    agents = []
    try:
        assert manager.start()
        agents.append(_agent(tmp_path, "trusting", broker.port, server.root_bytes().decode(), ca_cert))
        agents.append(_agent(tmp_path, "distrusting", broker.port, server.root_bytes().decode(), other_ca))
        wait_for(lambda: manager.devices("f1") == ["trusting"], what="the trusting device registered over TLS")
        agents[0].telemetry(window={"count": 3})
        wait_for(lambda: manager.store.query("SELECT COUNT(*) FROM telemetry")[0][0] == 1, what="telemetry over TLS")
        time.sleep(1.0)
        assert not agents[1].client.is_connected() and manager.devices("f1") == ["trusting"]
    finally:
        for agent in agents:
            agent.stop()
        manager.stop()
        broker.stop()
