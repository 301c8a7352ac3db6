"""The receiving side, over the in-memory transport: validation, dedupe, counting."""

from __future__ import annotations

import asyncio

import msgspec

from agents.bus.client import BusClient
from agents.bus.codec import encode
from agents.bus.inbox import Inbox, SeqTracker
from agents.bus.memory import MemoryBroker
from agents.bus.schemas import ExperienceBatch, Message, Status
from agents.bus.topics import Kind, TopicRef, Topics
from agents.bus.transport import ConnectOptions, RawMessage, WillMessage
from tests import factories


def test_seq_tracker_finds_duplicates_and_gaps() -> None:
    tracker = SeqTracker()
    assert tracker.add(1)
    assert tracker.add(2)
    assert not tracker.add(2)
    assert tracker.add(5)
    assert tracker.missing == [3, 4]
    assert tracker.add(3)
    assert tracker.add(4)
    assert tracker.floor == 5
    assert not tracker.above
    assert not tracker.add(4)


def test_seq_tracker_starts_where_it_joins_and_stays_bounded() -> None:
    tracker = SeqTracker(max_gap=10)
    assert tracker.add(1000)
    assert tracker.missing == []
    for seq in range(1002, 1030):
        tracker.add(seq)
    assert len(tracker.above) <= 10


class Received:
    def __init__(self) -> None:
        self.messages: list[tuple[TopicRef, Message]] = []

    async def __call__(self, ref: TopicRef, message: Message) -> None:
        self.messages.append((ref, message))


async def test_inbox_accepts_valid_and_counts_the_rest() -> None:
    topics = Topics("s")
    received = Received()
    inbox = Inbox(topics, received)
    topic = topics.agent("a0", Kind.EXPERIENCE)
    await inbox(RawMessage(topic, encode(factories.experience(seq=1))))
    await inbox(RawMessage(topic, encode(factories.experience(seq=1))))  # redelivery
    await inbox(RawMessage(topic, b"\xc1 not msgpack"))
    await inbox(RawMessage(topic, encode(factories.experience(agent="a9", seq=2))))
    await inbox(RawMessage("society/s/agents/a0/bogus", b"x"))
    await inbox(RawMessage(topics.agent("a0", Kind.POLICY), encode(factories.snapshot())))
    assert [type(m).__name__ for _, m in received.messages] == ["ExperienceBatch", "PolicySnapshot"]
    assert inbox.stats.received == {"experience": 2, "policy": 1}
    assert inbox.stats.duplicates == {"experience": 1}
    assert inbox.stats.rejected == {"malformed": 1, "topic": 2}


async def test_inbox_ignores_kinds_it_does_not_want() -> None:
    topics = Topics("s")
    received = Received()
    inbox = Inbox(topics, received, kinds={Kind.STATUS})
    await inbox(RawMessage(topics.agent("a0", Kind.TELEMETRY), b"not even valid"))
    assert not received.messages
    assert not inbox.stats.rejected


async def test_bus_client_over_memory_delivers_retained_and_will() -> None:
    broker = MemoryBroker()
    topics = Topics("s")
    received = Received()
    inbox = Inbox(topics, received, kinds={Kind.STATUS, Kind.EXPERIENCE})
    status_topic = topics.agent("a0", Kind.STATUS)
    will = WillMessage(status_topic, encode(factories.status(state="offline")))
    agent = BusClient(broker, ConnectOptions(client_id="a0", will=will))
    async with agent:
        await agent.wait_connected(timeout=1)
        await agent.publish_now(status_topic, encode(factories.status()), qos=1, retain=True)
        agent.enqueue(topics.agent("a0", Kind.EXPERIENCE), encode(factories.experience(seq=1)))
        assert await agent.flush(timeout=1)
        observer = BusClient(
            broker,
            ConnectOptions(client_id="observer"),
            subscriptions=[(topics.agents_filter(Kind.STATUS), 1)],
            handler=inbox,
        )
        async with observer:
            await observer.wait_connected(timeout=1)
            await asyncio.sleep(0.05)
            # The retained status reached a late subscriber.
            assert [m.state for _, m in received.messages if isinstance(m, Status)] == ["online"]
            broker.drop("a0")  # the agent "crashes"
            await asyncio.sleep(0.05)
            states = [m.state for _, m in received.messages if isinstance(m, Status)]
            assert states == ["online", "offline"]
    assert not any(isinstance(m, ExperienceBatch) for _, m in received.messages)


async def test_handler_errors_do_not_break_the_connection() -> None:
    broker = MemoryBroker()
    calls = 0

    async def explode(raw: RawMessage) -> None:
        nonlocal calls
        calls += 1
        msg = "handler bug"
        raise RuntimeError(msg)

    client = BusClient(
        broker, ConnectOptions(client_id="c"), subscriptions=[("t/#", 1)], handler=explode
    )
    async with client:
        await client.wait_connected(timeout=1)
        broker.route("t/1", b"x", retain=False)
        broker.route("t/2", b"y", retain=False)
        await asyncio.sleep(0.05)
        assert client.connected.is_set()
    assert calls == 2
    assert client.stats.handler_errors == 2


async def test_volatile_messages_are_dropped_when_disconnected() -> None:
    broker = MemoryBroker()
    client = BusClient(broker, ConnectOptions(client_id="c"))
    assert not await client.publish_now("t", b"x")
    assert client.stats.volatile_dropped == 1


def test_decoded_payload_keeps_no_reference_to_untrusted_types() -> None:
    # MessagePack decodes to plain data: an ext type (what a pickle smuggler would use) fails.
    payload = msgspec.msgpack.encode(msgspec.msgpack.Ext(1, b"\x80\x04K\x01."))
    topics = Topics("s")
    inbox = Inbox(topics, Received())
    asyncio.run(inbox(RawMessage(topics.agent("a0", Kind.STATUS), payload)))
    assert inbox.stats.rejected["schema"] == 1


def test_a_tracker_counts_its_gaps_and_their_repairs() -> None:
    tracker = SeqTracker(floor=0)
    for seq in (1, 2, 5, 6, 9):
        tracker.add(seq)
    assert (tracker.floor, tracker.highest, tracker.missing_count) == (2, 9, 4)
    assert tracker.lowest_missing(3) == [3, 4, 7]
    assert tracker.missing == [3, 4, 7, 8]
    tracker.add(4)
    tracker.add(3)
    assert (tracker.floor, tracker.repaired, tracker.missing_count) == (6, 2, 2)
    tracker.add(10)  # beyond the highest: no repair
    assert tracker.repaired == 2


async def test_numbers_of_another_life_are_not_counted_against_this_one() -> None:
    seen: list[int] = []

    async def handler(_ref: TopicRef, message: Message) -> None:
        assert isinstance(message, ExperienceBatch)
        seen.append(message.seq)

    topics = Topics("s")
    inbox = Inbox(topics, handler, numbered_from_one=True)

    async def deliver(seq: int, incarnation: int) -> None:
        batch = msgspec.structs.replace(factories.experience(seq=seq), incarnation=incarnation)
        await inbox(RawMessage(topics.agent("a0", Kind.EXPERIENCE), encode(batch)))

    await deliver(1, incarnation=7)
    await deliver(2, incarnation=7)
    await deliver(5, incarnation=3)  # an old life's, late: handed on (the handler refuses it)
    await deliver(2, incarnation=7)  # a duplicate of this life's
    tracker = inbox.streams[(Kind.EXPERIENCE, "a0")]
    assert (tracker.floor, tracker.highest, tracker.missing_count) == (2, 2, 0)
    assert seen == [1, 2, 5]
    assert inbox.stats.duplicates["experience"] == 1
