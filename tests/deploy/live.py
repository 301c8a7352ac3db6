"""A live coordinator for the deployment tests (metrics page, healthcheck)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from prometheus_client import CollectorRegistry

from agents.broker.managed import ManagedBroker
from agents.bus.mqtt import MqttTransport
from agents.coordinator.coordinator import Coordinator, CoordinatorConfig


@asynccontextmanager
async def connected_coordinator(
    broker: ManagedBroker, data_dir: Path
) -> AsyncIterator[Coordinator]:
    """A running coordinator with a metrics endpoint on a free port, once it is connected."""
    coordinator = Coordinator(
        CoordinatorConfig(society="s", data_dir=data_dir, metrics_port=0, eval_episodes=1),
        MqttTransport(broker.url),
        metrics_registry=CollectorRegistry(),
    )
    task = asyncio.create_task(coordinator.run())
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while coordinator.bus is None or not coordinator.bus.connected.is_set():
            assert loop.time() < deadline, "the coordinator did not connect"
            await asyncio.sleep(0.02)
        yield coordinator
    finally:
        coordinator.stop()
        await asyncio.wait_for(task, 30)
