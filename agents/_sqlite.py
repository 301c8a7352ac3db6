"""Opening the project's SQLite files (the outbox, the run history) the same way."""

from __future__ import annotations

import sqlite3
from pathlib import Path

__all__ = ["open_database"]


def open_database(path: Path | None, schema: str) -> sqlite3.Connection:
    """Open (or create) ``path`` in autocommit mode, WAL journal, with ``schema`` applied.

    ``path=None`` gives an in-memory database. ``synchronous=NORMAL`` in WAL mode makes every
    committed transaction survive a crash of this process (not of the machine's power), at a
    fraction of the cost of ``FULL``.
    """
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(":memory:" if path is None else str(path), isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.executescript(schema)
    return db
