"""Worlds by name: gymnasium ids, the society's own, and a user's module:Class."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.envs.classic_control import CartPoleEnv

from agents.exceptions import ConfigError
from agents.learner.envs import make_env


class SmallCartPole(CartPoleEnv):
    """A user's own world, importable as ``tests.learner.test_envs:SmallCartPole``."""

    def __init__(self, force_mag: float = 10.0) -> None:
        super().__init__()
        self.force_mag = force_mag


def make_small(force_mag: float = 5.0) -> gym.Env[object, object]:
    return SmallCartPole(force_mag=force_mag)  # type: ignore[return-value]


def test_registered_id() -> None:
    env = make_env("CartPole-v1")
    assert env.spec is not None
    assert env.spec.id == "CartPole-v1"


def test_society_worlds_are_registered() -> None:
    env = make_env("society/Thermostat-v0")
    assert env.observation_space.shape


def test_module_class_with_kwargs() -> None:
    env = make_env("tests.learner.test_envs:SmallCartPole", {"force_mag": 3.0})
    assert isinstance(env, SmallCartPole)
    assert env.force_mag == 3.0


def test_module_factory_function() -> None:
    env = make_env("tests.learner.test_envs:make_small")
    assert isinstance(env, SmallCartPole)
    assert env.force_mag == 5.0


@pytest.mark.parametrize(
    ("env_id", "kwargs", "message"),
    [
        ("NoSuchWorld-v9", {}, "NoSuchWorld-v9"),
        ("no_such_module_xyz:Env", {}, "cannot import"),
        ("tests.learner.test_envs:Missing", {}, "no class or function"),
        ("tests.learner.test_envs:SmallCartPole", {"gravity": 1.0}, "does not accept"),
        ("tests.learner.test_envs:ConfigError", {}, "not a gymnasium.Env"),
    ],
)
def test_bad_world_names_are_config_errors(
    env_id: str, kwargs: dict[str, float], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        make_env(env_id, kwargs)


def _wrappers(env: gym.Env[object, object]) -> list[str]:
    names = []
    while isinstance(env, gym.Wrapper):
        names.append(type(env).__name__)
        env = env.env
    return names


def test_an_unchecked_world_keeps_its_time_limit_and_leaves_out_the_checks() -> None:
    """Evaluation builds its worlds with checked=False: no checker wrappers, same episodes."""
    checked, unchecked = make_env("CartPole-v1"), make_env("CartPole-v1", checked=False)
    assert {"PassiveEnvChecker", "OrderEnforcing"} <= set(_wrappers(checked))
    assert _wrappers(unchecked) == ["TimeLimit"]
    assert unchecked.spec is not None
    assert unchecked.spec.max_episode_steps == 500
    for env in (checked, unchecked):
        env.reset(seed=3)
    steps = [(checked.step(1), unchecked.step(1)) for _ in range(5)]
    for a, b in steps:
        np.testing.assert_array_equal(a[0], b[0])
        assert a[1:4] == b[1:4]
