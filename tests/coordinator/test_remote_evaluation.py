"""The coordinator's side of remote evaluation, without a broker: who holds what, and when.

What goes over the bus (three evaluators, one killed) is in test_evaluators_on_mosquitto.py;
here the hand-outs, the hand-backs and the results are driven one message at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from agents.bus.codec import REJECT_REASONS, decode, encode
from agents.bus.memory import MemoryBroker
from agents.bus.schemas import EvaluationTask, PolicySnapshot, TaskResult
from agents.bus.topics import Kind, Topics
from agents.bus.transport import RawMessage
from agents.coordinator.coordinator import Coordinator, CoordinatorConfig
from agents.coordinator.evaluation import EvaluationResult
from agents.coordinator.remote import (
    MAX_ATTEMPTS,
    RemoteEvaluation,
    RemoteSettings,
    _Outstanding,
)
from agents.coordinator.tasks import result_from_wire, result_to_wire, task_id
from agents.exceptions import ConfigError, MessageRejected
from tests import factories

TOPICS = Topics("s")
EPISODES = 2


@dataclass
class Harness:
    """A RemoteEvaluation with its queue, a fake bus, a clock and what it recorded."""

    remote: RemoteEvaluation
    queue: asyncio.Queue[PolicySnapshot]
    sent: list[EvaluationTask] = field(default_factory=list)
    recorded: list[tuple[PolicySnapshot, EvaluationResult]] = field(default_factory=list)
    rejected: list[MessageRejected] = field(default_factory=list)
    now: list[float] = field(default_factory=lambda: [0.0])

    async def send(self, topic: str, payload: bytes) -> bool:
        message = decode(Kind.TASK, payload)
        assert isinstance(message, EvaluationTask)
        assert topic == TOPICS.evaluator(message.evaluator, Kind.TASK)
        self.sent.append(message)
        return True

    async def settle(self) -> None:
        for _ in range(20):
            await asyncio.sleep(0)

    def holders(self) -> dict[str, str]:
        return {tid: task.evaluator for tid, task in self.remote.outstanding.items()}


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    queue: asyncio.Queue[PolicySnapshot] = asyncio.Queue()
    box: list[Harness] = []
    remote = RemoteEvaluation(
        TOPICS, queue, RemoteSettings(episodes=EPISODES, seed=10_000, timeout=60.0),
        record=lambda snapshot, result: box[0].recorded.append((snapshot, result)),
        reject=lambda _topic, exc: box[0].rejected.append(exc),
        moot=lambda _snapshot: False, clock=lambda: box[0].now[0],
    )  # fmt: skip
    box.append(Harness(remote, queue))
    connected = asyncio.Event()
    connected.set()
    dispatcher = asyncio.create_task(remote.dispatch(box[0].send, connected))
    try:
        yield box[0]
    finally:
        dispatcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await dispatcher


def result_for(task: EvaluationTask, *, episodes: int = EPISODES) -> TaskResult:
    return factories.task_result(evaluator=task.evaluator, task_id=task.task, episodes=episodes)


async def test_each_evaluator_gets_one_task_and_a_result_is_recorded_once(
    harness: Harness,
) -> None:
    for name in ("e1", "e2"):
        harness.remote.on_presence(factories.presence(name))
    for version in (1, 2, 3):
        harness.queue.put_nowait(factories.snapshot("a0", version))
    await harness.settle()
    # One task each; the third waits in the queue for a free evaluator.
    assert sorted(task.evaluator for task in harness.sent) == ["e1", "e2"]
    assert harness.queue.qsize() == 1
    first = harness.sent[0]
    harness.remote.on_result(result_for(first))
    harness.remote.on_result(result_for(first))  # the same result delivered again
    await harness.settle()
    assert [snapshot.version for snapshot, _ in harness.recorded] == [1]
    assert harness.recorded[0][1].returns == [10.0, 11.0]
    assert harness.remote.stats.duplicates == 1
    # The evaluator that answered is free again and takes the third snapshot.
    assert len(harness.sent) == 3
    assert harness.sent[2].evaluator == first.evaluator
    assert harness.sent[2].task == task_id(factories.snapshot("a0", 3))


async def test_an_evaluator_that_dies_hands_its_work_to_another_and_its_late_answer_is_dropped(
    harness: Harness,
) -> None:
    harness.remote.on_presence(factories.presence("e1"))
    harness.queue.put_nowait(factories.snapshot("a0", 1))
    await harness.settle()
    [held] = harness.sent
    assert held.evaluator == "e1"
    # Its Last Will: the work goes back to the queue, and to the next evaluator that comes.
    harness.remote.on_presence(factories.presence("e1", "offline"))
    assert harness.remote.stats.reissued == 1
    assert harness.queue.qsize() == 1
    harness.remote.on_presence(factories.presence("e2"))
    await harness.settle()
    assert [task.evaluator for task in harness.sent] == ["e1", "e2"]
    assert harness.holders() == {held.task: "e2"}
    # e2 answers; e1's answer, had it got out before it died, changes nothing.
    harness.remote.on_result(result_for(harness.sent[1]))
    harness.remote.on_result(result_for(held))
    assert len(harness.recorded) == 1
    assert harness.remote.stats.duplicates == 1
    assert harness.remote.outstanding == {}


async def test_the_first_answer_wins_whoever_sends_it(harness: Harness) -> None:
    harness.remote.on_presence(factories.presence("e1"))
    harness.queue.put_nowait(factories.snapshot("a0", 1))
    await harness.settle()
    harness.remote.on_presence(factories.presence("e1", "online", session="s2"))  # restarted
    harness.remote.on_presence(factories.presence("e2"))
    await harness.settle()
    assert harness.remote.stats.reissued == 1
    [old, new] = harness.sent
    assert old.task == new.task
    # The old process's result arrives first (it was on its way): recorded; e2's is dropped.
    harness.remote.on_result(result_for(old))
    harness.remote.on_result(result_for(new))
    assert len(harness.recorded) == 1
    assert harness.remote.stats.duplicates == 1


async def test_a_retained_presence_seen_again_takes_nothing_away(harness: Harness) -> None:
    harness.remote.on_presence(factories.presence("e1"))
    harness.queue.put_nowait(factories.snapshot("a0", 1))
    await harness.settle()
    harness.remote.on_presence(factories.presence("e1"))  # same process, same session
    assert harness.remote.stats.reissued == 0
    assert len(harness.remote.outstanding) == 1


async def test_an_unanswered_task_is_handed_out_again_after_the_timeout(
    harness: Harness,
) -> None:
    harness.remote.on_presence(factories.presence("e1"))
    harness.queue.put_nowait(factories.snapshot("a0", 1))
    await harness.settle()
    harness.now[0] = 59.0
    assert harness.remote.expire() == 0
    harness.now[0] = 60.0
    assert harness.remote.expire() == 1
    # e1 is stuck: it gets no more work. e2 comes and takes it.
    await harness.settle()
    assert len(harness.sent) == 1
    harness.remote.on_presence(factories.presence("e2"))
    await harness.settle()
    assert [task.evaluator for task in harness.sent] == ["e1", "e2"]
    harness.remote.on_result(result_for(harness.sent[1]))
    assert len(harness.recorded) == 1


async def test_a_result_that_does_not_fit_its_task_is_rejected_and_the_work_handed_out_again(
    harness: Harness,
) -> None:
    harness.remote.on_presence(factories.presence("e1"))
    harness.queue.put_nowait(factories.snapshot("a0", 1))
    for attempt in range(1, MAX_ATTEMPTS + 1):
        await harness.settle()
        assert len(harness.sent) == attempt
        harness.remote.on_result(result_for(harness.sent[-1], episodes=EPISODES + 1))
        assert [exc.reason for exc in harness.rejected] == ["invalid"] * attempt
    # An evaluator that keeps answering nonsense does not keep the work circling for ever.
    [(snapshot, result)] = harness.recorded
    assert snapshot.version == 1
    assert result.error_reason == "invalid"
    assert harness.remote.stats.reissued == MAX_ATTEMPTS - 1


async def test_evaluators_beyond_the_cap_are_refused(harness: Harness) -> None:
    remote = RemoteEvaluation(
        TOPICS, harness.queue, RemoteSettings(episodes=1, seed=0, max_evaluators=2),
        record=lambda *_: None, reject=lambda _topic, exc: harness.rejected.append(exc),
        moot=lambda _snapshot: False,
    )  # fmt: skip
    for name in ("e1", "e2", "e3"):
        remote.on_presence(factories.presence(name))
    assert sorted(remote.seats) == ["e1", "e2"]
    assert [exc.reason for exc in harness.rejected] == ["capacity"]


def test_a_result_goes_over_the_wire_and_comes_back_the_same() -> None:
    task = factories.task()
    wire = factories.task_result(task_id=task.task)
    result = result_from_wire(wire)
    assert result_to_wire(result, task=task.task, evaluator="e0", session="s1").regimes == (
        wire.regimes
    )
    assert result.mean == pytest.approx(10.5)
    assert result.baseline_mean == pytest.approx(20.0)
    failed = EvaluationResult(error_reason="incompatible", error_detail="spaces differ")
    back = result_from_wire(result_to_wire(failed, task="t", evaluator="e0", session="s1"))
    assert (back.error_reason, back.error_detail) == ("incompatible", "spaces differ")


# --- in the coordinator: what comes from evaluators is validated like anything else ---------


def coordinator(*, eval_workers: int = 1, remote_evaluators: bool = True) -> Coordinator:
    config = CoordinatorConfig(
        society="s", eval_episodes=EPISODES, eval_workers=eval_workers,
        remote_evaluators=remote_evaluators,
    )  # fmt: skip
    return Coordinator(config, MemoryBroker(), metrics_registry=CollectorRegistry())


def _bad_results() -> list[tuple[str, bytes]]:
    valid = msgspec.to_builtins(factories.task_result(), builtin_types=(bytes,))

    def mutated(**changes: object) -> bytes:
        return msgspec.msgpack.encode({**valid, **changes})

    return [
        ("malformed", b"\xc1 not msgpack"),
        ("schema", mutated(regimes="many")),
        ("non_finite", mutated(seconds=float("nan"))),
        ("invalid", mutated(error_reason="anything I like")),
        ("invalid", mutated(regimes=[])),
        ("topic", mutated(evaluator="someone-else")),
        ("too_large", b"\x91" * (2 << 20)),
    ]


@pytest.mark.parametrize(("reason", "payload"), _bad_results(), ids=lambda v: str(v)[:12])
async def test_a_bad_result_is_rejected_counted_and_changes_nothing(
    reason: str, payload: bytes
) -> None:
    society = coordinator()
    assert society.remote is not None
    society.remote.on_presence(factories.presence("e0"))
    await society.inbox(RawMessage(TOPICS.evaluator("e0", Kind.RESULT), payload))
    assert society.inbox.stats.rejected == {reason: 1}
    assert society.evaluations_done == 0
    metric = society.metrics_registry.get_sample_value(
        "society_messages_rejected_total", {"reason": reason}
    )
    assert metric == 1


async def test_results_for_work_never_handed_out_are_dropped() -> None:
    society = coordinator()
    payload = encode(factories.task_result(task_id="a0:1:0"))
    await society.inbox(RawMessage(TOPICS.evaluator("e0", Kind.RESULT), payload))
    assert society.evaluations_done == 0
    assert society.remote_stats.duplicates == 1


async def test_evaluator_messages_are_ignored_without_remote_evaluation() -> None:
    society = coordinator(remote_evaluators=False)
    assert society.remote is None
    await society.inbox(RawMessage(TOPICS.evaluator("e0", Kind.PRESENCE), b"junk"))
    assert society.inbox.stats.rejected == {}
    assert society.remote_stats.online == 0


def test_a_coordinator_that_nobody_evaluates_for_is_refused() -> None:
    with pytest.raises(ConfigError, match="--remote-evaluators"):
        coordinator(eval_workers=0, remote_evaluators=False)
    assert coordinator(eval_workers=0).remote is not None


ODD = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.text(max_size=20),
    st.floats(allow_nan=True, allow_infinity=True), st.binary(max_size=20),
    st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=3),
)  # fmt: skip


@st.composite
def hostile_evaluator_message(draw: st.DrawFn) -> tuple[Kind, bytes]:
    """A presence or a result for outstanding work, broken in one way (or not at all)."""
    kind = draw(st.sampled_from([Kind.PRESENCE, Kind.RESULT]))
    valid = factories.presence("e0") if kind is Kind.PRESENCE else factories.task_result("e0")
    data = msgspec.to_builtins(valid, builtin_types=(bytes,))
    how = draw(st.sampled_from(["random", "truncated", "field", "extra", "regime", "none"]))
    if how == "random":
        return kind, draw(st.binary(max_size=200))
    payload = encode(valid)
    if how == "truncated":
        return kind, payload[: draw(st.integers(0, len(payload) - 1))]
    if how == "field":
        data[draw(st.sampled_from(sorted(data)))] = draw(ODD)
    elif how == "extra":
        data[draw(st.text(min_size=1, max_size=8))] = draw(ODD)
    elif how == "regime" and kind is Kind.RESULT:
        data["regimes"][0][draw(st.sampled_from(sorted(data["regimes"][0])))] = draw(ODD)
    return kind, msgspec.msgpack.encode(data)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(case=hostile_evaluator_message())
def test_hostile_evaluator_messages_crash_nothing_and_are_counted_once(
    case: tuple[Kind, bytes],
) -> None:
    kind, payload = case
    society = coordinator()
    assert society.remote is not None
    society.remote.on_presence(factories.presence("e0"))
    snapshot = factories.snapshot("a0", 1)
    society.roster.on_snapshot(snapshot)
    society.remote.outstanding[task_id(snapshot)] = _Outstanding(snapshot, "e0", 0.0)
    stats = society.inbox.stats
    asyncio.run(society.inbox(RawMessage(TOPICS.evaluator("e0", kind), payload)))
    # Refused by the inbox, or received (and then, not fitting its task, refused once more by
    # the coordinator, as a snapshot whose spaces do not fit its world is).
    assert sum(stats.received.values()) + sum(stats.rejected.values()) >= 1
    assert sum(stats.rejected.values()) <= 1
    assert set(stats.rejected) <= set(REJECT_REASONS)
    if stats.rejected:  # a refused result settles nothing: the work is still to be done
        assert society.evaluations_done == 0
        assert len(society.remote.outstanding) + society.evaluation_backlog == 1
    assert society.evaluations_done + society.evaluation_failures <= 1
