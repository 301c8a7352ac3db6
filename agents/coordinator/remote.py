"""Evaluation by ``society evaluator`` processes anywhere on the bus, nothing lost.

The coordinator hands out the work itself, one task at a time to each evaluator that says it
is online, on the evaluator's own topic (``society/{society}/evaluators/{id}/task``). That is a
work queue made of MQTT 3.1.1 point-to-point topics, which every broker the project supports
carries; MQTT 5 shared subscriptions would have done the spreading in the broker, but neither
RabbitMQ's MQTT plugin nor NATS's MQTT gateway has them, and a shared subscription does not
hand back the work of a subscriber that died after its PUBACK (docs/scaling.md).

Nothing is lost because nothing is forgotten until its result is recorded: every task stays
*outstanding* here (and its snapshot stays in the history's pending table) until a result for
it arrives. It goes back to the queue, to another evaluator or to the coordinator's own
workers, when

- its evaluator's presence changes: its Last Will (``offline``, published by the broker the
  moment the connection drops, a hung one after 1.5 keepalives), a clean ``offline``, or an
  ``online`` of a new process of the same id; or
- it has been outstanding for ``timeout`` seconds (an evaluator that is connected but stuck:
  it is then given no more work until it answers).

Results are recorded once per task: the first valid one wins, whoever sent it; later ones (a
slow evaluator's answer to work handed out again) are counted as duplicates and dropped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from agents.bus.codec import encode
from agents.bus.schemas import (
    SCHEMA_VERSION,
    EvaluationTask,
    EvaluatorPresence,
    PolicySnapshot,
    TaskResult,
)
from agents.bus.signing import sign_with
from agents.bus.topics import Kind, Topics
from agents.coordinator.evaluation import EvaluationResult
from agents.coordinator.tasks import result_from_wire, task_id
from agents.exceptions import MessageRejected

__all__ = ["RemoteEvaluation", "RemoteSettings", "RemoteStats"]

log = logging.getLogger(__name__)

#: Sends ``payload`` on ``topic`` now (QoS 1); False when not connected.
Send = Callable[[str, bytes], Awaitable[bool]]
#: Records a snapshot's evaluation (the coordinator's ``_record``).
Record = Callable[[PolicySnapshot, EvaluationResult], None]
#: Counts a rejected message, as the inbox does.
Reject = Callable[[str, MessageRejected], None]
#: Whether a snapshot's evaluation is moot (its agent started a new life); forgets it if so.
Moot = Callable[[PolicySnapshot], bool]

#: A task answered with an invalid result this often is recorded as failed, not handed out
#: again: an evaluator that always answers nonsense must not keep the work circling.
MAX_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class RemoteSettings:
    """What every task asks of an evaluator, and how long it may take."""

    episodes: int
    seed: int
    max_episode_steps: int = 10_000
    #: Seconds a task may stay unanswered before it is handed out again.
    timeout: float = 600.0
    #: The most evaluators kept track of; presences of further ones are refused (capacity).
    max_evaluators: int = 1000
    key: bytes | None = field(default=None, repr=False)


@dataclass(slots=True)
class RemoteStats:
    """Counters of remote evaluation, for metrics and the summary."""

    online: int = 0
    outstanding: int = 0
    sent: int = 0
    recorded: int = 0
    reissued: int = 0
    duplicates: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "evaluators_online": self.online,
            "outstanding": self.outstanding,
            "tasks_sent": self.sent,
            "results_recorded": self.recorded,
            "reissued": self.reissued,
            "duplicate_results": self.duplicates,
        }


@dataclass(slots=True)
class _Seat:
    """An online evaluator: the process (``session``) and the tasks it holds."""

    evaluator: str
    session: str
    busy: set[str] = field(default_factory=set)
    last_assigned: float = 0.0


@dataclass(slots=True)
class _Outstanding:
    snapshot: PolicySnapshot
    evaluator: str
    sent_at: float


class RemoteEvaluation:
    """The coordinator's side of remote evaluation: seats, outstanding tasks, hand-outs.

    :meth:`dispatch` takes snapshots from the coordinator's evaluation queue (the one its own
    workers take from) whenever an evaluator is free; :meth:`on_presence` and
    :meth:`on_result` are fed by the coordinator's inbox; :meth:`watch` hands out again what
    timed out.
    """

    def __init__(
        self,
        topics: Topics,
        queue: asyncio.Queue[PolicySnapshot],
        settings: RemoteSettings,
        *,
        record: Record,
        reject: Reject,
        moot: Moot,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.topics = topics
        self.queue = queue
        self.settings = settings
        self._record = record
        self._reject = reject
        self._moot = moot
        self._clock = clock
        self.seats: dict[str, _Seat] = {}
        self.outstanding: dict[str, _Outstanding] = {}
        self._attempts: dict[str, int] = {}
        self._counts = RemoteStats()
        self._changed = asyncio.Event()

    @property
    def stats(self) -> RemoteStats:
        stats = self._counts
        stats.online, stats.outstanding = len(self.seats), len(self.outstanding)
        return stats

    # --- presence -----------------------------------------------------------------------

    def on_presence(self, presence: EvaluatorPresence) -> None:
        """An evaluator came or went: what it held goes back to the queue."""
        seat = self.seats.get(presence.evaluator)
        if presence.state == "online" and seat is not None and seat.session == presence.session:
            return  # the same process again (a retained presence delivered anew)
        if (
            seat is None
            and presence.state == "online"
            and len(self.seats) >= (self.settings.max_evaluators)
        ):
            topic = self.topics.evaluator(presence.evaluator, Kind.PRESENCE)
            detail = f"{presence.evaluator!r} would be evaluator {len(self.seats) + 1}"
            self._reject(topic, MessageRejected("capacity", detail))
            return
        self._hand_back(presence.evaluator, why=f"evaluator {presence.evaluator} {presence.state}")
        if presence.state == "online":
            self.seats[presence.evaluator] = _Seat(presence.evaluator, presence.session)
            log.info("evaluator %s is online", presence.evaluator)
        elif self.seats.pop(presence.evaluator, None) is not None:
            log.info("evaluator %s is offline", presence.evaluator)
        self._changed.set()

    def _hand_back(self, evaluator: str, *, why: str) -> None:
        held = [tid for tid, task in self.outstanding.items() if task.evaluator == evaluator]
        for tid in held:
            self._reissue(tid, why=why)

    def _reissue(self, tid: str, *, why: str) -> None:
        task = self.outstanding.pop(tid)
        self._counts.reissued += 1
        log.warning("evaluation %s handed out again (%s)", tid, why)
        self.queue.put_nowait(task.snapshot)

    # --- results ------------------------------------------------------------------------

    def on_result(self, message: TaskResult) -> None:
        """Record the first valid result of an outstanding task; count any other."""
        seat = self.seats.get(message.evaluator)
        if seat is not None:
            seat.busy.discard(message.task)
            self._changed.set()
        task = self.outstanding.get(message.task)
        if task is None:
            # Recorded already (another evaluator answered first), or moot: at most once.
            self._counts.duplicates += 1
            log.debug("result for %s from %s: not outstanding", message.task, message.evaluator)
            return
        topic = self.topics.evaluator(message.evaluator, Kind.RESULT)
        problem = self._mismatch(message)
        if problem is not None:
            self._reject(topic, MessageRejected("invalid", problem))
            attempts = self._attempts[message.task] = self._attempts.get(message.task, 0) + 1
            if attempts < MAX_ATTEMPTS:
                self._reissue(message.task, why=f"invalid result from {message.evaluator}")
                return
            result = EvaluationResult(error_reason="invalid", error_detail=problem)
        else:
            result = result_from_wire(message)
        del self.outstanding[message.task]
        self._attempts.pop(message.task, None)
        self._counts.recorded += 1
        self._record(task.snapshot, result)

    def _mismatch(self, message: TaskResult) -> str | None:
        """Why a well-formed result cannot be the task's (None: it can)."""
        if message.error_reason:
            return None
        episodes = self.settings.episodes
        for outcome in message.regimes:
            for name in ("returns", "baseline_returns", "random_returns", "recall_returns"):
                values = getattr(outcome, name)
                if values is not None and len(values) != episodes:
                    return f"{name} of {outcome.regime!r}: {len(values)}, asked for {episodes}"
        names = [outcome.regime for outcome in message.regimes]
        if len(set(names)) != len(names):
            return "a regime reported twice"
        return None

    # --- handing out --------------------------------------------------------------------

    def _free_seat(self) -> _Seat | None:
        free = [seat for seat in self.seats.values() if not seat.busy]
        return min(free, key=lambda seat: seat.last_assigned, default=None)

    async def _wait_for_seat(self) -> _Seat:
        while (seat := self._free_seat()) is None:
            self._changed.clear()
            await self._changed.wait()
        return seat

    async def dispatch(self, send: Send, connected: asyncio.Event) -> None:
        """Hand queued snapshots to free evaluators, one task each, until cancelled.

        A snapshot is taken from the queue only while an evaluator is free and the bus is
        connected; one that cannot be handed out after all goes back to the queue, for
        whoever is free first (the coordinator's own workers included).
        """
        while True:
            await self._wait_for_seat()
            await connected.wait()
            snapshot = await self.queue.get()
            if self._moot(snapshot):
                continue
            seat = self._free_seat()  # the queue may have taken a while: look again
            sent = False
            try:
                if seat is not None:
                    sent = await self._assign(snapshot, seat, send)
            finally:
                if not sent:
                    self.queue.put_nowait(snapshot)
            if seat is not None and not sent:
                await asyncio.sleep(0.5)  # the connection dropped just now: again soon

    async def _assign(self, snapshot: PolicySnapshot, seat: _Seat, send: Send) -> bool:
        tid = task_id(snapshot)
        settings = self.settings
        task = EvaluationTask(
            schema=SCHEMA_VERSION, task=tid, evaluator=seat.evaluator, session=seat.session,
            snapshot=encode(snapshot), episodes=settings.episodes, seed=settings.seed,
            max_episode_steps=settings.max_episode_steps, ts=time.time(),
        )  # fmt: skip
        payload = encode(sign_with(task, settings.key))
        now = self._clock()
        self.outstanding[tid] = _Outstanding(snapshot, seat.evaluator, now)
        seat.busy.add(tid)
        seat.last_assigned = now
        if not await send(self.topics.evaluator(seat.evaluator, Kind.TASK), payload):
            seat.busy.discard(tid)
            self.outstanding.pop(tid, None)
            return False
        self._counts.sent += 1
        log.debug("evaluation %s handed to %s", tid, seat.evaluator)
        return True

    def expire(self) -> int:
        """Hand out again every task outstanding longer than the timeout; how many."""
        deadline = self._clock() - self.settings.timeout
        late = [tid for tid, task in self.outstanding.items() if task.sent_at <= deadline]
        for tid in late:
            evaluator = self.outstanding[tid].evaluator
            self._reissue(tid, why=f"{evaluator} did not answer in {self.settings.timeout:g} s")
        return len(late)

    async def watch(self) -> None:
        """Call :meth:`expire` a few times per timeout, until cancelled."""
        interval = min(5.0, max(0.05, self.settings.timeout / 4))
        while True:
            await asyncio.sleep(interval)
            self.expire()
