"""Batched evaluation acts as ``predict`` does and plays the episodes one-by-one play."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from agents.bus.schemas import PolicyArch
from agents.learner.algorithms import get_algorithm
from agents.learner.batch_actor import ActorController, batch_actor, numpy_actor
from agents.learner.envs import make_env
from agents.learner.snapshots import build_policy
from agents.worlds import (
    THERMOSTAT_ID,
    PolicyController,
    metric_keys,
    play_batched,
    play_episodes,
)

CASES = [
    ("ppo", "CartPole-v1", "tanh"),
    ("ppo", "Pendulum-v1", "tanh"),
    ("ppo", THERMOSTAT_ID, "relu"),
    ("a2c", "CartPole-v1", "elu"),
    ("dqn", "CartPole-v1", "relu"),
    ("dqn", THERMOSTAT_ID, "leaky_relu"),
    ("sac", "Pendulum-v1", "relu"),
]


def policy_for(algo: str, env: gym.Env[Any, Any], activation: str, seed: int = 0) -> Any:
    import torch

    torch.manual_seed(seed)
    arch = PolicyArch(policy="MlpPolicy", net_arch=[32, 32], activation=activation)
    return build_policy(get_algorithm(algo), arch, env.observation_space, env.action_space)


@pytest.mark.parametrize(("algo", "env_id", "activation"), CASES)
def test_the_numpy_pass_acts_as_predict_does(algo: str, env_id: str, activation: str) -> None:
    env = make_env(env_id, {})
    policy = policy_for(algo, env, activation)
    act = numpy_actor(policy)
    assert act is not None, "this network should run in numpy"
    rng = np.random.default_rng(1)
    obs = np.stack([env.observation_space.sample() for _ in range(64)]).astype(np.float32)
    obs += rng.normal(0.0, 0.1, obs.shape).astype(np.float32)
    expected, _ = policy.predict(obs, deterministic=True)
    ours = act(obs)
    assert ours.shape == expected.shape
    if isinstance(env.action_space, gym.spaces.Discrete):
        np.testing.assert_array_equal(ours, expected)
    else:
        np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-6)


def test_an_unsupported_network_is_served_by_predict() -> None:
    env = make_env("CartPole-v1", {})
    policy = policy_for("ppo", env, "gelu")
    assert numpy_actor(policy) is None
    obs = np.stack([env.observation_space.sample() for _ in range(8)])
    expected, _ = policy.predict(obs, deterministic=True)
    np.testing.assert_array_equal(batch_actor(policy)(obs), expected)


@pytest.mark.parametrize(
    ("algo", "env_id", "width"),
    [("ppo", "CartPole-v1", 3), ("dqn", THERMOSTAT_ID, 7), ("ppo", THERMOSTAT_ID, 2)],
)
def test_side_by_side_plays_the_same_episodes_as_one_by_one(
    algo: str, env_id: str, width: int
) -> None:
    seeds = [100 + i for i in range(7)]
    keys = metric_keys(env_id)
    envs = [make_env(env_id, {}) for _ in range(width)]
    policy = policy_for(algo, envs[0], "tanh", seed=3)
    together = play_batched(batch_actor(policy), envs, seeds=seeds, metrics=keys)
    alone = play_episodes(PolicyController(policy), make_env(env_id, {}), seeds=seeds, metrics=keys)
    assert together.returns == alone.returns
    assert together.lengths == alone.lengths
    assert dict(together.metrics) == dict(alone.metrics)
    assert len(set(together.returns)) > 1  # different seeds, different episodes


@pytest.mark.parametrize(("algo", "env_id", "activation"), CASES)
def test_the_actor_controller_plays_the_episodes_predict_plays(
    algo: str, env_id: str, activation: str
) -> None:
    # The sandbox tries candidates through it: the same episodes, a tenth of the cost.
    seeds = [40, 41, 42]
    keys = metric_keys(env_id) if env_id == THERMOSTAT_ID else {}
    policy = policy_for(algo, make_env(env_id, {}), activation, seed=5)
    ours = play_episodes(ActorController(policy), make_env(env_id, {}), seeds=seeds, metrics=keys)
    alone = play_episodes(PolicyController(policy), make_env(env_id, {}), seeds=seeds, metrics=keys)
    if algo == "sac" or env_id == "Pendulum-v1":  # continuous: float32 rounding apart
        np.testing.assert_allclose(ours.returns, alone.returns, rtol=1e-4)
    else:
        assert ours.returns == alone.returns
        assert dict(ours.metrics) == dict(alone.metrics)
    assert ours.lengths == alone.lengths


def test_an_episode_is_cut_at_max_steps() -> None:
    env = make_env("CartPole-v1", {})
    policy = policy_for("ppo", env, "tanh")
    score = play_batched(batch_actor(policy), [env], seeds=[1, 2], metrics={}, max_steps=5)
    assert score.lengths == (5, 5)


def test_the_numpy_pass_never_overwrites_the_observations_it_is_given() -> None:
    """Activations run in place only on arrays the pass made itself, never on its input."""
    import torch
    from torch import nn

    from agents.learner.batch_actor import numpy_layers

    torch.manual_seed(0)
    module = nn.Sequential(nn.Tanh(), nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2), nn.ReLU())
    layer = numpy_layers(module)
    assert layer is not None
    obs = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32) * 3
    given = obs.copy()
    out = layer(obs)
    np.testing.assert_array_equal(obs, given)
    with torch.no_grad():
        expected = module(torch.as_tensor(given)).numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
