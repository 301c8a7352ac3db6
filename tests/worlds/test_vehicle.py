"""The car-following world: its physics, its score, its regimes and its two controllers."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from agents.exceptions import ConfigError
from agents.worlds import (
    BASELINES,
    PRIMARY_BASELINE,
    VEHICLE_ID,
    WORLD_IDS,
    CarFollowing,
    device_params,
    make_world,
    run_controller,
    world_class,
)
from agents.worlds.vehicle import (
    GRAVITY_MS2,
    OBS_GAP,
    OBS_SPEED,
    VEHICLE_REGIMES,
    ConstantTimeGapACC,
    IntelligentDriver,
)

FULL_BRAKE = np.array([-1.0], dtype=np.float32)
COAST = np.array([0.0], dtype=np.float32)
FULL_THROTTLE = np.array([1.0], dtype=np.float32)


def drive(env: CarFollowing, action: Any, steps: int) -> dict[str, Any]:
    info: dict[str, Any] = {}
    for _ in range(steps):
        info = env.step(action)[4]
    return info


def test_registered_with_its_regimes_and_controllers() -> None:
    assert VEHICLE_ID in WORLD_IDS
    assert world_class(VEHICLE_ID) is CarFollowing
    assert set(VEHICLE_REGIMES) == {"dry", "wet", "icy", "dense", "aggressive"}
    assert set(BASELINES[VEHICLE_ID]) == {"idm", "acc"}
    assert PRIMARY_BASELINE[VEHICLE_ID] == "idm"
    env = CarFollowing()
    assert env.regime_name == "dry"
    assert env.episode_steps == 600  # 120 s of 0.2 s steps


def test_the_actuators_lag_behind_the_command() -> None:
    env = CarFollowing(lag_s=0.5)
    env.reset(seed=0, options={"gap_m": 500.0, "speed_ms": 20.0})
    info = env.step(np.array([0.1], dtype=np.float32))[4]  # 0.8 m/s² asked
    alpha = 1.0 - math.exp(-0.2 / 0.5)
    assert info["accel_ms2"] == pytest.approx(0.8 * alpha)
    info = drive(env, np.array([0.1], dtype=np.float32), 30)
    assert info["accel_ms2"] == pytest.approx(0.8, abs=1e-3)  # settles on the command
    assert drive(env, FULL_THROTTLE, 40)["accel_ms2"] == pytest.approx(env.params.accel_max_ms2)


@pytest.mark.parametrize("regime", ["dry", "wet", "icy"])
def test_the_tyres_cap_braking_at_the_friction_limit(regime: str) -> None:
    env = CarFollowing(regime=regime, tyre_grip=0.9)
    env.reset(seed=0, options={"gap_m": 900.0, "speed_ms": 30.0})
    info = drive(env, FULL_BRAKE, 10)
    limit = env.params.road_friction * 0.9 * GRAVITY_MS2
    assert info["accel_ms2"] == pytest.approx(-min(limit, env.params.brake_max_ms2))


def test_braking_distance_grows_as_the_road_gets_slippery() -> None:
    distances = {}
    for regime in ("dry", "wet", "icy"):
        env = CarFollowing(regime=regime)
        env.reset(seed=0, options={"gap_m": 900.0, "speed_ms": 25.0})
        info = drive(env, FULL_BRAKE, 150)
        assert info["speed_ms"] == 0.0
        distances[regime] = info["episode_distance_m"]
    assert distances["dry"] < distances["wet"] < distances["icy"]
    # Icy: v^2 / (2 mu g) plus what the brakes' lag costs.
    assert distances["icy"] == pytest.approx(25.0**2 / (2 * 0.15 * GRAVITY_MS2), rel=0.1)


def test_a_car_stands_rather_than_reverses_and_keeps_its_brakes_on() -> None:
    env = CarFollowing()
    env.reset(seed=0, options={"gap_m": 900.0, "speed_ms": 1.0})
    info = drive(env, FULL_BRAKE, 20)
    assert info["speed_ms"] == 0.0
    assert info["accel_ms2"] == 0.0  # standing
    # Releasing the brakes takes the lag: the first step after full braking does not move.
    assert env.step(FULL_THROTTLE)[4]["speed_ms"] == 0.0
    assert drive(env, FULL_THROTTLE, 10)["speed_ms"] > 0.0


def test_a_collision_is_counted_priced_and_the_episode_goes_on() -> None:
    env = CarFollowing(regime="dense")
    env.reset(seed=1, options={"gap_m": 5.0})
    rewards, collisions, infos = [], 0, []
    truncated = False
    steps = 0
    while not truncated:
        _, reward, terminated, truncated, info = env.step(FULL_THROTTLE)
        assert not terminated
        rewards.append(float(reward))
        infos.append(info)
        collisions += int(info["collision"])
        steps += 1
    assert steps == env.episode_steps
    assert collisions >= 1
    assert info["episode_collisions"] == collisions
    first = next(i for i in infos if i["collision"])
    assert first["gap_m"] == pytest.approx(env.params.restart_gap_m)
    assert first["speed_ms"] == pytest.approx(first["lead_speed_ms"])
    assert first["cost"] >= env.params.collision_cost
    assert all(i["gap_m"] > 0.0 for i in infos)


def test_the_return_is_minus_the_score() -> None:
    env = CarFollowing(regime="aggressive", reward_scale=0.1)
    env.reset(seed=4)
    controller = IntelligentDriver(env)
    obs, _ = env.reset(seed=4)
    total = 0.0
    done = False
    while not done:
        obs, reward, _, done, info = env.step(controller.act(obs))
        total += float(reward)
    assert total == pytest.approx(-0.1 * info["episode_score"])
    p = env.params
    parts = (
        p.collision_cost * info["episode_collisions"]
        + p.headway_cost_per_s * info["episode_short_headway_s"]
        + p.hard_brake_cost_per_s * info["episode_hard_braking_s"]
        + p.jerk_cost * info["episode_jerk_sq"]
        + p.energy_cost_per_kwh * info["episode_energy_kwh"]
        + p.time_gap_cost_per_s * info["episode_mean_time_gap_s"] * p.episode_s
    )
    assert info["episode_score"] == pytest.approx(parts)


def test_the_leader_ignores_the_follower() -> None:
    def leader(action: np.ndarray[Any, Any]) -> list[float]:
        env = CarFollowing(regime="aggressive")
        env.reset(seed=9)
        return [float(env.step(action)[4]["lead_speed_ms"]) for _ in range(300)]

    assert leader(COAST) == leader(FULL_BRAKE)


def test_regimes_shape_the_leader() -> None:
    def lead_speeds(regime: str) -> np.ndarray[Any, Any]:
        env = CarFollowing(regime=regime)
        out = []
        for seed in range(5):
            env.reset(seed=seed)
            out += [env.step(COAST)[4]["lead_speed_ms"] for _ in range(600)]
        return np.asarray(out)

    dry, icy, dense, aggressive = (lead_speeds(r) for r in ("dry", "icy", "dense", "aggressive"))
    assert icy.mean() < dry.mean()
    assert (dense < 0.5).mean() > 0.1  # stop-and-go: it stands a good part of the time
    assert (dry < 0.5).mean() == 0.0
    assert np.abs(np.diff(aggressive)).max() > np.abs(np.diff(dry)).max()  # hard brakes


def test_friction_is_not_in_the_observation() -> None:
    # Same episode on a dry and an icy road: the leader drives the same, the observations match
    # until somebody brakes harder than ice allows.
    dry = CarFollowing(regime="dry")
    icy = CarFollowing(regime="dry", road_friction=0.15)
    a, _ = dry.reset(seed=3)
    b, _ = icy.reset(seed=3)
    assert np.array_equal(a, b)
    assert np.array_equal(dry.step(COAST)[0], icy.step(COAST)[0])


def test_regimes_are_not_cumulative() -> None:
    env = CarFollowing(tyre_grip=0.9)
    env.set_regime("icy")
    env.set_regime("aggressive")
    assert env.params.road_friction == 0.8
    assert env.params.stop_share == 0.0
    assert env.params.tyre_grip == 0.9  # the device stays itself
    with pytest.raises(ConfigError, match="episode_s"):
        env.apply_regime({"episode_s": 60.0})


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"mass_kg": 0.0}, "mass_kg"),
        ({"road_friction": -0.1}, "road_friction"),
        ({"road_friction": 3.0}, "road_friction"),
        ({"stop_share": 1.5}, "stop_share"),
        ({"lead_speed_high_ms": 5.0, "lead_speed_low_ms": 10.0}, "lead_speed_high_ms"),
        ({"episode_s": 1.1}, "episode_s"),
        ({"lag_s": "slow"}, "lag_s"),
        ({"regime": "monsoon"}, "monsoon"),
    ],
)
def test_bad_params_name_the_value(kwargs: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        CarFollowing(**kwargs)


def test_reset_options_and_bad_actions() -> None:
    env = CarFollowing()
    obs, info = env.reset(seed=0, options={"gap_m": 40.0, "speed_ms": 20.0})
    assert info["gap_m"] == pytest.approx(40.0)
    assert obs[OBS_GAP] == pytest.approx(40.0 / 50.0)
    assert obs[OBS_SPEED] == pytest.approx(20.0 / 30.0)
    with pytest.raises(ConfigError, match="gap_m"):
        env.reset(options={"gap_m": -1.0})
    with pytest.raises(ConfigError, match="speed_ms"):
        env.reset(options={"speed_ms": 100.0})
    env.reset(seed=0)
    with pytest.raises(ValueError, match="finite"):
        env.step(np.array([np.nan], dtype=np.float32))
    assert env.command(np.array([5.0])) == env.params.accel_max_ms2  # clipped to the box
    assert env.command(np.array([-0.5])) == pytest.approx(-0.5 * env.params.brake_max_ms2)


def test_sampled_cars_differ() -> None:
    a = device_params(VEHICLE_ID, seed=3, index=0)
    b = device_params(VEHICLE_ID, seed=3, index=1)
    assert a["mass_kg"] != b["mass_kg"]
    assert 0.85 <= a["tyre_grip"] <= 1.0
    make_world(VEHICLE_ID, **a).reset(seed=0)


def test_idm_is_the_published_model() -> None:
    env = CarFollowing()
    idm = IntelligentDriver(env)
    # On an empty road from standstill: the full acceleration a.
    assert idm.accel(gap=1e6, v=0.0, v_lead=0.0, v0=30.0) == pytest.approx(1.0)
    # Following at the equilibrium gap of a leader at the same speed: s = s* / sqrt(1 - (v/v0)^4).
    v, v0 = 20.0, 30.0
    gap = (2.0 + 1.5 * v) / math.sqrt(1.0 - (v / v0) ** 4)
    assert idm.accel(gap=gap, v=v, v_lead=v, v0=v0) == pytest.approx(0.0, abs=1e-9)
    # Closing in brakes harder than following.
    assert idm.accel(gap=gap, v=v, v_lead=v - 5.0, v0=v0) < -1.0
    # The action encodes the acceleration.
    assert float(idm.action(-4.0)[0]) * env.params.brake_max_ms2 == pytest.approx(-4.0)


def test_acc_is_the_constant_time_gap_law_within_iso_limits() -> None:
    env = CarFollowing()
    acc = ConstantTimeGapACC(env)
    # Gap error and speed difference, as Milanés & Shladover identified the production ACC.
    gap, v = 2.0 + 1.5 * 20.0 + 4.0, 20.0
    assert acc.accel(gap, v, 21.0, 30.0) == pytest.approx(0.23 * 4.0 + 0.07 * 1.0)
    assert acc.accel(1e6, 10.0, 30.0, 30.0) == pytest.approx(2.0)  # ISO 15622's 2 m/s²
    assert acc.accel(1e6, 29.0, 30.0, 30.0) == pytest.approx(0.4)  # cruising to the set speed
    assert acc.accel(20.0, 25.0, 24.0, 30.0) == pytest.approx(-3.5)  # ISO 15622: 3.5 m/s²
    # Closing fast on a short gap: the collision-avoidance layer brakes beyond ISO's limit.
    assert acc.accel(10.0, 20.0, 5.0, 30.0) == pytest.approx(-(15.0**2) / (2 * 8.0))


@pytest.mark.parametrize("regime", list(VEHICLE_REGIMES))
def test_the_idm_drives_every_regime_without_collisions(regime: str) -> None:
    score = run_controller(BASELINES[VEHICLE_ID]["idm"], VEHICLE_ID, seeds=range(5), regime=regime)
    assert score.mean("collisions") == 0.0
    assert score.mean("time_gap_s") < 3.0
