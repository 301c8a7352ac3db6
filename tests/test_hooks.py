"""Integrations plug in as hooks: the core calls them, publishes what they return, survives them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from agents.agent.agent import Agent, AgentConfig
from agents.bus.codec import encode
from agents.bus.memory import MemoryBroker
from agents.bus.schemas import SCHEMA_VERSION, Status
from agents.bus.topics import Kind, Topics
from agents.bus.transport import RawMessage
from agents.coordinator.coordinator import Coordinator, CoordinatorConfig
from agents.hooks import AgentHook, CoordinatorHook, HookRunner
from agents.learner.learner import LearnerConfig


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False


class Recording(AgentHook):
    def __init__(self) -> None:
        self.events: list[str] = []
        self.latest: list[Any] = []

    def on_connect(self) -> Sequence[Message]:
        self.events.append("connect")
        return [Message("ext/hello", b"hi", retain=True)]

    def on_telemetry(self, latest: tuple[Any, dict[str, Any]] | None) -> Sequence[Message]:
        self.events.append("telemetry")
        self.latest.append(latest)
        return [Message("ext/state", b"s")]

    def on_stop(self) -> Sequence[Message]:
        self.events.append("stop")
        return [Message("ext/bye", b"b")]


class Broken(AgentHook, CoordinatorHook):
    def on_connect(self) -> Sequence[Message]:
        raise RuntimeError("integration bug")

    def on_telemetry(self, latest: tuple[Any, dict[str, Any]] | None) -> Sequence[Message]:
        raise RuntimeError("integration bug")

    def on_status(self, status: Status) -> Sequence[Message]:
        raise RuntimeError("integration bug")


async def test_an_agent_tells_its_hooks_and_survives_a_broken_one(tmp_path: Path) -> None:
    broker = MemoryBroker()
    recording, broken = Recording(), Broken()
    config = AgentConfig(
        agent_id="a0", society="s", data_dir=tmp_path, telemetry_interval=0.05,
        hooks=(broken, recording),
        learner=LearnerConfig(env_id="CartPole-v1", algo="ppo", budget_steps=600,
                              hyperparams={"n_steps": 64, "batch_size": 32, "n_epochs": 1}),
    )  # fmt: skip
    agent = Agent(config, broker)
    report = await asyncio.wait_for(agent.run(), 60)
    seen = [m.topic for m in broker.published]
    assert report.env_steps == 600
    assert recording.events[0] == "connect"
    assert recording.events[-1] == "stop"
    assert "telemetry" in recording.events
    assert any(latest is not None for latest in recording.latest)  # the device's last step
    assert {"ext/hello", "ext/state", "ext/bye"} <= set(seen)
    assert agent.hook_runner.failures >= 2  # connect and telemetry, counted, not fatal


async def test_the_coordinator_tells_its_hooks_of_status_changes(tmp_path: Path) -> None:
    told: list[tuple[str, str]] = []

    class Watch(CoordinatorHook):
        def on_status(self, status: Status) -> Sequence[Message]:
            told.append((status.agent, status.state))
            return ()

    coordinator = Coordinator(
        CoordinatorConfig(society="s", data_dir=tmp_path, hooks=(Broken(), Watch())),
        MemoryBroker(),
        metrics_registry=CollectorRegistry(),
    )
    topic = Topics("s").agent("a0", Kind.STATUS)
    for state in ("online", "online", "offline"):
        status = Status(schema=SCHEMA_VERSION, agent="a0", state=state, ts=time.time(),
                        env_id="CartPole-v1", algo="ppo", pid=1)  # fmt: skip
        await coordinator.inbox(RawMessage(topic, encode(status), retain=True))
    assert told == [("a0", "online"), ("a0", "offline")]  # changes only
    assert coordinator.hook_runner.failures == 2


def test_a_failing_hook_is_logged_once_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    runner = HookRunner()
    broken = Broken()
    for _ in range(3):
        assert runner.gather("connect", [(broken, broken.on_connect)]) == []
    assert runner.failures == 3
    assert sum("failed" in record.message for record in caplog.records) == 1
