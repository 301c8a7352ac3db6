"""Prometheus metrics of the society, read from the coordinator's state at scrape time.

Following prometheus_client's custom-collector pattern, nothing is updated on the hot path:
:class:`SocietyCollector` reads the roster, the inbox counters and the bus statistics when
Prometheus scrapes, through :class:`SocietyState` (the coordinator provides it; this module does
not import the coordinator). It is registered on an injected ``CollectorRegistry`` so tests use
their own. Names follow Prometheus conventions: prefix ``society_``, base units (seconds),
``_total`` for counters, and labels with bounded values (agent ids, regimes, kinds, reasons).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Protocol

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from agents.bus.codec import REJECT_REASONS
from agents.bus.topics import Kind
from agents.coordinator.lifelong import LifelongReport
from agents.coordinator.roster import AgentRecord, Roster

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from agents.bus.client import BusStats
    from agents.bus.inbox import Inbox
    from agents.coordinator.remote import RemoteStats
    from agents.coordinator.sharing import SharingGain

__all__ = ["EVALUATION_BUCKETS", "SocietyCollector", "SocietyState", "register_metrics"]

#: Evaluation durations range from a few milliseconds (CartPole) to minutes (long worlds).
EVALUATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

Getter = Callable[[AgentRecord], float | None]

#: One series per agent, labelled ``agent``: (name, counter?, help, value or None to skip).
_PER_AGENT: tuple[tuple[str, bool, str, Getter], ...] = (
    ("society_agent_up", False, "1 if the agent's status is online, else 0.",
     lambda r: 1.0 if r.state == "online" else 0.0),
    ("society_agent_env_steps", True, "Environment steps the agent has taken.",
     lambda r: r.env_steps),
    ("society_agent_steps_per_second", False, "The agent's recent learning speed.",
     lambda r: r.steps_per_second),
    ("society_agent_episodes", True, "Episodes the agent has finished.", lambda r: r.episodes),
    ("society_agent_eval_return", False,
     "Mean return of the agent's latest evaluated snapshot on its evaluation worlds.",
     lambda r: r.last_eval_return),
    ("society_agent_best_eval_return", False, "Best evaluated mean return so far.",
     lambda r: r.best_eval_return),
    ("society_agent_eval_return_with_recall", False,
     "Mean over regimes of what the agent's latest snapshot achieves on each recalling the "
     "best policy of its library (its eval return where it has no library).",
     lambda r: r.last_eval_with_recall),
    ("society_agent_snapshot_version", False, "Latest snapshot version received.",
     lambda r: r.latest_version),
    ("society_agent_experience_batches_received", True,
     "Experience batches received from the agent, after de-duplication.",
     lambda r: r.experience_batches_received),
    ("society_agent_drift_events", True, "Drifts the agent detected in its own returns.",
     lambda r: r.drift_events),
    ("society_agent_adaptations", True,
     "Times the agent changed its policy because of a drift (adopted one, or started over).",
     lambda r: r.adaptations),
    ("society_adoptions", True, "Times the agent took on a peer's weights (its lineage changed).",
     lambda r: r.adoptions),
    ("society_agent_federated_rounds", True,
     "Times the agent averaged its peers' weights into its own (federated learning).",
     lambda r: r.federated_rounds),
    ("society_agent_peer_transitions", True,
     "Peers' transitions the agent added to its replay buffer.", lambda r: r.peer_transitions),
    ("society_agent_regret", False,
     "The baseline controller's summed return minus the agent's deployed one on the same "
     "episodes, over its life, in the world's return units (> 0: worse than the controller).",
     lambda r: r.regret.total if r.regret.episodes else None),
    ("society_agent_regret_ratio", False,
     "The regret as a share of the size of the baseline's summed return (0.05: 5 % worse).",
     lambda r: r.regret.relative),
    ("society_agent_controller_steps", True,
     "Device steps the baseline controller drove (history before the agent, guard fallbacks).",
     lambda r: r.regret.controller_steps),
)  # fmt: skip

#: The L2M metrics of each agent, on normalised scores: (name, help, value from the report).
_LIFELONG: tuple[tuple[str, str, Callable[[LifelongReport], float | None]], ...] = (
    ("society_lifelong_performance_maintenance",
     "Mean change of a regime's score since its most recent training (negative: forgetting).",
     lambda r: r.performance_maintenance.mrlep.mean),
    ("society_lifelong_forward_transfer",
     "Mean change of a not-yet-trained regime's score across another regime's training.",
     lambda r: r.forward_transfer_mean.difference),
    ("society_lifelong_backward_transfer",
     "Mean change of a trained regime's score across another regime's training.",
     lambda r: r.backward_transfer_mean.difference),
    ("society_lifelong_relative_performance",
     "Score over the agent's life relative to the baseline controller (1: baseline level).",
     lambda r: r.relative_to_baseline.lifetime.mean),
    ("society_lifelong_forgetting",
     "Continual World forgetting: score at the end of a regime's training minus score now.",
     lambda r: r.forgetting.mean),
)  # fmt: skip


class SocietyState(Protocol):
    """What the collector reads at scrape time; the coordinator has it.

    A protocol, not the coordinator's class, so metrics do not import the coordinator (which
    imports them to register its collector).
    """

    @property
    def roster(self) -> Roster: ...
    @property
    def inbox(self) -> Inbox: ...
    @property
    def directives_sent(self) -> int: ...
    @property
    def evaluations_done(self) -> int: ...
    @property
    def evaluation_backlog(self) -> int: ...
    @property
    def bus_stats(self) -> BusStats | None: ...
    @property
    def remote_stats(self) -> RemoteStats: ...
    def sharing(self) -> SharingGain | None: ...
    def delivery(self) -> dict[str, dict[str, dict[str, int]]]: ...


class SocietyCollector(Collector):
    """Everything the coordinator knows, as metric families, computed per scrape."""

    def __init__(self, coordinator: SocietyState) -> None:
        self.coordinator = coordinator

    def collect(self) -> Iterator[Metric]:
        self.coordinator.roster.regroup()  # once per scrape, not at every telemetry
        records = list(self.coordinator.roster.agents.values())
        yield self._agents_by_state()
        yield from self._per_agent(records)
        yield from self._per_regime(records)
        yield from self._lifelong(records)
        yield from self._messages()
        yield from self._evaluation_and_bus()

    def _agents_by_state(self) -> Metric:
        agents = GaugeMetricFamily(
            "society_agents", "Agents known to the coordinator, by state.", labels=["state"]
        )
        for state, count in self.coordinator.roster.counts_by_state().items():
            agents.add_metric([state], count)
        return agents

    def _per_agent(self, records: list[AgentRecord]) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            "society_agent_info",
            "Constant 1 per agent, labelled with its world and algorithm.",
            labels=["agent", "env", "algo"],
        )
        for record in records:
            info.add_metric([record.id, record.env_id, record.algo], 1)
        yield info
        group = GaugeMetricFamily(
            "society_agent_group",
            "Constant 1 per agent, labelled with its group: the agents it learns from, directly "
            "or through others, named after their first member.",
            labels=["agent", "group"],
        )
        for record in records:
            group.add_metric([record.id, record.group or record.id], 1)
        yield group
        for name, counter, documentation, getter in _PER_AGENT:
            family_type = CounterMetricFamily if counter else GaugeMetricFamily
            family = family_type(name, documentation, labels=["agent"])
            for record in records:
                value = getter(record)
                if value is not None:
                    family.add_metric([record.id], value)
            yield family
        baseline = GaugeMetricFamily(
            "society_baseline_eval_return",
            "Mean return of the world's baseline controller on the agent's evaluation worlds.",
            labels=["agent", "baseline"],
        )
        for record in records:
            if record.baseline_eval_return is not None:
                baseline.add_metric([record.id, record.baseline], record.baseline_eval_return)
        yield baseline

    def _per_regime(self, records: list[AgentRecord]) -> Iterator[Metric]:
        agent_return = GaugeMetricFamily(
            "society_agent_regime_eval_return",
            "Mean return of the agent's latest evaluated snapshot on one regime of its world.",
            labels=["agent", "regime"],
        )
        baseline_return = GaugeMetricFamily(
            "society_baseline_regime_eval_return",
            "Mean return of the baseline controller on one regime of the agent's world.",
            labels=["agent", "regime"],
        )
        regime_now = GaugeMetricFamily(
            "society_agent_regime",
            "Constant 1 per agent, labelled with the regime its world is in now.",
            labels=["agent", "regime"],
        )
        for record in records:
            if record.regime:
                regime_now.add_metric([record.id, record.regime], 1)
            latest = record.evaluations[-1].regimes if record.evaluations else ()
            for score in latest:
                agent_return.add_metric([record.id, score.regime], score.mean_return)
                if score.baseline_return is not None:
                    baseline_return.add_metric([record.id, score.regime], score.baseline_return)
        yield from (agent_return, baseline_return, regime_now)

    def _lifelong(self, records: list[AgentRecord]) -> Iterator[Metric]:
        reports = [(r.id, r.lifelong) for r in records if r.lifelong is not None]
        for name, documentation, getter in _LIFELONG:
            family = GaugeMetricFamily(name, documentation, labels=["agent"])
            for agent, report in reports:
                value = getter(report)
                if value is not None:
                    family.add_metric([agent], value)
            yield family
        recovery = GaugeMetricFamily(
            "society_lifelong_recovery_steps",
            "Mean agent steps to regain the previous regime's terminal score after a drift, "
            "to a regime seen before (known) or not (new).",
            labels=["agent", "regime_kind"],
        )
        for agent, report in reports:
            for kind, summary in (("known", report.recovery_known), ("new", report.recovery_new)):
                if summary.mean_steps is not None:
                    recovery.add_metric([agent, kind], summary.mean_steps)
        yield recovery

    def _messages(self) -> Iterator[Metric]:
        stats = self.coordinator.inbox.stats
        received = CounterMetricFamily(
            "society_messages_received", "Valid messages received, by kind.", labels=["kind"]
        )
        duplicates = CounterMetricFamily(
            "society_messages_duplicate",
            "Messages received again (at-least-once delivery) and dropped, by kind.",
            labels=["kind"],
        )
        for kind in Kind:
            received.add_metric([kind.value], stats.received.get(kind.value, 0))
            duplicates.add_metric([kind.value], stats.duplicates.get(kind.value, 0))
        rejected = CounterMetricFamily(
            "society_messages_rejected", "Messages rejected, by reason.", labels=["reason"]
        )
        for reason in REJECT_REASONS:
            rejected.add_metric([reason], stats.rejected.get(reason, 0))
        yield from (received, duplicates, rejected)
        yield from self._delivery()

    def _delivery(self) -> Iterator[Metric]:
        """End-to-end delivery of each agent's numbered streams (receipts, docs/reliability.md)."""
        missing = GaugeMetricFamily(
            "society_messages_missing",
            "Numbered messages of an agent not recorded though a later one was, by kind.",
            labels=["agent", "kind"],
        )
        repaired = CounterMetricFamily(
            "society_messages_repaired",
            "Numbered messages recorded after a later one had been (a gap repaired), by kind.",
            labels=["agent", "kind"],
        )
        for agent, streams in self.coordinator.delivery().items():
            for kind, counts in streams.items():
                missing.add_metric([agent, kind], counts["missing"])
                repaired.add_metric([agent, kind], counts["repaired"])
        yield from (missing, repaired)

    def _evaluation_and_bus(self) -> Iterator[Metric]:
        coordinator = self.coordinator
        yield CounterMetricFamily(
            "society_evolution_directives", "Adopt directives sent by population-based training.",
            value=coordinator.directives_sent,
        )  # fmt: skip
        gain = coordinator.sharing()
        ratio = GaugeMetricFamily(
            "society_sharing_gain_ratio",
            "Steps to the threshold of the isolated twins over those of the sharing agents.",
        )
        steps = GaugeMetricFamily(
            "society_agent_steps_to_threshold",
            "Agent steps at the first snapshot whose evaluations reached the threshold.",
            labels=["agent"],
        )
        past_at_start = GaugeMetricFamily(
            "society_sharing_pairs_past_threshold_at_start",
            "Sharing agent and twin pairs both at the threshold at their first evaluation "
            "(not counted in the gain).",
        )
        regret = GaugeMetricFamily(
            "society_sharing_regret_against_twins_ratio",
            "The sharing agents' regret against their controllers minus their twins', as a "
            "share of the controllers' cost (negative: sharing cost less).",
        )
        if gain is not None:
            past_at_start.add_metric([], gain.past_at_start)
            if gain.ratio is not None:
                ratio.add_metric([], gain.ratio)
            if gain.regret_against_twins is not None:
                regret.add_metric([], gain.regret_against_twins)
            for pair in gain.pairs:
                for agent, value in ((pair.agent, pair.agent_steps), (pair.twin, pair.twin_steps)):
                    if value is not None:
                        steps.add_metric([agent], value)
        yield ratio
        yield regret
        yield past_at_start
        yield steps
        yield CounterMetricFamily(
            "society_snapshot_evaluations", "Snapshots evaluated.",
            value=coordinator.evaluations_done,
        )  # fmt: skip
        yield GaugeMetricFamily(
            "society_evaluation_queue_length", "Snapshots waiting for evaluation.",
            value=coordinator.evaluation_backlog,
        )  # fmt: skip
        remote = coordinator.remote_stats
        yield GaugeMetricFamily(
            "society_evaluators_online",
            "Remote evaluators (society evaluator) online and taking work.",
            value=remote.online,
        )  # fmt: skip
        yield GaugeMetricFamily(
            "society_remote_evaluations_pending",
            "Snapshots handed to remote evaluators and not answered yet.",
            value=remote.outstanding,
        )  # fmt: skip
        yield CounterMetricFamily(
            "society_remote_evaluations_reissued",
            "Remote evaluations handed out again: their evaluator left or did not answer in time.",
            value=remote.reissued,
        )  # fmt: skip
        bus = coordinator.bus_stats
        yield GaugeMetricFamily(
            "society_bus_connected", "1 while the coordinator is connected to the broker.",
            value=1 if bus is not None and bus.connected_since is not None else 0,
        )  # fmt: skip
        yield CounterMetricFamily(
            "society_bus_reconnects", "Times the coordinator lost and regained the broker.",
            value=bus.connection_losses if bus is not None else 0,
        )  # fmt: skip


def register_metrics(coordinator: SocietyState, registry: CollectorRegistry) -> Histogram:
    """Register the society's metrics on ``registry``; returns the evaluation-time histogram."""
    registry.register(SocietyCollector(coordinator))
    return Histogram(
        "society_evaluation_seconds",
        "Wall time to evaluate one snapshot on the evaluation worlds.",
        buckets=EVALUATION_BUCKETS,
        registry=registry,
    )
