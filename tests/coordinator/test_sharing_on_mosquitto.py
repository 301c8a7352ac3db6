"""Sharing through a real broker: experience into peers' buffers, directives, twins."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from agents.agent.agent import Agent, AgentConfig
from agents.broker.managed import ManagedBroker
from agents.bus.mqtt import MqttTransport
from agents.bus.schemas import HyperValue
from agents.coordinator.coordinator import Coordinator, CoordinatorConfig
from agents.coordinator.evolution import Order
from agents.learner.learner import LearnerConfig
from tests.waiting import eventually

DQN_SMALL = {"learning_starts": 50, "buffer_size": 5000, "exploration_steps": 500}


def dqn_agent(
    broker: ManagedBroker,
    tmp_path: Path,
    agent_id: str,
    *,
    steps: int,
    twin_of: str = "",
    check_adoptions: bool = True,
) -> Agent:
    config = AgentConfig(
        agent_id=agent_id,
        society="s",
        learner=LearnerConfig(
            env_id="CartPole-v1", algo="dqn", hyperparams=DQN_SMALL, budget_steps=steps,
            experience_batch=50, snapshot_every=200, seed=len(agent_id),
            check_adoptions=check_adoptions,
        ),
        data_dir=tmp_path / agent_id,
        telemetry_interval=0.2,
        shares=frozenset() if twin_of else frozenset({"experience", "snapshots", "evolution"}),
        twin_of=twin_of,
    )  # fmt: skip
    return Agent(config, MqttTransport(broker.url))


async def test_experience_flows_between_sharing_agents_and_never_from_a_twin(
    mosquitto: ManagedBroker, tmp_path: Path
) -> None:
    sharer = dqn_agent(mosquitto, tmp_path, "a0", steps=0)
    twin = dqn_agent(mosquitto, tmp_path, "a0-twin", steps=0, twin_of="a0")
    running = [asyncio.create_task(agent.run()) for agent in (sharer, twin)]
    try:
        await eventually(lambda: all(a.learner and a.learner.step > 800 for a in (sharer, twin)))
        # The twin publishes (for evaluation) but marks its batches as not shared.
        assert sharer.learner is not None
        assert twin.learner is not None
        assert sharer.learner.stats.peer_transitions == 0
        assert twin.learner.stats.peer_transitions == 0
        # This test is about the bus. The Q-network's fit test (tested in the learner's tests)
        # may refuse a newcomer's first batches for half a minute or more: a random policy's
        # short episodes are far from what a learner 800 steps on has learned to predict.
        sharer.learner.intake.fit_tolerance = None
        twin.learner.intake.fit_tolerance = None
        partner = dqn_agent(mosquitto, tmp_path, "a1", steps=0)
        running.append(asyncio.create_task(partner.run()))
        await eventually(
            lambda: sharer.learner is not None and sharer.learner.stats.peer_transitions > 0
        )
        assert twin.learner.stats.peer_transitions == 0  # takes nothing either
    finally:
        for agent in (sharer, twin, *([partner] if "partner" in locals() else [])):
            agent.stop()
        await asyncio.wait_for(asyncio.gather(*running), 60)


async def test_a_directive_makes_an_agent_adopt_a_peers_snapshot(
    mosquitto: ManagedBroker, tmp_path: Path
) -> None:
    coordinator = Coordinator(
        CoordinatorConfig(society="s", data_dir=tmp_path / "coordinator", eval_episodes=1),
        MqttTransport(mosquitto.url),
        metrics_registry=CollectorRegistry(),
    )
    serving = asyncio.create_task(coordinator.run())
    # Two barely trained networks: the sandbox check could go either way, and it is tested in
    # the learner's tests. This test is about the directive's way over the bus.
    pupil = dqn_agent(mosquitto, tmp_path, "pupil", steps=0, check_adoptions=False)
    teacher = dqn_agent(mosquitto, tmp_path, "teacher", steps=0)
    running = [asyncio.create_task(agent.run()) for agent in (pupil, teacher)]
    try:
        await eventually(
            lambda: (
                coordinator.roster.get("teacher").latest_version >= 2
                and pupil.peers is not None
                and pupil.peers.get("teacher") is not None
            ),
            timeout=60,
        )
        version = coordinator.roster.get("teacher").latest_version
        coordinator._direct(Order("pupil", "teacher", version, {"learning_rate": 5e-4}))
        await eventually(lambda: pupil.learner is not None and pupil.learner.stats.adoptions == 1)
        assert pupil.learner is not None
        assert pupil.learner.lineage is not None
        assert pupil.learner.lineage.agent == "teacher"
        assert pupil.learner.hyperparams["learning_rate"] == pytest.approx(5e-4)
        # Its next snapshot says so, and the coordinator counts the adoption.
        await eventually(lambda: coordinator.roster.get("pupil").adoptions == 1, timeout=60)
        assert coordinator.directives_sent == 1
    finally:
        for agent in (pupil, teacher):
            agent.stop()
        await asyncio.wait_for(asyncio.gather(*running), 60)
        coordinator.stop()
    summary = await asyncio.wait_for(serving, 30)
    assert {"agent": "pupil", "from_agent": "teacher"}.items() <= summary["lineage"][0].items()


def ppo_agent(
    broker: ManagedBroker,
    tmp_path: Path,
    agent_id: str,
    *,
    twin_of: str = "",
    env_kwargs: dict[str, HyperValue] | None = None,
    key: bytes | None = None,
) -> Agent:
    config = AgentConfig(
        agent_id=agent_id,
        society="s",
        learner=LearnerConfig(
            env_id="society/TrafficSignal-v0", algo="ppo", budget_steps=0, seed=len(agent_id),
            init_seed=0,
            hyperparams={"n_steps": 64, "batch_size": 32, "n_epochs": 2},
            env_kwargs=env_kwargs or {}, snapshot_every=100_000,
        ),
        data_dir=tmp_path / agent_id,
        telemetry_interval=0.2,
        shares=frozenset() if twin_of else frozenset({"federated"}),
        twin_of=twin_of,
        society_key=key,
    )  # fmt: skip
    return Agent(config, MqttTransport(broker.url))


async def test_federated_agents_average_alike_peers_signed_never_a_twin_or_unlike_device(
    mosquitto: ManagedBroker, tmp_path: Path
) -> None:
    key = b"k" * 32
    a = ppo_agent(mosquitto, tmp_path, "a", env_kwargs={"demand_n": 800.0}, key=key)
    b = ppo_agent(mosquitto, tmp_path, "b", env_kwargs={"demand_n": 880.0}, key=key)
    twin = ppo_agent(mosquitto, tmp_path, "a-twin", twin_of="a", key=key)
    # An intersection with three times the demand: another kind of device, announced so.
    unlike = ppo_agent(mosquitto, tmp_path, "c", env_kwargs={"demand_n": 2400.0}, key=key)
    agents = (a, b, twin, unlike)
    running = [asyncio.create_task(agent.run()) for agent in agents]
    try:
        await eventually(
            lambda: all(
                x.learner is not None
                and x.learner.federation is not None
                and x.learner.federation.rounds >= 3
                for x in (a, b)
            ),
            timeout=60,
        )
        assert a.learns_from == a.federates_with == ["b"]
        assert b.learns_from == b.federates_with == ["a"]
        for member in (a, b):  # each trained on the other's rollouts, sent over the broker
            assert member.learner is not None
            assert member.learner.rollout_pool is not None
            assert member.learner.rollout_pool.peer_rows > 0
        assert twin.learner is not None
        assert twin.learner.federation is None  # a twin shares and takes nothing
        assert unlike.learner is not None
        assert unlike.learner.federation is not None
        assert unlike.learner.federation.rounds == 0
        assert unlike.learns_from == []
        assert a.inbox.stats.rejected.get("signature", 0) == 0
    finally:
        for agent in agents:
            agent.stop()
        await asyncio.wait_for(asyncio.gather(*running), 60)
    # What each did is in its final.json: the pair's rounds, the unlike one's refusals.
    final = {x.id: json.loads((tmp_path / x.id / "final.json").read_text()) for x in agents}
    assert final["a"]["federated_rounds"] >= 3
    assert final["a"]["pooled_peer_steps"] > 0
    assert final["c"]["federated_rounds"] == 0
    assert final["c"]["pooled_peer_steps"] == 0
    assert final["c"]["weights_ignored"] >= 1
    assert final["a-twin"]["weights_ignored"] == 0  # a twin takes nothing in


async def test_experience_is_taken_only_from_alike_devices(
    mosquitto: ManagedBroker, tmp_path: Path
) -> None:
    def agent(agent_id: str, demand: float) -> Agent:
        config = AgentConfig(
            agent_id=agent_id, society="s",
            learner=LearnerConfig(
                env_id="society/TrafficSignal-v0", algo="dqn", hyperparams=DQN_SMALL,
                budget_steps=0, experience_batch=50, seed=len(agent_id),
                env_kwargs={"demand_n": demand},
            ),
            data_dir=tmp_path / agent_id, telemetry_interval=0.2,
            shares=frozenset({"experience"}),
        )  # fmt: skip
        return Agent(config, MqttTransport(mosquitto.url))

    a, alike, unlike = agent("a", 800.0), agent("b", 880.0), agent("c", 2400.0)
    agents = (a, alike, unlike)
    running = [asyncio.create_task(x.run()) for x in agents]
    try:
        await eventually(lambda: a.experience_unlike >= 2 and "b" in a.learns_from, timeout=60)
        assert a.learns_from == ["b"]
        assert a.federates_with == []  # experience, not weights: evolution may still pair them
        assert unlike.learns_from == []
        assert unlike.experience_unlike >= 2
    finally:
        for x in agents:
            x.stop()
        await asyncio.wait_for(asyncio.gather(*running), 60)
