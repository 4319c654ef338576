"""The fleet manager: ingests status, telemetry and deployment progress into SQLite (WAL,
batched writes from one writer thread), keeps the device registry, and runs rollouts:
a canary group first, then waves by percentage, each gated on its failure rate, aborting and
rolling the affected devices back past ``max_failures``. Rollout state lives in the database,
so a restarted manager resumes where it stopped."""

from __future__ import annotations

import json
import logging
import math
import queue
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from edgekit import protocol

log = logging.getLogger("edgekit.fleet")

SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS devices (fleet TEXT, device TEXT, state TEXT, last_seen REAL, tags TEXT,
    model TEXT, version TEXT, sha256 TEXT, PRIMARY KEY (fleet, device));
CREATE TABLE IF NOT EXISTS telemetry (fleet TEXT, device TEXT, seq INTEGER, ts REAL, payload TEXT,
    PRIMARY KEY (fleet, device, seq, ts));
CREATE TABLE IF NOT EXISTS progress (deployment TEXT, fleet TEXT, device TEXT, step TEXT, ts REAL, details TEXT);
CREATE TABLE IF NOT EXISTS rollouts (id TEXT PRIMARY KEY, fleet TEXT, deploy TEXT, devices TEXT, waves TEXT,
    max_failures REAL, wave INTEGER, state TEXT, created REAL);
CREATE INDEX IF NOT EXISTS progress_by_deployment ON progress (deployment, device);
"""
DONE_STEPS = ("committed", "failed", "rolled_back")


@dataclass
class Counters:
    received: int = 0
    stored: int = 0
    malformed: int = 0


class FleetStore:
    def __init__(self, path: str | Path) -> None:
        self.db = sqlite3.connect(str(path), check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA_SQL)
        self.lock = threading.Lock()

    def write(self, batch: list[tuple[str, str, str, dict]]) -> None:
        telemetry, seen, statuses, progress = [], {}, [], []
        for fleet, device, channel, p in batch:
            if channel == "status":
                tags = json.dumps(p.get("tags", []))
                statuses.append(
                    (fleet, device, p["state"], p["ts"], tags, p.get("model"), p.get("version"), p.get("sha256"))
                )
            elif channel == "telemetry":
                telemetry.append((fleet, device, p["seq"], p["ts"], json.dumps(p)))
                seen[(fleet, device)] = max(p["ts"], seen.get((fleet, device), 0))
            elif channel == "progress":
                details = json.dumps(p.get("details", {}))
                progress.append((p["deployment"], fleet, device, p["step"], p["ts"], details))
        with self.lock, self.db:
            self.db.executemany(
                "INSERT INTO devices VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(fleet, device) DO UPDATE SET "
                "state=excluded.state, last_seen=excluded.last_seen, tags=excluded.tags, model=excluded.model,"
                " version=excluded.version, sha256=excluded.sha256",
                statuses,
            )
            self.db.executemany("INSERT OR IGNORE INTO telemetry VALUES (?,?,?,?,?)", telemetry)
            self.db.executemany(
                "UPDATE devices SET last_seen=MAX(COALESCE(last_seen, 0), ?) WHERE fleet=? AND device=?",
                [(ts, fleet, device) for (fleet, device), ts in seen.items()],
            )
            self.db.executemany("INSERT INTO progress VALUES (?,?,?,?,?,?)", progress)

    def query(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self.lock:
            return self.db.execute(sql, args).fetchall()

    def execute(self, sql: str, args: tuple = ()) -> None:
        with self.lock, self.db:
            self.db.execute(sql, args)


class FleetManager:
    def __init__(
        self,
        db: str | Path,
        host: str = "127.0.0.1",
        port: int = 1883,
        username: str | None = None,
        password: str | None = None,
        batch_size: int = 500,
        client_id: str = "edgekit-fleet",
    ) -> None:
        import paho.mqtt.client as mqtt

        self.store = FleetStore(db)
        self.counters = Counters()
        self.queue: queue.Queue = queue.Queue()
        self.batch_size = batch_size
        self._stop = threading.Event()
        # a persistent session under a stable id: with a persistent broker (Mosquitto's
        # persistence), telemetry published while the manager reconnects is queued, not lost
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        if username:
            self.client.username_pw_set(username, password)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.host, self.port = host, port
        self._sent: set[tuple[str, str]] = set()

    def start(self) -> None:
        self.client.connect(self.host, self.port, keepalive=15)
        self.client.loop_start()
        threading.Thread(target=self._writer, name="edgekit-fleet-writer", daemon=True).start()
        threading.Thread(target=self._rollout_loop, name="edgekit-rollouts", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        self.client.disconnect()
        self.client.loop_stop()
        self.flush()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        client.subscribe([(f"{protocol.PREFIX}/+/+/{c}", 1) for c in ("status", "telemetry", "progress", "cmd/resp")])

    def _on_message(self, client, userdata, message) -> None:
        self.counters.received += 1
        try:
            t = protocol.parse_topic(message.topic)
            payload = protocol.decode(t.channel, message.payload)
        except protocol.ProtocolError as exc:
            self.counters.malformed += 1
            log.warning("ignored a message on %s: %s", message.topic, exc)
            return
        if payload:
            self.queue.put((t.fleet, t.device, t.channel, payload))

    def _writer(self) -> None:
        while not self._stop.is_set():
            self.flush(timeout=0.2)

    def flush(self, timeout: float = 0.0) -> None:
        batch = []
        try:
            batch.append(self.queue.get(timeout=timeout) if timeout else self.queue.get_nowait())
            while len(batch) < self.batch_size:
                batch.append(self.queue.get_nowait())
        except queue.Empty:
            pass
        if batch:
            try:
                self.store.write(batch)
                self.counters.stored += len(batch)
            except (sqlite3.Error, KeyError, TypeError) as exc:  # never die on one bad batch
                self.counters.malformed += len(batch)
                log.warning("could not store a batch: %s", exc)

    # --- deployments and rollouts --------------------------------------------------------------
    def devices(self, fleet: str, tag: str | None = None) -> list[str]:
        rows = self.store.query("SELECT device, tags FROM devices WHERE fleet=? ORDER BY device", (fleet,))
        return [d for d, tags in rows if tag is None or tag in json.loads(tags or "[]")]

    def deploy_to(self, fleet: str, device: str, deploy: dict) -> None:
        payload = protocol.encode("deploy", **deploy)
        self.client.publish(protocol.topic(fleet, device, "deploy"), payload, qos=1, retain=True)

    def command(self, fleet: str, device: str, command: str, **fields) -> None:
        payload = protocol.encode("cmd", id=uuid.uuid4().hex, command=command, **fields)
        self.client.publish(protocol.topic(fleet, device, "cmd"), payload, qos=1)

    def start_rollout(
        self,
        fleet: str,
        deploy: dict,
        devices: list[str],
        canary: float = 0.05,
        waves: tuple[float, ...] = (0.25, 0.5, 1.0),
        max_failures: float = 0.1,
    ) -> str:
        """Canary (at least one device) first, then cumulative waves of the device list."""
        if not devices:
            raise ValueError("no devices to deploy to")
        rollout_id = deploy["deployment"]
        cuts = sorted({max(1, math.ceil(canary * len(devices)))} | {math.ceil(w * len(devices)) for w in waves})
        self.store.execute(
            "INSERT INTO rollouts VALUES (?,?,?,?,?,?,?,?,?)",
            (
                rollout_id,
                fleet,
                json.dumps(deploy),
                json.dumps(devices),
                json.dumps(cuts),
                max_failures,
                0,
                "running",
                time.time(),
            ),
        )
        self._advance(rollout_id)
        return rollout_id

    def rollout_status(self, rollout_id: str) -> dict:
        row = self.store.query("SELECT fleet, devices, waves, wave, state FROM rollouts WHERE id=?", (rollout_id,))
        if not row:
            raise KeyError(rollout_id)
        fleet, devices, cuts, wave, state = row[0]
        steps = dict(
            self.store.query(
                "SELECT device, step FROM progress p WHERE deployment=? AND ts = (SELECT MAX(ts) FROM progress q "
                "WHERE q.deployment=p.deployment AND q.device=p.device)",
                (rollout_id,),
            )
        )
        return {"state": state, "wave": wave, "cuts": json.loads(cuts), "devices": json.loads(devices), "steps": steps}

    def _advance(self, rollout_id: str) -> None:
        fleet, deploy, devices, cuts, max_failures, wave, state = self.store.query(
            "SELECT fleet, deploy, devices, waves, max_failures, wave, state FROM rollouts WHERE id=?", (rollout_id,)
        )[0]
        if state != "running":
            return
        devices, cuts, deploy = json.loads(devices), json.loads(cuts), json.loads(deploy)
        status = self.rollout_status(rollout_id)
        targeted = devices[: cuts[wave]]
        finished = [d for d in targeted if status["steps"].get(d) in DONE_STEPS]
        failed = [d for d in targeted if status["steps"].get(d) in ("failed", "rolled_back")]
        if failed and len(failed) / len(targeted) > max_failures:
            for d in targeted:
                if status["steps"].get(d) in ("switched", "committed"):
                    self.command(fleet, d, "rollback", deployment=rollout_id)
            self.store.execute("UPDATE rollouts SET state='aborted' WHERE id=?", (rollout_id,))
            log.warning("rollout %s aborted: %d of %d failed", rollout_id, len(failed), len(targeted))
            return
        for d in targeted:
            if d not in status["steps"] and (rollout_id, d) not in self._sent:
                self.deploy_to(fleet, d, deploy)
                self._sent.add((rollout_id, d))
        if len(finished) == len(targeted):
            if wave + 1 < len(cuts):
                self.store.execute("UPDATE rollouts SET wave=? WHERE id=?", (wave + 1, rollout_id))
                self._advance(rollout_id)
            else:
                self.store.execute("UPDATE rollouts SET state='done' WHERE id=?", (rollout_id,))

    def _rollout_loop(self) -> None:
        while not self._stop.wait(0.5):
            for (rollout_id,) in self.store.query("SELECT id FROM rollouts WHERE state='running'"):
                try:
                    self._advance(rollout_id)
                except Exception:
                    log.exception("rollout %s", rollout_id)
