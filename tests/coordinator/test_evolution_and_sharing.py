"""Population-based training orders, and the gain from sharing against isolated twins."""

from __future__ import annotations

import random

import msgspec
import pytest

from agents.bus.memory import MemoryBroker
from agents.bus.schemas import Lineage, RegimeScore
from agents.coordinator.coordinator import Coordinator, CoordinatorConfig
from agents.coordinator.evaluation import EvaluationResult, RegimeResult
from agents.coordinator.evolution import RESAMPLE_RANGES, Member, plan_generation
from agents.coordinator.roster import AgentRecord, EvaluationPoint, Roster
from agents.coordinator.sharing import (
    ThresholdScale,
    describe,
    sharing_gain,
    steps_to_threshold,
)
from agents.regret import Regret
from tests import factories


def member(agent: str, score: float, niche: str = "CartPole-v1/ppo") -> Member:
    return Member(agent, niche, score, version=3, hyperparams={"learning_rate": 1e-3})


def test_the_bottom_of_each_niche_adopts_from_its_top() -> None:
    members = [member(f"a{i}", float(i)) for i in range(8)]  # a7 best, a0 worst
    members += [member("lonely", 0.0, niche="Pendulum-v1/sac")]  # a niche of one: nothing
    orders = plan_generation(members, quantile=0.25, rng=random.Random(0))
    assert sorted(o.agent for o in orders) == ["a0", "a1"]  # bottom 2 of 8
    assert {o.source for o in orders} <= {"a6", "a7"}  # top 2 of 8
    for order in orders:
        assert order.version == 3
        rate = order.hyperparams["learning_rate"]
        assert isinstance(rate, float)
        low, high = RESAMPLE_RANGES["learning_rate"]
        assert low <= rate <= high


def test_perturbation_multiplies_by_a_factor_without_resampling() -> None:
    orders = plan_generation(
        [member("good", 10.0), member("bad", 1.0)],
        quantile=0.5, factors=(2.0,), resample_probability=0.0, rng=random.Random(1),
    )  # fmt: skip
    (order,) = orders
    assert order.agent == "bad"
    assert order.source == "good"
    assert order.hyperparams == {"learning_rate": pytest.approx(2e-3)}


def test_a_tie_orders_nothing() -> None:
    assert plan_generation([member("x", 5.0), member("y", 5.0)], rng=random.Random(0)) == []


def test_an_agent_copies_only_an_agent_whose_device_is_alike() -> None:
    """Another house's policy can leave this one cold: unlike devices are never paired."""
    small, large = {"r_k_per_kw": 3.0, "c_kwh_per_k": 3.0}, {"r_k_per_kw": 7.5, "c_kwh_per_k": 3.2}
    members = [
        Member("big-best", "t/ppo", 9.0, version=1, device=large),
        Member("small-good", "t/ppo", 5.0, version=1, device={**small, "r_k_per_kw": 3.3}),
        Member("big-poor", "t/ppo", 1.0, version=1, device=large),
        Member("small-poor", "t/ppo", 0.0, version=1, device=small),
    ]
    for seed in range(20):
        orders = plan_generation(members, quantile=0.5, rng=random.Random(seed))
        assert {(o.agent, o.source) for o in orders} <= {
            ("small-poor", "small-good"), ("big-poor", "big-best"),
        }  # fmt: skip
        assert {o.agent for o in orders} == {"small-poor", "big-poor"}
    alone = [Member("a", "t/ppo", 9.0, version=1, device=large),
             Member("b", "t/ppo", 0.0, version=1, device=small)]  # fmt: skip
    assert plan_generation(alone, quantile=0.5, rng=random.Random(0)) == []  # nobody alike


def test_an_agent_never_copies_a_peer_whose_weights_it_averages_in() -> None:
    """Federated members hold each other's learning already: an older snapshot sets one back."""
    members = [
        Member("fed-best", "t/ppo", 9.0, version=1, federates_with=frozenset({"fed-poor"})),
        Member("solo-good", "t/ppo", 5.0, version=1),
        Member("fed-poor", "t/ppo", 1.0, version=1),  # only its peer reports the link
        Member("solo-poor", "t/ppo", 0.0, version=1),
    ]
    for seed in range(20):
        orders = plan_generation(members, quantile=0.5, rng=random.Random(seed))
        assert ("fed-poor", "fed-best") not in {(o.agent, o.source) for o in orders}
        assert {o.agent for o in orders} <= {"fed-poor", "solo-poor"}
    group = [
        Member("a", "t/ppo", 9.0, version=1, federates_with=frozenset({"b"})),
        Member("b", "t/ppo", 0.0, version=1, federates_with=frozenset({"a"})),
    ]
    assert plan_generation(group, quantile=0.5, rng=random.Random(0)) == []
    # The same two without the link: the bottom one adopts.
    apart = [Member("a", "t/ppo", 9.0, version=1), Member("b", "t/ppo", 0.0, version=1)]
    assert len(plan_generation(apart, quantile=0.5, rng=random.Random(0))) == 1


def test_devices_that_differ_are_ranked_by_their_gain_over_their_own_controller() -> None:
    """A big house costs more whatever its policy: raw returns would rank the small one first."""
    members = [
        Member("big", "t/ppo", -20.0, version=1, gain=0.30),  # 30 % better than its thermostat
        Member("small", "t/ppo", -5.0, version=1, gain=0.05),
    ]
    (order,) = plan_generation(members, quantile=0.5, rng=random.Random(0))
    assert (order.agent, order.source) == ("small", "big")
    # Where one member has no baseline score, all are ranked by their returns.
    members[1] = Member("small", "t/ppo", -5.0, version=1)
    (order,) = plan_generation(members, quantile=0.5, rng=random.Random(0))
    assert (order.agent, order.source) == ("big", "small")


def test_the_roster_keeps_the_device_each_agent_announces() -> None:
    roster = Roster()
    house = {"r_k_per_kw": 4.0, "c_kwh_per_k": 5.5}
    snapshot = msgspec.structs.replace(factories.snapshot(agent="h1"), env_kwargs=house)
    assert roster.on_snapshot(snapshot).device == house


def record(
    agent: str, steps_and_returns: list[tuple[int, float]], twin_of: str = ""
) -> AgentRecord:
    rec = AgentRecord(id=agent, twin_of=twin_of, env_steps=steps_and_returns[-1][0])
    rec.evaluations = [
        EvaluationPoint(version=i + 1, step=step, mean_return=ret, std_return=0.0)
        for i, (step, ret) in enumerate(steps_and_returns)
    ]
    return rec


def test_sharing_gain_is_twin_steps_over_sharing_steps() -> None:
    records = [
        record("a", [(1000, 100.0), (2000, 480.0), (3000, 500.0)]),
        record("a-twin", [(1000, 50.0), (2000, 200.0), (4000, 490.0)], twin_of="a"),
        record("b", [(1000, 476.0)]),
        record("b-twin", [(1000, 20.0), (6000, 300.0)], twin_of="b"),  # never reached it
    ]
    gain = sharing_gain(records, 475.0)
    assert steps_to_threshold(records[0], 475.0) == 2000
    pairs = {p.agent: p for p in gain.pairs}
    assert pairs["a"].ratio == pytest.approx(4000 / 2000)
    assert pairs["b"].twin_steps is None
    assert pairs["b"].ratio == pytest.approx(6000 / 1000)  # a lower bound: steps so far
    assert gain.ratio == pytest.approx((4000 + 6000) / (2000 + 1000))
    assert gain.at_least
    assert gain.as_dict()["ratio_is_lower_bound"] is True


def test_a_pair_past_the_threshold_at_its_first_evaluation_is_not_counted() -> None:
    # "c" and its twin both start past the threshold: their steps (1000 = 1000) cannot say
    # whether sharing helped, so the gain is a's alone, and with c alone there is none.
    records = [
        record("a", [(1000, 100.0), (2000, 480.0)]),
        record("a-twin", [(1000, 50.0), (2000, 200.0), (4000, 490.0)], twin_of="a"),
        record("c", [(1000, 480.0), (2000, 490.0)]),
        record("c-twin", [(1000, 490.0), (2000, 480.0)], twin_of="c"),
    ]
    gain = sharing_gain(records, 475.0)
    pairs = {p.agent: p for p in gain.pairs}
    assert pairs["c"].at_start
    assert not pairs["a"].at_start
    assert pairs["c"].ratio == pytest.approx(1.0)  # what it would have diluted the gain with
    assert gain.ratio == pytest.approx(4000 / 2000)
    assert gain.past_at_start == 1
    assert gain.as_dict()["pairs_past_threshold_at_start"] == 1
    only_c = sharing_gain(records[2:], 475.0)
    assert only_c.ratio is None
    assert not only_c.at_least
    # Past it at the start over a window means at the first full window of evaluations.
    held = sharing_gain(records[2:], 475.0, window=2)
    assert held.pairs[0].agent_steps == 2000
    assert held.pairs[0].at_start
    # A twin that starts past it while its sharing agent does not is a real pair.
    late = [record("d", [(1000, 100.0), (2000, 480.0)]),
            record("d-twin", [(1000, 480.0)], twin_of="d")]  # fmt: skip
    assert sharing_gain(late, 475.0).ratio == pytest.approx(1000 / 2000)


def test_a_window_counts_when_the_threshold_was_held_not_touched() -> None:
    # A lucky 500 at 2000, back to 120, then held from 5000 on: the mean of three in a row
    # first reaches 475 at 7000 (500, 490, 480 -> 490).
    rec = record("a", [(1000, 100.0), (2000, 500.0), (3000, 120.0), (4000, 300.0),
                       (5000, 500.0), (6000, 490.0), (7000, 480.0)])  # fmt: skip
    assert steps_to_threshold(rec, 475.0) == 2000
    assert steps_to_threshold(rec, 475.0, window=3) == 7000
    assert steps_to_threshold(rec, 475.0, window=8) is None  # never that many evaluations
    twin = record("a-twin", [(1000, 480.0), (2000, 100.0), (3000, 480.0)], twin_of="a")
    gain = sharing_gain([rec, twin], 475.0, window=3)
    assert gain.pairs[0].agent_steps == 7000
    assert gain.pairs[0].twin_steps is None
    assert gain.as_dict()["threshold_window"] == 3


def test_normalised_threshold_uses_random_and_baseline_references() -> None:
    rec = record("a", [(1000, 0.0)])
    rec.evaluations = [
        EvaluationPoint(
            version=1, step=1000, mean_return=-40.0, std_return=0.0,
            regimes=(RegimeScore(regime="r", mean_return=-40.0, baseline_return=-40.0,
                                 random_return=-100.0),),
        )
    ]  # fmt: skip
    assert steps_to_threshold(rec, 1.0, scale=ThresholdScale.NORMALISED) == 1000
    assert steps_to_threshold(rec, 1.0, scale=ThresholdScale.RETURN) is None


def test_over_baseline_threshold_asks_for_a_share_better_than_the_controller() -> None:
    """A clone of the controller is at 1.0 normalised from the start, at 0 over the baseline."""

    def point(step: int, costs: tuple[float, float]) -> EvaluationPoint:
        regimes = tuple(
            RegimeScore(regime=name, mean_return=-cost, baseline_return=-10.0,
                        random_return=-100.0)
            for name, cost in zip(("winter", "summer"), costs, strict=True)
        )  # fmt: skip
        return EvaluationPoint(
            version=step, step=step, mean_return=-sum(costs) / 2, std_return=0.0, regimes=regimes
        )

    rec = record("a", [(1000, 0.0)])
    # The clone (cost 10 = the controller's), then 5 % and 25 % cheaper in one season only,
    # then 12 % cheaper in both.
    rec.evaluations = [point(1000, (10.0, 10.0)), point(2000, (9.5, 7.5)),
                       point(3000, (8.8, 8.8))]  # fmt: skip
    assert steps_to_threshold(rec, 1.0, scale=ThresholdScale.NORMALISED) == 1000
    assert steps_to_threshold(rec, 0.10, scale=ThresholdScale.OVER_BASELINE) == 2000  # 15 %
    assert steps_to_threshold(rec, 0.16, scale=ThresholdScale.OVER_BASELINE) is None
    assert steps_to_threshold(rec, 0.10, scale=ThresholdScale.OVER_BASELINE, window=2) == 3000
    twin = record("a-twin", [(1000, 0.0)], twin_of="a")
    twin.evaluations = [point(1000, (10.0, 10.0)), point(4000, (8.0, 8.0))]
    gain = sharing_gain([rec, twin], 0.10, scale=ThresholdScale.OVER_BASELINE)
    assert gain.ratio == pytest.approx(4000 / 2000)
    assert gain.as_dict()["threshold_scale"] == "over_baseline"


def test_over_baseline_without_a_baseline_reaches_nothing() -> None:
    rec = record("a", [(1000, 500.0)])  # plain returns, no baseline scored
    assert steps_to_threshold(rec, 0.0, scale=ThresholdScale.OVER_BASELINE) is None
    assert steps_to_threshold(rec, 0.0) == 1000


def test_adoptions_are_counted_from_lineage_changes() -> None:
    roster = Roster()
    snapshot = factories.snapshot(agent="a1", version=1)
    roster.on_snapshot(msgspec.structs.replace(snapshot, lineage=None))
    roster.on_snapshot(
        msgspec.structs.replace(snapshot, version=2, lineage=Lineage(agent="a7", version=4))
    )
    roster.on_snapshot(
        msgspec.structs.replace(snapshot, version=3, lineage=Lineage(agent="a7", version=4))
    )
    roster.on_snapshot(
        msgspec.structs.replace(snapshot, version=4, lineage=Lineage(agent="a2", version=9))
    )
    assert roster.agents["a1"].adoptions == 2


def test_evolution_by_steps_ranks_each_agent_when_it_has_lived_the_interval() -> None:
    coordinator = Coordinator(
        CoordinatorConfig(society="s", evolution_every_steps=10_000, seed=3), MemoryBroker()
    )
    roster = coordinator.roster
    for agent in ("good", "bad"):
        roster.on_status(factories.status(agent))
        roster.get(agent).shares = ("evolution",)

    def evaluated(agent: str, version: int, step: int, score: float) -> list[str]:
        snapshot = msgspec.structs.replace(
            factories.snapshot(agent, version), step=step, incarnation=0
        )
        roster.on_snapshot(snapshot)
        sent = coordinator.directives_sent
        coordinator._record(  # the path every evaluation takes
            snapshot, EvaluationResult(regimes=[RegimeResult(regime="r", returns=[score])])
        )
        return ["ordered"] * (coordinator.directives_sent - sent)

    # First evaluations: nobody has lived 10,000 steps since it was first seen.
    assert evaluated("good", 1, 0, 400.0) == []
    assert evaluated("bad", 1, 0, 20.0) == []
    assert evaluated("bad", 2, 5_000, 30.0) == []  # halfway: not ready
    assert evaluated("good", 2, 10_000, 450.0) == []  # ready, but at the top
    assert evaluated("bad", 3, 10_000, 40.0) == ["ordered"]  # ready and at the bottom
    record = roster.agents["bad"]
    assert record.evolution_ready_at == 20_000
    # Its next snapshots are not judged before it has lived another 10,000 steps.
    assert evaluated("bad", 4, 15_000, 10.0) == []
    assert evaluated("bad", 5, 20_000, 10.0) == ["ordered"]


def test_the_regret_against_twins_weighs_each_pair_by_what_its_controller_costs() -> None:
    # a saved 10 % of its controller's cost where its twin saved 2 %; b lost a third of a
    # percent where its twin saved 1 %. b's controller costs three times a's, so the society's
    # figure is (-8 % * 1,000 + 1.33 % * 3,000) / 4,000 = -1 %.
    records = [
        record("a", [(1000, 100.0)]),
        record("a-twin", [(1000, 50.0)], twin_of="a"),
        record("b", [(1000, 100.0)]),
        record("b-twin", [(1000, 50.0)], twin_of="b"),
        record("c", [(1000, 100.0)]),
        record("c-twin", [(1000, 50.0)], twin_of="c"),  # never compared: left out
    ]
    regrets = {
        "a": Regret(-100.0, -1000.0, 10), "a-twin": Regret(-20.0, -1000.0, 10),
        "b": Regret(10.0, -3000.0, 10), "b-twin": Regret(-30.0, -3000.0, 10),
        "c": Regret(-500.0, -1000.0, 10),
    }  # fmt: skip
    for rec in records:
        rec.regret = regrets.get(rec.id, Regret())
    gain = sharing_gain(records, 475.0)
    pairs = {p.agent: p for p in gain.pairs}
    assert pairs["a"].regret_against_twin == pytest.approx(-0.08)
    assert pairs["b"].regret_against_twin == pytest.approx(0.01 + 10 / 3000)
    assert pairs["c"].regret_against_twin is None
    assert gain.regret_against_twins == pytest.approx(-0.01)
    listed = gain.as_dict()
    assert listed["regret_against_twins"] == pytest.approx(-0.01)
    assert listed["pairs"][0]["agent_regret"] == pytest.approx(-0.1)  # type: ignore[index]
    assert describe(listed).endswith("; regret against twins -1.0%")
    # No pair compared yet: no figure, and nothing said of it.
    for rec in records:
        rec.regret = Regret()
    assert sharing_gain(records, 475.0).regret_against_twins is None


def test_the_gain_is_said_in_steps_or_why_not() -> None:
    reached = [record("a", [(1000, 100.0), (2000, 480.0)]),
               record("a-twin", [(1000, 50.0), (4000, 490.0)], twin_of="a")]  # fmt: skip
    assert describe(sharing_gain(reached, 475.0).as_dict()) == "sharing gain 2.00x"
    assert describe(sharing_gain(reached, 485.0).as_dict()) == (
        "sharing gain: no sharing agent at the threshold yet"
    )
    started = [record("c", [(1000, 480.0)]), record("c-twin", [(1000, 490.0)], twin_of="c")]
    assert describe(sharing_gain(started, 475.0).as_dict()) == (
        "sharing gain: not measurable yet, 1 of 1 pairs past the threshold at their first "
        "evaluation"
    )
    assert describe(sharing_gain(started, 475.0).as_dict(), ended=True).startswith(
        "sharing gain: not measurable, 1 of 1"
    )
    assert describe(None) == ""
    # A summary read back from disk that is not what it should be says what it can.
    odd = {"pairs": [{}], "ratio": "big", "pairs_past_threshold_at_start": "x"}
    assert describe(odd) == "sharing gain: no sharing agent at the threshold yet"
