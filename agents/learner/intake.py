"""Peers' transitions in an off-policy learner's replay buffer, and training in proportion.

Peers' batches wait in a bounded queue (filled from the agent's event loop) until the
learner's thread takes them in, between two environment steps, up to ``peer_fraction`` of
the replay buffer's intake. On-policy learners take none.

**Only transitions that fit our world.** The agent already refuses batches from devices
whose announced parameters are unlike ours (:mod:`agents.likeness`). Parameters do not say
everything: in `traffic-dqn-mixed` an intersection took a like peer's transitions and learned
slower than its twin on two seeds of three (docs/benchmarks.md). So a DQN learner also asks
its own Q-network how well a batch fits: the mean squared temporal-difference error of the
peer's transitions against that of its own latest batch. A batch whose error is more than
``tolerance`` times ours is refused and counted (``experience_unfit``): the federated
weights' fit test (federation.py) with the Q-network in the value function's place. Other
off-policy algorithms take what is alike by parameters.
"""

from __future__ import annotations

import math
import queue
import time
from collections.abc import Mapping

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3 import DQN
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.type_aliases import TrainFreq, TrainFrequencyUnit

from agents.bus.schemas import HyperValue
from agents.learner.experience import ExperienceColumns
from agents.learner.stats import LearnerStats

__all__ = ["DEFAULT_FIT_TOLERANCE", "PeerIntake", "add_to_replay_buffer", "td_error"]

DEFAULT_FIT_TOLERANCE = 1.25
"""How many times our own TD error on our latest batch a peer's batch may reach and be taken.

1.25, not the federated weights' 2.0: on intersections of their own (`traffic-dqn-mixed`, five
seeds) 2.0 let through enough of unlike intersections' transitions that 7 of 20 sharing agents
ended behind their twins; with 1.25, 2 of 20 (docs/benchmarks.md)."""


class PeerIntake:
    """Peers' transitions waiting for the replay buffer, and how much of them it admits."""

    def __init__(
        self,
        stats: LearnerStats,
        hyperparams: Mapping[str, HyperValue],
        *,
        peer_fraction: float,
        capacity: int = 64,
        fit_tolerance: float | None = DEFAULT_FIT_TOLERANCE,
    ) -> None:
        self.stats = stats
        self.peer_fraction = peer_fraction
        #: None: no fit test (every batch alike by parameters is taken).
        self.fit_tolerance = fit_tolerance
        self._batches: queue.Queue[tuple[str, ExperienceColumns]] = queue.Queue(maxsize=capacity)
        self._own: ExperienceColumns | None = None
        #: When each peer's transitions were last taken into the buffer (monotonic seconds).
        self.taken_from: dict[str, float] = {}
        # How often and how much it trains, as configured (not read from the model: a
        # checkpoint keeps the last value rescale_training set); 0 where the algorithm has none.
        configured = {
            key: value if isinstance(value := hyperparams.get(key), int) else 0
            for key in ("train_freq", "gradient_steps", "target_update_interval")
        }
        self.train_freq = configured["train_freq"]
        self.gradient_steps = configured["gradient_steps"]
        self.target_update_interval = configured["target_update_interval"]

    def offer(self, batch: ExperienceColumns, source: str = "") -> bool:
        """Queue ``source``'s ``batch`` (from any thread); False when the queue is full."""
        try:
            self._batches.put_nowait((source, batch))
        except queue.Full:
            return False
        return True

    def remember_own(self, batch: ExperienceColumns) -> None:
        """Our latest batch of transitions: the yardstick a peer's batch is measured against."""
        self._own = batch

    def empty(self) -> bool:
        """Whether no peer's batch waits."""
        return self._batches.empty()

    def take_in(self, model: BaseAlgorithm) -> None:
        """Add queued transitions to the replay buffer, up to the configured share."""
        if self.empty():
            return
        if not isinstance(model, OffPolicyAlgorithm) or model.replay_buffer is None:
            return
        if self._tests_fit(model) and self._own is None:
            return  # nothing of our own to measure a peer's batch against yet: they wait
        stats, fraction = self.stats, self.peer_fraction
        allowed = fraction / max(1e-9, 1.0 - fraction) * stats.own_transitions
        while stats.peer_transitions < allowed:
            try:
                source, batch = self._batches.get_nowait()
            except queue.Empty:
                return
            if not self.fits(model, batch):
                stats.experience_unfit += 1
                continue
            add_to_replay_buffer(model, batch)
            stats.peer_transitions += len(batch)
            self.taken_from[source] = time.monotonic()

    def fits(self, model: BaseAlgorithm, batch: ExperienceColumns) -> bool:
        """Whether ``batch`` fits our world as our Q-network sees it (module docstring).

        True without a test to make: no tolerance, not DQN, or no batch of our own yet.
        """
        own = self._own
        if not self._tests_fit(model) or own is None:
            return True
        assert isinstance(model, DQN)
        assert self.fit_tolerance is not None
        theirs = td_error(model, batch)
        # A floor keeps a near-perfect own fit (rewards all 0) from refusing over rounding.
        ours = max(td_error(model, own), 1e-8 * (1.0 + float(np.mean(np.square(own.rewards)))))
        return math.isfinite(theirs) and theirs <= self.fit_tolerance * ours

    def _tests_fit(self, model: BaseAlgorithm) -> bool:
        """Whether batches are measured before they are taken: a tolerance, and a Q-network."""
        return self.fit_tolerance is not None and isinstance(model, DQN)

    def rescale_training(self, model: BaseAlgorithm) -> None:
        """Off-policy, after a rollout: train in proportion to everything the buffer took in.

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
        own, peer = self.stats.own_transitions, self.stats.peer_transitions
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


def td_error(model: DQN, batch: ExperienceColumns) -> float:
    """Mean squared one-step TD error of ``model``'s Q-network on ``batch``, as DQN trains it.

    The target is the reward plus the discounted target network's best value of the next
    observation, except after a termination (a truncation still bootstraps).
    """
    policy = model.policy
    obs, _ = policy.obs_to_tensor(np.asarray(batch.obs))
    next_obs, _ = policy.obs_to_tensor(np.asarray(batch.next_obs))
    # Copies: a batch decoded off the wire is read-only, which torch warns about.
    actions = th.from_numpy(np.array(batch.actions, dtype=np.int64)).reshape(-1, 1)
    rewards = th.from_numpy(np.array(batch.rewards, dtype=np.float32))
    alive = th.from_numpy(1.0 - np.array(batch.terminated, dtype=np.float32))
    with th.no_grad():
        q = model.q_net(obs).gather(1, actions).flatten()
        best_next = model.q_net_target(next_obs).max(dim=1).values
        target = rewards + alive * model.gamma * best_next
    return float(th.mean((q - target) ** 2))
