"""Fuzzing every topic the coordinator and an agent read: nothing crashes, nothing is loaded,
every refusal is counted by reason."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from agents.agent.agent import Agent, AgentConfig
from agents.bus.codec import MAX_PAYLOAD_BYTES, REJECT_REASONS, encode
from agents.bus.memory import MemoryBroker
from agents.bus.schemas import Message
from agents.bus.topics import Kind, Topics
from agents.bus.transport import RawMessage
from agents.coordinator.coordinator import Coordinator, CoordinatorConfig
from agents.learner.learner import Learner, LearnerConfig
from agents.learner.peers import PeerSnapshots
from tests import factories
from tests.learner.test_learner import Recorder

TOPICS = Topics("s")
AGENT_KINDS = [Kind.STATUS, Kind.EXPERIENCE, Kind.POLICY, Kind.TELEMETRY, Kind.DIRECTIVE]
SMALL_INTS = st.integers(min_value=-(2**63), max_value=2**64 - 1)
ODD_VALUES = st.one_of(
    st.none(), st.booleans(), SMALL_INTS, st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20), st.binary(max_size=40), st.lists(SMALL_INTS, max_size=4),
    st.dictionaries(st.text(max_size=5), SMALL_INTS, max_size=3),
)  # fmt: skip


def as_dict(message: Message) -> dict[str, Any]:
    data = msgspec.to_builtins(message, builtin_types=(bytes,))
    assert isinstance(data, dict)
    return data


def topic_for(kind: Kind, agent: str = "a0") -> str:
    if kind in AGENT_KINDS:
        return TOPICS.agent(agent, kind)
    return TOPICS.coordinator(kind)


def break_array(draw: st.DrawFn, kind: Kind, data: dict[str, Any]) -> None:
    """Corrupt an array's dtype, shape or bytes (``[dtype, shape, data]``, name first for
    tensors)."""
    target = data["obs"] if kind is Kind.EXPERIENCE else data["tensors"][0]
    choice = draw(st.sampled_from(["dtype", "shape", "bytes"]))
    if choice == "dtype":
        target[-3] = draw(st.sampled_from(["object", "complex128", "<f4", "float128", ""]))
    elif choice == "shape":
        target[-2] = draw(st.lists(st.integers(-3, 50), max_size=4))
    else:
        target[-1] = draw(st.binary(max_size=64))


def poison(draw: st.DrawFn, kind: Kind, data: dict[str, Any]) -> None:
    """Put NaN or an infinity where a finite number belongs."""
    bad = draw(st.sampled_from([math.nan, math.inf, -math.inf]))
    if kind is Kind.TELEMETRY:
        data["steps_per_second"] = bad
    elif kind in {Kind.STATUS, Kind.DIRECTIVE}:
        data["ts"] = bad
    else:
        column = data["rewards"] if kind is Kind.EXPERIENCE else data["tensors"][0]
        raw = bytearray(column[-1])
        raw[0:4] = np.array([bad], dtype="<f4").tobytes()
        column[-1] = bytes(raw)


@st.composite
def hostile(draw: st.DrawFn) -> tuple[Kind, bytes]:
    """A payload for a topic the agents and the coordinator read, broken in one way."""
    kind = draw(st.sampled_from(AGENT_KINDS))
    valid = factories.BY_KIND[kind]()
    payload = encode(valid)
    how = draw(st.sampled_from(
        ["random", "truncated", "oversized", "schema_version", "field", "array", "non_finite",
         "agent", "extra"]
    ))  # fmt: skip
    if how == "random":
        return kind, draw(st.binary(max_size=300))
    if how == "truncated":
        return kind, payload[: draw(st.integers(0, max(0, len(payload) - 1)))]
    if how == "oversized":
        return kind, b"\x91" * (MAX_PAYLOAD_BYTES[kind] + draw(st.integers(1, 64)))
    data = as_dict(valid)
    if how == "schema_version":
        data["schema"] = draw(st.integers(min_value=-5, max_value=1000).filter(lambda v: v != 1))
    elif how == "field":
        data[draw(st.sampled_from(sorted(data)))] = draw(ODD_VALUES)
    elif how == "array" and kind in {Kind.EXPERIENCE, Kind.POLICY}:
        break_array(draw, kind, data)
    elif how == "non_finite":
        poison(draw, kind, data)
    elif how == "agent":
        data["agent"] = draw(st.sampled_from(["a/b", "#", "+", "", "someone-else", "x" * 80]))
    else:
        data[draw(st.text(min_size=1, max_size=8))] = draw(ODD_VALUES)
    return kind, msgspec.msgpack.encode(data)


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def coordinator() -> Coordinator:
    return Coordinator(CoordinatorConfig(society="s"), MemoryBroker(),
                       metrics_registry=CollectorRegistry())  # fmt: skip


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Agent:
    config = LearnerConfig(env_id="CartPole-v1", algo="dqn",
                           hyperparams={"buffer_size": 1000, "learning_starts": 10})  # fmt: skip
    agent = Agent(
        AgentConfig(agent_id="me", society="s", learner=config,
                    data_dir=Path(tmp_path_factory.mktemp("agent"))),
        MemoryBroker(),
    )  # fmt: skip
    learner = Learner(config, Recorder())
    agent.learner = learner
    agent.peers = PeerSnapshots(
        env_id="CartPole-v1", algo="dqn", obs_space=learner.obs_spec,
        action_space=learner.action_spec, arch=learner.arch, own_id="me",
    )  # fmt: skip
    return agent


def counted(stats: Any) -> int:
    return int(sum(stats.received.values()) + sum(stats.rejected.values()))


@settings(max_examples=2500, deadline=None, suppress_health_check=list(HealthCheck))
@given(case=hostile())
def test_hostile_payloads_crash_nothing_load_nothing_and_are_counted(
    case: tuple[Kind, bytes],
    coordinator: Coordinator,
    agent: Agent,
    loop: asyncio.AbstractEventLoop,
) -> None:
    kind, payload = case
    raw = RawMessage(topic_for(kind), payload)
    for inbox in (coordinator.inbox, agent.inbox):
        before = counted(inbox.stats)
        rejected_before = sum(inbox.stats.rejected.values())
        queued = coordinator.evaluation_backlog
        peers = len(agent.peers.latest()) if agent.peers is not None else 0
        loop.run_until_complete(inbox(raw))
        if kind not in inbox.kinds:
            assert counted(inbox.stats) == before
            continue
        assert counted(inbox.stats) == before + 1  # every message is counted, one way
        if sum(inbox.stats.rejected.values()) > rejected_before:
            # Refused: it reached nothing.
            assert coordinator.evaluation_backlog == queued
            assert agent.peers is not None
            assert len(agent.peers.latest()) == peers
            assert agent.learner is not None
            assert agent.learner.intake.empty()
    for reason in coordinator.inbox.stats.rejected:
        assert reason in REJECT_REASONS


def test_every_reason_is_exported_to_prometheus(coordinator: Coordinator) -> None:
    registry = coordinator.metrics_registry
    for reason, count in coordinator.inbox.stats.rejected.items():
        value = registry.get_sample_value("society_messages_rejected_total", {"reason": reason})
        assert value == count
    # The fuzzing above hit the main reasons.
    assert {"malformed", "schema", "schema_version", "too_large"} <= set(
        coordinator.inbox.stats.rejected
    )


def test_nothing_in_the_package_unpickles() -> None:
    """Received bytes are MessagePack only: no pickle, no torch.load, anywhere in agents/."""
    import agents

    root = Path(agents.__file__).parent
    for path in root.rglob("*.py"):
        text = path.read_text()
        for forbidden in ("pickle.load", "torch.load(", "cloudpickle", "marshal.load"):
            assert forbidden not in text, f"{path}: {forbidden}"
