"""A thermostat agent shows up in Home Assistant: what it publishes on a real Mosquitto.

Home Assistant is a subscriber like any other: these tests subscribe where it would and check
the discovery configs, the availability and the state the agent and coordinator publish.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiomqtt
import msgspec
import pytest
from prometheus_client import CollectorRegistry

from agents.agent.agent import Agent, AgentConfig
from agents.broker.managed import ManagedBroker
from agents.bus.codec import encode
from agents.bus.mqtt import MqttTransport
from agents.bus.topics import Kind, Topics
from agents.bus.transport import ConnectOptions
from agents.coordinator.coordinator import Coordinator, CoordinatorConfig
from agents.exceptions import ConfigError
from agents.integrations import home_assistant as ha
from agents.learner.learner import LearnerConfig
from tests import factories
from tests.waiting import eventually

THERMOSTAT = "society/Thermostat-v0"


class Retained:
    """Everything retained or published under the topics Home Assistant reads."""

    def __init__(self) -> None:
        self.last: dict[str, bytes] = {}

    async def follow(self, broker: ManagedBroker, ready: asyncio.Event) -> None:
        async with aiomqtt.Client(broker.url.host, broker.url.port, identifier="ha") as client:
            await client.subscribe("homeassistant/#", qos=1)
            await client.subscribe("society/+/agents/+/ha/#", qos=1)
            ready.set()
            async for message in client.messages:
                self.last[str(message.topic)] = bytes(message.payload)


def thermostat_agent(broker: ManagedBroker, tmp_path: Path, steps: int) -> Agent:
    config = AgentConfig(
        agent_id="house1", society="home", data_dir=tmp_path / "house1",
        telemetry_interval=0.2, hooks=(ha.HomeAssistantAgent("home", "house1", THERMOSTAT),),
        learner=LearnerConfig(env_id=THERMOSTAT, algo="ppo", budget_steps=steps,
                              hyperparams={"n_steps": 64, "batch_size": 32, "n_epochs": 1}),
    )  # fmt: skip
    return Agent(config, MqttTransport(broker.url))


async def test_a_thermostat_agent_announces_itself_reports_state_and_says_goodbye(
    mosquitto: ManagedBroker, tmp_path: Path
) -> None:
    seen = Retained()
    ready = asyncio.Event()
    following = asyncio.create_task(seen.follow(mosquitto, ready))
    await asyncio.wait_for(ready.wait(), 10)
    agent = thermostat_agent(mosquitto, tmp_path, steps=0)
    running = asyncio.create_task(agent.run())
    availability = ha.availability_topic("home", "house1")
    state = ha.state_topic("home", "house1")
    try:
        await eventually(lambda: seen.last.get(availability) == b"online")
        configs = {t for t in seen.last if t.startswith("homeassistant/")}
        assert configs == {m.topic for m in ha.discovery_messages("home", "house1")}
        climate = next(t for t in configs if t.startswith("homeassistant/climate/"))
        (announced,) = json.loads(seen.last[climate])["availability"]
        assert announced["topic"] == availability
        await eventually(lambda: state in seen.last)
        shown = json.loads(seen.last[state])
        assert shown["mode"] == "heat_cool"
        assert shown["action"] in {"heating", "cooling", "idle"}
        assert shown["target_temp_low_c"] <= shown["target_temp_high_c"]
        first = seen.last[state]
        await eventually(lambda: seen.last[state] != first)  # the house goes on
    finally:
        agent.stop()
        await asyncio.wait_for(running, 60)
    await eventually(lambda: seen.last.get(availability) == b"offline")
    # A clean exit removes the entities: empty retained configs, and the state cleared.
    await eventually(lambda: all(seen.last[t] == b"" for t in configs))
    assert seen.last[state] == b""
    following.cancel()
    later = Retained()  # and the broker no longer hands the configs to anyone joining
    ready = asyncio.Event()
    following = asyncio.create_task(later.follow(mosquitto, ready))
    await asyncio.wait_for(ready.wait(), 10)
    await eventually(lambda: availability in later.last)  # retained offline: still there
    assert not configs & set(later.last)
    following.cancel()


async def test_the_coordinator_marks_a_dead_thermostat_offline(
    mosquitto: ManagedBroker, tmp_path: Path
) -> None:
    coordinator = Coordinator(
        CoordinatorConfig(
            society="home", data_dir=tmp_path / "c", hooks=(ha.HomeAssistantCoordinator("home"),)
        ),
        MqttTransport(mosquitto.url),
        metrics_registry=CollectorRegistry(),
    )
    serving = asyncio.create_task(coordinator.run())
    seen = Retained()
    ready = asyncio.Event()
    following = asyncio.create_task(seen.follow(mosquitto, ready))
    topics = Topics("home")

    def status(agent: str, state: str, env_id: str) -> bytes:
        return encode(msgspec.structs.replace(factories.status(agent, state), env_id=env_id))

    try:
        await asyncio.wait_for(ready.wait(), 10)
        assert coordinator.bus is not None
        await asyncio.wait_for(coordinator.bus.wait_connected(), 10)
        async with MqttTransport(mosquitto.url).connect(ConnectOptions("will")) as connection:
            for agent, env_id in (("house1", THERMOSTAT), ("pole1", "CartPole-v1")):
                topic = topics.agent(agent, Kind.STATUS)
                await connection.publish(topic, status(agent, "online", env_id), qos=1, retain=True)
                await eventually(lambda a=agent: coordinator.roster.get(a).state == "online")
                # What the broker publishes as the agent's Last Will.
                await connection.publish(
                    topic, status(agent, "offline", env_id), qos=1, retain=True
                )
        await eventually(
            lambda: seen.last.get(ha.availability_topic("home", "house1")) == b"offline"
        )
        await eventually(lambda: coordinator.roster.get("pole1").state == "offline")
        await asyncio.sleep(0.5)
        # Not a thermostat: nothing for Home Assistant.
        assert ha.availability_topic("home", "pole1") not in seen.last
    finally:
        following.cancel()
        coordinator.stop()
        await asyncio.wait_for(serving, 30)


def test_only_thermostats_go_to_home_assistant() -> None:
    with pytest.raises(ConfigError, match="thermostats only"):
        ha.HomeAssistantAgent("s", "a0", "CartPole-v1")
