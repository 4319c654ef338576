"""Issue 17's attacks on the device, as an attacker on the broker would try them: every field of
a deploy message is checked before it reaches a path, a URL or a file; signed old packages and
replayed deploy messages cannot downgrade a device; a rollback must name what serves."""

from __future__ import annotations

import os
import stat

import paho.mqtt.client as mqtt
import pytest

from edgekit import package, protocol
from edgekit.agent.ota import Deployment, Slots
from edgekit.protocol import ProtocolError
from tests.fleet.test_fleet_mqtt import _agents, _deploy_message, broker, wait_for  # noqa: F401
from tests.fleet.test_ota import Log, _deployment

HOSTS = frozenset({"127.0.0.1"})


def _forged(canary, **override) -> dict:
    message = {
        "deployment": "evil",
        "package": "x.tar",
        "sha256": "a" * 64,
        "size": 100,
        "url": f"file://{canary}",
        "name": "fc",
        "version": "9",
    }
    return {**message, **override}


@pytest.mark.parametrize(
    "override",
    [
        {},  # file:// URL
        {"url": "http://127.0.0.1:1/x", "sha256": "../../../../tmp/owned"},
        {"url": "http://127.0.0.1:1/x", "sha256": "A" * 64},
        {"url": "http://attacker.example/x"},
        {"url": "http://user:pw@127.0.0.1/x"},
        {"url": "ftp://127.0.0.1/x"},
        {"url": "http://127.0.0.1:1/x", "deployment": "../x"},
        {"url": "http://127.0.0.1:1/x", "size": 0},
        {"url": "http://127.0.0.1:1/x", "size": True},
        {"url": "http://127.0.0.1:1/x", "size": package.MAX_PACKAGE_BYTES + 1},
        {"url": "http://127.0.0.1:1/x", "name": "a/b"},
        {"url": "http://127.0.0.1:1/x", "version": "1\n2"},
    ],
)
def test_forged_deploy_fields_are_refused_before_use(tmp_path, override):
    canary = tmp_path / "canary"
    canary.write_text("secret")
    with pytest.raises(ProtocolError):
        Deployment.from_message(_forged(canary, **override), HOSTS)


def _publisher(broker):  # noqa: F811
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    return client


def _send(client, channel: str, payload: dict, signer=None, device: str = "dev00", retain: bool = False) -> None:
    if signer is not None:
        payload = signer.sign(payload, "f1", device, 3600)
    topic = protocol.topic("f1", device, channel)
    client.publish(topic, protocol.encode(channel, **payload), qos=1, retain=retain).wait_for_publish(5)


def test_forged_deploy_over_mqtt_touches_nothing(tmp_path, broker, keys, models, server, command_key):  # noqa: F811
    """The attack of issue 17 end to end: forged deploys on the broker with a file:// URL, a
    path-like digest, a junk signature: unsigned, signed by another key, and signed by the real
    command key (a compromised manager). The planted file outside the state folder is untouched,
    nothing but the good package is downloaded, the device keeps serving."""
    from edgekit.signing import CommandSigner

    store, base = server
    signer, intruder = CommandSigner(command_key[0]), CommandSigner("11" * 32)
    agent = _agents(tmp_path, broker, server.root_bytes().decode(), 1, command_key[1])[0]
    publisher = _publisher(broker)
    try:
        good = package.build(models[0], tmp_path / "good.tar", name="fc", version="1", signing_key=keys[0])
        server.publish(good)
        _send(publisher, "deploy", _deploy_message(good, base, "r1"), signer)
        wait_for(lambda: (agent.slots.current() or {}).get("version") == "1", what="the good package serves")

        extra = package.build(models[1], tmp_path / "fc-9.tar", name="fc", version="9", signing_key=keys[0])
        store.add(extra.path, extra.sha256)
        canary = tmp_path / "planted"
        canary.write_text("do not touch")
        before = (canary.stat().st_mtime_ns, stat.S_IMODE(canary.stat().st_mode))
        forged = (
            _forged(canary),
            _forged(canary, url=f"{base}x.tar", sha256="../../../../" + str(tmp_path / "owned")),
            # a package the manager stores but the package key never published (a compromised manager)
            _forged(canary, url=f"{base}{extra.sha256}.tar", sha256=extra.sha256, size=extra.size, package="fc-9.tar"),
        )
        for message in forged:
            for by in (None, intruder, signer):
                _send(publisher, "deploy", message, by)
        # unsigned or foreign: refused at the command signature; the manager-signed file URL and path
        # digest: at field validation; the manager-signed relabelled package: at the TUF targets
        # metadata, before any download (a compromised manager cannot say what a package is)
        wait_for(lambda: agent.rejected == 8, what="eight forged deploys refused", detail=lambda: agent.rejected)
        wait_for(lambda: "evil" in agent.slots.state().get("given_up", []), what="the manager-signed forgeries fail")
        assert canary.read_text() == "do not touch"
        assert (canary.stat().st_mtime_ns, stat.S_IMODE(canary.stat().st_mode)) == before
        assert not (tmp_path / "owned").exists() and not (tmp_path / "owned.tar").exists()
        downloads = tmp_path / "dev00" / "models" / "downloads"
        assert list(downloads.iterdir()) == []  # the good package's archive was collected after its switch
        assert agent.slots.current()["version"] == "1"
    finally:
        publisher.loop_stop()
        agent.stop()


def test_signed_commands_refuse_replay_expiry_and_other_devices(tmp_path, command_key):
    """A captured signed deploy replayed after a newer one, an expired one, one for another
    device, one with a field changed after signing, a command replayed: all refused."""
    import time

    from edgekit.signing import CommandSigner, CommandVerifier

    signer = CommandSigner(command_key[0])
    verifier = CommandVerifier(command_key[1], "f1", "dev00", tmp_path / "commands.json")
    old = signer.sign({"deployment": "r1"}, "f1", "dev00", 3600)
    new = signer.sign({"deployment": "r2"}, "f1", "dev00", 3600)
    verifier.check("deploy", old)
    verifier.check("deploy", new)
    verifier.check("deploy", new)  # the retained desired state again: the same state, not an attack
    restarted = CommandVerifier(command_key[1], "f1", "dev00", tmp_path / "commands.json")  # persisted
    bad = [
        ("deploy", old, "replayed"),
        ("deploy", signer.sign({"deployment": "r3"}, "f1", "dev00", -1), "expired"),
        ("deploy", signer.sign({"deployment": "r3"}, "f1", "dev01", 3600), "not this device"),
        ("deploy", signer.sign({"deployment": "r3"}, "f2", "dev00", 3600), "not this device"),
        ("deploy", {**signer.sign({"deployment": "r3"}, "f1", "dev00", 3600), "deployment": "r4"}, "does not verify"),
        ("deploy", {"deployment": "r3", "fleet": "f1", "device": "dev00", "seq": time.time_ns()}, "not signed"),
    ]
    for channel, payload, why in bad:
        with pytest.raises(ProtocolError, match=why):
            restarted.check(channel, payload)
    command = signer.sign({"id": "c1", "command": "rollback", "deployment": "r2"}, "f1", "dev00", 3600)
    restarted.check("cmd", command)
    with pytest.raises(ProtocolError, match="replayed"):
        restarted.check("cmd", command)
    assert stat.S_IMODE(os.stat(tmp_path / "commands.json").st_mode) == 0o600


def test_agent_without_a_command_key_does_not_start(tmp_path, keys):
    from edgekit.agent.runner import Agent, AgentConfig
    from edgekit.errors import FleetError

    config = AgentConfig(fleet="f1", device="dev00", state_dir=str(tmp_path / "s"), trusted_root="{}")
    with pytest.raises(FleetError, match="command_key"):
        Agent(config)
    assert not (tmp_path / "s").exists()


def test_signed_older_package_is_not_installed(tmp_path, server, keys, models):
    """Downgrade: a validly signed v1 (fetchable from the package listing) pushed to a device on v2."""
    slots, log = Slots(tmp_path / "device", server.trust(tmp_path / "device")), Log()
    old = _deployment(tmp_path, server, keys, models[0], version="1", dep_id="d1")
    new = _deployment(tmp_path, server, keys, models[1], version="2", dep_id="d2")
    assert slots.deploy(new, log)
    slots.commit("d2", log)
    assert not slots.deploy(old, log)
    assert log.steps[-1] == "failed" and "downgrade" in log.details[-1][1]["reason"]
    assert slots.current()["version"] == "2"


def test_replayed_deploy_after_a_rollback_does_not_come_back(tmp_path, server, keys, models):
    """Replay: the old deploy message of v1 replayed once the device has moved on to v2 and v1's
    slot was rolled away; and the same version published again under a new deployment id."""
    slots, log = Slots(tmp_path / "device", server.trust(tmp_path / "device")), Log()
    v1 = _deployment(tmp_path, server, keys, models[0], version="1", dep_id="d1")
    v2 = _deployment(tmp_path, server, keys, models[1], version="2", dep_id="d2")
    assert slots.deploy(v1, log) and slots.deploy(v2, log)
    slots.commit("d2", log)
    assert not slots.deploy(v1, log)  # replayed as it was
    v1.id = "d9"
    assert not slots.deploy(v1, log)  # replayed under a fresh deployment id
    assert slots.current()["version"] == "2"


def test_version_order_is_numeric():
    from edgekit.agent.ota import version_key

    assert version_key("1.10") > version_key("1.9") > version_key("1.2.3") > version_key("1")
    assert version_key("2") > version_key("1.99")


def test_rollback_without_a_deployment_is_refused(tmp_path, server, keys, models):
    slots, log = Slots(tmp_path / "device", server.trust(tmp_path / "device")), Log()
    assert slots.deploy(_deployment(tmp_path, server, keys, models[0], version="1", dep_id="d1"), log)
    assert slots.deploy(_deployment(tmp_path, server, keys, models[1], version="2", dep_id="d2"), log)
    assert not slots.rollback("", log, "attacker")
    assert not slots.rollback("d1", log, "not what serves")
    assert slots.current()["version"] == "2"
    assert slots.rollback("d2", log, "the fleet asked") and slots.current()["version"] == "1"


def test_rollback_command_without_deployment_over_mqtt(tmp_path, broker, keys, models, server, command_key):  # noqa: F811
    """An unsigned rollback is refused at the signature; a signed one naming no deployment at
    its fields; the device keeps v2."""
    from edgekit.signing import CommandSigner

    store, base = server
    signer = CommandSigner(command_key[0])
    agent = _agents(tmp_path, broker, server.root_bytes().decode(), 1, command_key[1])[0]
    publisher = _publisher(broker)
    try:
        for version, model in (("1", models[0]), ("2", models[1])):
            info = package.build(model, tmp_path / f"v{version}.tar", name="fc", version=version, signing_key=keys[0])
            server.publish(info)
            _send(publisher, "deploy", _deploy_message(info, base, f"r{version}"), signer, retain=True)
            wait_for(lambda v=version: (agent.slots.current() or {}).get("version") == v, what=f"v{version} serves")
        _send(publisher, "cmd", {"id": "c1", "command": "rollback", "deployment": "r2"})  # unsigned
        _send(publisher, "cmd", {"id": "c2", "command": "rollback"}, signer)  # names nothing
        wait_for(lambda: agent.rejected == 2, what="both rollbacks refused", detail=lambda: agent.rejected)
        assert agent.slots.current()["version"] == "2"
        _send(publisher, "cmd", {"id": "c3", "command": "rollback", "deployment": "r2"}, signer)
        wait_for(lambda: agent.slots.current()["version"] == "1", what="the signed rollback obeyed")
    finally:
        publisher.loop_stop()
        agent.stop()


def test_provisioning_secrets_are_owner_only(tmp_path):
    from edgekit.errors import FleetError
    from edgekit.fleet.provision import MANAGER_USER, provision

    old = os.umask(0o022)
    try:
        creds = provision(tmp_path / "broker", "f1", "cam1", "{}", command_key="cd" * 32)
    finally:
        os.umask(old)
    for secret in (tmp_path / "broker" / "manager.secret", tmp_path / "broker" / "passwd", creds["config"]):
        assert stat.S_IMODE(os.stat(secret).st_mode) == 0o600, secret
    passwd = (tmp_path / "broker" / "passwd").read_text()
    for bad in ("cam/1#", "../x", "", MANAGER_USER):
        with pytest.raises(FleetError):
            provision(tmp_path / "broker", "f1", bad, "{}", command_key="cd" * 32)
    assert (tmp_path / "broker" / "passwd").read_text() == passwd  # nothing appended for a refused name


def _registered_version(manager, device: str = "dev00"):
    rows = manager.store.query("SELECT version FROM devices WHERE fleet='f1' AND device=?", (device,))
    return rows[0][0] if rows else None


def test_registry_follows_the_agents_own_rollback(tmp_path, broker, keys, models, server, command_key):  # noqa: F811
    """Issue 18: after the agent rolls itself back on its error rate, the fleet's registry says
    the old version at once (it kept the new one until the agent reconnected)."""
    from edgekit.fleet.manager import FleetManager

    store, base = server
    manager = FleetManager(tmp_path / "fleet.sqlite", port=broker.port, command_key=command_key[0])
    assert manager.start()
    agent = _agents(tmp_path, broker, server.root_bytes().decode(), 1, command_key[1])[0]
    agent.config.watch_invocations = 3
    try:
        for version, model in (("1", models[0]), ("2", models[1])):
            info = package.build(model, tmp_path / f"v{version}.tar", name="fc", version=version, signing_key=keys[0])
            server.publish(info)
            manager.deploy_to("f1", "dev00", _deploy_message(info, base, f"r{version}"))
            wait_for(lambda v=version: (agent.slots.current() or {}).get("version") == v, what=f"v{version} serves")

        def failing_call_rolled_back() -> bool:  # v2 fails every call until the watch rolls it back
            agent.record(False)
            return agent.slots.current()["version"] == "1"

        wait_for(failing_call_rolled_back, what="the agent's own rollback")
        wait_for(
            lambda: _registered_version(manager) == "1",
            what="registry back on v1",
            detail=lambda: _registered_version(manager),
        )
    finally:
        agent.stop()
        manager.stop()


def test_restart_after_an_uncommitted_switch_rolls_back(tmp_path, server, keys, models):
    """Issue 18: a crash right after the switch, before the new model served a single watched
    call, was recorded as committed on restart. It is rolled back (as Mender does)."""
    slots, log = Slots(tmp_path / "device", server.trust(tmp_path / "device")), Log()
    assert slots.deploy(_deployment(tmp_path, server, keys, models[0], version="1", dep_id="d1"), log)
    slots.commit("d1", log)
    assert slots.deploy(_deployment(tmp_path, server, keys, models[1], version="2", dep_id="d2"), log)
    restarted = Slots(tmp_path / "device", server.trust(tmp_path / "device"))  # the agent died here, before any commit
    assert restarted.resume(log) is None
    assert restarted.current()["version"] == "1" and log.steps[-1] == "rolled_back"
    last_switch = len(log.steps) - 1 - log.steps[::-1].index("switched")
    assert log.steps[last_switch:] == ["switched", "rolled_back"]
