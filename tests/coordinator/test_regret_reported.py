"""An agent's regret against its controller, from its telemetry to Prometheus and the table."""

from __future__ import annotations

import time

import pytest
from prometheus_client import CollectorRegistry

from agents.bus.memory import MemoryBroker
from agents.bus.schemas import SCHEMA_VERSION, Telemetry
from agents.bus.topics import Kind, TopicRef
from agents.coordinator.coordinator import Coordinator, CoordinatorConfig
from agents.orchestrator.live import LiveDisplay, LiveState


def telemetry(regret: float, baseline: float, episodes: int) -> Telemetry:
    return Telemetry(
        schema=SCHEMA_VERSION, agent="home-0", ts=time.time(), env_id="society/Thermostat-v0",
        algo="ppo", env_steps=episodes * 96, steps_per_second=100.0, episodes=episodes,
        experience_batches_published=0, snapshots_published=0, snapshot_version=0,
        regret=regret, regret_baseline_return=baseline, regret_episodes=episodes,
        controller_steps=960,
    )  # fmt: skip


def test_the_coordinator_keeps_the_newest_regret_and_exports_it() -> None:
    metrics = CollectorRegistry()
    coordinator = Coordinator(
        CoordinatorConfig(society="s"), MemoryBroker(), metrics_registry=metrics
    )
    roster = coordinator.roster
    roster.on_telemetry(telemetry(12.0, -400.0, 20))
    roster.on_telemetry(telemetry(-30.0, -1_000.0, 50))
    roster.on_telemetry(telemetry(12.0, -400.0, 20))  # late, out of order: not newer
    record = roster.agents["home-0"]
    assert record.regret.total == -30.0
    assert record.as_summary()["regret"] == {
        "total": -30.0, "relative": pytest.approx(-0.03), "baseline_return": -1_000.0,
        "episodes": 50, "controller_steps": 960,
    }  # fmt: skip
    labels = {"agent": "home-0"}
    assert metrics.get_sample_value("society_agent_regret", labels) == -30.0
    assert metrics.get_sample_value("society_agent_regret_ratio", labels) == pytest.approx(-0.03)
    assert metrics.get_sample_value("society_agent_controller_steps_total", labels) == 960


def test_an_agent_never_compared_has_no_regret_series() -> None:
    metrics = CollectorRegistry()
    coordinator = Coordinator(
        CoordinatorConfig(society="s"), MemoryBroker(), metrics_registry=metrics
    )
    coordinator.roster.on_telemetry(telemetry(0.0, 0.0, 0))
    assert metrics.get_sample_value("society_agent_regret", {"agent": "home-0"}) is None
    assert coordinator.roster.agents["home-0"].as_summary()["regret"]["total"] is None  # type: ignore[index]


async def test_the_live_table_shows_regret_as_a_share_of_the_controllers_cost() -> None:
    state = LiveState(["home-0"])
    ref = TopicRef(society="s", kind=Kind.TELEMETRY, agent="home-0")
    await state.on_message(ref, telemetry(-30.0, -1_000.0, 50))
    table = LiveDisplay(state, title="t", quiet=True).table()
    column = next(c for c in table.columns if c.header == "regret")
    assert list(column.cells) == ["-3.0%"]
