"""The coordinator turns evaluations and telemetry into the L2M metrics, normalised."""

from __future__ import annotations

import time

import pytest
from prometheus_client import CollectorRegistry

from agents.bus.memory import MemoryBroker
from agents.bus.schemas import SCHEMA_VERSION, Evaluation, RegimeScore, Telemetry
from agents.coordinator.coordinator import Coordinator, CoordinatorConfig


def evaluation(step: int, train: str, a: float, b: float) -> Evaluation:
    # Regime A: random 0, baseline 100. Regime B: random -50, baseline 50.
    return Evaluation(
        schema=SCHEMA_VERSION, agent="a0", version=step // 100 + 1, step=step,
        env_id="CartPole-v1", algo="ppo", mean_return=(a + b) / 2, std_return=0.0,
        episodes=1, seeds=[0], seconds=0.1, ts=time.time(), train_regime=train,
        regimes=[
            RegimeScore(regime="A", mean_return=a, baseline_return=100.0, random_return=0.0),
            RegimeScore(regime="B", mean_return=b, baseline_return=50.0, random_return=-50.0),
        ],
    )  # fmt: skip


def telemetry(steps: list[int], regimes: list[str], returns: list[float]) -> Telemetry:
    return Telemetry(
        schema=SCHEMA_VERSION, agent="a0", ts=time.time(), env_id="CartPole-v1", algo="ppo",
        env_steps=steps[-1], steps_per_second=1.0, episodes=len(steps),
        experience_batches_published=0, snapshots_published=0, snapshot_version=0,
        episode_returns=returns, episode_steps=steps, episode_regimes=regimes,
        drift_events=2, adaptations=1, strategy="lifelong",
    )  # fmt: skip


def test_roster_computes_normalised_lifelong_metrics_and_exports_them() -> None:
    metrics = CollectorRegistry()
    coordinator = Coordinator(CoordinatorConfig(society="s"), MemoryBroker(),
                              metrics_registry=metrics)  # fmt: skip
    roster = coordinator.roster
    # Schedule A (to 100), B (to 200), A (to 300); episodes every 10 steps.
    steps = list(range(10, 301, 10))
    regimes = ["A" if s <= 100 or s > 200 else "B" for s in steps]
    returns = [100.0 if r == "A" else 50.0 for r in regimes]  # at baseline level throughout
    roster.on_telemetry(telemetry(steps, regimes, returns))
    roster.on_evaluation(evaluation(0, "A", 0.0, -50.0))  # untrained: random level
    roster.on_evaluation(evaluation(100, "A", 100.0, -50.0))  # A learned, B untouched
    roster.on_evaluation(evaluation(200, "B", 50.0, 50.0))  # B learned, A half forgotten
    record = roster.agents["a0"]
    report = record.lifelong
    assert report is not None
    # After B's training A is at 0.5 of the baseline-random gap, against 1.0 when learned.
    assert report.performance_maintenance.mrlep.per_regime["A"] == pytest.approx(-0.5)
    assert report.backward_transfer[0].difference == pytest.approx(-0.5)
    # Training A did nothing for B (still random level): forward transfer 0.
    assert report.forward_transfer[("A", "B")].difference == pytest.approx(0.0)
    value = metrics.get_sample_value("society_lifelong_performance_maintenance", {"agent": "a0"})
    # The mean over regimes that have a value: B has not been tested after its training yet.
    assert report.performance_maintenance.mrlep.per_regime["B"] is None
    assert value == pytest.approx(-0.5)
    assert metrics.get_sample_value("society_agent_drift_events_total", {"agent": "a0"}) == 2
    summary = record.as_summary()
    assert summary["lifelong"] is not None
    assert summary["strategy"] == "lifelong"
