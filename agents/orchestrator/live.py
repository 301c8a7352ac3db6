"""What ``society run`` shows while it runs: a live table fed by the bus.

:class:`LiveState` is updated from status, telemetry and evaluation messages; the display
renders it as a rich table on a terminal, or as a few plain log lines otherwise.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self

from rich.console import Console
from rich.live import Live
from rich.table import Table

from agents.bus.schemas import Evaluation, Message, Status, Telemetry
from agents.bus.topics import TopicRef
from agents.coordinator.groups import group_of, society_groups
from agents.coordinator.roster import Roster
from agents.coordinator.sharing import SharingGain, ThresholdScale, describe, sharing_gain

__all__ = ["AgentRow", "LiveDisplay", "LiveState"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class AgentRow:
    id: str
    state: str = "starting"
    env: str = ""
    algo: str = ""
    steps: int = 0
    budget: int = 0
    steps_per_second: float = 0.0
    recent_return: float = math.nan
    last_eval: float = math.nan
    #: The latest evaluation as the agent would act with its library (NaN: no library).
    last_recall: float = math.nan
    best_eval: float = math.nan
    last_eval_version: int = 0
    baseline: float = math.nan
    regime: str = ""
    drift_events: int = 0
    #: Regret against the baseline controller as a share of its cost (NaN: not compared).
    regret_ratio: float = math.nan
    #: The peers the agent reports learning from (agents.coordinator.groups).
    learns_from: tuple[str, ...] = ()
    #: The latest snapshot version the agent published (telemetry).
    published_version: int = 0
    #: The latest evaluation per regime: (regime, the agent's with recall, the baseline's).
    regimes: tuple[tuple[str, float, float | None], ...] = ()


@dataclass(frozen=True, slots=True)
class Threshold:
    """What "learned" means for the sharing gain (the scenario's ``[evaluation]``)."""

    value: float
    scale: ThresholdScale = ThresholdScale.RETURN
    window: int = 1


class LiveState:
    """The orchestrator's view of the society, built from bus messages.

    With a ``threshold`` it also keeps a roster of the evaluations (the coordinator's own
    bookkeeping, without the lifelong metrics it has no use for), so that the table can show
    the sharing gain while the run goes.
    """

    def __init__(self, expected: list[str], threshold: Threshold | None = None) -> None:
        self.rows: dict[str, AgentRow] = {agent: AgentRow(agent) for agent in expected}
        self.evaluated: set[tuple[str, int]] = set()
        self.evaluations = 0
        self.threshold = threshold
        self.roster = Roster(lifelong=False)

    def sharing(self) -> SharingGain | None:
        """The twins' steps to the threshold over the sharing agents' (None: no twins)."""
        threshold = self.threshold
        records = self.roster.agents
        if threshold is None or not any(r.twin_of for r in records.values()):
            return None
        return sharing_gain(
            records, threshold.value, scale=threshold.scale, window=threshold.window
        )

    def row(self, agent: str) -> AgentRow:
        if agent not in self.rows:
            self.rows[agent] = AgentRow(agent)
        return self.rows[agent]

    def group_names(self) -> dict[str, str]:
        """Each agent's group (its first member), from what the agents report."""
        rows = list(self.rows.values())
        return group_of(society_groups({row.id: row.learns_from for row in rows}))

    async def on_message(self, ref: TopicRef, message: Message) -> None:  # noqa: ARG002
        if isinstance(message, Status):
            row = self.row(message.agent)
            row.state = message.state
            row.env = message.env_id or row.env
            row.algo = message.algo or row.algo
        elif isinstance(message, Telemetry):
            self._on_telemetry(message)
        elif isinstance(message, Evaluation):
            self._on_evaluation(message)

    def take_final_report(self, agent: str, report: Mapping[str, Any]) -> None:
        """An agent's own report as it stopped (``final.json``): its exact steps and rate.

        Telemetry's rate is over the last seconds, and the last seconds of an agent are its
        checkpoint and flush; the table ends with the same figures as ``summary.json``.
        """
        row = self.row(agent)
        row.steps = int(report.get("env_steps", row.steps))
        row.steps_per_second = float(report.get("steps_per_second", row.steps_per_second))

    def _on_telemetry(self, message: Telemetry) -> None:
        if self.threshold is not None:
            self.roster.on_telemetry(message)
        row = self.row(message.agent)
        row.env, row.algo = message.env_id, message.algo
        row.steps = max(row.steps, message.env_steps)
        row.budget = message.budget_steps
        row.steps_per_second = message.steps_per_second
        row.published_version = max(row.published_version, message.snapshot_version)
        row.drift_events = message.drift_events
        row.regime = message.regime
        if message.regret_episodes and message.regret_baseline_return:
            row.regret_ratio = message.regret / abs(message.regret_baseline_return)
        row.learns_from = tuple(message.learns_from)
        if message.episode_returns:
            row.recent_return = sum(message.episode_returns) / len(message.episode_returns)

    def _on_evaluation(self, message: Evaluation) -> None:
        key = (message.agent, message.version)
        if self.threshold is not None and key not in self.evaluated:
            self.roster.on_evaluation(message)
        row = self.row(message.agent)
        self.evaluated.add(key)
        self.evaluations += 1
        if message.version >= row.last_eval_version:
            row.last_eval_version = message.version
            row.last_eval = message.mean_return
            if message.recall_return is not None:
                row.last_recall = message.recall_return
            if message.baseline_return is not None:
                row.baseline = message.baseline_return
            row.regimes = tuple(
                (
                    score.regime,
                    score.mean_return if score.recall_return is None else score.recall_return,
                    score.baseline_return,
                )
                for score in message.regimes
            )
        if math.isnan(row.best_eval) or message.mean_return > row.best_eval:
            row.best_eval = message.mean_return


def gain_text(gain: SharingGain | None) -> str:
    """The sharing gain as the table's title says it ("" without twins)."""
    return "" if gain is None else describe(gain.as_dict())


def _group(agent: str, groups: dict[str, str]) -> str:
    """The agent's group, or ``-`` when it is alone in it."""
    name = groups.get(agent, agent)
    alone = name == agent and sum(1 for g in groups.values() if g == name) <= 1
    return "-" if alone else name


def _number(value: float, digits: int = 1) -> str:
    return "-" if math.isnan(value) else f"{value:,.{digits}f}"


def _regret(ratio: float) -> str:
    """A regret ratio as a signed percentage: "+3.1%" worse than the controller, "-8.0%" better."""
    return "-" if math.isnan(ratio) else f"{ratio:+.1%}"


def _regimes(regimes: tuple[tuple[str, float, float | None], ...]) -> str:
    """Each regime's latest evaluation (with recall) / the baseline's: "normal 500/500"."""
    return (
        " ".join(
            f"{name} {value:.0f}" + (f"/{baseline:.0f}" if baseline is not None else "")
            for name, value, baseline in regimes
        )
        or "-"
    )


def _lag(row: AgentRow) -> str:
    """Snapshots published and not evaluated yet: how far evaluation is behind this agent."""
    if row.published_version == 0:
        return "-"
    return str(max(0, row.published_version - row.last_eval_version))


def _bar(done: int, total: int, width: int = 12) -> str:
    if total <= 0:
        return f"{done:,}"
    fraction = min(1.0, done / total)
    filled = round(fraction * width)
    return f"{'█' * filled}{'░' * (width - filled)} {fraction:4.0%} {done:,}/{total:,}"


class LiveDisplay:
    """A rich live table on a terminal; periodic log lines when output is not a terminal."""

    def __init__(self, state: LiveState, *, title: str, quiet: bool = False) -> None:
        self.state = state
        self.title = title
        self.quiet = quiet
        self.console = Console(stderr=True)
        self._live: Live | None = None
        self._last_line = 0.0
        self.started = time.monotonic()
        #: What the run waits for at its end ("waiting for 3 evaluations, 120 s left").
        self.waiting = ""

    def __enter__(self) -> Self:
        if not self.quiet and self.console.is_terminal:
            self._live = Live(self.table(), console=self.console, refresh_per_second=2)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.update(self.table())
            self._live.__exit__(None, None, None)
            self._live = None

    def refresh(self) -> None:
        if self.quiet:
            return
        if self._live is not None:
            self._live.update(self.table())
            return
        now = time.monotonic()
        if now - self._last_line >= 15.0:  # noqa: PLR2004
            self._last_line = now
            groups = self.state.group_names()
            gain = gain_text(self.state.sharing())
            if gain:
                log.info("%s", gain)
            for row in self.state.rows.values():
                log.info(
                    "%s %s steps=%d/%d sps=%.0f return=%s eval=%s recall=%s regret=%s group=%s",
                    row.id,
                    row.state,
                    row.steps,
                    row.budget,
                    row.steps_per_second,
                    _number(row.recent_return),
                    _number(row.last_eval),
                    _number(row.last_recall),
                    _regret(row.regret_ratio),
                    _group(row.id, groups),
                )

    def table(self) -> Table:
        elapsed = time.monotonic() - self.started
        gain = gain_text(self.state.sharing())
        table = Table(
            title=f"{self.title} - {elapsed:,.0f} s - {self.state.evaluations} evaluations"
            + (f" - {gain}" if gain else "")
            + (f" - {self.waiting}" if self.waiting else ""),
            title_justify="left",
        )
        for header, justify in (
            ("agent", "left"),
            ("world", "left"),
            ("algo", "left"),
            ("state", "left"),
            ("steps", "left"),
            ("steps/s", "right"),
            ("return", "right"),
            ("eval", "right"),
            ("w/ recall", "right"),
            ("eval lag", "right"),
            ("best", "right"),
            ("baseline", "right"),
            ("per regime (agent/baseline)", "left"),
            ("regret", "right"),
            ("regime", "left"),
            ("drift", "right"),
            ("group", "left"),
        ):
            table.add_column(header, justify=justify)  # type: ignore[arg-type]
        groups = self.state.group_names()
        for row in sorted(self.state.rows.values(), key=lambda r: r.id):
            table.add_row(
                row.id,
                row.env,
                row.algo,
                row.state,
                _bar(row.steps, row.budget),
                f"{row.steps_per_second:,.0f}",
                _number(row.recent_return),
                _number(row.last_eval),
                _number(row.last_recall),
                _lag(row),
                _number(row.best_eval),
                _number(row.baseline),
                _regimes(row.regimes),
                _regret(row.regret_ratio),
                row.regime or "-",
                str(row.drift_events),
                _group(row.id, groups),
            )
        return table
