"""The run's history, in an embedded SQLite database next to the coordinator's data.

It records what the report and a restarted coordinator need: every evaluation, every snapshot
received, telemetry samples, and presence changes. Writes are small and happen on the event
loop; SQLite in WAL mode takes them in microseconds.

This module owns ``history.sqlite``: its schema and every query on it. The coordinator writes
and reads it back through :class:`History`; the report reads it through :class:`HistoryReader`,
read-only and defensively (a file from an older build has fewer tables or columns).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from agents._sqlite import open_database
from agents.bus.codec import decode_as, encode
from agents.bus.schemas import Directive, Evaluation, Lineage, PolicySnapshot, Telemetry

__all__ = ["History", "HistoryReader"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS evaluations (
    agent TEXT NOT NULL, version INTEGER NOT NULL, step INTEGER NOT NULL,
    env_id TEXT NOT NULL, algo TEXT NOT NULL,
    mean_return REAL NOT NULL, std_return REAL NOT NULL, episodes INTEGER NOT NULL,
    seconds REAL NOT NULL, ts REAL NOT NULL,
    message BLOB NOT NULL,
    PRIMARY KEY (agent, version)
);
CREATE TABLE IF NOT EXISTS snapshots (
    agent TEXT NOT NULL, version INTEGER NOT NULL, step INTEGER NOT NULL,
    algo TEXT NOT NULL, env_id TEXT NOT NULL, digest TEXT NOT NULL,
    lineage_agent TEXT, lineage_version INTEGER, received_ts REAL NOT NULL,
    hyperparams TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (agent, version)
);
CREATE TABLE IF NOT EXISTS pending_evaluations (
    agent TEXT NOT NULL, version INTEGER NOT NULL, payload BLOB NOT NULL,
    PRIMARY KEY (agent, version)
);
CREATE TABLE IF NOT EXISTS experience_seen (
    agent TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (agent, seq)
);
CREATE TABLE IF NOT EXISTS episodes (
    agent TEXT NOT NULL, step INTEGER NOT NULL, regime TEXT NOT NULL, value REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS relearned_episodes (
    agent TEXT NOT NULL, step INTEGER NOT NULL, regime TEXT NOT NULL, value REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS telemetry_seen (
    agent TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (agent, seq)
);
CREATE TABLE IF NOT EXISTS telemetry (
    agent TEXT NOT NULL, ts REAL NOT NULL, env_steps INTEGER NOT NULL,
    steps_per_second REAL NOT NULL, episodes INTEGER NOT NULL, mean_return REAL
);
CREATE TABLE IF NOT EXISTS directives (
    id TEXT PRIMARY KEY, ts REAL NOT NULL, agent TEXT NOT NULL, action TEXT NOT NULL,
    source_agent TEXT, source_version INTEGER, hyperparams TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS bus_health (
    ts REAL NOT NULL, connected INTEGER NOT NULL, received INTEGER NOT NULL,
    rejected INTEGER NOT NULL, duplicates INTEGER NOT NULL, reconnects INTEGER NOT NULL,
    evaluation_backlog INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS presence (
    agent TEXT NOT NULL, ts REAL NOT NULL, state TEXT NOT NULL
);
"""

#: Tables with an ``agent`` column: what is known of one agent, set aside as a whole.
_AGENT_TABLES = (
    "evaluations", "snapshots", "pending_evaluations", "experience_seen", "telemetry_seen",
    "episodes", "relearned_episodes", "telemetry", "directives", "presence",
)  # fmt: skip

#: Snapshots that name a lineage, oldest first: (agent, version, step, from agent, from version).
_ADOPTIONS = (
    "SELECT agent, version, step, lineage_agent, lineage_version FROM snapshots "
    "WHERE lineage_agent IS NOT NULL ORDER BY received_ts"
)

Adoption = tuple[str, int, int, str, int]
"""(agent, version, step, from agent, from version) of the first snapshot after an adoption."""


def _first_adoptions(rows: Iterable[tuple[Any, ...]]) -> list[Adoption]:
    """Each adoption once: an agent's later snapshots repeat the lineage they inherited."""
    seen: set[tuple[str, str, int]] = set()
    found: list[Adoption] = []
    for agent, version, step, source, source_version in rows:
        key = (str(agent), str(source), int(source_version or 0))
        if key not in seen:
            seen.add(key)
            found.append((key[0], int(version), int(step), key[1], key[2]))
    return found


class History:
    def __init__(self, path: Path | None) -> None:
        self._db = open_database(path, _SCHEMA)

    def close(self) -> None:
        self._db.close()

    def record_evaluation(self, evaluation: Evaluation) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO evaluations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                evaluation.agent,
                evaluation.version,
                evaluation.step,
                evaluation.env_id,
                evaluation.algo,
                evaluation.mean_return,
                evaluation.std_return,
                evaluation.episodes,
                evaluation.seconds,
                evaluation.ts,
                encode(evaluation),
            ),
        )

    def record_snapshot(self, snapshot: PolicySnapshot) -> None:
        lineage = snapshot.lineage
        self._db.execute(
            "INSERT OR IGNORE INTO snapshots VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                snapshot.agent,
                snapshot.version,
                snapshot.step,
                snapshot.algo,
                snapshot.env_id,
                snapshot.digest,
                lineage.agent if lineage else None,
                lineage.version if lineage else None,
                time.time(),
                json.dumps(snapshot.hyperparams, sort_keys=True),
            ),
        )

    def add_pending(self, snapshot: PolicySnapshot) -> None:
        """Keep a received snapshot until it is evaluated: a restart must not skip it."""
        self._db.execute(
            "INSERT OR IGNORE INTO pending_evaluations VALUES (?, ?, ?)",
            (snapshot.agent, snapshot.version, encode(snapshot)),
        )

    def remove_pending(self, agent: str, version: int) -> None:
        self._db.execute(
            "DELETE FROM pending_evaluations WHERE agent = ? AND version = ?", (agent, version)
        )

    def pending(self) -> list[PolicySnapshot]:
        rows = self._db.execute(
            "SELECT payload FROM pending_evaluations ORDER BY agent, version"
        ).fetchall()
        return [decode_as(PolicySnapshot, bytes(row[0])) for row in rows]

    def record_experience(self, agent: str, seq: int) -> None:
        self._db.execute("INSERT OR IGNORE INTO experience_seen VALUES (?, ?)", (agent, seq))

    def record_telemetry(
        self,
        telemetry: Telemetry,
        episodes: Sequence[tuple[int, str, float]],
        relearned: Sequence[tuple[int, str, float]] = (),
    ) -> None:
        """A telemetry sample, its episodes (first lives) and those re-learned after a resume."""
        agent = telemetry.agent
        for table, rows in (("episodes", episodes), ("relearned_episodes", relearned)):
            self._db.executemany(
                f"INSERT INTO {table} VALUES (?, ?, ?, ?)",  # noqa: S608 - our own table names
                [(agent, step, regime, value) for step, regime, value in rows],
            )
        if telemetry.seq > 0:
            self._db.execute(
                "INSERT OR IGNORE INTO telemetry_seen VALUES (?, ?)", (agent, telemetry.seq)
            )
        returns = telemetry.episode_returns
        self._db.execute(
            "INSERT INTO telemetry VALUES (?, ?, ?, ?, ?, ?)",
            (
                telemetry.agent,
                telemetry.ts,
                telemetry.env_steps,
                telemetry.steps_per_second,
                telemetry.episodes,
                sum(returns) / len(returns) if returns else None,
            ),
        )

    def record_directive(self, directive: Directive) -> None:
        source = directive.source
        self._db.execute(
            "INSERT OR IGNORE INTO directives VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                directive.id,
                directive.ts,
                directive.agent,
                directive.action,
                source.agent if source else None,
                source.version if source else None,
                json.dumps(directive.hyperparams, sort_keys=True),
            ),
        )

    def lineage(self) -> list[dict[str, object]]:
        """Every adoption seen in a snapshot: who took whose weights, from which version."""
        return [
            {"agent": agent, "version": version, "step": step,
             "from_agent": source, "from_version": source_version}
            for agent, version, step, source, source_version in _first_adoptions(
                self._db.execute(_ADOPTIONS).fetchall()
            )
        ]  # fmt: skip

    def record_bus_health(
        self, *, connected: bool, received: int, rejected: int, duplicates: int,
        reconnects: int, evaluation_backlog: int,
    ) -> None:  # fmt: skip
        """A sample of the bus's health (cumulative counts), for the report's time series."""
        self._db.execute(
            "INSERT INTO bus_health VALUES (?, ?, ?, ?, ?, ?, ?)",
            (time.time(), int(connected), received, rejected, duplicates, reconnects,
             evaluation_backlog),
        )  # fmt: skip

    # --- reading back, for a restarted coordinator -----------------------------------------

    def evaluations_messages(self) -> list[Evaluation]:
        rows = self._db.execute("SELECT message FROM evaluations ORDER BY ts").fetchall()
        return [decode_as(Evaluation, bytes(row[0])) for row in rows]

    def snapshot_rows(self) -> list[tuple[str, int, int, str, str, Lineage | None, dict[str, Any]]]:
        rows = self._db.execute(
            "SELECT agent, version, step, algo, env_id, lineage_agent, lineage_version, "
            "hyperparams FROM snapshots ORDER BY agent, version"
        ).fetchall()
        return [
            (a, v, s, algo, env, Lineage(agent=la, version=lv) if la else None, json.loads(hp))
            for a, v, s, algo, env, la, lv, hp in rows
        ]

    def experience_seen(self) -> list[tuple[str, int]]:
        rows = self._db.execute("SELECT agent, seq FROM experience_seen ORDER BY agent, seq")
        return [(str(a), int(s)) for a, s in rows.fetchall()]

    def archive_agent(self, agent: str, archived: str) -> None:
        """Set ``agent``'s rows aside under the name ``archived`` (an earlier life of it)."""
        for table in _AGENT_TABLES:
            self._db.execute(
                f"UPDATE OR REPLACE {table} SET agent = ? WHERE agent = ?",  # noqa: S608 - ours
                (archived, agent),
            )

    def telemetry_seen(self) -> list[tuple[str, int]]:
        rows = self._db.execute("SELECT agent, seq FROM telemetry_seen ORDER BY agent, seq")
        return [(str(a), int(s)) for a, s in rows.fetchall()]

    def relearned_counts(self) -> dict[str, int]:
        rows = self._db.execute("SELECT agent, count(*) FROM relearned_episodes GROUP BY agent")
        return {str(a): int(n) for a, n in rows.fetchall()}

    def episode_rows(self) -> list[tuple[str, int, str, float]]:
        rows = self._db.execute("SELECT agent, step, regime, value FROM episodes ORDER BY rowid")
        return [(str(a), int(s), str(r), float(v)) for a, s, r, v in rows.fetchall()]

    def directives_count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM directives").fetchone()[0])

    def record_presence(self, agent: str, state: str) -> None:
        self._db.execute("INSERT INTO presence VALUES (?, ?, ?)", (agent, time.time(), state))

    def evaluations(self) -> list[tuple[str, int, int, float]]:
        rows = self._db.execute(
            "SELECT agent, version, step, mean_return FROM evaluations ORDER BY agent, version"
        ).fetchall()
        return [(str(a), int(v), int(s), float(m)) for a, v, s, m in rows]


class HistoryReader:
    """Read-only queries on a ``history.sqlite`` for the report.

    Opened read-only (``mode=ro``), so rendering a report never changes a run (nor leaves
    files beside it, see :meth:`_connect`). A missing file,
    table or column reads as empty: histories from older builds have fewer tables, and the
    report shows what they have. Values come back as stored; the report checks them.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.readable = False
        if path is not None:
            with contextlib.suppress(sqlite3.Error), self._connect() as db:
                db.execute("SELECT count(*) FROM sqlite_master").fetchone()
                self.readable = True

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        assert self.path is not None
        # A history its coordinator closed has no write-ahead log left: opened immutable,
        # SQLite reads the file alone and creates no -wal/-shm files beside it. One with a log
        # (its coordinator runs, or died) is read with the log, which takes those files.
        wal = self.path.with_name(self.path.name + "-wal")
        mode = "mode=ro" if wal.exists() else "mode=ro&immutable=1"
        db = sqlite3.connect(f"{self.path.resolve().as_uri()}?{mode}", uri=True)
        try:
            yield db
        finally:
            db.close()

    def _rows(self, query: str) -> list[tuple[Any, ...]]:
        if not self.readable:
            return []
        try:
            with self._connect() as db:
                return list(db.execute(query).fetchall())
        except sqlite3.Error:
            return []

    def evaluations(self) -> list[tuple[Any, Any, Any, Any, Any]]:
        """(agent, version, step, mean return, message or None) of every evaluation.

        Newer histories keep each evaluation message whole (``message``), with per-regime
        scores; older ones only the overall return.
        """
        rows = self._rows("SELECT agent, version, step, mean_return, message FROM evaluations")
        if rows:
            return [(a, v, s, m, message) for a, v, s, m, message in rows]
        return [
            (a, v, s, m, None)
            for a, v, s, m in self._rows(
                "SELECT agent, version, step, mean_return FROM evaluations"
            )
        ]

    def episodes(self) -> list[tuple[str, int, str]]:
        """(agent, step, regime) of every training episode, in order (newer histories)."""
        return [
            (str(agent), int(step), str(regime))
            for agent, step, regime in self._rows(
                "SELECT agent, step, regime FROM episodes ORDER BY rowid"
            )
        ]

    def training(self) -> list[tuple[str, int, Any]]:
        """(agent, env steps, mean return) of every telemetry sample with a return."""
        return [
            (str(agent), int(steps), mean)
            for agent, steps, mean in self._rows(
                "SELECT agent, env_steps, mean_return FROM telemetry "
                "WHERE mean_return IS NOT NULL ORDER BY agent, ts"
            )
        ]

    def bus_health(self) -> list[tuple[float, bool, int, int, int, int, int]]:
        """(ts, connected, received, rejected, duplicates, reconnects, backlog) samples."""
        return [
            (float(ts), bool(up), int(rec), int(rej), int(dup), int(rc), int(bl))
            for ts, up, rec, rej, dup, rc, bl in self._rows(
                "SELECT ts, connected, received, rejected, duplicates, reconnects, "
                "evaluation_backlog FROM bus_health ORDER BY ts"
            )
        ]

    def adoptions(self) -> list[Adoption]:
        """Every adoption seen in a snapshot, once, oldest first."""
        return _first_adoptions(self._rows(_ADOPTIONS))

    def directive_counts(self) -> dict[str, int]:
        """Directives sent, by action."""
        return {
            str(action): int(count)
            for action, count in self._rows(
                "SELECT action, count(*) FROM directives GROUP BY action ORDER BY action"
            )
        }
