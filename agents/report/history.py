"""Read-only queries on a run's ``history.sqlite``, the coordinator's time series.

Opened read-only (``mode=ro``), so rendering a report never changes a run. A missing file,
table or column reads as empty: histories from older builds have fewer tables, and the report
shows what they have.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agents.bus.codec import decode_as
from agents.bus.schemas import Evaluation
from agents.exceptions import SocietyError
from agents.report.records import Adoption, EvalRecord, HealthSample, RegimeResult, TrainingSample
from agents.report.values import as_float

__all__ = ["HistoryReader", "evaluation_message"]


class HistoryReader:
    """Read-only queries on ``history.sqlite``; a missing file or table reads as empty."""

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
        db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True)
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

    def evaluations(self) -> dict[str, list[EvalRecord]]:
        """Evaluations from the history, for agents the summary does not cover.

        Newer histories keep each evaluation message whole (``message``), with per-regime
        scores; older ones only the overall return.
        """
        table: dict[str, list[EvalRecord]] = {}
        rows = self._rows("SELECT agent, version, step, mean_return, message FROM evaluations")
        if not rows:
            rows = [
                (*row, None)
                for row in self._rows("SELECT agent, version, step, mean_return FROM evaluations")
            ]
        for agent, version, step, mean, message in rows:
            record = evaluation_message(message)
            if record is None and (value := as_float(mean)) is not None:
                record = EvalRecord(int(version), int(step), value)
            if record is not None:
                table.setdefault(str(agent), []).append(record)
        return table

    def episodes(self) -> dict[str, list[tuple[int, str]]]:
        """Each agent's training episodes as (step, regime), from newer histories."""
        table: dict[str, list[tuple[int, str]]] = {}
        for agent, step, regime in self._rows(
            "SELECT agent, step, regime FROM episodes ORDER BY rowid"
        ):
            table.setdefault(str(agent), []).append((int(step), str(regime)))
        return table

    def training(self) -> dict[str, list[TrainingSample]]:
        table: dict[str, list[TrainingSample]] = {}
        for agent, steps, mean in self._rows(
            "SELECT agent, env_steps, mean_return FROM telemetry "
            "WHERE mean_return IS NOT NULL ORDER BY agent, ts"
        ):
            if (value := as_float(mean)) is not None:
                table.setdefault(str(agent), []).append(TrainingSample(int(steps), value))
        return table

    def health(self) -> tuple[HealthSample, ...]:
        return tuple(
            HealthSample(float(ts), bool(up), int(rec), int(rej), int(dup), int(rc), int(bl))
            for ts, up, rec, rej, dup, rc, bl in self._rows(
                "SELECT ts, connected, received, rejected, duplicates, reconnects, "
                "evaluation_backlog FROM bus_health ORDER BY ts"
            )
        )

    def adoptions(self) -> tuple[Adoption, ...]:
        seen: set[tuple[str, str, int]] = set()
        found = []
        for agent, version, step, source, source_version in self._rows(
            "SELECT agent, version, step, lineage_agent, lineage_version FROM snapshots "
            "WHERE lineage_agent IS NOT NULL ORDER BY received_ts"
        ):
            key = (str(agent), str(source), int(source_version or 0))
            if key not in seen:
                seen.add(key)
                found.append(Adoption(key[0], int(version), int(step), key[1], key[2]))
        return tuple(found)

    def directive_counts(self) -> dict[str, int]:
        return {
            str(action): int(count)
            for action, count in self._rows(
                "SELECT action, count(*) FROM directives GROUP BY action ORDER BY action"
            )
        }


def evaluation_message(blob: object) -> EvalRecord | None:
    """An evaluation kept whole in the history, checked like anything read from outside."""
    if not isinstance(blob, bytes):
        return None
    try:
        message = decode_as(Evaluation, blob)
    except SocietyError:
        return None
    return EvalRecord(
        version=message.version,
        step=message.step,
        mean_return=message.mean_return,
        baseline_return=message.baseline_return,
        train_regime=message.train_regime,
        regimes={
            score.regime: RegimeResult(
                score.mean_return, score.baseline_return, score.random_return, score.recall_return
            )
            for score in message.regimes
        },
    )
