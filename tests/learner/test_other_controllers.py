"""The device's other controllers, cloned from the primary's history into the library."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.policies import ActorCriticPolicy

from agents.learner.algorithms import get_algorithm
from agents.learner.envs import DriftPlan
from agents.learner.learner import Learner, LearnerConfig
from agents.learner.other_controllers import clone_other_controllers, relabel
from agents.learner.pretrain import StartFrom, record_controller
from agents.learner.snapshots import build_policy, load_tensors, make_arch
from agents.worlds import BATTERY_ID
from agents.worlds.baselines import CartPolePD, SelfConsumptionBattery
from tests.learner.test_learner import Recorder

HISTORY = 1_920  # 20 days of 96 steps


def battery() -> gym.Env[np.ndarray, np.int64]:
    return gym.make(BATTERY_ID, disable_env_checker=True)


def test_relabelling_gives_the_other_controllers_action_in_every_recorded_state() -> None:
    env = battery()
    history = record_controller(env, SelfConsumptionBattery(env), 300, seed=0)
    tou = SelfConsumptionBattery(env, tou=True)
    labelled = relabel(history, tou)
    expected = [tou.mode(obs) for obs in history.columns.obs]
    assert labelled.columns.actions.tolist() == expected
    assert labelled.columns.actions.dtype == history.columns.actions.dtype
    assert set(expected) != set(history.columns.actions.tolist())  # they do differ
    # Everything but the actions is the history's.
    assert np.array_equal(labelled.columns.obs, history.columns.obs)
    assert np.array_equal(labelled.columns.rewards, history.columns.rewards)


def make(env_id: str, *, other_controllers: bool = True) -> Learner:
    config = LearnerConfig(
        env_id=env_id, algo="ppo", seed=0, budget_steps=HISTORY + 1,
        hyperparams={"n_steps": 256, "batch_size": 64, "n_epochs": 1},
        arch=make_arch(get_algorithm("ppo"), net_arch={"pi": [32, 32], "vf": [32, 32]}),
        snapshot_every=100_000, checkpoint_every=100_000,
        drift=DriftPlan((("winter", 10**9),)) if env_id == BATTERY_ID else None,
        start_from=StartFrom.BASELINE, history_steps=HISTORY,
        other_controllers=other_controllers,
    )  # fmt: skip
    return Learner(config, Recorder())


def test_starting_from_the_baseline_remembers_a_clone_of_each_other_controller() -> None:
    learner = make(BATTERY_ID)
    learner.start_from_baseline()
    assert sorted(learner.library.entries) == [-1]  # tou, the battery's one other controller
    clone = learner.fresh_policy()
    load_tensors(clone, learner.library.entries[-1].tensors)
    env = battery()
    history = record_controller(env, SelfConsumptionBattery(env), 960, seed=5)
    tou = SelfConsumptionBattery(env, tou=True)
    obs = torch.as_tensor(history.columns.obs)
    own = learner.model.policy
    assert isinstance(clone, ActorCriticPolicy)
    assert isinstance(own, ActorCriticPolicy)
    with torch.no_grad():
        clone_modes = clone.get_distribution(obs).mode().numpy()
        own_modes = own.get_distribution(obs).mode().numpy()
    tou_modes = np.array([tou.mode(o) for o in history.columns.obs])
    # The clone acts as the time-of-use controller; the learner's own policy stays the
    # self-consumption clone.
    assert np.mean(clone_modes == tou_modes) >= 0.9
    assert np.mean(own_modes == history.columns.actions) >= 0.9
    assert np.mean(own_modes == tou_modes) < 0.7


def test_no_clones_where_the_world_has_one_controller_or_they_are_switched_off() -> None:
    env = gym.make("CartPole-v1")
    history = record_controller(env, CartPolePD(env), 50, seed=0)
    ppo = get_algorithm("ppo")
    policy = build_policy(ppo, make_arch(ppo), env.observation_space, env.action_space)
    assert (
        clone_other_controllers("CartPole-v1", env, policy, history, lambda: policy, gamma=0.99)
        == []
    )
    off = make(BATTERY_ID, other_controllers=False)
    off.start_from_baseline()
    assert len(off.library) == 0
