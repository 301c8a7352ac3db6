"""MQTT 3.1.1 control packets for the fallback broker: reading, parsing and encoding.

Only what a broker needs is here: the packets a client sends are parsed, the packets a server
sends are encoded. Every violation of the OASIS MQTT 3.1.1 specification that the server must
answer by closing the connection raises :class:`MalformedPacketError`.
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass
from enum import IntEnum

__all__ = [
    "MAX_REMAINING_LENGTH",
    "PINGRESP",
    "Connack",
    "Connect",
    "MalformedPacketError",
    "Packet",
    "PacketTooLargeError",
    "PacketType",
    "Publish",
    "UnsupportedProtocolError",
    "Will",
    "encode_ack",
    "encode_connack",
    "encode_publish",
    "encode_suback",
    "is_valid_filter",
    "parse_connect",
    "parse_packet_id",
    "parse_publish",
    "parse_subscribe",
    "parse_unsubscribe",
    "read_packet",
]

MAX_REMAINING_LENGTH = 268_435_455  # four bytes of variable-length encoding
_SUPPORTED_PROTOCOLS = {("MQTT", 4), ("MQIsdp", 3)}


class PacketType(IntEnum):
    CONNECT = 1
    CONNACK = 2
    PUBLISH = 3
    PUBACK = 4
    PUBREC = 5
    PUBREL = 6
    PUBCOMP = 7
    SUBSCRIBE = 8
    SUBACK = 9
    UNSUBSCRIBE = 10
    UNSUBACK = 11
    PINGREQ = 12
    PINGRESP = 13
    DISCONNECT = 14


class Connack(IntEnum):
    """CONNACK return codes (MQTT 3.1.1 section 3.2.2.3)."""

    ACCEPTED = 0
    UNACCEPTABLE_PROTOCOL = 1
    IDENTIFIER_REJECTED = 2
    SERVER_UNAVAILABLE = 3
    BAD_CREDENTIALS = 4
    NOT_AUTHORISED = 5


# The fixed-header flags each packet type must carry (section 2.2.2); PUBLISH is free.
_REQUIRED_FLAGS = dict.fromkeys(PacketType, 0) | {
    PacketType.PUBREL: 2,
    PacketType.SUBSCRIBE: 2,
    PacketType.UNSUBSCRIBE: 2,
}

PINGRESP = bytes([PacketType.PINGRESP << 4, 0])


class MalformedPacketError(Exception):
    """The client sent something the specification says must close the connection."""


class PacketTooLargeError(MalformedPacketError):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"packet of {size} bytes exceeds the limit of {limit} bytes")
        self.size = size


class UnsupportedProtocolError(MalformedPacketError):
    """A CONNECT for a protocol level we do not speak; answered with CONNACK code 1."""


@dataclass(frozen=True, slots=True)
class Packet:
    type: PacketType
    flags: int
    body: bytes


@dataclass(frozen=True, slots=True)
class Will:
    topic: str
    payload: bytes
    qos: int
    retain: bool


@dataclass(frozen=True, slots=True)
class Connect:
    level: int
    clean_session: bool
    keepalive: int
    client_id: str
    will: Will | None
    username: str | None
    password: bytes | None


@dataclass(frozen=True, slots=True)
class Publish:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    packet_id: int  # 0 for QoS 0


async def read_packet(reader: asyncio.StreamReader, max_size: int) -> Packet:
    """Read one packet; the size check comes before the body is read, so it costs no memory.

    Raises:
        asyncio.IncompleteReadError: the connection closed.
        PacketTooLargeError: the remaining length exceeds ``max_size``.
        MalformedPacketError: bad length encoding, unknown type or wrong fixed-header flags.
    """
    first = (await reader.readexactly(1))[0]
    length = await _read_remaining_length(reader)
    if length > max_size:
        raise PacketTooLargeError(length, max_size)
    try:
        kind = PacketType(first >> 4)
    except ValueError:
        raise MalformedPacketError(f"reserved packet type {first >> 4}") from None
    flags = first & 0x0F
    if kind != PacketType.PUBLISH and flags != _REQUIRED_FLAGS[kind]:
        raise MalformedPacketError(f"bad fixed-header flags {flags:#x} on {kind.name}")
    body = await reader.readexactly(length) if length else b""
    return Packet(kind, flags, body)


async def _read_remaining_length(reader: asyncio.StreamReader) -> int:
    value = 0
    for shift in range(0, 28, 7):
        byte = (await reader.readexactly(1))[0]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value
    raise MalformedPacketError("remaining length longer than four bytes")


class _Cursor:
    """Reads the fields of a packet body, raising MalformedPacketError when it runs short."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    @property
    def remaining(self) -> int:
        return len(self._data) - self._pos

    def take(self, size: int) -> bytes:
        if size > self.remaining:
            raise MalformedPacketError("packet shorter than its fields")
        chunk = self._data[self._pos : self._pos + size]
        self._pos += size
        return chunk

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        value: int = struct.unpack("!H", self.take(2))[0]
        return value

    def binary(self) -> bytes:
        return self.take(self.u16())

    def string(self) -> str:
        try:
            text = self.binary().decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedPacketError("string is not valid UTF-8") from None
        if "\x00" in text:
            raise MalformedPacketError("string contains U+0000")
        return text

    def rest(self) -> bytes:
        return self.take(self.remaining)


def parse_connect(body: bytes) -> Connect:
    """Parse a CONNECT body (section 3.1)."""
    cur = _Cursor(body)
    name, level = cur.string(), cur.u8()
    if name not in {"MQTT", "MQIsdp"}:
        raise MalformedPacketError(f"unknown protocol name {name!r}")
    if (name, level) not in _SUPPORTED_PROTOCOLS:
        raise UnsupportedProtocolError(f"unsupported protocol {name} level {level}")
    flags, keepalive = cur.u8(), cur.u16()
    has_will, will_qos, will_retain = bool(flags & 0x04), (flags >> 3) & 0x03, bool(flags & 0x20)
    has_username, has_password = bool(flags & 0x80), bool(flags & 0x40)
    if flags & 0x01:
        raise MalformedPacketError("reserved CONNECT flag set")
    if will_qos == 3 or (not has_will and (will_qos or will_retain)):  # noqa: PLR2004
        raise MalformedPacketError("bad will QoS or retain flag")
    if has_password and not has_username:
        raise MalformedPacketError("password without user name")
    client_id = cur.string()
    will = None
    if has_will:
        will_topic = cur.string()
        _check_topic_name(will_topic)
        will = Will(will_topic, cur.binary(), will_qos, will_retain)
    username = cur.string() if has_username else None
    password = cur.binary() if has_password else None
    return Connect(level, bool(flags & 0x02), keepalive, client_id, will, username, password)


def parse_publish(flags: int, body: bytes) -> Publish:
    """Parse a PUBLISH (section 3.3); ``flags`` are the low four bits of the fixed header."""
    qos = (flags >> 1) & 0x03
    if qos == 3:  # noqa: PLR2004
        raise MalformedPacketError("PUBLISH with QoS 3")
    cur = _Cursor(body)
    topic = cur.string()
    _check_topic_name(topic)
    packet_id = cur.u16() if qos else 0
    if qos and not packet_id:
        raise MalformedPacketError("PUBLISH with packet identifier 0")
    return Publish(topic, cur.rest(), qos, bool(flags & 0x01), packet_id)


def parse_subscribe(body: bytes) -> tuple[int, list[tuple[str, int]]]:
    """Parse a SUBSCRIBE (section 3.8) into its packet id and (filter, requested QoS) pairs."""
    cur = _Cursor(body)
    packet_id = _nonzero_id(cur.u16())
    requests = []
    while cur.remaining:
        topic_filter, options = cur.string(), cur.u8()
        if options > 2:  # noqa: PLR2004  (reserved bits set, or QoS 3)
            raise MalformedPacketError(f"bad SUBSCRIBE options {options:#x}")
        requests.append((topic_filter, options))
    if not requests:
        raise MalformedPacketError("SUBSCRIBE without a topic filter")
    return packet_id, requests


def parse_unsubscribe(body: bytes) -> tuple[int, list[str]]:
    """Parse an UNSUBSCRIBE (section 3.10) into its packet id and topic filters."""
    cur = _Cursor(body)
    packet_id = _nonzero_id(cur.u16())
    filters = []
    while cur.remaining:
        filters.append(cur.string())
    if not filters:
        raise MalformedPacketError("UNSUBSCRIBE without a topic filter")
    return packet_id, filters


def parse_packet_id(body: bytes) -> int:
    """Parse the body of PUBACK, PUBREC, PUBREL or PUBCOMP: exactly a packet identifier."""
    if len(body) != 2:  # noqa: PLR2004
        raise MalformedPacketError("acknowledgement body is not two bytes")
    return _nonzero_id(_Cursor(body).u16())


def is_valid_filter(topic_filter: str) -> bool:
    """Whether ``topic_filter`` is a legal subscription filter (section 4.7.1)."""
    if not topic_filter:
        return False
    levels = topic_filter.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            return False
        if "+" in level and level != "+":
            return False
    return True


def _check_topic_name(topic: str) -> None:
    if not topic or "+" in topic or "#" in topic:
        raise MalformedPacketError(f"invalid topic name {topic!r}")


def _nonzero_id(packet_id: int) -> int:
    if not packet_id:
        raise MalformedPacketError("packet identifier 0")
    return packet_id


def _fixed_header(first_byte: int, length: int) -> bytes:
    out = bytearray([first_byte])
    while True:
        byte, length = length & 0x7F, length >> 7
        out.append(byte | (0x80 if length else 0))
        if not length:
            return bytes(out)


def encode_connack(code: Connack, *, session_present: bool = False) -> bytes:
    return bytes([PacketType.CONNACK << 4, 2, int(session_present), code])


def encode_publish(
    topic: str, payload: bytes, qos: int, *, retain: bool, packet_id: int = 0, dup: bool = False
) -> bytes:
    encoded_topic = topic.encode("utf-8")
    variable = struct.pack("!H", len(encoded_topic)) + encoded_topic
    if qos:
        variable += struct.pack("!H", packet_id)
    flags = (dup << 3) | (qos << 1) | retain
    header = _fixed_header(PacketType.PUBLISH << 4 | flags, len(variable) + len(payload))
    return header + variable + payload


def encode_ack(kind: PacketType, packet_id: int) -> bytes:
    """PUBACK, PUBREC, PUBREL, PUBCOMP or UNSUBACK: a packet identifier and nothing else."""
    return bytes([kind << 4 | _REQUIRED_FLAGS[kind], 2]) + struct.pack("!H", packet_id)


def encode_suback(packet_id: int, codes: list[int]) -> bytes:
    body = struct.pack("!H", packet_id) + bytes(codes)
    return _fixed_header(PacketType.SUBACK << 4, len(body)) + body
