"""Each snapshot is evaluated on every regime of its world, next to the world's baseline."""

from __future__ import annotations

import msgspec
import pytest

from agents.bus.codec import encode
from agents.bus.schemas import LibraryPolicy, RegimeSpec
from agents.bus.signing import tensor_digest
from agents.coordinator.evaluation import (
    DEFAULT_REGIME,
    EvaluationRequest,
    evaluate_snapshot,
)
from agents.learner.envs import DriftPlan
from agents.learner.snapshots import load_tensors
from agents.worlds import BASELINES, device_params, run_controller
from tests.coordinator.test_evaluation import learner, snapshot_of
from tests.learner.test_lifelong_loop import balancer

SEEDS = 3


def test_every_regime_is_evaluated_next_to_the_baseline_on_the_same_seeds() -> None:
    snapshot = snapshot_of(learner())
    regimes = DriftPlan((("earth", 10), ("jupiter", 10))).specs("CartPole-v1")
    snapshot = msgspec.structs.replace(snapshot, regimes=regimes)
    result = evaluate_snapshot(EvaluationRequest(encode(snapshot), episodes=SEEDS, seed=50))
    assert result.error_reason is None, result.error_detail
    assert [r.regime for r in result.regimes] == ["earth", "jupiter"]
    assert result.baseline == "pd"
    for regime in result.regimes:
        assert len(regime.returns) == SEEDS
        # The baseline ran through the same loop on the same worlds: same as run_controller.
        expected = run_controller(
            BASELINES["CartPole-v1"]["pd"], "CartPole-v1", seeds=[50, 51, 52], regime=regime.regime
        )
        assert regime.baseline_returns == list(expected.returns)
    assert result.mean == pytest.approx(sum(r.mean for r in result.regimes) / 2)


def test_a_lifelong_snapshot_is_scored_with_the_policy_it_would_recall_on_each_regime() -> None:
    agent = learner()
    load_tensors(agent.model.policy, balancer(agent))  # balances with the normal wiring
    mirrored = balancer(agent, mirrored=True)  # remembered from a reversed-motor context
    library = [LibraryPolicy(context=1, score=500.0, tensors=mirrored,
                             digest=tensor_digest(mirrored))]  # fmt: skip
    regimes = DriftPlan((("earth", 10), ("reversed_motor", 10))).specs("CartPole-v1")
    snapshot = msgspec.structs.replace(snapshot_of(agent), regimes=regimes, library=library)
    result = evaluate_snapshot(EvaluationRequest(encode(snapshot), episodes=SEEDS, seed=50))
    assert result.error_reason is None, result.error_detail
    earth, reversed_motor = result.regimes
    assert earth.recall_from == "current"
    assert earth.recall_mean == earth.mean
    assert reversed_motor.recall_from == "library:1"
    assert reversed_motor.mean < 50  # its own policy throws the pole over...
    assert reversed_motor.recall_mean is not None
    assert reversed_motor.recall_mean > 150  # ...what it remembers keeps it up


def test_a_world_that_does_not_drift_is_evaluated_as_it_is() -> None:
    result = evaluate_snapshot(
        EvaluationRequest(encode(snapshot_of(learner())), episodes=2, seed=0)
    )
    assert [r.regime for r in result.regimes] == [DEFAULT_REGIME]
    assert result.baseline_mean is not None


def test_device_worlds_report_their_metrics_for_policy_and_baseline() -> None:
    env_id = "society/Thermostat-v0"
    agent = learner(algo="ppo", env=env_id)
    params = device_params(env_id, seed=0, index=2)
    regimes = DriftPlan((("winter", 5), ("summer", 5))).specs(env_id)
    snapshot = msgspec.structs.replace(snapshot_of(agent), env_kwargs=params, regimes=regimes)
    result = evaluate_snapshot(EvaluationRequest(encode(snapshot), episodes=2, seed=0))
    assert result.error_reason is None, result.error_detail
    assert result.baseline == "programmable"
    winter, summer = result.regimes
    for regime in (winter, summer):
        assert {"energy_cost", "comfort_violation"} <= set(regime.metrics)
        assert {"energy_cost", "comfort_violation"} <= set(regime.baseline_metrics)
    # The baseline was evaluated on the agent's own device, not the default house.
    own = run_controller(
        BASELINES[env_id]["programmable"], env_id, seeds=[0, 1], regime="winter", env_kwargs=params
    )
    assert winter.baseline_returns == list(own.returns)


def test_a_world_that_breaks_is_reported_not_raised() -> None:
    snapshot = snapshot_of(learner())
    broken = [RegimeSpec(name="broken", params={"gravity": "heavy"})]
    result = evaluate_snapshot(
        EvaluationRequest(encode(msgspec.structs.replace(snapshot, regimes=broken)), 1, 0)
    )
    assert result.error_reason == "incompatible"
