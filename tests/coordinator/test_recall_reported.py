"""What an agent is worth with its library, from the evaluation to Prometheus, table and line."""

from __future__ import annotations

import time
from pathlib import Path

import msgspec
import pytest
from prometheus_client import CollectorRegistry

from agents.bus.memory import MemoryBroker
from agents.bus.schemas import SCHEMA_VERSION, Evaluation, RegimeScore
from agents.bus.topics import Kind, TopicRef
from agents.coordinator.coordinator import Coordinator, CoordinatorConfig
from agents.coordinator.evaluation import EvaluationResult, RegimeResult
from agents.orchestrator.live import LiveDisplay, LiveState
from agents.orchestrator.summary import result_line
from tests import factories


def regime(name: str, returns: list[float], recall: list[float] | None) -> RegimeResult:
    return RegimeResult(
        regime=name, returns=returns, recall_returns=recall, recall_from="library:1"
    )


def test_with_recall_averages_each_regimes_recalled_return() -> None:
    # One network balances the pole in one wiring only; recalling serves both.
    result = EvaluationResult(
        regimes=[regime("earth", [500.0], [500.0]), regime("reversed", [9.0], [431.0])]
    )
    assert result.mean == pytest.approx(254.5)
    assert result.recall_mean == pytest.approx(465.5)


def test_a_recalled_return_of_zero_counts_as_zero() -> None:
    result = EvaluationResult(regimes=[regime("a", [10.0], [0.0]), regime("b", [-4.0], [-4.0])])
    assert result.recall_mean == pytest.approx(-2.0)


def test_without_a_library_there_is_no_recall() -> None:
    result = EvaluationResult(regimes=[regime("a", [10.0], None), regime("b", [4.0], None)])
    assert result.recall_mean is None


def evaluation(version: int, mean: float, recall: float | None) -> Evaluation:
    return Evaluation(
        schema=SCHEMA_VERSION, agent="cartpole-0", version=version, step=version * 5000,
        env_id="CartPole-v1", algo="ppo", mean_return=mean, std_return=1.0, episodes=5,
        seeds=[0], seconds=0.1, ts=time.time(), baseline="pd", baseline_return=254.4,
        regimes=[RegimeScore(regime="earth", mean_return=mean)], recall_return=recall,
    )  # fmt: skip


def test_the_coordinator_exports_the_latest_evaluation_with_recall() -> None:
    metrics = CollectorRegistry()
    coordinator = Coordinator(
        CoordinatorConfig(society="s"), MemoryBroker(), metrics_registry=metrics
    )
    roster = coordinator.roster
    labels = {"agent": "cartpole-0"}
    roster.on_evaluation(evaluation(1, 240.0, None))
    assert metrics.get_sample_value("society_agent_eval_return_with_recall", labels) == 240.0
    roster.on_evaluation(evaluation(2, 254.0, 470.0))
    assert metrics.get_sample_value("society_agent_eval_return_with_recall", labels) == 470.0
    summary = roster.agents["cartpole-0"].as_summary()
    assert summary["last_eval_with_recall"] == 470.0
    assert summary["last_eval_return"] == 254.0


async def test_the_live_table_shows_the_evaluation_with_recall() -> None:
    state = LiveState(["cartpole-0"])
    ref = TopicRef(society="s", kind=Kind.EVALUATION, agent="cartpole-0")
    await state.on_message(ref, evaluation(2, 254.0, 470.0))
    table = LiveDisplay(state, title="t", quiet=True).table()
    column = next(c for c in table.columns if c.header == "w/ recall")
    assert list(column.cells) == ["470.0"]


def agent(end: float | None, baseline: float | None) -> dict[str, object]:
    return {
        "env_steps": 1000, "last_eval_with_recall": end, "baseline_eval_return": baseline,
        "baseline": "pd" if baseline is not None else "",
    }  # fmt: skip


def test_the_run_line_says_how_many_agents_ended_ahead_of_their_baseline() -> None:
    summary = {"agents": [agent(470.0, 254.4), agent(250.0, 254.4), agent(480.0, 254.4)]}
    line = result_line(summary, Path("s.json"))
    assert line == (
        "society run completed: 3 agents, 3,000 steps; final evaluation 470.0 (250.0 to 480.0) "
        "against pd 254.4; 2 of 3 agents ahead; summary in s.json"
    )
    # At the world's best, matching the controller is no shortfall: it is said.
    level = {"agents": [agent(500.0, 500.0), agent(480.0, 500.0)]}
    assert "0 of 2 agents ahead, 1 level;" in result_line(level, Path("s.json"))


def test_the_run_line_without_evaluations_or_baseline() -> None:
    assert result_line({"agents": [agent(None, None)]}, Path("s.json")) == (
        "society run completed: 1 agent, 1,000 steps, no evaluation; summary in s.json"
    )
    assert result_line({"agents": [agent(12.0, None)]}, Path("s.json")) == (
        "society run completed: 1 agent, 1,000 steps; final evaluation 12.0; summary in s.json"
    )


def two_wirings(earth: float, reversed_: float, recall: float | None) -> Evaluation:
    return Evaluation(
        schema=SCHEMA_VERSION, agent="cartpole-0", version=3, step=15000,
        env_id="CartPole-v1", algo="ppo", mean_return=(earth + reversed_) / 2, std_return=1.0,
        episodes=5, seeds=[0], seconds=0.1, ts=time.time(), baseline="pd", baseline_return=254.4,
        regimes=[
            RegimeScore(regime="earth", mean_return=earth, baseline_return=500.0),
            RegimeScore(regime="reversed", mean_return=reversed_, baseline_return=8.8,
                        recall_return=recall),
        ],
    )  # fmt: skip


async def test_the_live_table_shows_each_regime_beside_its_baseline() -> None:
    state = LiveState(["cartpole-0"])
    ref = TopicRef(society="s", kind=Kind.EVALUATION, agent="cartpole-0")
    await state.on_message(ref, two_wirings(500.0, 9.0, 431.0))
    table = LiveDisplay(state, title="t", quiet=True).table()
    column = next(c for c in table.columns if c.header == "per regime (agent/baseline)")
    assert list(column.cells) == ["earth 500/500 reversed 431/9"]


def test_the_run_line_gives_each_regime_beside_the_mean() -> None:
    def summary_of(earth: float, reversed_: float) -> dict[str, object]:
        return {
            **agent((earth + reversed_) / 2, 254.4),
            "evaluations": [
                {"regimes": {
                    "earth": {"mean_return": earth, "recall_return": None,
                              "baseline_return": 500.0},
                    "reversed": {"mean_return": 9.0, "recall_return": reversed_,
                                 "baseline_return": 8.8},
                }},
            ],
        }  # fmt: skip

    line = result_line(
        {"agents": [summary_of(500.0, 431.0), summary_of(480.0, 500.0), summary_of(500.0, 460.0)]},
        Path("s.json"),
    )
    assert "; per regime earth 500.0 vs 500.0, reversed 460.0 vs 8.8; summary in s.json" in line


async def test_the_live_table_shows_how_far_evaluation_is_behind() -> None:
    state = LiveState(["cartpole-0"])
    telemetry = msgspec.structs.replace(factories.telemetry("cartpole-0"), snapshot_version=5)
    await state.on_message(
        TopicRef(society="s", kind=Kind.TELEMETRY, agent="cartpole-0"), telemetry
    )
    ref = TopicRef(society="s", kind=Kind.EVALUATION, agent="cartpole-0")
    await state.on_message(ref, evaluation(3, 254.0, None))
    table = LiveDisplay(state, title="t", quiet=True).table()
    column = next(c for c in table.columns if c.header == "eval lag")
    assert list(column.cells) == ["2"]  # versions 4 and 5 published, not evaluated yet


def test_the_run_line_says_the_gain_from_sharing_when_there_are_twins() -> None:
    sharing = {
        "ratio": 1.5, "ratio_is_lower_bound": True, "pairs_past_threshold_at_start": 0,
        "regret_against_twins": -0.041, "pairs": [{"agent": "a", "twin": "a-twin"}],
    }  # fmt: skip
    line = result_line({"agents": [agent(470.0, 254.4)], "sharing": sharing}, Path("s.json"))
    assert line.endswith("; sharing gain >= 1.50x; regret against twins -4.1%; summary in s.json")
    # Without twins the coordinator still writes the section, with no pairs: nothing said.
    alone = {"agents": [agent(470.0, 254.4)], "sharing": {"ratio": None, "pairs": []}}
    assert "sharing gain" not in result_line(alone, Path("s.json"))
