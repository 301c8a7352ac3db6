"""The one place that names the worlds: gymnasium ids, construction, regimes and devices.

Every built-in world is registered under the ``society/`` namespace (``gym.make`` works once
:mod:`agents.worlds` is imported). :func:`make_world` builds any gymnasium env, optionally held at
one regime (evaluation worlds) or drifting along a schedule (learning worlds), and
:func:`device_params` gives society member ``index`` its own device from the run's seed.
"""

from __future__ import annotations

import types
from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from agents.exceptions import ConfigError
from agents.worlds.base import World
from agents.worlds.battery import HomeBattery
from agents.worlds.drift import (
    CARTPOLE_REGIMES,
    PENDULUM_REGIMES,
    DriftSchedule,
    DriftWrapper,
    Regime,
)
from agents.worlds.shop import Shop
from agents.worlds.sumo import SumoTrafficSignal, sumo_available
from agents.worlds.thermostat import Thermostat
from agents.worlds.traffic import TrafficSignal
from agents.worlds.vehicle import CarFollowing

__all__ = [
    "BATTERY_ID",
    "OPTIONAL_WORLD_IDS",
    "SHOP_ID",
    "SUMO_ID",
    "THERMOSTAT_ID",
    "TRAFFIC_ID",
    "VEHICLE_ID",
    "WORLD_CLASSES",
    "WORLD_IDS",
    "device_params",
    "make_schedule",
    "make_world",
    "regimes_for",
    "register_worlds",
    "world_class",
]

THERMOSTAT_ID = "society/Thermostat-v0"
TRAFFIC_ID = "society/TrafficSignal-v0"
BATTERY_ID = "society/HomeBattery-v0"
SUMO_ID = "society/SumoTraffic-v0"
SHOP_ID = "society/Shop-v0"
VEHICLE_ID = "society/CarFollowing-v0"

_BUILTIN: dict[str, type[World[Any, Any]]] = {
    THERMOSTAT_ID: Thermostat,
    TRAFFIC_ID: TrafficSignal,
    BATTERY_ID: HomeBattery,
    SHOP_ID: Shop,
    VEHICLE_ID: CarFollowing,
}
# Worlds that need an optional extra: known (registered, with regimes, devices and baselines)
# only where it is installed. SUMO: ``pip install .[sumo]``.
_OPTIONAL: dict[str, type[World[Any, Any]]] = (
    {SUMO_ID: SumoTrafficSignal} if sumo_available() else {}
)

WORLD_CLASSES: Mapping[str, type[World[Any, Any]]] = types.MappingProxyType(_BUILTIN | _OPTIONAL)
"""Built-in world id -> class, including the optional worlds whose extra is installed."""

WORLD_IDS: tuple[str, ...] = tuple(_BUILTIN)
"""The pure-numpy worlds, always available."""

OPTIONAL_WORLD_IDS: tuple[str, ...] = tuple(_OPTIONAL)
"""The optional worlds whose extra is installed here (``society/SumoTraffic-v0``)."""

_PLAIN_REGIMES: Mapping[str, Mapping[str, Regime]] = types.MappingProxyType(
    {
        "CartPole-v0": CARTPOLE_REGIMES,
        "CartPole-v1": CARTPOLE_REGIMES,
        "Pendulum-v1": PENDULUM_REGIMES,
        # Known even where the sumo extra is absent, so its scenario validates everywhere.
        SUMO_ID: SumoTrafficSignal.regimes,
    }
)


def register_worlds() -> None:
    """Register the built-in worlds with gymnasium; calling it again does nothing."""
    for env_id, cls in WORLD_CLASSES.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=f"{cls.__module__}:{cls.__name__}")


def world_class(env_id: str) -> type[World[Any, Any]]:
    """The class of a built-in world; :class:`ConfigError` for any other id."""
    try:
        return WORLD_CLASSES[env_id]
    except KeyError:
        raise ConfigError(
            f"{env_id!r} is not a built-in world; built-in worlds: {', '.join(WORLD_IDS)}"
        ) from None


def regimes_for(env_id: str) -> Mapping[str, Regime]:
    """The named regimes of a world id (built-in worlds, CartPole, Pendulum); else empty."""
    if env_id in WORLD_CLASSES:
        return WORLD_CLASSES[env_id].regimes
    return _PLAIN_REGIMES.get(env_id, types.MappingProxyType({}))


def make_schedule(
    env_id: str, phases: Sequence[tuple[str, int]], *, cyclic: bool = False
) -> DriftSchedule:
    """A drift schedule over ``env_id``'s named regimes: ``[("winter", 50_000), ...]``."""
    return DriftSchedule.from_names(regimes_for(env_id), phases, cyclic=cyclic)


def make_world(
    env_id: str,
    *,
    regime: str | None = None,
    schedule: DriftSchedule | None = None,
    lifetime_step: int = 0,
    **kwargs: Any,
) -> gym.Env[Any, Any]:
    """Build ``env_id`` (any gymnasium id), fixed at ``regime`` or drifting along ``schedule``.

    With ``regime`` or ``schedule`` the env is wrapped in a :class:`DriftWrapper`, so
    ``info["regime"]`` is always reported. ``kwargs`` go to the env's constructor (for built-in
    worlds: device parameters, ``continuous``...).

    Raises:
        ConfigError: unknown id, unknown regime, both ``regime`` and ``schedule`` given, or a
            constructor parameter the world rejects.
    """
    if regime is not None and schedule is not None:
        raise ConfigError("make_world: give either regime= or schedule=, not both")
    register_worlds()
    if regime is not None:
        known = regimes_for(env_id)
        if regime not in known:
            raise ConfigError(
                f"unknown regime {regime!r} for {env_id}; known regimes: "
                f"{', '.join(known) or '(none)'}"
            )
        schedule = DriftSchedule.constant(known[regime])
    try:
        env: gym.Env[Any, Any] = gym.make(env_id, **kwargs)
    except gym.error.Error as exc:
        raise ConfigError(f"cannot make {env_id!r}: {exc}") from exc
    except TypeError as exc:
        raise ConfigError(f"cannot make {env_id!r} with {sorted(kwargs)}: {exc}") from exc
    if schedule is not None:
        return DriftWrapper(env, schedule, lifetime_step=lifetime_step)
    return env


def device_params(env_id: str, seed: int, index: int) -> dict[str, Any]:
    """Constructor kwargs of society member ``index``'s own device, reproducible from ``seed``.

    Members draw from independent streams (``SeedSequence([seed, index])``), so adding a member
    never changes the devices of the others. Envs that are not built-in worlds get ``{}``.
    """
    if seed < 0 or index < 0:
        raise ConfigError(f"device_params: seed={seed} and index={index} must be >= 0")
    if env_id not in WORLD_CLASSES:
        return {}
    rng = np.random.default_rng(np.random.SeedSequence([seed, index]))
    return WORLD_CLASSES[env_id].sample_params(rng)
