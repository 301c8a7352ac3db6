"""The bus: MQTT topics, typed MessagePack messages, and the client that moves them.

Only MQTT 3.1.1 features are used, so any broker serves. ``docs/protocol.md`` is the
reference for third-party clients.
"""

from __future__ import annotations

from agents.bus.arrays import WIRE_DTYPES, Array, Tensor, from_wire, to_wire
from agents.bus.client import Backoff, BusClient, BusStats
from agents.bus.codec import MAX_PAYLOAD_BYTES, REJECT_REASONS, decode, decode_as, encode
from agents.bus.inbox import Inbox, InboxStats, SeqTracker
from agents.bus.memory import MemoryBroker
from agents.bus.mqtt import MqttTransport
from agents.bus.outbox import Outbox
from agents.bus.schemas import (
    SCHEMA_VERSION,
    Directive,
    Evaluation,
    ExperienceBatch,
    Leaderboard,
    LeaderboardEntry,
    Lineage,
    Message,
    PolicyArch,
    PolicySnapshot,
    Receipt,
    SpaceSpec,
    Status,
    StreamReceipt,
    Telemetry,
)
from agents.bus.signing import tensor_digest
from agents.bus.topics import DELIVERY, Kind, TopicRef, Topics, topic_matches
from agents.bus.transport import Connection, ConnectOptions, RawMessage, Transport, WillMessage
from agents.bus.url import BrokerUrl, parse_broker_url

__all__ = [
    "DELIVERY",
    "MAX_PAYLOAD_BYTES",
    "REJECT_REASONS",
    "SCHEMA_VERSION",
    "WIRE_DTYPES",
    "Array",
    "Backoff",
    "BrokerUrl",
    "BusClient",
    "BusStats",
    "ConnectOptions",
    "Connection",
    "Directive",
    "Evaluation",
    "ExperienceBatch",
    "Inbox",
    "InboxStats",
    "Kind",
    "Leaderboard",
    "LeaderboardEntry",
    "Lineage",
    "MemoryBroker",
    "Message",
    "MqttTransport",
    "Outbox",
    "PolicyArch",
    "PolicySnapshot",
    "RawMessage",
    "Receipt",
    "SeqTracker",
    "SpaceSpec",
    "Status",
    "StreamReceipt",
    "Telemetry",
    "Tensor",
    "TopicRef",
    "Topics",
    "Transport",
    "WillMessage",
    "decode",
    "decode_as",
    "encode",
    "from_wire",
    "parse_broker_url",
    "tensor_digest",
    "to_wire",
    "topic_matches",
]
