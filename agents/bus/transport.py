"""The transport seam: what the bus needs from an MQTT connection, and nothing more.

:class:`~agents.bus.mqtt.MqttTransport` implements it over aiomqtt against a real broker;
:class:`~agents.bus.memory.MemoryBroker` implements it in memory for unit tests. Like httpx's
transports, swapping it changes where bytes go, not what the rest of the code does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

__all__ = ["ConnectOptions", "Connection", "RawMessage", "Transport", "WillMessage"]


@dataclass(frozen=True, slots=True)
class RawMessage:
    """A message as it came off the wire: not decoded, not trusted."""

    topic: str
    payload: bytes
    retain: bool = False


@dataclass(frozen=True, slots=True)
class WillMessage:
    """The Last Will the broker publishes if the connection ends without a DISCONNECT."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


@dataclass(frozen=True, slots=True)
class ConnectOptions:
    """Per-connection MQTT settings. ``client_id`` is the agent id for agents."""

    client_id: str
    clean_session: bool = False
    keepalive: int = 15
    will: WillMessage | None = None


class Connection(Protocol):
    """One live connection. Any method raises BusConnectionError once the link is gone."""

    async def publish(self, topic: str, payload: bytes, *, qos: int, retain: bool) -> None:
        """Publish; for QoS 1 return only after the broker acknowledged it (PUBACK)."""

    async def subscribe(self, topic_filter: str, *, qos: int) -> None:
        """Subscribe and wait for the broker's SUBACK."""

    def messages(self) -> AsyncIterator[RawMessage]:
        """Incoming messages, until the connection ends.

        A message counts as handled when the consumer asks for the next one; a transport with
        acknowledgements (MQTT) acknowledges it then, not on arrival.
        """


class Transport(Protocol):
    """Opens connections to one broker."""

    def connect(self, options: ConnectOptions) -> AbstractAsyncContextManager[Connection]:
        """Connect; raises BusConnectionError or BusAuthError. Exiting disconnects cleanly."""
