"""The learner: one stable-baselines3 model learning for as long as the agent lives.

It runs in a worker thread of the agent process (the asyncio side owns the bus). The loop, in
the order things happen, is::

    model.learn(LIFELONG_HORIZON, callback)      # SB3 collects and trains, forever
        callback, after every environment step:
            collect   the transition into a columnar experience batch -> events.experience
            notice    finished episodes                               -> events.episode
            publish   a snapshot every `snapshot_every` steps          -> events.snapshot
            persist   a checkpoint every `checkpoint_every` steps
            stop      when the budget is reached or stop() was called
    final checkpoint and final snapshot

Nothing here touches the network; ``events`` is how results leave the thread. The learner
checkpoints itself and, if its folder holds a checkpoint, resumes from it with its step count.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
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
from stable_baselines3.common.vec_env import DummyVecEnv

from agents.bus.arrays import Tensor
from agents.bus.schemas import HyperValue, PolicyArch, SpaceSpec
from agents.learner.algorithms import AlgorithmSpec, get_algorithm, parse_hyperparams
from agents.learner.checkpoint import CheckpointInfo, CheckpointStore
from agents.learner.envs import DriftPlan, make_env
from agents.learner.experience import ExperienceColumns, ExperienceRecorder
from agents.learner.schedules import LIFELONG_HORIZON, install_lifelong_schedules
from agents.learner.snapshots import make_arch, policy_kwargs, policy_tensors
from agents.learner.spaces import describe_space

__all__ = ["Learner", "LearnerConfig", "LearnerEvents"]

log = logging.getLogger(__name__)


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


class LearnerEvents(Protocol):
    """Where the learner's results go. Called from the learner's thread."""

    def experience(self, batch: ExperienceColumns, step: int) -> None: ...

    def snapshot(self, tensors: list[Tensor], step: int) -> None: ...

    def episode(self, episode_return: float, length: int, step: int) -> None: ...


def limit_torch_threads() -> None:
    """One intra-op and one inter-op thread: on a busy 2-core machine more made SB3 5-70x slower."""
    torch.set_num_threads(1)
    # Only settable before the first parallel op; the process entry point calls this early.
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)


class Learner:
    """A stable-baselines3 model that learns until stopped, reporting through ``events``."""

    def __init__(self, config: LearnerConfig, events: LearnerEvents) -> None:
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
        #: The regime in force, as the world reports it (for telemetry; never learned from).
        self.current_regime = ""
        self.obs_spec: SpaceSpec = describe_space(self.env.observation_space)
        self.action_spec: SpaceSpec = describe_space(self.env.action_space)
        self.episodes = 0
        self.resumed_from_step: int | None = None
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
            self.episodes = info.episodes
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
        install_lifelong_schedules(model, self.hyperparams)
        return model

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

    # --- the loop, in the learner's thread --------------------------------------------------

    def run(self) -> None:
        """Learn until the budget is reached or :meth:`stop` is called, then wrap up.

        Wrapping up is a last experience batch, a checkpoint and a final snapshot. Blocks:
        call it in a worker thread.
        """
        limit_torch_threads()
        callback = _LifelongCallback(self)
        if not self._budget_reached():
            self.model.learn(
                total_timesteps=LIFELONG_HORIZON,
                callback=callback,
                reset_num_timesteps=False,
                progress_bar=False,
            )
        callback.flush_experience()
        self.checkpoint()
        if callback.last_snapshot_step != self.step:
            self.events.snapshot(policy_tensors(self.model.policy), self.step)

    def checkpoint(self) -> None:
        if self.store is not None:
            self.store.save(self.model, episodes=self.episodes)

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


class _LifelongCallback(BaseCallback):
    """The per-step part of the loop (see the module docstring)."""

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

    def _on_step(self) -> bool:
        learner = self.learner
        step = learner.step
        self._collect(step)
        learner._rate.update(step)  # noqa: SLF001 - the callback is part of the learner
        if step >= self.next_snapshot or learner._snapshot_requested.is_set():  # noqa: SLF001
            learner._snapshot_requested.clear()  # noqa: SLF001
            self.next_snapshot = _next_multiple(step, learner.config.snapshot_every)
            learner.events.snapshot(policy_tensors(learner.model.policy), step)
            self.last_snapshot_step = step
        if step >= self.next_checkpoint:
            self.next_checkpoint = _next_multiple(step, learner.config.checkpoint_every)
            learner.checkpoint()
        return not learner._should_stop()  # noqa: SLF001

    def _collect(self, step: int) -> None:
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
        regime = info.get("regime")
        if regime is not None:
            self.learner.current_regime = str(regime)
        if done and "episode" in info:
            self.learner.episodes += 1
            episode = info["episode"]
            self.learner.events.episode(float(episode["r"]), int(episode["l"]), step)

    def flush_experience(self) -> None:
        batch = self.recorder.drain()
        if batch is not None:
            self.learner.events.experience(batch, self.learner.step)


def _next_multiple(step: int, every: int) -> int:
    if every <= 0:
        return 2**63
    return (step // every + 1) * every
