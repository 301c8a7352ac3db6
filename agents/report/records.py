"""The report's records: plain, typed, immutable views of what a run recorded."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.report.values import as_str

__all__ = [
    "Adoption",
    "AgentData",
    "Block",
    "EvalRecord",
    "HealthSample",
    "RegimeResult",
    "RunData",
    "TrainingSample",
]


@dataclass(frozen=True, slots=True)
class RegimeResult:
    """One evaluated snapshot on one regime, next to the references on the same seeds."""

    mean_return: float
    baseline_return: float | None = None
    random_return: float | None = None
    recall_return: float | None = None


@dataclass(frozen=True, slots=True)
class EvalRecord:
    """One evaluated snapshot of one agent."""

    version: int
    step: int
    mean_return: float
    baseline_return: float | None = None
    train_regime: str = ""
    regimes: Mapping[str, RegimeResult] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Block:
    """A stretch of an agent's life in one regime, steps ``(start_step, end_step]``."""

    regime: str
    start_step: int
    end_step: int


@dataclass(frozen=True, slots=True)
class TrainingSample:
    """A telemetry sample: the agent's step count and its recent training episodes' return."""

    step: int
    mean_return: float


@dataclass(frozen=True, slots=True)
class AgentData:
    id: str
    env: str = ""
    algo: str = ""
    strategy: str = ""
    twin_of: str = ""
    env_steps: int = 0
    episodes: int = 0
    drift_events: int = 0
    adaptations: int = 0
    adoptions: int = 0
    #: The peers it reported learning from last, its federated rounds, and its group.
    learns_from: tuple[str, ...] = ()
    federated_rounds: int = 0
    group: str = ""
    best_eval_return: float | None = None
    last_eval_return: float | None = None
    #: The last evaluation as the agent would act with its library (see the summary).
    last_eval_with_recall: float | None = None
    baseline: str = ""
    baseline_eval_return: float | None = None
    #: Regret against the baseline controller over the run: the baseline's summed return
    #: minus the deployed one's, and that as a share of the baseline's (``None``: not compared).
    regret: float | None = None
    regret_ratio: float | None = None
    evaluations: tuple[EvalRecord, ...] = ()
    #: Regime blocks from the lifelong report (found from training episodes, so exact).
    blocks: tuple[Block, ...] = ()
    training: tuple[TrainingSample, ...] = ()
    lifelong: Mapping[str, Any] | None = None

    @property
    def regimes(self) -> list[str]:
        """Every regime the agent was evaluated on, in first-seen order."""
        seen: dict[str, None] = {}
        for point in self.evaluations:
            seen.update(dict.fromkeys(point.regimes))
        return list(seen)

    def regime_changes(self) -> list[tuple[int, str]]:
        """Steps at which the agent's world moved to another regime, and the new regime.

        From the lifelong report's blocks when there are any (they come from the training
        episodes, so the step is exact); otherwise from the evaluations' ``train_regime``, at
        the first snapshot taken in the new regime (the change happened at most one
        evaluation interval before).
        """
        if len(self.blocks) > 1:
            return [(block.start_step, block.regime) for block in self.blocks[1:]]
        changes = []
        previous = ""
        for point in sorted(self.evaluations, key=lambda e: e.step):
            if not point.train_regime:
                continue
            if previous and point.train_regime != previous:
                changes.append((point.step, point.train_regime))
            previous = point.train_regime
        return changes


@dataclass(frozen=True, slots=True)
class Adoption:
    """An agent took on another agent's weights: ``agent`` v``version`` came from ``from_*``."""

    agent: str
    version: int
    step: int
    from_agent: str
    from_version: int


@dataclass(frozen=True, slots=True)
class HealthSample:
    """The coordinator's bus counters at one moment (cumulative since it started)."""

    ts: float
    connected: bool
    received: int
    rejected: int
    duplicates: int
    reconnects: int
    backlog: int


@dataclass(frozen=True, slots=True)
class RunData:
    """Everything the report shows, read from one run folder."""

    folder: Path
    summary: Mapping[str, Any]
    agents: tuple[AgentData, ...] = ()
    adoptions: tuple[Adoption, ...] = ()
    health: tuple[HealthSample, ...] = ()
    directives: Mapping[str, int] = field(default_factory=dict)
    sharing: Mapping[str, Any] | None = None
    has_history: bool = False

    @property
    def title(self) -> str:
        society = as_str(self.summary.get("society")) or self.folder.name
        scenario = as_str(self.summary.get("scenario"))
        return f"society {society}" + (f" - scenario {scenario}" if scenario else "")
