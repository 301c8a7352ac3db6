"""Baselines, the evaluation loop and per-member devices."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from agents.exceptions import ConfigError
from agents.worlds import (
    BASELINES,
    BATTERY_ID,
    PRIMARY_BASELINE,
    THERMOSTAT_ID,
    TRAFFIC_ID,
    WORLD_IDS,
    RandomController,
    baseline_names,
    device_params,
    make_baseline,
    make_world,
    run_controller,
    world_class,
)
from agents.worlds.baselines import FixedTimePlan, MaxPressure, SetpointThermostat

SEEDS = (11, 12, 13)


def random_score(env_id: str, regime: str | None = None, **kwargs: Any) -> float:
    return run_controller(
        lambda env: RandomController(env, seed=0),
        env_id,
        seeds=SEEDS,
        regime=regime,
        env_kwargs=kwargs,
    ).mean_return


@pytest.mark.parametrize(
    ("env_id", "name"),
    [(env_id, name) for env_id in WORLD_IDS for name in baseline_names(env_id)],
)
def test_baselines_beat_random(env_id: str, name: str) -> None:
    score = run_controller(BASELINES[env_id][name], env_id, seeds=SEEDS)
    assert score.mean_return > random_score(env_id)


def test_thermostat_baselines_work_in_summer_and_continuous() -> None:
    score = run_controller(SetpointThermostat, THERMOSTAT_ID, seeds=SEEDS, regime="summer")
    assert score.mean_return > random_score(THERMOSTAT_ID, "summer")
    cont = run_controller(
        SetpointThermostat, THERMOSTAT_ID, seeds=SEEDS, env_kwargs={"continuous": True}
    )
    disc = run_controller(SetpointThermostat, THERMOSTAT_ID, seeds=SEEDS)
    assert cont.returns == pytest.approx(disc.returns)  # same decisions, other action type


def test_setpoint_thermostat_keeps_comfort() -> None:
    score = run_controller(BASELINES[THERMOSTAT_ID]["setpoint"], THERMOSTAT_ID, seeds=SEEDS)
    assert score.mean("comfort_violation") < 0.05
    assert score.mean("energy_cost") > 0.0


def test_adaptive_signal_beats_fixed_time() -> None:
    fixed = run_controller(FixedTimePlan, TRAFFIC_ID, seeds=SEEDS, env_kwargs={"start_hour": 7.5})
    adaptive = run_controller(MaxPressure, TRAFFIC_ID, seeds=SEEDS, env_kwargs={"start_hour": 7.5})
    assert adaptive.mean("total_waiting_time") < fixed.mean("total_waiting_time")
    assert adaptive.mean("throughput") >= 0.95 * fixed.mean("throughput")


@pytest.mark.parametrize("name", baseline_names(TRAFFIC_ID))
def test_traffic_baselines_are_commissioned_for_crossed_signals(name: str) -> None:
    # The reference controllers read the wiring, so crossing the signal groups leaves them as
    # good as before; one that believed the nominal wiring would starve the queues it sees.
    seeds = tuple(range(20, 28))
    kwargs = {"start_hour": 7.0}
    normal = run_controller(BASELINES[TRAFFIC_ID][name], TRAFFIC_ID, seeds=seeds,
                            regime="weekday", env_kwargs=kwargs)  # fmt: skip
    crossed = run_controller(BASELINES[TRAFFIC_ID][name], TRAFFIC_ID, seeds=seeds,
                             regime="crossed", env_kwargs=kwargs)  # fmt: skip
    assert crossed.mean_return == pytest.approx(normal.mean_return, rel=0.1)


def test_fixed_time_plan_is_webster() -> None:
    env = make_world(TRAFFIC_ID)
    plan = FixedTimePlan(env)
    assert len(plan.durations) == 4
    assert plan.green_s[0] > plan.green_s[1]  # through phases get more green than left turns
    assert plan.green_s[0] > plan.green_s[2]  # the arterial (N/S) more than the cross street
    plan.reset()
    blind = np.zeros(16, dtype=np.float32)
    actions = [int(plan.act(blind)) for _ in range(sum(plan.durations))]
    assert actions == [k for k, d in enumerate(plan.durations) for _ in range(d)]
    with pytest.raises(ConfigError, match="green_s"):
        FixedTimePlan(env, green_s=[10.0, 10.0])


def test_registry_of_baselines() -> None:
    for env_id, primary in PRIMARY_BASELINE.items():
        assert primary in baseline_names(env_id)
    env = make_world(TRAFFIC_ID)
    assert isinstance(make_baseline(TRAFFIC_ID, "max_pressure", env), MaxPressure)
    with pytest.raises(ConfigError, match="sorcery"):
        make_baseline(TRAFFIC_ID, "sorcery", env)
    with pytest.raises(ConfigError, match="Thermostat"):
        make_baseline(THERMOSTAT_ID, "programmable", env)  # wrong world


def test_cartpole_pd_balances() -> None:
    score = run_controller(BASELINES["CartPole-v1"]["pd"], "CartPole-v1", seeds=SEEDS)
    assert score.mean_return > 400


def test_run_controller_reports_metrics_per_episode() -> None:
    score = run_controller(
        BASELINES[THERMOSTAT_ID]["programmable"], THERMOSTAT_ID, seeds=SEEDS, regime="spring"
    )
    assert score.seeds == SEEDS
    assert score.lengths == (96, 96, 96)
    assert score.regime == "spring"
    assert set(score.metrics) == set(world_class(THERMOSTAT_ID).metrics)
    summary = score.summary()
    assert summary["return"] == pytest.approx(np.mean(score.returns))
    assert len(score.metrics["energy_cost"]) == 3
    again = run_controller(
        BASELINES[THERMOSTAT_ID]["programmable"], THERMOSTAT_ID, seeds=SEEDS, regime="spring"
    )
    assert again == score
    with pytest.raises(ConfigError, match="seed"):
        run_controller(SetpointThermostat, THERMOSTAT_ID, seeds=())


@pytest.mark.parametrize("env_id", WORLD_IDS)
def test_device_params_differ_by_index_and_reproduce(env_id: str) -> None:
    first = device_params(env_id, seed=7, index=0)
    assert first == device_params(env_id, seed=7, index=0)
    assert first != device_params(env_id, seed=7, index=1)
    assert first != device_params(env_id, seed=8, index=0)
    members = [device_params(env_id, seed=7, index=i) for i in range(8)]
    for params in members:
        env = make_world(env_id, **params)  # every sampled device is a valid world
        env.reset(seed=0)
        env.step(env.action_space.sample())


def test_device_params_of_plain_env_and_bad_input() -> None:
    assert device_params("CartPole-v1", seed=1, index=2) == {}
    with pytest.raises(ConfigError, match="index"):
        device_params(BATTERY_ID, seed=1, index=-1)


def test_sampled_thermostats_differ_physically() -> None:
    a = device_params(THERMOSTAT_ID, seed=3, index=0)
    b = device_params(THERMOSTAT_ID, seed=3, index=1)
    assert a["r_k_per_kw"] != b["r_k_per_kw"]
    assert a["c_kwh_per_k"] != b["c_kwh_per_k"]
