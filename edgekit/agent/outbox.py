"""Store-and-forward for what the agent sends (telemetry windows, deployment progress): every
message is written to SQLite first and deleted only once the broker acknowledged it (QoS 1), so
nothing is lost while offline. Past ``limit`` rows the oldest telemetry windows are dropped
first: progress reports are what a rollout waits on, so they go (oldest first) only when no
telemetry is left to drop. Every drop is counted in the file, so the count survives restarts."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

TELEMETRY = "*/telemetry"  # GLOB over the topic: the rows that are dropped first


class Outbox:
    def __init__(self, path: str | Path, limit: int = 10_000) -> None:
        self.db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY, topic TEXT, payload BLOB)")
        self.db.execute("CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER)")
        self.limit = limit
        self.lock = threading.Lock()

    def put(self, topic: str, payload: bytes | Callable[[int], bytes]) -> None:
        """Queue a message, dropping what the limit requires. ``payload`` may be a function of the
        dropped count, called once room is made, so a telemetry window reports the drop its own
        arrival caused. Insert, drops and count are one transaction."""
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                row = self.db.execute(
                    "INSERT INTO outbox (topic, payload) VALUES (?, ?)", (topic, b"" if callable(payload) else payload)
                ).lastrowid
                excess = self.db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] - self.limit
                if excess > 0:
                    oldest = "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox {} ORDER BY id LIMIT ?)"
                    gone = self.db.execute(oldest.format("WHERE topic GLOB ?"), (TELEMETRY, excess)).rowcount
                    if gone < excess:
                        self.db.execute(oldest.format(""), (excess - gone,))
                    self.db.execute(
                        "INSERT INTO counters VALUES ('dropped', ?) ON CONFLICT(name) DO UPDATE SET "
                        "value = value + excluded.value",
                        (excess,),
                    )
                if callable(payload):  # (a no-op when the new row was itself the one to go)
                    self.db.execute("UPDATE outbox SET payload = ? WHERE id = ?", (payload(self._dropped()), row))
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise

    def pending(self, limit: int = 100) -> list[tuple[int, str, bytes]]:
        with self.lock:
            return self.db.execute("SELECT id, topic, payload FROM outbox ORDER BY id LIMIT ?", (limit,)).fetchall()

    def done(self, row_id: int) -> None:
        with self.lock:
            self.db.execute("DELETE FROM outbox WHERE id = ?", (row_id,))

    def _dropped(self) -> int:
        row = self.db.execute("SELECT value FROM counters WHERE name = 'dropped'").fetchone()
        return row[0] if row else 0

    def dropped(self) -> int:
        """Messages dropped to keep within the limit, ever (in this file)."""
        with self.lock:
            return self._dropped()

    def close(self) -> None:
        with self.lock:
            self.db.close()

    def __len__(self) -> int:
        with self.lock:
            return self.db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
