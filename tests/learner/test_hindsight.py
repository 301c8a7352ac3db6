"""Hindsight plans: a remembered day planned on the model, played on the house, cloned."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from gymnasium import spaces
from stable_baselines3 import PPO

from agents.exceptions import ConfigError
from agents.learner.adaptation import Strategy
from agents.learner.hindsight import HindsightPlans, PlannerSettings, check_hindsight, plan_day
from agents.learner.imagination import DeviceModel, RememberedDay
from agents.learner.learner import Learner
from agents.learner.pretrain import record_controller
from agents.worlds import THERMOSTAT_ID, make_world
from agents.worlds.baselines import SetpointThermostat
from tests.learner.test_imagination import (
    DAY,
    controller_days,
    imagining_learner,
    remembered,
    thermostat,
)

FAST = PlannerSettings(samples=128, iterations=12)


def fitted(days: int = 30, **options: Any) -> tuple[Any, Any, DeviceModel]:
    """A house, its memory of ``days`` days of the programmable thermostat, and its model."""
    if options:
        env = make_world(THERMOSTAT_ID, regime="winter", **options)
        history = record_controller(env, SetpointThermostat(env), days * DAY, seed=0)
    else:
        env, history = controller_days(days)
    memory = remembered(history)
    obs, actions, next_obs = memory.transitions()
    world: Any = env.unwrapped
    model = DeviceModel(world.endogenous_obs)
    model.fit(obs, world.action_features(actions), next_obs)
    return env, memory, model


def lived_day(env: Any, seed: int) -> RememberedDay:
    """The programmable thermostat's day ``seed`` (the episode's first reset takes it)."""
    history = record_controller(env, SetpointThermostat(env), DAY, seed=seed)
    return remembered(history).days[0]


def played(env: Any, seed: int, actions: Any) -> tuple[float, float]:
    """The actions played open loop on the house's episode ``seed``: (return, K·h too cold/hot)."""
    env.reset(seed=seed)
    total = 0.0
    info: dict[str, Any] = {}
    for action in actions:
        _, reward, _, _, info = env.step(action)
        total += float(reward)
    return total, float(info["episode_comfort_violation"])


@pytest.mark.parametrize("seed", [500, 501])
def test_a_plan_played_on_the_house_beats_its_controller_on_that_day(seed: int) -> None:
    env, _, model = fitted()
    day = lived_day(env, seed)
    plan = plan_day(env.unwrapped, model, day, np.random.default_rng(0))  # the default search
    assert len(plan) == DAY
    assert plan.obs.shape == day.obs.shape
    assert set(np.unique(plan.actions)) <= set(range(env.action_space.n))
    controller_return, _ = played(env, seed, day.actions)
    plan_return, plan_violation = played(env, seed, plan.actions)
    # The house itself, not only the model, says the plan is better: cheaper at the comfort
    # the reward asks for.
    assert plan_return > controller_return + 0.1
    assert plan_violation < 0.05
    # And the model's account of the plan is close to what the house made of it.
    assert plan.planned_return == pytest.approx(plan_return, abs=0.2)


def test_a_plan_never_scores_below_the_day_as_lived_by_the_model() -> None:
    env, memory, model = fitted(10)
    day = memory.days[-1]
    tiny = PlannerSettings(samples=4, iterations=1)  # hardly a search: the day itself wins
    plan = plan_day(env.unwrapped, model, day, np.random.default_rng(0), tiny)
    lived = plan_day(env.unwrapped, model, day, np.random.default_rng(0), PlannerSettings(1, 0))
    assert np.array_equal(lived.actions, day.actions)
    assert plan.planned_return >= lived.planned_return


def test_continuous_actions_are_planned_within_their_box() -> None:
    env, _, model = fitted(10, continuous=True)
    day = lived_day(env, 500)
    plan = plan_day(env.unwrapped, model, day, np.random.default_rng(0), FAST)
    assert plan.actions.shape == (DAY, 1)
    assert np.all(np.abs(plan.actions) <= 1.0)
    controller_return, _ = played(env, 500, day.actions)
    plan_return, _ = played(env, 500, plan.actions)
    assert plan_return > controller_return


def test_an_action_space_the_planner_cannot_sample_is_a_config_error() -> None:
    env, memory, model = fitted(6)
    world = env.unwrapped
    world.action_space = spaces.MultiBinary(2)
    with pytest.raises(ConfigError, match="MultiBinary"):
        plan_day(world, model, memory.days[-1], np.random.default_rng(0), FAST)


def test_plans_are_made_at_the_rate_asked_and_cloned_into_the_policy() -> None:
    env, memory, model = fitted(12)
    plans = HindsightPlans(env.unwrapped, 0.25, seed=0, settings=FAST)
    assert plans.plan(model, memory.days, 3.0) == 0  # 0.75 plans owed
    assert plans.plan(model, memory.days, 6.0) == 2  # 2.25 owed: the two latest days
    assert plans.planned_days == len(plans.plans) == 2
    assert plans.plans[-1].obs[0] == pytest.approx(memory.days[-1].obs[0])
    assert plans.planned_gain is not None
    assert plans.planned_gain > 0
    ppo = PPO("MlpPolicy", thermostat(), seed=0, device="cpu")
    columns = [p.columns() for p in plans.plans]
    obs = np.concatenate([c.obs for c in columns])
    planned = np.concatenate([c.actions for c in columns])
    before_values = ppo.policy.predict_values(ppo.policy.obs_to_tensor(obs)[0]).detach()

    def agreement() -> float:
        chosen, _ = ppo.predict(obs, deterministic=True)
        return float(np.mean(chosen == planned))

    before = agreement()
    result = plans.clone_into(ppo.policy, gamma=0.99)
    assert result.agreement == pytest.approx(agreement())
    assert agreement() > before + 0.2
    assert result.value_error is None  # the value function is the learner's own
    after_values = ppo.policy.predict_values(ppo.policy.obs_to_tensor(obs)[0]).detach()
    assert np.array_equal(before_values.numpy(), after_values.numpy())


@pytest.mark.parametrize(
    ("rate", "imagination", "needle"),
    [(-0.1, 4.0, r"\[0, 1\]"), (1.5, 4.0, r"\[0, 1\]"), (0.25, 0.0, "imagination > 0")],
)
def test_hindsight_that_cannot_be_had_is_a_config_error(
    rate: float, imagination: float, needle: str
) -> None:
    with pytest.raises(ConfigError, match=needle):
        check_hindsight(rate, imagination)
    check_hindsight(0.0, 0.0)


def planning_learner() -> Learner:
    """A thermostat learner that plans half of its days, after 12 days lived."""
    return imagining_learner(hindsight=0.5, strategy=Strategy.LIFELONG)


def test_a_learner_with_hindsight_plans_its_days_and_reports_them() -> None:
    learner = planning_learner()
    imagination = learner.imagination
    assert imagination is not None
    assert imagination.hindsight is not None
    # Half a plan per day lived, the history's days included, planned at rollouts' starts
    # once five days were remembered: 12 days lived, the last rollout's still owed.
    assert 3 <= imagination.planned_days <= 6
    assert learner.stats.planned_days == imagination.planned_days


def test_a_change_of_the_world_drops_the_plans_of_the_world_that_was() -> None:
    learner = planning_learner()
    imagination = learner.imagination
    assert imagination is not None
    assert imagination.hindsight is not None
    assert imagination.hindsight.plans
    context = learner.stats.context
    adapter = learner.adapter
    for episode in range(60):  # the controller's returns on the device's days fall: a change
        level = -5.0 if episode < 40 else -15.0
        adapter.observe(-5.0, DAY * (episode + 1), controller_return=level + episode % 3 * 0.1)
        if adapter.drift_pending:
            break
    assert adapter.drift_pending
    adapter.adapt()
    assert learner.stats.context > context
    assert not imagination.hindsight.plans
    assert imagination.planned_days > 0  # the count is of the run
