"""What unknown senders can cost the coordinator: bounded."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from agents.bus.codec import encode
from agents.bus.memory import MemoryBroker
from agents.bus.topics import Kind, Topics
from agents.bus.transport import RawMessage
from agents.coordinator.coordinator import Coordinator, CoordinatorConfig
from tests import factories


async def test_the_coordinator_tracks_at_most_max_agents() -> None:
    """10,000 invented agents cannot grow the roster and /metrics without bound."""
    metrics = CollectorRegistry()
    coordinator = Coordinator(
        CoordinatorConfig(society="s", max_agents=3), MemoryBroker(), metrics_registry=metrics
    )
    topics = Topics("s")
    for number in range(10):
        status = factories.status(f"invented-{number}")
        await coordinator.inbox(RawMessage(topics.agent(status.agent, Kind.STATUS), encode(status)))
    assert sorted(coordinator.roster.agents) == ["invented-0", "invented-1", "invented-2"]
    assert coordinator.inbox.stats.rejected["capacity"] == 7
    sample = metrics.get_sample_value
    assert sample("society_messages_rejected_total", {"reason": "capacity"}) == 7
    assert sample("society_agents", {"state": "online"}) == 3
    # Agents it knows are still heard.
    known = factories.telemetry("invented-1")
    await coordinator.inbox(RawMessage(topics.agent("invented-1", Kind.TELEMETRY), encode(known)))
    assert coordinator.roster.agents["invented-1"].env_steps == known.env_steps
