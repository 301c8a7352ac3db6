"""A durable outbox: what a process must publish survives broker outages and its own crash.

Messages that must not be lost (experience batches, snapshots, directives) are written to a
SQLite file before anything is sent. A plain row is removed once the broker acknowledged it
(PUBACK). A *receipted* row (one of an agent's numbered streams: experience, snapshots,
telemetry) is kept after the PUBACK until the receiver says it recorded it: a broker's
acknowledgement is not delivery (a broker restarted with no memory forgets what it queued).
:meth:`Outbox.receipted` applies a receipt: rows it covers go, rows it lists as missing are
sent again, and so are rows acknowledged long before it that it does not show (the tail of a
stream lost with a broker). Delivery is at least once; receivers de-duplicate by
(agent, seq). Rows waiting for a receipt are bounded (``max_awaiting``): beyond it the oldest
are given up, and counted (``unreceipted_dropped``).

The per-agent counters (experience ``seq``, snapshot ``version``) live in the same file and
are advanced in the same transaction that stores the message, so a number is never used
twice, not even after ``kill -9``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from agents._sqlite import open_database
from agents.exceptions import StorageError

__all__ = ["RESENT", "UNRECEIPTED_DROPPED", "Outbox", "OutboxItem"]

#: Durable counters of what receipts made the outbox do.
RESENT = "resent"
UNRECEIPTED_DROPPED = "unreceipted_dropped"
#: Columns added after the first release, added to an older file when it is opened.
_ADDED_COLUMNS = (("stream", "TEXT"), ("number", "INTEGER"), ("acked", "REAL"))

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL,
    stream TEXT,
    number INTEGER,
    acked REAL
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

    def __init__(self, path: Path | None = None, *, max_awaiting: int = 20_000) -> None:
        self.path = path
        self.max_awaiting = max_awaiting
        self._db = open_database(path, _SCHEMA)
        have = {row[1] for row in self._db.execute("PRAGMA table_info(outbox)")}
        for name, sql_type in _ADDED_COLUMNS:
            if name not in have:
                self._db.execute(f"ALTER TABLE outbox ADD COLUMN {name} {sql_type}")

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

    def _written(self, what: str) -> _Writing:
        """Turns a failed write into :class:`StorageError` naming the file."""
        return _Writing(self.path, what)

    def put(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        stream: str | None = None,
        number: int | None = None,
    ) -> int:
        """Store one message (receipted when ``stream`` and ``number`` are given); its row id."""
        with self._written(f"a message for {topic}"):
            cursor = self._db.execute(
                "INSERT INTO outbox(topic, payload, qos, retain, stream, number) "
                "VALUES(?, ?, ?, ?, ?, ?)",
                (topic, payload, qos, int(retain), stream, number),
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
        receipted: str | None = None,
    ) -> int:
        """Take the next value of ``counter``, build ``(topic, payload)`` with it, store both.

        One transaction: either the message is stored and the counter advanced, or neither.
        With ``receipted`` (a stream's name) the row waits for a receipt after the PUBACK.
        Returns the counter value used.
        """
        with self._written(f"{counter} {self.counter(counter) + 1}"), self._transaction():
            value = self.counter(counter) + 1
            topic, payload = build(value)
            self.advance_counter(counter, value)
            self.put(
                topic, payload, qos=qos, retain=retain, stream=receipted,
                number=value if receipted else None,
            )  # fmt: skip
        return value

    def peek(self, limit: int = 64) -> list[OutboxItem]:
        """The oldest rows not yet acknowledged by the broker."""
        rows = self._db.execute(
            "SELECT id, topic, payload, qos, retain FROM outbox WHERE acked IS NULL "
            "ORDER BY id LIMIT ?",
            (limit,),
        ).fetchall()
        return [OutboxItem(int(r[0]), r[1], bytes(r[2]), int(r[3]), bool(r[4])) for r in rows]

    def remove(self, item_id: int) -> None:
        self._db.execute("DELETE FROM outbox WHERE id = ?", (item_id,))

    def acknowledged(self, item_id: int, now: float) -> None:
        """The broker acknowledged row ``item_id``: a plain row goes, a receipted one waits."""
        with self._transaction():
            self._db.execute("DELETE FROM outbox WHERE id = ? AND stream IS NULL", (item_id,))
            self._db.execute("UPDATE outbox SET acked = ? WHERE id = ?", (now, item_id))
            excess = self.awaiting() - self.max_awaiting
            if excess > 0:
                self._db.execute(
                    "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE acked IS NOT "
                    "NULL ORDER BY id LIMIT ?)",
                    (excess,),
                )
                self.advance_counter(
                    UNRECEIPTED_DROPPED, self.counter(UNRECEIPTED_DROPPED) + excess
                )

    def receipted(
        self, stream: str, *, floor: int, highest: int, missing: Sequence[int], resend_before: float
    ) -> int:
        """Apply a receipt for ``stream``; returns how many rows go out again.

        Rows up to ``floor`` are recorded: they go. Rows the receipt lists as ``missing``, and
        rows above ``highest`` the broker acknowledged before ``resend_before`` (the receiver
        has had time to record them and has not), are sent again (counted as ``resent``).
        """
        with self._transaction():
            self._db.execute("DELETE FROM outbox WHERE stream = ? AND number <= ?", (stream, floor))
            again = 0
            for number in missing:
                again += self._db.execute(
                    "UPDATE outbox SET acked = NULL WHERE stream = ? AND number = ? "
                    "AND acked IS NOT NULL",
                    (stream, number),
                ).rowcount
            again += self._db.execute(
                "UPDATE outbox SET acked = NULL WHERE stream = ? AND number > ? "
                "AND acked IS NOT NULL AND acked < ?",
                (stream, highest, resend_before),
            ).rowcount
            if again:
                self.advance_counter(RESENT, self.counter(RESENT) + again)
        return again

    def renumber(
        self, stream: str, counter: str, after: int, rebuild: Callable[[bytes, int], bytes]
    ) -> int:
        """Number every row of ``stream`` again from ``after + 1``, in order; how many.

        For a data folder older than what its receiver recorded (restored from a backup): the
        numbers it would hand out were used already, and the receiver would drop its new
        messages as duplicates. ``rebuild(payload, number)`` re-encodes a message with its new
        number; every renumbered row is sent (again), and ``counter`` continues after the last.
        """
        with self._written(f"{stream} renumbered after {after}"), self._transaction():
            rows = self._db.execute(
                "SELECT id, payload FROM outbox WHERE stream = ? ORDER BY number, id", (stream,)
            ).fetchall()
            number = after
            for row_id, payload in rows:
                number += 1
                self._db.execute(
                    "UPDATE outbox SET number = ?, payload = ?, acked = NULL WHERE id = ?",
                    (number, rebuild(bytes(payload), number), row_id),
                )
            self.advance_counter(counter, number)
        return len(rows)

    def pending(self, topic: str | None = None) -> int:
        """Messages not yet recorded by their receiver (or, if plain, acknowledged)."""
        if topic is None:
            return int(self._db.execute("SELECT count(*) FROM outbox").fetchone()[0])
        query = "SELECT count(*) FROM outbox WHERE topic = ?"
        return int(self._db.execute(query, (topic,)).fetchone()[0])

    def unsent(self, topic: str | None = None) -> int:
        """Messages the broker has not acknowledged yet, on ``topic`` or in all."""
        if topic is None:
            query = "SELECT count(*) FROM outbox WHERE acked IS NULL"
            return int(self._db.execute(query).fetchone()[0])
        query = "SELECT count(*) FROM outbox WHERE acked IS NULL AND topic = ?"
        return int(self._db.execute(query, (topic,)).fetchone()[0])

    def awaiting(self) -> int:
        """Receipted messages the broker acknowledged, waiting for their receipt."""
        query = "SELECT count(*) FROM outbox WHERE acked IS NOT NULL"
        return int(self._db.execute(query).fetchone()[0])

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if not exc_type:
            self._db.execute("COMMIT")
        elif self._db.in_transaction:
            # SQLite already rolled back after some errors (SQLITE_FULL): rolling back again
            # would fail and hide the error that matters.
            self._db.execute("ROLLBACK")


class _Writing:
    """``with``: an SQLite or OS error while writing becomes :class:`StorageError`."""

    def __init__(self, path: Path | None, what: str) -> None:
        self.path, self.what = path, what

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if isinstance(exc, sqlite3.OperationalError | OSError):
            msg = f"cannot store {self.what} in {self.path or 'the outbox'}: {exc}"
            raise StorageError(msg) from exc
