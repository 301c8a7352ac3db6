"""The learner: one stable-baselines3 model learning for as long as the agent lives.

It runs in a worker thread of the agent process (the asyncio side owns the bus). The loop is
the one the lifelong-learning idea names, in this order::

    model.learn(LIFELONG_HORIZON, loop)            SB3 drives the environment and trains
      after every environment step (loop._on_step):
        collect   the transition into a columnar experience batch     -> events.experience
        evaluate  each finished episode: the drift detector watches the agent's own returns;
                  the best policy of the current context is remembered -> events.episode
        update    publish a snapshot every `snapshot_every` steps     -> events.snapshot
                  and write a checkpoint every `checkpoint_every` steps
        stop?     the budget is reached or stop() was called
      between rollouts (loop._on_rollout_start), when a drift was detected:
        adapt     per the strategy: try the library and the peers' snapshots on the
                  sandbox and adopt the best (lifelong), start over (scratch), or carry on
                  (finetune)                                          -> events.adapted
    last experience batch, checkpoint, final snapshot

SB3's own ``train()`` between rollouts is the *train* step. Weights change only in this
thread and only between rollouts (``_on_rollout_start``), never in the middle of one.
Nothing here touches the network; ``events`` is how results leave the thread.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.vec_env import DummyVecEnv

from agents.bus.arrays import Tensor
from agents.bus.schemas import HyperValue, Lineage, PolicyArch, SpaceSpec
from agents.learner.adaptation import (
    Candidate,
    Strategy,
    choose,
    reinitialise,
    reset_optimizers,
    try_candidates,
)
from agents.learner.algorithms import AlgorithmSpec, get_algorithm, parse_hyperparams
from agents.learner.checkpoint import CheckpointInfo, CheckpointStore
from agents.learner.drift_detector import PageHinkley
from agents.learner.envs import DriftPlan, make_env
from agents.learner.experience import ExperienceColumns, ExperienceRecorder
from agents.learner.library import LibraryEntry, PolicyLibrary
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

__all__ = ["Adaptation", "Learner", "LearnerConfig", "LearnerEvents", "limit_torch_threads"]

log = logging.getLogger(__name__)

#: Episodes over which the current context's performance is judged.
_WINDOW = 20
#: Episodes that must have finished in a context before its policy is worth remembering.
_MIN_EPISODES_TO_REMEMBER = 5


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

    def snapshot(self, tensors: list[Tensor], step: int, regime: str) -> None: ...

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
        )
        self.regimes = config.drift.specs(config.env_id) if config.drift is not None else []
        self.obs_spec: SpaceSpec = describe_space(self.env.observation_space)
        self.action_spec: SpaceSpec = describe_space(self.env.action_space)
        self.peers = peers
        self.library = PolicyLibrary(config.library_capacity)
        self.detector = PageHinkley()
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
        if not self._budget_reached():
            self.model.learn(
                total_timesteps=LIFELONG_HORIZON,
                callback=loop,
                reset_num_timesteps=False,
                progress_bar=False,
            )
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
        # The current context's recent returns, and its best policy so far.
        self.recent: deque[float] = deque(maxlen=_WINDOW)
        self.context_episodes = 0
        self.context_best: LibraryEntry | None = None
        self.drift_pending = False
        self.training_regime = learner.current_regime

    # -- after every environment step ------------------------------------------------------

    def _on_step(self) -> bool:
        learner = self.learner
        step = learner.step
        self.collect(step)
        learner._rate.update(step)  # noqa: SLF001 - the loop is part of the learner
        self.update(step)
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
            episode = info["episode"]
            self.evaluate(float(episode["r"]), int(episode["l"]), step, str(info.get("regime", "")))

    def evaluate(self, episode_return: float, length: int, step: int, regime: str) -> None:
        """Judge the agent on its own recent episodes: remember its best, watch for drift."""
        learner = self.learner
        learner.episodes += 1
        learner.events.episode(episode_return, length, step, regime)
        self.recent.append(episode_return)
        self.context_episodes += 1
        window_mean = float(np.mean(self.recent))
        if self.context_episodes >= _MIN_EPISODES_TO_REMEMBER and (
            self.context_best is None or window_mean > self.context_best.score
        ):
            self.context_best = LibraryEntry(
                context=learner.context,
                tensors=policy_tensors(learner.model.policy),
                score=window_mean,
                step=step,
                lineage=learner.lineage,
            )
        if learner.detector.update(episode_return):
            learner.drift_events += 1
            self.drift_pending = True
            log.info(
                "drift detected at step %d (context %d, recent mean %.2f)",
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
        regime = self.training_regime if regime is None else regime
        learner.events.snapshot(policy_tensors(learner.model.policy), step, regime)
        self.last_snapshot_step = step

    # -- between rollouts -------------------------------------------------------------------

    def _on_rollout_start(self) -> None:
        if self.drift_pending:
            self.drift_pending = False
            self.adapt()

    def adapt(self) -> None:
        """Act on a detected drift according to the strategy, then start a new context."""
        learner = self.learner
        strategy = learner.config.strategy
        step = learner.step
        scores: dict[str, float] = {}
        chosen = "current"
        sandbox_steps = 0
        new_context = max([learner.context, *learner.library.entries]) + 1
        if strategy is Strategy.LIFELONG:
            if self.context_best is not None:
                learner.library.store(self.context_best)
            sandbox = make_env(
                learner.config.env_id,
                learner.config.env_kwargs,
                drift=learner.config.drift,
                lifetime_step=step,
            )
            try:
                run = try_candidates(
                    self._candidates(),
                    sandbox=sandbox,
                    scratch_policy=learner.fresh_policy(),
                    episodes=learner.config.adapt_episodes,
                    seed=learner.config.seed * 1_000_003 + learner.drift_events * 101,
                )
            finally:
                sandbox.close()
            if getattr(learner.env.unwrapped, "single_instance", False):
                self._restart_episode()
            sandbox_steps = run.steps
            scores = {trial.candidate.label: trial.score for trial in run.trials}
            winner = choose(run.trials)
            if winner is not None:
                load_tensors(learner.model.policy, winner.candidate.tensors)
                reset_optimizers(learner.model.policy)
                chosen = winner.candidate.label
                if winner.candidate.context is not None:
                    new_context = winner.candidate.context  # a known world came back
                if winner.candidate.lineage is not None:
                    learner.lineage = winner.candidate.lineage
        elif strategy is Strategy.SCRATCH:
            reinitialise(learner.model, learner.fresh_policy)
            learner.schedule_origin.step = step
            learner.lineage = None
            chosen = "scratch"
        learner.adaptations += chosen != "current"
        learner.adaptation_steps += sandbox_steps
        learner.context = new_context
        learner.detector.reset()
        self.recent.clear()
        self.context_episodes = 0
        self.context_best = None
        log.info("adapted at step %d (%s): %s -> context %d", step, strategy, chosen, new_context)
        learner.events.adapted(
            Adaptation(step, strategy.value, chosen, scores, new_context, sandbox_steps)
        )

    def _restart_episode(self) -> None:
        """Start a new training episode: the sandbox took over a one-per-process simulator."""
        model = self.learner.model
        assert model.env is not None
        model._last_obs = model.env.reset()  # type: ignore[assignment]  # noqa: SLF001
        model._last_episode_starts = np.ones((model.env.num_envs,), dtype=bool)  # noqa: SLF001

    def _candidates(self) -> list[Candidate]:
        learner = self.learner
        current = Candidate("current", policy_tensors(learner.model.policy))
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
        return [current, *remembered, *peers]

    def flush_experience(self) -> None:
        batch = self.recorder.drain()
        if batch is not None:
            self.learner.events.experience(batch, self.learner.step)


def _next_multiple(step: int, every: int) -> int:
    if every <= 0:
        return 2**63
    return (step // every + 1) * every
