"""An aborted rollout's deploy, captured off the broker and replayed, installs nothing. The abort
used to clear the retained desired state with an empty, unsigned message, which left the signed
deploy valid for its 30 days: a device that had not seen it accepted a replay. The abort now
withdraws it with a signed cancel whose newer sequence the device records, so the replay is
refused as older. (A device that never connected between the abort and the replay cannot tell a
replay from a late delivery: docs/protocol.md's threat model says so.)"""

from __future__ import annotations

import time

import paho.mqtt.client as mqtt

from edgekit import package, protocol
from edgekit.fleet.manager import FleetManager
from tests.fleet.test_fleet_mqtt import _agents, _deploy_message, broker, wait_for  # noqa: F401  (broker is a fixture)


def test_a_replayed_deploy_of_an_aborted_rollout_is_refused(tmp_path, broker, server, keys, models, command_key):  # noqa: F811
    store, base = server
    info = package.build(models[0], tmp_path / "bad.tar", name="fc", version="1", signing_key=keys[0])
    server.publish(info)
    manager = FleetManager(tmp_path / "fleet.sqlite", port=broker.port, command_key=command_key[0])
    assert manager.start()
    manager.store.write([("f1", "dev00", "status", {"state": "offline", "seq": 1, "ts": time.time()})])
    captured = []
    spy = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="spy")
    spy.on_message = lambda client, userdata, message: captured.append(message.payload)
    spy.connect("127.0.0.1", broker.port)
    spy.loop_start()
    spy.subscribe(protocol.topic("f1", "dev00", "deploy"), qos=1)
    agent = None
    try:
        rollout = manager.start_rollout("f1", _deploy_message(info, base, "bad-1"), ["dev00"], canary=0.0, waves=(1.0,))
        wait_for(lambda: len(captured) >= 1, timeout=10, what="the signed deploy seen on the broker")
        manager.abort(rollout)  # before the device came online
        wait_for(lambda: len(captured) >= 2, timeout=10, what="the withdrawal seen on the broker")
        withdrawal = protocol.decode("deploy", captured[-1])
        assert withdrawal["cancel"] is True and withdrawal["seq"] > protocol.decode("deploy", captured[0])["seq"]
        # the device comes online and hears the retained withdrawal: its deploy sequence moves past the deploy's
        (agent,) = _agents(tmp_path, broker, server.root_bytes().decode(), 1, command_key[1])
        wait_for(lambda: agent.verifier.last.get("deploy") == withdrawal["seq"], timeout=20, what="the withdrawal")
        spy.publish(protocol.topic("f1", "dev00", "deploy"), captured[0], qos=1, retain=True).wait_for_publish(5)
        wait_for(lambda: agent.rejected >= 1, timeout=20, what="the replay refused")
        time.sleep(1.0)
        assert agent.slots.current() is None and manager.rollout_status(rollout)["steps"] == {}
    finally:
        if agent is not None:
            agent.stop()
        spy.loop_stop()
        manager.stop()


def test_a_withdrawal_needs_only_its_deployment_and_a_true_cancel():
    assert protocol.decode("deploy", b'{"schema":1,"deployment":"r1","cancel":true}')["cancel"] is True
    for text in (b'{"schema":1,"deployment":"r1","cancel":"yes"}', b'{"schema":1,"deployment":"r1","cancel":false}'):
        try:
            protocol.decode("deploy", text)
        except protocol.ProtocolError:
            continue
        raise AssertionError(f"{text!r} passed as a deploy")
