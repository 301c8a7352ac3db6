"""The learner: one stable-baselines3 model learning for as long as the agent lives.

It runs in a worker thread of the agent process (the asyncio side owns the bus). The loop is
the one the lifelong-learning idea names, in this order::

    model.learn(LIFELONG_HORIZON, loop)            SB3 drives the environment and trains
      after every environment step (loop._on_step):
        collect   the transition into a columnar experience batch     -> events.experience
        evaluate  each finished episode: the drift detector watches the agent's own returns;
                  the context's policies worth remembering are kept   -> events.episode
        update    publish a snapshot every `snapshot_every` steps     -> events.snapshot
                  and write a checkpoint every `checkpoint_every` steps
        stop?     the budget is reached or stop() was called
      when a drift was detected (or a directive arrived), learn() is ended there, and:
        adapt     per the strategy: try the library and the peers' snapshots on the
                  sandbox and adopt the best (lifelong), start over (scratch), or carry on
                  (finetune)                                          -> events.adapted
      then learn() again, until the budget or stop()
    last experience batch, checkpoint, final snapshot

SB3's own ``train()`` between rollouts is the *train* step. Weights change only in this
thread and only between ``learn()`` calls (``between_rollouts``), never inside one.
Nothing here touches the network; ``events`` is how results leave the thread.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3 import DQN
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import TrainFreq, TrainFrequencyUnit
from stable_baselines3.common.vec_env import DummyVecEnv

from agents.bus.arrays import Tensor
from agents.bus.schemas import HyperValue, Lineage, PolicyArch, SpaceSpec
from agents.learner.adaptation import (
    FRESH,
    Candidate,
    Strategy,
    TrialRun,
    choose,
    reinitialise,
    reset_optimizers,
    streams_untouched,
    try_candidates,
)
from agents.learner.algorithms import AlgorithmSpec, get_algorithm, parse_hyperparams
from agents.learner.checkpoint import CheckpointInfo, CheckpointStore
from agents.learner.drift_detector import DropDetector
from agents.learner.envs import DriftPlan, make_env
from agents.learner.experience import ExperienceColumns, ExperienceRecorder
from agents.learner.library import ContextMemory, LibraryEntry, PolicyLibrary
from agents.learner.peers import PeerSnapshots
from agents.learner.schedules import (
    LIFELONG_HORIZON,
    ScheduleOrigin,
    install_lifelong_schedules,
)
from agents.learner.snapshots import (
    build_policy,
    load_tensors,
    make_arch,
    policy_kwargs,
    policy_tensors,
)
from agents.learner.spaces import describe_space
from agents.worlds import DriftWrapper
from agents.worlds.shadow import BASELINE_RETURN

__all__ = [
    "MUTABLE_HYPERPARAMS",
    "Adaptation",
    "Adoption",
    "Learner",
    "LearnerConfig",
    "LearnerEvents",
    "PolicyState",
    "limit_torch_threads",
]

log = logging.getLogger(__name__)

#: Episodes over which the current context's performance is judged.
_WINDOW = 20
#: Hyperparameters a directive may change during an agent's life (population-based training).
MUTABLE_HYPERPARAMS = frozenset(
    {"learning_rate", "ent_coef", "clip_range", "vf_coef", "gamma", "gae_lambda", "tau"}
)

#: Episodes that must have finished in a context before its policy is worth remembering.
_MIN_EPISODES_TO_REMEMBER = 5
#: A drop is confirmed when the current policy scores this much (relative) below the best.
_CONFIRM_DROP = 0.10
#: Episodes without alarms after an alarm the sandbox did not confirm.
_SNOOZE_EPISODES = 10


def _confirmed(best: float, current: float) -> bool:
    """Whether ``current`` is clearly below ``best``: by ``_CONFIRM_DROP`` of its size."""
    return current < best - _CONFIRM_DROP * max(abs(best), 1e-6)


@dataclass(frozen=True, slots=True)
class LearnerConfig:
    """What to learn, how, and how often to report.

    ``budget_steps`` of 0 means no budget: the learner runs until :meth:`Learner.stop`.
    """

    env_id: str
    algo: str
    env_kwargs: Mapping[str, HyperValue] = field(default_factory=dict)
    hyperparams: Mapping[str, HyperValue] = field(default_factory=dict)
    arch: PolicyArch | None = None
    seed: int = 0
    budget_steps: int = 0
    experience_batch: int = 256
    snapshot_every: int = 5_000
    checkpoint_every: int = 10_000
    checkpoint_dir: Path | None = None
    #: The world's drift: regimes switched as the agent's lifetime steps go by.
    drift: DriftPlan | None = None
    #: What to do when a drift is detected (see :mod:`agents.learner.adaptation`).
    strategy: Strategy = Strategy.LIFELONG
    #: Sandbox episodes per candidate when adapting.
    adapt_episodes: int = 3
    #: Policies remembered, one per context.
    library_capacity: int = 8
    #: Off-policy learners: the largest share of the replay buffer's intake from peers.
    peer_fraction: float = 0.5
    #: Play a directive's weights on the sandbox first and decline them when they do clearly
    #: worse on this device than the current policy.
    check_adoptions: bool = True
    #: Judge each episode by its advantage over the world's baseline controller on the same
    #: episode (return minus the baseline's, played on a copy of the device) instead of by its
    #: return: for worlds whose returns follow the weather more than the policy, where a cold
    #: spell would otherwise look like drift (:mod:`agents.worlds.shadow`).
    judge_against_baseline: bool = False


@dataclass(frozen=True, slots=True)
class PolicyState:
    """What a snapshot publishes, captured in the learner's thread between steps."""

    tensors: list[Tensor]
    step: int
    regime: str
    lineage: Lineage | None
    hyperparams: dict[str, HyperValue]
    library: list[LibraryEntry]


@dataclass(frozen=True, slots=True)
class Adoption:
    """Weights (or only hyperparameters) to take on between rollouts, and where from."""

    tensors: list[Tensor] | None
    lineage: Lineage | None
    hyperparams: dict[str, HyperValue]
    reason: str


@dataclass(frozen=True, slots=True)
class Adaptation:
    """What the agent did about a detected drift."""

    step: int
    strategy: str
    chosen: str
    scores: dict[str, float]
    context: int
    sandbox_steps: int


class LearnerEvents(Protocol):
    """Where the learner's results go. Called from the learner's thread."""

    def experience(self, batch: ExperienceColumns, step: int) -> None: ...

    def snapshot(self, state: PolicyState) -> None: ...

    def episode(self, episode_return: float, length: int, step: int, regime: str) -> None: ...

    def adapted(self, adaptation: Adaptation) -> None: ...


def limit_torch_threads() -> None:
    """One intra-op and one inter-op thread: on a busy 2-core machine more made SB3 5-70x slower."""
    torch.set_num_threads(1)
    # Only settable before the first parallel op; the process entry point calls this early.
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)


class Learner:
    """A stable-baselines3 model that learns until stopped, reporting through ``events``."""

    def __init__(
        self,
        config: LearnerConfig,
        events: LearnerEvents,
        *,
        peers: PeerSnapshots | None = None,
    ) -> None:
        limit_torch_threads()
        self.config = config
        self.events = events
        self.spec: AlgorithmSpec = get_algorithm(config.algo)
        self.hyperparams = parse_hyperparams(self.spec, config.hyperparams)
        self.arch = config.arch or make_arch(self.spec)
        self.store = CheckpointStore(config.checkpoint_dir) if config.checkpoint_dir else None
        saved = self.store.read() if self.store is not None and self.store.exists() else None
        # The drift schedule continues where the checkpoint left it, not from the start.
        self.env = make_env(
            config.env_id,
            config.env_kwargs,
            drift=config.drift,
            lifetime_step=saved.step if saved is not None else 0,
            shadow_baseline=config.judge_against_baseline,
        )
        self.regimes = config.drift.specs(config.env_id) if config.drift is not None else []
        self.obs_spec: SpaceSpec = describe_space(self.env.observation_space)
        self.action_spec: SpaceSpec = describe_space(self.env.action_space)
        self.peers = peers
        self.library = PolicyLibrary(config.library_capacity)
        self.detector = DropDetector()
        self.false_alarms = 0
        self.episodes = 0
        self.context = 1
        self.drift_events = 0
        self.adaptations = 0
        self.adaptation_steps = 0
        #: Where the current weights came from, if adopted from a peer.
        self.lineage: Lineage | None = None
        self.resumed_from_step: int | None = None
        self.schedule_origin = ScheduleOrigin()
        self.model = self._load_or_build(saved)
        self._stop = threading.Event()
        self._snapshot_requested = threading.Event()
        self._adoption: Adoption | None = None
        self._adoption_lock = threading.Lock()
        self._peer_batches: queue.Queue[ExperienceColumns] = queue.Queue(maxsize=64)
        self.peer_transitions = 0
        self.own_transitions = 0
        self.adoptions = 0
        #: Adopt directives whose weights did clearly worse on this agent's sandbox.
        self.adoptions_declined = 0
        #: The latest step's observation and ``info``, for showing the device (Home Assistant).
        #: Replaced whole from the learner's thread; readers get one consistent pair.
        self.latest_step: tuple[np.ndarray[Any, Any], dict[str, Any]] | None = None
        self._rate = _Rate(self.model.num_timesteps)

    # --- construction ----------------------------------------------------------------------

    def _vec_env(self, seed: int) -> DummyVecEnv:
        env = Monitor(self.env)
        vec = DummyVecEnv([lambda: env])
        vec.seed(seed)
        return vec

    def _load_or_build(self, info: CheckpointInfo | None) -> BaseAlgorithm:
        if self.store is not None and info is not None:
            vec = self._vec_env(self.config.seed + info.step)
            model = self.spec.cls.load(
                self.store.directory / info.model_file, env=vec, device="cpu"
            )
            if info.replay_file is not None and isinstance(model, OffPolicyAlgorithm):
                model.load_replay_buffer(self.store.directory / info.replay_file)
            if info.library_file is not None:
                self.library.load(self.store.directory / info.library_file)
            self.episodes = info.episodes
            self.context = info.context
            self.drift_events = info.drift_events
            self.adaptations = info.adaptations
            self.schedule_origin.step = info.schedule_origin
            self.resumed_from_step = info.step
            log.info("resumed from checkpoint at step %d", info.step)
        else:
            constructor: dict[str, Any] = {
                key: value
                for key, value in self.hyperparams.items()
                if key in self.spec.constructor_keys
            }
            model = self.spec.cls(
                self.arch.policy,
                self._vec_env(self.config.seed),
                policy_kwargs=policy_kwargs(self.spec, self.arch),
                seed=self.config.seed,
                device="cpu",
                verbose=0,
                **constructor,
            )
        install_lifelong_schedules(model, self.hyperparams, self.schedule_origin)
        return model

    def fresh_policy(self) -> BasePolicy:
        """A randomly initialised network of this learner's architecture and spaces."""
        return build_policy(self.spec, self.arch, self.env.observation_space, self.env.action_space)

    # --- control, from any thread ------------------------------------------------------------

    def stop(self) -> None:
        """Ask the learner to stop after the current environment step."""
        self._stop.set()

    def request_snapshot(self) -> None:
        self._snapshot_requested.set()

    def request_adoption(self, adoption: Adoption) -> None:
        """Take on ``adoption`` between the next two rollouts (a later request replaces it)."""
        with self._adoption_lock:
            self._adoption = adoption

    def has_adoption(self) -> bool:
        return self._adoption is not None

    def take_adoption(self) -> Adoption | None:
        with self._adoption_lock:
            adoption, self._adoption = self._adoption, None
        return adoption

    def offer_experience(self, batch: ExperienceColumns) -> bool:
        """A peer's transitions for the replay buffer (off-policy learners only).

        Returns False when the learner cannot take them: on-policy, or its intake is full.
        """
        if not self.off_policy:
            return False
        try:
            self._peer_batches.put_nowait(batch)
        except queue.Full:
            return False
        return True

    def apply_hyperparams(self, changes: Mapping[str, HyperValue]) -> dict[str, HyperValue]:
        """Change the hyperparameters that can change mid-life; returns those applied."""
        applied = {k: v for k, v in changes.items() if k in MUTABLE_HYPERPARAMS}
        applied = {k: v for k, v in applied.items() if k in self.spec.accepted_keys}
        if not applied:
            return {}
        self.hyperparams.update(parse_hyperparams(self.spec, applied))
        model: Any = self.model
        for key, value in applied.items():
            if key in {"ent_coef", "vf_coef", "gamma", "gae_lambda", "tau"} and hasattr(model, key):
                setattr(model, key, value)
                buffer = getattr(model, "rollout_buffer", None)
                if key in {"gamma", "gae_lambda"} and buffer is not None:
                    setattr(buffer, key, value)
        if "learning_rate" in applied:
            model.learning_rate = applied["learning_rate"]
        install_lifelong_schedules(self.model, self.hyperparams, self.schedule_origin)
        return applied

    @property
    def step(self) -> int:
        return int(self.model.num_timesteps)

    @property
    def steps_per_second(self) -> float:
        return self._rate.value

    @property
    def off_policy(self) -> bool:
        return self.spec.off_policy

    @property
    def current_regime(self) -> str:
        """The regime the world is in, as the world reports it: for people, never learned."""
        if isinstance(self.env, DriftWrapper):
            regime = self.env.current_regime or self.env.schedule.regime_at(self.step)
            return regime.name
        return ""

    # --- the loop, in the learner's thread --------------------------------------------------

    def run(self) -> None:
        """Learn until the budget is reached or :meth:`stop` is called, then wrap up.

        A brand-new learner first publishes its untrained policy (step 0): the reference
        against which transfer is measured. Wrapping up is a last experience batch, a
        checkpoint and a final snapshot. Blocks: call it in a worker thread.
        """
        limit_torch_threads()
        loop = _LifelongLoop(self)
        if self.step == 0 and self.resumed_from_step is None:
            loop.publish_snapshot(0)
        while not self._should_stop():
            # learn() returns when the loop asks: to stop, or to act on a drift or a directive
            # at once (the rollout under way is dropped, its steps were lived all the same).
            # Calling it again is safe: no schedule depends on its progress (schedules.py).
            self.model.learn(
                total_timesteps=LIFELONG_HORIZON,
                callback=loop,
                reset_num_timesteps=False,
                progress_bar=False,
            )
            loop.between_rollouts()
        loop.flush_experience()
        self.checkpoint()
        if loop.last_snapshot_step != self.step:
            loop.publish_snapshot(self.step)

    def checkpoint(self) -> None:
        if self.store is not None:
            self.store.save(
                self.model,
                episodes=self.episodes,
                library=self.library,
                loop_state={
                    "context": self.context,
                    "schedule_origin": self.schedule_origin.step,
                    "drift_events": self.drift_events,
                    "adaptations": self.adaptations,
                },
            )

    def _budget_reached(self) -> bool:
        budget = self.config.budget_steps
        return budget > 0 and self.step >= budget

    def _should_stop(self) -> bool:
        return self._stop.is_set() or self._budget_reached()


class _Rate:
    """Steps per second over the last few seconds of wall time."""

    def __init__(self, step: int, window: float = 5.0) -> None:
        self.window = window
        self._mark = (time.monotonic(), step)
        self.value = 0.0

    def update(self, step: int) -> None:
        now = time.monotonic()
        then, then_step = self._mark
        if now - then >= self.window:
            self.value = (step - then_step) / (now - then)
            self._mark = (now, step)
        elif self.value == 0.0 and now - then >= 1.0:
            self.value = (step - then_step) / (now - then)


class _LifelongLoop(BaseCallback):
    """Collect, evaluate, update on every step; adapt between rollouts (module docstring)."""

    def __init__(self, learner: Learner) -> None:
        super().__init__(verbose=0)
        self.learner = learner
        config = learner.config
        env = learner.env
        self.recorder = ExperienceRecorder(
            env.observation_space, env.action_space, config.experience_batch
        )
        step = learner.step
        self.next_snapshot = _next_multiple(step, config.snapshot_every)
        self.next_checkpoint = _next_multiple(step, config.checkpoint_every)
        self.action_key = "actions" if learner.off_policy else "clipped_actions"
        self.last_snapshot_step = -1
        # The current context's recent returns, and its policies worth remembering.
        self.recent: deque[float] = deque(maxlen=_WINDOW)
        self.context_episodes = 0
        self.memory = ContextMemory(horizon=learner.detector.history_length)
        self.watched_until = 0  # the context's last episode the drift detector was shown
        self.drift_pending = False
        self.training_regime = learner.current_regime
        # Off-policy: how often and how much it trains, as configured (not read from the model:
        # a checkpoint keeps the last value _on_rollout_end set); 0 where the algorithm has none.
        configured = {
            key: value if isinstance(value := learner.hyperparams.get(key), int) else 0
            for key in ("train_freq", "gradient_steps", "target_update_interval")
        }
        self.train_freq = configured["train_freq"]
        self.gradient_steps = configured["gradient_steps"]
        self.target_update_interval = configured["target_update_interval"]

    # -- after every environment step ------------------------------------------------------

    def _on_step(self) -> bool:
        learner = self.learner
        step = learner.step
        self.collect(step)
        learner.own_transitions += 1
        if learner.off_policy and not learner._peer_batches.empty():  # noqa: SLF001
            self.take_in_peers()
        learner._rate.update(step)  # noqa: SLF001 - the loop is part of the learner
        self.update(step)
        if self.drift_pending or learner.has_adoption():
            return False  # end this learn() call: weights change between calls, never inside
        return not learner._should_stop()  # noqa: SLF001

    def collect(self, step: int) -> None:
        """The transition just made, into the experience batch; a finished episode, evaluated."""
        local: dict[str, Any] = self.locals
        info: dict[str, Any] = local["infos"][0]
        done = bool(local["dones"][0])
        next_obs = local["new_obs"][0]
        if done and info.get("terminal_observation") is not None:
            next_obs = info["terminal_observation"]
        truncated = done and bool(info.get("TimeLimit.truncated", False))
        last_obs = self.model._last_obs  # noqa: SLF001 - SB3 keeps the pre-step obs here
        assert isinstance(last_obs, np.ndarray)
        batch = self.recorder.record(
            last_obs[0],
            next_obs,
            local[self.action_key][0],
            float(local["rewards"][0]),
            terminated=done and not truncated,
            truncated=truncated,
        )
        self.learner.latest_step = (next_obs, info)
        if batch is not None:
            self.learner.events.experience(batch, step)
        regime = str(info.get("regime", ""))
        if regime and regime != self.training_regime:
            # The world just changed (this step began a new episode in a new regime). The
            # weights have not been trained since: a snapshot now closes the old regime's
            # training block exactly, which is what the lifelong metrics need.
            self.publish_snapshot(step, self.training_regime)
            self.training_regime = regime
        if done and "episode" in info:
            episode_return = float(info["episode"]["r"])
            score = episode_return
            if self.learner.config.judge_against_baseline and BASELINE_RETURN in info:
                score -= float(info[BASELINE_RETURN])
            regime = str(info.get("regime", ""))
            self.evaluate(episode_return, score, int(info["episode"]["l"]), step, regime)

    def evaluate(
        self, episode_return: float, score: float, length: int, step: int, regime: str
    ) -> None:
        """Judge the agent on its own recent episodes: remember its best, watch for drift.

        ``score`` is what the agent is judged by: the return, or its advantage over the
        baseline on the same episode (``judge_against_baseline``).
        """
        learner = self.learner
        learner.episodes += 1
        learner.events.episode(episode_return, length, step, regime)
        self.recent.append(score)
        self.context_episodes += 1
        window_mean = float(np.mean(self.recent))
        if self.context_episodes >= _MIN_EPISODES_TO_REMEMBER:
            self.memory.offer(
                self.context_episodes,
                self.recent,
                lambda mean: LibraryEntry(
                    context=learner.context,
                    tensors=policy_tensors(learner.model.policy),
                    score=mean,
                    step=step,
                    lineage=learner.lineage,
                ),
            )
        if self.drift_pending:
            return
        self.watched_until = self.context_episodes
        if learner.detector.update(score):
            self.drift_pending = True
            log.info(
                "returns dropped at step %d (context %d, recent mean %.2f)",
                step, learner.context, window_mean,
            )  # fmt: skip

    def update(self, step: int) -> None:
        """Publish a snapshot and write a checkpoint when they are due."""
        learner = self.learner
        config = learner.config
        if step >= self.next_snapshot or learner._snapshot_requested.is_set():  # noqa: SLF001
            learner._snapshot_requested.clear()  # noqa: SLF001
            self.next_snapshot = _next_multiple(step, config.snapshot_every)
            self.publish_snapshot(step)
        if step >= self.next_checkpoint:
            self.next_checkpoint = _next_multiple(step, config.checkpoint_every)
            learner.checkpoint()

    def publish_snapshot(self, step: int, regime: str | None = None) -> None:
        learner = self.learner
        learner.events.snapshot(
            PolicyState(
                tensors=policy_tensors(learner.model.policy),
                step=step,
                regime=self.training_regime if regime is None else regime,
                lineage=learner.lineage,
                hyperparams=dict(learner.hyperparams),
                library=list(learner.library.entries.values()),
            )
        )
        self.last_snapshot_step = step

    # -- between rollouts -------------------------------------------------------------------

    def between_rollouts(self) -> None:
        """Take on a directive's adoption and act on a detected drift, if any is pending."""
        adoption = self.learner.take_adoption()
        if adoption is not None:
            self.adopt(adoption)
        if self.drift_pending:
            self.drift_pending = False
            self.adapt()

    def adopt(self, adoption: Adoption) -> None:
        """Take on a peer's weights and/or new hyperparameters (a coordinator's directive).

        The coordinator ranked the peer's snapshot on the peer's own device; this agent's
        device may differ (another intersection, another house). So the weights are first
        played against the current policy on the sandbox, and declined when they do clearly
        worse here; the new hyperparameters (the exploring half of the directive) apply anyway.
        """
        learner = self.learner
        check = learner.config.check_adoptions
        if adoption.tensors is not None and (not check or self._fits_here(adoption.tensors)):
            load_tensors(learner.model.policy, adoption.tensors)
            reset_optimizers(learner.model.policy)
            learner.lineage = adoption.lineage
            learner.adoptions += 1
        elif adoption.tensors is not None:
            learner.adoptions_declined += 1
            log.info("declined %s's weights: clearly worse on this device", adoption.lineage)
        applied = learner.apply_hyperparams(adoption.hyperparams)
        log.info(
            "adopted %s (%s), hyperparameters %s",
            adoption.lineage or "own weights", adoption.reason, applied,
        )  # fmt: skip
        # The context's best so far was another policy's: judge the new one afresh.
        self.recent.clear()
        self.context_episodes = 0
        self.memory.clear()
        learner.detector.reset()

    def _fits_here(self, tensors: list[Tensor]) -> bool:
        learner = self.learner
        run = self._on_sandbox(
            lambda: [
                Candidate("current", policy_tensors(learner.model.policy)),
                Candidate("peer", tensors),
            ]
        )
        learner.adaptation_steps += run.steps
        scores = {trial.candidate.label: trial.score for trial in run.trials}
        if "peer" not in scores:
            return False  # it does not even fit the network
        return not _confirmed(scores["current"], scores["peer"])

    def take_in_peers(self) -> None:
        """Add peers' transitions to the replay buffer, up to the configured share."""
        learner = self.learner
        model = learner.model
        if not isinstance(model, OffPolicyAlgorithm) or model.replay_buffer is None:
            return
        fraction = learner.config.peer_fraction
        allowed = fraction / max(1e-9, 1.0 - fraction) * learner.own_transitions
        while learner.peer_transitions < allowed:
            try:
                batch = learner._peer_batches.get_nowait()  # noqa: SLF001
            except queue.Empty:
                return
            add_to_replay_buffer(model, batch)
            learner.peer_transitions += len(batch)

    def _on_rollout_end(self) -> None:
        """Off-policy: train in proportion to everything the replay buffer took in.

        SB3 trains ``gradient_steps`` every ``train_freq`` of the agent's own steps. An agent
        that also takes in peers' transitions keeps the same number of updates per transition
        received, as a distributed learner does for its actors (Horgan et al., "Distributed
        Prioritized Experience Replay", 2018): shared experience then means learning from the
        society's data, not diluting one's own with it. It trains as often as its intake
        says (``train_freq`` times its own share of the intake), in bursts of the configured
        size: DQN refreshes its target network only between bursts, so a burst four times
        longer would chase a stale target four times as long. DQN's target refresh interval,
        also counted in own steps, shrinks the same way. Without peers nothing changes.
        """
        model = self.learner.model
        own, peer = self.learner.own_transitions, self.learner.peer_transitions
        if not isinstance(model, OffPolicyAlgorithm) or self.train_freq < 1 or not peer:
            return
        share = own / (own + peer)
        every = max(1, round(self.train_freq * share))
        # SB3 annotates the constructor argument's type; after setup it holds a TrainFreq.
        model.train_freq = TrainFreq(every, TrainFrequencyUnit.STEP)  # type: ignore[assignment]
        if self.gradient_steps < 0:  # SB3's -1, one update per step collected: keep per own step
            model.gradient_steps = self.train_freq
        if isinstance(model, DQN) and self.target_update_interval > 0:
            # Counted in own steps too: as many updates between two target refreshes as alone.
            model.target_update_interval = max(1, round(self.target_update_interval * share))

    def adapt(self) -> None:
        """Act on a drop of the returns according to the strategy.

        First the drop is confirmed on the sandbox: the current policy, played there, must
        score clearly below the best this context had (``confirm_drop``). A drop that is not
        confirmed is a false alarm (learning noise, an unlucky run): nothing changes and the
        detector is snoozed. A confirmed drift ends the context: ``lifelong`` remembers the
        policy the context had before its returns fell and adopts the best of its library, its
        peers' snapshots and untrained weights, ``scratch`` starts over, ``finetune`` carries on.
        """
        learner = self.learner
        strategy = learner.config.strategy
        step = learner.step
        if strategy is Strategy.FINETUNE:
            self._new_context(Adaptation(step, strategy.value, "current", {}, 0, 0))
            return
        run = self._on_sandbox(lambda: [Candidate("current", policy_tensors(learner.model.policy))])
        current = run.trials[0].score if run.trials else None
        best_score = self.memory.best_score
        if best_score is not None and current is not None and not _confirmed(best_score, current):
            learner.false_alarms += 1
            learner.adaptation_steps += run.steps
            learner.detector.snooze(_SNOOZE_EPISODES)
            log.info("drop not confirmed on the sandbox (%.2f vs best %.2f)", current, best_score)
            return
        chosen = "current"
        scores = {trial.candidate.label: trial.score for trial in run.trials}
        context = max([learner.context, *learner.library.entries]) + 1
        if strategy is Strategy.LIFELONG:
            # The policy the context had before its returns began to fall (ContextMemory).
            dropped_at = self.watched_until - learner.detector.episodes_since_change()
            remembered_here = self.memory.before(dropped_at)
            if remembered_here is not None:
                learner.library.store(remembered_here)
                log.info(
                    "remembering context %d: its policy at step %d (window %.2f, best %.2f); "
                    "returns fell after episode %d of %d",
                    learner.context, remembered_here.step, remembered_here.score,
                    self.memory.best_score, dropped_at, self.watched_until,
                )  # fmt: skip
            others = self._on_sandbox(self._candidates)
            run.steps += others.steps
            trials = run.trials + others.trials
            scores.update({trial.candidate.label: trial.score for trial in others.trials})
            winner = choose(trials)
            if winner is not None and winner.candidate.label == FRESH:
                # Untrained weights play this world better than anything it knows: what it
                # knows hurts here (negative transfer), so it starts over from those weights.
                self._start_over(winner.candidate.tensors)
                chosen = FRESH
            elif winner is not None:
                load_tensors(learner.model.policy, winner.candidate.tensors)
                reset_optimizers(learner.model.policy)
                chosen = winner.candidate.label
                remembered = (
                    None
                    if winner.candidate.context is None
                    else learner.library.get(winner.candidate.context)
                )
                if remembered is not None and not _confirmed(remembered.score, winner.score):
                    # It does here what it did in its own context: that world came back.
                    context = remembered.context
                    learner.library.touch(context, step)
                # Otherwise the winner is only a head start in a new world: its context's
                # entry stays as it was, so the world it was learned in can still be recalled.
                if winner.candidate.lineage is not None:
                    learner.lineage = winner.candidate.lineage
        elif strategy is Strategy.SCRATCH:
            self._start_over()
            chosen = "scratch"
        learner.adaptations += chosen != "current"
        learner.adaptation_steps += run.steps
        self._new_context(Adaptation(step, strategy.value, chosen, scores, context, run.steps))

    def _new_context(self, adaptation: Adaptation) -> None:
        learner = self.learner
        learner.drift_events += 1
        learner.context = adaptation.context or learner.context + 1
        learner.detector.reset()
        self.recent.clear()
        self.context_episodes = 0
        self.memory.clear()
        log.info(
            "drift at step %d (%s): %s -> context %d",
            adaptation.step, adaptation.strategy, adaptation.chosen, learner.context,
        )  # fmt: skip
        learner.events.adapted(replace(adaptation, context=learner.context))

    def _start_over(self, tensors: list[Tensor] | None = None) -> None:
        """Fresh weights (``tensors`` if given), optimiser, replay buffer and schedules."""
        learner = self.learner
        reinitialise(learner.model, learner.fresh_policy)
        if tensors is not None:
            load_tensors(learner.model.policy, tensors)
        learner.schedule_origin.step = learner.step
        learner.lineage = None

    def _on_sandbox(self, candidates: Callable[[], list[Candidate]]) -> TrialRun:
        """Play candidates on a fresh sandbox twin of the device, in its current conditions.

        The learner's random streams are left where they were (``streams_untouched``).
        """
        learner = self.learner
        with streams_untouched():
            sandbox = make_env(
                learner.config.env_id,
                learner.config.env_kwargs,
                drift=learner.config.drift,
                lifetime_step=learner.step,
                shadow_baseline=learner.config.judge_against_baseline,
            )
            try:
                run = try_candidates(
                    candidates(),
                    sandbox=sandbox,
                    scratch_policy=learner.fresh_policy(),
                    episodes=learner.config.adapt_episodes,
                    seed=learner.config.seed * 1_000_003 + learner.drift_events * 101,
                    against_baseline=learner.config.judge_against_baseline,
                )
            finally:
                sandbox.close()
        if getattr(learner.env.unwrapped, "single_instance", False):
            self._restart_episode()
        return run

    def _restart_episode(self) -> None:
        """Start a new training episode: the sandbox took over a one-per-process simulator."""
        model = self.learner.model
        assert model.env is not None
        model._last_obs = model.env.reset()  # type: ignore[assignment]  # noqa: SLF001
        model._last_episode_starts = np.ones((model.env.num_envs,), dtype=bool)  # noqa: SLF001

    def _candidates(self) -> list[Candidate]:
        learner = self.learner
        remembered = [
            Candidate(f"library:{entry.context}", entry.tensors, entry.context, entry.lineage)
            for entry in learner.library.entries.values()
        ]
        peers = [
            Candidate(
                f"peer:{peer.agent}@v{peer.version}",
                peer.tensors,
                lineage=Lineage(agent=peer.agent, version=peer.version),
            )
            for peer in (learner.peers.latest() if learner.peers is not None else [])
        ]
        fresh = Candidate(FRESH, policy_tensors(learner.fresh_policy()))
        return [*remembered, *peers, fresh]

    def flush_experience(self) -> None:
        batch = self.recorder.drain()
        if batch is not None:
            self.learner.events.experience(batch, self.learner.step)


def add_to_replay_buffer(model: OffPolicyAlgorithm, batch: ExperienceColumns) -> None:
    """Store transitions in SB3's replay buffer as if they had been collected here.

    Actions travel in the environment's units; SB3 stores Box actions scaled to [-1, 1].
    A truncated episode end is passed as a timeout, so SB3 still bootstraps through it.
    """
    buffer = model.replay_buffer
    assert buffer is not None
    actions = np.asarray(batch.actions)
    if isinstance(model.action_space, spaces.Box):
        actions = model.policy.scale_action(actions.astype(np.float32))
    for i in range(len(batch)):
        buffer.add(
            np.asarray(batch.obs[i : i + 1]),
            np.asarray(batch.next_obs[i : i + 1]),
            actions[i : i + 1],
            np.asarray(batch.rewards[i : i + 1], dtype=np.float32),
            np.asarray([bool(batch.terminated[i]) or bool(batch.truncated[i])]),
            [{"TimeLimit.truncated": bool(batch.truncated[i])}],
        )


def _next_multiple(step: int, every: int) -> int:
    if every <= 0:
        return 2**63
    return (step // every + 1) * every
