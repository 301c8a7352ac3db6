"""An in-memory broker implementing the transport seam, for unit tests only.

It keeps retained messages, matches wildcards, and publishes a client's Last Will when the
test calls :meth:`MemoryBroker.drop`. It does not model QoS, persistent sessions or outages:
tests of those run against a real Mosquitto.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from agents.bus.topics import topic_matches
from agents.bus.transport import Connection, ConnectOptions, RawMessage
from agents.exceptions import BusConnectionError

__all__ = ["MemoryBroker"]


class _MemoryConnection:
    def __init__(self, broker: MemoryBroker, options: ConnectOptions) -> None:
        self.broker = broker
        self.options = options
        self.filters: list[str] = []
        self.queue: asyncio.Queue[RawMessage | None] = asyncio.Queue()
        self.open = True

    def _check(self) -> None:
        if not self.open:
            msg = f"memory connection {self.options.client_id!r} is closed"
            raise BusConnectionError(msg)

    async def publish(self, topic: str, payload: bytes, *, qos: int, retain: bool) -> None:  # noqa: ARG002
        self._check()
        self.broker.route(topic, payload, retain=retain)

    async def subscribe(self, topic_filter: str, *, qos: int) -> None:  # noqa: ARG002
        self._check()
        self.filters.append(topic_filter)
        for topic, payload in self.broker.retained.items():
            if topic_matches(topic_filter, topic):
                self.queue.put_nowait(RawMessage(topic, payload, retain=True))

    async def messages(self) -> AsyncIterator[RawMessage]:
        while True:
            item = await self.queue.get()
            if item is None:
                msg = f"memory connection {self.options.client_id!r} dropped"
                raise BusConnectionError(msg)
            yield item


class MemoryBroker:
    """A toy broker in the test's event loop. ``published`` records every message routed."""

    def __init__(self) -> None:
        self.retained: dict[str, bytes] = {}
        self.connections: dict[str, _MemoryConnection] = {}
        self.published: list[RawMessage] = []

    def route(self, topic: str, payload: bytes, *, retain: bool) -> None:
        self.published.append(RawMessage(topic, payload, retain))
        if retain:
            if payload:
                self.retained[topic] = payload
            else:
                self.retained.pop(topic, None)
        for connection in self.connections.values():
            if any(topic_matches(f, topic) for f in connection.filters):
                connection.queue.put_nowait(RawMessage(topic, payload, retain=False))

    def drop(self, client_id: str) -> None:
        """End a client's connection abruptly, as a crash would: its will is published."""
        connection = self.connections.pop(client_id)
        connection.open = False
        connection.queue.put_nowait(None)
        will = connection.options.will
        if will is not None:
            self.route(will.topic, will.payload, retain=will.retain)

    @asynccontextmanager
    async def connect(self, options: ConnectOptions) -> AsyncIterator[Connection]:
        connection = _MemoryConnection(self, options)
        self.connections[options.client_id] = connection
        try:
            yield connection
        finally:
            connection.open = False
            if self.connections.get(options.client_id) is connection:
                del self.connections[options.client_id]
