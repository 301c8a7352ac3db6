"""An evaluator process: takes evaluation tasks from its topic, sends back the results.

It says ``online`` (retained) on every connection, with a Last Will ``offline`` the broker
publishes if the process dies; the coordinator hands it one task at a time on
``society/{society}/evaluators/{id}/task`` and hands the task to someone else if the evaluator
goes away (:mod:`agents.coordinator.remote`). The evaluation itself is the coordinator's own
(:func:`agents.coordinator.evaluation.evaluate_snapshot`): the task's snapshot is decoded and
validated again here, and only registered worlds, or ``module:Class`` worlds this evaluator
was told to allow, are built.

Its MQTT session is clean: what was on its way to a dead evaluator is the coordinator's to hand
out again, and no broker keeps megabytes of snapshots queued for an evaluator that never
returns. The evaluation runs in a daemon thread, so the event loop keeps the connection alive
(keepalive pings) however long it takes, and a stop does not wait for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar

from agents.bus.client import BusClient
from agents.bus.codec import encode
from agents.bus.inbox import Inbox
from agents.bus.schemas import SCHEMA_VERSION, EvaluationTask, EvaluatorPresence, Message
from agents.bus.signing import sign_with
from agents.bus.topics import DELIVERY, Kind, TopicRef, Topics, validate_name
from agents.bus.transport import Connection, ConnectOptions, Transport, WillMessage
from agents.coordinator.evaluation import EvaluationRequest, evaluate_snapshot
from agents.coordinator.tasks import result_to_wire

__all__ = ["Evaluator", "EvaluatorConfig", "EvaluatorReport"]

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class EvaluatorConfig:
    society: str
    #: The evaluator's id, also its MQTT client id; unique on the broker.
    evaluator_id: str
    allowed_envs: frozenset[str] = field(default_factory=frozenset)
    keepalive: int = 15
    #: Seconds between repeats of its ``online`` presence: a coordinator that started (or
    #: reconnected) after it finds it even on a broker that does not hand retained messages
    #: to wildcard subscriptions (RabbitMQ 3.x).
    presence_interval: float = 10.0
    #: The society's key: tasks must be signed with it, results and presence are.
    society_key: bytes | None = field(default=None, repr=False)


@dataclass(slots=True)
class EvaluatorReport:
    """What an evaluator did in its life."""

    evaluator: str
    evaluated: int = 0
    failed: int = 0
    messages_rejected: dict[str, int] = field(default_factory=dict)


class Evaluator:
    """``async with``-free: :meth:`run` serves until :meth:`stop`."""

    def __init__(self, config: EvaluatorConfig, transport: Transport) -> None:
        self.config = config
        self.id = validate_name(config.evaluator_id, "evaluator id")
        self.transport = transport
        self.topics = Topics(config.society)
        #: This process: the coordinator hands out again what an earlier one held.
        self.session = uuid.uuid4().hex[:16]
        self.inbox = Inbox(self.topics, self._on_task, kinds=(Kind.TASK,), key=config.society_key)
        self.report = EvaluatorReport(evaluator=self.id)
        self.bus: BusClient | None = None
        self._tasks: asyncio.Queue[EvaluationTask] = asyncio.Queue()
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    def _presence(self, state: str) -> bytes:
        presence = EvaluatorPresence(
            schema=SCHEMA_VERSION, evaluator=self.id, state=state,  # type: ignore[arg-type]
            session=self.session, ts=time.time(), pid=os.getpid(),
        )  # fmt: skip
        return encode(sign_with(presence, self.config.society_key))

    async def run(self) -> EvaluatorReport:
        """Serve until :meth:`stop` or until the broker refuses us for good."""
        # Online means ready: the first task should not wait seconds for torch to import.
        await asyncio.to_thread(_warm_up)
        presence_topic = self.topics.evaluator(self.id, Kind.PRESENCE)
        delivery = DELIVERY[Kind.PRESENCE]
        options = ConnectOptions(
            client_id=self.id,
            clean_session=True,
            keepalive=self.config.keepalive,
            will=WillMessage(presence_topic, self._presence("offline"), retain=delivery.retain),
        )
        async with BusClient(
            self.transport,
            options,
            subscriptions=[(self.topics.evaluator(self.id, Kind.TASK), 1)],
            handler=self.inbox,
            on_connect=self._announce,
        ) as bus:
            self.bus = bus
            workers = [asyncio.create_task(self._work()), asyncio.create_task(self._repeat())]
            stopped = asyncio.ensure_future(self._stop.wait())
            refused = asyncio.ensure_future(bus.failed.wait())
            try:
                await asyncio.wait({stopped, refused}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopped.cancel()
                refused.cancel()
                for worker in workers:
                    worker.cancel()
                await asyncio.gather(*workers, return_exceptions=True)
            if bus.fatal is not None:
                raise bus.fatal
            # A clean disconnect suppresses the Last Will: say it, so the work moves on now.
            await bus.publish_now(
                presence_topic, self._presence("offline"), qos=delivery.qos, retain=delivery.retain
            )
            await bus.flush(5.0)
        self.report.messages_rejected = dict(self.inbox.stats.rejected)
        return self.report

    async def _announce(self, connection: Connection) -> None:
        delivery = DELIVERY[Kind.PRESENCE]
        await connection.publish(
            self.topics.evaluator(self.id, Kind.PRESENCE),
            self._presence("online"),
            qos=delivery.qos,
            retain=delivery.retain,
        )
        log.info("evaluator %s online (session %s)", self.id, self.session)

    async def _repeat(self) -> None:
        """Say ``online`` again every ``presence_interval`` seconds while connected."""
        assert self.bus is not None
        delivery = DELIVERY[Kind.PRESENCE]
        topic = self.topics.evaluator(self.id, Kind.PRESENCE)
        while True:
            await asyncio.sleep(self.config.presence_interval)
            await self.bus.publish_now(
                topic, self._presence("online"), qos=delivery.qos, retain=delivery.retain
            )

    async def _on_task(self, ref: TopicRef, message: Message) -> None:  # noqa: ARG002
        assert isinstance(message, EvaluationTask)  # the inbox lets only tasks through
        self._tasks.put_nowait(message)

    async def _work(self) -> None:
        while True:
            task = await self._tasks.get()
            request = EvaluationRequest(
                payload=task.snapshot, episodes=task.episodes, seed=task.seed,
                max_episode_steps=task.max_episode_steps, allowed_envs=self.config.allowed_envs,
            )  # fmt: skip
            log.info("evaluating %s", task.task)
            result = await _in_daemon_thread(partial(evaluate_snapshot, request))
            if result.error_reason is None:
                self.report.evaluated += 1
                log.info("evaluated %s: %.2f in %.2f s", task.task, result.mean, result.seconds)
            else:
                self.report.failed += 1
                log.warning("could not evaluate %s: %s", task.task, result.error_detail)
            wire = result_to_wire(result, task=task.task, evaluator=self.id, session=self.session)
            assert self.bus is not None
            delivery = DELIVERY[Kind.RESULT]
            self.bus.enqueue(
                self.topics.evaluator(self.id, Kind.RESULT),
                encode(sign_with(wire, self.config.society_key)),
                qos=delivery.qos,
                retain=delivery.retain,
            )


def _warm_up() -> None:
    """Import what an evaluation needs (torch, stable-baselines3, the worlds) now."""
    import agents.learner.batch_actor  # noqa: PLC0415
    import agents.learner.snapshots  # noqa: PLC0415
    import agents.worlds  # noqa: F401, PLC0415


async def _in_daemon_thread(work: Callable[[], T]) -> T:
    """``work()`` in a daemon thread: the loop stays free, and exiting does not wait for it."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(outcome: Callable[[], None]) -> None:
        if not future.done():
            outcome()

    def run() -> None:
        outcome: Callable[[], None]
        try:
            value = work()
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
            error = exc
            outcome = lambda: future.set_exception(error)  # noqa: E731
        else:
            outcome = lambda: future.set_result(value)  # noqa: E731
        with contextlib.suppress(RuntimeError):  # the loop is gone: the process is stopping
            loop.call_soon_threadsafe(settle, outcome)

    threading.Thread(target=run, name="evaluation", daemon=True).start()
    return await future
