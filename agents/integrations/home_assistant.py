"""Simulated thermostats in Home Assistant, through MQTT discovery.

Pure functions: they build the messages, the agent publishes them. Nothing here touches the
bus, so the payloads can be checked without a broker (and without Home Assistant).

Home Assistant reads JSON and plain text, not MessagePack, so a thermostat agent publishes
next to its own topics, under ``society/{society}/agents/{agent}/ha/``:

``ha/availability``
    ``online`` or ``offline``, retained. The agent's Last Will is already its MessagePack
    ``Status`` (MQTT 3.1.1 allows one will), so a crash is reported by whoever sees that will:
    the coordinator may write ``offline`` here (broker/acl grants it). The sensors also
    expire on their own when no state arrives for ``expire_after`` seconds.
``ha/state``
    one JSON object (:func:`thermostat_state`) with everything the entities show, retained.

and the retained discovery configurations under ``homeassistant/<component>/<node>/<object>/
config`` (:func:`discovery_messages`): one ``climate`` entity (indoor temperature, the comfort
band it keeps as the target, mode and what the heat pump is doing) and sensors for the energy
cost, comfort violation, heat-pump power, outdoor temperature, electricity price and
occupancy, all on one device per agent. An empty retained config removes an entity
(:func:`removal_messages`).

The climate entity is read-only: the agent decides what the heat pump does. Its mode is
``heat_cool`` (it holds the household's comfort band, heating or cooling as needed); what it
is doing right now is the entity's action (``heating``, ``cooling`` or ``idle``).

The simulated house runs much faster than real time (a day of 15-minute steps takes well under
a second of learning), so the state is best published at the telemetry pace, not per step.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from agents import __version__
from agents.bus.schemas import Status
from agents.bus.topics import ROOT, validate_name
from agents.exceptions import ConfigError
from agents.hooks import AgentHook, CoordinatorHook

__all__ = [
    "DISCOVERY_PREFIX",
    "OFFLINE",
    "ONLINE",
    "THERMOSTAT_ENV_IDS",
    "HaMessage",
    "HomeAssistantAgent",
    "HomeAssistantCoordinator",
    "availability_message",
    "availability_topic",
    "discovery_configs",
    "discovery_messages",
    "node_id",
    "removal_messages",
    "state_message",
    "state_topic",
    "thermostat_state",
]

log = logging.getLogger(__name__)

DISCOVERY_PREFIX: Final = "homeassistant"
ONLINE: Final = "online"
OFFLINE: Final = "offline"
#: The worlds whose agents appear as thermostats.
THERMOSTAT_ENV_IDS: Final = frozenset({"society/Thermostat-v0"})

#: The comfort band in the observation is normalised as the indoor temperature is
#: (agents.worlds.thermostat: (T - T_REF) / T_SCALE), at these indices.
_OBS_COMFORT_LOW: Final = 2
_OBS_COMFORT_HIGH: Final = 3
_T_REF: Final = 21.0
_T_SCALE: Final = 5.0
#: The heat pump counts as running above this share of its power.
_RUNNING: Final = 1e-3
_HA_ID = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True, slots=True)
class HaMessage:
    """One MQTT message for Home Assistant: publish it as it is."""

    topic: str
    payload: bytes
    retain: bool = True
    qos: int = 1


def node_id(agent: str) -> str:
    """The agent id as a discovery node id (letters, digits, ``_``, ``-``: a ``.`` becomes ``_``).

    broker/acl lets a client write ``homeassistant/+/<client id>/+/config``: an agent whose id
    has no ``.`` can publish its own discovery and no one else's.
    """
    return _HA_ID.sub("_", validate_name(agent, "agent id"))


def _base(society: str, agent: str) -> str:
    society = validate_name(society, "society name")
    return f"{ROOT}/{society}/agents/{validate_name(agent, 'agent id')}/ha"


def availability_topic(society: str, agent: str) -> str:
    """``society/{society}/agents/{agent}/ha/availability``: ``online`` / ``offline``, retained."""
    return f"{_base(society, agent)}/availability"


def state_topic(society: str, agent: str) -> str:
    """``society/{society}/agents/{agent}/ha/state``: :func:`thermostat_state` as JSON."""
    return f"{_base(society, agent)}/state"


def _value(key: str) -> str:
    return f"{{{{ value_json.{key} }}}}"


#: The sensors: object id -> (name, state key, extra config).
_SENSORS: Final[dict[str, tuple[str, str, dict[str, Any]]]] = {
    "energy_cost": (
        "Energy cost today",
        "episode_energy_cost",
        # Per simulated day; restarts at zero with each day (total_increasing reads a drop as
        # a new cycle). Not device_class monetary: Home Assistant allows it state_class total
        # only, which would read the daily restart as a refund.
        {"state_class": "total_increasing", "icon": "mdi:cash", "suggested_display_precision": 2},
    ),
    "comfort_violation": (
        "Comfort violation today",
        "episode_comfort_violation",
        {
            "unit_of_measurement": "K·h",
            "state_class": "total_increasing",
            "icon": "mdi:thermometer-alert",
            "suggested_display_precision": 2,
        },
    ),
    "hvac_power": (
        "Heat pump power",
        "hvac_power_kw",
        {"device_class": "power", "unit_of_measurement": "kW", "state_class": "measurement"},
    ),
    "outdoor_temperature": (
        "Outdoor temperature",
        "outdoor_temp_c",
        {"device_class": "temperature", "unit_of_measurement": "°C", "state_class": "measurement"},
    ),
    "electricity_price": (
        "Electricity price",
        "price",
        {"state_class": "measurement", "icon": "mdi:currency-usd"},
    ),
}


def discovery_configs(
    society: str,
    agent: str,
    *,
    prefix: str = DISCOVERY_PREFIX,
    currency: str = "USD",
    min_temp_c: float = 5.0,
    max_temp_c: float = 35.0,
    expire_after: int = 120,
) -> dict[str, dict[str, Any]]:
    """Discovery topic -> configuration, for every entity of one thermostat agent.

    ``currency`` is the unit of the world's prices (its tariffs are in "$"). ``expire_after``:
    seconds without a state after which Home Assistant shows the sensors as unavailable (the
    fallback when no one reports the agent's crash on its availability topic).
    """
    node = node_id(agent)
    state = state_topic(society, agent)
    device_id = _HA_ID.sub("_", f"agent_society_{society}_{agent}")
    common: dict[str, Any] = {
        "availability": [
            {
                "topic": availability_topic(society, agent),
                "payload_available": ONLINE,
                "payload_not_available": OFFLINE,
            }
        ],
        "device": {
            "identifiers": [device_id],
            "name": f"{agent} thermostat",
            "manufacturer": "Agent Society",
            "model": "Thermostat-v0 (lifelong-learning RL agent)",
            "sw_version": __version__,
        },
        "origin": {"name": "Agent Society", "sw_version": __version__},
        "qos": 0,
    }
    configs: dict[str, dict[str, Any]] = {}

    def add(component: str, object_id: str, config: dict[str, Any]) -> None:
        topic = f"{prefix}/{component}/{node}/{object_id}/config"
        configs[topic] = {**config, "unique_id": f"{device_id}_{object_id}", **common}

    add(
        "climate",
        "thermostat",
        {
            "name": "Thermostat",
            "modes": ["heat_cool"],
            "mode_state_topic": state,
            "mode_state_template": _value("mode"),
            "action_topic": state,
            "action_template": _value("action"),
            "current_temperature_topic": state,
            "current_temperature_template": _value("indoor_temp_c"),
            "temperature_state_topic": state,
            "temperature_state_template": _value("target_temp_c"),
            "temperature_low_state_topic": state,
            "temperature_low_state_template": _value("target_temp_low_c"),
            "temperature_high_state_topic": state,
            "temperature_high_state_template": _value("target_temp_high_c"),
            "json_attributes_topic": state,
            "temperature_unit": "C",
            "precision": 0.1,
            "temp_step": 0.5,
            "min_temp": min_temp_c,
            "max_temp": max_temp_c,
        },
    )
    for object_id, (name, key, extra) in _SENSORS.items():
        config = {"name": name, "state_topic": state, "value_template": _value(key), **extra}
        if object_id == "energy_cost":
            config["unit_of_measurement"] = currency
        elif object_id == "electricity_price":
            config["unit_of_measurement"] = f"{currency}/kWh"
        add("sensor", object_id, {**config, "expire_after": expire_after})
    add(
        "binary_sensor",
        "occupancy",
        {
            "name": "Occupied",
            "device_class": "occupancy",
            "state_topic": state,
            "value_template": "{{ 'ON' if value_json.occupied else 'OFF' }}",
            "payload_on": "ON",
            "payload_off": "OFF",
            "expire_after": expire_after,
        },
    )
    return configs


def discovery_messages(society: str, agent: str, **options: Any) -> list[HaMessage]:
    """The retained discovery configs (JSON), for every (re)connection of the agent.

    ``options`` are those of :func:`discovery_configs`.
    """
    return [
        HaMessage(topic, json.dumps(config, ensure_ascii=False, sort_keys=True).encode())
        for topic, config in discovery_configs(society, agent, **options).items()
    ]


def removal_messages(
    society: str, agent: str, *, prefix: str = DISCOVERY_PREFIX
) -> list[HaMessage]:
    """Empty retained configs: Home Assistant removes the entities. Sent on a clean exit.

    Also clears the retained state and marks the device offline. Home Assistant keeps the
    recorded history by ``unique_id``, so a restarted agent's entities come back with it. A
    killed agent's Last Will (relayed by the coordinator) only marks them unavailable.
    """
    removals = [HaMessage(topic, b"") for topic in discovery_configs(society, agent, prefix=prefix)]
    return [
        *removals,
        HaMessage(state_topic(society, agent), b""),
        availability_message(society, agent, online=False),
    ]


def availability_message(society: str, agent: str, *, online: bool) -> HaMessage:
    """``online`` on every (re)connection; ``offline`` on a clean exit (and for a Last Will)."""
    payload = ONLINE if online else OFFLINE
    return HaMessage(availability_topic(society, agent), payload.encode())


def _number(info: Mapping[str, Any], key: str, digits: int = 3) -> float:
    value = float(info[key])
    if not math.isfinite(value):
        msg = f"info[{key!r}] is {value}, not a finite number"
        raise ValueError(msg)
    return round(value, digits)


def thermostat_state(
    info: Mapping[str, Any],
    obs: Sequence[float] | Any | None = None,
    *,
    comfort_band_c: tuple[float, float] | None = None,
) -> dict[str, Any]:
    """The state Home Assistant shows, from one step of ``society/Thermostat-v0``.

    ``info`` is the world's info dict (``indoor_temp_c``, ``hvac_fraction``, ...); the comfort
    band (the target) comes from ``comfort_band_c`` (°C, low and high) or else from the
    observation ``obs``, which carries it normalised. Raises KeyError for a missing info key
    and ValueError for a non-finite value or no comfort band.
    """
    if comfort_band_c is None:
        if obs is None:
            msg = "the comfort band needs the observation or comfort_band_c"
            raise ValueError(msg)
        low = float(obs[_OBS_COMFORT_LOW]) * _T_SCALE + _T_REF
        high = float(obs[_OBS_COMFORT_HIGH]) * _T_SCALE + _T_REF
    else:
        low, high = comfort_band_c
    if not (math.isfinite(low) and math.isfinite(high) and low <= high):
        msg = f"comfort band {low}..{high} °C is not a band"
        raise ValueError(msg)
    fraction = _number(info, "hvac_fraction")
    if fraction > _RUNNING:
        action = "heating"
    elif fraction < -_RUNNING:
        action = "cooling"
    else:
        action = "idle"
    state: dict[str, Any] = {
        "mode": "heat_cool",
        "action": action,
        "indoor_temp_c": _number(info, "indoor_temp_c", 2),
        "target_temp_c": round((low + high) / 2.0, 2),
        "target_temp_low_c": round(low, 2),
        "target_temp_high_c": round(high, 2),
        "outdoor_temp_c": _number(info, "outdoor_temp_c", 2),
        "hvac_fraction": fraction,
        "hvac_power_kw": _number(info, "hvac_power_kw"),
        "price": _number(info, "price", 4),
        "occupied": bool(info["occupied"]),
        "energy_cost": _number(info, "energy_cost", 4),
        "comfort_violation": _number(info, "comfort_violation", 4),
        "episode_energy_cost": _number(info, "episode_energy_cost", 4),
        "episode_comfort_violation": _number(info, "episode_comfort_violation", 4),
    }
    if isinstance(info.get("regime"), str):
        state["regime"] = info["regime"]
    return state


def state_message(
    society: str,
    agent: str,
    info: Mapping[str, Any],
    obs: Sequence[float] | Any | None = None,
    *,
    comfort_band_c: tuple[float, float] | None = None,
) -> HaMessage:
    """:func:`thermostat_state` as a retained JSON message on the agent's ``ha/state``."""
    state = thermostat_state(info, obs, comfort_band_c=comfort_band_c)
    payload = json.dumps(state, ensure_ascii=False, sort_keys=True).encode()
    return HaMessage(state_topic(society, agent), payload, retain=True, qos=0)


# --- the hooks by which agents and the coordinator carry these messages (agents.hooks) -------


class HomeAssistantAgent(AgentHook):
    """A thermostat agent in Home Assistant.

    On connect its discovery configurations and ``online``; with each telemetry its state; on a
    clean stop its entities removed (the Last Will only marks them unavailable; the next start
    announces them again).
    """

    def __init__(self, society: str, agent: str, env_id: str) -> None:
        if env_id not in THERMOSTAT_ENV_IDS:
            worlds = ", ".join(sorted(THERMOSTAT_ENV_IDS))
            msg = f"Home Assistant shows thermostats only ({worlds}), not {env_id}"
            raise ConfigError(msg)
        self.society = society
        self.agent = agent

    def on_connect(self) -> Sequence[HaMessage]:
        return [
            *discovery_messages(self.society, self.agent),
            availability_message(self.society, self.agent, online=True),
        ]

    def on_telemetry(self, latest: tuple[Any, dict[str, Any]] | None) -> Sequence[HaMessage]:
        if latest is None:
            return ()
        obs, info = latest
        try:
            return [state_message(self.society, self.agent, info, obs)]
        except (KeyError, ValueError) as exc:
            log.warning("no Home Assistant state this time: %s", exc)
            return ()

    def on_stop(self) -> Sequence[HaMessage]:
        return removal_messages(self.society, self.agent)


class HomeAssistantCoordinator(CoordinatorHook):
    """Marks a thermostat ``offline`` in Home Assistant when its agent's Last Will says so."""

    def __init__(self, society: str) -> None:
        self.society = society

    def on_status(self, status: Status) -> Sequence[HaMessage]:
        if status.state != OFFLINE or status.env_id not in THERMOSTAT_ENV_IDS:
            return ()
        return [availability_message(self.society, status.agent, online=False)]
