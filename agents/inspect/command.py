"""``society inspect``: tail the bus and print every message, decoded and checked.

The inspector is a bystander: a clean session under a random client id (it leaves nothing at
the broker and can never take over an agent's or the coordinator's session), subscribed to
``society/+/#`` or one society's ``society/NAME/#``. It publishes nothing. It stops on Ctrl-C
or SIGTERM, after ``--count`` messages, or after ``--duration`` seconds, with exit status 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import signal
import sys
import time
from dataclasses import dataclass
from typing import TextIO

from agents.bus.client import BusClient
from agents.bus.mqtt import MqttTransport, TlsFiles
from agents.bus.topics import ROOT
from agents.bus.transport import ConnectOptions, RawMessage
from agents.bus.url import BrokerUrl
from agents.inspect.decoding import describe
from agents.inspect.output import Printer

__all__ = ["InspectOptions", "inspect_bus", "topic_filter"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class InspectOptions:
    broker: BrokerUrl
    tls: TlsFiles | None = None
    society: str | None = None
    json_lines: bool = False
    kinds: frozenset[str] | None = None
    count: int | None = None
    duration: float | None = None
    connect_timeout: float = 10.0


def topic_filter(society: str | None) -> str:
    """Every society's topics, or one society's."""
    return f"{ROOT}/{society or '+'}/#"


async def inspect_bus(options: InspectOptions, out: TextIO = sys.stdout) -> int:
    """Print the bus's messages to ``out`` until stopped; returns the exit status (0).

    Raises :class:`~agents.exceptions.BusConnectionError` if the broker cannot be reached
    within ``connect_timeout`` and :class:`~agents.exceptions.BusAuthError` if it refuses us.
    """
    stop = asyncio.Event()
    printer = Printer(
        out,
        json_lines=options.json_lines,
        kinds=options.kinds,
        count=options.count,
        on_done=stop.set,
    )

    async def handle(raw: RawMessage) -> None:
        printer.show(describe(raw, ts=time.time()))

    subscription = topic_filter(options.society)
    client = BusClient(
        MqttTransport(options.broker, tls=options.tls),
        ConnectOptions(client_id=f"society-inspect-{secrets.token_hex(6)}", clean_session=True),
        subscriptions=[(subscription, 1)],
        handler=handle,
    )
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with client:
            await client.wait_connected(timeout=options.connect_timeout)
            log.info("inspecting %s on %s", subscription, options.broker)
            await _until(stop, client, options.duration)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    if client.fatal is not None:
        raise client.fatal
    log.info("inspector stopped after %d messages", printer.printed)
    return 0


async def _until(stop: asyncio.Event, client: BusClient, duration: float | None) -> None:
    """Until ``stop``, the broker refusing us for good, or ``duration`` seconds."""
    waiters = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(client.failed.wait())}
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait(waiters, timeout=duration, return_when="FIRST_COMPLETED")
    finally:
        for waiter in waiters:
            waiter.cancel()
