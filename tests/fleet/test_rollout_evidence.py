"""A wave passes on evidence only, and nothing a rollout meets stops the rollout loop: real
Mosquitto, real agents, the manager's own rollout loop.

- A wave none of whose own devices committed does not pass at its timeout, with or without
  telemetry gates: the rollout pauses saying which devices never answered (red team finding 3;
  before, a rollout no device acknowledged ended ``done``). Devices still silent in a wave where
  another committed stop blocking, as documented: they get it when they return.
- A previous version's p90 of 0 is no baseline: the rollout pauses at its timeout for want of
  evidence (finding 8; before, the latency gate divided by zero twice a second, forever).
- A rollout whose judgement raises pauses with the error as its reason, logged once, and the
  other rollouts go on."""

from __future__ import annotations

import logging
import time

import pytest

from edgekit import package
from edgekit.agent.runner import Agent, AgentConfig
from edgekit.fleet import manager as manager_module
from edgekit.fleet.manager import FleetManager
from edgekit.protocol import RolloutState
from edgekit.signing import new_command_key
from tests.fleet.mosquitto import Mosquitto
from tests.fleet.test_fleet_mqtt import _deploy_message, wait_for


@pytest.fixture
def mosquitto(tmp_path):
    broker = Mosquitto(tmp_path).start()
    yield broker
    broker.stop()


@pytest.fixture
def fleet(tmp_path, mosquitto, command_key, server):
    """The manager and four real agents: dev00 and dev01 trust the manager's command key; dev02
    and dev03 were provisioned with a stranger's, so they refuse every deploy without a word (as
    an agent does today with a deploy it cannot accept): online, registered, silent."""
    stranger = new_command_key(tmp_path / "stranger.key", tmp_path / "stranger.pub")
    manager = FleetManager(tmp_path / "fleet.sqlite", port=mosquitto.port, command_key=command_key[0])
    assert manager.start()
    agents = [_agent(tmp_path, mosquitto, server, f"dev0{i}", command_key[1] if i < 2 else stranger) for i in range(4)]
    try:
        wait_for(lambda: len(manager.devices("f1")) == 4, what="four devices registered")
        yield manager, agents
    finally:
        for agent in agents:
            agent.stop()
        manager.stop()


def _agent(tmp_path, broker, server, device: str, command_key: str) -> Agent:
    config = AgentConfig(
        fleet="f1",
        device=device,
        state_dir=str(tmp_path / device),
        trusted_root=server.root_bytes().decode(),
        port=broker.port,
        telemetry_interval_s=3600,
        watch_invocations=0,
        command_key=command_key,
    )
    agent = Agent(config)
    agent.start()
    return agent


def _publish(tmp_path, server, keys, models, version: str, rollout_id: str) -> dict:
    info = package.build(models[0], tmp_path / f"fc-{version}.tar", name="fc", version=version, signing_key=keys[0])
    server.publish(info)
    return _deploy_message(info, server.base, rollout_id)


def _settled(manager: FleetManager, rollout_id: str, timeout: float = 60.0) -> dict:
    wait_for(
        lambda: manager.rollout_status(rollout_id)["state"] != RolloutState.RUNNING,
        timeout,
        f"rollout {rollout_id} to leave running",
        lambda: manager.events(rollout_id),
    )
    return manager.rollout_status(rollout_id)


def test_a_rollout_no_device_answers_pauses_instead_of_ending_done(tmp_path, fleet, server, keys, models):
    """The red team's case: default gates (no telemetry gate), every device silent."""
    manager, agents = fleet
    deploy = _publish(tmp_path, server, keys, models, "1", "silent")
    manager.start_rollout("f1", deploy, ["dev02", "dev03"], canary=0.5, waves=(1.0,), gates={"wave_timeout_s": 1.0})
    status = _settled(manager, "silent")
    assert status["state"] is RolloutState.PAUSED and status["steps"] == {}
    assert status["reason"] == (
        "no evidence: none of wave 1's 1 devices committed the new model; 1 never reported a step (dev02) "
        "(wave timeout)"
    )
    assert [e["kind"] for e in manager.events("silent")] == ["started", "paused"]  # no wave opened
    assert agents[2].rejected >= 1  # it did receive the deploy: silence, not absence
    manager.resume("silent")  # resume waits again, and pauses again: still no evidence
    assert _settled(manager, "silent")["state"] is RolloutState.PAUSED


def test_silent_devices_stop_blocking_once_one_of_their_wave_committed_and_not_before(
    tmp_path, fleet, server, keys, models
):
    manager, agents = fleet
    gates = {"wave_timeout_s": 8.0}  # long enough for a real agent to commit under load
    # wave 2 is dev01 (commits) and dev02 (silent): the documented behaviour, the wave passes at its timeout
    mixed = _publish(tmp_path, server, keys, models, "1", "mixed")
    manager.start_rollout("f1", mixed, ["dev00", "dev01", "dev02"], canary=0.3, waves=(1.0,), gates=gates)
    status = _settled(manager, "mixed")
    assert status["state"] is RolloutState.DONE, manager.events("mixed")
    assert status["steps"] == {"dev00": "committed", "dev01": "committed"}
    # wave 2 is dev02 and dev03, both silent: the canary's commit is the canary's evidence, not theirs
    late = _publish(tmp_path, server, keys, models, "2", "late")
    manager.start_rollout("f1", late, ["dev00", "dev02", "dev03"], canary=0.3, waves=(1.0,), gates=gates)
    status = _settled(manager, "late")
    assert status["state"] is RolloutState.PAUSED and status["steps"] == {"dev00": "committed"}
    assert status["reason"] == (
        "no evidence: none of wave 2's 2 devices committed the new model; 2 never reported a step "
        "(dev02, dev03) (wave timeout)"
    )
    assert [e["kind"] for e in manager.events("late")] == ["started", "wave", "paused"]
    assert [a.slots.current()["version"] for a in agents[:2]] == ["2", "1"]


def test_a_zero_baseline_p90_pauses_the_rollout_for_want_of_evidence(tmp_path, fleet, server, keys, models):
    manager, agents = fleet
    base = _publish(tmp_path, server, keys, models, "1", "base")
    manager.start_rollout("f1", base, ["dev00"], canary=0.0, waves=(1.0,), gates={"wave_timeout_s": 30.0})
    assert _settled(manager, "base")["state"] is RolloutState.DONE
    latency = {"p50_ms": 0.0, "p90_ms": 0.0, "p99_ms": 0.0}  # a model faster than the p90's rounding
    agents[0].telemetry(window={"count": 50, "window_s": 0.001, "latency": latency})
    wait_for(lambda: manager.store.query("SELECT COUNT(*) FROM telemetry")[0][0] == 1, what="the baseline stored")
    gates = {"max_latency_regression": 1.2, "telemetry_windows": 1, "min_invocations": 1, "wave_timeout_s": 8.0}
    new = _publish(tmp_path, server, keys, models, "2", "faster")
    manager.start_rollout("f1", new, ["dev00"], canary=0.0, waves=(1.0,), gates=gates)
    wait_for(lambda: manager.rollout_status("faster")["steps"].get("dev00") == "committed", what="dev00 committed")
    agents[0].telemetry(window={"count": 50, "window_s": 0.001, "latency": {**latency, "p90_ms": 9.0}})
    status = _settled(manager, "faster")
    assert status["state"] is RolloutState.PAUSED, manager.events("faster")
    assert status["reason"] == (
        "no verdict on latency: the previous version's median p90 is 0 ms, nothing to compare against (wave timeout)"
    )


def test_a_rollout_whose_judgement_raises_pauses_and_the_others_go_on(
    tmp_path, fleet, server, keys, models, monkeypatch, caplog
):
    manager, agents = fleet
    broken = _publish(tmp_path, server, keys, models, "1", "broken")
    fine = _publish(tmp_path, server, keys, models, "2", "fine")
    judge = manager_module.judge_telemetry

    def judge_or_raise(gates, new_sha, *args, **kwargs):
        if new_sha == broken["sha256"]:
            raise RuntimeError("the judge tripped")
        return judge(gates, new_sha, *args, **kwargs)

    monkeypatch.setattr(manager_module, "judge_telemetry", judge_or_raise)
    caplog.set_level(logging.ERROR, logger="edgekit.fleet")
    gates = {"max_error_rate": 0.5, "telemetry_windows": 1, "min_invocations": 1, "wave_timeout_s": 30.0}
    manager.start_rollout("f1", broken, ["dev00"], canary=0.0, waves=(1.0,), gates=gates)
    manager.start_rollout("f1", fine, ["dev01"], canary=0.0, waves=(1.0,), gates=gates)
    status = _settled(manager, "broken")
    assert status["state"] is RolloutState.PAUSED
    assert status["reason"] == "paused: judging the rollout failed: RuntimeError: the judge tripped"
    wait_for(lambda: manager.rollout_status("fine")["steps"].get("dev01") == "committed", what="dev01 committed")
    agents[1].telemetry(window={"count": 50, "window_s": 0.001})
    assert _settled(manager, "fine")["state"] is RolloutState.DONE
    # a store that fails for a while does not stop the loop either
    query = manager.store.query

    def store_down(*args, **kwargs):
        raise OSError("disk gone")

    monkeypatch.setattr(manager.store, "query", store_down)
    time.sleep(1.5)  # three turns of the loop against a failing store
    monkeypatch.setattr(manager.store, "query", query)
    manager.resume("broken")  # judged again at once, for the caller: it pauses again, nothing raises
    status = manager.rollout_status("broken")
    assert status["state"] is RolloutState.PAUSED
    assert status["reason"] == "paused: judging the rollout failed: RuntimeError: the judge tripped"
    logged = [r.getMessage() for r in caplog.records]
    assert logged == [
        "rollout loop (broken): RuntimeError: the judge tripped",  # once, not twice a second
        "rollout loop: OSError: disk gone",
    ]
