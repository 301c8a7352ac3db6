"""Faults, against a real Mosquitto: broker restarts, killed agents, a restarted coordinator.

Nothing acknowledged is lost, nothing is counted twice, and learning goes on meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from prometheus_client import CollectorRegistry

from agents.agent.agent import Agent, AgentConfig
from agents.broker.managed import ManagedBroker
from agents.bus.client import Backoff
from agents.bus.codec import decode_as
from agents.bus.mqtt import MqttTransport
from agents.bus.outbox import Outbox
from agents.bus.schemas import Status
from agents.bus.topics import Kind, Topics
from agents.coordinator.coordinator import Coordinator, CoordinatorConfig
from agents.exceptions import StorageError
from agents.learner.learner import Learner, LearnerConfig
from tests.waiting import eventually

SMALL_PPO = {"n_steps": 64, "batch_size": 32, "n_epochs": 1}


def agent(broker: ManagedBroker, tmp_path: Path, agent_id: str) -> Agent:
    config = AgentConfig(
        agent_id=agent_id, society="s", data_dir=tmp_path / agent_id, telemetry_interval=0.2,
        keepalive=5,
        learner=LearnerConfig(env_id="CartPole-v1", algo="ppo", hyperparams=SMALL_PPO,
                              experience_batch=50, snapshot_every=400, seed=1),
    )  # fmt: skip
    return Agent(config, MqttTransport(broker.url))


def coordinator(broker: ManagedBroker, data_dir: Path) -> Coordinator:
    return Coordinator(
        CoordinatorConfig(society="s", data_dir=data_dir, eval_episodes=1),
        MqttTransport(broker.url),
        metrics_registry=CollectorRegistry(),
    )


def fast_reconnects(*agents: Agent) -> None:
    for member in agents:
        if member.bus is not None:
            member.bus.backoff = Backoff(base=0.1, cap=0.5)


async def test_broker_restarts_lose_nothing_and_learning_goes_on(
    mosquitto: ManagedBroker, tmp_path: Path
) -> None:
    boss = coordinator(mosquitto, tmp_path / "coordinator")
    serving = asyncio.create_task(boss.run())
    members = [agent(mosquitto, tmp_path, name) for name in ("a0", "a1")]
    running = [asyncio.create_task(m.run()) for m in members]
    try:
        await eventually(lambda: all(m.bus and m.bus.connected.is_set() for m in members))
        fast_reconnects(*members)
        assert boss.bus is not None
        boss.bus.backoff = Backoff(base=0.1, cap=0.5)
        for _outage in range(3):
            await asyncio.sleep(1.5)
            mosquitto.stop()  # SIGTERM: Mosquitto saves its persistence file and exits
            steps_before = [m.learner.step for m in members if m.learner]
            await asyncio.sleep(2.0)
            steps_during = [m.learner.step for m in members if m.learner]
            assert all(d > b for d, b in zip(steps_during, steps_before, strict=True))
            assert all(m.bus and m.bus.outbox.pending() > 0 for m in members)
            mosquitto.start()
            await eventually(lambda: all(m.bus and m.bus.connected.is_set() for m in members))
    finally:
        for member in members:
            member.stop()
        reports = await asyncio.wait_for(asyncio.gather(*running), 120)
    try:
        for report in reports:
            assert report.outbox_pending == 0
            last = report.experience_batches_published

            def caught_up(agent_id: str = report.id, last: int = last) -> bool:
                tracker = boss.inbox.streams.get((Kind.EXPERIENCE, agent_id))
                return tracker is not None and tracker.floor == last and not tracker.above

            await eventually(caught_up, timeout=60)
            # Every seq from 1 to the last, exactly once after de-duplication.
            assert boss.roster.agents[report.id].experience_batches_received == last
        assert boss.bus is not None
        assert boss.bus.stats.connection_losses == 3
    finally:
        boss.stop()
        await asyncio.wait_for(serving, 30)


def spawn_agent(broker: ManagedBroker, data_dir: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "agents", "agent", "--id", "victim", "--society", "s",
         "--broker", f"mqtt://{broker.url.host}:{broker.url.port}", "--env", "CartPole-v1",
         "--algo", "ppo", "--hp", "n_steps=64", "--hp", "batch_size=32", "--hp", "n_epochs=1",
         "--snapshot-every", "300", "--checkpoint-every", "500", "--experience-batch", "50",
         "--data-dir", str(data_dir), *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


async def test_a_killed_agent_goes_offline_and_resumes_where_it_was(
    mosquitto: ManagedBroker, tmp_path: Path
) -> None:
    boss = coordinator(mosquitto, tmp_path / "coordinator")
    serving = asyncio.create_task(boss.run())
    data = tmp_path / "victim"
    process = spawn_agent(mosquitto, data, "--steps", "0", "--telemetry-interval", "0.3")
    try:
        await eventually((data / "checkpoint" / "checkpoint.json").exists, timeout=90)
        await eventually(lambda: boss.roster.get("victim").latest_version >= 3, timeout=90)
        await eventually(lambda: boss.roster.get("victim").state == "online")

        def lived_past_its_checkpoint() -> bool:
            checkpoint = json.loads((data / "checkpoint" / "checkpoint.json").read_text())
            return bool(boss.roster.get("victim").last_episode_step > int(checkpoint["step"]) + 20)

        await eventually(lived_past_its_checkpoint, timeout=30)
        process.send_signal(signal.SIGKILL)
        process.wait(30)
        # The broker publishes the Last Will at once: the socket closed without DISCONNECT.
        await eventually(lambda: boss.roster.get("victim").state == "offline", timeout=15)
        saved = json.loads((data / "checkpoint" / "checkpoint.json").read_text())
        versions_before = boss.roster.get("victim").latest_version
        last_before_kill = boss.roster.get("victim").last_episode_step
        seq_before = (
            sqlite3.connect(data / "outbox.sqlite")
            .execute("SELECT value FROM counters WHERE name = 'experience_seq'")
            .fetchone()[0]
        )
        again = spawn_agent(mosquitto, data, "--steps", str(saved["step"] + 600))
        _, stderr = await asyncio.to_thread(again.communicate, timeout=120)
        assert again.returncode == 0, stderr[-2000:]
        report = json.loads((data / "final.json").read_text())
        assert report["resumed_from_step"] == saved["step"]
        assert report["env_steps"] == saved["step"] + 600
        # Numbers never go back: new snapshots and batches continue after the old ones.
        assert report["last_snapshot_version"] > versions_before
        assert report["experience_batches_published"] > seq_before
        await eventually(lambda: boss.roster.get("victim").latest_version > versions_before)
        # The steps between the checkpoint and the kill were learned twice: their second
        # episodes are recorded as re-learned, never as a second life of those steps.
        record = boss.roster.get("victim")
        await eventually(lambda: record.last_episode_step > saved["step"] + 500)
        if last_before_kill > saved["step"]:  # no checkpoint came between the check and the kill
            assert record.episodes_relearned > 0
        history = sqlite3.connect(tmp_path / "coordinator" / "history.sqlite")
        steps = [row[0] for row in history.execute("SELECT step FROM episodes")]
        assert steps == sorted(steps)  # first lives only: steps never go back
        relearned = history.execute("SELECT count(*) FROM relearned_episodes").fetchone()[0]
        assert relearned == record.episodes_relearned
    finally:
        if process.poll() is None:
            process.kill()
        boss.stop()
        await asyncio.wait_for(serving, 30)


async def test_sigterm_checkpoints_before_exiting(mosquitto: ManagedBroker, tmp_path: Path) -> None:
    data = tmp_path / "victim"
    process = spawn_agent(mosquitto, data, "--steps", "0", "--checkpoint-every", "100000")
    try:
        await eventually((data / "outbox.sqlite").exists, timeout=90)
        await asyncio.sleep(3)
        process.send_signal(signal.SIGTERM)
        await asyncio.to_thread(process.wait, 60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0
    report = json.loads((data / "final.json").read_text())
    saved = json.loads((data / "checkpoint" / "checkpoint.json").read_text())
    assert report["stopped_by"] == "signal"
    assert saved["step"] == report["env_steps"] > 0
    assert not any(path.name.endswith(".tmp") for path in (data / "checkpoint").iterdir())


async def test_a_restarted_coordinator_counts_nothing_twice(
    mosquitto: ManagedBroker, tmp_path: Path
) -> None:
    folder = tmp_path / "coordinator"
    first = coordinator(mosquitto, folder)
    serving = asyncio.create_task(first.run())
    member = agent(mosquitto, tmp_path, "a0")
    running = asyncio.create_task(member.run())
    await eventually(lambda: first.evaluations_done >= 3, timeout=90)
    first.stop()
    await asyncio.wait_for(serving, 30)
    await asyncio.sleep(1.5)  # the agent goes on; the broker keeps the coordinator's queue
    member.stop()
    report = await asyncio.wait_for(running, 60)
    second = coordinator(mosquitto, folder)
    serving = asyncio.create_task(second.run())
    try:
        last = report.experience_batches_published

        def caught_up() -> bool:
            tracker = second.inbox.streams.get((Kind.EXPERIENCE, "a0"))
            return tracker is not None and tracker.floor == last

        await eventually(caught_up, timeout=60)
        await eventually(
            lambda: second.roster.get("a0").latest_version == report.last_snapshot_version
        )

        def all_evaluated() -> bool:
            return second.evaluations_done == report.last_snapshot_version

        await eventually(all_evaluated, timeout=90)
        record = second.roster.get("a0")
        assert record.experience_batches_received == last  # not a batch more
        assert record.snapshots_received == report.last_snapshot_version
        assert [e.version for e in record.evaluations] == list(
            range(1, report.last_snapshot_version + 1)
        )  # every snapshot evaluated once, across both coordinators
        # The retained snapshot came again on subscribing and was recognised.
        assert second.inbox.stats.duplicates["policy"] >= 1
    finally:
        second.stop()
        await asyncio.wait_for(serving, 30)
    history = sqlite3.connect(folder / "history.sqlite")
    assert history.execute("SELECT count(*) FROM evaluations").fetchone()[0] == (
        report.last_snapshot_version
    )
    # Every episode the agent lived is in the history once, those of the time no coordinator
    # was there included (telemetry waits in the outbox and is de-duplicated by its seq).
    steps = [row[0] for row in history.execute("SELECT step FROM episodes WHERE agent = 'a0'")]
    assert len(steps) == report.episodes
    assert len(set(steps)) == len(steps)


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (Linux: /proc/<pid>/task/<tid>/children)."""
    found: set[int] = set()
    stack = [pid]
    while stack:
        parent = stack.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            for child in map(int, children):
                if child not in found:
                    found.add(child)
                    stack.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False
    return state != "Z"


async def test_a_killed_coordinator_leaves_no_evaluation_worker_behind(
    mosquitto: ManagedBroker, tmp_path: Path
) -> None:
    url = f"mqtt://{mosquitto.url.host}:{mosquitto.url.port}"
    process = subprocess.Popen(  # noqa: ASYNC220 - a child we kill on purpose
        [sys.executable, "-m", "agents", "coordinator", "--society", "s", "--broker", url,
         "--metrics-port", "0", "--data-dir", str(tmp_path / "coordinator"),
         "--eval-episodes", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    member = agent(mosquitto, tmp_path, "a0")
    running = asyncio.create_task(member.run())
    try:
        history = tmp_path / "coordinator" / "history.sqlite"

        def evaluated() -> bool:
            """Its evaluation worker has worked (and so started up)."""
            if not history.exists():
                return False
            with contextlib.closing(sqlite3.connect(history)) as db:
                try:
                    return bool(db.execute("SELECT count(*) FROM evaluations").fetchone()[0])
                except sqlite3.Error:
                    return False

        await eventually(evaluated, timeout=90)
        children = descendants(process.pid)
        assert children  # the worker, and multiprocessing's resource tracker
        process.send_signal(signal.SIGKILL)
        process.wait()
        await eventually(lambda: not any(alive(pid) for pid in children), timeout=15)
    finally:
        member.stop()
        await asyncio.wait_for(running, 60)
        if process.poll() is None:
            process.kill()


async def retained_state(broker: ManagedBroker, agent_id: str) -> str:
    """The state in ``agent_id``'s retained status on ``broker``."""
    topic = Topics("s").agent(agent_id, Kind.STATUS)
    async with aiomqtt.Client(broker.url.host, broker.url.port, identifier="w") as watcher:
        await watcher.subscribe(topic, qos=1)
        message = await asyncio.wait_for(anext(watcher.messages), 10)
    assert isinstance(message.payload, bytes)
    return decode_as(Status, message.payload).state


async def test_an_agent_that_crashes_says_offline_first(
    mosquitto: ManagedBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A disk that fills at a checkpoint: the agent stops, and says so (no Last Will comes
    after a clean disconnect, so it must publish its offline status itself)."""

    def disk_full(self: Learner) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Learner, "checkpoint", disk_full)
    config = AgentConfig(
        agent_id="a0", society="s", data_dir=tmp_path / "a0", telemetry_interval=0.2,
        learner=LearnerConfig(env_id="CartPole-v1", algo="ppo", hyperparams=SMALL_PPO,
                              checkpoint_every=128, snapshot_every=10_000, seed=1),
    )  # fmt: skip
    member = Agent(config, MqttTransport(mosquitto.url))
    with pytest.raises(OSError, match="No space left"):
        await asyncio.wait_for(member.run(), 60)
    assert await retained_state(mosquitto, "a0") == "offline"


async def test_a_full_disk_stops_the_agent_with_a_clear_error_and_drops_nothing(
    mosquitto: ManagedBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The outbox's file can grow no more (SQLite's own "database or disk is full"): the agent
    stops with one clear error and says offline; no batch was numbered and then dropped."""
    opened = Outbox.__init__

    def small_disk(self: Outbox, path: Path | None = None, **kwargs: Any) -> None:
        opened(self, path, **kwargs)
        pages = self._db.execute("PRAGMA page_count").fetchone()[0]
        self._db.execute(f"PRAGMA max_page_count = {pages + 40}")

    monkeypatch.setattr(Outbox, "__init__", small_disk)
    member = agent(mosquitto, tmp_path, "a0")
    with pytest.raises(StorageError, match="disk is full"):
        await asyncio.wait_for(member.run(), 120)
    assert await retained_state(mosquitto, "a0") == "offline"
    # Every number handed out is a message in the outbox or one the broker acknowledged.
    monkeypatch.setattr(Outbox, "__init__", opened)
    outbox = Outbox(tmp_path / "a0" / "outbox.sqlite")
    rows = outbox._db.execute(
        "SELECT number FROM outbox WHERE stream = 'experience' ORDER BY number"
    ).fetchall()
    last = outbox.counter("experience_seq")
    assert last > 0
    assert [n for (n,) in rows] == list(range(last - len(rows) + 1, last + 1))
