"""An agent process: one device world, one learner, one seat on the bus.

The learner runs in a worker thread; this module is the asyncio side. It turns what the
learner produces into bus messages (experience batches and snapshots go through the durable
outbox, telemetry is sent when connected), announces the agent with a retained ``online``
status on every (re)connection, leaves a Last Will of ``offline``, and obeys directives.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import msgspec

from agents._atomic import write_text_atomically
from agents.bus.arrays import Array, from_wire, to_wire
from agents.bus.client import BusClient
from agents.bus.codec import decode, encode
from agents.bus.inbox import Inbox
from agents.bus.outbox import RESENT, UNRECEIPTED_DROPPED, Outbox
from agents.bus.schemas import (
    SCHEMA_VERSION,
    Directive,
    ExperienceBatch,
    FederatedWeights,
    LibraryPolicy,
    Lineage,
    Message,
    PolicySnapshot,
    Receipt,
    Status,
    Telemetry,
)
from agents.bus.signing import sign_with, tensor_digest
from agents.bus.topics import DELIVERY, Kind, TopicRef, Topics, validate_name
from agents.bus.topics import SHARE_KINDS as ALL_SHARE_KINDS
from agents.bus.transport import Connection, ConnectOptions, Transport, WillMessage
from agents.exceptions import ConfigError, MessageRejected, StorageError
from agents.hooks import AgentHook, HookRunner
from agents.learner.adaptation import Adaptation, Adoption
from agents.learner.experience import ExperienceColumns
from agents.learner.federation import Federation, Likeness, OwnWeights
from agents.learner.learner import Learner, LearnerConfig, PolicyState
from agents.learner.peers import PeerSnapshots
from agents.learner.pooling import rollout_columns
from agents.likeness import devices_alike

__all__ = ["Agent", "AgentConfig", "AgentReport"]

log = logging.getLogger(__name__)

#: What an agent can share with (and take in from) its peers (agents.bus.topics).
SHARE_KINDS = frozenset(ALL_SHARE_KINDS)

EXPERIENCE_SEQ = "experience_seq"
POLICY_VERSION = "policy_version"
TELEMETRY_SEQ = "telemetry_seq"
#: The outbox counter that holds the agent's incarnation (``Message`` docstring).
INCARNATION = "incarnation"
#: Times a stream's numbering was moved past what the coordinator had recorded.
RENUMBERED = "renumbered"
#: The outbox counter of each stream the coordinator receipts.
_COUNTER_OF_STREAM = {
    Kind.EXPERIENCE.value: EXPERIENCE_SEQ,
    Kind.POLICY.value: POLICY_VERSION,
    Kind.TELEMETRY.value: TELEMETRY_SEQ,
}


def incarnation_of(outbox: Outbox) -> int:
    """The incarnation kept in ``outbox``; a new random one for a new data folder."""
    if outbox.counter(INCARNATION) == 0:
        outbox.advance_counter(INCARNATION, secrets.randbelow(2**62) + 1)
    return outbox.counter(INCARNATION)


_MAX_RETURNS_PER_TELEMETRY = 200
#: How long a peer whose experience was taken in counts among those the agent learns from.
_LEARNS_FROM_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class AgentConfig:
    agent_id: str
    society: str
    learner: LearnerConfig
    data_dir: Path
    telemetry_interval: float = 2.0
    keepalive: int = 15
    flush_timeout: float = 30.0
    #: Seconds after the broker's acknowledgement before a numbered message a receipt does
    #: not show is sent again (the receiver may still be working through a queue).
    receipt_grace: float = 60.0
    #: Seconds a clean exit waits for the receipt of its last messages.
    receipt_wait: float = 5.0
    #: ``experience``: off-policy learners take in peers' transitions; ``snapshots``: peers'
    #: snapshots are candidates when the world changes; ``evolution``: obey the coordinator's
    #: adopt/mutate directives; ``federated``: on-policy learners average their weights with
    #: alike peers' (agents.learner.federation). Sharing is two-way: what is not shared is not
    #: taken either.
    shares: frozenset[str] = SHARE_KINDS
    #: For an isolated control twin, the agent it is the twin of (it shares nothing).
    twin_of: str = ""
    #: The society's key: sign snapshots, require signed directives and peers' snapshots.
    society_key: bytes | None = field(default=None, repr=False)
    #: Integrations told of the agent's connects, telemetry and stop (agents.hooks).
    hooks: tuple[AgentHook, ...] = ()

    def __post_init__(self) -> None:
        validate_name(self.agent_id, "agent id")
        validate_name(self.society, "society name")
        unknown = self.shares - SHARE_KINDS
        if unknown:
            kinds = ", ".join(sorted(SHARE_KINDS))
            msg = f"unknown share kind {min(unknown)!r}: use {kinds} or none"
            raise ConfigError(msg)


@dataclass(slots=True)
class AgentReport:
    """What the agent did, written to ``final.json`` in its data folder when it exits."""

    id: str
    env: str
    algo: str
    env_steps: int = 0
    episodes: int = 0
    experience_batches_published: int = 0
    snapshots_published: int = 0
    last_snapshot_version: int = 0
    outbox_pending: int = 0
    #: Numbered messages the broker acknowledged that no receipt has covered yet; those sent
    #: again because a receipt showed them missing (or long unrecorded); those given up when
    #: more than the outbox's bound waited (docs/reliability.md).
    awaiting_receipt: int = 0
    resent: int = 0
    unreceipted_dropped: int = 0
    #: Times a stream's numbering moved past what the coordinator had recorded (a data folder
    #: restored from a backup).
    renumbered: int = 0
    resumed_from_step: int | None = None
    steps_this_run: int = 0
    learning_seconds: float = 0.0
    #: CPU time of the whole process (every thread) over the same span: per step, against a
    #: bare stable-baselines3 process's, it is what the society costs an agent.
    cpu_seconds: float = 0.0
    steps_per_second: float = 0.0
    recent_returns: list[float] = field(default_factory=list)
    messages_rejected: dict[str, int] = field(default_factory=dict)
    strategy: str = ""
    drift_events: int = 0
    adaptations: int = 0
    adaptation_steps: int = 0
    adoptions: int = 0
    adoptions_declined: int = 0
    context: int = 0
    #: Against the baseline controller on the same episodes, over the agent's life (see
    #: ``agents.regret``); ``controller_steps``: device steps the controller drove.
    regret: float = 0.0
    regret_baseline_return: float = 0.0
    regret_episodes: int = 0
    controller_steps: int = 0
    #: Steps of remembered days replayed through the model of the device and trained on
    #: (``learner.imagination``), this run.
    imagined_steps: int = 0
    #: Remembered days planned in hindsight and cloned into the policy
    #: (``learner.hindsight``), this run.
    planned_days: int = 0
    #: Device steps whose proposed action the world's shield replaced (``learner.shield``),
    #: this run.
    shield_interventions: int = 0
    #: Learning from peers (agents.learner.federation): rounds that averaged peers' weights
    #: in; peers' weights left out of a round because their policy did not fit our latest
    #: rollout; weights not kept at all (another network or world, an unlike device); and
    #: experience batches refused as coming from an unlike device.
    federated_rounds: int = 0
    weights_unfit: int = 0
    weights_ignored: int = 0
    experience_unlike: int = 0
    #: Experience batches alike by parameters that did not fit the agent's Q-network.
    experience_unfit: int = 0
    #: Pooled rollouts (agents.learner.pooling): updates made, the peers' steps they were
    #: made from beside the agent's own, peers' rollouts dropped unused, and the time spent
    #: waiting for the peers' fresh rollouts (with the waits that ran out).
    pooled_updates: int = 0
    pooled_peer_steps: int = 0
    pooled_dropped: int = 0
    pooled_wait_seconds: float = 0.0
    pooled_waits_timed_out: int = 0
    stopped_by: str = "budget"


class Agent:
    """Runs one agent until its learner stops (budget reached or :meth:`stop`)."""

    def __init__(self, config: AgentConfig, transport: Transport) -> None:
        self.config = config
        self.transport = transport
        self.topics = Topics(config.society)
        self.id = config.agent_id
        #: Calls the integrations' hooks; counts the calls that raised.
        self.hook_runner = HookRunner()
        self.inbox = Inbox(
            self.topics,
            self._on_message,
            kinds={Kind.DIRECTIVE, Kind.POLICY, Kind.EXPERIENCE, Kind.WEIGHTS, Kind.RECEIPT},
            key=config.society_key,
            admit=self._admit,
        )
        self.learner: Learner | None = None
        self.bus: BusClient | None = None
        #: This life of the agent (``incarnation_of``); 0 until its data folder is open.
        self.incarnation = 0
        self._stop_requested = False
        self._episodes_since_telemetry: list[tuple[float, int, str]] = []
        self._recent_returns: deque[float] = deque(maxlen=100)
        self.peers: PeerSnapshots | None = None
        self._weights_round = 0
        self._pending_sends: set[asyncio.Future[bool]] = set()
        #: Experience batches refused as coming from an unlike device (the learner's intake
        #: says whose it took in, and counts the batches that did not fit).
        self.experience_unlike = 0
        #: Receipts received from the coordinator in this life.
        self.receipts = 0
        #: Set when the data folder could not be written: the agent stops instead of dropping.
        self.storage_error: StorageError | None = None

    # --- lifecycle -----------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop learning after the current step; the agent then checkpoints and exits."""
        self._stop_requested = True
        if self.learner is not None:
            self.learner.stop()

    async def run(self) -> AgentReport:
        config = self.config
        config.data_dir.mkdir(parents=True, exist_ok=True)
        loop = asyncio.get_running_loop()
        # Building the model imports and allocates torch tensors: keep it off the event loop.
        learner_config = replace(config.learner, checkpoint_dir=config.data_dir / "checkpoint")
        self.learner = await asyncio.to_thread(Learner, learner_config, _LoopEvents(loop, self))
        learner = self.learner
        self._take_part(learner, loop)
        log.info(
            "agent %s: %s on %s%s",
            self.id,
            learner.spec.name,
            learner.config.env_id,
            f", resumed at step {learner.step}" if learner.resumed_from_step is not None else "",
        )
        if self._stop_requested:
            learner.stop()
        outbox = Outbox(config.data_dir / "outbox.sqlite")
        self.incarnation = incarnation_of(outbox)
        start_step = learner.step
        started = time.monotonic()
        cpu_started = time.process_time()
        status_topic = self.topics.agent(self.id, Kind.STATUS)
        options = ConnectOptions(
            client_id=self.id,
            clean_session=False,
            keepalive=config.keepalive,
            will=WillMessage(status_topic, self._sealed(self._status("offline"))),
        )
        try:
            async with BusClient(
                self.transport,
                options,
                outbox=outbox,
                subscriptions=self._subscriptions(learner),
                handler=self.inbox,
                on_connect=self._announce,
            ) as bus:
                self.bus = bus
                helpers = [
                    asyncio.create_task(self._telemetry_loop()),
                    asyncio.create_task(self._stop_if_refused(bus)),
                ]
                try:
                    await asyncio.to_thread(learner.run)
                except BaseException as exc:
                    # A crash (a disk that filled at a checkpoint): a clean disconnect would
                    # suppress the Last Will, so the agent says offline itself before it goes.
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(self._say_offline(bus), 5.0)
                    if self.storage_error is not None:
                        raise self.storage_error from exc
                    raise
                finally:
                    # Whatever ended us (a refusal, a cancellation), the thread must end too.
                    learner.stop()
                    for helper in helpers:
                        helper.cancel()
                await asyncio.to_thread(learner.close)
                if bus.fatal is not None:
                    raise bus.fatal
                if self.storage_error is not None:
                    await asyncio.wait_for(self._say_offline(bus), 5.0)
                    raise self.storage_error
                learning_seconds = time.monotonic() - started
                cpu_seconds = time.process_time() - cpu_started
                await self._say_goodbye(bus, outbox)
                report = self._report(outbox, start_step, learning_seconds, cpu_seconds)
        finally:
            outbox.close()
        self._write_report(report)
        return report

    async def _say_goodbye(self, bus: BusClient, outbox: Outbox) -> None:
        """A clean exit: the last telemetry, the outbox drained if it can be, then offline."""
        config = self.config
        await self._send_telemetry()
        if not await bus.flush(config.flush_timeout):
            log.warning(
                "%d messages not yet acknowledged; they stay in the outbox for next time",
                outbox.unsent(),
            )
        elif self.receipts and not await bus.wait_receipted(config.receipt_wait):
            # Only when a coordinator has been heard from: alone, nobody would receipt.
            log.info(
                "%d messages not yet recorded by the coordinator; they stay in the outbox and "
                "go again if its next receipt does not show them",
                outbox.awaiting(),
            )
        for message in self.hook_runner.gather("stop", ((h, h.on_stop) for h in config.hooks)):
            await bus.publish_now(
                message.topic, message.payload, qos=message.qos, retain=message.retain
            )
        await self._say_offline(bus)

    def _take_part(self, learner: Learner, loop: asyncio.AbstractEventLoop) -> None:
        """Set up what the agent shares and takes in with its peers (``config.shares``)."""
        if self.config.shares & {"snapshots", "evolution"}:
            # Peers' snapshots of the same world: candidates when our world changes, and what
            # the coordinator's adopt directives name.
            self.peers = PeerSnapshots(
                env_id=learner.config.env_id, algo=learner.spec.name,
                obs_space=learner.obs_spec, action_space=learner.action_spec,
                arch=learner.arch, own_id=self.id, device=learner.config.env_kwargs,
            )  # fmt: skip
            if "snapshots" in self.config.shares:
                learner.peers = self.peers
        if "federated" in self.config.shares and not learner.off_policy:
            learner.join_federation(
                Federation(
                    own_id=self.id, env_id=learner.config.env_id, algo=learner.spec.name,
                    obs_space=learner.obs_spec, action_space=learner.action_spec,
                    arch=learner.arch, likeness=Likeness(device=dict(learner.config.env_kwargs)),
                    publish=lambda weights: loop.call_soon_threadsafe(self.on_weights, weights),
                    pool_rollouts=True,
                )
            )  # fmt: skip

    def _subscriptions(self, learner: Learner) -> list[tuple[str, int]]:
        """Its directives, and what it takes in from peers."""
        topics = self.topics
        subscriptions = [
            (topics.agent(self.id, Kind.DIRECTIVE), DELIVERY[Kind.DIRECTIVE].qos),
            (topics.agent(self.id, Kind.RECEIPT), DELIVERY[Kind.RECEIPT].qos),
        ]
        if self.peers is not None:
            subscriptions.append((topics.agents_filter(Kind.POLICY), 1))
        if self.takes_experience:
            subscriptions.append((topics.agents_filter(Kind.EXPERIENCE), 1))
        if learner.federation is not None:
            subscriptions.append((topics.agents_filter(Kind.WEIGHTS), 1))
        return subscriptions

    def _sealed(self, message: Message) -> bytes:
        """``message`` as it goes on the bus: signed when the society has a key."""
        return encode(sign_with(message, self.config.society_key))

    async def _say_offline(self, bus: BusClient) -> None:
        status_topic = self.topics.agent(self.id, Kind.STATUS)
        offline = self._sealed(self._status("offline"))
        await bus.publish_now(status_topic, offline, qos=1, retain=True)

    # --- what the learner produced, on the event loop -------------------------------------------

    def on_experience(self, batch: ExperienceColumns, step: int) -> None:
        learner, bus = self.learner, self.bus
        if learner is None or bus is None:
            return
        topic = self.topics.agent(self.id, Kind.EXPERIENCE)

        def build(seq: int) -> tuple[str, bytes]:
            message = ExperienceBatch(
                schema=SCHEMA_VERSION,
                incarnation=self.incarnation,
                agent=self.id,
                seq=seq,
                env_id=learner.config.env_id,
                obs_space=learner.obs_spec,
                action_space=learner.action_spec,
                agent_step=step,
                obs=to_wire(batch.obs),
                next_obs=to_wire(batch.next_obs),
                actions=to_wire(batch.actions),
                rewards=to_wire(batch.rewards),
                terminated=to_wire(batch.terminated),
                truncated=to_wire(batch.truncated),
                shared="experience" in self.config.shares,
                device=dict(learner.config.env_kwargs),
            )
            return topic, self._sealed(message)

        self._stored(
            lambda: bus.enqueue_counted(
                EXPERIENCE_SEQ, build, qos=DELIVERY[Kind.EXPERIENCE].qos,
                receipted=Kind.EXPERIENCE.value,
            )
        )  # fmt: skip

    def on_snapshot(self, state: PolicyState) -> None:
        learner, bus = self.learner, self.bus
        if learner is None or bus is None:
            return
        topic = self.topics.agent(self.id, Kind.POLICY)
        digest = tensor_digest(state.tensors)
        library = [
            LibraryPolicy(
                context=entry.context,
                score=entry.score,
                tensors=entry.tensors,
                digest=tensor_digest(entry.tensors),
            )
            for entry in state.library
        ]

        def build(version: int) -> tuple[str, bytes]:
            message = PolicySnapshot(
                schema=SCHEMA_VERSION,
                incarnation=self.incarnation,
                agent=self.id,
                version=version,
                step=state.step,
                algo=learner.spec.name,
                env_id=learner.config.env_id,
                env_kwargs=dict(learner.config.env_kwargs),
                obs_space=learner.obs_spec,
                action_space=learner.action_spec,
                arch=learner.arch,
                hyperparams=state.hyperparams,
                lineage=state.lineage,
                regimes=learner.regimes,
                regime=state.regime,
                tensors=state.tensors,
                digest=digest,
                shared=self.shares_snapshots,
                library=library,
                shielded=learner.config.shield,
            )
            try:
                return topic, self._sealed(message)
            except ConfigError:
                # Too large with the library (big networks): publish the policy alone, signed
                # as it is sent.
                return topic, self._sealed(msgspec.structs.replace(message, library=[]))

        delivery = DELIVERY[Kind.POLICY]

        def store() -> None:
            version = bus.enqueue_counted(
                POLICY_VERSION, build, qos=delivery.qos, retain=delivery.retain,
                receipted=Kind.POLICY.value,
            )  # fmt: skip
            log.info("snapshot v%d at step %d", version, state.step)

        self._stored(store)

    def on_weights(self, weights: OwnWeights) -> None:
        """Our weights after a local update, to the peers (perishable: not through the outbox)."""
        learner, bus = self.learner, self.bus
        if learner is None or bus is None:
            return
        self._weights_round += 1
        message = FederatedWeights(
            schema=SCHEMA_VERSION,
            incarnation=self.incarnation,
            agent=self.id,
            round=self._weights_round,
            step=weights.step,
            algo=learner.spec.name,
            env_id=learner.config.env_id,
            obs_space=learner.obs_spec,
            action_space=learner.action_spec,
            arch=learner.arch,
            samples=weights.samples,
            tensors=weights.tensors,
            digest=tensor_digest(weights.tensors),
            device=dict(learner.config.env_kwargs),
            regime=weights.regime,
            delta=weights.delta,
            rollout=rollout_columns(weights.rollout, learner.action_spec.shape)
            if weights.rollout is not None
            else None,
        )
        delivery = DELIVERY[Kind.WEIGHTS]
        topic = self.topics.agent(self.id, Kind.WEIGHTS)
        payload = self._sealed(message)
        task = asyncio.ensure_future(
            bus.publish_now(topic, payload, qos=delivery.qos, retain=delivery.retain)
        )
        self._pending_sends.add(task)
        task.add_done_callback(self._pending_sends.discard)

    def on_episode(
        self,
        episode_return: float,
        length: int,  # noqa: ARG002 - part of the event; telemetry carries returns
        step: int,
        regime: str,
    ) -> None:
        self._episodes_since_telemetry.append((episode_return, step, regime))
        self._recent_returns.append(episode_return)

    def on_adapted(self, adaptation: Adaptation) -> None:
        scores = ", ".join(f"{k}={v:.1f}" for k, v in adaptation.scores.items())
        log.info(
            "drift at step %d: %s chose %s [%s], now in context %d",
            adaptation.step, adaptation.strategy, adaptation.chosen, scores, adaptation.context,
        )  # fmt: skip

    # --- bus side ---------------------------------------------------------------------------

    def _status(self, state: str) -> Status:
        learner = self.config.learner
        return Status(
            schema=SCHEMA_VERSION,
            incarnation=self.incarnation,
            agent=self.id,
            state="online" if state == "online" else "offline",
            ts=time.time(),
            env_id=learner.env_id,
            algo=learner.algo,
            pid=os.getpid(),
        )

    async def _announce(self, connection: Connection) -> None:
        delivery = DELIVERY[Kind.STATUS]
        await connection.publish(
            self.topics.agent(self.id, Kind.STATUS),
            self._sealed(self._status("online")),
            qos=delivery.qos,
            retain=delivery.retain,
        )
        hooks = self.config.hooks
        for message in self.hook_runner.gather("connect", ((h, h.on_connect) for h in hooks)):
            await connection.publish(
                message.topic, message.payload, qos=message.qos, retain=message.retain
            )

    @property
    def shares_snapshots(self) -> bool:
        return bool(self.config.shares & {"snapshots", "evolution"})

    @property
    def learns_from(self) -> list[str]:
        """Peers averaged in lately (federated), or whose experience we took in the last minute."""
        recent = time.monotonic() - _LEARNS_FROM_SECONDS
        taken_from = dict(self.learner.intake.taken_from) if self.learner is not None else {}
        taken = {agent for agent, at in taken_from.items() if at >= recent}
        return sorted(taken.union(self.federates_with))

    @property
    def federates_with(self) -> list[str]:
        """Peers whose weights were averaged into ours lately (sorted)."""
        federation = self.learner.federation if self.learner is not None else None
        return federation.learns_from if federation is not None else []

    @property
    def takes_experience(self) -> bool:
        learner = self.learner
        return "experience" in self.config.shares and learner is not None and learner.off_policy

    async def _on_message(self, ref: TopicRef, message: Message) -> None:
        if isinstance(message, Receipt):
            if ref.agent == self.id:
                self._apply_receipt(message)
            return
        if ref.agent == self.id and not isinstance(message, Directive):
            return  # our own snapshots and batches, echoed by the broker
        if isinstance(message, PolicySnapshot):
            if self.peers is not None and message.shared:
                self.peers.offer(message)
        elif isinstance(message, FederatedWeights):
            federation = self.learner.federation if self.learner is not None else None
            if federation is not None:
                federation.offer(message)
        elif isinstance(message, ExperienceBatch):
            self._take_experience(message)
        elif isinstance(message, Directive) and ref.agent == self.id:
            self._obey(message)

    def _apply_receipt(self, receipt: Receipt) -> None:
        """What the coordinator recorded: let go of it, send again what it lacks."""
        bus = self.bus
        if bus is None or receipt.incarnation != self.incarnation:
            return  # a receipt for an earlier life of this agent id (retained)
        self.receipts += 1
        for stream in receipt.streams:
            counter = _COUNTER_OF_STREAM[stream.stream]
            if stream.highest > bus.outbox.counter(counter):
                self._continue_after(bus, stream.stream, counter, stream.highest)
                continue
            again = bus.receipted(
                stream.stream, floor=stream.floor, highest=stream.highest,
                missing=stream.missing, grace=self.config.receipt_grace,
            )  # fmt: skip
            if again:
                log.warning(
                    "the coordinator lacks %d %s messages; sending them again",
                    again, stream.stream,
                )  # fmt: skip

    def _continue_after(self, bus: BusClient, stream: str, counter: str, highest: int) -> None:
        """The coordinator recorded numbers this data folder has not handed out yet.

        The folder is older than the agent's last life (restored from a backup, or copied):
        messages numbered from it would be dropped as duplicates of the ones recorded. Every
        message of the stream still in the outbox is numbered again after ``highest``, and the
        numbering continues from there; the steps learned again are recorded as re-learned.
        """
        kind = Kind(stream)
        field_name = "version" if kind is Kind.POLICY else "seq"

        def rebuild(payload: bytes, number: int) -> bytes:
            message = decode(kind, payload)
            renumbered = msgspec.structs.replace(message, signature=None, **{field_name: number})
            return self._sealed(renumbered)

        before = bus.outbox.counter(counter)
        moved = bus.outbox.renumber(stream, counter, highest, rebuild)
        bus.outbox.advance_counter(RENUMBERED, bus.outbox.counter(RENUMBERED) + 1)
        bus.wake_sender()
        log.warning(
            "this data folder is behind what the coordinator recorded (%s %d here, %d there: "
            "restored from a backup?); %d messages in the outbox numbered again, numbering "
            "continues after %d",
            stream, before, highest, moved, highest,
        )  # fmt: skip

    def _take_experience(self, batch: ExperienceBatch) -> None:
        learner = self.learner
        if learner is None or not self.takes_experience or not batch.shared:
            return
        if (
            batch.env_id != learner.config.env_id
            or batch.obs_space != learner.obs_spec
            or batch.action_space != learner.action_spec
        ):
            return  # another world: not ours to learn from
        if not devices_alike(learner.config.env_kwargs, batch.device):
            self.experience_unlike += 1
            return  # another kind of device: its transitions would mislead ours
        learner.offer_experience(columns_from_wire(batch), batch.agent)

    def _admit(self, ref: TopicRef, message: Message) -> None:
        """The agent's own refusals, before the inbox counts a message (Inbox ``admit``).

        A directive for us whose hyperparameters this learner would not take (a learning
        rate of -1 or "fast", a gamma of 7) is refused whole; the agent learns on as it was.

        Raises:
            MessageRejected: ``invalid``.
        """
        learner = self.learner
        if (
            not isinstance(message, Directive)
            or ref.agent != self.id
            or learner is None
            or message.action == "snapshot"
            or "evolution" not in self.config.shares
        ):
            return
        try:
            learner.checked_hyperparams(message.hyperparams)
        except ConfigError as exc:
            raise MessageRejected("invalid", f"directive {message.id}: {exc}") from None

    def _obey(self, directive: Directive) -> None:
        learner = self.learner
        if learner is None:
            return
        if directive.action == "snapshot":
            log.info("directive %s: publishing a snapshot", directive.id)
            learner.request_snapshot()
            return
        if "evolution" not in self.config.shares:
            log.info("directive %s ignored: no evolution for this agent", directive.id)
            return
        tensors = None
        lineage = None
        if directive.action == "adopt":
            source = directive.source
            peer = self.peers.get(source.agent) if self.peers is not None and source else None
            if source is None or peer is None or peer.version < source.version:
                log.warning("directive %s: no snapshot of %s to adopt", directive.id, source)
                return
            tensors = peer.tensors
            lineage = Lineage(agent=peer.agent, version=peer.version)
        learner.request_adoption(
            Adoption(tensors, lineage, dict(directive.hyperparams), f"directive {directive.id}")
        )

    def _stored(self, store: Callable[[], object]) -> None:
        """Run ``store`` (an outbox write); if the disk refuses it, stop rather than drop."""
        if self.storage_error is not None:
            return  # stopping already; the learner's last callbacks find no room either
        try:
            store()
        except StorageError as exc:
            log.error("%s; stopping: what the outbox holds stays there", exc)  # noqa: TRY400
            self.storage_error = exc
            self.stop()

    async def _stop_if_refused(self, bus: BusClient) -> None:
        """Stop when the broker refuses our credentials: it will keep refusing them."""
        await bus.failed.wait()
        self.stop()

    async def _telemetry_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.telemetry_interval)
            await self._send_telemetry()

    async def _send_telemetry(self) -> None:
        """Telemetry through the outbox: numbered, durable, and so every episode exactly once.

        The lifelong metrics are computed from the episodes it carries; a message lost under a
        broker pause or a stopped coordinator would lose them. More episodes than one message
        carries go in several.
        """
        learner, bus = self.learner, self.bus
        if learner is None or bus is None:
            return
        while True:
            episodes = self._episodes_since_telemetry[:_MAX_RETURNS_PER_TELEMETRY]
            del self._episodes_since_telemetry[:_MAX_RETURNS_PER_TELEMETRY]
            self._enqueue_telemetry(learner, bus, episodes)
            if not self._episodes_since_telemetry:
                break
        latest = learner.latest_step
        calls = ((h, lambda h=h: h.on_telemetry(latest)) for h in self.config.hooks)
        for hook_message in self.hook_runner.gather("telemetry", calls):
            await bus.publish_now(
                hook_message.topic,
                hook_message.payload,
                qos=hook_message.qos,
                retain=hook_message.retain,
            )

    def _enqueue_telemetry(
        self, learner: Learner, bus: BusClient, episodes: list[tuple[float, int, str]]
    ) -> None:
        outbox = bus.outbox
        message = Telemetry(
            schema=SCHEMA_VERSION,
            incarnation=self.incarnation,
            agent=self.id,
            ts=time.time(),
            env_id=learner.config.env_id,
            algo=learner.spec.name,
            env_steps=learner.step,
            budget_steps=learner.config.budget_steps,
            steps_per_second=learner.steps_per_second,
            episode_returns=[ret for ret, _, _ in episodes],
            episode_steps=[step for _, step, _ in episodes],
            episode_regimes=[regime for _, _, regime in episodes],
            strategy=learner.config.strategy.value,
            shares=sorted(self.config.shares),
            twin_of=self.config.twin_of,
            experience_batches_published=self._delivered(outbox, Kind.EXPERIENCE, EXPERIENCE_SEQ),
            snapshots_published=self._delivered(outbox, Kind.POLICY, POLICY_VERSION),
            snapshot_version=outbox.counter(POLICY_VERSION),
            outbox_pending=outbox.unsent(),
            regime=learner.current_regime,
            messages_rejected=dict(self.inbox.stats.rejected),
            learns_from=self.learns_from,
            federates_with=self.federates_with,
            federated_rounds=learner.federation.rounds if learner.federation is not None else 0,
            # episodes, drift_events, adaptations, context, peer_transitions
            **learner.stats.counters(Telemetry.__struct_fields__),
        )
        delivery = DELIVERY[Kind.TELEMETRY]
        topic = self.topics.agent(self.id, Kind.TELEMETRY)

        def build(seq: int) -> tuple[str, bytes]:
            return topic, self._sealed(msgspec.structs.replace(message, seq=seq))

        self._stored(
            lambda: bus.enqueue_counted(
                TELEMETRY_SEQ, build, qos=delivery.qos, retain=delivery.retain,
                receipted=Kind.TELEMETRY.value,
            )
        )  # fmt: skip

    def _delivered(self, outbox: Outbox, kind: Kind, counter: str) -> int:
        """Messages of ``kind`` the broker acknowledged, over the agent's whole life."""
        return outbox.counter(counter) - outbox.unsent(self.topics.agent(self.id, kind))

    # --- the report -------------------------------------------------------------------------

    def _report(
        self, outbox: Outbox, start_step: int, learning_seconds: float, cpu_seconds: float
    ) -> AgentReport:
        learner = self.learner
        assert learner is not None
        steps = learner.step - start_step
        federation, pool = learner.federation, learner.rollout_pool
        return AgentReport(
            id=self.id,
            env=learner.config.env_id,
            algo=learner.spec.name,
            env_steps=learner.step,
            experience_batches_published=self._delivered(outbox, Kind.EXPERIENCE, EXPERIENCE_SEQ),
            snapshots_published=self._delivered(outbox, Kind.POLICY, POLICY_VERSION),
            last_snapshot_version=outbox.counter(POLICY_VERSION),
            outbox_pending=outbox.unsent(),
            awaiting_receipt=outbox.awaiting(),
            resent=outbox.counter(RESENT),
            unreceipted_dropped=outbox.counter(UNRECEIPTED_DROPPED),
            renumbered=outbox.counter(RENUMBERED),
            resumed_from_step=learner.resumed_from_step,
            steps_this_run=steps,
            learning_seconds=round(learning_seconds, 3),
            cpu_seconds=round(cpu_seconds, 3),
            steps_per_second=round(steps / learning_seconds, 1) if learning_seconds else 0.0,
            recent_returns=list(self._recent_returns)[-20:],
            messages_rejected=dict(self.inbox.stats.rejected),
            strategy=learner.config.strategy.value,
            federated_rounds=federation.rounds if federation is not None else 0,
            weights_unfit=federation.unfit if federation is not None else 0,
            weights_ignored=federation.ignored if federation is not None else 0,
            experience_unlike=self.experience_unlike,
            pooled_updates=pool.updates if pool is not None else 0,
            pooled_peer_steps=pool.peer_rows if pool is not None else 0,
            pooled_dropped=(pool.dropped if pool is not None else 0)
            + (federation.rollouts_dropped if federation is not None else 0),
            pooled_wait_seconds=round(federation.waited_seconds, 3) if federation else 0.0,
            pooled_waits_timed_out=federation.waits_timed_out if federation else 0,
            stopped_by="signal" if self._stop_requested else "budget",
            # episodes, drift_events, adaptations, adaptation_steps, adoptions, ..., context
            **learner.stats.counters(AgentReport.__dataclass_fields__),
        )

    def _write_report(self, report: AgentReport) -> None:
        write_text_atomically(
            self.config.data_dir / "final.json", json.dumps(asdict(report), indent=2)
        )


def columns_from_wire(batch: ExperienceBatch) -> ExperienceColumns:
    """A received (validated) batch as numpy columns; the arrays view the payload's bytes."""

    def column(array: Array) -> Any:
        return from_wire(array.dtype, array.shape, array.data, require_finite=False)

    return ExperienceColumns(
        obs=column(batch.obs),
        next_obs=column(batch.next_obs),
        actions=column(batch.actions),
        rewards=column(batch.rewards),
        terminated=column(batch.terminated),
        truncated=column(batch.truncated),
    )


class _LoopEvents:
    """Learner events, handed from the learner's thread to the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, agent: Agent) -> None:
        self.loop = loop
        self.agent = agent

    def experience(self, batch: ExperienceColumns, step: int) -> None:
        self.loop.call_soon_threadsafe(self.agent.on_experience, batch, step)

    def snapshot(self, state: PolicyState) -> None:
        self.loop.call_soon_threadsafe(self.agent.on_snapshot, state)

    def episode(self, episode_return: float, length: int, step: int, regime: str) -> None:
        self.loop.call_soon_threadsafe(self.agent.on_episode, episode_return, length, step, regime)

    def adapted(self, adaptation: Adaptation) -> None:
        self.loop.call_soon_threadsafe(self.agent.on_adapted, adaptation)
