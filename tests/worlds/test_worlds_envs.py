"""Every built-in world is a well-behaved, seeded gymnasium env."""

from __future__ import annotations

import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import agents.worlds
from agents.exceptions import ConfigError
from agents.worlds import (
    BATTERY_ID,
    SHOP_ID,
    THERMOSTAT_ID,
    TRAFFIC_ID,
    VEHICLE_ID,
    WORLD_IDS,
    HomeBattery,
    Thermostat,
    TrafficSignal,
    make_world,
    register_worlds,
    world_class,
)

VARIANTS: list[tuple[str, dict[str, Any]]] = [(env_id, {}) for env_id in WORLD_IDS] + [
    (THERMOSTAT_ID, {"continuous": True}),
    (BATTERY_ID, {"continuous": True}),
    (TRAFFIC_ID, {"left_turns": False}),
]
IDS = [f"{env_id}{'-' + '-'.join(map(str, kw)) if kw else ''}" for env_id, kw in VARIANTS]


def rollout(env: gym.Env[Any, Any], seed: int, actions: list[Any]) -> list[tuple[Any, ...]]:
    obs, info = env.reset(seed=seed)
    out: list[tuple[Any, ...]] = [(obs, info)]
    for action in actions:
        step = env.step(action)
        out.append(step)
        if step[2] or step[3]:
            break
    return out


def same(a: object, b: object) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, tuple | list) and isinstance(b, tuple | list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return bool(np.array_equal(np.asarray(a), np.asarray(b)))
    return a == b


def test_registered_under_society_namespace() -> None:
    register_worlds()
    register_worlds()  # idempotent
    for env_id in WORLD_IDS:
        assert env_id.startswith("society/")
        assert env_id in gym.registry
    assert set(WORLD_IDS) == {THERMOSTAT_ID, TRAFFIC_ID, BATTERY_ID, SHOP_ID, VEHICLE_ID}
    assert world_class(TRAFFIC_ID) is TrafficSignal
    assert sorted(agents.worlds.__all__) == sorted(set(agents.worlds.__all__))
    for name in agents.worlds.__all__:
        assert hasattr(agents.worlds, name)


@pytest.mark.parametrize(("env_id", "kwargs"), VARIANTS, ids=IDS)
def test_gymnasium_env_checker(env_id: str, kwargs: dict[str, Any]) -> None:
    env = gym.make(env_id, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the checker's warnings are findings too
        gym_check_env(env.unwrapped, skip_render_check=False)


@pytest.mark.parametrize(("env_id", "kwargs"), VARIANTS, ids=IDS)
def test_sb3_env_checker(env_id: str, kwargs: dict[str, Any]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sb3_check_env(gym.make(env_id, **kwargs).unwrapped, warn=True)


@pytest.mark.parametrize(("env_id", "kwargs"), VARIANTS, ids=IDS)
def test_seeded_determinism(env_id: str, kwargs: dict[str, Any]) -> None:
    env_a, env_b = gym.make(env_id, **kwargs), gym.make(env_id, **kwargs)
    env_a.action_space.seed(3)
    actions = [env_a.action_space.sample() for _ in range(200)]
    run_a = rollout(env_a, 42, actions)
    run_b = rollout(env_b, 42, actions)
    assert same(run_a, run_b)
    run_c = rollout(env_b, 43, actions)
    assert not same([s[0] for s in run_a], [s[0] for s in run_c])


@pytest.mark.parametrize(("env_id", "kwargs"), VARIANTS, ids=IDS)
def test_episode_shape(env_id: str, kwargs: dict[str, Any]) -> None:
    env = gym.make(env_id, **kwargs)
    obs, _ = env.reset(seed=0)
    assert obs.dtype == np.float32
    assert env.observation_space.contains(obs)
    steps = 0
    truncated = terminated = False
    while not (truncated or terminated):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs)
        assert np.isfinite(float(reward))
        steps += 1
    assert steps == env.unwrapped.episode_steps  # type: ignore[attr-defined]
    assert not terminated
    for key in world_class(env_id).metrics.values():
        assert key in info


def test_observations_are_independent_arrays() -> None:
    env = Thermostat()
    first, _ = env.reset(seed=0)
    kept = first.copy()
    env.step(np.int64(6))
    env.step(np.int64(6))
    assert np.array_equal(first, kept)


def test_info_keys() -> None:
    thermo = Thermostat()
    thermo.reset(seed=0)
    info = thermo.step(np.int64(3))[4]
    for key in ("energy_cost", "comfort_violation", "indoor_temp_c", "episode_energy_cost"):
        assert key in info
    traffic = TrafficSignal()
    traffic.reset(seed=0)
    info = traffic.step(np.int64(0))[4]
    for key in ("total_waiting_time", "throughput", "queues", "phase"):
        assert key in info
    assert info["queues"].shape == (8,)


def test_render_ansi() -> None:
    for cls in (Thermostat, TrafficSignal, HomeBattery):
        env = cls(render_mode="ansi")
        env.reset(seed=0)
        text = env.render()
        assert isinstance(text, str)
        assert text


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"r_k_per_kw": -1.0}, "r_k_per_kw"),
        ({"insulation": 3.0}, "insulation"),
        ({"comfort_high_c": 18.0}, "comfort_high_c"),
        ({"tariff": "free"}, "tariff"),
        ({"r_k_per_kw": "thick"}, "r_k_per_kw"),
        ({"n_levels": 4}, "n_levels"),
        ({"regime": "monsoon"}, "monsoon"),
    ],
)
def test_bad_thermostat_params(kwargs: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        Thermostat(**kwargs)


def test_bad_params_through_make_world() -> None:
    with pytest.raises(ConfigError, match="lost_time_s"):
        make_world(TRAFFIC_ID, lost_time_s=-2.0)
    with pytest.raises(ConfigError, match="rain"):
        make_world(TRAFFIC_ID, regime="rain")
    with pytest.raises(ConfigError, match="capacity_kwh"):
        make_world(BATTERY_ID, capacity_kwh=0.0)
    with pytest.raises(ConfigError, match="not a built-in world"):
        world_class("CartPole-v1")


def test_invalid_action_rejected() -> None:
    env = TrafficSignal()
    env.reset(seed=0)
    with pytest.raises(ValueError, match="phase"):
        env.step(np.int64(7))


def test_regime_cannot_change_structure() -> None:
    env = Thermostat()
    with pytest.raises(ConfigError, match="forecast_hours"):
        env.apply_regime({"forecast_hours": 2})
