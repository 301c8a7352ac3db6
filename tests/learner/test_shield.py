"""The world's shield: the thermostat's rule, the device behind it, the learner and evaluation."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from agents.bus.codec import encode
from agents.coordinator.evaluation import EvaluationRequest, evaluate_snapshot
from agents.exceptions import ConfigError
from agents.learner.envs import DriftPlan, make_env
from agents.learner.learner import Learner, LearnerConfig
from agents.learner.shield import EXECUTED_ACTION, ShieldedDevice
from agents.worlds import THERMOSTAT_ID, HomeBattery, Thermostat
from agents.worlds import thermostat as th
from tests.coordinator.test_evaluation import snapshot_of
from tests.learner.test_learner import Recorder

OFF = 3  # the middle of the thermostat's seven levels: the heat pump off
COOLEST, WARMEST = 0, 6


def _obs(world: Thermostat, *, indoor_c: float, occupied: bool, expected_in_h: int = 0) -> Any:
    """A summer observation with the band at 20-24 °C, set as the test needs."""
    obs, _ = world.reset(seed=0)
    obs = obs.copy()
    obs[th.OBS_COMFORT_LOW] = (20.0 - th.T_REF) / th.T_SCALE
    obs[th.OBS_COMFORT_HIGH] = (24.0 - th.T_REF) / th.T_SCALE
    obs[th.OBS_INDOOR] = (indoor_c - th.T_REF) / th.T_SCALE
    obs[th.OBS_OCCUPIED] = float(occupied)
    forecast = world.layout["occupancy_forecast"]
    obs[forecast] = 0.0
    if expected_in_h:
        obs[forecast.start + expected_in_h - 1] = 1.0
    return obs


def _shield(world: Thermostat, obs: Any, action: Any) -> Any:
    return world.shield_actions(obs[None], np.asarray([action]))[0]


def test_the_thermostat_shield_turns_the_heat_pump_back_towards_the_band() -> None:
    world = Thermostat()  # comfort_margin_k 0.25: the reward's band is 20.25-23.75 °C
    assert _shield(world, _obs(world, indoor_c=22.0, occupied=True), OFF) == OFF
    assert _shield(world, _obs(world, indoor_c=23.9, occupied=True), OFF) == COOLEST
    assert _shield(world, _obs(world, indoor_c=20.1, occupied=True), OFF) == WARMEST
    # An empty house may drift: the household does not feel it.
    assert _shield(world, _obs(world, indoor_c=27.0, occupied=False), OFF) == OFF


def test_the_shield_looks_ahead_as_far_as_its_lead() -> None:
    within = Thermostat(shield_lead_h=1)
    assert _shield(within, _obs(within, indoor_c=26.0, occupied=False, expected_in_h=1), 4) == 0
    assert _shield(within, _obs(within, indoor_c=26.0, occupied=False, expected_in_h=2), 4) == 4
    now_only = Thermostat(shield_lead_h=0)
    expected = _obs(now_only, indoor_c=26.0, occupied=False, expected_in_h=1)
    assert _shield(now_only, expected, 4) == 4
    with pytest.raises(ConfigError, match="shield_lead_h"):
        Thermostat(shield_lead_h=5)  # beyond the 4 h forecast


def test_the_shield_drives_a_continuous_heat_pump_at_full_power() -> None:
    world = Thermostat(continuous=True)
    hot = _obs(world, indoor_c=25.0, occupied=True)
    cold = _obs(world, indoor_c=19.0, occupied=True)
    proposals = np.asarray([[0.3], [0.3]], dtype=np.float32)
    shielded = world.shield_actions(np.stack([hot, cold]), proposals)
    np.testing.assert_array_equal(shielded, [[-1.0], [1.0]])


def test_a_world_without_a_shield_refuses_to_be_shielded() -> None:
    battery = HomeBattery()
    assert not battery.has_shield
    actions = np.asarray([0, 1, 2])
    obs, _ = battery.reset(seed=0)
    np.testing.assert_array_equal(battery.shield_actions(np.stack([obs] * 3), actions), actions)
    with pytest.raises(ConfigError, match="no shield"):
        ShieldedDevice(battery)


def test_a_shielded_snapshot_of_a_world_without_a_shield_is_refused_in_evaluation() -> None:
    learner = Learner(LearnerConfig(env_id="CartPole-v1", algo="ppo", seed=1), Recorder())
    try:
        snapshot = snapshot_of(learner)
    finally:
        learner.close()
    snapshot.shielded = True
    result = evaluate_snapshot(EvaluationRequest(encode(snapshot), episodes=1, seed=0))
    assert result.error_reason == "incompatible"
    assert "no shield" in (result.error_detail or "")


def _summer_comfort(env: Any, steps: int) -> float:
    """K h outside the band over ``steps`` steps with the heat pump asked to stay off."""
    env.reset(seed=3)
    violation = 0.0
    for _ in range(steps):
        _, _, _, truncated, info = env.step(OFF)
        violation += info["comfort_violation"]
        if truncated:
            env.reset()
    return violation


def test_a_shielded_device_keeps_a_lazy_policy_comfortable_and_says_what_it_did() -> None:
    def summer() -> Any:
        return make_env(THERMOSTAT_ID, {}, drift=DriftPlan((("summer", 10**6),)))

    bare = _summer_comfort(summer(), 4 * 96)
    device = ShieldedDevice(summer())
    executed: list[Any] = []
    device.reset(seed=3)
    violation = 0.0
    for _ in range(4 * 96):
        _, _, _, truncated, info = device.step(OFF)
        violation += info["comfort_violation"]
        executed.append(info.get(EXECUTED_ACTION))
        if truncated:
            device.reset()
    assert bare > 1.0  # the precondition: summer days with the heat pump off are too warm
    assert violation < 0.1 * bare
    replaced = [a for a in executed if a is not None]
    assert device.interventions == len(replaced) > 0
    assert device.steps == 4 * 96
    assert {int(a) for a in replaced} <= {COOLEST, WARMEST}


def _shielded_learner(*, shield: bool) -> tuple[Learner, Recorder]:
    config = LearnerConfig(
        env_id=THERMOSTAT_ID, algo="ppo", seed=1, budget_steps=3 * 96, experience_batch=96,
        snapshot_every=10**6, checkpoint_every=10**6, hyperparams={"n_steps": 96, "batch_size": 96},
        drift=DriftPlan((("summer", 10**6),)), shield=shield,
    )  # fmt: skip
    events = Recorder()
    return Learner(config, events), events


def test_a_shielded_learner_publishes_what_its_device_did() -> None:
    learner, events = _shielded_learner(shield=True)
    try:
        learner.run()
    finally:
        learner.close()
    device = learner.device
    assert isinstance(device, ShieldedDevice)
    assert device.interventions > 0  # the untrained policy let the house leave the band
    assert learner.stats.shield_interventions == device.interventions
    world = device.world
    for batch, _ in events.batches:
        obs, actions = np.asarray(batch.obs), np.asarray(batch.actions)
        # An executed action is the shield's own choice: the shield leaves it as it is.
        np.testing.assert_array_equal(world.shield_actions(obs, actions), actions)


def test_evaluation_plays_a_shielded_snapshot_through_the_shield() -> None:
    learner, _ = _shielded_learner(shield=False)
    try:
        policy = learner.model.policy
        state = policy.state_dict()
        state["action_net.weight"].zero_()
        state["action_net.bias"][:] = torch.full((7,), -10.0)
        state["action_net.bias"][OFF] = 10.0  # always proposes "off"
        policy.load_state_dict(state)
        snapshot = snapshot_of(learner)
        snapshot.regimes = learner.regimes
    finally:
        learner.close()

    def comfort(shielded: bool) -> float:
        snapshot.shielded = shielded
        result = evaluate_snapshot(EvaluationRequest(encode(snapshot), episodes=3, seed=0))
        assert result.error_reason is None
        (regime,) = result.regimes
        return regime.metrics["comfort_violation"]

    lazy = comfort(shielded=False)
    assert lazy > 0.5
    assert comfort(shielded=True) < 0.1 * lazy
