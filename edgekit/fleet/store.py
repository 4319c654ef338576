"""The fleet manager's database: SQLite (a file, WAL, the default) or PostgreSQL (a
``postgresql://`` URL, for large fleets; needs the ``postgres`` extra). One schema and one SQL
dialect for both: ``?`` placeholders (translated for psycopg) and upserts both engines speak."""

from __future__ import annotations

import json
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path

from edgekit.errors import FleetError
from edgekit.protocol import FAILED_STEPS, Step

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS devices (fleet TEXT, device TEXT, state TEXT, last_seen DOUBLE PRECISION,
    tags TEXT, model TEXT, version TEXT, sha256 TEXT, PRIMARY KEY (fleet, device))""",
    """CREATE TABLE IF NOT EXISTS telemetry (fleet TEXT, device TEXT, seq BIGINT, ts DOUBLE PRECISION, payload TEXT,
    PRIMARY KEY (fleet, device, seq, ts))""",
    """CREATE TABLE IF NOT EXISTS rollouts (id TEXT PRIMARY KEY, fleet TEXT, deploy TEXT, devices TEXT, waves TEXT,
    max_failures DOUBLE PRECISION, wave INTEGER, state TEXT, created DOUBLE PRECISION, gates TEXT,
    wave_started DOUBLE PRECISION, reason TEXT, rollback INTEGER DEFAULT 0)""",
    # one row per deployment and device, upserted: the latest step (by the device's clock), the
    # reason of a failure or rollback, and when it switched; a device flooding progress cannot grow it
    """CREATE TABLE IF NOT EXISTS deployment_state (deployment TEXT, fleet TEXT, device TEXT, step TEXT,
    ts DOUBLE PRECISION, reason TEXT, switched_ts DOUBLE PRECISION, PRIMARY KEY (deployment, fleet, device))""",
    # what happened to a rollout, written by the manager: started, wave, gate verdict, device failed, ...
    """CREATE TABLE IF NOT EXISTS rollout_events (rollout TEXT, ts DOUBLE PRECISION, kind TEXT, device TEXT,
    message TEXT, figures TEXT)""",
    "CREATE INDEX IF NOT EXISTS rollout_events_by_rollout ON rollout_events (rollout, ts)",
    # numbers the manager must never issue twice or lower, whatever its clock does (name -> value)
    "CREATE TABLE IF NOT EXISTS sequences (name TEXT PRIMARY KEY, value BIGINT)",
    "CREATE INDEX IF NOT EXISTS telemetry_by_time ON telemetry (fleet, ts)",
)
# columns added after the first release: (table, column, type)
ADDED_COLUMNS = (
    ("rollouts", "gates", "TEXT"),
    ("rollouts", "wave_started", "DOUBLE PRECISION"),
    ("rollouts", "reason", "TEXT"),
    ("rollouts", "rollback", "INTEGER DEFAULT 0"),
    ("devices", "board", "TEXT"),
)
UPSERT_DEVICE = (
    "INSERT INTO devices (fleet, device, state, last_seen, tags, model, version, sha256, board) "
    "VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT (fleet, device) DO UPDATE SET "
    "state=excluded.state, last_seen=excluded.last_seen, tags=excluded.tags, model=excluded.model, "
    "version=excluded.version, sha256=excluded.sha256, board=COALESCE(excluded.board, devices.board)"
)
INSERT_TELEMETRY = "INSERT INTO telemetry VALUES (?,?,?,?,?) ON CONFLICT DO NOTHING"  # a resent window is stored once
TOUCH_DEVICE = (
    "UPDATE devices SET last_seen = CASE WHEN last_seen IS NULL OR last_seen < ? THEN ? ELSE last_seen END "
    "WHERE fleet=? AND device=?"
)
# SET expressions read the row as it was, so every CASE compares with the stored ts
UPSERT_DEPLOYMENT_STATE = (
    "INSERT INTO deployment_state VALUES (?,?,?,?,?,?,?) ON CONFLICT (deployment, fleet, device) DO UPDATE SET "
    "step = CASE WHEN excluded.ts >= deployment_state.ts THEN excluded.step ELSE deployment_state.step END, "
    "reason = CASE WHEN excluded.ts >= deployment_state.ts THEN excluded.reason ELSE deployment_state.reason END, "
    "ts = CASE WHEN excluded.ts >= deployment_state.ts THEN excluded.ts ELSE deployment_state.ts END, "
    "switched_ts = COALESCE(excluded.switched_ts, deployment_state.switched_ts)"
)


class FleetStore:
    """Thread-safe access to the fleet database (one connection, one lock). ``errors`` are the
    database's exceptions; of those, ``refused_data`` says a row's content was refused (a value
    of the wrong type or out of range), which retrying will not change: the others (disk full,
    database locked or gone) may pass."""

    def __init__(self, location: str | Path) -> None:
        self.location = str(location)
        self.lock = threading.Lock()
        if self.location.startswith(("postgresql://", "postgres://")):
            self._open_postgres()
        else:
            self._open_sqlite()

    # --- engines ------------------------------------------------------------------------------
    def _open_sqlite(self) -> None:
        self.dialect, self.errors = "sqlite", (sqlite3.Error,)
        self.refused_data = (sqlite3.ProgrammingError, sqlite3.IntegrityError, sqlite3.DataError)
        self.refused_data += (sqlite3.InterfaceError,)
        try:
            self.db = sqlite3.connect(self.location, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            for statement in SCHEMA:
                self.db.execute(statement)
            for table, column, kind in ADDED_COLUMNS:
                if column not in {row[1] for row in self.db.execute(f"PRAGMA table_info({table})")}:
                    self.db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
            self.db.commit()
        except sqlite3.Error as exc:
            raise FleetError(f"cannot open the fleet database {self.location}: {exc}") from None

    def _open_postgres(self) -> None:
        try:
            import psycopg
        except ImportError:
            raise FleetError("a postgresql:// database needs psycopg: pip install 'edgekit[postgres]'") from None
        self.dialect, self.errors = "postgresql", (psycopg.Error,)
        self.refused_data = (psycopg.DataError, psycopg.IntegrityError, psycopg.ProgrammingError)
        try:
            self.db = psycopg.connect(self.location, autocommit=True)
            with self.db.transaction():
                for statement in SCHEMA:
                    self.db.execute(statement)
                for table, column, kind in ADDED_COLUMNS:
                    self.db.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {kind}")
        except psycopg.Error as exc:
            reason = " ".join(str(exc).split())  # one line
            raise FleetError(f"cannot open the fleet database {_redact(self.location)}: {reason}") from None

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.dialect == "postgresql" else sql

    @contextmanager
    def _transaction(self):
        if self.dialect == "postgresql":
            with self.db.transaction():
                yield
        else:
            with self.db:
                yield

    # --- access --------------------------------------------------------------------------------
    def query(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self.lock:
            return list(self.db.execute(self._sql(sql), args).fetchall())

    def execute(self, sql: str, args: tuple = ()) -> None:
        with self.lock, self._transaction():
            self.db.execute(self._sql(sql), args)

    def _many(self, sql: str, rows: list[tuple]) -> None:
        if not rows:
            return
        if self.dialect == "postgresql":
            with self.db.cursor() as cursor:
                cursor.executemany(self._sql(sql), rows)
        else:
            self.db.executemany(sql, rows)

    def write(self, batch: list[tuple[str, str, str, dict]]) -> None:
        """One transaction for a batch of (fleet, device, channel, payload) messages."""
        telemetry, seen, statuses, progress = [], {}, [], []
        for fleet, device, channel, p in batch:
            if channel == "status":
                tags = json.dumps(p.get("tags", []))
                statuses.append(
                    (fleet, device, p["state"], p["ts"], tags, p.get("model"), p.get("version"), p.get("sha256"))
                    + (str(p["board"])[:64] if isinstance(p.get("board"), str) else None,)
                )
            elif channel == "telemetry":
                telemetry.append((fleet, device, p["seq"], p["ts"], json.dumps(p)))
                seen[(fleet, device)] = max(p["ts"], seen.get((fleet, device), 0))
            elif channel == "progress":
                details = p.get("details") if isinstance(p.get("details"), dict) else {}
                reason = str(details.get("reason", ""))[:500] if p["step"] in FAILED_STEPS else ""
                switched = p["ts"] if p["step"] == Step.SWITCHED else None
                progress.append((p["deployment"], fleet, device, p["step"], p["ts"], reason, switched))
        with self.lock, self._transaction():
            self._many(UPSERT_DEVICE, statuses)
            self._many(INSERT_TELEMETRY, telemetry)
            self._many(TOUCH_DEVICE, [(ts, ts, fleet, device) for (fleet, device), ts in seen.items()])
            self._many(UPSERT_DEPLOYMENT_STATE, progress)

    def sequence(self, name: str) -> int:
        """The last value recorded under ``name`` (-1: none yet)."""
        rows = self.query("SELECT value FROM sequences WHERE name=?", (name,))
        return int(rows[0][0]) if rows else -1

    def record_sequence(self, name: str, value: int) -> None:
        self.execute(
            "INSERT INTO sequences VALUES (?,?) ON CONFLICT (name) DO UPDATE SET value=excluded.value", (name, value)
        )

    def prune_telemetry(self, older_than_s: float, now: float | None = None) -> int:
        """Retention: drop telemetry windows older than this; returns how many went."""
        import time

        check_retention(older_than_s)
        cutoff = (time.time() if now is None else now) - older_than_s
        with self.lock, self._transaction():
            cursor = self.db.execute(self._sql("DELETE FROM telemetry WHERE ts<?"), (cutoff,))
            return cursor.rowcount

    def close(self) -> None:
        with self.lock:
            self.db.close()


def check_retention(older_than_s: float) -> None:
    """Refuse a retention that is not a finite time above 0: a negative one puts the cutoff in the
    future and a NaN one compares false, so a slip would delete every telemetry window stored."""
    import math

    number = isinstance(older_than_s, int | float) and not isinstance(older_than_s, bool)
    if not (number and math.isfinite(older_than_s) and older_than_s > 0):
        raise ValueError(f"older_than_s must be a finite number of seconds above 0, not {older_than_s!r}")


def _redact(url: str) -> str:
    """A database URL without its password, for messages."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url
