"""Collecting transitions into columnar batches, as they travel on the bus.

:class:`ExperienceRecorder` owns preallocated numpy columns for one batch; recording a
transition is a handful of array writes, so it costs the learner nothing measurable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from gymnasium import spaces

__all__ = ["ExperienceColumns", "ExperienceRecorder"]


@dataclass(frozen=True, slots=True)
class ExperienceColumns:
    """One batch of transitions, column by column, each with the batch length first."""

    obs: npt.NDArray[np.generic]
    next_obs: npt.NDArray[np.generic]
    actions: npt.NDArray[np.generic]
    rewards: npt.NDArray[np.float32]
    terminated: npt.NDArray[np.bool_]
    truncated: npt.NDArray[np.bool_]

    def __len__(self) -> int:
        return int(self.rewards.shape[0])

    @classmethod
    def concatenate(cls, parts: Sequence[ExperienceColumns]) -> ExperienceColumns:
        """One batch of these batches' transitions, in order (at least one part)."""
        return cls(
            obs=np.concatenate([p.obs for p in parts]),
            next_obs=np.concatenate([p.next_obs for p in parts]),
            actions=np.concatenate([p.actions for p in parts]),
            rewards=np.concatenate([p.rewards for p in parts]),
            terminated=np.concatenate([p.terminated for p in parts]),
            truncated=np.concatenate([p.truncated for p in parts]),
        )

    def batches(self, size: int) -> list[ExperienceColumns]:
        """These transitions cut into consecutive batches of at most ``size``."""
        return [
            ExperienceColumns(
                obs=self.obs[start : start + size],
                next_obs=self.next_obs[start : start + size],
                actions=self.actions[start : start + size],
                rewards=self.rewards[start : start + size],
                terminated=self.terminated[start : start + size],
                truncated=self.truncated[start : start + size],
            )
            for start in range(0, len(self), max(1, size))
        ]


def _column(space: spaces.Space[object], rows: int) -> npt.NDArray[np.generic]:
    shape = space.shape or ()
    if isinstance(space, spaces.Discrete | spaces.MultiDiscrete):
        return np.zeros((rows, *shape), dtype=np.int64)
    return np.zeros((rows, *shape), dtype=space.dtype or np.float32)


class ExperienceRecorder:
    """Fills batches of ``batch_size`` transitions; :meth:`record` returns a full batch."""

    def __init__(
        self,
        observation_space: spaces.Space[object],
        action_space: spaces.Space[object],
        batch_size: int,
    ) -> None:
        if batch_size < 1:
            msg = f"batch_size must be >= 1, got {batch_size}"
            raise ValueError(msg)
        self.observation_space = observation_space
        self.action_space = action_space
        self.batch_size = batch_size
        self._fresh()

    def _fresh(self) -> None:
        rows = self.batch_size
        self._obs = _column(self.observation_space, rows)
        self._next_obs = _column(self.observation_space, rows)
        self._actions = _column(self.action_space, rows)
        self._rewards = np.zeros(rows, dtype=np.float32)
        self._terminated = np.zeros(rows, dtype=np.bool_)
        self._truncated = np.zeros(rows, dtype=np.bool_)
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def record(
        self,
        obs: npt.ArrayLike,
        next_obs: npt.ArrayLike,
        action: npt.ArrayLike,
        reward: float,
        *,
        terminated: bool,
        truncated: bool,
    ) -> ExperienceColumns | None:
        """Add one transition; return the batch when it just became full."""
        i = self._size
        self._obs[i] = obs
        self._next_obs[i] = next_obs
        self._actions[i] = action
        self._rewards[i] = reward
        self._terminated[i] = terminated
        self._truncated[i] = truncated
        self._size += 1
        if self._size == self.batch_size:
            return self.drain()
        return None

    def drain(self) -> ExperienceColumns | None:
        """Hand over what was recorded so far (``None`` if nothing) and start a new batch."""
        if self._size == 0:
            return None
        n = self._size
        batch = ExperienceColumns(
            obs=self._obs[:n],
            next_obs=self._next_obs[:n],
            actions=self._actions[:n],
            rewards=self._rewards[:n],
            terminated=self._terminated[:n],
            truncated=self._truncated[:n],
        )
        self._fresh()
        return batch
