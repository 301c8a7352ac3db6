"""One run is not another: an agent's new life is never mistaken for its previous one."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import msgspec

from agents.bus.codec import encode
from agents.bus.schemas import Message
from agents.bus.topics import Kind, Topics
from agents.bus.transport import RawMessage
from agents.coordinator.coordinator import Coordinator
from tests import factories
from tests.coordinator.test_episodes_once import coordinator

OLD, NEW = 0xA11CE, 0xB0B


async def deliver(boss: Coordinator, kind: Kind, message: Message, life: int) -> None:
    message = msgspec.structs.replace(message, incarnation=life)
    await boss.inbox(RawMessage(Topics("s").agent("a0", kind), encode(message)))


async def test_a_society_run_again_does_not_take_the_previous_runs_data_for_its_own(
    tmp_path: Path,
) -> None:
    boss = coordinator(tmp_path)
    # What a new coordinator finds retained on the broker from the previous run.
    await deliver(boss, Kind.STATUS, factories.status("a0", state="offline"), OLD)
    await deliver(boss, Kind.POLICY, factories.snapshot("a0", version=7), OLD)
    await deliver(boss, Kind.TELEMETRY, msgspec.structs.replace(factories.telemetry(), seq=1), OLD)
    assert boss.roster.agents["a0"].latest_version == 7
    # The new run's agent comes online: a new life. It numbers from 1 again.
    await deliver(boss, Kind.STATUS, factories.status("a0"), NEW)
    record = boss.roster.agents["a0"]
    assert (record.incarnation, record.latest_version, record.state) == (NEW, 0, "online")
    await deliver(boss, Kind.POLICY, factories.snapshot("a0", version=1), NEW)
    await deliver(boss, Kind.TELEMETRY, msgspec.structs.replace(factories.telemetry(), seq=1), NEW)
    assert boss.roster.agents["a0"].latest_version == 1  # not a duplicate of anything
    assert boss.inbox.stats.duplicates["telemetry"] == 0
    # The old life's messages still in flight are refused, and its queued snapshot is moot.
    await deliver(boss, Kind.POLICY, factories.snapshot("a0", version=8), OLD)
    assert boss.inbox.stats.rejected["stale"] == 1
    queued = [boss._queue.get_nowait() for _ in range(boss._queue.qsize())]
    assert [(s.version, boss._current(s)) for s in queued] == [(7, False), (1, True)]
    # The history keeps the previous life apart, under its own name.
    boss.history.close()
    db = sqlite3.connect(tmp_path / "history.sqlite")
    lives = db.execute("SELECT agent, version FROM snapshots ORDER BY agent").fetchall()
    assert lives == [("a0", 1), (f"a0~{OLD:x}", 7)]


async def test_messages_that_say_no_life_are_taken_as_before(tmp_path: Path) -> None:
    boss = coordinator(tmp_path)
    await deliver(boss, Kind.POLICY, factories.snapshot("a0", version=1), 0)
    await deliver(boss, Kind.STATUS, factories.status("a0"), NEW)
    await deliver(boss, Kind.POLICY, factories.snapshot("a0", version=2), 0)
    assert boss.roster.agents["a0"].latest_version == 2
    assert not boss.inbox.stats.rejected


async def test_a_message_of_an_earlier_life_counts_once_and_takes_no_number_of_the_new_one(
    tmp_path: Path,
) -> None:
    """Refused before the inbox counts it: one rejection, not also a message received, and
    its number is not marked seen in the new life's stream (where it would make the new
    life's batch of that number look like a duplicate)."""
    boss = coordinator(tmp_path)
    await deliver(boss, Kind.STATUS, factories.status("a0"), NEW)
    received = sum(boss.inbox.stats.received.values())
    await deliver(boss, Kind.EXPERIENCE, factories.experience(agent="a0", seq=3), OLD)
    assert boss.inbox.stats.rejected["stale"] == 1
    assert sum(boss.inbox.stats.received.values()) == received
    await deliver(boss, Kind.EXPERIENCE, factories.experience(agent="a0", seq=3), NEW)
    assert boss.inbox.stats.duplicates["experience"] == 0
    assert boss.roster.agents["a0"].experience_batches_received == 1
