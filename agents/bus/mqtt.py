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

import aiomqtt
from aiomqtt.exceptions import MqttConnectError

from agents.bus.transport import Connection, ConnectOptions, RawMessage
from agents.bus.url import BrokerUrl
from agents.exceptions import BusAuthError, BusConnectionError

__all__ = ["MqttTransport"]

log = logging.getLogger(__name__)

# CONNACK codes meaning "your credentials are not accepted": MQTT 3.1.1 codes 4 and 5, and the
# MQTT 5 reason codes paho maps them to (134 bad user name or password, 135 not authorized).
_AUTH_REFUSED = {4, 5, 134, 135}


class _AiomqttConnection:
    def __init__(self, client: aiomqtt.Client) -> None:
        self._client = client

    async def publish(self, topic: str, payload: bytes, *, qos: int, retain: bool) -> None:
        await self._client.publish(topic, payload, qos=qos, retain=retain)

    async def subscribe(self, topic_filter: str, *, qos: int) -> None:
        await self._client.subscribe(topic_filter, qos=qos)

    async def messages(self) -> AsyncIterator[RawMessage]:
        async for message in self._client.messages:
            # paho hands over received payloads as bytes; the wider type is for publishing.
            yield RawMessage(str(message.topic), bytes(message.payload), bool(message.retain))


class MqttTransport:
    """Connects to one broker with aiomqtt. ``timeout`` bounds every broker round trip."""

    def __init__(self, url: BrokerUrl, *, timeout: float = 10.0) -> None:
        self.url = url
        self.timeout = timeout

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
            tls_context=ssl.create_default_context() if self.url.tls else None,
            protocol=aiomqtt.ProtocolVersion.V311,
        )
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
            msg = f"broker {self.url}: {exc}"
            raise BusConnectionError(msg) from None
