"""Three ``society evaluator`` processes on a real Mosquitto; one is killed mid-evaluation.

The coordinator evaluates nothing itself (``eval_workers=0``): every snapshot goes to an
evaluator process. One of them is sent SIGKILL while it is evaluating; its Last Will hands the
work to another, and every snapshot is evaluated and recorded exactly once. The society has a
key, so every task, result and presence on the way is signed and checked.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import msgspec
import pytest
from prometheus_client import CollectorRegistry

from agents._process import die_with_parent
from agents.broker.managed import ManagedBroker
from agents.bus.client import BusClient
from agents.bus.codec import decode, encode
from agents.bus.mqtt import MqttTransport
from agents.bus.schemas import Evaluation
from agents.bus.signing import sign, verify
from agents.bus.topics import Kind, Topics
from agents.bus.transport import ConnectOptions, RawMessage
from agents.coordinator.coordinator import Coordinator, CoordinatorConfig
from agents.coordinator.tasks import task_id
from tests.coordinator.test_evaluation import learner, snapshot_of
from tests.waiting import eventually

ROOT = Path(__file__).parents[2]
SLOW_WORLD = "tests.coordinator.slow_world:slow_cartpole"
AGENTS = ("a0", "a1", "a2")
VERSIONS = (1, 2)
TOPICS = Topics("s")
KEY = b"evaluators-test-key"


class EvaluatorProcess:
    """``society evaluator`` as an operator starts it, logging to a file of its own."""

    def __init__(self, name: str, broker: ManagedBroker, folder: Path) -> None:
        self.name = name
        self.log = folder / f"{name}.log"
        key_file = folder / "society.key"
        key_file.write_bytes(KEY)
        argv = [
            sys.executable, "-m", "agents", "evaluator", "--id", name, "--society", "s",
            "--broker", f"mqtt://127.0.0.1:{broker.port}", "--allow-env", SLOW_WORLD,
            "--society-key-file", str(key_file),
        ]  # fmt: skip
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
                preexec_fn=die_with_parent,  # noqa: PLW1509 - no threads in the child yet
            )  # fmt: skip

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def started(self) -> list[str]:
        return re.findall(r"evaluating (\S+)", self.text())

    def finished(self) -> list[str]:
        return re.findall(r"evaluated (\S+):", self.text())

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)


@pytest.fixture
def evaluators(mosquitto: ManagedBroker, tmp_path: Path) -> Iterator[list[EvaluatorProcess]]:
    started = [EvaluatorProcess(f"e{i}", mosquitto, tmp_path) for i in range(3)]
    try:
        yield started
    finally:
        for evaluator in started:
            evaluator.stop()


@pytest.fixture
async def coordinator(mosquitto: ManagedBroker, tmp_path: Path) -> AsyncIterator[Coordinator]:
    config = CoordinatorConfig(
        society="s", data_dir=tmp_path / "coordinator", eval_episodes=2, eval_workers=0,
        remote_evaluators=True, society_key=KEY,
        # Far beyond the test: what hands the killed evaluator's work on is its Last Will.
        remote_eval_timeout=600.0,
    )  # fmt: skip
    coordinator = Coordinator(
        config, MqttTransport(mosquitto.url), metrics_registry=CollectorRegistry()
    )
    task = asyncio.create_task(coordinator.run())
    await eventually(
        lambda: coordinator.bus is not None and coordinator.bus.connected.is_set(),
        90,
        what="connected",
    )
    try:
        yield coordinator
    finally:
        coordinator.stop()
        await asyncio.wait_for(task, 30)


async def test_three_evaluators_one_killed_mid_evaluation_every_snapshot_recorded_once(
    mosquitto: ManagedBroker,
    coordinator: Coordinator,
    evaluators: list[EvaluatorProcess],
) -> None:
    base = snapshot_of(learner())
    snapshots = [
        sign(msgspec.structs.replace(base, agent=agent, version=version, env_id=SLOW_WORLD), KEY)
        for agent in AGENTS
        for version in VERSIONS
    ]
    # Everything the coordinator publishes as evaluated, heard by a bystander.
    published: list[Evaluation] = []

    async def hear(raw: RawMessage) -> None:
        message = decode(Kind.EVALUATION, raw.payload)
        assert isinstance(message, Evaluation)
        verify(message, KEY)
        published.append(message)

    listener = BusClient(
        MqttTransport(mosquitto.url), ConnectOptions(client_id="listener", clean_session=True),
        subscriptions=[(TOPICS.coordinator(Kind.EVALUATION), 1)], handler=hear,
    )  # fmt: skip
    publisher = BusClient(
        MqttTransport(mosquitto.url), ConnectOptions(client_id="publisher", clean_session=True)
    )
    async with listener, publisher:
        await listener.wait_connected(10)
        await eventually(
            lambda: coordinator.remote_stats.online == 3, 90, what="three evaluators online"
        )
        for snapshot in snapshots:
            topic = TOPICS.agent(snapshot.agent, Kind.POLICY)
            publisher.enqueue(topic, encode(snapshot), qos=1, retain=True)
        assert await publisher.flush(10)

        # An evaluator is in the middle of an evaluation: it is killed there.
        await eventually(
            lambda: any(e.started() for e in evaluators), 90, what="an evaluation started"
        )
        victim = next(e for e in evaluators if e.started())
        held = victim.started()[-1]
        victim.process.send_signal(signal.SIGKILL)
        victim.process.wait(10)
        assert held not in victim.finished()  # it died mid-evaluation

        everything = len(snapshots)
        await eventually(
            lambda: coordinator.evaluations_done == everything, 90, what="all evaluated"
        )
        # Let every answer still on its way arrive (a survivor may evaluate something twice).
        survivors = [e for e in evaluators if e is not victim]
        await eventually(
            lambda: (
                not coordinator.remote_stats.outstanding
                and all(len(e.finished()) == len(e.started()) for e in survivors)
            ),
            90,
            what="the survivors idle",
        )
        await eventually(lambda: len(published) >= everything, 90, what="evaluations published")
        await asyncio.sleep(0.5)

    stats = coordinator.remote_stats
    assert stats.reissued >= 1
    assert stats.online == 2  # the victim's Last Will was heard
    assert held in {task_id(s) for s in snapshots}
    assert any(held in e.finished() for e in survivors)  # its work was done elsewhere
    # Recorded exactly once each: counted, in the roster, and published.
    assert coordinator.evaluations_done == everything
    assert coordinator.evaluation_failures == 0
    assert sum(coordinator.inbox.stats.rejected.values()) == 0  # every signature held
    for agent in AGENTS:
        versions = [e.version for e in coordinator.roster.get(agent).evaluations]
        assert sorted(versions) == list(VERSIONS)
    assert sorted((e.agent, e.version) for e in published) == sorted(
        (s.agent, s.version) for s in snapshots
    )
    assert all(e.episodes == 2 and e.regimes for e in published)
    reissued = coordinator.metrics_registry.get_sample_value(
        "society_remote_evaluations_reissued_total"
    )
    assert reissued is not None
    assert reissued >= 1

    # The survivors leave cleanly: they say so, and the coordinator knows them gone.
    for evaluator in survivors:
        evaluator.process.send_signal(signal.SIGTERM)
    for evaluator in survivors:
        assert evaluator.process.wait(30) == 0, evaluator.text()[-2000:]
    await eventually(lambda: coordinator.remote_stats.online == 0, 10, what="survivors gone")
