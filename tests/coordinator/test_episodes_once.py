"""Episodes are data: recorded once, and steps learned again after a resume said to be so."""

from __future__ import annotations

from pathlib import Path

import msgspec
from prometheus_client import CollectorRegistry

from agents.bus.codec import encode
from agents.bus.memory import MemoryBroker
from agents.bus.schemas import Telemetry
from agents.bus.topics import Kind, Topics
from agents.bus.transport import RawMessage
from agents.coordinator.coordinator import Coordinator, CoordinatorConfig
from agents.coordinator.history import History
from tests import factories


def telemetry(seq: int, steps: list[int]) -> Telemetry:
    return msgspec.structs.replace(
        factories.telemetry("a0"), seq=seq, episode_steps=steps,
        episode_returns=[float(step) for step in steps], episode_regimes=["r"] * len(steps),
    )  # fmt: skip


def coordinator(folder: Path) -> Coordinator:
    """A coordinator with its history in ``folder``, restored from it as ``run()`` does."""
    boss = Coordinator(
        CoordinatorConfig(society="s", data_dir=folder), MemoryBroker(),
        metrics_registry=CollectorRegistry(),
    )  # fmt: skip
    boss.history = History(folder / "history.sqlite")
    boss._restore()
    return boss


async def deliver(boss: Coordinator, message: Telemetry) -> None:
    topic = Topics("s").agent("a0", Kind.TELEMETRY)
    await boss.inbox(RawMessage(topic, encode(message)))


async def test_telemetry_delivered_twice_counts_once_and_relearned_steps_are_marked(
    tmp_path: Path,
) -> None:
    boss = coordinator(tmp_path)
    await deliver(boss, telemetry(1, [100, 200, 300]))
    await deliver(boss, telemetry(1, [100, 200, 300]))  # again, from the outbox: a duplicate
    # The agent was killed at step 350 and resumed from its checkpoint at 150.
    await deliver(boss, telemetry(2, [180, 290, 340, 420]))
    record = boss.roster.agents["a0"]
    assert [step for step, _, _ in record.episode_log] == [100, 200, 300, 340, 420]
    assert record.episodes_relearned == 2  # 180 and 290 were lived before
    assert boss.inbox.stats.duplicates["telemetry"] == 1
    assert boss.roster.agents["a0"].as_summary()["episodes_relearned"] == 2
    boss.history.close()
    history = History(tmp_path / "history.sqlite")
    assert [s for _, s, _, _ in history.episode_rows()] == [100, 200, 300, 340, 420]
    assert history.relearned_counts() == {"a0": 2}
    assert history.telemetry_seen() == [("a0", 1), ("a0", 2)]
    history.close()


async def test_a_restarted_coordinator_remembers_what_it_recorded(tmp_path: Path) -> None:
    first = coordinator(tmp_path)
    await deliver(first, telemetry(1, [100, 200]))
    first.history.close()
    second = coordinator(tmp_path)
    await deliver(second, telemetry(1, [100, 200]))  # the broker's queue, again
    await deliver(second, telemetry(2, [150, 250]))
    record = second.roster.agents["a0"]
    assert [step for step, _, _ in record.episode_log] == [100, 200, 250]
    assert record.episodes_relearned == 1
    assert second.inbox.stats.duplicates["telemetry"] == 1
    second.history.close()
