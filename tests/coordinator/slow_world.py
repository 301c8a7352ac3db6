"""CartPole whose every step takes a while: an evaluation long enough to be killed in."""

from __future__ import annotations

import time
from typing import Any

import gymnasium as gym

#: Seconds per step: the twenty-odd steps of an evaluation take a second or so, asleep.
STEP_SECONDS = 0.05


class _Slow(gym.Wrapper[Any, Any, Any, Any]):
    def step(self, action: Any) -> Any:
        time.sleep(STEP_SECONDS)
        return self.env.step(action)


def slow_cartpole() -> gym.Env[Any, Any]:
    """``tests.coordinator.slow_world:slow_cartpole``, for ``--allow-env``."""
    return _Slow(gym.make("CartPole-v1"))
