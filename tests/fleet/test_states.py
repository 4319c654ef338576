"""Issue 22: rollout states and deployment steps are enums of one module (edgekit.protocol),
stored and served as the same text as before, and a rollout's final state follows from the
typed request (abort or rollback), never from its reason's text."""

from __future__ import annotations

import json
import sqlite3

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
