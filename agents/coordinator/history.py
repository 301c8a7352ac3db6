"""The run's history, in an embedded SQLite database next to the coordinator's data.

It records what the report and a restarted coordinator need: every evaluation, every snapshot
received, telemetry samples, and presence changes. Writes are small and happen on the event
loop; SQLite in WAL mode takes them in microseconds.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from agents._sqlite import open_database
from agents.bus.schemas import Directive, Evaluation, PolicySnapshot, Telemetry

__all__ = ["History"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS evaluations (
    agent TEXT NOT NULL, version INTEGER NOT NULL, step INTEGER NOT NULL,
    env_id TEXT NOT NULL, algo TEXT NOT NULL,
    mean_return REAL NOT NULL, std_return REAL NOT NULL, episodes INTEGER NOT NULL,
    seconds REAL NOT NULL, ts REAL NOT NULL,
    PRIMARY KEY (agent, version)
);
CREATE TABLE IF NOT EXISTS snapshots (
    agent TEXT NOT NULL, version INTEGER NOT NULL, step INTEGER NOT NULL,
    algo TEXT NOT NULL, env_id TEXT NOT NULL, digest TEXT NOT NULL,
    lineage_agent TEXT, lineage_version INTEGER, received_ts REAL NOT NULL,
    PRIMARY KEY (agent, version)
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


class History:
    def __init__(self, path: Path | None) -> None:
        self._db = open_database(path, _SCHEMA)

    def close(self) -> None:
        self._db.close()

    def record_evaluation(self, evaluation: Evaluation) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO evaluations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
            ),
        )

    def record_snapshot(self, snapshot: PolicySnapshot) -> None:
        lineage = snapshot.lineage
        self._db.execute(
            "INSERT OR IGNORE INTO snapshots VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
            ),
        )

    def record_telemetry(self, telemetry: Telemetry) -> None:
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
        rows = self._db.execute(
            "SELECT agent, version, step, lineage_agent, lineage_version FROM snapshots "
            "WHERE lineage_agent IS NOT NULL ORDER BY received_ts"
        ).fetchall()
        seen: set[tuple[str, str, int]] = set()
        table: list[dict[str, object]] = []
        for agent, version, step, source, source_version in rows:
            key = (agent, source, source_version)
            if key in seen:
                continue
            seen.add(key)
            table.append(
                {"agent": agent, "version": version, "step": step,
                 "from_agent": source, "from_version": source_version}
            )  # fmt: skip
        return table

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

    def record_presence(self, agent: str, state: str) -> None:
        self._db.execute("INSERT INTO presence VALUES (?, ?, ?)", (agent, time.time(), state))

    def evaluations(self) -> list[tuple[str, int, int, float]]:
        rows = self._db.execute(
            "SELECT agent, version, step, mean_return FROM evaluations ORDER BY agent, version"
        ).fetchall()
        return [(str(a), int(v), int(s), float(m)) for a, v, s, m in rows]
