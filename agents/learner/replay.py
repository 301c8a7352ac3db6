"""Putting transitions into an off-policy learner's replay buffer as if collected there."""

from __future__ import annotations

import numpy as np
from gymnasium import spaces
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm

from agents.learner.experience import ExperienceColumns

__all__ = ["add_to_replay_buffer"]


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
