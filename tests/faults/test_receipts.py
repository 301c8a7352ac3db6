"""End-to-end delivery: a broker that restarts with no memory loses nothing the agent sent.

The broker's acknowledgement is not delivery. Here the coordinator is away (its persistent
session queues the agent's messages at the broker), the broker is killed before it saved
anything and comes back empty: what it had acknowledged and queued is gone. The agent still
holds those messages (kept until a receipt covers them); the coordinator's receipt lists the
gap, the agent sends them again, and every number is recorded exactly once.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from prometheus_client import CollectorRegistry

from agents.agent.agent import AgentReport
from agents.broker.managed import ManagedBroker
from agents.bus.client import Backoff
from agents.bus.mqtt import MqttTransport
from agents.bus.topics import Kind
from agents.coordinator.coordinator import Coordinator, CoordinatorConfig
from tests.faults.test_faults import agent
from tests.waiting import eventually


def coordinator(broker: ManagedBroker, data_dir: Path) -> Coordinator:
    return Coordinator(
        CoordinatorConfig(society="s", data_dir=data_dir, eval_episodes=1, receipt_interval=0.2),
        MqttTransport(broker.url),
        metrics_registry=CollectorRegistry(),
    )


def recorded_through(boss: Coordinator, kind: Kind, agent_id: str = "a0") -> int:
    tracker = boss.inbox.streams.get((kind, agent_id))
    return 0 if tracker is None or tracker.floor is None else tracker.floor


async def test_a_broker_that_forgets_everything_loses_nothing_the_agent_sent(
    mosquitto: ManagedBroker, tmp_path: Path
) -> None:
    boss = coordinator(mosquitto, tmp_path / "coordinator")
    serving = asyncio.create_task(boss.run())
    member = agent(mosquitto, tmp_path, "a0")
    running = asyncio.create_task(member.run())
    try:
        await eventually(lambda: recorded_through(boss, Kind.EXPERIENCE) >= 2, timeout=60)
        assert member.bus is not None
        member.bus.backoff = Backoff(base=0.1, cap=0.5)
        # Receipts let the agent go of what was recorded: it keeps only the rest.
        await eventually(lambda: member.bus is not None and member.bus.outbox.awaiting() < 20)
        boss.stop()
        await asyncio.wait_for(serving, 30)
        # The coordinator is away; the broker acknowledges and queues what the agent sends.
        seen = recorded_through(boss, Kind.EXPERIENCE)
        outbox = member.bus.outbox
        await eventually(lambda: outbox.counter("experience_seq") >= seen + 4, timeout=60)
        await eventually(lambda: outbox.unsent() == 0)
        queued = outbox.counter("experience_seq") - seen
        mosquitto.kill()  # before any autosave: the broker's memory goes with it
        for saved in mosquitto.data_dir.glob("*.db"):
            saved.unlink()
        mosquitto.start()
        boss = coordinator(mosquitto, tmp_path / "coordinator")  # the same history
        serving = asyncio.create_task(boss.run())
        # New batches arrive; the ones the broker forgot are a gap the receipts repair.
        await eventually(
            lambda: recorded_through(boss, Kind.EXPERIENCE) >= seen + queued + 2, timeout=90
        )
    finally:
        member.stop()
        report = await asyncio.wait_for(running, 120)
    try:
        last = report.experience_batches_published
        await eventually(lambda: recorded_through(boss, Kind.EXPERIENCE) == last, timeout=60)
        tracker = boss.inbox.streams[(Kind.EXPERIENCE, "a0")]
        assert not tracker.above  # every number from 1 to the last
        assert tracker.repaired >= queued  # the forgotten ones came again
        assert boss.roster.agents["a0"].experience_batches_received == last  # each once
        assert report.resent >= queued
        assert report.unreceipted_dropped == 0
        delivery = boss.summary()["delivery"]["a0"]
        assert delivery["experience"]["missing"] == 0
        assert delivery["experience"]["repaired"] == tracker.repaired
        registry = boss.metrics_registry
        labels = {"agent": "a0", "kind": "experience"}
        assert registry.get_sample_value("society_messages_missing", labels) == 0
        repaired = registry.get_sample_value("society_messages_repaired_total", labels)
        assert repaired == tracker.repaired
        # Snapshots and telemetry went through the same repair.
        for kind in (Kind.POLICY, Kind.TELEMETRY):
            assert boss.inbox.streams[(kind, "a0")].missing_count == 0
    finally:
        boss.stop()
        await asyncio.wait_for(serving, 30)


async def test_a_data_folder_restored_from_a_backup_is_not_taken_for_its_past(
    mosquitto: ManagedBroker, tmp_path: Path
) -> None:
    """A folder copied back from a backup hands out numbers the coordinator recorded already:
    without care its new messages are dropped as duplicates. The receipt shows it; the agent
    numbers what it holds again after what was recorded, and everything new is recorded."""
    boss = coordinator(mosquitto, tmp_path / "coordinator")
    serving = asyncio.create_task(boss.run())
    folder, backup = tmp_path / "a0", tmp_path / "backup"

    async def live_until(recorded: int) -> AgentReport:
        member = agent(mosquitto, tmp_path, "a0")
        running = asyncio.create_task(member.run())
        try:
            await eventually(lambda: recorded_through(boss, Kind.EXPERIENCE) >= recorded, 90)
        finally:
            member.stop()
        return await asyncio.wait_for(running, 120)

    try:
        await live_until(3)
        shutil.copytree(folder, backup)  # the backup
        await live_until(recorded_through(boss, Kind.EXPERIENCE) + 4)  # life goes on
        before = boss.inbox.streams[(Kind.EXPERIENCE, "a0")].highest
        shutil.rmtree(folder)
        shutil.copytree(backup, folder)  # the disk died; the backup comes back
        report = await live_until(before + 4)
        tracker = boss.inbox.streams[(Kind.EXPERIENCE, "a0")]
        assert tracker.highest >= before + 4  # new batches recorded, not dropped
        assert tracker.missing_count == 0
        assert report.renumbered >= 1
    finally:
        boss.stop()
        await asyncio.wait_for(serving, 30)
