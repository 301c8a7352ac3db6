"""A process's seat on the bus.

One connection at a time, a reconnect loop around it, a durable outbox drained into it, and
incoming messages handed to one handler.

The connection itself (:mod:`agents.bus.transport`) knows nothing about reconnecting; as in
aiomqtt, the reconnect loop lives outside the client, here in :meth:`BusClient._run`. While
the broker is away nothing blocks: durable messages accumulate in the outbox, volatile ones
(telemetry) are dropped, and the owner keeps working.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

from agents.bus.outbox import Outbox
from agents.bus.transport import Connection, ConnectOptions, RawMessage, Transport
from agents.exceptions import BusAuthError, BusConnectionError, BusError

__all__ = ["Backoff", "BusClient", "BusStats"]

log = logging.getLogger(__name__)

MessageHandler = Callable[[RawMessage], Awaitable[None]]
ConnectHook = Callable[[Connection], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with jitter: ``min(cap, base * 2**attempt)`` scaled by [0.5, 1)."""

    base: float = 0.5
    cap: float = 30.0

    def delay(self, attempt: int) -> float:
        return min(self.cap, self.base * 2.0**attempt) * random.uniform(0.5, 1.0)  # noqa: S311


@dataclass(slots=True)
class BusStats:
    """Counters of the connection's life, read by telemetry and Prometheus collectors."""

    connects: int = 0
    connection_losses: int = 0
    published: int = 0
    volatile_dropped: int = 0
    handler_errors: int = 0
    last_error: str = ""
    connected_since: float | None = field(default=None)


class BusClient:
    """Keeps one connection to the broker alive and moves messages through it.

    Use as ``async with BusClient(...) as bus:``. On entry it starts connecting in the
    background (it does not wait for the broker: see :meth:`wait_connected`); on exit it
    disconnects cleanly, so the broker does not publish the Last Will.
    """

    def __init__(
        self,
        transport: Transport,
        options: ConnectOptions,
        *,
        outbox: Outbox | None = None,
        subscriptions: Sequence[tuple[str, int]] = (),
        handler: MessageHandler | None = None,
        on_connect: ConnectHook | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self.transport = transport
        self.options = options
        self.outbox = outbox if outbox is not None else Outbox()
        self.subscriptions = list(subscriptions)
        self.handler = handler
        self.on_connect = on_connect
        self.backoff = backoff or Backoff()
        self.stats = BusStats()
        self.connected = asyncio.Event()
        self.fatal: BusAuthError | None = None
        #: Set when the broker refused us for good (see :attr:`fatal`).
        self.failed = asyncio.Event()
        self._connection: Connection | None = None
        self._wake_sender = asyncio.Event()
        self._run_task: asyncio.Task[None] | None = None
        self._stopped = asyncio.Event()

    async def __aenter__(self) -> Self:
        self._run_task = asyncio.create_task(self._run(), name=f"bus:{self.options.client_id}")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Disconnect cleanly (no Last Will) and stop reconnecting."""
        self._stopped.set()
        if self._run_task is not None:
            self._run_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._run_task
            self._run_task = None

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Wait for a live connection; raises the fatal error if the broker refused us."""
        waiter = asyncio.ensure_future(self.connected.wait())
        stopper = asyncio.ensure_future(self._stopped.wait())
        try:
            await asyncio.wait({waiter, stopper}, timeout=timeout, return_when="FIRST_COMPLETED")
        finally:
            waiter.cancel()
            stopper.cancel()
        if self.fatal is not None:
            raise self.fatal
        if not self.connected.is_set():
            msg = f"not connected to the broker after {timeout} s: {self.stats.last_error}"
            raise BusConnectionError(msg)

    # --- sending -----------------------------------------------------------------------------

    def enqueue(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None:
        """Store a message durably; it is sent (and re-sent) until the broker acknowledges it."""
        self.outbox.put(topic, payload, qos=qos, retain=retain)
        self._wake_sender.set()

    def enqueue_counted(
        self,
        counter: str,
        build: Callable[[int], tuple[str, bytes]],
        *,
        qos: int = 1,
        retain: bool = False,
        receipted: str | None = None,
    ) -> int:
        """Like :meth:`enqueue`, numbering the message with durable counter ``counter``.

        With ``receipted`` (its stream's name) the message is kept until a receipt covers it.
        """
        value = self.outbox.put_counted(counter, build, qos=qos, retain=retain, receipted=receipted)
        self._wake_sender.set()
        return value

    async def wait_receipted(self, timeout: float) -> bool:
        """Wait until every receipted message is covered by a receipt; False on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.outbox.pending():
            if loop.time() >= deadline or self.fatal is not None:
                return False
            await asyncio.sleep(0.05)
        return True

    def receipted(
        self, stream: str, *, floor: int, highest: int, missing: Sequence[int], grace: float
    ) -> int:
        """Apply the receiver's receipt for ``stream`` (:meth:`Outbox.receipted`).

        Rows the broker acknowledged more than ``grace`` seconds ago that the receipt does not
        show are sent again. Returns how many go out again.
        """
        again = self.outbox.receipted(
            stream, floor=floor, highest=highest, missing=missing,
            resend_before=time.time() - grace,
        )  # fmt: skip
        if again:
            self._wake_sender.set()
        return again

    def wake_sender(self) -> None:
        """Look at the outbox again now (rows were made sendable from outside)."""
        self._wake_sender.set()

    async def publish_now(
        self, topic: str, payload: bytes, *, qos: int = 0, retain: bool = False
    ) -> bool:
        """Send a volatile message if connected; returns whether it was sent."""
        connection = self._connection
        if connection is None:
            self.stats.volatile_dropped += 1
            return False
        try:
            await connection.publish(topic, payload, qos=qos, retain=retain)
        except BusError as exc:
            self.stats.volatile_dropped += 1
            log.debug("volatile message on %s dropped: %s", topic, exc)
            return False
        self.stats.published += 1
        return True

    async def flush(self, timeout: float) -> bool:
        """Wait until the broker acknowledged everything; False if ``timeout`` ran out first.

        Rows waiting for a receipt stay in the outbox file for the next start.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.outbox.unsent():
            if loop.time() >= deadline or self.fatal is not None:
                return False
            await asyncio.sleep(0.05)
        return True

    # --- the connection loop -----------------------------------------------------------------

    async def _run(self) -> None:
        attempt = 0
        while not self._stopped.is_set():
            try:
                async with self.transport.connect(self.options) as connection:
                    attempt = 0
                    await self._serve(connection)
            except BusAuthError as exc:
                log.error("%s", exc)  # noqa: TRY400 - the message says it all; no traceback
                self.fatal = exc
                self.failed.set()
                self._stopped.set()
                return
            except BusConnectionError as exc:
                self.stats.last_error = str(exc)
                if self.connected.is_set():
                    self.stats.connection_losses += 1
                    log.warning("lost the broker: %s", exc)
                else:
                    log.debug("cannot reach the broker: %s", exc)
            finally:
                self._connection = None
                self.connected.clear()
                self.stats.connected_since = None
            delay = self.backoff.delay(attempt)
            attempt += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), timeout=delay)

    async def _serve(self, connection: Connection) -> None:
        for topic_filter, qos in self.subscriptions:
            await connection.subscribe(topic_filter, qos=qos)
        self._connection = connection
        if self.on_connect is not None:
            await self.on_connect(connection)
        self.stats.connects += 1
        self.stats.connected_since = asyncio.get_running_loop().time()
        self.connected.set()
        if self.stats.connects > 1:
            log.info("reconnected to the broker (connection %d)", self.stats.connects)
        # The receive loop runs even without a handler: it is what notices a dead connection.
        tasks = [
            asyncio.create_task(self._send_loop(connection)),
            asyncio.create_task(self._receive_loop(connection)),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()  # re-raise the loop's error
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _send_loop(self, connection: Connection) -> None:
        while True:
            self._wake_sender.clear()
            items = self.outbox.peek()
            if not items:
                await self._wake_sender.wait()
                continue
            for item in items:
                await connection.publish(item.topic, item.payload, qos=item.qos, retain=item.retain)
                self.outbox.acknowledged(item.id, time.time())
                self.stats.published += 1

    async def _receive_loop(self, connection: Connection) -> None:
        async for message in connection.messages():
            if self.handler is None:
                continue
            try:
                await self.handler(message)
            except Exception:
                # A handler bug must not take the connection down with it.
                self.stats.handler_errors += 1
                log.exception("error handling a message on %s", message.topic)
        msg = "the message stream ended"
        raise BusConnectionError(msg)
