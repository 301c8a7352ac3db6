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
    "ScheduleOrigin",
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


@dataclass(slots=True)
class ScheduleOrigin:
    """The agent step the schedules count from: 0, or the step of a reset from scratch."""

    step: int = 0


class StepSchedule:
    """An SB3 ``Schedule`` driven by the agent's lifetime step count, not by progress."""

    def __init__(
        self, function: Callable[[int], float], model: BaseAlgorithm, origin: ScheduleOrigin
    ) -> None:
        self.function = function
        self._model = model
        self._origin = origin

    def __call__(self, progress_remaining: float) -> float:  # noqa: ARG002 - ignored on purpose
        return float(self.function(max(0, self._model.num_timesteps - self._origin.step)))

    def __repr__(self) -> str:
        return f"StepSchedule({self.function!r})"


def _number(value: HyperValue | None, default: float) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return default


def install_lifelong_schedules(
    model: BaseAlgorithm,
    hyperparams: Mapping[str, HyperValue],
    origin: ScheduleOrigin | None = None,
) -> ScheduleOrigin:
    """Replace every progress-driven schedule of ``model`` with a step-driven one.

    Returns the origin the schedules count from; moving it to the current step (a reset from
    scratch) starts them over, DQN's exploration included.
    """
    origin = origin if origin is not None else ScheduleOrigin()

    def schedule(function: Callable[[int], float]) -> StepSchedule:
        return StepSchedule(function, model, origin)

    model.lr_schedule = schedule(Constant(_number(hyperparams.get("learning_rate"), 3e-4)))
    if isinstance(model, PPO):
        model.clip_range = schedule(Constant(_number(hyperparams.get("clip_range"), 0.2)))
        clip_vf = hyperparams.get("clip_range_vf")
        if clip_vf is not None:
            model.clip_range_vf = schedule(Constant(_number(clip_vf, 0.2)))
    if isinstance(model, DQN):
        model.exploration_schedule = schedule(
            LinearToFloor(
                start=_number(hyperparams.get("exploration_initial_eps"), 1.0),
                floor=_number(hyperparams.get("exploration_final_eps"), 0.05),
                steps=int(_number(hyperparams.get("exploration_steps"), 10_000)),
            )
        )
    return origin
