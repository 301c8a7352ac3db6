"""Normalised scores where a regime's baseline is no better than random (CartPole reversed)."""

from __future__ import annotations

import time

import pytest
from prometheus_client import CollectorRegistry

from agents.bus.memory import MemoryBroker
from agents.bus.schemas import SCHEMA_VERSION, Evaluation, RegimeScore
from agents.coordinator.coordinator import Coordinator, CoordinatorConfig
from agents.coordinator.lifelong import normalise, reference_spans

# Measured on the default cartpole run: random 22.0 / PD 500.0 with the motor as built,
# random 20.6 / PD 8.8 with it reversed: the PD controller is helpless there.
REFERENCES = {"earth": (22.0, 500.0), "reversed_motor": (20.6, 8.8)}


def test_a_baseline_worse_than_random_borrows_the_worlds_widest_margin() -> None:
    spans = reference_spans(REFERENCES)
    assert spans == {"earth": pytest.approx(478.0), "reversed_motor": pytest.approx(478.0)}
    span = spans["reversed_motor"]
    # At the helpless controller's level: about random (0), not "at baseline" (1).
    assert normalise(8.8, 20.6, 8.8, span=span) == pytest.approx(-0.0247, abs=1e-3)
    # Mastering the reversed wiring reads about 1, as mastering the other one does.
    assert normalise(500.0, 20.6, 8.8, span=span) == pytest.approx(1.003, abs=1e-3)
    # The collapsing unit it replaces: 500 would read -40.6 and flip the sign of progress.
    assert normalise(500.0, 20.6, 8.8) == pytest.approx(-40.6, abs=0.1)


def test_regimes_whose_baselines_are_references_keep_their_own_unit() -> None:
    spans = reference_spans({"winter": (-90.0, -20.0), "summer": (-40.0, -30.0)})
    assert spans == {"winter": pytest.approx(70.0), "summer": pytest.approx(10.0)}
    # No regime where the baseline beats random: normalise's own rule applies.
    assert reference_spans({"a": (5.0, 5.0)}) == {"a": None}


def _evaluation(step: int, train: str, earth: float, reversed_motor: float) -> Evaluation:
    return Evaluation(
        schema=SCHEMA_VERSION, agent="a0", version=step // 1000 + 1, step=step,
        env_id="CartPole-v1", algo="ppo", mean_return=(earth + reversed_motor) / 2,
        std_return=0.0, episodes=1, seeds=[0], seconds=0.1, ts=time.time(), train_regime=train,
        regimes=[
            RegimeScore(regime=regime, mean_return=value, random_return=REFERENCES[regime][0],
                        baseline_return=REFERENCES[regime][1])
            for regime, value in (("earth", earth), ("reversed_motor", reversed_motor))
        ],
    )  # fmt: skip


def test_lifelong_metrics_of_a_cartpole_life_stay_on_a_meaningful_scale() -> None:
    coordinator = Coordinator(
        CoordinatorConfig(society="s"), MemoryBroker(), metrics_registry=CollectorRegistry()
    )
    roster = coordinator.roster
    # earth learned, then the reversed wiring learned halfway while earth was forgotten, then
    # earth back.
    roster.on_evaluation(_evaluation(0, "earth", 22.0, 20.6))
    roster.on_evaluation(_evaluation(10_000, "earth", 500.0, 9.0))
    roster.on_evaluation(_evaluation(20_000, "reversed_motor", 9.0, 260.0))
    roster.on_evaluation(_evaluation(30_000, "earth", 500.0, 9.0))
    report = roster.agents["a0"].lifelong
    assert report is not None
    maintenance = report.performance_maintenance.mrlep.per_regime["earth"]
    # Earth fell from 500 to 9 while the other wiring was trained: about -1 (all of it lost),
    # not the -20 or +19.5 that a collapsed unit gave.
    assert maintenance == pytest.approx((9.0 - 500.0) / 478.0, abs=1e-6)
    transfer = report.forward_transfer[("earth", "reversed_motor")].difference
    assert transfer is not None
    assert abs(transfer) < 0.1  # training on earth did nothing for the reversed wiring
