"""A durable outbox: what a process must publish survives broker outages and its own crash.

Messages that must not be lost (experience batches, snapshots, directives) are written to a
SQLite file before anything is sent; the bus client removes a row only after the broker
acknowledged it (PUBACK). Delivery is therefore at least once, and receivers de-duplicate by
(agent, seq). The per-agent counters (experience ``seq``, snapshot ``version``) live in the
same file and are advanced in the same transaction that stores the message, so a number is
never used twice, not even after ``kill -9``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agents._sqlite import open_database

__all__ = ["Outbox", "OutboxItem"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class OutboxItem:
    id: int
    topic: str
    payload: bytes
    qos: int
    retain: bool


class Outbox:
    """FIFO of messages waiting for a broker acknowledgement, plus durable counters.

    ``path=None`` keeps everything in memory (for processes with nothing to lose, and tests).
    Use from one thread (the event loop's).
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._db = open_database(path, _SCHEMA)

    def close(self) -> None:
        self._db.close()

    def counter(self, name: str) -> int:
        """The last value handed out by :meth:`put_counted` for ``name`` (0 if none)."""
        row = self._db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else 0

    def advance_counter(self, name: str, at_least: int) -> None:
        """Raise counter ``name`` to ``at_least`` (never lowers it)."""
        self._db.execute(
            "INSERT INTO counters(name, value) VALUES(?, ?) "
            "ON CONFLICT(name) DO UPDATE SET value = max(value, excluded.value)",
            (name, at_least),
        )

    def put(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> int:
        """Store one message; returns its row id."""
        cursor = self._db.execute(
            "INSERT INTO outbox(topic, payload, qos, retain) VALUES(?, ?, ?, ?)",
            (topic, payload, qos, int(retain)),
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def put_counted(
        self,
        counter: str,
        build: Callable[[int], tuple[str, bytes]],
        *,
        qos: int = 1,
        retain: bool = False,
    ) -> int:
        """Take the next value of ``counter``, build ``(topic, payload)`` with it, store both.

        One transaction: either the message is stored and the counter advanced, or neither.
        Returns the counter value used.
        """
        with self._transaction():
            value = self.counter(counter) + 1
            topic, payload = build(value)
            self.advance_counter(counter, value)
            self.put(topic, payload, qos=qos, retain=retain)
        return value

    def peek(self, limit: int = 64) -> list[OutboxItem]:
        rows = self._db.execute(
            "SELECT id, topic, payload, qos, retain FROM outbox ORDER BY id LIMIT ?", (limit,)
        ).fetchall()
        return [OutboxItem(int(r[0]), r[1], bytes(r[2]), int(r[3]), bool(r[4])) for r in rows]

    def remove(self, item_id: int) -> None:
        self._db.execute("DELETE FROM outbox WHERE id = ?", (item_id,))

    def pending(self, topic: str | None = None) -> int:
        """Messages not yet acknowledged, on ``topic`` or in all."""
        if topic is None:
            return int(self._db.execute("SELECT count(*) FROM outbox").fetchone()[0])
        query = "SELECT count(*) FROM outbox WHERE topic = ?"
        return int(self._db.execute(query, (topic,)).fetchone()[0])

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")
