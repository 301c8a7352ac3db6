"""A society spread over a clustered broker: three NATS nodes, one of them killed mid-run.

The coordinator and the two agents each talk to a different node. A node is killed with
SIGKILL (a machine that dies), the society goes on over the other two, and the node comes
back with what its disk held. Every experience batch either agent numbered is recorded by
the coordinator exactly once: what reached the cluster survives in JetStream's replicas on
the other nodes, and what did not is sent again from the agent's outbox when the receipts
show the gap (docs/deployment.md, "A clustered broker").
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from agents.agent.agent import Agent, AgentConfig
from agents.bus.client import Backoff
from agents.bus.mqtt import MqttTransport
from agents.bus.outbox import RESENT
from agents.bus.topics import Kind
from agents.coordinator.coordinator import Coordinator, CoordinatorConfig
from agents.learner.learner import LearnerConfig
from tests.bus.foreign_brokers import ForeignBroker, ForeignBrokerMissingError, nats_cluster
from tests.waiting import eventually

SMALL_PPO = {"n_steps": 64, "batch_size": 32, "n_epochs": 1}


def member(node: ForeignBroker, tmp_path: Path, agent_id: str, seed: int) -> Agent:
    config = AgentConfig(
        agent_id=agent_id, society="s", data_dir=tmp_path / agent_id, telemetry_interval=0.2,
        keepalive=5,
        learner=LearnerConfig(env_id="CartPole-v1", algo="ppo", hyperparams=SMALL_PPO,
                              experience_batch=50, snapshot_every=400, seed=seed),
    )  # fmt: skip
    return Agent(config, MqttTransport(node.url))


def recorded_through(boss: Coordinator, agent_id: str) -> int:
    tracker = boss.inbox.streams.get((Kind.EXPERIENCE, agent_id))
    return 0 if tracker is None or tracker.floor is None else tracker.floor


def delivery_state(boss: Coordinator, agent: Agent) -> str:
    """Both ends of ``agent``'s experience stream, for a failure to say where a repair stuck.

    The coordinator's side: recorded through (floor), the highest number seen, how many below
    it lack and the lowest of them. The agent's: numbered so far, the stream's rows still held
    (the repair can only resend these) and those the broker has not acknowledged, rows resent,
    receipts applied, and whether its client is connected.
    """
    tracker = boss.inbox.streams.get((Kind.EXPERIENCE, agent.id))
    recorded = (
        "nothing recorded"
        if tracker is None
        else f"floor {tracker.floor}, highest {tracker.highest}, "
        f"{tracker.missing_count} lacking {tracker.lowest_missing(10)}"
    )
    bus = agent.bus
    if bus is None:
        return f"coordinator: {recorded}; agent: no bus"
    outbox = bus.outbox
    topic = agent.topics.agent(agent.id, Kind.EXPERIENCE)
    return (
        f"coordinator: {recorded}; agent: numbered {outbox.counter('experience_seq')}, "
        f"held {outbox.pending(topic)}, unacknowledged {outbox.unsent(topic)}, "
        f"resent {outbox.counter(RESENT)} (every stream), receipts {agent.receipts}, "
        f"connected {bus.connected.is_set()}"
    )


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[list[ForeignBroker]]:
    try:
        nodes = nats_cluster(tmp_path / "cluster")
    except ForeignBrokerMissingError as exc:
        pytest.skip(str(exc))
    yield nodes
    for node in nodes:
        node.stop()


# Its own pytest process (`make test`): in the whole suite on this project's two-core machine
# the repair after the node's restart did not complete within the wait twice in a row (the
# coordinator's gap shrank to a few messages and new gaps kept opening), while alone it
# passes in about 75 s. Not understood yet; see CHANGELOG. Not reproduced since (the whole
# suite once, the test alone three times beside ten busy processes): a failure now says both
# ends of the stream (`delivery_state`), where the repair stuck.
@pytest.mark.isolated
async def test_a_node_killed_mid_run_loses_and_doubles_nothing(
    cluster: list[ForeignBroker], tmp_path: Path
) -> None:
    boss_node, node_a, node_b = cluster
    boss = Coordinator(
        CoordinatorConfig(society="s", data_dir=tmp_path / "coordinator", eval_episodes=1,
                          receipt_interval=0.5),
        MqttTransport(boss_node.url),
        metrics_registry=CollectorRegistry(),
    )  # fmt: skip
    serving = asyncio.create_task(boss.run())
    agents = {"a": member(node_a, tmp_path, "a", 1), "b": member(node_b, tmp_path, "b", 2)}
    running = {name: asyncio.create_task(agent.run()) for name, agent in agents.items()}
    reports = {}
    try:
        await eventually(lambda: all(recorded_through(boss, n) >= 2 for n in agents), timeout=90)
        for agent in agents.values():
            assert agent.bus is not None
            agent.bus.backoff = Backoff(base=0.1, cap=0.5)

        # Agent a's node dies. Agent b, on another node, is still heard meanwhile.
        node_a.kill()
        b_before = recorded_through(boss, "b")
        await eventually(lambda: recorded_through(boss, "b") >= b_before + 3, timeout=60)
        a_outbox = agents["a"].bus.outbox  # type: ignore[union-attr]
        a_numbered = a_outbox.counter("experience_seq")
        await eventually(lambda: a_outbox.counter("experience_seq") >= a_numbered + 2, timeout=60)
        node_a.start()
        # Everything numbered while its node was down reaches the coordinator (a fixed mark:
        # the agent goes on publishing, faster than a loaded coordinator may record). The
        # repair resends a few hundred messages through the cluster; under the full suite on
        # two cores it was seen to take longer than 90 s while the coordinator's gap shrank
        # (272, 248, then 6 lacking), so the wait allows 240 s: what is asserted is that it
        # all arrives, not how fast.
        numbered_while_down = a_outbox.counter("experience_seq")
        await eventually(
            lambda: recorded_through(boss, "a") >= numbered_while_down,
            timeout=240,
            describe=lambda: (
                f"{numbered_while_down} numbered while down; " + delivery_state(boss, agents["a"])
            ),
        )

        # Then the coordinator's node: the agents' messages wait in the other nodes' replicas.
        seen = {n: recorded_through(boss, n) for n in agents}
        boss_node.kill()
        for agent in agents.values():
            outbox = agent.bus.outbox  # type: ignore[union-attr]
            numbered = outbox.counter("experience_seq")
            await eventually(lambda o=outbox, k=numbered: o.counter("experience_seq") >= k + 2)
        boss_node.start()
        await eventually(
            lambda: all(recorded_through(boss, n) >= seen[n] + 3 for n in agents),
            timeout=90,
            describe=lambda: "; ".join(delivery_state(boss, a) for a in agents.values()),
        )
    finally:
        for agent in agents.values():
            agent.stop()
        for name, task in running.items():
            reports[name] = await asyncio.wait_for(task, 120)
    try:
        for name, report in reports.items():
            last = report.experience_batches_published
            await eventually(
                lambda n=name, k=last: recorded_through(boss, n) == k,
                timeout=90,
                describe=functools.partial(delivery_state, boss, agents[name]),
            )
            tracker = boss.inbox.streams[(Kind.EXPERIENCE, name)]
            assert not tracker.above, name  # every number from 1 to the last
            assert tracker.missing_count == 0, name
            # Each batch recorded once, whatever came twice on the way.
            assert boss.roster.agents[name].experience_batches_received == last, name
            assert report.unreceipted_dropped == 0, name
            assert boss.summary()["delivery"][name]["experience"]["missing"] == 0
    finally:
        boss.stop()
        await asyncio.wait_for(serving, 30)
