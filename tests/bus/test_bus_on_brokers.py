"""The bus against real brokers, each its own process.

Mosquitto and the pure-Python fallback for everything; RabbitMQ's MQTT plugin and NATS's MQTT
gateway (started by ``tests/bus/foreign_brokers.py``) for what every broker must do: QoS 1 in
order, retained snapshots for late joiners, the Last Will of a killed agent, and remote
evaluation's work queue.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol, TypeVar

import msgspec
import pytest
from prometheus_client import CollectorRegistry

from agents.broker.managed import ManagedBroker
from agents.bus.client import Backoff, BusClient
from agents.bus.codec import encode
from agents.bus.inbox import Inbox
from agents.bus.mqtt import MqttTransport, _paho_log
from agents.bus.schemas import ExperienceBatch, Message, PolicySnapshot, Status
from agents.bus.topics import Kind, TopicRef, Topics
from agents.bus.transport import ConnectOptions, RawMessage
from agents.bus.url import BrokerUrl
from agents.coordinator.coordinator import Coordinator, CoordinatorConfig
from agents.evaluator import Evaluator, EvaluatorConfig
from tests import factories
from tests.coordinator.test_evaluation import learner, snapshot_of
from tests.waiting import eventually

FAST = Backoff(base=0.05, cap=0.5)
M = TypeVar("M", bound=Message)


class Collected:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def __call__(self, ref: TopicRef, message: Message) -> None:
        self.messages.append(message)

    def of(self, kind: type[M]) -> list[M]:
        return [m for m in self.messages if isinstance(m, kind)]


class Broker(Protocol):
    @property
    def url(self) -> BrokerUrl: ...


#: Every broker the bus must work with, by fixture (RabbitMQ and NATS skip where missing).
BROKERS = {
    "mosquitto": "mosquitto",
    "fallback": "fallback_broker",
    "rabbitmq": "rabbitmq_broker",
    "nats": "nats_broker",
}


@pytest.fixture(params=list(BROKERS))
def broker(request: pytest.FixtureRequest) -> Broker:
    fixture: Broker = request.getfixturevalue(BROKERS[request.param])
    return fixture


#: RabbitMQ 3.x keeps retained messages but does not send them to subscriptions with wildcards
#: (its MQTT guide, "Retained Messages and Stores"); a late joiner there gets a peer's retained
#: snapshot only by naming the peer's topic. docs/deployment.md says what that costs.
RETAINED_ONLY_BY_EXACT_TOPIC = {"rabbitmq"}


async def test_publish_subscribe_and_retained_snapshot(
    broker: Broker, request: pytest.FixtureRequest
) -> None:
    topics = Topics("s")
    transport = MqttTransport(broker.url)
    agent = BusClient(transport, ConnectOptions(client_id="a0"), backoff=FAST)
    wildcards_get_retained = request.node.callspec.params["broker"] not in (
        RETAINED_ONLY_BY_EXACT_TOPIC
    )
    async with agent:
        await agent.wait_connected(timeout=5)
        agent.enqueue(
            topics.agent("a0", Kind.POLICY), encode(factories.snapshot()), qos=1, retain=True
        )
        assert await agent.flush(timeout=5)
        collected = Collected()
        snapshots = (
            topics.agents_filter(Kind.POLICY) if wildcards_get_retained
            else topics.agent("a0", Kind.POLICY)
        )  # fmt: skip
        late = BusClient(
            transport,
            ConnectOptions(client_id="late", clean_session=True),
            subscriptions=[(snapshots, 1), (topics.agents_filter(Kind.EXPERIENCE), 1)],
            handler=Inbox(topics, collected),
            backoff=FAST,
        )
        async with late:
            await late.wait_connected(timeout=5)
            # A late joiner gets the latest snapshot because it is retained.
            await eventually(lambda: len(collected.of(PolicySnapshot)) == 1)
            for seq in range(1, 21):
                agent.enqueue(
                    topics.agent("a0", Kind.EXPERIENCE), encode(factories.experience(seq=seq))
                )
            await eventually(lambda: len(collected.of(ExperienceBatch)) == 20)
    seqs = [m.seq for m in collected.of(ExperienceBatch)]
    assert seqs == list(range(1, 21))  # QoS 1, in order


async def test_evaluators_take_the_coordinators_work(broker: Broker) -> None:
    """Remote evaluation uses nothing a broker may lack (no MQTT 5 shared subscriptions).

    The evaluators are there before the coordinator: it finds them by their retained presence,
    or on RabbitMQ (no retained messages for wildcard subscriptions) by its repetition. Every
    snapshot is evaluated by an evaluator and recorded once; one evaluator leaves, the other
    takes what comes after.
    """
    transport = MqttTransport(broker.url)
    evaluators = [
        Evaluator(EvaluatorConfig(society="q", evaluator_id=f"q-e{i}", presence_interval=0.3),
                  transport)
        for i in range(2)
    ]  # fmt: skip
    serving = [asyncio.create_task(evaluator.run()) for evaluator in evaluators]
    await eventually(
        lambda: all(e.bus is not None and e.bus.connected.is_set() for e in evaluators)
    )
    config = CoordinatorConfig(society="q", eval_episodes=1, eval_workers=0, remote_evaluators=True)
    coordinator = Coordinator(config, transport, metrics_registry=CollectorRegistry())
    running = asyncio.create_task(coordinator.run())
    base = snapshot_of(learner())
    topics = Topics("q")
    publisher = BusClient(transport, ConnectOptions(client_id="q-a0", clean_session=True))

    async def publish(versions: range) -> None:
        for version in versions:
            snapshot = msgspec.structs.replace(base, agent="q-a0", version=version)
            publisher.enqueue(topics.agent("q-a0", Kind.POLICY), encode(snapshot), retain=True)
        assert await publisher.flush(10)

    try:
        async with publisher:
            await eventually(lambda: coordinator.remote_stats.online == 2, timeout=30)
            await publish(range(1, 5))
            await eventually(lambda: coordinator.evaluations_done == 4, timeout=60)
            evaluators[0].stop()
            await serving[0]
            await eventually(lambda: coordinator.remote_stats.online == 1)
            await publish(range(5, 7))
            await eventually(lambda: coordinator.evaluations_done == 6, timeout=60)
    finally:
        coordinator.stop()
        evaluators[1].stop()
        await asyncio.wait_for(asyncio.gather(running, *serving), 30)
    versions = [e.version for e in coordinator.roster.get("q-a0").evaluations]
    assert sorted(versions) == list(range(1, 7))
    assert coordinator.remote_stats.recorded == 6
    done = [evaluator.report.evaluated for evaluator in evaluators]
    assert sum(done) >= 6
    assert done[1] >= 2  # what came after the first one left


async def test_rabbitmq_keeps_retained_messages_from_wildcard_subscribers(
    rabbitmq_broker: Broker,
) -> None:
    """The limitation the test above works around, shown, so that a fixed RabbitMQ is noticed."""
    topics = Topics("w")
    transport = MqttTransport(rabbitmq_broker.url)
    async with BusClient(transport, ConnectOptions(client_id="w0"), backoff=FAST) as agent:
        await agent.wait_connected(timeout=5)
        agent.enqueue(
            topics.agent("w0", Kind.POLICY), encode(factories.snapshot("w0")), qos=1, retain=True
        )
        assert await agent.flush(timeout=5)
    by_wildcard, by_name = Collected(), Collected()

    def late(client_id: str, topic_filter: str, collected: Collected) -> BusClient:
        return BusClient(
            transport, ConnectOptions(client_id=client_id, clean_session=True),
            subscriptions=[(topic_filter, 1)], handler=Inbox(topics, collected), backoff=FAST,
        )  # fmt: skip

    clients = [
        late("late-0", topics.agents_filter(Kind.POLICY), by_wildcard),
        late("late-1", topics.agent("w0", Kind.POLICY), by_name),
    ]
    async with clients[0], clients[1]:
        await eventually(lambda: len(by_name.of(PolicySnapshot)) == 1)
        await asyncio.sleep(1.0)
    assert by_wildcard.of(PolicySnapshot) == []


_KILLED_AGENT = textwrap.dedent(
    """
    import asyncio, sys
    from agents.bus.client import BusClient
    from agents.bus.codec import encode
    from agents.bus.mqtt import MqttTransport
    from agents.bus.topics import Kind, Topics
    from agents.bus.transport import ConnectOptions, WillMessage
    from agents.bus.url import parse_broker_url
    from tests import factories

    async def main():
        topic = Topics("s").agent("doomed", Kind.STATUS)
        will = WillMessage(topic, encode(factories.status("doomed", "offline")))
        options = ConnectOptions(client_id="doomed", will=will, keepalive=5)
        async with BusClient(MqttTransport(parse_broker_url(sys.argv[1])), options) as bus:
            await bus.wait_connected(timeout=5)
            await bus.publish_now(topic, encode(factories.status("doomed")), qos=1, retain=True)
            print("online", flush=True)
            await asyncio.sleep(60)

    asyncio.run(main())
    """
)


async def test_last_will_marks_a_killed_agent_offline(broker: Broker) -> None:
    topics = Topics("s")
    collected = Collected()
    watcher = BusClient(
        MqttTransport(broker.url),
        ConnectOptions(client_id="watcher", clean_session=True),
        subscriptions=[(topics.agents_filter(Kind.STATUS), 1)],
        handler=Inbox(topics, collected),
        backoff=FAST,
    )
    async with watcher:
        await watcher.wait_connected(timeout=5)
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _KILLED_AGENT, f"mqtt://{broker.url.host}:{broker.url.port}",
            stdout=asyncio.subprocess.PIPE, cwd=Path(__file__).parents[2],
        )  # fmt: skip
        assert process.stdout is not None
        assert (await asyncio.wait_for(process.stdout.readline(), 30)).strip() == b"online"
        await eventually(lambda: [m.state for m in collected.of(Status)] == ["online"])
        process.send_signal(signal.SIGKILL)
        await process.wait()
        await eventually(lambda: [m.state for m in collected.of(Status)] == ["online", "offline"])


async def test_outbox_delivers_everything_after_a_broker_outage(mosquitto: ManagedBroker) -> None:
    """Messages enqueued while the broker is down arrive, once each, after it is back."""
    topics = Topics("s")
    transport = MqttTransport(mosquitto.url)
    collected = Collected()
    inbox = Inbox(topics, collected)
    # A persistent-session subscriber, like the coordinator.
    subscriber_options = ConnectOptions(client_id="coord", clean_session=False)
    subscriber = BusClient(
        transport, subscriber_options, backoff=FAST,
        subscriptions=[(topics.agents_filter(Kind.EXPERIENCE), 1)], handler=inbox,
    )  # fmt: skip
    agent = BusClient(transport, ConnectOptions(client_id="a0"), backoff=FAST)
    async with subscriber, agent:
        await subscriber.wait_connected(timeout=5)
        await agent.wait_connected(timeout=5)
        seq = 0
        for _outage in range(3):
            mosquitto.stop()
            await eventually(lambda: not agent.connected.is_set())
            for _ in range(10):  # produced while the broker is away
                seq += 1
                agent.enqueue(
                    topics.agent("a0", Kind.EXPERIENCE), encode(factories.experience(seq=seq))
                )
            assert agent.outbox.pending() >= 10
            mosquitto.start()
            await eventually(lambda: agent.connected.is_set() and subscriber.connected.is_set())
        total = seq
        await eventually(lambda: inbox.streams[(Kind.EXPERIENCE, "a0")].floor == total, timeout=20)
    seqs = sorted(m.seq for m in collected.of(ExperienceBatch))
    assert seqs == list(range(1, total + 1))
    assert agent.stats.connection_losses == 3
    assert agent.outbox.pending() == 0


async def test_a_volatile_message_the_broker_never_acknowledges_is_dropped_and_counted(
    mosquitto: ManagedBroker,
) -> None:
    """A frozen broker (a node of a cluster under load) times a QoS 1 publish out: the sender
    of a volatile message gets False, the drop is counted, and no error escapes."""
    topics = Topics("s")
    agent = BusClient(
        MqttTransport(mosquitto.url, timeout=0.5), ConnectOptions(client_id="a0"), backoff=FAST
    )
    async with agent:
        await agent.wait_connected(timeout=5)
        process = mosquitto.process
        assert process is not None
        process.send_signal(signal.SIGSTOP)
        try:
            sent = await agent.publish_now(topics.agent("a0", Kind.WEIGHTS), b"w", qos=1)
        finally:
            process.send_signal(signal.SIGCONT)
    assert sent is False
    assert agent.stats.volatile_dropped == 1


def experience_session(
    transport: MqttTransport, topics: Topics, handler: Callable[[RawMessage], Awaitable[None]]
) -> BusClient:
    """A coordinator-like persistent session that takes in every agent's experience."""
    return BusClient(
        transport,
        ConnectOptions(client_id="coord", clean_session=False),
        subscriptions=[(topics.agents_filter(Kind.EXPERIENCE), 1)],
        handler=handler,
        backoff=FAST,
    )


async def test_persistent_subscriber_gets_what_was_sent_while_it_was_away(
    mosquitto: ManagedBroker,
) -> None:
    topics = Topics("s")
    transport = MqttTransport(mosquitto.url)
    async with experience_session(transport, topics, Inbox(topics, Collected())) as subscriber:
        await subscriber.wait_connected(timeout=5)
    # The subscriber is gone; 1500 batches are published (beyond Mosquitto's default queue of 1000).
    async with BusClient(transport, ConnectOptions(client_id="a0")) as agent:
        await agent.wait_connected(timeout=5)
        for seq in range(1, 1501):
            agent.enqueue(
                topics.agent("a0", Kind.EXPERIENCE), encode(factories.experience(seq=seq, rows=1))
            )
        assert await agent.flush(timeout=60)
    second = Collected()
    async with experience_session(transport, topics, Inbox(topics, second)):
        await eventually(lambda: len(second.of(ExperienceBatch)) == 1500, timeout=30)


async def test_a_message_whose_handler_did_not_finish_is_delivered_again(
    broker: Broker,
) -> None:
    """Acknowledged when handled, not when received: stopping mid-message loses nothing."""
    topics = Topics("s")
    transport = MqttTransport(broker.url)
    handling = asyncio.Event()

    async def never_finishes(raw: RawMessage) -> None:
        handling.set()
        await asyncio.Event().wait()

    async with experience_session(transport, topics, never_finishes) as stuck:
        await stuck.wait_connected(timeout=5)
        async with BusClient(transport, ConnectOptions(client_id="a0"), backoff=FAST) as agent:
            await agent.wait_connected(timeout=5)
            for seq in (1, 2, 3):
                agent.enqueue(
                    topics.agent("a0", Kind.EXPERIENCE), encode(factories.experience(seq=seq))
                )
            assert await agent.flush(timeout=5)
        await asyncio.wait_for(handling.wait(), 5)
    # Stopped with the first batch in its handler and the others waiting behind it.
    again = Collected()
    async with experience_session(transport, topics, Inbox(topics, again)):
        await eventually(lambda: len(again.of(ExperienceBatch)) == 3)
    assert [m.seq for m in again.of(ExperienceBatch)] == [1, 2, 3]


def test_managed_broker_refuses_a_missing_binary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agents.broker import managed
    from agents.exceptions import BrokerError

    monkeypatch.setattr(managed, "find_mosquitto", lambda: None)
    with pytest.raises(BrokerError, match="no mosquitto"):
        managed.ManagedBroker(tmp_path, kind="mosquitto")
    assert managed.ManagedBroker(tmp_path, kind="auto").kind == "python"


def test_the_fallback_warning_is_for_a_fallback_only(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from agents.broker import managed

    chosen = managed.ManagedBroker(tmp_path / "chosen", kind="python")
    assert not chosen.fell_back
    with chosen:
        pass
    assert "no mosquitto binary found" not in caplog.text


def test_no_broker_process_outlives_its_owner(tmp_path: Path) -> None:
    """die_with_parent: killing the owner (-9) takes the broker down with it."""
    script = textwrap.dedent(
        f"""
        import time
        from pathlib import Path
        from agents.broker.managed import ManagedBroker
        broker = ManagedBroker(Path({str(tmp_path)!r}), kind="mosquitto")
        broker.start()
        print(broker.process.pid, flush=True)
        time.sleep(60)
        """
    )
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    assert owner.stdout is not None
    child = int(owner.stdout.readline())
    os.kill(child, 0)  # running
    owner.kill()
    owner.wait()
    for _ in range(100):
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return
        import time

        time.sleep(0.05)
    pytest.fail("the broker outlived its owner")


def test_a_lost_socket_is_not_logged_as_an_error(caplog: pytest.LogCaptureFixture) -> None:
    """paho reports a broker restart at ERROR; the bus client's warning says it already."""
    with caplog.at_level(logging.INFO, logger="agents"):
        _paho_log.error("failed to receive on socket: [Errno 104] Connection reset by peer")
        _paho_log.error("something else went wrong")
    assert [r.getMessage() for r in caplog.records] == ["something else went wrong"]
    with caplog.at_level(logging.DEBUG, logger="agents"):
        caplog.clear()
        _paho_log.error("failed to receive on socket: [Errno 32] Broken pipe")
    assert [r.levelname for r in caplog.records] == ["DEBUG"]
