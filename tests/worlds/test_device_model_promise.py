"""What a world promises when it names its endogenous observation entries (imagination.py).

Every other entry must not depend on the actions, and ``obs_reward`` must give exactly the
reward ``step`` gives. Parametrised over every world (and variant) that makes the promise.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from agents.worlds import make_world, world_class
from tests.worlds.test_worlds_envs import VARIANTS

PROMISING = [(env_id, kw) for env_id, kw in VARIANTS if world_class(env_id).endogenous_obs]
IDS = [f"{env_id}{'-' + '-'.join(map(str, kw)) if kw else ''}" for env_id, kw in PROMISING]
REGIMES = ("winter", "summer", "winter_dynamic")


def test_the_thermostat_makes_the_promise() -> None:
    assert any(env_id == "society/Thermostat-v0" for env_id, _ in PROMISING)


def _rollout(
    env_id: str, kwargs: dict[str, Any], regime: str, *, seed: int, steps: int, action_seed: int = 0
) -> Any:
    env = make_world(env_id, regime=regime, **kwargs)
    env.action_space.seed(action_seed)
    obs, _ = env.reset(seed=seed)
    rows: list[tuple[Any, Any, Any, float]] = []
    for _ in range(steps):
        action = env.action_space.sample()
        next_obs, reward, terminated, truncated, _ = env.step(action)
        rows.append((obs, action, next_obs, float(reward)))
        if terminated or truncated:
            break
        obs = next_obs
    return env, rows


@pytest.mark.parametrize(("env_id", "kwargs"), PROMISING, ids=IDS)
@pytest.mark.parametrize("regime", REGIMES)
def test_the_reward_from_observations_is_the_steps_reward(
    env_id: str, kwargs: dict[str, Any], regime: str
) -> None:
    env, rows = _rollout(env_id, kwargs, regime, seed=3, steps=500)
    obs, actions, next_obs, rewards = (np.asarray(column) for column in zip(*rows, strict=True))
    computed = env.unwrapped.obs_reward(obs, actions, next_obs)
    assert computed.shape == rewards.shape
    assert np.allclose(computed, rewards, rtol=1e-5, atol=1e-5)
    assert np.ptp(rewards) > 0.1  # the rollout exercised the reward, not one constant


@pytest.mark.parametrize(("env_id", "kwargs"), PROMISING, ids=IDS)
def test_what_the_actions_do_not_change_is_exogenous(env_id: str, kwargs: dict[str, Any]) -> None:
    """Two lives of one seeded episode with different actions differ only where promised."""
    _, first = _rollout(env_id, kwargs, "winter", seed=5, steps=300)
    _, second = _rollout(env_id, kwargs, "winter", seed=5, steps=300, action_seed=1)
    a = np.asarray([row[2] for row in first])
    b = np.asarray([row[2] for row in second])
    endogenous = list(world_class(env_id).endogenous_obs)
    exogenous = np.ones(a.shape[1], dtype=bool)
    exogenous[endogenous] = False
    assert not np.array_equal(a[:, endogenous], b[:, endogenous])  # the actions did differ
    assert np.array_equal(a[:, exogenous], b[:, exogenous])


@pytest.mark.parametrize(("env_id", "kwargs"), PROMISING, ids=IDS)
def test_action_features_are_one_row_of_numbers_per_action(
    env_id: str, kwargs: dict[str, Any]
) -> None:
    env: Any = make_world(env_id, **kwargs)
    actions = np.asarray([env.action_space.sample() for _ in range(7)])
    features = env.unwrapped.action_features(actions)
    assert features.ndim == 2
    assert features.shape[0] == len(actions)
    assert np.isfinite(features).all()
