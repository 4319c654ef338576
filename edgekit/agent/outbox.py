"""Store-and-forward for telemetry: every window is written to SQLite first and deleted only
once the broker acknowledged it (QoS 1), so nothing is lost while offline. Past ``limit``
rows the oldest are dropped and counted."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path


class Outbox:
    def __init__(self, path: str | Path, limit: int = 10_000) -> None:
        self.db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY, topic TEXT, payload BLOB)")
        self.db.execute("CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER)")
        self.limit = limit
        self.lock = threading.Lock()

    def put(self, topic: str, payload: bytes) -> None:
        with self.lock:
            self.db.execute("INSERT INTO outbox (topic, payload) VALUES (?, ?)", (topic, payload))
            excess = self.db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] - self.limit
            if excess > 0:
                self.db.execute("DELETE FROM outbox WHERE id IN (SELECT id FROM outbox ORDER BY id LIMIT ?)", (excess,))
                self.db.execute(
                    "INSERT INTO counters VALUES ('dropped', ?) ON CONFLICT(name) DO UPDATE SET "
                    "value = value + excluded.value",
                    (excess,),
                )

    def pending(self, limit: int = 100) -> list[tuple[int, str, bytes]]:
        with self.lock:
            return self.db.execute("SELECT id, topic, payload FROM outbox ORDER BY id LIMIT ?", (limit,)).fetchall()

    def done(self, row_id: int) -> None:
        with self.lock:
            self.db.execute("DELETE FROM outbox WHERE id = ?", (row_id,))

    def dropped(self) -> int:
        row = self.db.execute("SELECT value FROM counters WHERE name = 'dropped'").fetchone()
        return row[0] if row else 0

    def __len__(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
