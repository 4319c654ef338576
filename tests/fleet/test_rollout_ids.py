"""Red team finding 4: a package version with '+' (semver build metadata) made a default rollout
id every device refused without a word, which the CLI could not even address. Now one id rule
(protocol.SAFE_ID) holds on both sides: the API refuses a given id outside it and makes its
default one inside it; a device that refuses a signed deploy says why (a `failed` step) when the
id is safe to echo; the API URL-decodes its path parameters and the client quotes them."""

from __future__ import annotations

import json
import types
import urllib.error
import urllib.request

import pytest

from edgekit import package, protocol
from edgekit.agent.ota import Deployment
from edgekit.agent.runner import Agent, AgentConfig
from edgekit.errors import FleetError
from edgekit.fleet.manager import FleetManager
from edgekit.signing import CommandSigner
from tests.fleet.test_api import TOKEN, _package, _upload, fleet  # noqa: F401  (fleet is a fixture)
from tests.fleet.test_fleet_mqtt import _agents, _deploy_message, broker, wait_for  # noqa: F401

EMBEDDED = pytest.mark.parametrize("broker", ["embedded"], indirect=True)  # the API's side, not the broker's
HOSTS = frozenset({"127.0.0.1"})


@pytest.mark.parametrize(
    ("name", "version"),
    [("fc", "1.0+cuda"), ("fc", "1.0"), ("m" * 128, "9" * 128), ("+-.", "+"), ("modèle", "1 beta/2")],
)
def test_a_default_id_is_one_every_device_accepts(tmp_path, name, version):
    rollout_id = protocol.safe_id(f"{name}-{version}", suffix="-0123abcd")
    assert protocol.SAFE_ID.fullmatch(rollout_id) and rollout_id.endswith("-0123abcd")
    message = {
        "deployment": rollout_id,
        "package": "fc-1.tar",
        "sha256": "a" * 64,
        "size": 1,
        "url": "http://127.0.0.1/x",
    }
    assert Deployment.from_message(message, HOSTS).id == rollout_id  # the agent's own check


def test_the_agent_applies_the_shared_rule():
    from edgekit.agent import ota

    assert ota.SAFE_ID is protocol.SAFE_ID


@EMBEDDED
def test_a_version_with_a_plus_deploys_to_every_device(tmp_path, fleet, keys, models):  # noqa: F811
    """The red team's rollout: fc 1.0+cuda to the whole fleet, default id. Every device refused it
    and the rollout ended `done` with nobody serving it."""
    manager, client, agents, url = fleet
    info = _package(tmp_path, models[0], keys[0], "1.0+cuda")
    _upload(client, info, keys[0])
    rollout_id = client.deploy(info.sha256, ["all"], canary=0.25, waves=[1.0])["id"]
    assert rollout_id.startswith("fc-1.0_cuda-") and protocol.SAFE_ID.fullmatch(rollout_id)
    wait_for(lambda: client.rollout(rollout_id)["state"] == "done", what="rollout done", detail=lambda: agents)
    assert [a.slots.current()["version"] for a in agents] == ["1.0+cuda"] * 4
    assert [a.rejected for a in agents] == [0] * 4


@EMBEDDED
def test_a_given_id_outside_the_rule_is_refused_naming_it(tmp_path, fleet, keys, models):  # noqa: F811
    manager, client, agents, url = fleet
    info = _package(tmp_path, models[0], keys[0], "1")
    _upload(client, info, keys[0])
    for bad in ("fc-1.0+cuda", "a" * 65, "../x", "-x", "a b"):
        with pytest.raises(FleetError, match=r"rollout id .* is not valid: an id is 1 to 64 characters"):
            client.deploy(info.sha256, ["all"], rollout_id=bad)
    for bad in ("", 7, "a/b"):  # what the client never sends: the raw request
        body = json.dumps({"package": info.sha256, "to": ["all"], "id": bad}).encode()
        request = urllib.request.Request(
            f"{url}/api/v1/rollouts?fleet=f1", body, {"Authorization": f"Bearer {TOKEN}"}, method="POST"
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=30)
        assert refused.value.code == 400
        assert protocol.SAFE_ID_RULE in json.loads(refused.value.read())["error"]
    assert client.rollouts() == []


@EMBEDDED
def test_path_parameters_are_url_decoded_and_the_client_quotes_them(tmp_path, fleet, keys, models):  # noqa: F811
    manager, client, agents, url = fleet
    info = _package(tmp_path, models[0], keys[0], "1")
    _upload(client, info, keys[0])
    client.deploy(info.sha256, ["id:dev00"], canary=0.0, waves=[1.0], rollout_id="r-1.x_2")
    encoded = f"{url}/api/v1/rollouts/r%2D1%2Ex_2"  # the same id, every character quoted as a client may
    with urllib.request.urlopen(
        urllib.request.Request(f"{encoded}/events", headers={"Authorization": f"Bearer {TOKEN}"}), timeout=30
    ) as response:
        assert json.loads(response.read())[0]["kind"] == "started"
    wait_for(lambda: client.rollout("r-1.x_2")["state"] == "done", what="rollout done")
    # a '/' in an id is quoted, so it reaches the rollout lookup instead of another route
    with pytest.raises(FleetError, match=r"no rollout 'a/b'"):
        client.rollout("a/b")
    with pytest.raises(FleetError, match=r"no rollout 'a\+b/c'"):
        client.control("a+b/c", "abort")


def _lone_agent(tmp_path, server, command_public: str) -> Agent:
    """An agent that is never started: messages are handed to it as paho would."""
    config = AgentConfig(
        fleet="f1",
        device="dev00",
        state_dir=str(tmp_path / "dev00"),
        trusted_root=server.root_bytes().decode(),
        mqtt_version="3.1.1",
        command_key=command_public,
    )
    return Agent(config)


def _progress_in_outbox(agent: Agent) -> list[dict]:
    return [protocol.decode("progress", payload) for _, topic, payload in agent.outbox.pending() if "progress" in topic]


def _hand(agent: Agent, message: dict) -> None:
    topic = protocol.topic("f1", "dev00", "deploy")
    agent._on_message(None, None, types.SimpleNamespace(topic=topic, payload=protocol.encode("deploy", **message)))


def test_a_signed_deploy_the_device_refuses_is_reported_failed(tmp_path, server, command_key):
    agent = _lone_agent(tmp_path, server, command_key[1])
    signer = CommandSigner(command_key[0])
    refused = {
        "deployment": "r-7",
        "package": "fc-1.tar",
        "sha256": "a" * 64,
        "size": 100,
        "url": "http://packages.elsewhere.example/x.tar",  # not one of the fleet's package hosts
    }
    _hand(agent, signer.sign(refused, "f1", "dev00", 3600))
    assert agent.rejected == 1
    [progress] = _progress_in_outbox(agent)
    assert (progress["deployment"], progress["step"]) == ("r-7", "failed")
    assert "refused the deploy message" in progress["details"]["reason"]
    assert "packages.elsewhere.example" in progress["details"]["reason"]


def test_nothing_unsafe_or_unverified_is_echoed(tmp_path, server, command_key):
    """An id outside the rule is never echoed (it would land in the manager's records under that
    name); a message nobody signed is refused before any of its fields is read."""
    agent = _lone_agent(tmp_path, server, command_key[1])
    signer, intruder = CommandSigner(command_key[0]), CommandSigner("11" * 32)
    base = {"package": "fc-1.tar", "sha256": "a" * 64, "size": 100, "url": "http://127.0.0.1:1/x.tar"}
    _hand(agent, signer.sign({**base, "deployment": "fc-1.0+cuda"}, "f1", "dev00", 3600))
    _hand(agent, signer.sign({**base, "deployment": "../../etc"}, "f1", "dev00", 3600))
    _hand(agent, intruder.sign({**base, "deployment": "r-8", "size": 0}, "f1", "dev00", 3600))
    assert agent.rejected == 3 and _progress_in_outbox(agent) == []


@EMBEDDED
def test_a_rollout_every_device_refuses_is_not_silent(tmp_path, broker, keys, models, server, command_key):  # noqa: F811
    """End to end: a deploy whose package host the devices do not trust (signed, so verified)
    fails the canary with the device's reason, and the rollout stops instead of ending `done`."""
    manager = FleetManager(tmp_path / "fleet.sqlite", port=broker.port, command_key=command_key[0])
    assert manager.start()
    agents = _agents(tmp_path, broker, server.root_bytes().decode(), 2, command_key[1])
    try:
        wait_for(lambda: len(manager.devices("f1")) == 2, what="two devices registered")
        info = package.build(models[0], tmp_path / "fc.tar", name="fc", version="1", signing_key=keys[0])
        server.publish(info)
        deploy = _deploy_message(info, server.base.replace("127.0.0.1", "localhost"), "elsewhere-1")
        rollout = manager.start_rollout("f1", deploy, manager.devices("f1"), canary=0.5, waves=(1.0,))
        wait_for(lambda: manager.rollout_status(rollout)["state"] == "aborted", what="the canary's refusal stops it")
        failures = manager.rollout_status(rollout)["failures"]
        assert list(failures) == ["dev00"] and "'localhost' is not one of the fleet's" in failures["dev00"]
        assert [a.slots.current() for a in agents] == [None, None]
    finally:
        for agent in agents:
            agent.stop()
        manager.stop()
