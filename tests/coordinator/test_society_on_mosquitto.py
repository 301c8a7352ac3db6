"""An agent and the coordinator in one event loop, talking through a real Mosquitto."""

from __future__ import annotations

import asyncio
import sqlite3
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import msgspec
import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from agents.agent.agent import Agent, AgentConfig
from agents.broker.managed import ManagedBroker
from agents.bus.arrays import to_wire
from agents.bus.codec import encode
from agents.bus.mqtt import MqttTransport
from agents.bus.signing import tensor_digest
from agents.bus.topics import Kind, Topics
from agents.coordinator.coordinator import Coordinator, CoordinatorConfig
from agents.coordinator.evolution import Order
from agents.learner.learner import LearnerConfig
from tests import factories
from tests.waiting import eventually

SMALL_PPO = {"n_steps": 100, "batch_size": 50, "n_epochs": 2}


def learner_config(steps: int) -> LearnerConfig:
    return LearnerConfig(
        env_id="CartPole-v1", algo="ppo", hyperparams=SMALL_PPO, budget_steps=steps,
        snapshot_every=200, experience_batch=100, seed=0,
    )  # fmt: skip


def agent_a0(
    broker: ManagedBroker, tmp_path: Path, *, steps: int, key: bytes | None = None
) -> Agent:
    """Agent ``a0`` of society ``s`` on ``broker``: PPO on CartPole, telemetry every 0.2 s."""
    return Agent(
        AgentConfig(agent_id="a0", society="s", learner=learner_config(steps),
                    data_dir=tmp_path / "a0", telemetry_interval=0.2, society_key=key),
        MqttTransport(broker.url),
    )  # fmt: skip


@pytest.fixture
async def coordinator(mosquitto: ManagedBroker, tmp_path: Path) -> AsyncIterator[Coordinator]:
    config = CoordinatorConfig(
        society="s", data_dir=tmp_path / "coordinator", metrics_port=0, eval_episodes=2
    )
    coordinator = Coordinator(
        config, MqttTransport(mosquitto.url), metrics_registry=CollectorRegistry()
    )
    task = asyncio.create_task(coordinator.run())
    await eventually(lambda: coordinator.bus is not None and coordinator.bus.connected.is_set())
    try:
        yield coordinator
    finally:
        coordinator.stop()
        await asyncio.wait_for(task, 30)


def sample(coordinator: Coordinator, name: str, **labels: str) -> float | None:
    return coordinator.metrics_registry.get_sample_value(name, labels)


async def test_agent_learns_publishes_and_is_evaluated(
    mosquitto: ManagedBroker, coordinator: Coordinator, tmp_path: Path
) -> None:
    agent = agent_a0(mosquitto, tmp_path, steps=600)
    report = await agent.run()
    assert report.env_steps == 600
    assert report.experience_batches_published == 6
    # The untrained policy at step 0, then every 200 steps.
    assert report.snapshots_published == report.last_snapshot_version == 4
    assert report.outbox_pending == 0
    await eventually(lambda: coordinator.evaluations_done == 4, timeout=60)
    record = coordinator.roster.agents["a0"]
    assert [e.version for e in record.evaluations] == [1, 2, 3, 4]
    assert [e.step for e in record.evaluations] == [0, 200, 400, 600]
    assert record.state == "offline"  # said so itself on a clean exit
    assert sample(coordinator, "society_snapshot_evaluations_total") == 4
    assert sample(coordinator, "society_evaluation_seconds_count") == 4
    assert sample(coordinator, "society_agent_env_steps_total", agent="a0") == 600
    assert sample(coordinator, "society_messages_received_total", kind="experience") == 6
    assert sample(coordinator, "society_messages_received_total", kind="policy") == 4
    assert sample(coordinator, "society_agents", state="offline") == 1
    assert sample(coordinator, "society_agents", state="online") == 0
    assert sample(coordinator, "society_agent_eval_return", agent="a0") == pytest.approx(
        record.evaluations[-1].mean_return
    )
    assert sample(coordinator, "society_messages_rejected_total", reason="malformed") == 0
    # Next to the world's baseline (CartPole's PD controller) on the same seeds.
    assert sample(coordinator, "society_baseline_eval_return", agent="a0", baseline="pd") == 500
    assert sample(
        coordinator, "society_agent_regime_eval_return", agent="a0", regime="default"
    ) == pytest.approx(record.evaluations[-1].mean_return)
    # The same numbers over HTTP, as Prometheus scrapes them.
    url = f"http://127.0.0.1:{coordinator.metrics_port}/metrics"
    body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read().decode())
    assert 'society_agent_env_steps_total{agent="a0"} 600.0' in body
    assert "society_evaluation_seconds_bucket" in body
    # And in the run history.
    history = sqlite3.connect(tmp_path / "coordinator" / "history.sqlite")
    assert history.execute("SELECT count(*) FROM evaluations").fetchone()[0] == 4


def _malformed_cases() -> list[tuple[str, Kind, bytes]]:
    """(expected reason, kind, payload) for each defect, built from valid messages."""

    def mutate(message: msgspec.Struct, **changes: object) -> bytes:
        data = msgspec.to_builtins(message, builtin_types=(bytes,))
        data.update(changes)
        return msgspec.msgpack.encode(data)

    good = factories.experience(agent="intruder")
    nan_obs = to_wire(np.full((8, 4), np.nan, dtype=np.float32))
    snapshot = factories.snapshot(agent="intruder")
    weights = np.zeros((8, 4), dtype=np.float32)
    weights[0, 0] = np.inf
    inf_wire = to_wire(weights)
    bad_tensors = [
        msgspec.structs.replace(snapshot.tensors[0], data=inf_wire.data),
        *snapshot.tensors[1:],
    ]
    inf_snapshot = msgspec.structs.replace(
        snapshot, tensors=bad_tensors, digest=tensor_digest(bad_tensors)
    )
    nan_column = [nan_obs.dtype, nan_obs.shape, nan_obs.data]
    return [
        ("malformed", Kind.STATUS, b"\xc1\xc1"),
        ("malformed", Kind.EXPERIENCE, encode(good)[:50]),
        ("too_large", Kind.STATUS, b"\x00" * 5000),
        ("too_large", Kind.TELEMETRY, b"\x00" * 70_000),
        ("schema", Kind.TELEMETRY, mutate(factories.telemetry("intruder"), env_steps="many")),
        ("schema", Kind.STATUS, mutate(factories.status("intruder"), extra=1)),
        ("schema_version", Kind.STATUS, mutate(factories.status("intruder"), schema=99)),
        ("dtype", Kind.EXPERIENCE, mutate(good, obs=["complex128", [8, 4], b"\x00" * 512])),
        ("shape", Kind.EXPERIENCE, mutate(good, obs=["float32", [8, 4], b"\x00" * 12])),
        ("non_finite", Kind.EXPERIENCE, mutate(good, obs=nan_column)),
        ("non_finite", Kind.POLICY, encode(inf_snapshot)),
        ("digest", Kind.POLICY, encode(msgspec.structs.replace(snapshot, digest="0" * 64))),
        ("topic", Kind.EXPERIENCE, encode(factories.experience(agent="someone-else"))),
    ]  # fmt: skip


async def test_bad_payloads_on_every_topic_are_rejected_counted_and_survived(
    mosquitto: ManagedBroker, coordinator: Coordinator, tmp_path: Path
) -> None:
    topics = Topics("s")
    agent = agent_a0(mosquitto, tmp_path, steps=0)
    running = asyncio.create_task(agent.run())
    try:
        await eventually(lambda: agent.bus is not None and agent.bus.connected.is_set())
        cases = _malformed_cases()
        async with aiomqtt.Client(
            mosquitto.url.host, mosquitto.url.port, identifier="attacker"
        ) as raw:
            for _, kind, payload in cases:
                await raw.publish(topics.agent("intruder", kind), payload, qos=1)
                # The agent reads its directive topic: the same garbage goes there too.
                await raw.publish(topics.agent("a0", Kind.DIRECTIVE), payload, qos=1)
            # A snapshot that is well-formed but does not fit its world is refused at evaluation.
            wrong_world = msgspec.structs.replace(factories.snapshot(agent="intruder", version=2))
            await raw.publish(topics.agent("intruder", Kind.POLICY), encode(wrong_world), qos=1)
            # And a valid message afterwards still gets through: nothing is wedged.
            await raw.publish(
                topics.agent("intruder", Kind.EXPERIENCE),
                encode(factories.experience(agent="intruder", seq=1)),
                qos=1,
            )
        expected: dict[str, int] = {}
        for reason, _, _ in cases:
            expected[reason] = expected.get(reason, 0) + 1
        expected["incompatible"] = 1
        await eventually(lambda: dict(coordinator.inbox.stats.rejected) == expected, timeout=60)
        for reason, count in expected.items():
            assert sample(coordinator, "society_messages_rejected_total", reason=reason) == count
        await eventually(
            lambda: coordinator.roster.get("intruder").experience_batches_received == 1
        )
        # The agent refused every bad directive by reason and kept learning.
        # It also reads every agent's snapshots (candidates when its world changes).
        on_policy_topic = sum(kind is Kind.POLICY for _, kind, _ in cases)
        await eventually(
            lambda: sum(agent.inbox.stats.rejected.values()) == len(cases) + on_policy_topic
        )
        assert agent.inbox.stats.rejected["schema_version"] == 1
        assert agent.inbox.stats.rejected["too_large"] == 1  # only 70 kB exceeds 64 KiB
        assert agent.learner is not None
        steps = agent.learner.step
        await eventually(lambda: agent.learner is not None and agent.learner.step > steps + 50)
    finally:
        agent.stop()
    report = await asyncio.wait_for(running, 60)
    assert report.stopped_by == "signal"
    assert sum(report.messages_rejected.values()) == len(cases) + on_policy_topic


async def test_a_directive_with_a_bad_hyperparameter_is_refused_and_the_agent_learns_on(
    mosquitto: ManagedBroker, tmp_path: Path
) -> None:
    topics = Topics("s")
    agent = agent_a0(mosquitto, tmp_path, steps=0)
    running = asyncio.create_task(agent.run())
    bad: list[dict[str, object]] = [
        {"learning_rate": "fast"},
        {"learning_rate": 1000.0, "ent_coef": 50.0, "gamma": 7.0},
        {"learning_rate": -1.0},
        {"learning_rate": float("nan")},
        {"gamma": True},
    ]
    try:
        await eventually(lambda: agent.learner is not None and agent.learner.step > 0)
        learner = agent.learner
        assert learner is not None
        before = dict(learner.hyperparams)
        async with aiomqtt.Client(
            mosquitto.url.host, mosquitto.url.port, identifier="coordinator-ish"
        ) as raw:
            for number, changes in enumerate(bad):
                directive = msgspec.structs.replace(
                    factories.directive("a0"), id=f"bad-{number}", action="mutate",
                    hyperparams=changes,
                )  # fmt: skip
                await raw.publish(topics.agent("a0", Kind.DIRECTIVE), encode(directive), qos=1)
            # NaN is refused by the codec already (non_finite), the rest by the learner's check.
            refused = {"invalid": len(bad) - 1, "non_finite": 1}
            await eventually(lambda: dict(agent.inbox.stats.rejected) == refused)
            assert learner.hyperparams == before  # nothing of any of them was applied
            assert agent.inbox.stats.received["directive"] == 0  # each counted once, refused
            good = msgspec.structs.replace(
                factories.directive("a0"), id="good", action="mutate",
                hyperparams={"learning_rate": 1e-4},
            )  # fmt: skip
            await raw.publish(topics.agent("a0", Kind.DIRECTIVE), encode(good), qos=1)
        await eventually(lambda: learner.hyperparams["learning_rate"] == 1e-4)
        steps = learner.step
        await eventually(lambda: learner.step > steps + 50)  # learning on
    finally:
        agent.stop()
    report = await asyncio.wait_for(running, 60)
    assert report.messages_rejected == refused


async def test_a_society_with_a_key_signs_and_checks_between_agent_and_coordinator(
    mosquitto: ManagedBroker, tmp_path: Path
) -> None:
    """The agent signs what it publishes, the coordinator checks it, and the other way.

    Without this, dropping the key in the agent or in the coordinator left every test green.
    """
    key = b"s" * 32
    topics = Topics("s")
    coordinator = Coordinator(
        CoordinatorConfig(society="s", data_dir=tmp_path / "coordinator", metrics_port=0,
                          eval_episodes=2, society_key=key),
        MqttTransport(mosquitto.url), metrics_registry=CollectorRegistry(),
    )  # fmt: skip
    serving = asyncio.create_task(coordinator.run())
    agent = agent_a0(mosquitto, tmp_path, steps=0, key=key)
    running = asyncio.create_task(agent.run())
    try:
        # The agent's signed snapshots are evaluated.
        await eventually(lambda: coordinator.evaluations_done >= 2, timeout=60)
        async with aiomqtt.Client(
            mosquitto.url.host, mosquitto.url.port, identifier="forger"
        ) as raw:
            # Unsigned, a snapshot for the coordinator and a directive for the agent: refused.
            forged = factories.snapshot(agent="intruder", version=1)
            await raw.publish(topics.agent("intruder", Kind.POLICY), encode(forged), qos=1)
            order = msgspec.structs.replace(
                factories.directive("a0"), action="mutate", hyperparams={"learning_rate": 0.5}
            )
            await raw.publish(topics.agent("a0", Kind.DIRECTIVE), encode(order), qos=1)
            await eventually(lambda: coordinator.inbox.stats.rejected["signature"] == 1)
            # The agent reads peers' snapshots too: it refuses both.
            await eventually(lambda: agent.inbox.stats.rejected["signature"] == 2)
        assert "intruder" not in coordinator.roster.agents
        # Everything of the agent's (status, telemetry, experience, snapshots) passed the
        # coordinator's check; only the forgery was refused.
        record = coordinator.roster.agents["a0"]
        assert (record.state, record.experience_batches_received > 0) == ("online", True)
        assert record.env_steps > 0
        assert dict(coordinator.inbox.stats.rejected) == {"signature": 1}
        assert agent.learner is not None
        assert agent.learner.hyperparams["learning_rate"] != 0.5
        assert agent.inbox.stats.received["directive"] == 0
        # A directive the coordinator signed passes the agent's check.
        record = coordinator.roster.agents["a0"]
        coordinator._direct(Order("a0", "a0", record.latest_version, {"learning_rate": 1e-4}))
        await eventually(lambda: agent.inbox.stats.received["directive"] == 1)
        assert agent.inbox.stats.rejected["signature"] == 2
    finally:
        agent.stop()
        await asyncio.wait_for(running, 60)
        coordinator.stop()
        await asyncio.wait_for(serving, 30)
