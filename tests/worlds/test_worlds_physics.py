"""Physical sanity of the worlds: the models move the way the physics says they should."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from agents.worlds import HomeBattery, Thermostat, TrafficSignal
from agents.worlds.battery import DISCHARGE, GRID_CHARGE, IDLE, SELF_CONSUMPTION, STORE_ONLY
from agents.worlds.traffic import TrafficParams, arrival_rates_per_h

OFF, FULL_HEAT, FULL_COOL = np.int64(3), np.int64(6), np.int64(0)


def indoor_after(env: Thermostat, action: np.int64, steps: int, start: float = 20.0) -> float:
    env.reset(seed=0, options={"indoor_temp_c": start})
    for _ in range(steps):
        info = env.step(action)[4]
    return float(info["indoor_temp_c"])


def test_heating_raises_indoor_temperature() -> None:
    env = Thermostat(regime="winter")
    heated = indoor_after(env, FULL_HEAT, 8)
    idle = indoor_after(env, OFF, 8)
    cooled = indoor_after(env, FULL_COOL, 8)
    assert heated > 20.0 > idle > cooled
    assert heated - idle > 2.0


def test_heat_pump_uses_power_and_costs_money() -> None:
    env = Thermostat()
    env.reset(seed=0)
    info = env.step(FULL_HEAT)[4]
    assert info["hvac_power_kw"] == pytest.approx(env.params.hp_max_kw)
    assert info["energy_kwh"] == pytest.approx(env.params.hp_max_kw * 0.25)
    assert info["energy_cost"] == pytest.approx(info["energy_kwh"] * info["price"])
    assert env.step(OFF)[4]["energy_cost"] == 0.0


def test_more_insulation_loses_less_heat() -> None:
    leaky = indoor_after(Thermostat(r_k_per_kw=2.0), OFF, 16, start=21.0)
    tight = indoor_after(Thermostat(r_k_per_kw=10.0), OFF, 16, start=21.0)
    assert tight > leaky
    light = indoor_after(Thermostat(c_kwh_per_k=2.0), OFF, 16, start=21.0)
    heavy = indoor_after(Thermostat(c_kwh_per_k=10.0), OFF, 16, start=21.0)
    assert heavy > light  # more thermal mass: slower cooling


def test_rc_step_is_exact_exponential() -> None:
    env = Thermostat(solar_aperture=0.0, base_gain_kw=0.0, internal_gain_kw=0.0)
    env.reset(seed=0, options={"indoor_temp_c": 21.0})
    tout = env._tout[0]
    info = env.step(OFF)[4]
    tau_h = env.params.r_k_per_kw * env.params.c_kwh_per_k
    expected = tout + (21.0 - tout) * np.exp(-0.25 / tau_h)
    assert info["indoor_temp_c"] == pytest.approx(expected)


def test_comfort_counts_only_when_occupied() -> None:
    env = Thermostat()
    env.reset(seed=0, options={"indoor_temp_c": 10.0})
    for _ in range(96):
        info = env.step(OFF)[4]
        if not info["occupied"]:
            assert info["comfort_violation"] == 0.0
    assert info["episode_comfort_violation"] > 0.0


def test_reward_keeps_a_margin_but_info_reports_the_true_band() -> None:
    env = Thermostat(comfort_margin_k=0.5, comfort_low_c=20.0)
    env.reset(seed=0)
    while not env._occ[env._t]:
        env.step(OFF)
    env._tin = 20.3  # inside the household's band, inside the reward's margin
    _, reward, _, _, info = env.step(OFF)
    assert 20.0 < info["indoor_temp_c"] < 20.3
    assert info["comfort_violation"] == 0.0
    assert float(reward) < 0.0  # the margin is penalised (the heat pump was off: no cost)
    assert info["energy_cost"] == 0.0


def test_seasons_need_heating_and_cooling() -> None:
    winter = indoor_after(Thermostat(regime="winter"), OFF, 48, start=22.0)
    summer = indoor_after(Thermostat(regime="summer"), OFF, 48, start=22.0)
    assert winter < 20.0
    assert summer > 24.0


def test_forecast_matches_future() -> None:
    env = Thermostat()
    obs0, _ = env.reset(seed=3)
    price_fc = obs0[env.layout["price_forecast"]]
    occ_fc = obs0[env.layout["occupancy_forecast"]]
    obs = obs0
    for _ in range(4):  # one hour later
        obs = env.step(OFF)[0]
    assert obs[8] == pytest.approx(price_fc[0])  # price now = the 1-hour-ahead forecast
    assert obs[7] == occ_fc[0]


NO_ARRIVALS: dict[str, Any] = {"demand_n": 0.0, "demand_s": 0.0, "demand_e": 0.0, "demand_w": 0.0}


def test_green_phase_drains_its_queue() -> None:
    env = TrafficSignal(lost_time_s=0.0, **NO_ARRIVALS)
    env.reset(seed=0, options={"phase": 0})
    env._queues = [10, 0, 10, 0, 10, 0, 10, 0]
    info = {}
    for _ in range(6):  # 30 s of N/S through green at 1 veh/s per 2-lane movement
        info = env.step(np.int64(0))[4]
    q = info["queues"]
    assert q[0] == q[2] == 0  # N and S through drained
    assert q[4] == q[6] == 10  # E and W waited
    assert info["throughput"] == 20


def test_crossed_signals_light_the_other_group_and_do_not_show_it() -> None:
    normal = TrafficSignal(lost_time_s=0.0, **NO_ARRIVALS)
    crossed = TrafficSignal(lost_time_s=0.0, regime="crossed", **NO_ARRIVALS)
    observed = []
    for env in (normal, crossed):
        env.reset(seed=0, options={"phase": 0})
        env._queues = [10, 0, 10, 0, 10, 0, 10, 0]
        observed.append(env._obs())
    # Nothing in the observation tells the wiring: same phase, same "served" queue.
    np.testing.assert_array_equal(observed[0], observed[1])
    for _ in range(6):  # 30 s of phase 0
        q_normal = normal.step(np.int64(0))[4]["queues"]
        info = crossed.step(np.int64(0))[4]
    assert q_normal[0] == q_normal[2] == 0  # phase 0 drains N/S through...
    q = info["queues"]
    assert q[4] == q[6] == 0  # ...but crossed, it drains E/W through
    assert q[0] == q[2] == 10
    assert info["phase"] == 0  # and still reports the phase the controller asked for
    crossed.set_regime("weekday")
    crossed.reset(seed=0, options={"phase": 0})
    assert crossed.lit_phases == normal.lit_phases  # the repair restores the wiring


def test_switching_costs_lost_time() -> None:
    env = TrafficSignal(lost_time_s=5.0, **NO_ARRIVALS)
    env.reset(seed=0, options={"phase": 0})
    env._queues = [0, 0, 0, 0, 10, 0, 10, 0]
    info = env.step(np.int64(2))[4]  # change: the whole 5 s step is yellow + all-red
    assert info["throughput"] == 0
    info = env.step(np.int64(2))[4]
    assert info["throughput"] == 10  # 5 s * 1 veh/s on each of E and W


def test_rush_hours_load_the_right_direction() -> None:
    p = TrafficParams()
    rates = arrival_rates_per_h(p, np.array([3.0, 8.0, 12.0, 17.5]))
    n_through, s_through = 0, 2
    night, morning, noon, evening = rates
    assert morning[n_through] > 1.7 * noon[n_through]  # inbound morning rush on N
    assert morning[s_through] == pytest.approx(noon[s_through], rel=0.05)
    assert evening[s_through] > 1.7 * noon[s_through]  # outbound evening rush on S
    assert evening[n_through] < 1.1 * noon[n_through]
    assert night.sum() < 0.3 * noon.sum()


def test_min_green_is_enforced() -> None:
    env = TrafficSignal(lost_time_s=5.0, min_green_s=10.0, **NO_ARRIVALS)
    env.reset(seed=0, options={"phase": 0})
    assert env.step(np.int64(2))[4]["phase"] == 2  # the first phase has had its minimum
    assert env.step(np.int64(0))[4]["phase"] == 2  # 0 s of green so far: held
    assert env.step(np.int64(0))[4]["phase"] == 2  # 5 s: held
    assert env.step(np.int64(0))[4]["phase"] == 0  # 10 s shown: the change goes through


def test_rush_hour_arrivals_are_drawn() -> None:
    env = TrafficSignal()
    totals = {}
    for hour in (3.0, 8.0):
        env.reset(seed=0, options={"start_hour": hour})
        totals[hour] = np.array(env._arrivals).sum(axis=0)
    assert totals[8.0][0] > 3 * totals[3.0][0]
    assert totals[8.0][0] > 1.5 * totals[8.0][2]  # more northern than southern arrivals


def test_battery_charges_and_respects_limits() -> None:
    env = HomeBattery(eta_charge=0.9, capacity_kwh=10.0, power_max_kw=4.0)
    env.reset(seed=0, options={"soc_frac": 0.5})
    info = env.step(np.int64(GRID_CHARGE))[4]  # full charge, 15 min
    assert info["soc_kwh"] == pytest.approx(5.0 + 4.0 * 0.25 * 0.9)
    for _ in range(20):
        info = env.step(np.int64(GRID_CHARGE))[4]
    assert info["soc_kwh"] == pytest.approx(10.0)
    assert info["battery_power_kw"] == pytest.approx(0.0)  # full: nothing more goes in
    for _ in range(40):
        info = env.step(np.int64(DISCHARGE))[4]
    assert info["soc_kwh"] == pytest.approx(env.params.soc_min_frac * 10.0)


def test_battery_modes() -> None:
    env = HomeBattery()
    env.reset(seed=0, options={"soc_frac": 0.5})
    for _ in range(48):  # to noon: solar surplus in most winter days
        env.step(np.int64(IDLE))
    load, pv = env._load[48], env._pv[48]
    info = env.step(np.int64(SELF_CONSUMPTION))[4]
    assert info["battery_power_kw"] == pytest.approx(min(max(pv - load, -4.0), 4.0))
    assert info["grid_import_kwh"] * info["grid_export_kwh"] == 0.0
    info = env.step(np.int64(STORE_ONLY))[4]
    assert info["battery_power_kw"] >= 0.0
