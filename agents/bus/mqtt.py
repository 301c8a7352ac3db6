"""The real transport: MQTT 3.1.1 through aiomqtt (and so paho-mqtt).

Only MQTT 3.1.1 features are used (QoS 1, retained messages, Last Will, persistent sessions),
so any broker works: Mosquitto, RabbitMQ's MQTT plugin, NATS's MQTT gateway, EMQX, VerneMQ and
the project's pure-Python fallback broker.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import paho.mqtt.client as mqtt
from aiomqtt.exceptions import MqttConnectError

from agents.bus.transport import Connection, ConnectOptions, RawMessage
from agents.bus.url import BrokerUrl
from agents.exceptions import BusAuthError, BusConnectionError, BusTlsError, ConfigError

__all__ = ["MqttTransport", "TlsFiles"]

log = logging.getLogger(__name__)

# CONNACK codes meaning "your credentials are not accepted": MQTT 3.1.1 codes 4 and 5, and the
# MQTT 5 reason codes paho maps them to (134 bad user name or password, 135 not authorized).
_AUTH_REFUSED = {4, 5, 134, 135}


class _SocketErrorsAreDebug(logging.Filter):
    """paho logs a lost connection at ERROR; ``BusClient`` already reports it as a warning.

    A broker restart is an expected event in a society's life: one line about it is enough.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.ERROR and "on socket" in record.getMessage():
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return _paho_log.isEnabledFor(logging.DEBUG)
        return True


#: paho's own messages, under the project's logger tree.
_paho_log = logging.getLogger("agents.bus.paho")
_paho_log.addFilter(_SocketErrorsAreDebug())


def _paho_client(client: aiomqtt.Client) -> mqtt.Client:
    # aiomqtt has no option for manual acknowledgement; paho's (manual_ack_set, ack) is it.
    return client._client  # noqa: SLF001


class _AiomqttConnection:
    """One aiomqtt client, acknowledging each QoS 1 message only once it has been handled.

    paho acknowledges a QoS 1 message the moment it arrives, before aiomqtt's queue hands it
    to us: a process stopped or killed with messages in that queue would lose them, though the
    broker counts them delivered. With manual acknowledgement the PUBACK goes out when the
    consumer asks for the next message, i.e. after its handler returned; a message whose
    handler never finished stays in the broker's session and is delivered again (as a
    duplicate, which the inbox recognises) on the next connection.
    """

    def __init__(self, client: aiomqtt.Client) -> None:
        self._client = client
        self._paho = _paho_client(client)

    async def publish(self, topic: str, payload: bytes, *, qos: int, retain: bool) -> None:
        # A publish from another task than the connection's (a volatile message) would let
        # aiomqtt's error escape the project's tree: a broker slow to acknowledge (a
        # clustered one under load) made it "Task exception was never retrieved".
        try:
            await self._client.publish(topic, payload, qos=qos, retain=retain)
        except aiomqtt.MqttError as exc:
            msg = f"publishing on {topic} failed: {exc}"
            raise BusConnectionError(msg) from exc

    async def subscribe(self, topic_filter: str, *, qos: int) -> None:
        await self._client.subscribe(topic_filter, qos=qos)

    async def messages(self) -> AsyncIterator[RawMessage]:
        async for message in self._client.messages:
            # paho hands over received payloads as bytes; the wider type is for publishing.
            yield RawMessage(str(message.topic), bytes(message.payload), bool(message.retain))
            if message.qos > 0:
                self._paho.ack(message.mid, message.qos)  # handled: the broker may forget it


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """Certificates for ``mqtts://``.

    The CA that signed the broker's certificate (else the system's trust store) and, for
    brokers that identify clients by certificate, ours.
    """

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    def context(self) -> ssl.SSLContext:
        """A verifying client context; a file that cannot be read is a ``ConfigError``."""
        try:
            context = ssl.create_default_context(cafile=self.ca_file)
            if self.cert_file is not None:
                context.load_cert_chain(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as exc:
            msg = f"TLS files ({self}): {exc}"
            raise ConfigError(msg) from None
        if self.cert_file is None and self.key_file is not None:
            msg = "a TLS key file needs its certificate file"
            raise ConfigError(msg)
        return context


class MqttTransport:
    """Connects to one broker with aiomqtt. ``timeout`` bounds every broker round trip.

    For ``mqtts://`` URLs the broker's certificate is verified against ``tls.ca_file`` (or the
    system's trust store), and ``tls.cert_file``/``key_file`` are presented when given.
    """

    def __init__(
        self, url: BrokerUrl, *, timeout: float = 10.0, tls: TlsFiles | None = None
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.tls = tls or TlsFiles()
        self._tls_context = self.tls.context() if url.tls else None

    @asynccontextmanager
    async def connect(self, options: ConnectOptions) -> AsyncIterator[Connection]:
        will = None
        if options.will is not None:
            will = aiomqtt.Will(
                options.will.topic, options.will.payload, options.will.qos, options.will.retain
            )
        client = aiomqtt.Client(
            self.url.host,
            self.url.port,
            identifier=options.client_id,
            username=self.url.username,
            password=self.url.password,
            will=will,
            clean_session=options.clean_session,
            keepalive=options.keepalive,
            timeout=self.timeout,
            tls_context=self._tls_context,
            protocol=aiomqtt.ProtocolVersion.V311,
            logger=_paho_log,
        )
        # Before connecting: a persistent session's queue may arrive with the CONNACK.
        _paho_client(client).manual_ack_set(on=True)
        try:
            async with client:
                yield _AiomqttConnection(client)
        except MqttConnectError as exc:
            code = getattr(exc.rc, "value", exc.rc)
            if code in _AUTH_REFUSED:
                msg = f"broker {self.url} refused client {options.client_id!r}: {exc}"
                raise BusAuthError(msg) from None
            msg = f"broker {self.url} refused the connection: {exc}"
            raise BusConnectionError(msg) from None
        except aiomqtt.MqttError as exc:
            if _certificate_refused(exc):
                msg = (
                    f"broker {self.url}: its TLS certificate cannot be verified ({exc}); "
                    "give the CA that signed it with --tls-ca (or SOCIETY_TLS_CA)"
                )
                raise BusTlsError(msg) from None
            msg = f"broker {self.url}: {exc}"
            raise BusConnectionError(msg) from None


def _certificate_refused(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is a failed verification of a TLS certificate."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLCertVerificationError):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return "CERTIFICATE_VERIFY_FAILED" in str(exc)
