"""The drift mechanism: schedules, the wrapper, plain gymnasium envs, resume."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from agents.exceptions import ConfigError
from agents.worlds import (
    CARTPOLE_REGIMES,
    THERMOSTAT_ID,
    TRAFFIC_ID,
    DriftPhase,
    DriftSchedule,
    DriftWrapper,
    Regime,
    Thermostat,
    make_schedule,
    make_world,
    regimes_for,
)

A = Regime("a", {"x": 1.0})
B = Regime("b", {"x": 2.0})
C = Regime("c", {"x": 3.0})


def test_schedule_arithmetic() -> None:
    sched = DriftSchedule([(A, 10), (B, 5), (C, 5)])
    assert [sched.regime_at(s).name for s in (0, 9, 10, 14, 15, 19, 20, 10_000)] == [
        "a",
        "a",
        "b",
        "b",
        "c",
        "c",
        "c",
        "c",
    ]
    assert sched.period == 20
    assert sched.next_change(0) == 10
    assert sched.next_change(12) == 15
    assert sched.next_change(15) is None


def test_cyclic_schedule_comes_back() -> None:
    sched = DriftSchedule([DriftPhase(A, 10), DriftPhase(B, 5)], cyclic=True)
    assert [sched.regime_at(s).name for s in (0, 10, 15, 24, 25, 31)] == [
        "a",
        "b",
        "a",
        "a",
        "b",
        "a",
    ]
    assert sched.next_change(12) == 15
    assert sched.next_change(16) == 25


def test_schedule_rejects_bad_input() -> None:
    with pytest.raises(ConfigError, match="steps"):
        DriftSchedule([(A, 0)])
    with pytest.raises(ConfigError, match="at least one"):
        DriftSchedule([])
    with pytest.raises(ConfigError, match="monsoon"):
        make_schedule(THERMOSTAT_ID, [("winter", 10), ("monsoon", 10)])
    with pytest.raises(ConfigError, match="lifetime step"):
        DriftSchedule([(A, 5)]).regime_at(-1)


def test_regime_is_frozen_and_comparable() -> None:
    params = {"x": 1.0}
    regime = Regime("a", params)
    params["x"] = 5.0
    assert regime.params["x"] == 1.0
    assert regime == A
    assert regime != B
    with pytest.raises(TypeError):
        regime.params["x"] = 2.0  # type: ignore[index]


def run_steps(env: gym.Env[Any, Any], n: int, seed: int = 0) -> list[str]:
    """Step ``n`` times (resetting at episode ends); the regime reported at each step."""
    seen: list[str] = []
    _, info = env.reset(seed=seed)
    seen.append(info["regime"])
    for _ in range(n):
        _, _, terminated, truncated, info = env.step(env.action_space.sample())
        seen.append(info["regime"])
        if terminated or truncated:
            _, info = env.reset()
    return seen


def test_wrapper_switches_at_episode_boundaries() -> None:
    # Thermostat episodes are 96 steps; the switch is scheduled at step 150 (mid-episode 2).
    sched = make_schedule(THERMOSTAT_ID, [("winter", 150), ("summer", 100)], cyclic=True)
    env = DriftWrapper(gym.make(THERMOSTAT_ID), sched)
    _, info = env.reset(seed=1)
    assert info["regime"] == "winter"
    unwrapped = env.unwrapped
    assert isinstance(unwrapped, Thermostat)
    reported: list[str] = []
    resets_at: list[tuple[int, str]] = []
    while env.lifetime_step < 600:
        _, _, _, truncated, info = env.step(env.action_space.sample())
        reported.append(info["regime"])
        if truncated:
            _, info = env.reset()
            resets_at.append((env.lifetime_step, info["regime"]))
            expected = Thermostat.regimes[info["regime"]].params["t_mean_c"]
            assert unwrapped.params.t_mean_c == expected
    # Regime changes only at resets: each episode reports one regime.
    for k in range(6):
        assert len(set(reported[96 * k : 96 * (k + 1)])) == 1
    assert resets_at[:5] == [
        (96, "winter"),  # 96 < 150
        (192, "summer"),  # 150 <= 192 < 250
        (288, "winter"),  # cyclic: 288 % 250 = 38
        (384, "winter"),  # 134
        (480, "summer"),  # 230
    ]
    assert env.switches == 5  # winter, summer, winter, summer, winter (at 576)


def test_regime_changes_the_world() -> None:
    winter = make_world(THERMOSTAT_ID, regime="winter")
    summer = make_world(THERMOSTAT_ID, regime="summer")
    _, info_w = winter.reset(seed=5)
    _, info_s = summer.reset(seed=5)
    assert info_w["regime"] == "winter"
    assert info_s["regime"] == "summer"
    assert info_s["outdoor_temp_c"] > info_w["outdoor_temp_c"] + 10.0


def test_regime_not_in_observation() -> None:
    sched = make_schedule(TRAFFIC_ID, [("weekday", 10), ("weekend", 10)])
    env = make_world(TRAFFIC_ID, schedule=sched)
    obs, _ = env.reset(seed=0)
    assert obs.shape == gym.make(TRAFFIC_ID).observation_space.shape


def test_regimes_are_not_cumulative() -> None:
    env = Thermostat(regime="winter")
    env.set_regime("winter_flat")
    assert env.params.tariff == "flat"
    env.set_regime("summer")
    assert env.params.tariff == "tou"
    assert env.params.solar_peak_kw == 2.0
    env.set_regime("winter")
    assert env.params == Thermostat(regime="winter").params


def test_set_lifetime_step_resumes() -> None:
    sched = make_schedule(TRAFFIC_ID, [("weekday", 1000), ("event", 1000)], cyclic=True)
    fresh = make_world(TRAFFIC_ID, schedule=sched)
    _, info = fresh.reset(seed=0)
    assert info["regime"] == "weekday"
    resumed = make_world(TRAFFIC_ID, schedule=sched)
    assert isinstance(resumed, DriftWrapper)
    resumed.set_lifetime_step(1500)
    _, info = resumed.reset(seed=0)
    assert info["regime"] == "event"
    assert resumed.lifetime_step == 1500
    resumed.step(np.int64(0))
    assert resumed.lifetime_step == 1501
    resumed.set_lifetime_step(2100)  # 2100 % 2000 = 100: weekday again
    _, info = resumed.reset(seed=0)
    assert info["regime"] == "weekday"
    via_make = make_world(TRAFFIC_ID, schedule=sched, lifetime_step=1200)
    assert via_make.reset(seed=0)[1]["regime"] == "event"
    with pytest.raises(ConfigError, match="lifetime step"):
        resumed.set_lifetime_step(-3)


def test_drift_is_reproducible() -> None:
    sched = make_schedule(THERMOSTAT_ID, [("winter", 100), ("spring", 50)], cyclic=True)

    def trace() -> list[tuple[str, float]]:
        env = make_world(THERMOSTAT_ID, schedule=sched)
        env.action_space.seed(0)
        out: list[tuple[str, float]] = []
        _, info = env.reset(seed=9)
        for _ in range(400):
            _, reward, _, truncated, info = env.step(env.action_space.sample())
            out.append((info["regime"], float(reward)))
            if truncated:
                env.reset()
        return out

    assert trace() == trace()


# --- plain gymnasium envs --------------------------------------------------------------------


def test_cartpole_regimes_change_the_physics() -> None:
    sched = DriftSchedule(
        [
            (CARTPOLE_REGIMES["earth"], 1),
            (CARTPOLE_REGIMES["moon"], 1),
            (CARTPOLE_REGIMES["long_pole"], 1),
            (CARTPOLE_REGIMES["strong_motor"], 1),
            (CARTPOLE_REGIMES["heavy_pole"], 1),
        ]
    )
    env = DriftWrapper(gym.make("CartPole-v1"), sched)
    cart: Any = env.unwrapped

    def step_once() -> Any:
        env.reset(seed=0)
        cart.state = np.array([0.0, 0.0, 0.1, 0.0])  # the same start in every regime
        obs, _, _, _, info = env.step(np.int64(1))
        assert info["regime"] == env.current_regime.name  # type: ignore[union-attr]
        return obs

    earth = step_once()
    assert (cart.gravity, cart.length, cart.force_mag) == (9.8, 0.5, 10.0)
    moon = step_once()
    assert cart.gravity == 1.62
    assert not np.allclose(moon, earth)
    long_pole = step_once()
    assert (cart.gravity, cart.length) == (9.8, 1.0)  # moon's gravity reverted
    assert cart.polemass_length == pytest.approx(0.1 * 1.0)  # derived attribute recomputed
    assert not np.allclose(long_pole, earth)
    strong = step_once()
    assert (cart.length, cart.force_mag) == (0.5, 20.0)
    assert cart.polemass_length == pytest.approx(0.05)
    assert strong[1] == pytest.approx(2.0 * earth[1], rel=0.05)  # twice the push, ~twice dv
    step_once()
    assert cart.masspole == 0.5
    assert cart.total_mass == pytest.approx(1.5)
    assert cart.polemass_length == pytest.approx(0.25)


def test_make_world_fixed_regime_on_cartpole() -> None:
    env = make_world("CartPole-v1", regime="jupiter")
    _, info = env.reset(seed=0)
    assert info["regime"] == "jupiter"
    assert env.unwrapped.gravity == 24.79  # type: ignore[attr-defined]
    assert "moon" in regimes_for("CartPole-v1")


def test_unknown_attribute_is_a_clear_error() -> None:
    sched = DriftSchedule([(Regime("bad", {"gravitee": 3.0}), 10)])
    with pytest.raises(ConfigError, match=r"CartPoleEnv has no attribute 'gravitee'"):
        DriftWrapper(gym.make("CartPole-v1"), sched)
    method = DriftSchedule([(Regime("bad", {"step": 3.0}), 10)])
    with pytest.raises(ConfigError, match="method"):
        DriftWrapper(gym.make("CartPole-v1"), method)
    wrong_type = DriftSchedule([(Regime("bad", {"gravity": "high"}), 10)])
    with pytest.raises(ConfigError, match="number"):
        DriftWrapper(gym.make("CartPole-v1"), wrong_type)


def test_unknown_world_parameter_is_a_clear_error() -> None:
    sched = DriftSchedule([(Regime("bad", {"snowfall_cm": 3.0}), 10)])
    with pytest.raises(ConfigError, match="snowfall_cm"):
        DriftWrapper(gym.make(THERMOSTAT_ID), sched)


def test_pendulum_regime() -> None:
    env = make_world("Pendulum-v1", regime="moon")
    env.reset(seed=0)
    assert env.unwrapped.g == 1.62  # type: ignore[attr-defined]
