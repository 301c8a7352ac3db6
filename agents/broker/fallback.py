"""A small pure-Python MQTT 3.1.1 broker, used when no ``mosquitto`` binary is installed.

It speaks MQTT 3.1.1 (and 3.1, ``MQIsdp``) over plain TCP with asyncio and nothing else:
QoS 0, 1 and 2 in both directions, retained messages, Last Will, persistent sessions
(``clean_session=0``), ``+``/``#`` wildcards and optional user name/password authentication.
It is meant for a single machine and a modest number of clients; the society's code does not
know which broker it talks to.

State lives in memory only: retained messages, persistent sessions and their queued messages
are lost when the broker process stops. Clients that need durability (the society's outbox)
keep it on their own side.

Limits, so that no client can take the broker down:

* a packet whose remaining length exceeds ``max_packet_size`` closes that client's connection
  (its will is published); a malformed packet or protocol violation does the same;
* at most ``max_queued_messages`` QoS>=1 messages wait per session; when full the oldest is
  dropped and a warning with a running count is logged;
* at most 1000 unacknowledged QoS>=1 messages per client; the rest wait in its queue;
* QoS 0 messages to a client that does not read its socket are dropped once 16 MiB wait in
  its write buffer.

Run it in the foreground with ``python -m agents.broker.fallback --host 127.0.0.1 --port 1883``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import logging
import signal
import sys
import uuid
from collections import deque
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, NoReturn, Self

from agents.broker.fallback_packets import (
    MAX_REMAINING_LENGTH,
    PINGRESP,
    Connack,
    Connect,
    MalformedPacketError,
    Packet,
    PacketTooLargeError,
    PacketType,
    UnsupportedProtocolError,
    encode_ack,
    encode_connack,
    encode_publish,
    encode_suback,
    is_valid_filter,
    parse_connect,
    parse_packet_id,
    parse_publish,
    parse_subscribe,
    parse_unsubscribe,
    read_packet,
)
from agents.bus.topics import topic_matches

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

__all__ = ["DEFAULT_MAX_PACKET_SIZE", "DEFAULT_MAX_QUEUED_MESSAGES", "FallbackBroker", "main"]

log = logging.getLogger(__name__)

DEFAULT_MAX_PACKET_SIZE = 32 * 1024 * 1024
DEFAULT_MAX_QUEUED_MESSAGES = 100_000
_MAX_INFLIGHT = 1000  # also keeps plenty of the 65535 packet identifiers free
_QOS0_BUFFER_LIMIT = 16 * 1024 * 1024
_CONNECT_TIMEOUT = 10.0  # a socket that never sends CONNECT is closed after this
_CLOSE_TIMEOUT = 5.0  # a peer that does not read gets its socket aborted after this
_SUBACK_FAILURE = 0x80


class _ProtocolViolationError(Exception):
    """A well-formed packet that the client was not allowed to send."""


@dataclass(frozen=True, slots=True)
class Message:
    """A message as the broker routes it; ``qos`` is the QoS it travels at on this hop."""

    topic: str
    payload: bytes
    qos: int
    retain: bool


def _encode(message: Message, packet_id: int = 0, *, dup: bool = False) -> bytes:
    return encode_publish(
        message.topic,
        message.payload,
        message.qos,
        retain=message.retain,
        packet_id=packet_id,
        dup=dup,
    )


@dataclass(slots=True)
class _Inflight:
    message: Message
    released: bool = False  # QoS 2: PUBREC received and PUBREL sent, waiting for PUBCOMP


@dataclass(eq=False, slots=True)
class _Session:
    """What the broker remembers about a client id; outlives connections if not clean."""

    client_id: str
    max_queued: int
    subscriptions: dict[str, int] = field(default_factory=dict)
    inflight: dict[int, _Inflight] = field(default_factory=dict)  # insertion-ordered
    queue: deque[Message] = field(default_factory=deque)
    inbound_qos2: set[int] = field(default_factory=set)  # got PUBLISH, waiting for PUBREL
    connection: _Connection | None = None
    dropped: int = 0
    last_packet_id: int = 0

    def granted_qos(self, topic: str) -> int | None:
        """The highest QoS of the subscriptions matching ``topic``; ``None`` if none does."""
        granted = [qos for flt, qos in self.subscriptions.items() if topic_matches(flt, topic)]
        return max(granted, default=None)

    def deliver(self, message: Message) -> None:
        """Send ``message`` (already at its delivery QoS) now, or queue it for later."""
        conn = self.connection
        if message.qos == 0:
            if conn is not None and not conn.congested:
                conn.send(_encode(message))
        elif conn is not None and not self.queue and len(self.inflight) < _MAX_INFLIGHT:
            self._send_new(conn, message)
        else:
            self._enqueue(message)

    def acknowledge(self, packet_id: int) -> None:
        """The client finished a QoS>=1 delivery (PUBACK or PUBCOMP): free its slot."""
        self.inflight.pop(packet_id, None)
        self.pump()

    def resume(self) -> None:
        """On reconnect: re-send the unacknowledged messages, then the queued ones."""
        conn = self.connection
        if conn is None:
            return
        for packet_id, entry in self.inflight.items():
            if entry.released:
                conn.send(encode_ack(PacketType.PUBREL, packet_id))
            else:
                conn.send(_encode(entry.message, packet_id, dup=True))
        self.pump()

    def pump(self) -> None:
        """Move queued messages into flight while the client is connected and has room."""
        while self.connection is not None and self.queue and len(self.inflight) < _MAX_INFLIGHT:
            self._send_new(self.connection, self.queue.popleft())

    def _send_new(self, conn: _Connection, message: Message) -> None:
        packet_id = self._next_packet_id()
        self.inflight[packet_id] = _Inflight(message)
        conn.send(_encode(message, packet_id))

    def _enqueue(self, message: Message) -> None:
        if len(self.queue) >= self.max_queued:
            self.queue.popleft()
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:  # do not flood the log
                log.warning(
                    "queue of client %r is full (%d messages): dropped the oldest, "
                    "%d dropped so far",
                    self.client_id,
                    self.max_queued,
                    self.dropped,
                )
        self.queue.append(message)

    def _next_packet_id(self) -> int:
        while True:  # terminates: at most _MAX_INFLIGHT of the 65535 ids are in use
            self.last_packet_id = self.last_packet_id % 0xFFFF + 1
            if self.last_packet_id not in self.inflight:
                return self.last_packet_id


class _Connection:
    """One client socket: reads packets, answers them, and publishes the will if it dies."""

    def __init__(
        self,
        router: _Router,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        max_packet_size: int,
    ) -> None:
        self.router = router
        self.max_packet_size = max_packet_size
        self.reader = reader
        self.writer = writer
        self.peer = writer.get_extra_info("peername")
        self.client_id = "<not connected>"
        self.session: _Session | None = None
        self.clean_session = True
        self.keepalive = 0
        self.will: Message | None = None
        self.closed = False
        self._handlers: dict[PacketType, Callable[[Packet], None]] = {
            PacketType.PUBLISH: self._on_publish,
            PacketType.PUBACK: self._on_puback,
            PacketType.PUBREC: self._on_pubrec,
            PacketType.PUBREL: self._on_pubrel,
            PacketType.PUBCOMP: self._on_puback,  # both end a delivery
            PacketType.SUBSCRIBE: self._on_subscribe,
            PacketType.UNSUBSCRIBE: self._on_unsubscribe,
            PacketType.PINGREQ: lambda _packet: self.send(PINGRESP),
        }

    @property
    def congested(self) -> bool:
        return self.writer.transport.get_write_buffer_size() > _QOS0_BUFFER_LIMIT

    def send(self, data: bytes) -> None:
        if not self.closed and not self.writer.is_closing():
            self.writer.write(data)

    async def run(self) -> None:
        """Serve the connection until it ends; never raises except on cancellation."""
        try:
            await self._serve()
        except PacketTooLargeError as exc:
            log.warning("closing client %r at %s: %s", self.client_id, self.peer, exc)
        except (MalformedPacketError, _ProtocolViolationError) as exc:
            log.info("closing client %r at %s: %s", self.client_id, self.peer, exc)
        except TimeoutError:
            log.info("closing client %r at %s: timed out", self.client_id, self.peer)
        except (asyncio.IncompleteReadError, ConnectionError):
            log.debug("client %r at %s went away", self.client_id, self.peer)
        except Exception:
            log.exception("closing client %r at %s after an error", self.client_id, self.peer)
        finally:  # a no-op if the broker is stopping: it closed us first, without the will
            self.close(publish_will=True)
            await self._wait_closed()

    def close(self, *, publish_will: bool) -> None:
        """Close the socket and detach the session; idempotent."""
        if self.closed:
            return
        self.closed = True
        if self.writer.transport.get_write_buffer_size():
            self.writer.transport.abort()  # a peer that does not read would keep it open
        else:
            self.writer.close()
        if self.session is not None:
            self.router.detach(self)
        will, self.will = self.will, None
        if publish_will and will is not None:
            log.debug("publishing the will of client %r", self.client_id)
            self.router.publish(will)

    async def _wait_closed(self) -> None:
        try:
            async with asyncio.timeout(_CLOSE_TIMEOUT):
                await self.writer.wait_closed()
        except (TimeoutError, OSError):
            self.writer.transport.abort()

    async def _serve(self) -> None:
        async with asyncio.timeout(_CONNECT_TIMEOUT):
            packet = await read_packet(self.reader, self.max_packet_size)
        if packet.type != PacketType.CONNECT:
            raise _ProtocolViolationError(f"first packet is {packet.type.name}, not CONNECT")
        if not self._accept(packet.body):
            return
        deadline = self.keepalive * 1.5 or None  # MQTT-3.1.2-24; keepalive 0 means none
        while not self.closed:
            async with asyncio.timeout(deadline):
                packet = await read_packet(self.reader, self.max_packet_size)
            if packet.type == PacketType.DISCONNECT:
                self.will = None
                log.debug("client %r disconnected", self.client_id)
                return
            handler = self._handlers.get(packet.type)
            if handler is None:
                raise _ProtocolViolationError(f"unexpected {packet.type.name} from a client")
            handler(packet)
            # Back-pressure: a client that does not read what we send is not read from either.
            async with asyncio.timeout(deadline):
                with contextlib.suppress(ConnectionError):  # the next read will notice
                    await self.writer.drain()

    def _accept(self, body: bytes) -> bool:
        """Answer CONNECT; attach the session and return True if the client is accepted."""
        try:
            connect = parse_connect(body)
        except UnsupportedProtocolError as exc:
            log.info("refusing client at %s: %s", self.peer, exc)
            self.send(encode_connack(Connack.UNACCEPTABLE_PROTOCOL))
            return False
        code = self.router.check_connect(connect)
        if code != Connack.ACCEPTED:
            log.info("refusing client %r at %s: %s", connect.client_id, self.peer, code.name)
            self.send(encode_connack(code))
            return False
        self.client_id = connect.client_id or f"auto-{uuid.uuid4().hex}"
        self.clean_session = connect.clean_session
        self.keepalive = connect.keepalive
        present = self.router.attach(self)
        if connect.will is not None:
            w = connect.will
            self.will = Message(w.topic, w.payload, w.qos, w.retain)
        self.send(encode_connack(Connack.ACCEPTED, session_present=present))
        log.debug("client %r connected from %s", self.client_id, self.peer)
        if self.session is not None:
            self.session.resume()
        return True

    def _on_publish(self, packet: Packet) -> None:
        pub = parse_publish(packet.flags, packet.body)
        message = Message(pub.topic, pub.payload, pub.qos, pub.retain)
        if pub.qos == 0:
            self.router.publish(message)
        elif pub.qos == 1:
            self.router.publish(message)
            self.send(encode_ack(PacketType.PUBACK, pub.packet_id))
        else:  # QoS 2: deliver on PUBLISH, remember the id so a DUP is not delivered twice
            session = self._session()
            if pub.packet_id not in session.inbound_qos2:
                session.inbound_qos2.add(pub.packet_id)
                self.router.publish(message)
            self.send(encode_ack(PacketType.PUBREC, pub.packet_id))

    def _on_pubrel(self, packet: Packet) -> None:
        packet_id = parse_packet_id(packet.body)
        self._session().inbound_qos2.discard(packet_id)
        self.send(encode_ack(PacketType.PUBCOMP, packet_id))

    def _on_puback(self, packet: Packet) -> None:
        self._session().acknowledge(parse_packet_id(packet.body))

    def _on_pubrec(self, packet: Packet) -> None:
        packet_id = parse_packet_id(packet.body)
        entry = self._session().inflight.get(packet_id)
        if entry is not None:
            entry.released = True
        self.send(encode_ack(PacketType.PUBREL, packet_id))

    def _on_subscribe(self, packet: Packet) -> None:
        packet_id, requests = parse_subscribe(packet.body)
        session = self._session()
        granted: dict[str, int] = {}
        codes = []
        for topic_filter, qos in requests:
            if is_valid_filter(topic_filter):
                session.subscriptions[topic_filter] = granted[topic_filter] = qos
                codes.append(qos)
            else:
                codes.append(_SUBACK_FAILURE)
        self.send(encode_suback(packet_id, codes))
        self.router.send_retained(session, granted)

    def _on_unsubscribe(self, packet: Packet) -> None:
        packet_id, filters = parse_unsubscribe(packet.body)
        session = self._session()
        for topic_filter in filters:
            session.subscriptions.pop(topic_filter, None)
        self.send(encode_ack(PacketType.UNSUBACK, packet_id))

    def _session(self) -> _Session:
        if self.session is None:  # cannot happen: a closed connection handles no packet
            raise _ProtocolViolationError("connection no longer has a session")
        return self.session


class _Router:
    """The broker's shared state: sessions by client id and retained messages by topic."""

    def __init__(self, max_queued: int, passwords: dict[str, str] | None) -> None:
        self.max_queued = max_queued
        self.passwords = passwords
        self.sessions: dict[str, _Session] = {}
        self.retained: dict[str, Message] = {}

    def check_connect(self, connect: Connect) -> Connack:
        """Decide whether a CONNECT is acceptable, before any session is touched."""
        if not connect.client_id and (not connect.clean_session or connect.level == 3):  # noqa: PLR2004
            return Connack.IDENTIFIER_REJECTED  # MQTT 3.1 required an id; no id, no session
        if self.passwords is None:
            return Connack.ACCEPTED
        if connect.username is None:
            return Connack.NOT_AUTHORISED
        expected = self.passwords.get(connect.username)
        given = connect.password if connect.password is not None else b""
        if expected is None or not hmac.compare_digest(expected.encode("utf-8"), given):
            return Connack.BAD_CREDENTIALS
        return Connack.ACCEPTED

    def attach(self, conn: _Connection) -> bool:
        """Give ``conn`` its session, taking over from a live connection with the same id.

        Returns the CONNACK "session present" flag.
        """
        old = self.sessions.get(conn.client_id)
        if old is not None and old.connection is not None:
            log.info("client %r connected again: closing its old connection", conn.client_id)
            old.connection.close(publish_will=True)  # it did not DISCONNECT: like mosquitto
            old = self.sessions.get(conn.client_id)  # a clean old session is gone now
        present = old is not None and not conn.clean_session
        if old is None or conn.clean_session:
            old = _Session(conn.client_id, self.max_queued)
            self.sessions[conn.client_id] = old
        old.connection = conn
        conn.session = old
        return present

    def detach(self, conn: _Connection) -> None:
        session, conn.session = conn.session, None
        if session is None:
            return
        session.connection = None
        if conn.clean_session and self.sessions.get(session.client_id) is session:
            del self.sessions[session.client_id]

    def publish(self, message: Message) -> None:
        """Route a message to every matching session and update the retained store."""
        if message.retain:
            if message.payload:
                self.retained[message.topic] = message
            else:
                self.retained.pop(message.topic, None)
        for session in list(self.sessions.values()):
            qos = session.granted_qos(message.topic)
            if qos is not None:
                session.deliver(replace(message, qos=min(qos, message.qos), retain=False))

    def send_retained(self, session: _Session, filters: dict[str, int]) -> None:
        """Give a new subscription the retained messages it matches, once each."""
        for message in list(self.retained.values()):
            granted = [qos for flt, qos in filters.items() if topic_matches(flt, message.topic)]
            if granted:
                session.deliver(replace(message, qos=min(max(granted), message.qos)))


class FallbackBroker:
    """An in-process MQTT 3.1.1 broker; see the module docstring for what it does."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        max_packet_size: int = DEFAULT_MAX_PACKET_SIZE,
        max_queued_messages: int = DEFAULT_MAX_QUEUED_MESSAGES,
        passwords: dict[str, str] | None = None,
    ) -> None:
        if not 0 < max_packet_size <= MAX_REMAINING_LENGTH:
            raise ValueError(f"max_packet_size must be in 1..{MAX_REMAINING_LENGTH}")
        if max_queued_messages < 1:
            raise ValueError("max_queued_messages must be at least 1")
        self.host = host
        self.max_packet_size = max_packet_size
        self._requested_port = port
        self._router = _Router(max_queued_messages, None if passwords is None else dict(passwords))
        self._server: asyncio.Server | None = None
        self._stopping = False
        self._stopped = asyncio.Event()
        self._connections: set[_Connection] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        """The port the broker listens on (useful after binding port 0)."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("the broker is not listening")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        """Bind and start accepting clients; raises OSError if the address is unavailable."""
        if self._server is not None or self._stopping:
            raise RuntimeError("a FallbackBroker can be started only once")
        self._server = await asyncio.start_server(self._on_client, self.host, self._requested_port)
        log.info("fallback broker listening on %s:%d", self.host, self.port)

    async def stop(self) -> None:
        """Close the listener and every client without publishing wills; idempotent."""
        if self._stopping:
            await self._stopped.wait()
            return
        self._stopping = True
        if self._server is not None:
            self._server.close()
        for conn in list(self._connections):
            conn.close(publish_will=False)
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=_CLOSE_TIMEOUT + 1)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        self._stopped.set()
        log.info("fallback broker stopped")

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = _Connection(self._router, reader, writer, self.max_packet_size)
        if self._stopping:
            conn.close(publish_will=False)
            return
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self._connections.add(conn)
        try:
            await conn.run()
        finally:
            self._connections.discard(conn)
            if task is not None:
                self._tasks.discard(task)


class _ArgumentParser(argparse.ArgumentParser):
    """Reports a bad flag on one line and exits 2, without the multi-line usage text."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _int_in(low: int, high: int) -> Callable[[str], int]:
    def convert(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be in {low}..{high}, got {value}")
        return value

    return convert


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = _ArgumentParser(
        prog="python -m agents.broker.fallback", description="Run the fallback MQTT broker."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=_int_in(0, 0xFFFF), default=1883)
    parser.add_argument(
        "--max-packet-size", type=_int_in(1, MAX_REMAINING_LENGTH), default=DEFAULT_MAX_PACKET_SIZE
    )
    parser.add_argument(
        "--max-queued-messages", type=_int_in(1, 2**63), default=DEFAULT_MAX_QUEUED_MESSAGES
    )
    parser.add_argument(
        "--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    return parser.parse_args(argv)


async def _run(args: argparse.Namespace) -> int:
    broker = FallbackBroker(
        args.host,
        args.port,
        max_packet_size=args.max_packet_size,
        max_queued_messages=args.max_queued_messages,
    )
    try:
        await broker.start()
    except OSError as exc:
        sys.stderr.write(f"fallback broker: cannot listen on {args.host}:{args.port}: {exc}\n")
        return 1
    stop_requested = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop_requested.set)
    sys.stdout.write(f"fallback broker listening on {args.host}:{broker.port}\n")
    sys.stdout.flush()
    await stop_requested.wait()
    await broker.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the broker in the foreground until SIGTERM or SIGINT; 0 on a clean stop."""
    try:
        args = _parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on a bad flag, 0 after --help
        return exc.code if isinstance(exc.code, int) else 2
    logging.basicConfig(
        level=args.log_level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s"
    )
    return asyncio.run(_run(args))


if __name__ == "__main__":
    raise SystemExit(main())
