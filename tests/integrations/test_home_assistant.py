"""Home Assistant MQTT discovery payloads, checked against the discovery rules.

The rules are Home Assistant's (MQTT discovery and the climate, sensor and binary_sensor MQTT
platforms): topic layout, required keys per component, a unique id and a device per entity,
valid modes, actions and units. Templates are rendered with Jinja2, as Home Assistant renders
them, against the state built from a real step of the thermostat world; and every topic an
agent must publish is checked against broker/acl, so the agent is allowed to publish it.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pytest

from agents.bus.topics import topic_matches
from agents.exceptions import ConfigError
from agents.integrations import home_assistant as ha
from agents.worlds.thermostat import Thermostat

ROOT = Path(__file__).parents[2]
SOCIETY, AGENT = "home", "house-1"
DISCOVERY_TOPIC = re.compile(
    r"^homeassistant/(?P<component>climate|sensor|binary_sensor)/"
    r"(?P<node>[a-zA-Z0-9_-]+)/(?P<object>[a-zA-Z0-9_-]+)/config$"
)
#: Home Assistant's climate modes and actions (HVACMode, HVACAction).
HVAC_MODES = {"off", "heat", "cool", "heat_cool", "auto", "dry", "fan_only"}
HVAC_ACTIONS = {"off", "preheating", "heating", "cooling", "drying", "idle", "fan", "defrosting"}
STATE_CLASSES = {"measurement", "total", "total_increasing"}
#: device_class -> allowed units (the ones we use).
UNITS: dict[str, set[str | None]] = {
    "temperature": {"°C", "°F", "K"},
    "power": {"W", "kW"},
    "occupancy": {None},
}
#: Keys each component needs for what we show (Home Assistant's own required keys, plus
#: what an entity needs to be stateful, unique and grouped on a device).
REQUIRED = {
    "climate": {
        "name", "unique_id", "device", "availability", "modes",
        "mode_state_topic", "mode_state_template", "current_temperature_topic",
        "current_temperature_template", "temperature_state_topic", "temperature_state_template",
        "action_topic", "action_template", "temperature_unit",
    },
    "sensor": {"name", "unique_id", "device", "availability", "state_topic", "value_template"},
    "binary_sensor": {
        "name", "unique_id", "device", "availability", "state_topic", "value_template",
        "payload_on", "payload_off",
    },
}  # fmt: skip

TEMPLATES = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)  # noqa: S701


def render(template: str, state: dict[str, Any]) -> str:
    return TEMPLATES.from_string(template).render(value_json=state).strip()


def real_states() -> list[dict[str, Any]]:
    """States from real steps: full heating, full cooling, and off."""
    env = Thermostat(n_levels=7)
    obs, _ = env.reset(seed=3)
    states = []
    for action in (6, 0, 3):
        obs, _, _, _, info = env.step(action)
        states.append(ha.thermostat_state(info, obs))
    return states


@pytest.fixture(scope="module")
def configs() -> dict[str, dict[str, Any]]:
    return ha.discovery_configs(SOCIETY, AGENT)


def test_discovery_topics_and_required_keys(configs: dict[str, dict[str, Any]]) -> None:
    components = []
    for topic, config in configs.items():
        match = DISCOVERY_TOPIC.fullmatch(topic)
        assert match, f"{topic} is not a discovery topic"
        assert match["node"] == AGENT
        component = match["component"]
        components.append(component)
        missing = REQUIRED[component] - set(config)
        assert not missing, f"{topic} lacks {sorted(missing)}"
        assert config["unique_id"].endswith(match["object"])
    assert components.count("climate") == 1
    sensors = {DISCOVERY_TOPIC.fullmatch(t)["object"] for t in configs if "/sensor/" in t}  # type: ignore[index]
    assert {"energy_cost", "comfort_violation"} <= sensors


def test_one_device_per_agent_and_unique_ids_everywhere(
    configs: dict[str, dict[str, Any]],
) -> None:
    other = ha.discovery_configs(SOCIETY, "house-2")
    ids = [c["unique_id"] for c in [*configs.values(), *other.values()]]
    assert len(ids) == len(set(ids))
    devices = {json.dumps(c["device"], sort_keys=True) for c in configs.values()}
    assert len(devices) == 1, "every entity of an agent is on the same device"
    device = next(iter(configs.values()))["device"]
    assert device["identifiers"]
    assert all(isinstance(i, str) and i for i in device["identifiers"])
    assert device["identifiers"] != next(iter(other.values()))["device"]["identifiers"]
    for config in configs.values():
        assert config["origin"]["name"] == "Agent Society"


def test_every_topic_is_under_the_agents_own_subtree(configs: dict[str, dict[str, Any]]) -> None:
    own = f"society/{SOCIETY}/agents/{AGENT}/ha/"
    for topic, config in configs.items():
        topics = [v for k, v in config.items() if k.endswith("_topic")]
        topics += [item["topic"] for item in config["availability"]]
        assert topics, topic
        for value in topics:
            assert value.startswith(own), f"{topic}: {value} is not under {own}"
            assert "+" not in value
            assert "#" not in value
    assert ha.state_topic(SOCIETY, AGENT) == own + "state"
    assert ha.availability_topic(SOCIETY, AGENT) == own + "availability"
    assert {a["payload_available"] for c in configs.values() for a in c["availability"]} == {
        "online"
    }


def test_payloads_are_retained_json(configs: dict[str, dict[str, Any]]) -> None:
    messages = ha.discovery_messages(SOCIETY, AGENT)
    assert [m.topic for m in messages] == list(configs)
    for message in messages:
        assert message.retain
        assert message.qos == 1
        assert json.loads(message.payload.decode()) == configs[message.topic]
    state = ha.state_message(SOCIETY, AGENT, *_step())
    assert state.retain
    json.loads(state.payload)


def _step() -> tuple[dict[str, Any], Any]:
    env = Thermostat()
    obs, _ = env.reset(seed=0)
    obs, _, _, _, info = env.step(4)
    return info, obs


def test_templates_render_the_real_state(configs: dict[str, dict[str, Any]]) -> None:
    states = real_states()
    for topic, config in configs.items():
        component = DISCOVERY_TOPIC.fullmatch(topic)["component"]  # type: ignore[index]
        templates = {k: v for k, v in config.items() if k.endswith("template")}
        assert templates, topic
        for state in states:
            assert json.loads(json.dumps(state)) == state
            for key, template in templates.items():
                value = render(template, state)
                if key == "mode_state_template":
                    assert value in config["modes"]
                    assert value in HVAC_MODES
                elif key == "action_template":
                    assert value in HVAC_ACTIONS
                elif component == "binary_sensor":
                    assert value in {config["payload_on"], config["payload_off"]}
                else:
                    assert math.isfinite(float(value)), f"{topic} {key} -> {value!r}"
    assert {s["action"] for s in states} == {"heating", "cooling", "idle"}


def test_the_state_is_the_worlds(configs: dict[str, dict[str, Any]]) -> None:
    env = Thermostat(comfort_low_c=19.5, comfort_high_c=23.0)
    obs, _ = env.reset(seed=1)
    obs, _, _, _, info = env.step(6)
    state = ha.thermostat_state(info, obs)
    assert state["indoor_temp_c"] == pytest.approx(info["indoor_temp_c"], abs=0.01)
    assert state["target_temp_low_c"] == pytest.approx(19.5, abs=0.01)
    assert state["target_temp_high_c"] == pytest.approx(23.0, abs=0.01)
    assert state["target_temp_c"] == pytest.approx(21.25, abs=0.01)
    assert state["episode_energy_cost"] == pytest.approx(info["episode_energy_cost"], abs=1e-4)
    assert state["occupied"] is bool(info["occupied"])
    climate = configs[f"homeassistant/climate/{AGENT}/thermostat/config"]
    low = float(render(climate["temperature_low_state_template"], state))
    assert climate["min_temp"] <= low <= climate["max_temp"]
    # A comfort band given directly wins over the observation.
    assert ha.thermostat_state(info, comfort_band_c=(18.0, 22.0))["target_temp_c"] == 20.0


def test_sensor_units_and_classes_are_ones_home_assistant_accepts(
    configs: dict[str, dict[str, Any]],
) -> None:
    for topic, config in configs.items():
        if "/sensor/" not in topic and "/binary_sensor/" not in topic:
            continue
        if "state_class" in config:
            assert config["state_class"] in STATE_CLASSES, topic
        device_class = config.get("device_class")
        if device_class is not None:
            assert config.get("unit_of_measurement") in UNITS[device_class], topic
        # monetary sensors may only be state_class total in Home Assistant.
        assert device_class != "monetary" or config.get("state_class") == "total"
        assert config["expire_after"] > 0
    cost = configs[f"homeassistant/sensor/{AGENT}/energy_cost/config"]
    assert cost["unit_of_measurement"] == "USD"
    price = ha.discovery_configs(SOCIETY, AGENT, currency="EUR")[
        f"homeassistant/sensor/{AGENT}/electricity_price/config"
    ]
    assert price["unit_of_measurement"] == "EUR/kWh"


def test_removal_clears_every_config_and_marks_the_device_offline(
    configs: dict[str, dict[str, Any]],
) -> None:
    removals = ha.removal_messages(SOCIETY, AGENT)
    by_topic = {m.topic: m for m in removals}
    assert set(configs) <= set(by_topic)
    for topic in configs:
        assert by_topic[topic].payload == b""
        assert by_topic[topic].retain
    assert by_topic[ha.state_topic(SOCIETY, AGENT)].payload == b""
    assert by_topic[ha.availability_topic(SOCIETY, AGENT)].payload == b"offline"
    online = ha.availability_message(SOCIETY, AGENT, online=True)
    assert (online.topic, online.payload, online.retain) == (
        ha.availability_topic(SOCIETY, AGENT),
        b"online",
        True,
    )


def test_the_broker_acl_lets_the_agent_publish_all_of_it_and_nobody_elses() -> None:
    patterns = re.findall(
        r"^pattern (?:write|readwrite) (\S+)$", (ROOT / "broker" / "acl").read_text(), re.MULTILINE
    )

    def may_write(client_id: str, topic: str) -> bool:
        return any(topic_matches(p.replace("%c", client_id), topic) for p in patterns)

    messages = [
        *ha.discovery_messages(SOCIETY, AGENT),
        ha.state_message(SOCIETY, AGENT, *_step()),
        ha.availability_message(SOCIETY, AGENT, online=True),
    ]
    for message in messages:
        assert may_write(AGENT, message.topic), message.topic
        assert not may_write("house-2", message.topic), message.topic


def test_bad_input_is_refused_clearly() -> None:
    info, obs = _step()
    with pytest.raises(KeyError):
        ha.thermostat_state({k: v for k, v in info.items() if k != "indoor_temp_c"}, obs)
    with pytest.raises(ValueError, match="finite"):
        ha.thermostat_state({**info, "indoor_temp_c": math.nan}, obs)
    with pytest.raises(ValueError, match="comfort band"):
        ha.thermostat_state(info)
    with pytest.raises(ValueError, match="not a band"):
        ha.thermostat_state(info, np.full_like(obs, np.nan))
    with pytest.raises(ConfigError):
        ha.discovery_configs(SOCIETY, "bad/id")
    # Home Assistant node ids have no dots; the entity still belongs to the agent.
    assert ha.node_id("house.1") == "house_1"
