"""RabbitMQ's MQTT plugin and NATS's MQTT gateway, one instance per test module."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.bus.foreign_brokers import ForeignBroker, ForeignBrokerMissingError, nats, rabbitmq


def _foreign(
    start: Callable[[Path], ForeignBroker], factory: pytest.TempPathFactory
) -> Iterator[ForeignBroker]:
    try:
        broker = start(factory.mktemp(start.__name__))
    except ForeignBrokerMissingError as exc:
        pytest.skip(str(exc))
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="module")
def rabbitmq_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ForeignBroker]:
    yield from _foreign(rabbitmq, tmp_path_factory)


@pytest.fixture(scope="module")
def nats_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ForeignBroker]:
    yield from _foreign(nats, tmp_path_factory)
