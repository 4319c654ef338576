"""Issue 22: rollout states and deployment steps are enums of one module (edgekit.protocol),
stored and served as the same text as before, and a rollout's final state follows from the
typed request (abort or rollback), never from its reason's text."""

from __future__ import annotations

import json
import sqlite3
import time

import pytest

from edgekit import protocol
from edgekit.errors import InputError
from edgekit.fleet.manager import FleetManager
from edgekit.protocol import FAILED_STEPS, FINAL_STEPS, ROLLOUT_ENDS, RolloutState, Step

SHA = "f" * 64


def test_the_states_keep_their_text_in_the_database_and_in_json():
    assert [s.value for s in RolloutState] == ["running", "paused", "done", "aborted", "rolled_back"]
    assert json.dumps({"state": RolloutState.ROLLED_BACK}) == '{"state": "rolled_back"}'
    assert f"{RolloutState.PAUSED} {Step.SWITCHED}" == "paused switched"
    assert sorted(ROLLOUT_ENDS) == ["aborted", "done", "rolled_back"]
    assert sorted(FAILED_STEPS) == ["failed", "rolled_back"] and FAILED_STEPS < FINAL_STEPS


@pytest.fixture
def manager(tmp_path):
    """A manager that is never connected: its store and rollout logic are all these tests use."""
    manager = FleetManager(tmp_path / "fleet.sqlite")
    online = {"state": "online", "seq": 1, "ts": protocol.now(), "schema": 1}
    manager.store.write([("f1", d, "status", online) for d in ("cam1", "cam2")])
    yield manager
    manager.store.close()


def _rollout(manager: FleetManager, rollout_id: str) -> str:
    deploy = {"deployment": rollout_id, "package": "p.tar", "sha256": SHA, "size": 1, "url": "http://h/p.tar"}
    return manager.start_rollout("f1", deploy, ["cam1", "cam2"], canary=0.5, waves=(1.0,))


def _stored_state(tmp_path, rollout_id: str) -> str:
    with sqlite3.connect(tmp_path / "fleet.sqlite") as db:
        return db.execute("SELECT state FROM rollouts WHERE id=?", (rollout_id,)).fetchone()[0]


def test_the_final_state_follows_the_request_not_the_reason_text(manager, tmp_path):
    aborted = _rollout(manager, "r1")
    manager.abort(aborted, reason="rollback by command: rolled_back")  # text that names another state
    assert manager.rollout_status(aborted)["state"] is RolloutState.ABORTED
    assert _stored_state(tmp_path, aborted) == "aborted"  # the same text as before the enum
    rolled_back = _rollout(manager, "r2")
    manager.rollback(rolled_back)
    assert manager.rollout_status(rolled_back)["state"] is RolloutState.ROLLED_BACK
    assert _stored_state(tmp_path, rolled_back) == "rolled_back"
    kinds = [e["kind"] for e in manager.events(rolled_back)]
    assert kinds == ["started", "rolled_back"]


def test_pause_and_resume_move_between_typed_states_only(manager, tmp_path):
    rollout = _rollout(manager, "r1")
    assert manager.rollout_status(rollout)["state"] is RolloutState.RUNNING
    manager.pause(rollout)
    assert _stored_state(tmp_path, rollout) == "paused"
    with pytest.raises(InputError, match="rollout r1 is paused; cannot make it paused"):
        manager.pause(rollout)
    manager.resume(rollout)
    manager.abort(rollout)
    with pytest.raises(InputError, match="rollout r1 is aborted already"):
        manager.abort(rollout)


def _progress(manager: FleetManager, rollout_id: str, steps: dict[str, str]) -> None:
    now = protocol.now()
    manager.store.write(
        [("f1", d, "progress", {"deployment": rollout_id, "step": s, "ts": now, "schema": 1}) for d, s in steps.items()]
    )


def test_a_wave_none_of_whose_devices_committed_pauses_and_never_ends_done(manager, monkeypatch):
    """Red team finding 3: at the wave timeout the failure gate counted failed devices only, so a
    rollout nobody acknowledged ended ``done`` under the default gates. A wave passes only if one
    of its own devices committed (the canary's commit is no evidence for the next wave)."""
    deploy = {"deployment": "r1", "package": "p.tar", "sha256": SHA, "size": 1, "url": "http://h/p.tar"}
    manager.start_rollout("f1", deploy, ["cam1", "cam2"], canary=0.5, waves=(1.0,), gates={"wave_timeout_s": 60})
    late = time.time() + 61
    monkeypatch.setattr(time, "time", lambda: late)  # the wave timeout has passed
    manager._advance("r1")
    status = manager.rollout_status("r1")
    assert (status["state"], status["wave"]) == (RolloutState.PAUSED, 0)
    assert status["reason"] == (
        "no evidence: none of wave 1's 1 devices committed the new model; 1 never reported a step (cam1) (wave timeout)"
    )
    monkeypatch.undo()
    _progress(manager, "r1", {"cam1": "committed"})
    manager.resume("r1")  # the canary committed: wave 2 opens
    assert manager.rollout_status("r1")["wave"] == 1
    late = time.time() + 61
    monkeypatch.setattr(time, "time", lambda: late)
    manager._advance("r1")
    status = manager.rollout_status("r1")
    assert status["state"] is RolloutState.PAUSED and "none of wave 2's 1 devices committed" in status["reason"]
    monkeypatch.undo()
    _progress(manager, "r1", {"cam2": "failed"})  # a final step, but no evidence the package works
    manager.resume("r1")
    status = manager.rollout_status("r1")
    assert status["state"] is RolloutState.ABORTED  # 1 of 2 failed > max_failures 10%: the failure gate


def test_silent_devices_stop_blocking_at_the_timeout_once_one_of_their_wave_committed(manager, monkeypatch):
    """The documented behaviour kept: a device that does not answer (offline) does not hold a wave
    past its timeout when another device of the wave committed; it gets the rollout when it returns."""
    deploy = {"deployment": "r1", "package": "p.tar", "sha256": SHA, "size": 1, "url": "http://h/p.tar"}
    devices = ["cam1", "cam2", "cam3"]  # the canary cam1, then cam2 and cam3
    manager.start_rollout("f1", deploy, devices, canary=0.3, waves=(1.0,), gates={"wave_timeout_s": 60})
    _progress(manager, "r1", {"cam1": "committed", "cam2": "committed"})
    manager._advance("r1")
    status = manager.rollout_status("r1")
    assert (status["state"], status["wave"]) == (RolloutState.RUNNING, 1)  # cam3 has time to answer
    late = time.time() + 61
    monkeypatch.setattr(time, "time", lambda: late)
    manager._advance("r1")
    assert manager.rollout_status("r1")["state"] is RolloutState.DONE


def test_a_rollout_whose_judgement_raises_is_paused_with_the_error_on_resume(manager, monkeypatch):
    rollout = _rollout(manager, "r1")
    manager.pause(rollout)

    def trips(rollout_id):
        raise ZeroDivisionError("float division by zero")

    monkeypatch.setattr(manager, "_advance", trips)
    manager.resume(rollout)  # nothing raises to the caller
    status = manager.rollout_status(rollout)
    assert status["state"] is RolloutState.PAUSED
    assert status["reason"] == "paused: judging the rollout failed: ZeroDivisionError: float division by zero"


def test_a_device_takes_part_in_one_unfinished_rollout_at_a_time(manager):
    """Found by a red-team probe: three deploys, then a fourth, to the same device left four
    rollouts running on it at once, each sending it a deploy and judging the others' telemetry."""
    first = _rollout(manager, "r1")
    manager.pause(first)
    with pytest.raises(InputError, match="cam1, cam2 are in rollout r1, which has not ended"):
        _rollout(manager, "r2")
    deploy = {"deployment": "r3", "package": "p.tar", "sha256": SHA, "size": 1, "url": "http://h/p.tar"}
    manager.start_rollout("other-fleet", deploy, ["cam1"], canary=0.5, waves=(1.0,))  # another fleet's cam1
    manager.abort(first)
    assert _rollout(manager, "r2") == "r2"  # once it ended


@pytest.mark.parametrize("waves", [(0.5, 0.1), (0.5, 0.5, 1.0)])
def test_waves_that_do_not_grow_are_refused(manager, waves):
    """A red-team probe's --waves 50,10 was accepted; cumulative shares must each be larger."""
    deploy = {"deployment": "r1", "package": "p.tar", "sha256": SHA, "size": 1, "url": "http://h/p.tar"}
    with pytest.raises(InputError, match="cumulative shares, each above the one before"):
        manager.start_rollout("f1", deploy, ["cam1", "cam2"], canary=0.1, waves=waves)


def test_power_measured_only_without_a_power_gate_is_refused():
    from edgekit.fleet.gates import Gates

    with pytest.raises(InputError, match="power_measured_only goes with max_power_w"):
        Gates.from_dict({"power_measured_only": True})
    assert Gates.from_dict({"power_measured_only": True, "max_power_w": 5.0}).power_measured_only
