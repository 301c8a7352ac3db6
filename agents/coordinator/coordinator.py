"""The coordinator process: roster, evaluation, metrics and history of one society.

It subscribes to every agent's status, telemetry, experience and snapshots; keeps the
:class:`~agents.coordinator.roster.Roster`; evaluates every new snapshot in a process pool
(off the event loop) on fixed seeds; publishes each evaluation and a retained leaderboard;
records the run in SQLite; and serves Prometheus metrics. Its MQTT session is persistent
(clean session off), so messages sent while it is down wait for it at the broker.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, start_http_server

from agents._atomic import write_text_atomically
from agents.bus.client import BusClient, BusStats
from agents.bus.codec import MAX_MISSING_LISTED, RECEIPTED_KINDS, encode
from agents.bus.inbox import Inbox
from agents.bus.outbox import Outbox
from agents.bus.schemas import (
    SCHEMA_VERSION,
    Directive,
    Evaluation,
    EvaluatorPresence,
    ExperienceBatch,
    Leaderboard,
    LeaderboardEntry,
    Lineage,
    Message,
    PolicySnapshot,
    Receipt,
    RegimeScore,
    Status,
    StreamReceipt,
    TaskResult,
    Telemetry,
)
from agents.bus.signing import sign_with
from agents.bus.topics import DELIVERY, Kind, TopicRef, Topics
from agents.bus.transport import ConnectOptions, Transport
from agents.coordinator.evaluation import (
    EvaluationRequest,
    EvaluationResult,
    evaluate_snapshot,
    make_pool,
)
from agents.coordinator.evolution import Member, Order, plan_generation
from agents.coordinator.history import History
from agents.coordinator.metrics import register_metrics
from agents.coordinator.remote import RemoteEvaluation, RemoteSettings, RemoteStats
from agents.coordinator.roster import Roster
from agents.coordinator.sharing import SharingGain, ThresholdScale, sharing_gain
from agents.coordinator.sharing import score as scale_score
from agents.exceptions import ConfigError, MessageRejected
from agents.hooks import CoordinatorHook, HookRunner

__all__ = ["Coordinator", "CoordinatorConfig"]

log = logging.getLogger(__name__)

_SUBSCRIBED = (Kind.STATUS, Kind.TELEMETRY, Kind.EXPERIENCE, Kind.POLICY)
#: What the coordinator takes in from ``society evaluator`` processes, when it uses them.
_FROM_EVALUATORS = (Kind.PRESENCE, Kind.RESULT)


@dataclass(frozen=True, slots=True)
class CoordinatorConfig:
    society: str
    data_dir: Path | None = None
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    eval_episodes: int = 5
    eval_seed: int = 10_000
    #: Evaluation worker processes of its own (0: only remote evaluators evaluate).
    eval_workers: int = 1
    #: Hand snapshots also to ``society evaluator`` processes on the bus (docs/scaling.md).
    remote_evaluators: bool = False
    #: Seconds a remote evaluation may stay unanswered before it is handed out again.
    remote_eval_timeout: float = 600.0
    allowed_envs: frozenset[str] = field(default_factory=frozenset)
    keepalive: int = 15
    #: Seconds between receipts to agents whose numbered streams changed.
    receipt_interval: float = 1.0
    #: Seconds between generations of population-based training; 0: not by the clock.
    evolution_interval: float = 0.0
    #: An agent is ready for evolution each time it has lived this many more steps since it
    #: last was (per agent, as in Jaderberg et al. 2017); 0: not by steps.
    evolution_every_steps: int = 0
    evolution_quantile: float = 0.25
    #: The evaluation return that counts as "learned", for the sharing gain (None: not set).
    threshold: float | None = None
    threshold_scale: ThresholdScale = ThresholdScale.RETURN
    threshold_window: int = 1
    seed: int = 0
    #: The society's key: sign directives, require signed snapshots.
    society_key: bytes | None = field(default=None, repr=False)
    #: The most agents it keeps track of (records, metric series); messages from further
    #: senders are refused as ``capacity``.
    max_agents: int = 1000
    #: Mark thermostat agents that die ``offline`` in Home Assistant (their Last Will is
    #: MessagePack, which Home Assistant cannot read).
    #: Integrations told of agents' status changes (agents.hooks).
    hooks: tuple[CoordinatorHook, ...] = ()

    @property
    def client_id(self) -> str:
        return f"{self.society}-coordinator"


class Coordinator:
    def __init__(
        self,
        config: CoordinatorConfig,
        transport: Transport,
        *,
        metrics_registry: CollectorRegistry | None = None,
    ) -> None:
        if config.eval_workers < 0 or (config.eval_workers == 0 and not config.remote_evaluators):
            msg = "--eval-workers 0 needs --remote-evaluators: someone must evaluate"
            raise ConfigError(msg)
        self.config = config
        self.transport = transport
        self.topics = Topics(config.society)
        self.roster = Roster()
        #: Calls the integrations' hooks; counts the calls that raised.
        self.hook_runner = HookRunner()
        kinds = _SUBSCRIBED + (_FROM_EVALUATORS if config.remote_evaluators else ())
        self.inbox = Inbox(
            self.topics, self._on_message, kinds=kinds, key=config.society_key,
            numbered_from_one=True, admit=self._admit,
        )  # fmt: skip
        self.metrics_registry = metrics_registry or CollectorRegistry()
        self.evaluation_seconds: Histogram = register_metrics(self, self.metrics_registry)
        self.metrics_port: int | None = None
        self.evaluations_done = 0
        self.evaluation_failures = 0
        self.directives_sent = 0
        self._rng = random.Random(config.seed)  # noqa: S311 - evolution, not cryptography
        self.bus: BusClient | None = None
        self.history = History(None)
        self._queue: asyncio.Queue[PolicySnapshot] = asyncio.Queue()
        self.remote: RemoteEvaluation | None = None
        if config.remote_evaluators:
            settings = RemoteSettings(
                episodes=config.eval_episodes, seed=config.eval_seed,
                timeout=config.remote_eval_timeout, key=config.society_key,
            )  # fmt: skip
            self.remote = RemoteEvaluation(
                self.topics, self._queue, settings, record=self._record,
                reject=self.inbox.count_rejection, moot=self._moot,
            )  # fmt: skip
        self._pool: ProcessPoolExecutor | None = None
        self._stop = asyncio.Event()

    @property
    def bus_stats(self) -> BusStats | None:
        return self.bus.stats if self.bus is not None else None

    @property
    def evaluation_backlog(self) -> int:
        return self._queue.qsize()

    @property
    def remote_stats(self) -> RemoteStats:
        """Remote evaluation's counters (all zero when it is off)."""
        return self.remote.stats if self.remote is not None else RemoteStats()

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> dict[str, Any]:
        """Serve until :meth:`stop`; returns the summary (also written to the data folder)."""
        config = self.config
        data_dir = config.data_dir
        if data_dir is not None:
            data_dir.mkdir(parents=True, exist_ok=True)
            self.history = History(data_dir / "history.sqlite")
            self._restore()
        outbox = Outbox(data_dir / "outbox.sqlite" if data_dir is not None else None)
        self._pool = make_pool(config.eval_workers) if config.eval_workers > 0 else None
        server = None
        if config.metrics_port is not None:
            server, _thread = start_http_server(
                config.metrics_port, config.metrics_host, registry=self.metrics_registry
            )
            self.metrics_port = int(server.server_port)
            log.info("metrics on http://%s:%d/metrics", config.metrics_host, self.metrics_port)
        options = ConnectOptions(
            client_id=config.client_id, clean_session=False, keepalive=config.keepalive
        )
        subscriptions = [(self.topics.agents_filter(kind), 1) for kind in _SUBSCRIBED]
        if self.remote is not None:
            subscriptions += [(self.topics.evaluators_filter(k), 1) for k in _FROM_EVALUATORS]
        try:
            async with BusClient(
                self.transport,
                options,
                outbox=outbox,
                subscriptions=subscriptions,
                handler=self.inbox,
            ) as bus:
                self.bus = bus
                workers = self._start_workers(bus)
                try:
                    # Until stopped, or refused by the broker for good (credentials, or a TLS
                    # certificate it cannot verify): then it stops and says so.
                    stopped = asyncio.ensure_future(self._stop.wait())
                    refused = asyncio.ensure_future(bus.failed.wait())
                    await asyncio.wait({stopped, refused}, return_when=asyncio.FIRST_COMPLETED)
                    stopped.cancel()
                    refused.cancel()
                finally:
                    for worker in workers:
                        worker.cancel()
                    await asyncio.gather(*workers, return_exceptions=True)
                if bus.fatal is not None:
                    raise bus.fatal
                await bus.flush(5.0)
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
            if server is not None:
                server.shutdown()
                server.server_close()
            outbox.close()
        self.record_health()
        summary = self.summary()
        if data_dir is not None:
            write_text_atomically(data_dir / "coordinator.json", json.dumps(summary, indent=2))
        self.history.close()
        return summary

    def _start_workers(self, bus: BusClient) -> list[asyncio.Task[None]]:
        """The coordinator's loops: evaluation (its own, remote), evolution, health, receipts."""
        config = self.config
        workers = [
            asyncio.create_task(self._evaluation_worker()) for _ in range(config.eval_workers)
        ]
        if self.remote is not None:
            workers.append(asyncio.create_task(self.remote.dispatch(self._send_now, bus.connected)))
            workers.append(asyncio.create_task(self.remote.watch()))
        if config.evolution_interval > 0:
            workers.append(asyncio.create_task(self._evolution_loop()))
        workers.append(asyncio.create_task(self._health_loop()))
        workers.append(asyncio.create_task(self._receipt_loop()))
        return workers

    def sharing(self) -> SharingGain | None:
        if self.config.threshold is None:
            return None
        return sharing_gain(
            self.roster.agents,
            self.config.threshold,
            scale=self.config.threshold_scale,
            window=self.config.threshold_window,
        )

    def _restore(self) -> None:
        """Pick up where a previous coordinator of this data folder left off.

        The roster comes back from the history (evaluations, snapshots, experience received,
        training episodes) and the de-duplication state with it, so messages the broker
        delivers again (retained snapshots, a persistent session's queue) are not counted or
        evaluated twice. Presence comes back from the retained statuses on subscribing.
        """
        roster = self.roster
        for (
            agent,
            version,
            step,
            algo,
            env_id,
            lineage,
            hyperparams,
        ) in self.history.snapshot_rows():
            roster.restore_snapshot(
                agent, version, step=step, algo=algo, env_id=env_id, lineage=lineage,
                hyperparams=hyperparams,
            )  # fmt: skip
            self.inbox.remember(Kind.POLICY, agent, version)
        for agent, seq in self.history.experience_seen():
            roster.on_experience(agent)
            self.inbox.remember(Kind.EXPERIENCE, agent, seq)
        for agent, seq in self.history.telemetry_seen():
            self.inbox.remember(Kind.TELEMETRY, agent, seq)
        for agent, step, regime, value in self.history.episode_rows():
            record = roster.get(agent)
            record.episode_log.append((step, regime, value))
            record.last_episode_step = max(record.last_episode_step, step)
        for agent, count in self.history.relearned_counts().items():
            roster.get(agent).episodes_relearned = count
        evaluations = self.history.evaluations_messages()
        for evaluation in evaluations:
            roster.on_evaluation(evaluation)
        self.evaluations_done = len(evaluations)
        self.directives_sent = self.history.directives_count()
        for snapshot in self.history.pending():
            self._queue.put_nowait(snapshot)  # received before the restart, not yet evaluated
        if roster.agents:
            log.info(
                "restored %d agents, %d evaluations from the history",
                len(roster.agents), len(evaluations),
            )  # fmt: skip

    def summary(self) -> dict[str, Any]:
        stats = self.inbox.stats
        gain = self.sharing()
        return {
            "society": self.config.society,
            "sharing": gain.as_dict() if gain is not None else None,
            "evolution_directives": self.directives_sent,
            "lineage": self.history.lineage(),
            "snapshots_evaluated": self.evaluations_done,
            "evaluation_failures": self.evaluation_failures,
            "remote_evaluation": self.remote_stats.as_dict() if self.remote is not None else None,
            "messages_received": sum(stats.received.values()),
            "messages_received_by_kind": dict(stats.received),
            "messages_rejected": sum(stats.rejected.values()),
            "messages_rejected_by_reason": dict(stats.rejected),
            "messages_duplicate_by_kind": dict(stats.duplicates),
            "delivery": self.delivery(),
            # The run's groups: who learned from whom at any point (the live table and
            # Prometheus show the latest rounds' instead).
            "groups": self.roster.groups_in_run(),
            "agents": self.roster.summaries(),
        }

    # --- incoming -------------------------------------------------------------------------

    def _admit(self, ref: TopicRef, message: Message) -> None:  # noqa: ARG002 - Admit's signature
        """The coordinator's own refusals, before the inbox counts a message (Inbox ``admit``).

        Raises:
            MessageRejected: ``capacity`` (a new agent beyond ``max_agents``) or ``stale``
                (a message of an agent's earlier life).
        """
        if isinstance(message, EvaluatorPresence | TaskResult):
            return  # evaluators' messages: the remote evaluation's own checks
        sender = getattr(message, "agent", None)
        if not isinstance(sender, str):
            return
        if sender not in self.roster.agents and len(self.roster.agents) >= self.config.max_agents:
            # Whoever can publish could invent agents by the thousand; each would cost a
            # record and its metric series. Beyond the cap, new senders are refused, counted.
            cap = self.config.max_agents
            detail = f"{sender!r} would be agent {len(self.roster.agents) + 1} (cap {cap})"
            raise MessageRejected("capacity", detail)
        self._of_current_life(sender, message)

    async def _on_message(self, ref: TopicRef, message: Message) -> None:
        if isinstance(message, EvaluatorPresence | TaskResult):
            # Only subscribed (and let through by the inbox) with remote evaluation on.
            assert self.remote is not None
            if isinstance(message, EvaluatorPresence):
                self.remote.on_presence(message)
            else:
                self.remote.on_result(message)
            return
        if isinstance(message, Status):
            before = self.roster.get(message.agent).state
            record = self.roster.on_status(message)
            if record.state != before:
                log.info("agent %s is %s", record.id, record.state)
                self.history.record_presence(record.id, record.state)
                await self._tell_hooks(message)
        elif isinstance(message, Telemetry):
            record = self.roster.on_telemetry(message)
            self.history.record_telemetry(message, *record.latest_episodes)
        elif isinstance(message, ExperienceBatch):
            self.roster.on_experience(message.agent)
            self.history.record_experience(message.agent, message.seq)
        elif isinstance(message, PolicySnapshot):
            self.roster.on_snapshot(message)
            self.history.record_snapshot(message)
            self.history.add_pending(message)
            self._queue.put_nowait(message)
        else:
            log.debug("ignoring %s on %s", type(message).__name__, ref)

    def _of_current_life(self, agent: str, message: Message) -> None:
        """Refuse ``message`` unless it belongs to the agent's current life; start a new one.

        An ``online`` status with another incarnation is the agent starting a new life (a
        fresh data folder: a society run again on the same broker): what the coordinator
        knew of the old one is set aside under ``{agent}~{incarnation}`` and the new one
        starts clean. Anything else from another incarnation is the old life's, retained on
        the broker or still in flight: refused as ``stale``.

        Raises:
            MessageRejected: ``stale``.
        """
        incarnation = getattr(message, "incarnation", 0)
        record = self.roster.agents.get(agent)
        if not incarnation or record is None or record.incarnation in (0, incarnation):
            if incarnation:
                self.roster.get(agent).incarnation = incarnation
            return
        if isinstance(message, Status) and message.state == "online":
            old = record.incarnation
            archived = f"{agent}~{old:x}"
            log.info("agent %s starts a new life; its previous one is kept as %s", agent, archived)
            self.history.archive_agent(agent, archived)
            self.inbox.forget(agent)
            del self.roster.agents[agent]
            self.roster.get(agent).incarnation = incarnation
            return
        detail = (
            f"incarnation {incarnation:x} of {agent}; its current one is {record.incarnation:x}"
        )
        raise MessageRejected("stale", detail)

    def _current(self, snapshot: PolicySnapshot) -> bool:
        """Whether ``snapshot`` is of its agent's current life (else its evaluation is moot)."""
        record = self.roster.agents.get(snapshot.agent)
        return (
            record is None
            or 0 in (snapshot.incarnation, record.incarnation)
            or (snapshot.incarnation == record.incarnation)
        )

    async def _tell_hooks(self, status: Status) -> None:
        """An agent's status changed: what the integrations want published, published."""
        calls = ((h, lambda h=h: h.on_status(status)) for h in self.config.hooks)
        for message in self.hook_runner.gather("status", calls):
            if self.bus is not None:
                await self.bus.publish_now(
                    message.topic, message.payload, qos=message.qos, retain=message.retain
                )

    async def _health_loop(self, interval: float = 5.0) -> None:
        while True:
            self.record_health()
            await asyncio.sleep(interval)

    def record_health(self) -> None:
        stats = self.inbox.stats
        bus = self.bus_stats
        self.history.record_bus_health(
            connected=bus is not None and bus.connected_since is not None,
            received=sum(stats.received.values()),
            rejected=sum(stats.rejected.values()),
            duplicates=sum(stats.duplicates.values()),
            reconnects=bus.connection_losses if bus is not None else 0,
            evaluation_backlog=self.evaluation_backlog,
        )

    # --- receipts -------------------------------------------------------------------------

    async def _receipt_loop(self) -> None:
        """Tell each agent what of its numbered streams is recorded, when that changed."""
        while True:
            await asyncio.sleep(self.config.receipt_interval)
            await self.send_receipts()

    def receipt(self, agent: str) -> Receipt:
        """What is recorded of ``agent``'s experience, snapshots and telemetry."""
        streams = []
        for name in RECEIPTED_KINDS:
            tracker = self.inbox.streams.get((Kind(name), agent))
            if tracker is None or tracker.floor is None:
                continue
            streams.append(
                StreamReceipt(
                    stream=name, floor=tracker.floor, highest=tracker.highest,
                    missing=tracker.lowest_missing(MAX_MISSING_LISTED),
                )
            )  # fmt: skip
        return Receipt(
            schema=SCHEMA_VERSION, agent=agent, incarnation=self.roster.get(agent).incarnation,
            ts=time.time(), streams=streams,
        )  # fmt: skip

    async def send_receipts(self) -> int:
        """Publish a receipt (retained) to every agent whose streams changed; how many sent.

        Sent after the messages were recorded: the inbox hands a message to the handler, which
        writes it to the history, before this loop runs again.
        """
        if self.bus is None:
            return 0
        delivery = DELIVERY[Kind.RECEIPT]
        sent = 0
        for agent in sorted(self.inbox.take_changed()):
            if agent not in self.roster.agents:
                continue
            payload = encode(sign_with(self.receipt(agent), self.config.society_key))
            topic = self.topics.agent(agent, Kind.RECEIPT)
            if await self.bus.publish_now(topic, payload, qos=delivery.qos, retain=delivery.retain):
                sent += 1
            else:
                self.inbox.changed.add(agent)  # not connected: next time
        return sent

    def delivery(self) -> dict[str, dict[str, dict[str, int]]]:
        """Per agent and numbered stream: recorded through, missing now, repaired, given up."""
        report: dict[str, dict[str, dict[str, int]]] = {}
        for (kind, agent), tracker in sorted(self.inbox.streams.items()):
            if kind.value not in RECEIPTED_KINDS or tracker.floor is None:
                continue
            report.setdefault(agent, {})[kind.value] = {
                "recorded_through": tracker.floor,
                "highest": tracker.highest,
                "missing": tracker.missing_count,
                "repaired": tracker.repaired,
                "given_up": tracker.given_up,
            }
        return report

    # --- evolution ------------------------------------------------------------------------

    async def _evolution_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.evolution_interval)
            self.evolve()

    def evolve_if_ready(self, agent: str, step: int) -> list[Order]:
        """``agent``'s own generation, when it has lived ``evolution_every_steps`` since its last.

        Readiness counted in the agent's steps, not in seconds, makes what evolution does the
        same on a fast machine and a slow one: with a clock, which snapshots were ranked (and
        whether an agent was ready at all within a short run) followed the machine's speed.
        The agent is ranked within its niche on everyone's latest evaluations; only its own
        order (if it is in the bottom quantile) is sent.
        """
        record, every = self.roster.get(agent), self.config.evolution_every_steps
        if record.evolution_ready_at is None:  # first seen: it has yet to live `every` steps
            record.evolution_ready_at = step + every
        if step < record.evolution_ready_at:
            return []
        record.evolution_ready_at = step + every
        orders = [order for order in self._plan_generation() if order.agent == agent]
        for order in orders:
            self._direct(order)
        return orders

    def evolve(self) -> list[Order]:
        """One generation: order the bottom of each niche to adopt from its top, perturbed."""
        orders = self._plan_generation()
        for order in orders:
            self._direct(order)
        return orders

    def _plan_generation(self) -> list[Order]:
        members = [
            Member(
                agent=record.id,
                niche=f"{record.env_id}/{record.algo}",
                score=record.evaluations[-1].mean_return,
                version=record.evaluations[-1].version,
                hyperparams=record.hyperparams,
                device=record.device,
                gain=scale_score(record.evaluations[-1], ThresholdScale.OVER_BASELINE),
                federates_with=frozenset(record.federates_with),
            )
            for record in self.roster.agents.values()
            if record.evaluations
            and "evolution" in record.shares
            and not record.twin_of
            and record.state == "online"
            # judged only on a snapshot published after its last directive
            and record.evaluations[-1].version > record.directed_at_version
        ]
        return plan_generation(members, quantile=self.config.evolution_quantile, rng=self._rng)

    def _direct(self, order: Order) -> None:
        directive = Directive(
            schema=SCHEMA_VERSION,
            id=f"evo-{uuid.uuid4().hex[:12]}",
            agent=order.agent,
            action="adopt",
            ts=time.time(),
            source=Lineage(agent=order.source, version=order.version),
            hyperparams=order.hyperparams,
        )
        directive = sign_with(directive, self.config.society_key)
        record = self.roster.get(order.agent)
        record.directed_at_version = record.latest_version
        self.directives_sent += 1
        self.history.record_directive(directive)
        log.info(
            "evolution: %s adopts %s v%d with %s",
            order.agent, order.source, order.version, order.hyperparams,
        )  # fmt: skip
        if self.bus is not None:
            delivery = DELIVERY[Kind.DIRECTIVE]
            self.bus.enqueue(
                self.topics.agent(order.agent, Kind.DIRECTIVE),
                encode(directive),
                qos=delivery.qos,
                retain=delivery.retain,
            )

    # --- evaluation -----------------------------------------------------------------------

    def _moot(self, snapshot: PolicySnapshot) -> bool:
        """Whether evaluating ``snapshot`` is moot (a past life's); then it is forgotten."""
        if self._current(snapshot):
            return False
        self.history.remove_pending(snapshot.agent, snapshot.version)
        return True

    async def _send_now(self, topic: str, payload: bytes) -> bool:
        """A task to an evaluator: sent now or not at all (the work stays pending here)."""
        if self.bus is None:
            return False
        delivery = DELIVERY[Kind.TASK]
        return await self.bus.publish_now(topic, payload, qos=delivery.qos, retain=delivery.retain)

    async def _evaluation_worker(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            snapshot = await self._queue.get()
            if self._moot(snapshot):
                continue
            request = EvaluationRequest(
                payload=encode(snapshot),
                episodes=self.config.eval_episodes,
                seed=self.config.eval_seed,
                allowed_envs=self.config.allowed_envs,
            )
            result = await loop.run_in_executor(self._pool, evaluate_snapshot, request)
            self._record(snapshot, result)

    def _record(self, snapshot: PolicySnapshot, result: EvaluationResult) -> None:
        if not self._current(snapshot):
            return  # its agent started a new life while it was being evaluated
        self.history.remove_pending(snapshot.agent, snapshot.version)
        topic = self.topics.agent(snapshot.agent, Kind.POLICY)
        if result.error_reason is not None:
            self.evaluation_failures += 1
            rejection = MessageRejected(result.error_reason, result.error_detail)
            self.inbox.count_rejection(topic, rejection)
            return
        evaluation = Evaluation(
            schema=SCHEMA_VERSION,
            agent=snapshot.agent,
            version=snapshot.version,
            step=snapshot.step,
            env_id=snapshot.env_id,
            algo=snapshot.algo,
            mean_return=result.mean,
            std_return=result.std,
            episodes=self.config.eval_episodes,
            seeds=[self.config.eval_seed + i for i in range(self.config.eval_episodes)],
            seconds=result.seconds,
            ts=time.time(),
            regimes=[
                RegimeScore(
                    regime=regime.regime,
                    mean_return=regime.mean,
                    baseline_return=regime.baseline_mean,
                    metrics=regime.metrics,
                    baseline_metrics=regime.baseline_metrics,
                    random_return=regime.random_mean,
                    recall_return=regime.recall_mean,
                    recall_from=regime.recall_from,
                )
                for regime in result.regimes
            ],
            baseline=result.baseline,
            baseline_return=result.baseline_mean,
            train_regime=snapshot.regime,
            recall_return=result.recall_mean,
        )
        self.roster.on_evaluation(evaluation)
        self.history.record_evaluation(evaluation)
        if self.config.evolution_every_steps > 0:
            self.evolve_if_ready(snapshot.agent, snapshot.step)
        self.evaluation_seconds.observe(result.seconds)
        self.evaluations_done += 1
        log.info(
            "evaluated %s v%d (step %d): %.2f +- %.2f",
            snapshot.agent,
            snapshot.version,
            snapshot.step,
            result.mean,
            result.std,
        )
        if self.bus is not None:
            delivery = DELIVERY[Kind.EVALUATION]
            self.bus.enqueue(
                self.topics.coordinator(Kind.EVALUATION),
                encode(sign_with(evaluation, self.config.society_key)),
                qos=delivery.qos,
                retain=delivery.retain,
            )
            self._publish_leaderboard()

    def _publish_leaderboard(self) -> None:
        entries = [
            LeaderboardEntry(
                agent=record.id,
                env_id=record.env_id,
                algo=record.algo,
                version=record.evaluations[-1].version,
                step=record.evaluations[-1].step,
                eval_return=record.evaluations[-1].mean_return,
            )
            for record in self.roster.agents.values()
            if record.evaluations
        ]
        entries.sort(key=lambda entry: entry.eval_return, reverse=True)
        board = Leaderboard(schema=SCHEMA_VERSION, ts=time.time(), entries=entries)
        if self.bus is not None:
            delivery = DELIVERY[Kind.LEADERBOARD]
            self.bus.enqueue(
                self.topics.coordinator(Kind.LEADERBOARD),
                encode(sign_with(board, self.config.society_key)),
                qos=delivery.qos,
                retain=delivery.retain,
            )
