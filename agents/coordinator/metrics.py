"""Prometheus metrics of the society, read from the coordinator's state at scrape time.

Following prometheus_client's custom-collector pattern, nothing is updated on the hot path:
:class:`SocietyCollector` reads the registry, the inbox counters and the bus statistics when
Prometheus scrapes. It is registered on an injected ``CollectorRegistry`` so tests use their
own. Names follow Prometheus conventions: prefix ``society_``, base units (seconds),
``_total`` for counters, and labels with bounded values (agent ids, kinds, reasons).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from agents.bus.codec import REJECT_REASONS
from agents.bus.topics import Kind

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from agents.coordinator.coordinator import Coordinator

__all__ = ["EVALUATION_BUCKETS", "SocietyCollector", "register_metrics"]

#: Evaluation durations range from a few milliseconds (CartPole) to minutes (long worlds).
EVALUATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class SocietyCollector(Collector):
    """Everything the coordinator knows, as metric families, computed per scrape."""

    def __init__(self, coordinator: Coordinator) -> None:
        self.coordinator = coordinator

    def collect(self) -> Iterator[Metric]:
        coordinator = self.coordinator
        records = list(coordinator.registry.agents.values())

        agents = GaugeMetricFamily(
            "society_agents", "Agents known to the coordinator, by state.", labels=["state"]
        )
        for state, count in coordinator.registry.counts_by_state().items():
            agents.add_metric([state], count)
        yield agents

        info = GaugeMetricFamily(
            "society_agent_info",
            "Constant 1 per agent, labelled with its world and algorithm.",
            labels=["agent", "env", "algo"],
        )
        up = GaugeMetricFamily(
            "society_agent_up", "1 if the agent's status is online, else 0.", labels=["agent"]
        )
        steps = CounterMetricFamily(
            "society_agent_env_steps", "Environment steps the agent has taken.", labels=["agent"]
        )
        rate = GaugeMetricFamily(
            "society_agent_steps_per_second",
            "The agent's recent learning speed.",
            labels=["agent"],
        )
        episodes = CounterMetricFamily(
            "society_agent_episodes", "Episodes the agent has finished.", labels=["agent"]
        )
        eval_return = GaugeMetricFamily(
            "society_agent_eval_return",
            "Mean return of the agent's latest evaluated snapshot on the evaluation worlds.",
            labels=["agent"],
        )
        best_return = GaugeMetricFamily(
            "society_agent_best_eval_return",
            "Best evaluated mean return so far.",
            labels=["agent"],
        )
        version = GaugeMetricFamily(
            "society_agent_snapshot_version",
            "Latest snapshot version received.",
            labels=["agent"],
        )
        batches = CounterMetricFamily(
            "society_agent_experience_batches_received",
            "Experience batches received from the agent, after de-duplication.",
            labels=["agent"],
        )
        for record in records:
            labels = [record.id]
            info.add_metric([record.id, record.env_id, record.algo], 1)
            up.add_metric(labels, 1 if record.state == "online" else 0)
            steps.add_metric(labels, record.env_steps)
            rate.add_metric(labels, record.steps_per_second)
            episodes.add_metric(labels, record.episodes)
            version.add_metric(labels, record.latest_version)
            batches.add_metric(labels, record.experience_batches_received)
            if record.last_eval_return is not None:
                eval_return.add_metric(labels, record.last_eval_return)
            if record.best_eval_return is not None:
                best_return.add_metric(labels, record.best_eval_return)
        yield from (info, up, steps, rate, episodes, eval_return, best_return, version, batches)

        stats = coordinator.inbox.stats
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

        yield CounterMetricFamily(
            "society_snapshot_evaluations",
            "Snapshots evaluated.",
            value=coordinator.evaluations_done,
        )
        yield GaugeMetricFamily(
            "society_evaluation_queue_length",
            "Snapshots waiting for evaluation.",
            value=coordinator.evaluation_backlog,
        )
        bus = coordinator.bus_stats
        yield GaugeMetricFamily(
            "society_bus_connected",
            "1 while the coordinator is connected to the broker.",
            value=1 if bus is not None and bus.connected_since is not None else 0,
        )
        yield CounterMetricFamily(
            "society_bus_reconnects",
            "Times the coordinator lost and regained the broker.",
            value=bus.connection_losses if bus is not None else 0,
        )


def register_metrics(coordinator: Coordinator, registry: CollectorRegistry) -> Histogram:
    """Register the society's metrics on ``registry``; returns the evaluation-time histogram."""
    registry.register(SocietyCollector(coordinator))
    return Histogram(
        "society_evaluation_seconds",
        "Wall time to evaluate one snapshot on the evaluation worlds.",
        buckets=EVALUATION_BUCKETS,
        registry=registry,
    )
