"""Fixtures shared by the suite: a real Mosquitto on a free port, owned by the test."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from agents.broker.managed import ManagedBroker, find_mosquitto


@pytest.fixture(autouse=True)
def _root_logging_restored() -> Iterator[None]:
    """A command run in-process sets up logging to that test's stderr; undo it afterwards.

    Otherwise later tests log into a capture stream pytest has closed ("Logging error").
    """
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[ManagedBroker]:
    """A Mosquitto broker process of this test's own, on a free port.

    The test owns it: it may ``stop()``, ``kill()`` and ``start()`` it again on the same port.
    """
    if find_mosquitto() is None:
        pytest.fail("mosquitto is not installed: `apt-get install mosquitto` (.ci/run does)")
    broker = ManagedBroker(tmp_path / "mosquitto", kind="mosquitto")
    broker.start()
    try:
        yield broker
    finally:
        broker.kill()


@pytest.fixture
def fallback_broker(tmp_path: Path) -> Iterator[ManagedBroker]:
    """The pure-Python fallback broker, in its own process, on a free port."""
    broker = ManagedBroker(tmp_path / "fallback", kind="python")
    broker.start()
    try:
        yield broker
    finally:
        broker.kill()
