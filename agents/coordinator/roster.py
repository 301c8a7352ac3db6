"""The coordinator's roster of the society: who is there, how far along, how good.

Pure bookkeeping, no I/O: the coordinator feeds it messages and evaluation results, the
Prometheus collector and the summary read it. (Not a *registry*: in this project that word
means a table of names to build things from, as gymnasium's and prometheus_client's are, and
:mod:`agents.worlds.registry`, which registers the built-in worlds with gymnasium.)
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from agents.bus.schemas import (
    Evaluation,
    HyperValue,
    Lineage,
    PolicySnapshot,
    RegimeScore,
    Status,
    Telemetry,
)
from agents.coordinator.groups import group_of, society_groups
from agents.coordinator.lifelong import (
    EpisodePoint,
    EvalPoint,
    LifelongReport,
    lifelong_report,
    normalise,
    reference_spans,
)
from agents.regret import Regret

__all__ = ["AgentRecord", "EvaluationPoint", "Roster", "lifelong_metrics"]

_MAX_EPISODES = 200_000
#: Peers an agent's run-long "learned from" keeps at most (a telemetry names at most 256).
_MAX_PEERS_IN_RUN = 256


@dataclass(frozen=True, slots=True)
class EvaluationPoint:
    """One evaluated snapshot: overall and per-regime returns, and the baseline's."""

    version: int
    step: int
    mean_return: float
    std_return: float
    regimes: tuple[RegimeScore, ...] = ()
    baseline: str = ""
    baseline_return: float | None = None
    train_regime: str = ""
    #: Mean over regimes of what the agent achieves recalling from its library (``None``:
    #: no library); see :attr:`agents.bus.schemas.Evaluation.recall_return`.
    recall_return: float | None = None

    @property
    def with_recall(self) -> float:
        """The agent's worth across regimes: with its library where it has one."""
        return self.mean_return if self.recall_return is None else self.recall_return

    def as_summary(self) -> dict[str, object]:
        return {
            "version": self.version,
            "step": self.step,
            "train_regime": self.train_regime,
            "mean_return": self.mean_return,
            "recall_return": self.recall_return,
            "baseline_return": self.baseline_return,
            "regimes": {
                score.regime: {
                    "mean_return": score.mean_return,
                    "baseline_return": score.baseline_return,
                    "random_return": score.random_return,
                    "recall_return": score.recall_return,
                    "recall_from": score.recall_from,
                    "metrics": score.metrics,
                    "baseline_metrics": score.baseline_metrics,
                }
                for score in self.regimes
            },
        }


@dataclass(slots=True)
class AgentRecord:
    """Everything the coordinator knows about one agent."""

    id: str
    state: str = "unknown"
    #: The life of the agent this record is about (``Message`` docstring); 0: not said.
    incarnation: int = 0
    env_id: str = ""
    algo: str = ""
    env_steps: int = 0
    budget_steps: int = 0
    steps_per_second: float = 0.0
    episodes: int = 0
    recent_return: float = math.nan
    experience_batches_published: int = 0
    experience_batches_received: int = 0
    snapshots_published: int = 0
    snapshots_received: int = 0
    latest_version: int = 0
    latest_snapshot_step: int = 0
    outbox_pending: int = 0
    regime: str = ""
    strategy: str = ""
    drift_events: int = 0
    adaptations: int = 0
    context: int = 0
    shares: tuple[str, ...] = ()
    twin_of: str = ""
    peer_transitions: int = 0
    #: The peers the agent reports learning from lately, and its federated rounds.
    learns_from: tuple[str, ...] = ()
    #: Every peer it reported learning from at some point of the run (at most
    #: ``_MAX_PEERS_IN_RUN``): a summary describes the run, ``learns_from`` the latest rounds.
    learned_from_in_run: set[str] = field(default_factory=set)
    federates_with: tuple[str, ...] = ()
    federated_rounds: int = 0
    #: Its group's name (agents.coordinator.groups), set by ``Roster.regroup``.
    group: str = ""
    #: The agent's regret against the baseline controller (see ``Telemetry``).
    regret: Regret = field(default_factory=Regret)
    #: The latest snapshot's hyperparameters and lineage; adoptions seen in the lineage.
    hyperparams: dict[str, HyperValue] = field(default_factory=dict)
    #: The device the agent's snapshots announce (the world's parameters, ``env_kwargs``).
    device: dict[str, HyperValue] = field(default_factory=dict)
    lineage: Lineage | None = None
    adoptions: int = 0
    #: The snapshot version the agent had when evolution last gave it a directive.
    directed_at_version: int = -1
    #: The step from which the agent is next ready for evolution (``evolution_every_steps``;
    #: None until its first evaluation).
    evolution_ready_at: int | None = None
    evaluations: list[EvaluationPoint] = field(default_factory=list)
    #: Training episodes as (step, regime, return), for recovery times. Bounded: a lifelong
    #: agent's history is not.
    episode_log: deque[tuple[int, str, float]] = field(
        default_factory=lambda: deque(maxlen=_MAX_EPISODES)
    )
    #: The step of the latest episode recorded in its first life (-1: none yet).
    last_episode_step: int = -1
    #: Episodes of steps learned again after the agent resumed from an older checkpoint.
    episodes_relearned: int = 0
    #: The latest telemetry's episodes as (first lives, re-learned), for the history.
    latest_episodes: tuple[list[tuple[int, str, float]], list[tuple[int, str, float]]] = (
        [],
        [],
    )
    #: The lifelong metrics, recomputed after every evaluation.
    lifelong: LifelongReport | None = None

    @property
    def last_eval_return(self) -> float | None:
        return self.evaluations[-1].mean_return if self.evaluations else None

    @property
    def best_eval_return(self) -> float | None:
        return max(e.mean_return for e in self.evaluations) if self.evaluations else None

    @property
    def last_eval_with_recall(self) -> float | None:
        """The latest evaluation as the agent would do with its library (see ``with_recall``)."""
        return self.evaluations[-1].with_recall if self.evaluations else None

    @property
    def baseline(self) -> str:
        return self.evaluations[-1].baseline if self.evaluations else ""

    @property
    def baseline_eval_return(self) -> float | None:
        return self.evaluations[-1].baseline_return if self.evaluations else None

    def as_summary(self, *, group: str = "") -> dict[str, object]:
        """What ``summary.json`` keeps of the agent; ``group``: its group over the run."""
        return {
            "id": self.id,
            "state": self.state,
            "env": self.env_id,
            "algo": self.algo,
            "env_steps": self.env_steps,
            "episodes": self.episodes,
            "experience_batches_published": self.experience_batches_published,
            "experience_batches_received": self.experience_batches_received,
            "snapshots_published": self.snapshots_published,
            "snapshots_received": self.snapshots_received,
            "snapshots_evaluated": len(self.evaluations),
            "latest_snapshot_version": self.latest_version,
            "best_eval_return": self.best_eval_return,
            "last_eval_return": self.last_eval_return,
            "last_eval_with_recall": self.last_eval_with_recall,
            "baseline": self.baseline,
            "baseline_eval_return": self.baseline_eval_return,
            "strategy": self.strategy,
            "shares": list(self.shares),
            "twin_of": self.twin_of,
            "peer_transitions": self.peer_transitions,
            "learns_from": sorted(self.learned_from_in_run),
            "federated_rounds": self.federated_rounds,
            "group": group or self.id,
            "regret": self.regret.as_dict(),
            "episodes_relearned": self.episodes_relearned,
            "adoptions": self.adoptions,
            "lineage": None
            if self.lineage is None
            else {"agent": self.lineage.agent, "version": self.lineage.version},
            "drift_events": self.drift_events,
            "adaptations": self.adaptations,
            "lifelong": self.lifelong.as_dict() if self.lifelong is not None else None,
            "evaluations": [e.as_summary() for e in self.evaluations],
        }


def lifelong_metrics(record: AgentRecord) -> LifelongReport:
    """The agent's L2M metrics on normalised scores (0: a random controller, 1: the baseline).

    Each regime is normalised with the references of its latest evaluation, on a unit that
    cannot collapse where the baseline is no better than random (``reference_spans``); a
    regime without both references keeps raw returns.
    """
    references: dict[str, tuple[float, float]] = {}
    for point in record.evaluations:
        for score in point.regimes:
            if score.random_return is not None and score.baseline_return is not None:
                references[score.regime] = (score.random_return, score.baseline_return)

    spans = reference_spans(references)

    def scale(regime: str, value: float) -> float:
        if regime in references:
            random, baseline = references[regime]
            return normalise(value, random, baseline, span=spans[regime])
        return value

    # A lifelong agent's score on a regime is what it achieves there after recalling its best
    # remembered policy, which it does by itself when that regime comes back.
    evals = [
        EvalPoint(
            step=point.step,
            train_regime=point.train_regime,
            scores={s.regime: scale(s.regime, _recalled(s)) for s in point.regimes},
        )
        for point in record.evaluations
    ]
    episodes = [
        EpisodePoint(step=step, regime=regime, value=scale(regime, value))
        for step, regime, value in record.episode_log
    ]
    return lifelong_report(evals, episodes)


def _recalled(score: RegimeScore) -> float:
    return score.recall_return if score.recall_return is not None else score.mean_return


def _episodes_of(
    record: AgentRecord, telemetry: Telemetry
) -> tuple[list[tuple[int, str, float]], list[tuple[int, str, float]]]:
    """The telemetry's episodes as (step, regime, return): first lives, and re-learned ones.

    Within one life of an agent's process its steps only grow; an episode at a step no later
    than one already recorded was learned again after a resume from an older checkpoint.
    """
    if len(telemetry.episode_steps) != len(telemetry.episode_returns):
        return [], []
    regimes = telemetry.episode_regimes or [telemetry.regime] * len(telemetry.episode_steps)
    first: list[tuple[int, str, float]] = []
    relearned: list[tuple[int, str, float]] = []
    for episode in zip(telemetry.episode_steps, regimes, telemetry.episode_returns, strict=True):
        if episode[0] <= record.last_episode_step:
            relearned.append(episode)
        else:
            first.append(episode)
            record.last_episode_step = episode[0]
    return first, relearned


class Roster:
    """Agents by id, updated from status, telemetry, snapshots and evaluations.

    ``lifelong=False`` keeps neither the training episodes nor the lifelong metrics: for a
    reader that needs only the evaluations (the live table's sharing gain).
    """

    def __init__(self, *, lifelong: bool = True) -> None:
        self.agents: dict[str, AgentRecord] = {}
        self.lifelong = lifelong

    def get(self, agent: str) -> AgentRecord:
        record = self.agents.get(agent)
        if record is None:
            record = self.agents[agent] = AgentRecord(id=agent)
        return record

    def on_status(self, status: Status) -> AgentRecord:
        record = self.get(status.agent)
        record.state = status.state
        record.env_id = status.env_id or record.env_id
        record.algo = status.algo or record.algo
        return record

    def on_telemetry(self, telemetry: Telemetry) -> AgentRecord:
        record = self.get(telemetry.agent)
        record.env_id = telemetry.env_id
        record.algo = telemetry.algo
        record.env_steps = max(record.env_steps, telemetry.env_steps)
        record.budget_steps = telemetry.budget_steps
        record.steps_per_second = telemetry.steps_per_second
        record.episodes = telemetry.episodes
        if telemetry.episode_returns:
            record.recent_return = sum(telemetry.episode_returns) / len(telemetry.episode_returns)
        record.experience_batches_published = telemetry.experience_batches_published
        record.snapshots_published = telemetry.snapshots_published
        record.outbox_pending = telemetry.outbox_pending
        record.regime = telemetry.regime
        record.strategy = telemetry.strategy
        record.drift_events = telemetry.drift_events
        record.adaptations = telemetry.adaptations
        record.context = telemetry.context
        record.shares = tuple(telemetry.shares)
        record.twin_of = telemetry.twin_of
        record.peer_transitions = telemetry.peer_transitions
        record.learns_from = tuple(telemetry.learns_from)
        for peer in telemetry.learns_from:
            if len(record.learned_from_in_run) >= _MAX_PEERS_IN_RUN:
                break  # bounded: names come off the network; unknown ones join no group
            if peer != record.id:
                record.learned_from_in_run.add(peer)
        record.federates_with = tuple(telemetry.federates_with)
        record.federated_rounds = telemetry.federated_rounds
        if telemetry.regret_episodes >= record.regret.episodes:  # cumulative: keep the newest
            record.regret = Regret(
                telemetry.regret,
                telemetry.regret_baseline_return,
                telemetry.regret_episodes,
                telemetry.controller_steps,
            )
        record.latest_episodes = first, relearned = _episodes_of(record, telemetry)
        record.episodes_relearned += len(relearned)
        if self.lifelong:
            record.episode_log.extend(first)
        return record

    def groups(self) -> list[list[str]]:
        """Who learns from whom, as connected groups (agents.coordinator.groups)."""
        return society_groups({a: r.learns_from for a, r in list(self.agents.items())})

    def groups_in_run(self) -> list[list[str]]:
        """Who learned from whom at any point of the run, as connected groups."""
        return society_groups({a: r.learned_from_in_run for a, r in list(self.agents.items())})

    def regroup(self) -> None:
        """Set every record's ``group`` from the latest telemetry (before it is read)."""
        names = group_of(self.groups())
        for agent, record in list(self.agents.items()):
            record.group = names.get(agent, agent)

    def summaries(self) -> list[dict[str, object]]:
        """Every agent as ``summary.json`` keeps it, in its group over the whole run."""
        names = group_of(self.groups_in_run())
        return [r.as_summary(group=names.get(a, a)) for a, r in list(self.agents.items())]

    def on_experience(self, agent: str) -> None:
        self.get(agent).experience_batches_received += 1

    def on_snapshot(self, snapshot: PolicySnapshot) -> AgentRecord:
        record = self.get(snapshot.agent)
        record.snapshots_received += 1
        record.env_id = snapshot.env_id
        record.algo = snapshot.algo
        if snapshot.version > record.latest_version:
            record.latest_version = snapshot.version
            record.latest_snapshot_step = snapshot.step
            record.hyperparams = dict(snapshot.hyperparams)
            record.device = dict(snapshot.env_kwargs)
            if snapshot.lineage is not None and snapshot.lineage != record.lineage:
                record.adoptions += 1
            record.lineage = snapshot.lineage
        record.env_steps = max(record.env_steps, snapshot.step)
        return record

    def restore_snapshot(
        self,
        agent: str,
        version: int,
        *,
        step: int,
        algo: str,
        env_id: str,
        lineage: Lineage | None,
        hyperparams: dict[str, HyperValue],
    ) -> None:
        """A snapshot received before a restart, from the history."""
        record = self.get(agent)
        record.snapshots_received += 1
        record.algo, record.env_id = algo, env_id
        if version > record.latest_version:
            record.latest_version = version
            record.latest_snapshot_step = step
            record.hyperparams = dict(hyperparams)
            if lineage is not None and lineage != record.lineage:
                record.adoptions += 1
            record.lineage = lineage
        record.env_steps = max(record.env_steps, step)

    def on_evaluation(self, evaluation: Evaluation) -> AgentRecord:
        record = self.get(evaluation.agent)
        record.evaluations.append(
            EvaluationPoint(
                version=evaluation.version,
                step=evaluation.step,
                mean_return=evaluation.mean_return,
                std_return=evaluation.std_return,
                regimes=tuple(evaluation.regimes),
                baseline=evaluation.baseline,
                baseline_return=evaluation.baseline_return,
                train_regime=evaluation.train_regime,
                recall_return=evaluation.recall_return,
            )
        )
        if self.lifelong:
            record.lifelong = lifelong_metrics(record)
        return record

    def counts_by_state(self) -> dict[str, int]:
        counts = {"online": 0, "offline": 0}
        for record in list(self.agents.values()):
            if record.state in counts:
                counts[record.state] += 1
        return counts
