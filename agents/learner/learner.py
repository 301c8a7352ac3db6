"""The learner: one stable-baselines3 model learning for as long as the agent lives.

It runs in a worker thread of the agent process (the asyncio side owns the bus). The loop is
the one the lifelong-learning idea names, in this order (:meth:`Learner.run`)::

    model.learn(LIFELONG_HORIZON, callback)        SB3 drives the environment and trains
      after every environment step (the callback, _LifelongCallback):
        collect   the transition into a columnar experience batch     -> events.experience
                  peers' transitions into the replay buffer (off-policy, intake.py)
        evaluate  each finished episode goes to the adapter: its drift detector watches the
                  agent's own returns, the context's policies worth remembering are kept
                                                                      -> events.episode
        update    publish a snapshot every `snapshot_every` steps     -> events.snapshot
                  and write a checkpoint every `checkpoint_every` steps
        stop?     the budget is reached or stop() was called; or a drift is pending or a
                  directive arrived: learn() is ended there, and between two learn() calls
        adopt     a directive's weights, if they do not do clearly worse on the sandbox
        adapt     per the strategy: try the library and the peers' snapshots on the
                  sandbox and adopt the best (lifelong), start over (scratch), or carry on
                  (finetune)                                          -> events.adapted
      then learn() again, until the budget or stop()
    last experience batch, checkpoint, final snapshot

SB3's own ``train()`` between rollouts is the *train* step. The decisions (adopt, adapt) are
:class:`~agents.learner.adaptation.Adapter`'s; the callback only collects, snapshots and
stops. Weights change only in this thread and only between ``learn()`` calls, never inside
one. Nothing here touches the network; ``events`` is how results leave the thread. The
counters are one :class:`~agents.learner.stats.LearnerStats` (``Learner.stats``).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.vec_env import DummyVecEnv

from agents.bus.arrays import Tensor
from agents.bus.schemas import HyperValue, Lineage, PolicyArch, SpaceSpec
from agents.exceptions import ConfigError, IncompatiblePolicy
from agents.learner.adaptation import (
    Adaptation,
    Adapter,
    Adoption,
    Strategy,
    reinitialise,
    reset_optimizers,
)
from agents.learner.algorithms import (
    AlgorithmSpec,
    get_algorithm,
    parse_hyperparams,
    silence_logger,
)
from agents.learner.checkpoint import CheckpointInfo, CheckpointStore
from agents.learner.envs import DriftPlan, make_env
from agents.learner.experience import ExperienceColumns, ExperienceRecorder
from agents.learner.federation import Federation, FitData, OwnWeights, PeerWeights
from agents.learner.guard import DEFAULT_BUDGET, ConservativeGate, GuardedDevice, RegretMeter
from agents.learner.hindsight import HindsightPlans, check_hindsight
from agents.learner.imagination import Imagination, check_imagination
from agents.learner.intake import PeerIntake, add_to_replay_buffer
from agents.learner.library import LibraryEntry, PolicyLibrary
from agents.learner.other_controllers import clone_other_controllers
from agents.learner.peers import PeerSnapshots
from agents.learner.pooling import (
    PooledA2C,
    PooledPPO,
    RolloutChunk,
    RolloutPool,
    chunk_steps,
)
from agents.learner.pretrain import (
    ControllerDemonstrations,
    StartFrom,
    pretrain,
    record_controller,
    start_controller,
)
from agents.learner.rollout_policy import NumpyRolloutPolicy
from agents.learner.sandbox import Candidate, TrialRun, streams_untouched, try_candidates
from agents.learner.schedules import (
    LIFELONG_HORIZON,
    ScheduleOrigin,
    install_lifelong_schedules,
)
from agents.learner.shield import EXECUTED_ACTION, ShieldedDevice
from agents.learner.snapshots import (
    build_policy,
    learner_policy_kwargs,
    load_tensors,
    make_arch,
    policy_tensors,
    state_tensors,
)
from agents.learner.spaces import describe_space
from agents.learner.stats import LearnerStats, StepRate
from agents.worlds import DriftWrapper
from agents.worlds.shadow import BASELINE_RETURN, is_shadowed, unjudged

__all__ = [
    "MUTABLE_HYPERPARAMS",
    "Learner",
    "LearnerConfig",
    "LearnerEvents",
    "PolicyState",
    "limit_torch_threads",
]

log = logging.getLogger(__name__)

#: The longest a pooling member waits for its peers' fresh rollouts before training (seconds).
MAX_POOL_WAIT = 1.0

#: Hyperparameters a directive may change during an agent's life (population-based training).
MUTABLE_HYPERPARAMS = frozenset(
    {"learning_rate", "ent_coef", "clip_range", "vf_coef", "gamma", "gae_lambda", "tau"}
)


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
    #: Where learning starts: ``baseline`` records the world's baseline controller driving the
    #: device for ``history_steps`` steps and clones it (pretrain.py); ``scratch``: untrained.
    start_from: StartFrom = StartFrom.SCRATCH
    history_steps: int = 20_000
    #: Starting from the baseline, also clone the world's other baseline controllers from the
    #: recorded history into the library, to be recalled when the world changes
    #: (other_controllers.py).
    other_controllers: bool = True
    #: Let the learner drive the device only while the regret stays within ``guard_budget`` of
    #: the controller's cost; the controller drives otherwise (guard.py).
    guard: bool = False
    guard_budget: float = DEFAULT_BUDGET
    #: The seed of the network's initial weights (``None``: ``seed``). Members of a federation
    #: share one, so that their networks start aligned and can be averaged (federation.py).
    init_seed: int | None = None
    #: Imagined steps per device step (on-policy learners in worlds that name their
    #: endogenous observation entries): the device's latest days replayed through a model of
    #: the device fitted to them (imagination.py). 0: none.
    imagination: float = 0.0
    #: Remembered days planned in hindsight per day lived, the plans cloned into the policy
    #: (hindsight.py; needs ``imagination``). 0: none.
    hindsight: float = 0.0
    #: Put the world's shield between the policy and the device (shield.py): the policy's
    #: proposals that would break its user's limit (the thermostat's comfort band) are
    #: replaced, on the device, the sandbox, imagined days and in evaluation.
    shield: bool = False


@dataclass(frozen=True, slots=True)
class PolicyState:
    """What a snapshot publishes, captured in the learner's thread between steps."""

    tensors: list[Tensor]
    step: int
    regime: str
    lineage: Lineage | None
    hyperparams: dict[str, HyperValue]
    library: list[LibraryEntry]


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
            meter_baseline=True,
        )
        #: The regret against the baseline controller, over the agent's life (guard.py).
        self.meter = RegretMeter()
        #: Transitions on their way to the bus, from the learner and from the controller.
        self.recorder = ExperienceRecorder(
            self.env.observation_space, self.env.action_space, config.experience_batch
        )
        #: The controller's latest episodes on the device (the guard's fallbacks): what an
        #: on-policy learner imitates while it is kept off the device (pretrain.py).
        self.demonstrations = ControllerDemonstrations(
            self.env.observation_space, self.env.action_space
        )
        #: What stable-baselines3 drives: the device, behind the guard where there is one.
        self.device = self._device()
        self.regimes = config.drift.specs(config.env_id) if config.drift is not None else []
        self.obs_spec: SpaceSpec = describe_space(self.env.observation_space)
        self.action_spec: SpaceSpec = describe_space(self.env.action_space)
        self.peers = peers
        self.library = PolicyLibrary(config.library_capacity)
        #: The counters telemetry, the final report and checkpoints tell (stats.py).
        self.stats = LearnerStats()
        #: Where the current weights came from, if adopted from a peer.
        self.lineage: Lineage | None = None
        self.resumed_from_step: int | None = None
        self.schedule_origin = ScheduleOrigin()
        self.model = self._load_or_build(saved)
        imagined_world = check_imagination(self.env, config.algo, config.imagination)
        #: Learning from imagined days (imagination.py), where configured.
        check_hindsight(config.hindsight, config.imagination)
        self.imagination = (
            Imagination(
                imagined_world,
                config.imagination,
                hindsight=HindsightPlans(imagined_world, config.hindsight, seed=config.seed)
                if config.hindsight > 0
                else None,
                seed=config.seed,
                shield=config.shield,
            )
            if imagined_world is not None
            else None
        )
        self._imagined_at_step = self.step
        self._stop = threading.Event()
        self._snapshot_requested = threading.Event()
        self._adoption: Adoption | None = None
        self._adoption_lock = threading.Lock()
        #: Peers' transitions waiting for the replay buffer (off-policy learners).
        self.intake = PeerIntake(self.stats, self.hyperparams, peer_fraction=config.peer_fraction)
        #: The latest step's observation and ``info``, for showing the device (integrations).
        #: Replaced whole from the learner's thread; readers get one consistent pair.
        self.latest_step: tuple[np.ndarray[Any, Any], dict[str, Any]] | None = None
        self.rate = StepRate(self.model.num_timesteps)
        #: What the agent does about drift and directives: the decisions (adaptation.py).
        self.adapter = Adapter(self, config.strategy, check_adoptions=config.check_adoptions)
        #: Federated learning with peers (on-policy learners; set by the agent, federation.py).
        self.federation: Federation | None = None
        self._federated_at_step = self.step
        self._latest_rollout: FitData | None = None
        #: When the chunk being collected started (pooling rollouts: bounds the wait for peers).
        self._chunk_started = time.monotonic()
        self._scratch: list[BasePolicy] = []
        #: The weights as the previous round left them: local training's update starts there
        #: (``None`` after the weights were replaced: the next round sends no update).
        self._round_start: dict[str, torch.Tensor] | None = None

    # --- construction ----------------------------------------------------------------------

    def _device(self) -> gym.Env[Any, Any]:
        """The device as the policy drives it: the guard, and the world's shield outside it.

        Outside the guard, so the controller's episodes are the controller's, unshielded.
        """
        guarded = self._guarded()
        return ShieldedDevice(guarded) if self.config.shield else guarded

    def _guarded(self) -> gym.Env[Any, Any]:
        """The device behind a guard, which also meters regret, where a baseline can shadow it."""
        config = self.config
        if config.start_from is StartFrom.BASELINE:
            start_controller(config.env_id, self.env)  # a ConfigError now, not after startup
        if not is_shadowed(self.env):
            if config.guard:
                msg = (
                    f"{config.env_id}: the guard needs the world's baseline controller played on "
                    "a copy of the device, and this world has none or cannot be copied"
                )
                raise ConfigError(msg)
            return self.env
        return GuardedDevice(
            self.env,
            start_controller(config.env_id, self.env),
            gate=ConservativeGate(config.guard_budget) if config.guard else None,
            meter=self.meter,
            on_transition=self._controller_step,
            keep_going=self._controller_may_go_on,
        )

    def _vec_env(self, seed: int) -> DummyVecEnv:
        env = Monitor(self.device)
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
            if isinstance(model, PooledPPO | PooledA2C):
                # A pooling member saved its quarter rollout: the configured one until it
                # joins a federation again (join_federation).
                _collect_rollouts_of(model, int(self.hyperparams["n_steps"]))
            if info.library_file is not None:
                self.library.load(self.store.directory / info.library_file)
            self.stats.episodes = info.episodes
            self.stats.context = info.context
            self.stats.drift_events = info.drift_events
            self.stats.adaptations = info.adaptations
            self.meter.deployed_return = info.deployed_return
            self.meter.baseline_return = info.baseline_return
            self.meter.learner_episodes = info.learner_episodes
            self.meter.controller_episodes = info.controller_episodes
            self.meter.controller_steps = info.controller_steps
            self.stats.take_regret(self.meter)
            self.schedule_origin.step = info.schedule_origin
            self.resumed_from_step = info.step
            log.info("resumed from checkpoint at step %d", info.step)
        else:
            self.spec.check_action_space(self.config.env_id, self.env.action_space)
            constructor: dict[str, Any] = {
                key: value
                for key, value in self.hyperparams.items()
                if key in self.spec.constructor_keys
            }
            try:
                model = self.spec.cls(
                    self._policy_class(),
                    self._vec_env(self.config.seed),
                    policy_kwargs=learner_policy_kwargs(self.spec, self.arch),
                    seed=self.config.seed,
                    device="cpu",
                    verbose=0,
                    **constructor,
                )
            except (AssertionError, ValueError, TypeError) as exc:
                # stable-baselines3 refuses an action space or a hyperparameter value by
                # assertion: the user's mistake, said in one line.
                reason = " ".join(str(exc).split()) or type(exc).__name__
                msg = f"{self.spec.name} cannot learn {self.config.env_id}: {reason}"
                raise ConfigError(msg) from exc
            if self.config.init_seed is not None:
                # The initial weights from the shared seed; exploration stays the agent's own.
                with torch.random.fork_rng():
                    torch.manual_seed(self.config.init_seed)
                    template = self.fresh_policy()
                model.policy.load_state_dict(template.state_dict())
        install_lifelong_schedules(model, self.hyperparams, self.schedule_origin)
        silence_logger(model)
        return model

    def _policy_class(self) -> str | type[BasePolicy]:
        """PPO's and A2C's MLP collects its rollouts in numpy (rollout_policy.py)."""
        if not self.spec.off_policy and self.arch.policy == "MlpPolicy":
            return NumpyRolloutPolicy
        return self.arch.policy

    def fresh_policy(self) -> BasePolicy:
        """A randomly initialised network of this learner's architecture and spaces."""
        return build_policy(self.spec, self.arch, self.env.observation_space, self.env.action_space)

    # --- control, from any thread ------------------------------------------------------------

    def stop(self) -> None:
        """Ask the learner to stop after the current environment step."""
        self._stop.set()

    def request_snapshot(self) -> None:
        self._snapshot_requested.set()

    def take_snapshot_request(self) -> bool:
        """Whether a snapshot was requested since the last call (the request is consumed)."""
        if not self._snapshot_requested.is_set():
            return False  # the common case, without taking the event's lock
        self._snapshot_requested.clear()
        return True

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

    def offer_experience(self, batch: ExperienceColumns, source: str = "") -> bool:
        """Peer ``source``'s transitions for the replay buffer (off-policy learners only).

        Returns False when the learner cannot take them: on-policy, or its intake is full.
        """
        return self.off_policy and self.intake.offer(batch, source)

    def checked_hyperparams(self, changes: Mapping[str, HyperValue]) -> dict[str, HyperValue]:
        """The changes this learner can make mid-life, checked (types, finiteness, ranges).

        Keys it cannot change (not mutable, or not its algorithm's) are left out.

        Raises:
            ConfigError: a value it would take is not valid; nothing is changed.
        """
        mutable = {
            k: v
            for k, v in changes.items()
            if k in MUTABLE_HYPERPARAMS and k in self.spec.accepted_keys
        }
        checked = parse_hyperparams(self.spec, mutable)
        return {key: checked[key] for key in mutable}

    def apply_hyperparams(self, changes: Mapping[str, HyperValue]) -> dict[str, HyperValue]:
        """Change the hyperparameters that can change mid-life; returns those applied."""
        applied = self.checked_hyperparams(changes)
        if not applied:
            return {}
        self.hyperparams.update(applied)
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
        return self.rate.value

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

    # --- federated learning, at rollout boundaries (federation.py) ---------------------------

    def remember_rollout(self) -> None:
        """Keep the rollout just collected, to judge how well peers' policies fit our world."""
        if self.federation is None:
            return
        buffer: Any = getattr(self.model, "rollout_buffer", None)
        observations = getattr(buffer, "observations", None)
        if buffer is None or not isinstance(observations, np.ndarray):
            self._latest_rollout = None  # dict observations: every alike device is averaged in
            return
        returns = np.asarray(buffer.returns, dtype=np.float64).reshape(-1)
        values = np.asarray(buffer.values, dtype=np.float64).reshape(-1)
        self._latest_rollout = FitData(
            obs=observations.reshape(len(returns), *observations.shape[2:]).copy(),
            returns=returns,
            own_error=float(np.mean((values - returns) ** 2)),
        )

    def join_federation(self, federation: Federation) -> None:
        """Learn with ``federation``'s members from now on (set up by the agent).

        Pooling rollouts, the learner collects a quarter of its rollout at a time and trains
        once it holds a rollout's worth of its own and its peers' (pooling.py).
        """
        self.federation = federation
        model = self.model
        if not federation.pool_rollouts or not isinstance(model, PooledPPO | PooledA2C):
            return
        if type(model.rollout_buffer) is not RolloutBuffer:
            log.info("observations of several arrays: rollouts are not pooled")
            return
        _collect_rollouts_of(model, chunk_steps(int(self.hyperparams["n_steps"])))
        model.rollout_pool = RolloutPool(
            int(self.hyperparams["n_steps"]), self._peer_rollouts, publish=self._share_rollout
        )

    @property
    def rollout_pool(self) -> RolloutPool | None:
        pool: RolloutPool | None = getattr(self.model, "rollout_pool", None)
        return pool

    def _share_rollout(self, chunk: RolloutChunk) -> None:
        """Pooling rollouts: the chunk just collected, with the policy that collected it, out."""
        federation = self.federation
        if federation is None:
            return
        samples = self.step - self._federated_at_step
        self._federated_at_step = self.step
        federation.publish(
            OwnWeights(
                policy_tensors(self.model.policy), self.step, samples, self.current_regime,
                rollout=chunk,
            )
        )  # fmt: skip

    def _peer_rollouts(self) -> list[RolloutChunk]:
        """The rollouts of the peers whose policy fits our world, arrived since the last call."""
        federation = self.federation
        if federation is None:
            return []
        # Wait for the peers' chunks of this round, at most as long as ours took to collect:
        # fresher rows, and a member never runs at less than half its own speed for it.
        now = time.monotonic()
        chunk_seconds, self._chunk_started = now - self._chunk_started, now
        federation.wait_for_peers(min(chunk_seconds, MAX_POOL_WAIT))
        self._chunk_started = time.monotonic()
        used = federation.fitting(self._loaded(federation), self._latest_rollout)
        if used:
            federation.rounds += 1
        return [peer.rollout for peer, _ in used if peer.rollout is not None]

    def _loaded(self, federation: Federation) -> list[tuple[PeerWeights, BasePolicy]]:
        """The peers' fresh weights, each loaded into a scratch policy (unloadable: counted)."""
        loaded: list[tuple[PeerWeights, BasePolicy]] = []
        for peer in federation.take():
            if len(self._scratch) <= len(loaded):
                self._scratch.append(self.fresh_policy())
            scratch = self._scratch[len(loaded)]
            try:
                load_tensors(scratch, peer.tensors)
            except IncompatiblePolicy as exc:
                federation.incompatible(peer, exc)
                continue
            loaded.append((peer, scratch))
        return loaded

    def federate(self) -> None:
        """Publish our weights, then average in the fresh weights of peers that fit our world."""
        federation = self.federation
        if federation is None or self.rollout_pool is not None:
            return
        samples = self.step - self._federated_at_step
        self._federated_at_step = self.step
        policy = self.model.policy
        delta = _update_since(self._round_start, policy.state_dict())
        federation.publish(
            OwnWeights(
                policy_tensors(policy), self.step, samples, self.current_regime,
                delta=state_tensors(delta) if delta is not None else [],
            )
        )  # fmt: skip
        loaded = self._loaded(federation)
        if loaded:
            federation.average_into(policy, samples, loaded, self._latest_rollout, delta)
        self._round_start = {k: v.detach().clone() for k, v in policy.state_dict().items()}

    def forget_plans(self) -> None:
        """Drop the hindsight plans: they are of days in a world that has changed."""
        if self.imagination is not None and self.imagination.hindsight is not None:
            self.imagination.hindsight.forget()

    def imagine(self) -> None:
        """Train on imagined days for the device steps lived since the last time."""
        if self.imagination is None:
            return
        steps = self.step - self._imagined_at_step
        self._imagined_at_step = self.step
        imagined = self.imagination.train(
            self.model, steps, self.hyperparams, self.spec.constructor_keys
        )
        self.stats.imagined_steps += imagined
        self.stats.planned_days = self.imagination.planned_days
        if imagined:
            log.debug(
                "trained on %d imagined steps (model error %.4f)",
                imagined, self.imagination.fit_error or 0.0,
            )  # fmt: skip

    # --- the loop, in the learner's thread --------------------------------------------------

    def run(self) -> None:
        """Learn until the budget is reached or :meth:`stop` is called, then wrap up.

        A brand-new learner first publishes its untrained policy (step 0): the reference
        against which transfer is measured. Wrapping up is a last experience batch, a
        checkpoint and a final snapshot. Blocks: call it in a worker thread.
        """
        limit_torch_threads()
        callback = _LifelongCallback(self)
        if self.step == 0 and self.resumed_from_step is None:
            if self.config.start_from is StartFrom.BASELINE:
                self.start_from_baseline()
            callback.publish_snapshot(self.step)
        while not self.should_stop():
            # learn() returns when the callback asks: to stop, or to act on a drift or a
            # directive at once (the rollout under way is dropped, its steps were lived all the
            # same). Calling it again is safe: no schedule depends on its progress (schedules.py).
            self.model.learn(
                total_timesteps=LIFELONG_HORIZON,
                callback=callback,
                reset_num_timesteps=False,
                progress_bar=False,
            )
            # Between two learn() calls: the only place where weights change (besides
            # federated rounds). A change here is no local update to hand peers as one.
            self._round_start = None
            if self.rollout_pool is not None:
                self.rollout_pool.forget()  # collected by weights about to change, or done
            if self.demonstration_pending:
                self.demonstrations.imitate(self.model, seed=self.config.seed)
            adoption = self.take_adoption()
            if adoption is not None:
                self.adapter.adopt(adoption)
            if self.adapter.drift_pending:
                self.adapter.adapt()
        self.flush_experience()
        self.stats.take_regret(self.meter)
        self.checkpoint()
        if callback.last_snapshot_step != self.step:
            callback.publish_snapshot(self.step)

    def close(self) -> None:
        """Release the device: its simulator and any worker process beside it (the shadow's)."""
        self.env.close()

    def checkpoint(self) -> None:
        if self.store is not None:
            self.store.save(
                self.model,
                episodes=self.stats.episodes,
                library=self.library,
                loop_state={
                    "context": self.stats.context,
                    "schedule_origin": self.schedule_origin.step,
                    "drift_events": self.stats.drift_events,
                    "adaptations": self.stats.adaptations,
                    "deployed_return": self.meter.deployed_return,
                    "baseline_return": self.meter.baseline_return,
                    "learner_episodes": self.meter.learner_episodes,
                    "controller_episodes": self.meter.controller_episodes,
                    "controller_steps": self.meter.controller_steps,
                },
            )

    def start_from_baseline(self) -> None:
        """Record the controller driving the device, publish that history, clone it (pretrain.py).

        The recorded steps are device steps like any other: they advance the drift schedule
        and count in the step budget, as the controller's (``controller_steps``, no regret).
        """
        config = self.config
        with unjudged(self.env):  # the controller's own episodes: nothing to compare
            history = record_controller(
                self.env,
                start_controller(config.env_id, self.env),
                min(config.history_steps, config.budget_steps or config.history_steps),
                seed=config.seed,
            )
        self.model.num_timesteps += len(history)
        # Where the learner's own episodes cannot be compared (no copy of the device to play
        # the controller on), the controller's are not counted either: the regret is unknown.
        compared = history.episode_returns if is_shadowed(self.env) else ()
        self.meter.add_history(len(history), compared)
        self.stats.take_regret(self.meter)
        for batch in history.columns.batches(config.experience_batch):
            self.share_experience(batch, self.step)
        if self.imagination is not None:
            self.imagination.memory.record_columns(history.columns)
        fit = pretrain(self.model, history, seed=config.seed)
        log.info(
            "started from the baseline controller: %d steps of its history, %d episodes; "
            "clone agrees on %s of its actions, value error %s",
            len(history), len(history.episode_returns),
            "n/a" if fit.agreement is None else f"{fit.agreement:.1%}",
            "n/a" if fit.value_error is None else f"{fit.value_error:.3g}",
        )  # fmt: skip
        if config.other_controllers:
            # Off the learner's random streams: with or without the clones, it learns alike.
            with streams_untouched():
                clones = clone_other_controllers(
                    config.env_id, self.env, self.model.policy, history, self.fresh_policy,
                    gamma=float(getattr(self.model, "gamma", 0.99)), seed=config.seed,
                )  # fmt: skip
            for number, clone in enumerate(clones, start=1):
                self.library.store(
                    LibraryEntry(context=-number, tensors=clone.tensors, score=0.0, step=self.step)
                )
            self.adapter.start_from_best_controller()

    def _controller_step(self, *transition: Any) -> None:
        """A step the guard gave the controller: a device step, and experience like any other.

        ``transition`` is ``(obs, next_obs, action, reward, terminated, truncated)``.
        """
        obs, next_obs, action, reward, terminated, truncated = transition
        self.model.num_timesteps += 1
        batch = self.recorder.record(
            obs, next_obs, action, reward, terminated=terminated, truncated=truncated
        )
        if batch is not None:
            self.share_experience(batch, self.step)
        if self.imagination is not None:
            self.imagination.memory.record(obs, action, next_obs, done=terminated or truncated)
        episode = self.demonstrations.record(
            obs, next_obs, action, reward, terminated=terminated, truncated=truncated
        )
        if episode is not None and isinstance(self.model, OffPolicyAlgorithm):
            add_to_replay_buffer(self.model, episode)

    @property
    def demonstration_pending(self) -> bool:
        """An on-policy learner has controller episodes to imitate (between learn() calls)."""
        return self.demonstrations.pending and not self.off_policy

    def _controller_may_go_on(self) -> bool:
        """Whether the guard's controller may take another step before the agent stops.

        It drives inside an environment step of the learner's that stable-baselines3 counts
        when it returns: one step is left for that.
        """
        budget = self.config.budget_steps
        return not self._stop.is_set() and (budget <= 0 or self.step + 1 < budget)

    def share_experience(self, batch: ExperienceColumns, step: int) -> None:
        """Our own batch of transitions: to the peers, and the yardstick for theirs (intake.py)."""
        self.intake.remember_own(batch)
        self.events.experience(batch, step)

    def flush_experience(self) -> None:
        batch = self.recorder.drain()
        if batch is not None:
            self.share_experience(batch, self.step)

    def should_stop(self) -> bool:
        """Whether :meth:`stop` was called or the budget is reached."""
        budget = self.config.budget_steps
        return self._stop.is_set() or (budget > 0 and self.step >= budget)

    # --- what the adapter changes (adaptation.Adaptable), in the learner's thread ------------

    def current_tensors(self) -> list[Tensor]:
        """The current policy's weights."""
        return policy_tensors(self.model.policy)

    def load_policy(self, tensors: list[Tensor]) -> None:
        """Take on ``tensors`` as the current weights, with a new optimiser state."""
        load_tensors(self.model.policy, tensors)
        reset_optimizers(self.model.policy)

    def start_over(self, tensors: list[Tensor] | None = None) -> None:
        """Fresh weights (``tensors`` if given), optimiser, replay buffer and schedules."""
        reinitialise(self.model, self.fresh_policy)
        if tensors is not None:
            load_tensors(self.model.policy, tensors)
        self.schedule_origin.step = self.step
        self.lineage = None

    def on_sandbox(self, candidates: Callable[[], list[Candidate]]) -> TrialRun:
        """Play candidates on a fresh sandbox twin of the device, in its current conditions.

        The learner's random streams are left where they were (``streams_untouched``).
        """
        config = self.config
        with streams_untouched():
            sandbox = make_env(
                config.env_id,
                config.env_kwargs,
                drift=config.drift,
                lifetime_step=self.step,
                shadow_baseline=config.judge_against_baseline,
            )
            if config.shield:
                sandbox = ShieldedDevice(sandbox)
            try:
                run = try_candidates(
                    candidates(),
                    sandbox=sandbox,
                    scratch_policy=self.fresh_policy(),
                    episodes=config.adapt_episodes,
                    seed=config.seed * 1_000_003 + self.stats.drift_events * 101,
                    against_baseline=config.judge_against_baseline,
                )
            finally:
                sandbox.close()
        if getattr(self.env.unwrapped, "single_instance", False):
            self._restart_episode()
        return run

    def _restart_episode(self) -> None:
        """Start a new training episode: the sandbox took over a one-per-process simulator."""
        model = self.model
        assert model.env is not None
        model._last_obs = model.env.reset()  # type: ignore[assignment]  # noqa: SLF001 - SB3's
        model._last_episode_starts = np.ones((model.env.num_envs,), dtype=bool)  # noqa: SLF001


def _collect_rollouts_of(model: PooledPPO | PooledA2C, steps: int) -> None:
    """Make ``model`` collect rollouts of ``steps`` steps (a fresh buffer of that size)."""
    if model.n_steps == steps or type(model.rollout_buffer) is not RolloutBuffer:
        return
    model.n_steps = steps
    model.rollout_buffer = RolloutBuffer(
        steps, model.observation_space, model.action_space, device=model.device,
        gamma=model.gamma, gae_lambda=model.gae_lambda, n_envs=model.n_envs,
    )  # fmt: skip


def _update_since(
    start: Mapping[str, torch.Tensor] | None, now: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor] | None:
    """What changed the floating-point weights since ``start`` (``None``: no start yet)."""
    if start is None or start.keys() != now.keys():
        return None
    return {
        name: (value - start[name]).detach()
        for name, value in now.items()
        if torch.is_floating_point(value)
    }


class _LifelongCallback(BaseCallback):
    """After every step: collect, snapshot and checkpoint when due, stop when asked.

    Stopping ends the current ``learn()`` call: at the budget, on :meth:`Learner.stop`, and
    when the adapter has a drift to act on or a directive waits (``Learner.run`` acts on them
    between two ``learn()`` calls). It decides nothing else.
    """

    def __init__(self, learner: Learner) -> None:
        super().__init__(verbose=0)
        self.learner = learner
        config = learner.config
        step = learner.step
        self.next_snapshot = _next_multiple(step, config.snapshot_every)
        self.next_checkpoint = _next_multiple(step, config.checkpoint_every)
        self.action_key = "actions" if learner.off_policy else "clipped_actions"
        self.last_snapshot_step = -1
        self.training_regime = learner.current_regime

    def _on_step(self) -> bool:
        learner = self.learner
        step = learner.step
        self.collect(step)
        learner.stats.own_transitions += 1
        learner.intake.take_in(learner.model)
        learner.rate.update(step)
        self.update(step)
        if learner.adapter.drift_pending or learner.has_adoption() or learner.demonstration_pending:
            return False  # end this learn() call: weights change between calls, never inside
        return not learner.should_stop()

    def _on_rollout_start(self) -> None:
        # Between the last update and the next rollout: the one point where an on-policy
        # learner's weights may change inside learn() (federation.py, imagination.py).
        self.learner.federate()
        self.learner.imagine()

    def _on_rollout_end(self) -> None:
        self.learner.intake.rescale_training(self.learner.model)
        self.learner.remember_rollout()

    def collect(self, step: int) -> None:
        """The transition just made, into the experience batch; a finished episode, judged."""
        learner = self.learner
        local: dict[str, Any] = self.locals
        info: dict[str, Any] = local["infos"][0]
        done = bool(local["dones"][0])
        next_obs = local["new_obs"][0]
        if done and info.get("terminal_observation") is not None:
            next_obs = info["terminal_observation"]
        truncated = done and bool(info.get("TimeLimit.truncated", False))
        last_obs = self.model._last_obs  # noqa: SLF001 - SB3 keeps the pre-step obs here
        assert isinstance(last_obs, np.ndarray)
        # What the device did: the shield's action where it replaced the policy's (shield.py).
        executed = info.get(EXECUTED_ACTION)
        if executed is not None:
            learner.stats.shield_interventions += 1
        batch = learner.recorder.record(
            last_obs[0],
            next_obs,
            local[self.action_key][0] if executed is None else executed,
            float(local["rewards"][0]),
            terminated=done and not truncated,
            truncated=truncated,
        )
        learner.latest_step = (next_obs, info)
        if learner.imagination is not None:
            learner.imagination.memory.record(
                last_obs[0], local["actions"][0] if executed is None else executed, next_obs,
                done=done,
            )  # fmt: skip
        if batch is not None:
            learner.share_experience(batch, step)
        regime = str(info.get("regime", ""))
        if regime and regime != self.training_regime:
            # The world just changed (this step began a new episode in a new regime). The
            # weights have not been trained since: a snapshot now closes the old regime's
            # training block exactly, which is what the lifelong metrics need.
            self.publish_snapshot(step, self.training_regime)
            self.training_regime = regime
        if done:
            learner.stats.take_regret(learner.meter)
        if done and "episode" in info:
            episode_return = float(info["episode"]["r"])
            score = episode_return
            controller_return = info.get(BASELINE_RETURN)
            if controller_return is not None:
                controller_return = float(controller_return)
                if learner.config.judge_against_baseline:
                    score -= controller_return
            learner.stats.episodes += 1
            learner.events.episode(episode_return, int(info["episode"]["l"]), step, regime)
            learner.adapter.observe(score, step, controller_return)

    def update(self, step: int) -> None:
        """Publish a snapshot and write a checkpoint when they are due."""
        learner = self.learner
        config = learner.config
        requested = learner.take_snapshot_request()
        if step >= self.next_snapshot or requested:
            self.next_snapshot = _next_multiple(step, config.snapshot_every)
            self.publish_snapshot(step)
        if step >= self.next_checkpoint:
            self.next_checkpoint = _next_multiple(step, config.checkpoint_every)
            learner.checkpoint()

    def publish_snapshot(self, step: int, regime: str | None = None) -> None:
        learner = self.learner
        learner.events.snapshot(
            PolicyState(
                tensors=learner.current_tensors(),
                step=step,
                regime=self.training_regime if regime is None else regime,
                lineage=learner.lineage,
                hyperparams=dict(learner.hyperparams),
                library=list(learner.library.entries.values()),
            )
        )
        self.last_snapshot_step = step


def _next_multiple(step: int, every: int) -> int:
    if every <= 0:
        return 2**63
    return (step // every + 1) * every
