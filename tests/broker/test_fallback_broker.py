"""Tests of the pure-Python fallback MQTT 3.1.1 broker over real sockets on 127.0.0.1.

aiomqtt is the client wherever it can be; protocol-level cases (malformed, oversized, raw
CONNACK codes, DUP re-delivery) use a raw socket with packet encoders written independently of
the broker's own, so a shared encoding bug cannot hide.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import signal
import struct
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiomqtt
import pytest

from agents.broker import fallback
from agents.broker.fallback import FallbackBroker, main

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

HOST = "127.0.0.1"
TIMEOUT = 2.0
USERS = {"alice": "secret"}
PROJECT_ROOT = Path(__file__).resolve().parents[2]


# --- raw MQTT packets, encoded here independently of agents.broker.fallback_packets ---------


def _string(value: str | bytes) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    return struct.pack("!H", len(data)) + data


def _varint(length: int) -> bytes:
    out = bytearray()
    while True:
        byte, length = length % 128, length // 128
        out.append(byte | (128 if length else 0))
        if not length:
            return bytes(out)


def packet(first: int, body: bytes = b"") -> bytes:
    return bytes([first]) + _varint(len(body)) + body


@dataclass(frozen=True)
class RawWill:
    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False


def connect_packet(
    client_id: str = "raw",
    *,
    clean: bool = True,
    keepalive: int = 60,
    will: RawWill | None = None,
    username: str | None = None,
    password: str | None = None,
    name: str = "MQTT",
    level: int = 4,
) -> bytes:
    flags = 0x02 if clean else 0
    payload = _string(client_id)
    if will is not None:
        flags |= 0x04 | (will.qos << 3) | (0x20 if will.retain else 0)
        payload += _string(will.topic) + _string(will.payload)
    if username is not None:
        flags |= 0x80
        payload += _string(username)
    if password is not None:
        flags |= 0x40
        payload += _string(password)
    header = _string(name) + bytes([level, flags]) + struct.pack("!H", keepalive)
    if level == 5:  # MQTT 5 adds a properties length (here: no properties)
        header += b"\x00"
    return packet(0x10, header + payload)


def publish_packet(
    topic: str | bytes,
    payload: bytes,
    *,
    qos: int = 0,
    packet_id: int = 1,
    retain: bool = False,
    dup: bool = False,
) -> bytes:
    body = _string(topic) + (struct.pack("!H", packet_id) if qos else b"") + payload
    return packet(0x30 | dup << 3 | qos << 1 | retain, body)


def subscribe_packet(packet_id: int, filters: list[tuple[str, int]]) -> bytes:
    body = struct.pack("!H", packet_id)
    for topic_filter, qos in filters:
        body += _string(topic_filter) + bytes([qos])
    return packet(0x82, body)


def ack_packet(first: int, packet_id: int) -> bytes:
    return packet(first, struct.pack("!H", packet_id))


class RawClient:
    """A bare TCP client that speaks MQTT byte by byte."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> RawClient:
        reader, writer = await asyncio.open_connection(HOST, port)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def read(self) -> tuple[int, bytes]:
        """One packet from the broker as (first byte, body)."""
        async with asyncio.timeout(TIMEOUT):
            first = (await self.reader.readexactly(1))[0]
            length, shift = 0, 0
            while True:
                byte = (await self.reader.readexactly(1))[0]
                length |= (byte & 0x7F) << shift
                shift += 7
                if not byte & 0x80:
                    break
            return first, await self.reader.readexactly(length)

    async def connect(self, client_id: str = "raw", **kwargs: Any) -> bytes:
        """Send CONNECT and return the CONNACK body (session-present flag, return code)."""
        await self.send(connect_packet(client_id, **kwargs))
        first, body = await self.read()
        assert first == 0x20
        return body

    async def subscribe(self, topic_filter: str, qos: int, packet_id: int = 1) -> bytes:
        await self.send(subscribe_packet(packet_id, [(topic_filter, qos)]))
        first, body = await self.read()
        assert first == 0x90
        return body

    async def expect_closed(self) -> None:
        """The broker closed the connection (anything it sent first is ignored)."""
        async with asyncio.timeout(TIMEOUT):
            while await self.reader.read(65536):
                pass

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):  # the broker may have reset the connection first
            await self.writer.wait_closed()


def parse_publish(first: int, body: bytes) -> tuple[str, bytes, int, bool, bool, int]:
    """(topic, payload, qos, retain, dup, packet id) of a PUBLISH from the broker."""
    assert first >> 4 == 3
    qos = (first >> 1) & 3
    (topic_len,) = struct.unpack("!H", body[:2])
    topic = body[2 : 2 + topic_len].decode()
    rest = body[2 + topic_len :]
    packet_id = 0
    if qos:
        (packet_id,) = struct.unpack("!H", rest[:2])
        rest = rest[2:]
    return topic, rest, qos, bool(first & 1), bool(first & 8), packet_id


# --- fixtures and aiomqtt helpers ----------------------------------------------------------


@pytest.fixture
async def broker() -> AsyncIterator[FallbackBroker]:
    async with FallbackBroker() as running:
        yield running


@pytest.fixture
async def raw_clients() -> AsyncIterator[list[RawClient]]:
    """Raw clients opened by a test, closed afterwards whatever happens."""
    clients: list[RawClient] = []
    yield clients
    for client in clients:
        await client.close()


class _ErrorCollector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture(autouse=True)
def no_broker_errors() -> Iterator[None]:
    """No test may make the broker log an error (an unexpected exception in a handler)."""
    collector = _ErrorCollector()
    logger = logging.getLogger("agents.broker")
    logger.addHandler(collector)
    try:
        yield
    finally:
        logger.removeHandler(collector)
    assert not collector.messages


async def open_raw(broker: FallbackBroker, clients: list[RawClient]) -> RawClient:
    client = await RawClient.open(broker.port)
    clients.append(client)
    return client


def mqtt(broker: FallbackBroker, **kwargs: Any) -> aiomqtt.Client:
    return aiomqtt.Client(HOST, broker.port, **kwargs)


async def receive(client: aiomqtt.Client, timeout: float = TIMEOUT) -> aiomqtt.Message:
    async with asyncio.timeout(timeout):
        return await anext(client.messages)


async def assert_next_is_sentinel(
    subscriber: aiomqtt.Client, publisher: aiomqtt.Client, topic: str
) -> None:
    """Nothing is waiting for ``subscriber`` ahead of a fresh message on ``topic``."""
    await publisher.publish(topic, b"sentinel", qos=1)
    message = await receive(subscriber)
    assert (message.topic.value, message.payload) == (topic, b"sentinel")


# --- publish / subscribe ------------------------------------------------------------------


@pytest.mark.parametrize("pub_qos", [0, 1, 2])
@pytest.mark.parametrize("sub_qos", [0, 1, 2])
async def test_delivered_qos_is_min_of_publish_and_subscription(
    broker: FallbackBroker, pub_qos: int, sub_qos: int
) -> None:
    async with mqtt(broker) as sub, mqtt(broker) as pub:
        await sub.subscribe("t/qos", sub_qos)
        await pub.publish("t/qos", b"payload", qos=pub_qos)
        message = await receive(sub)
    assert message.payload == b"payload"
    assert message.qos == min(pub_qos, sub_qos)
    assert message.retain is False


async def test_wildcards_match_as_the_spec_says(broker: FallbackBroker) -> None:
    async with mqtt(broker) as sub, mqtt(broker) as pub:
        await sub.subscribe("a/+/c", 1)
        await sub.subscribe("x/#", 1)
        for topic in ["a/b/c", "a/b/d", "a/b/c/d", "x", "x/y/z", "b/x", "$SYS/x"]:
            await pub.publish(topic, topic.encode(), qos=1)
        await pub.publish("x/end", b"", qos=1)
        received: list[str] = []
        while not received or received[-1] != "x/end":
            received.append((await receive(sub)).topic.value)
    assert received == ["a/b/c", "x", "x/y/z", "x/end"]


async def test_overlapping_subscriptions_deliver_once_with_max_qos(broker: FallbackBroker) -> None:
    async with mqtt(broker) as sub, mqtt(broker) as pub:
        await sub.subscribe("o/#", 0)
        await sub.subscribe("o/+", 2)
        await pub.publish("o/x", b"once", qos=2)
        message = await receive(sub)
        assert (message.payload, message.qos) == (b"once", 2)
        await assert_next_is_sentinel(sub, pub, "o/sentinel")


async def test_unsubscribe_stops_delivery(broker: FallbackBroker) -> None:
    async with mqtt(broker) as sub, mqtt(broker) as pub:
        await sub.subscribe("u/a", 1)
        await sub.subscribe("u/b", 1)
        await sub.unsubscribe("u/a")
        await pub.publish("u/a", b"unwanted", qos=1)
        await assert_next_is_sentinel(sub, pub, "u/b")


async def test_suback_grants_requested_qos_and_rejects_invalid_filters(
    broker: FallbackBroker, raw_clients: list[RawClient]
) -> None:
    raw = await open_raw(broker, raw_clients)
    assert await raw.connect() == b"\x00\x00"
    filters = [("ok/+", 1), ("bad/#/x", 2), ("q2", 2), ("a+", 0), ("#", 0)]
    await raw.send(subscribe_packet(7, filters))
    assert await raw.read() == (0x90, b"\x00\x07" + bytes([1, 0x80, 2, 0x80, 0]))


async def test_pingreq_gets_pingresp(broker: FallbackBroker, raw_clients: list[RawClient]) -> None:
    raw = await open_raw(broker, raw_clients)
    await raw.connect()
    await raw.send(b"\xc0\x00")
    assert await raw.read() == (0xD0, b"")


async def test_inbound_qos2_duplicate_is_delivered_once(
    broker: FallbackBroker, raw_clients: list[RawClient]
) -> None:
    raw = await open_raw(broker, raw_clients)
    await raw.connect()
    async with mqtt(broker) as sub, mqtt(broker) as pub:
        await sub.subscribe("q2/#", 2)
        await raw.send(publish_packet("q2/x", b"exactly-once", qos=2, packet_id=9))
        assert await raw.read() == (0x50, b"\x00\x09")  # PUBREC
        await raw.send(publish_packet("q2/x", b"exactly-once", qos=2, packet_id=9, dup=True))
        assert await raw.read() == (0x50, b"\x00\x09")
        await raw.send(ack_packet(0x62, 9))  # PUBREL
        assert await raw.read() == (0x70, b"\x00\x09")  # PUBCOMP
        assert (await receive(sub)).payload == b"exactly-once"
        await assert_next_is_sentinel(sub, pub, "q2/sentinel")


# --- retained messages --------------------------------------------------------------------


async def test_retained_messages_reach_new_subscribers_and_empty_payload_deletes(
    broker: FallbackBroker,
) -> None:
    async with mqtt(broker) as pub:
        await pub.publish("r/1", b"one", qos=1, retain=True)
        await pub.publish("r/2", b"two", qos=0, retain=True)
        async with mqtt(broker) as sub:
            await sub.subscribe("r/#", 2)
            got = {_summary(await receive(sub)), _summary(await receive(sub))}
            assert got == {("r/1", b"one", 1, True), ("r/2", b"two", 0, True)}
            await pub.publish("r/1", b"live", qos=1, retain=True)
            assert _summary(await receive(sub)) == ("r/1", b"live", 1, False)
            await pub.publish("r/1", b"", qos=1, retain=True)  # deletes, still forwarded
            assert _summary(await receive(sub)) == ("r/1", b"", 1, False)
        async with mqtt(broker) as late:
            await late.subscribe("r/#", 1)
            assert _summary(await receive(late)) == ("r/2", b"two", 0, True)
            await assert_next_is_sentinel(late, pub, "r/sentinel")


def _summary(message: aiomqtt.Message) -> tuple[str, Any, int, bool]:
    return message.topic.value, message.payload, message.qos, message.retain


# --- last will ----------------------------------------------------------------------------


async def test_will_is_published_when_the_socket_closes_abruptly(
    broker: FallbackBroker, raw_clients: list[RawClient]
) -> None:
    async with mqtt(broker) as watcher:
        await watcher.subscribe("wills/#", 1)
        raw = await open_raw(broker, raw_clients)
        will = RawWill("wills/abrupt", b"gone", qos=1, retain=True)
        assert await raw.connect("abrupt", will=will) == b"\x00\x00"
        await raw.close()
        assert _summary(await receive(watcher)) == ("wills/abrupt", b"gone", 1, False)
    async with mqtt(broker) as late:  # the will kept its retain flag
        await late.subscribe("wills/#", 1)
        assert _summary(await receive(late)) == ("wills/abrupt", b"gone", 1, True)


async def test_will_is_not_published_after_disconnect(broker: FallbackBroker) -> None:
    async with mqtt(broker) as watcher, mqtt(broker) as pub:
        await watcher.subscribe("wills/#", 1)
        will = aiomqtt.Will("wills/clean", b"gone", qos=1)
        async with mqtt(broker, identifier="clean", will=will):
            pass
        await asyncio.sleep(0.2)
        await assert_next_is_sentinel(watcher, pub, "wills/sentinel")


async def test_keepalive_expiry_publishes_the_will(
    broker: FallbackBroker, raw_clients: list[RawClient]
) -> None:
    async with mqtt(broker) as watcher:
        await watcher.subscribe("wills/#", 1)
        raw = await open_raw(broker, raw_clients)
        await raw.connect("sleepy", keepalive=1, will=RawWill("wills/sleepy", b"timeout"))
        will = asyncio.ensure_future(anext(watcher.messages))
        # Within its keepalive a silent client is still alive: no will yet. (Only a lower
        # bound is checked: a slow machine can make the will late, never early.)
        done, _ = await asyncio.wait({will}, timeout=0.9)
        assert not done, "the will was published before the keepalive ran out"
        message = await asyncio.wait_for(will, TIMEOUT)  # 1.5 x keepalive, then it comes
        await raw.expect_closed()
    assert (message.topic.value, message.payload) == ("wills/sleepy", b"timeout")


async def test_pings_keep_a_short_keepalive_connection_open(
    broker: FallbackBroker, raw_clients: list[RawClient]
) -> None:
    raw = await open_raw(broker, raw_clients)
    await raw.connect("pinger", keepalive=1)
    for _ in range(4):  # 2 s in all, longer than the 1.5 s deadline
        await asyncio.sleep(0.5)
        await raw.send(b"\xc0\x00")
        assert await raw.read() == (0xD0, b"")


async def test_stop_closes_clients_without_publishing_wills(
    raw_clients: list[RawClient],
) -> None:
    broker = FallbackBroker()
    await broker.start()
    raw = await open_raw(broker, raw_clients)
    await raw.connect("victim", will=RawWill("wills/victim", b"x", retain=True))
    port = broker.port
    await broker.stop()
    await raw.expect_closed()
    assert "wills/victim" not in broker._router.retained
    with pytest.raises(ConnectionRefusedError):
        await RawClient.open(port)


# --- sessions -----------------------------------------------------------------------------


async def test_persistent_session_gets_qos1_messages_published_while_offline(
    broker: FallbackBroker,
) -> None:
    async with mqtt(broker, identifier="persist", clean_session=False) as sub:
        await sub.subscribe("p/#", 1)
    async with mqtt(broker) as pub:
        await pub.publish("p/1", b"one", qos=1)
        await pub.publish("p/0", b"qos0 is not queued", qos=0)
        await pub.publish("p/2", b"two", qos=2)
        async with mqtt(broker, identifier="persist", clean_session=False) as sub:
            assert _summary(await receive(sub)) == ("p/1", b"one", 1, False)
            assert _summary(await receive(sub)) == ("p/2", b"two", 1, False)
            await assert_next_is_sentinel(sub, pub, "p/sentinel")  # subscription survived


async def test_offline_queue_drops_the_oldest_when_full(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with FallbackBroker(max_queued_messages=3) as broker:
        async with mqtt(broker, identifier="small", clean_session=False) as sub:
            await sub.subscribe("f/#", 1)
        async with mqtt(broker) as pub:
            for index in range(5):
                await pub.publish("f/x", str(index).encode(), qos=1)
            async with mqtt(broker, identifier="small", clean_session=False) as sub:
                payloads = [(await receive(sub)).payload for _ in range(3)]
                await assert_next_is_sentinel(sub, pub, "f/sentinel")
    assert payloads == [b"2", b"3", b"4"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("'small'" in w and "1 dropped" in w for w in warnings), warnings


async def test_session_present_flag_and_clean_session_discards(
    broker: FallbackBroker, raw_clients: list[RawClient]
) -> None:
    async def connack(*, clean: bool) -> bytes:
        raw = await open_raw(broker, raw_clients)
        body = await raw.connect("sp", clean=clean)
        await raw.send(b"\xe0\x00")  # DISCONNECT
        await raw.expect_closed()
        return body

    assert await connack(clean=False) == b"\x00\x00"
    assert await connack(clean=False) == b"\x01\x00"
    assert await connack(clean=True) == b"\x00\x00"
    assert await connack(clean=False) == b"\x00\x00"  # the clean connection discarded it


async def test_clean_session_connection_does_not_inherit_an_old_session(
    broker: FallbackBroker,
) -> None:
    async with mqtt(broker, identifier="fickle", clean_session=False) as sub:
        await sub.subscribe("cs/#", 1)
    async with mqtt(broker) as pub:
        await pub.publish("cs/queued", b"for the old session", qos=1)
        async with mqtt(broker, identifier="fickle", clean_session=True) as sub:
            await sub.subscribe("cs-sentinel", 1)
            await pub.publish("cs/live", b"old subscription", qos=1)
            await assert_next_is_sentinel(sub, pub, "cs-sentinel")


async def test_unacknowledged_messages_are_resent_with_dup_on_reconnect(
    broker: FallbackBroker, raw_clients: list[RawClient]
) -> None:
    raw = await open_raw(broker, raw_clients)
    await raw.connect("dup", clean=False)
    await raw.subscribe("d/#", 2)
    async with mqtt(broker) as pub:
        await pub.publish("d/1", b"at-least-once", qos=1)
        await pub.publish("d/2", b"exactly-once", qos=2)
        first = parse_publish(*await raw.read())
        second = parse_publish(*await raw.read())
        assert first[:5] == ("d/1", b"at-least-once", 1, False, False)
        assert second[:5] == ("d/2", b"exactly-once", 2, False, False)
        await raw.send(ack_packet(0x50, second[5]))  # PUBREC for the QoS 2 message
        assert await raw.read() == (0x62, struct.pack("!H", second[5]))  # PUBREL
        await raw.close()  # neither PUBACK nor PUBCOMP

        again = await open_raw(broker, raw_clients)
        assert await again.connect("dup", clean=False) == b"\x01\x00"
        resent = parse_publish(*await again.read())
        assert resent == ("d/1", b"at-least-once", 1, False, True, first[5])
        assert await again.read() == (0x62, struct.pack("!H", second[5]))  # PUBREL, again
        await again.send(ack_packet(0x40, first[5]))  # PUBACK
        await again.send(ack_packet(0x70, second[5]))  # PUBCOMP
        await pub.publish("d/3", b"fresh", qos=1)
        assert parse_publish(*await again.read())[:5] == ("d/3", b"fresh", 1, False, False)


async def test_inflight_window_holds_back_messages_until_acknowledged(
    broker: FallbackBroker, raw_clients: list[RawClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fallback, "_MAX_INFLIGHT", 2)
    raw = await open_raw(broker, raw_clients)
    await raw.connect("slow")
    await raw.subscribe("w/#", 1)
    async with mqtt(broker) as pub:
        for index in range(3):
            await pub.publish("w/x", str(index).encode(), qos=1)
        first = parse_publish(*await raw.read())
        assert parse_publish(*await raw.read())[1] == b"1"
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await raw.reader.readexactly(1)
        await raw.send(ack_packet(0x40, first[5]))
        assert parse_publish(*await raw.read())[1] == b"2"


async def test_second_connection_with_same_id_takes_over_and_publishes_the_will(
    broker: FallbackBroker, raw_clients: list[RawClient]
) -> None:
    async with mqtt(broker) as watcher:
        await watcher.subscribe("wills/#", 1)
        old = await open_raw(broker, raw_clients)
        await old.connect("twin", will=RawWill("wills/twin", b"taken over"))
        async with mqtt(broker, identifier="twin") as new:
            message = await receive(watcher)
            assert (message.topic.value, message.payload) == ("wills/twin", b"taken over")
            await old.expect_closed()
            await new.subscribe("twin/echo", 1)
            await new.publish("twin/echo", b"still here", qos=1)
            assert (await receive(new)).payload == b"still here"


async def test_empty_client_id(broker: FallbackBroker, raw_clients: list[RawClient]) -> None:
    accepted = await open_raw(broker, raw_clients)
    assert await accepted.connect("", clean=True) == b"\x00\x00"
    refused = await open_raw(broker, raw_clients)
    assert await refused.connect("", clean=False) == b"\x00\x02"
    await refused.expect_closed()


# --- protocol versions and authentication -------------------------------------------------


async def test_mqtt5_connect_is_refused_with_code_1(
    broker: FallbackBroker, raw_clients: list[RawClient]
) -> None:
    raw = await open_raw(broker, raw_clients)
    assert await raw.connect("v5", level=5) == b"\x00\x01"
    await raw.expect_closed()
    with pytest.raises(aiomqtt.MqttError):
        async with mqtt(broker, protocol=aiomqtt.ProtocolVersion.V5):
            pass


async def test_mqtt_311_and_31_clients_connect(
    broker: FallbackBroker, raw_clients: list[RawClient]
) -> None:
    raw = await open_raw(broker, raw_clients)
    assert await raw.connect("v31", name="MQIsdp", level=3) == b"\x00\x00"
    async with mqtt(broker, protocol=aiomqtt.ProtocolVersion.V311) as client:
        await client.subscribe("v/311", 1)
        await raw.send(publish_packet("v/311", b"from 3.1", qos=0))
        assert (await receive(client)).payload == b"from 3.1"
    async with mqtt(broker, protocol=aiomqtt.ProtocolVersion.V31) as client:
        await client.subscribe("v/31", 1)
        await client.publish("v/31", b"paho 3.1", qos=1)
        assert (await receive(client)).payload == b"paho 3.1"


@pytest.mark.parametrize(
    ("username", "password", "code"),
    [(None, None, 5), ("alice", "wrong", 4), ("mallory", "secret", 4), ("alice", None, 4)],
)
async def test_authentication_refuses_bad_credentials(
    raw_clients: list[RawClient], username: str | None, password: str | None, code: int
) -> None:
    async with FallbackBroker(passwords=USERS) as broker:
        raw = await open_raw(broker, raw_clients)
        assert await raw.connect(username=username, password=password) == bytes([0, code])
        await raw.expect_closed()
        with pytest.raises(aiomqtt.MqttCodeError) as caught:
            async with mqtt(broker, username=username, password=password):
                pass
        assert caught.value.rc == {4: 134, 5: 135}[code]  # paho maps 3.1.1 codes to v5 ones


async def test_authentication_accepts_good_credentials() -> None:
    async with (
        FallbackBroker(passwords=USERS) as broker,
        mqtt(broker, username="alice", password=USERS["alice"]) as client,
    ):
        await client.subscribe("auth/ok", 1)
        await client.publish("auth/ok", b"welcome", qos=1)
        assert (await receive(client)).payload == b"welcome"


# --- hostile clients ----------------------------------------------------------------------


async def test_oversized_packet_closes_only_that_client(
    raw_clients: list[RawClient], caplog: pytest.LogCaptureFixture
) -> None:
    async with FallbackBroker(max_packet_size=1024) as broker, mqtt(broker) as watcher:
        await watcher.subscribe("big/#", 1)
        at_limit = await open_raw(broker, raw_clients)
        await at_limit.connect("at-limit")
        payload = b"x" * (1024 - len(_string("big/ok")))
        await at_limit.send(publish_packet("big/ok", payload))
        assert (await receive(watcher)).payload == payload

        hog = await open_raw(broker, raw_clients)
        await hog.connect("hog", will=RawWill("big/will", b"hog died"))
        await hog.send(b"\x30" + _varint(1025) + _string("big/x"))  # announces 1025 bytes
        await hog.expect_closed()
        assert (await receive(watcher)).payload == b"hog died"

        await at_limit.send(publish_packet("big/ok", b"after"))
        assert (await receive(watcher)).payload == b"after"
    assert any("exceeds the limit" in r.getMessage() for r in caplog.records)


MALFORMED_BEFORE_CONNECT = {
    "publish first": publish_packet("a", b"x"),
    "five-byte length": b"\x10\xff\xff\xff\xff\x01",
    "unknown protocol name": connect_packet(name="HTTP"),
    "reserved connect flag": packet(0x10, _string("MQTT") + b"\x04\x03\x00\x3c" + _string("x")),
    "truncated connect": packet(0x10, _string("MQTT") + b"\x04"),
}
MALFORMED_AFTER_CONNECT = {
    "wildcard topic": publish_packet("a/+", b"x"),
    "empty topic": publish_packet("", b"x"),
    "invalid utf-8 topic": publish_packet(b"\xff\xfe", b"x"),
    "publish qos 3": packet(0x36, _string("a") + b"\x00\x01"),
    "qos 1 with id 0": publish_packet("a", b"x", qos=1, packet_id=0),
    "subscribe qos 3": subscribe_packet(1, [("a", 3)]),
    "subscribe bad flags": packet(0x80, b"\x00\x01" + _string("a") + b"\x00"),
    "subscribe without filters": packet(0x82, b"\x00\x01"),
    "second connect": connect_packet("again"),
    "reserved type": packet(0xF0),
    "server-only type": packet(0x20, b"\x00\x00"),
    "puback too long": packet(0x40, b"\x00\x01\x00"),
}


@pytest.mark.parametrize("data", MALFORMED_BEFORE_CONNECT.values(), ids=MALFORMED_BEFORE_CONNECT)
async def test_malformed_packet_before_connect_closes_the_connection(
    broker: FallbackBroker, raw_clients: list[RawClient], data: bytes
) -> None:
    raw = await open_raw(broker, raw_clients)
    await raw.send(data)
    await raw.expect_closed()


@pytest.mark.parametrize("data", MALFORMED_AFTER_CONNECT.values(), ids=MALFORMED_AFTER_CONNECT)
async def test_protocol_violation_closes_the_connection_and_publishes_the_will(
    broker: FallbackBroker, raw_clients: list[RawClient], data: bytes
) -> None:
    async with mqtt(broker) as watcher:
        await watcher.subscribe("wills/#", 1)
        raw = await open_raw(broker, raw_clients)
        await raw.connect("violator", will=RawWill("wills/violator", b"violated"))
        await raw.send(data)
        await raw.expect_closed()
        assert (await receive(watcher)).payload == b"violated"


async def test_silent_socket_is_closed_after_the_connect_timeout(
    broker: FallbackBroker, raw_clients: list[RawClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fallback, "_CONNECT_TIMEOUT", 0.2)
    raw = await open_raw(broker, raw_clients)
    await raw.expect_closed()


async def test_random_garbage_does_not_crash_the_broker(
    broker: FallbackBroker, raw_clients: list[RawClient]
) -> None:
    loop_errors: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: loop_errors.append(ctx))
    rng = random.Random(1234)
    for round_ in range(40):
        raw = await open_raw(broker, raw_clients)
        if round_ % 2:
            await raw.connect(f"garbage-{round_}")
        await raw.send(rng.randbytes(rng.randint(1, 400)))
        await raw.close()
    async with mqtt(broker) as sub, mqtt(broker) as pub:
        await sub.subscribe("alive", 2)
        await pub.publish("alive", b"yes", qos=2)
        assert (await receive(sub)).payload == b"yes"
    assert not loop_errors


# --- command line -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv", [["--bogus"], ["--port", "70000"], ["--max-packet-size", "0"], ["--port", "x"]]
)
def test_main_exits_2_on_a_bad_flag(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert len(captured.err.strip().splitlines()) == 1
    assert "error" in captured.err


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_module_runs_in_foreground_and_stops_on_signal(sig: signal.Signals) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agents.broker.fallback",
        "--host",
        HOST,
        "--port",
        "0",
        cwd=PROJECT_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(15):
            line = (await proc.stdout.readline()).decode()
        match = re.fullmatch(r"fallback broker listening on 127\.0\.0\.1:(\d+)\n", line)
        assert match, line
        async with aiomqtt.Client(HOST, int(match.group(1))) as client:
            await client.subscribe("cli", 1)
            await client.publish("cli", b"works", qos=1)
            assert (await receive(client)).payload == b"works"
        proc.send_signal(sig)
        async with asyncio.timeout(10):
            rest, _ = await proc.communicate()
        assert proc.returncode == 0
        assert rest == b""
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
