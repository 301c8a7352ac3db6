"""Starting from the device's controller: recording its history and fitting a model to it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import DQN, PPO

from agents.exceptions import ConfigError
from agents.learner.pretrain import pretrain, record_controller, start_controller
from agents.worlds import make_world
from agents.worlds.baselines import Controller, PolicyController, run_controller

TRAFFIC = "society/TrafficSignal-v0"
THERMOSTAT = "society/Thermostat-v0"


def _ppo(env_id: str, *, continuous: bool = False) -> PPO:
    regime = "weekday" if env_id == TRAFFIC else "winter"
    kwargs: dict[str, Any] = {"continuous": True} if continuous else {}
    return PPO(
        "MlpPolicy",
        make_world(env_id, regime=regime, **kwargs),
        n_steps=64,
        seed=0,
        device="cpu",
        policy_kwargs={"net_arch": {"pi": [32, 32], "vf": [32, 32]}},
    )


def test_record_controller_keeps_every_step_and_the_controllers_actions() -> None:
    env = make_world(TRAFFIC, regime="weekday")
    controller = start_controller(TRAFFIC, env)
    history = record_controller(env, controller, 1_500, seed=3)
    assert len(history) == 1_500
    assert len(history.episode_returns) == 1_500 // 720  # whole episodes only
    # The recorded actions are the controller's own on the recorded observations.
    replay = start_controller(TRAFFIC, make_world(TRAFFIC, regime="weekday"))
    replay.reset()
    replayed = [int(replay.act(obs)) for obs in history.columns.obs[:720]]
    assert replayed == [int(a) for a in history.columns.actions[:720]]
    assert history.columns.truncated[719]


def test_cloning_makes_the_policy_act_as_the_controller_and_fits_the_value() -> None:
    env = make_world(TRAFFIC, regime="weekday")
    # 28 one-hour episodes: every hour of the day, the night's empty junction included.
    history = record_controller(env, start_controller(TRAFFIC, env), 20_160, seed=1)
    model = _ppo(TRAFFIC)
    untrained = _ppo(TRAFFIC)
    result = pretrain(model, history, epochs=20)
    assert result.agreement is not None
    assert result.agreement >= 0.95
    # Played on other days, the clone does what the controller does, within 10 %; the
    # untrained network it started as makes traffic wait far longer.
    seeds = range(50, 53)

    def score(factory: Callable[[gym.Env[Any, Any]], Controller]) -> float:
        return run_controller(factory, TRAFFIC, seeds=seeds, regime="weekday").mean_return

    base = score(lambda e: start_controller(TRAFFIC, e))
    assert score(lambda _e: PolicyController(model)) >= base - 0.1 * abs(base)
    assert score(lambda _e: PolicyController(untrained)) < base - 0.2 * abs(base)
    # The value function learned the returns' scale: far closer than an untrained one.
    before = pretrain(untrained, history, epochs=0)
    assert result.value_error is not None
    assert before.value_error is not None
    assert result.value_error < 0.2 * before.value_error


def test_cloning_leaves_a_gaussian_policys_exploration_noise_alone() -> None:
    env = make_world(THERMOSTAT, regime="winter", continuous=True)
    history = record_controller(env, start_controller(THERMOSTAT, env), 960, seed=1)
    model = _ppo(THERMOSTAT, continuous=True)
    log_std: torch.Tensor = model.policy.log_std
    mean_net: torch.nn.Linear = model.policy.action_net  # type: ignore[assignment]
    before = log_std.detach().clone()
    mean_before = mean_net.weight.detach().clone()
    pretrain(model, history, epochs=5)
    assert torch.equal(log_std.detach(), before)
    assert not torch.equal(mean_net.weight.detach(), mean_before)


def test_off_policy_learners_take_the_history_into_their_replay_buffer() -> None:
    env = make_world(TRAFFIC, regime="weekday")
    history = record_controller(env, start_controller(TRAFFIC, env), 800, seed=1)
    model = DQN("MlpPolicy", make_world(TRAFFIC, regime="weekday"), buffer_size=5_000, seed=0)
    assert model.replay_buffer is not None
    assert model.replay_buffer.size() == 0
    result = pretrain(model, history)
    assert result.replayed == 800
    assert model.replay_buffer.size() == 800
    np.testing.assert_array_equal(
        model.replay_buffer.actions[:800, 0, 0], np.asarray(history.columns.actions)
    )


def test_a_world_without_a_controller_cannot_start_from_one() -> None:
    with pytest.raises(ConfigError, match="no baseline controller"):
        start_controller("Pendulum-v1", make_world("Pendulum-v1"))


def test_a_dqn_starts_greedy_as_the_controller_and_values_its_returns() -> None:
    env = make_world(TRAFFIC, regime="weekday")
    history = record_controller(env, start_controller(TRAFFIC, env), 20_160, seed=1)

    def dqn() -> DQN:
        return DQN(
            "MlpPolicy", make_world(TRAFFIC, regime="weekday"), buffer_size=25_000, seed=0,
            device="cpu", policy_kwargs={"net_arch": [64, 64]},
        )  # fmt: skip

    model, without_margin = dqn(), dqn()
    result = pretrain(model, history, epochs=40)
    assert result.agreement is not None
    assert result.agreement >= 0.95
    # TD learning alone says nothing of the actions the controller did not take; the margin
    # puts them a mean absolute reward below it.
    pretrain(without_margin, history, epochs=40, margin=0.0)
    gap = float(np.mean(np.abs(history.columns.rewards)))

    def leads(dqn: DQN) -> float:
        """Share of the history's states where the controller's action leads by gap / 2."""
        obs = torch.as_tensor(np.asarray(history.columns.obs, dtype=np.float32))
        chosen = torch.as_tensor(np.asarray(history.columns.actions, dtype=np.int64))
        with torch.no_grad():
            values = dqn.q_net(obs)
        own = values.gather(1, chosen.reshape(-1, 1)).squeeze(1)
        others = values.scatter(1, chosen.reshape(-1, 1), -np.inf).max(dim=1).values
        return float(((own - others) >= gap / 2).float().mean())

    assert leads(model) >= 0.9
    assert leads(without_margin) < 0.7
    # On other days the greedy policy does what the controller does, within 10 %.
    seeds = range(50, 53)
    base = run_controller(lambda e: start_controller(TRAFFIC, e), TRAFFIC, seeds=seeds,
                          regime="weekday").mean_return  # fmt: skip
    greedy = run_controller(lambda _e: PolicyController(model), TRAFFIC, seeds=seeds,
                            regime="weekday").mean_return  # fmt: skip
    assert greedy >= base - 0.1 * abs(base)
    # The controller's actions are valued by what followed them: across the states of the
    # history, the greedy value follows the discounted return to the episode's end.
    rewards = np.asarray(history.columns.rewards, dtype=np.float64).reshape(-1, 720)
    discount = model.gamma ** np.arange(720)
    following = np.array([[np.sum(day[t:] * discount[: 720 - t]) for t in range(0, 600, 20)]
                          for day in rewards]).reshape(-1)  # fmt: skip
    obs = np.asarray(history.columns.obs, dtype=np.float32).reshape(len(rewards), 720, -1)
    with torch.no_grad():
        values = model.q_net(torch.as_tensor(obs[:, 0:600:20].reshape(len(following), -1)))
    correlation = np.corrcoef(values.max(dim=1).values.numpy(), following)[0, 1]
    assert correlation > 0.7
