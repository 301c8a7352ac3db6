"""The society's groups: from each agent's choice of peers to summary, Prometheus and table."""

from __future__ import annotations

import msgspec
import pytest
from prometheus_client import CollectorRegistry

from agents.bus.memory import MemoryBroker
from agents.bus.schemas import Evaluation, RegimeScore, Telemetry
from agents.bus.topics import Kind, TopicRef
from agents.coordinator.coordinator import Coordinator, CoordinatorConfig
from agents.coordinator.groups import group_of, society_groups
from agents.orchestrator.live import LiveDisplay, LiveState, Threshold
from tests import factories


def test_a_chain_of_choices_is_one_group_and_the_unchosen_are_alone() -> None:
    groups = society_groups({"c": ["b"], "a": ["b"], "b": [], "twin": [], "d": ["e"], "e": []})
    assert groups == [["a", "b", "c"], ["d", "e"], ["twin"]]
    assert group_of(groups) == {"a": "a", "b": "a", "c": "a", "d": "d", "e": "d", "twin": "twin"}


def test_a_peer_nobody_knows_joins_no_group() -> None:
    assert society_groups({"a": ["ghost"], "b": []}) == [["a"], ["b"]]


def telemetry(agent: str, learns_from: list[str], rounds: int) -> Telemetry:
    return msgspec.structs.replace(
        factories.telemetry(agent), learns_from=learns_from, federated_rounds=rounds
    )


def test_the_coordinator_groups_agents_by_their_newest_telemetry() -> None:
    metrics = CollectorRegistry()
    coordinator = Coordinator(
        CoordinatorConfig(society="s"), MemoryBroker(), metrics_registry=metrics
    )
    roster = coordinator.roster
    roster.on_telemetry(telemetry("b", ["a"], 4))
    roster.on_telemetry(telemetry("a", ["b"], 5))
    roster.on_telemetry(telemetry("a-twin", [], 0))
    assert coordinator.summary()["groups"] == [["a", "b"], ["a-twin"]]
    record = next(r for r in coordinator.summary()["agents"] if r["id"] == "b")
    assert (record["group"], record["learns_from"], record["federated_rounds"]) == ("a", ["a"], 4)
    sample = metrics.get_sample_value
    assert sample("society_agent_group", {"agent": "b", "group": "a"}) == 1
    assert sample("society_agent_group", {"agent": "a-twin", "group": "a-twin"}) == 1
    assert sample("society_agent_federated_rounds_total", {"agent": "a"}) == 5
    # b stops learning from a, and a from b: two agents alone now (Prometheus), but the run's
    # summary still shows that they learned together.
    roster.on_telemetry(telemetry("a", [], 6))
    roster.on_telemetry(telemetry("b", [], 6))
    assert sample("society_agent_group", {"agent": "b", "group": "a"}) is None
    assert sample("society_agent_group", {"agent": "b", "group": "b"}) == 1
    summary = coordinator.summary()
    assert summary["groups"] == [["a", "b"], ["a-twin"]]
    record = next(r for r in summary["agents"] if r["id"] == "b")
    assert (record["group"], record["learns_from"]) == ("a", ["a"])
    # A peer the roster does not know (gone, or forged) joins no group.
    roster.on_telemetry(telemetry("a-twin", ["ghost"], 0))
    assert coordinator.summary()["groups"] == [["a", "b"], ["a-twin"]]


async def test_the_live_table_shows_each_agents_group() -> None:
    state = LiveState(["a", "b", "c"])
    for agent, peers in (("a", ["b"]), ("b", ["a"]), ("c", [])):
        ref = TopicRef(society="s", kind=Kind.TELEMETRY, agent=agent)
        await state.on_message(ref, telemetry(agent, peers, 1))
    table = LiveDisplay(state, title="t", quiet=True).table()
    column = next(c for c in table.columns if c.header == "group")
    assert list(column.cells) == ["a", "a", "-"]


def evaluation(agent: str, version: int, step: int, mean: float) -> Evaluation:
    return msgspec.structs.replace(
        factories.evaluation(agent, version), step=step, mean_return=mean,
        regimes=[RegimeScore(regime="default", mean_return=mean)],
    )  # fmt: skip


EVALUATIONS = TopicRef(society="s", kind=Kind.EVALUATION)


async def live_pair(twin_steps: int) -> tuple[LiveState, LiveDisplay]:
    """The live table of agent ``a`` and its twin, threshold 100, the twin ``twin_steps`` in."""
    state = LiveState(["a", "a-twin"], Threshold(100.0))
    twin = msgspec.structs.replace(factories.telemetry("a-twin"), twin_of="a", env_steps=twin_steps)
    await state.on_message(TopicRef(society="s", kind=Kind.TELEMETRY, agent="a-twin"), twin)
    return state, LiveDisplay(state, title="t", quiet=True)


async def test_the_live_table_shows_the_sharing_gain_while_the_run_goes() -> None:
    state, display = await live_pair(twin_steps=3000)
    await state.on_message(EVALUATIONS, evaluation("a-twin", 1, 1000, 50.0))
    assert "sharing gain: no sharing agent at the threshold yet" in str(display.table().title)
    await state.on_message(EVALUATIONS, evaluation("a", 1, 1000, 120.0))
    assert "sharing gain >= 3.00x" in str(display.table().title)  # the twin: 3,000 so far
    await state.on_message(EVALUATIONS, evaluation("a-twin", 2, 3000, 110.0))
    await state.on_message(EVALUATIONS, evaluation("a-twin", 2, 3000, 110.0))  # a duplicate: once
    assert "sharing gain 3.00x" in str(display.table().title)
    # The orchestrator keeps the evaluations only: no episodes, no lifelong metrics.
    assert all(not r.episode_log and r.lifelong is None for r in state.roster.agents.values())


def test_without_twins_the_table_shows_no_gain() -> None:
    state = LiveState(["a"], Threshold(100.0))
    assert state.sharing() is None
    assert "gain" not in str(LiveDisplay(state, title="t", quiet=True).table().title)


async def test_the_live_table_says_when_the_start_was_already_past_the_threshold() -> None:
    state, display = await live_pair(twin_steps=1000)
    await state.on_message(EVALUATIONS, evaluation("a-twin", 1, 1000, 150.0))
    await state.on_message(EVALUATIONS, evaluation("a", 1, 1000, 120.0))
    title = str(display.table().title)
    assert "not measurable yet, 1 of 1 pairs past the threshold at their first evaluation" in title
    assert "1.00x" not in title


def test_prometheus_counts_the_pairs_past_the_threshold_at_their_start() -> None:
    metrics = CollectorRegistry()
    config = CoordinatorConfig(society="s", threshold=100.0)
    coordinator = Coordinator(config, MemoryBroker(), metrics_registry=metrics)
    roster = coordinator.roster
    roster.on_telemetry(msgspec.structs.replace(factories.telemetry("a-twin"), twin_of="a"))
    roster.on_evaluation(evaluation("a", 1, 1000, 150.0))
    roster.on_evaluation(evaluation("a-twin", 1, 1000, 120.0))
    assert metrics.get_sample_value("society_sharing_pairs_past_threshold_at_start") == 1
    assert metrics.get_sample_value("society_sharing_gain_ratio") is None  # not 1.00


def test_prometheus_shows_the_regret_against_the_twins_once_both_compared_days() -> None:
    metrics = CollectorRegistry()
    config = CoordinatorConfig(society="s", threshold=100.0)
    coordinator = Coordinator(config, MemoryBroker(), metrics_registry=metrics)
    roster = coordinator.roster
    name = "society_sharing_regret_against_twins_ratio"
    twin = msgspec.structs.replace(factories.telemetry("a-twin"), twin_of="a")
    roster.on_telemetry(twin)
    roster.on_telemetry(factories.telemetry("a"))
    assert metrics.get_sample_value(name) is None  # no day compared yet
    compared = {"regret_baseline_return": -200.0, "regret_episodes": 4}
    roster.on_telemetry(msgspec.structs.replace(twin, regret=-10.0, **compared))
    roster.on_telemetry(msgspec.structs.replace(factories.telemetry("a"), regret=-30.0, **compared))
    assert metrics.get_sample_value(name) == pytest.approx(-0.10)  # -15 % against -5 %
