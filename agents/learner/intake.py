"""Peers' transitions in an off-policy learner's replay buffer, and training in proportion.

Peers' batches wait in a bounded queue (filled from the agent's event loop) until the
learner's thread takes them in, between two environment steps, up to ``peer_fraction`` of
the replay buffer's intake. On-policy learners take none.
"""

from __future__ import annotations

import queue
from collections.abc import Mapping

import numpy as np
from gymnasium import spaces
from stable_baselines3 import DQN
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.type_aliases import TrainFreq, TrainFrequencyUnit

from agents.bus.schemas import HyperValue
from agents.learner.experience import ExperienceColumns
from agents.learner.stats import LearnerStats

__all__ = ["PeerIntake", "add_to_replay_buffer"]


class PeerIntake:
    """Peers' transitions waiting for the replay buffer, and how much of them it admits."""

    def __init__(
        self,
        stats: LearnerStats,
        hyperparams: Mapping[str, HyperValue],
        *,
        peer_fraction: float,
        capacity: int = 64,
    ) -> None:
        self.stats = stats
        self.peer_fraction = peer_fraction
        self._batches: queue.Queue[ExperienceColumns] = queue.Queue(maxsize=capacity)
        # How often and how much it trains, as configured (not read from the model: a
        # checkpoint keeps the last value rescale_training set); 0 where the algorithm has none.
        configured = {
            key: value if isinstance(value := hyperparams.get(key), int) else 0
            for key in ("train_freq", "gradient_steps", "target_update_interval")
        }
        self.train_freq = configured["train_freq"]
        self.gradient_steps = configured["gradient_steps"]
        self.target_update_interval = configured["target_update_interval"]

    def offer(self, batch: ExperienceColumns) -> bool:
        """Queue ``batch`` (from any thread); False when the queue is full."""
        try:
            self._batches.put_nowait(batch)
        except queue.Full:
            return False
        return True

    def empty(self) -> bool:
        """Whether no peer's batch waits."""
        return self._batches.empty()

    def take_in(self, model: BaseAlgorithm) -> None:
        """Add queued transitions to the replay buffer, up to the configured share."""
        if self.empty():
            return
        if not isinstance(model, OffPolicyAlgorithm) or model.replay_buffer is None:
            return
        stats, fraction = self.stats, self.peer_fraction
        allowed = fraction / max(1e-9, 1.0 - fraction) * stats.own_transitions
        while stats.peer_transitions < allowed:
            try:
                batch = self._batches.get_nowait()
            except queue.Empty:
                return
            add_to_replay_buffer(model, batch)
            stats.peer_transitions += len(batch)

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
