"""The fleet manager on a real PostgreSQL: telemetry, the registry and a rollout, as on SQLite;
a bad URL gives one clear line."""

from __future__ import annotations

import pytest

from edgekit import package
from edgekit.errors import FleetError
from edgekit.fleet.manager import FleetManager
from edgekit.fleet.store import FleetStore
from tests.fleet.postgres import Postgres
from tests.fleet.test_fleet_mqtt import _agents, _deploy_message, wait_for


@pytest.fixture
def postgres():
    server = Postgres().start()
    yield server
    server.stop()


def test_manager_on_postgres(tmp_path, postgres, keys, models, server, command_key):
    from edgekit.broker import Broker

    broker = Broker(port=0).start()
    manager = FleetManager(postgres.url, port=broker.port, command_key=command_key[0])
    assert manager.store.dialect == "postgresql"
    assert manager.start()
    agents = _agents(tmp_path, broker, server.root_bytes().decode(), 3, command_key[1])
    try:
        wait_for(lambda: len(manager.devices("f1")) == 3, what="three devices registered")
        for agent in agents:
            agent.telemetry(window={"count": 4, "latency": {"p50_ms": 1.0, "p90_ms": 1.5, "p99_ms": 2.0}})
            agent.telemetry(window={"count": 5})
        wait_for(lambda: manager.store.query("SELECT COUNT(*) FROM telemetry")[0][0] == 6, what="telemetry stored")
        store, base = server
        good = package.build(models[0], tmp_path / "good.tar", name="fc", version="1", signing_key=keys[0])
        server.publish(good)
        rollout = manager.start_rollout("f1", _deploy_message(good, base, "r1"), manager.devices("f1"), canary=0.3)
        wait_for(lambda: manager.rollout_status(rollout)["state"] == "done", what="rollout done on PostgreSQL")
        assert manager.rollout_status(rollout)["counts"] == {"committed": 3}
        # timestamps keep sub-second precision (PostgreSQL's REAL is 4 bytes: ~2 minutes at today's epoch)
        kinds = manager.store.query(
            "SELECT data_type FROM information_schema.columns WHERE table_name='telemetry' AND column_name='ts'"
        )
        assert kinds == [("double precision",)]
    finally:
        for agent in agents:
            agent.stop()
        manager.stop()
        broker.stop()


def test_bad_postgres_url_is_one_line(postgres):
    with pytest.raises(FleetError, match="cannot open the fleet database") as error:
        FleetStore(postgres.url.replace("/postgres", "/no_such_database"))
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_retention_drops_old_telemetry(tmp_path, engine, request):
    location = request.getfixturevalue("postgres").url if engine == "postgresql" else tmp_path / "fleet.sqlite"
    store = FleetStore(location)
    windows = [("f1", "d1", "telemetry", {"seq": i, "ts": 1000.0 + i, "count": 1}) for i in range(10)]
    store.write(windows)
    assert store.prune_telemetry(older_than_s=100, now=1105.5) == 6  # ts 1000..1005 go
    assert [s for (s,) in store.query("SELECT seq FROM telemetry ORDER BY seq")] == [6, 7, 8, 9]
    store.close()


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_content_a_database_refuses_is_the_messages_fault_not_an_outage(tmp_path, engine, request):
    """A row the database cannot take (an object where text goes) is ``refused_data`` on both
    engines: the manager drops it as malformed instead of holding its batch forever. The manager's
    signing sequence lives in both."""
    location = request.getfixturevalue("postgres").url if engine == "postgresql" else tmp_path / "fleet.sqlite"
    store = FleetStore(location)
    try:
        with pytest.raises(store.refused_data):
            store.write([("f1", "d1", "status", {"state": "online", "seq": 1, "ts": 1.0, "model": {"x": 1}})])
        store.write([("f1", "d1", "telemetry", {"seq": 1, "ts": 1.0, "count": 1})])  # the connection still works
        assert store.query("SELECT COUNT(*) FROM telemetry")[0][0] == 1
        assert store.sequence("command") == -1
        store.record_sequence("command", 2**62)
        store.record_sequence("command", 2**62 + 1)
        assert store.sequence("command") == 2**62 + 1
    finally:
        store.close()
