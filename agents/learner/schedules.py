"""Schedules for a learner with no planned end.

stable-baselines3 evaluates every schedule (learning rate, PPO's clip range, DQN's epsilon) at
``progress_remaining = 1 - num_timesteps / total_timesteps``. That assumes one ``learn()`` call
with a known total. A lifelong agent has none: calling ``learn()`` in chunks makes the
progress restart at every chunk (``reset_num_timesteps=True``) or jump around
(``reset_num_timesteps=False`` re-bases the total at every call), and any schedule that decays
to zero would eventually stop learning or go negative.

So this project never lets a schedule see ``progress_remaining``. :class:`StepSchedule`
ignores it and evaluates a function of the agent's own lifetime step count, which survives
restarts because it is checkpointed with the model. The functions are constant by default;
DQN's epsilon decays linearly over ``exploration_steps`` agent steps and then stays at its
floor forever.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from stable_baselines3 import DQN, PPO
from stable_baselines3.common.base_class import BaseAlgorithm

from agents.bus.schemas import HyperValue

__all__ = [
    "LIFELONG_HORIZON",
    "SCHEDULE_ATTRIBUTES",
    "Constant",
    "LinearToFloor",
    "StepSchedule",
    "install_lifelong_schedules",
]

#: ``total_timesteps`` passed to SB3's ``learn()``: effectively infinite, so ``learn()`` only
#: returns when our callback says so. Schedules never see the resulting progress value.
LIFELONG_HORIZON = 2**62

#: Attributes holding SB3 schedules; they are re-installed after loading a checkpoint and
#: excluded when saving one.
SCHEDULE_ATTRIBUTES = ("lr_schedule", "clip_range", "clip_range_vf", "exploration_schedule")


@dataclass(frozen=True, slots=True)
class Constant:
    value: float

    def __call__(self, step: int) -> float:  # noqa: ARG002 - same signature as the others
        return self.value


@dataclass(frozen=True, slots=True)
class LinearToFloor:
    """From ``start`` at step 0 linearly to ``floor`` at step ``steps``, then ``floor``."""

    start: float
    floor: float
    steps: int

    def __call__(self, step: int) -> float:
        if self.steps <= 0 or step >= self.steps:
            return self.floor
        return self.start + (self.floor - self.start) * step / self.steps


class StepSchedule:
    """An SB3 ``Schedule`` driven by the agent's lifetime step count, not by progress."""

    def __init__(self, function: Callable[[int], float], model: BaseAlgorithm) -> None:
        self.function = function
        self._model = model

    def __call__(self, progress_remaining: float) -> float:  # noqa: ARG002 - ignored on purpose
        return float(self.function(self._model.num_timesteps))

    def __repr__(self) -> str:
        return f"StepSchedule({self.function!r})"


def _number(value: HyperValue | None, default: float) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return default


def install_lifelong_schedules(model: BaseAlgorithm, hyperparams: Mapping[str, HyperValue]) -> None:
    """Replace every progress-driven schedule of ``model`` with a step-driven one."""
    model.lr_schedule = StepSchedule(
        Constant(_number(hyperparams.get("learning_rate"), 3e-4)), model
    )
    if isinstance(model, PPO):
        model.clip_range = StepSchedule(
            Constant(_number(hyperparams.get("clip_range"), 0.2)), model
        )
        clip_vf = hyperparams.get("clip_range_vf")
        if clip_vf is not None:
            model.clip_range_vf = StepSchedule(Constant(_number(clip_vf, 0.2)), model)
    if isinstance(model, DQN):
        model.exploration_schedule = StepSchedule(
            LinearToFloor(
                start=_number(hyperparams.get("exploration_initial_eps"), 1.0),
                floor=_number(hyperparams.get("exploration_final_eps"), 0.05),
                steps=int(_number(hyperparams.get("exploration_steps"), 10_000)),
            ),
            model,
        )
