"""Simulated devices for the society: worlds, drift and the controllers people use today.

Importing this package registers the built-in worlds with gymnasium under the ``society/``
namespace (``society/Thermostat-v0``, ``society/TrafficSignal-v0``,
``society/HomeBattery-v0``, ``society/Shop-v0``, ``society/CarFollowing-v0``). See
``docs/worlds.md`` for each world's physics, observation, reward, regimes and baselines.
"""

from __future__ import annotations

from agents.worlds.baselines import (
    BASELINES,
    PRIMARY_BASELINE,
    Controller,
    ControllerScore,
    PolicyController,
    RandomController,
    baseline_names,
    make_baseline,
    metric_keys,
    play_batched,
    play_episodes,
    run_controller,
)
from agents.worlds.battery import HomeBattery
from agents.worlds.drift import (
    CARTPOLE_REGIMES,
    DriftPhase,
    DriftSchedule,
    DriftWrapper,
    Regime,
)
from agents.worlds.registry import (
    BATTERY_ID,
    SHOP_ID,
    THERMOSTAT_ID,
    TRAFFIC_ID,
    VEHICLE_ID,
    WORLD_IDS,
    device_params,
    make_schedule,
    make_world,
    regimes_for,
    register_worlds,
    world_class,
)
from agents.worlds.shop import Shop
from agents.worlds.thermostat import Thermostat
from agents.worlds.traffic import TrafficSignal
from agents.worlds.vehicle import CarFollowing

__all__ = [
    "BASELINES",
    "BATTERY_ID",
    "CARTPOLE_REGIMES",
    "PRIMARY_BASELINE",
    "SHOP_ID",
    "THERMOSTAT_ID",
    "TRAFFIC_ID",
    "VEHICLE_ID",
    "WORLD_IDS",
    "CarFollowing",
    "Controller",
    "ControllerScore",
    "DriftPhase",
    "DriftSchedule",
    "DriftWrapper",
    "HomeBattery",
    "PolicyController",
    "RandomController",
    "Regime",
    "Shop",
    "Thermostat",
    "TrafficSignal",
    "baseline_names",
    "device_params",
    "make_baseline",
    "make_schedule",
    "make_world",
    "metric_keys",
    "play_batched",
    "play_episodes",
    "regimes_for",
    "register_worlds",
    "run_controller",
    "world_class",
]

register_worlds()
