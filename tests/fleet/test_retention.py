"""Retention refuses a time that would delete everything: a negative ``older_than_s`` put the
cutoff in the future (``--retention-days -1`` emptied the telemetry table), NaN and infinity are
no time at all."""

from __future__ import annotations

import math

import pytest

from edgekit.fleet.store import FleetStore


@pytest.fixture
def store(tmp_path):
    store = FleetStore(tmp_path / "fleet.sqlite")
    store.write([("f1", "d1", "telemetry", {"seq": i, "ts": 1000.0 + i, "count": 1}) for i in range(10)])
    yield store
    store.close()


@pytest.mark.parametrize("older_than_s", [-86400, 0, -0.0, math.nan, math.inf, -math.inf, True, "30"])
def test_a_retention_that_is_no_positive_time_is_refused_and_deletes_nothing(store, older_than_s):
    with pytest.raises(ValueError, match="older_than_s must be a finite number of seconds above 0"):
        store.prune_telemetry(older_than_s, now=1005.5)
    assert store.query("SELECT count(*) FROM telemetry") == [(10,)]


def test_a_positive_retention_still_drops_the_old_windows(store):
    assert store.prune_telemetry(2.0, now=1005.5) == 4  # ts 1000..1003 go
    assert store.query("SELECT count(*) FROM telemetry") == [(6,)]
