"""Hindsight plans: what the device could have done on the days it lived, learnt from.

Looking back on a day, a person knows what the weather did, what the power cost and when the
household came home; a thermostat that had known it too could have pre-heated on cheap power
and let the empty house cool. The device's model (imagination.py) answers for what the
actions change, and the day's exogenous entries are on record, so the best actions for that
day can be *planned*: :func:`plan_day` searches the day's action sequence that the model says
earns the most reward, by the cross-entropy method (Rubinstein 1999; the planner of PETS,
Chua et al. 2018), over the whole day at once.

A plan knows the whole day in advance; a policy sees only what its observation shows (a
thermostat: the next hours' forecasts). Cloning the plans (:class:`HindsightPlans`) teaches
the policy what is worth doing where its observation allows it, as expert iteration distils a
search into a network (Anthony et al. 2017); the reinforcement learning on imagined and lived
days that follows pays for what the plan could only know in hindsight (a household home
earlier than it planned for). Measured on a winter house (docs/benchmarks.md, "Hindsight
plans"): planning 30-40 remembered days of the programmable thermostat, the clone alone was
29-30 % cheaper than the setpoint thermostat on 20 days it had not seen, but left the house
too warm some mornings.

Only the actor is cloned: the value function stays the reinforcement learner's estimate of
its own policy, which is what its advantages need.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import numpy.typing as npt
from stable_baselines3.common.policies import ActorCriticPolicy

from agents.exceptions import ConfigError
from agents.learner.experience import ExperienceColumns
from agents.learner.imagination import DeviceModel, RememberedDay
from agents.learner.pretrain import PretrainResult, clone_actor_critic
from agents.scenarios.scenario import MAX_HINDSIGHT
from agents.worlds.base import World

__all__ = [
    "HindsightPlans",
    "PlannedDay",
    "PlannerSettings",
    "check_hindsight",
    "plan_day",
]


@dataclass(frozen=True, slots=True)
class PlannerSettings:
    """The cross-entropy method's budget: ``samples`` action sequences, ``iterations`` rounds."""

    samples: int = 512
    iterations: int = 30
    #: Share of the samples whose mean the next round's distribution moves to.
    elite_fraction: float = 0.05
    #: Share of the old distribution kept each round (slows convergence to a poor sequence).
    smoothing: float = 0.3
    #: Epochs of behaviour cloning over the kept plans whenever a new plan arrives.
    clone_epochs: int = 5
    #: Plans kept to clone (the latest ones: after a drift, the new conditions take over).
    keep_days: int = 30


@dataclass(frozen=True, slots=True)
class PlannedDay:
    """A remembered day with the planned actions and what the model says they make of it."""

    obs: npt.NDArray[np.float32]
    actions: npt.NDArray[Any]
    rewards: npt.NDArray[np.float64]

    def __len__(self) -> int:
        return len(self.actions)

    @property
    def planned_return(self) -> float:
        return float(self.rewards.sum())

    def columns(self) -> ExperienceColumns:
        n = len(self)
        truncated = np.zeros(n, dtype=bool)
        truncated[-1] = True
        return ExperienceColumns(
            obs=self.obs[:-1],
            next_obs=self.obs[1:],
            actions=self.actions,
            rewards=self.rewards.astype(np.float32),
            terminated=np.zeros(n, dtype=bool),
            truncated=truncated,
        )


def _rollout(
    world: World[Any, Any],
    model: DeviceModel,
    day: RememberedDay,
    actions: npt.NDArray[Any],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Each of ``actions``' sequences (one row each) played on ``day`` through the model.

    Returns the observations ``(samples, steps + 1, dim)`` and the rewards ``(samples, steps)``.
    """
    samples, steps = actions.shape[:2]
    space = world.observation_space
    assert isinstance(space, gym.spaces.Box)
    low = space.low[model.endogenous].astype(np.float64)
    high = space.high[model.endogenous].astype(np.float64)
    obs = np.empty((samples, steps + 1, day.obs.shape[1]), dtype=np.float64)
    obs[:] = day.obs[None, : steps + 1]
    rewards = np.empty((samples, steps), dtype=np.float64)
    for t in range(steps):
        features = world.action_features(actions[:, t])
        # Every row's exogenous entries are the day's: the model's product over them is shared.
        current = obs[:, t, model.endogenous]
        predicted = model.predict_varying(day.obs[t], current, features)
        obs[:, t + 1, model.endogenous] = np.clip(predicted, low, high)
        rewards[:, t] = world.obs_reward(obs[:, t], actions[:, t], obs[:, t + 1])
    return obs, rewards


def plan_day(
    world: World[Any, Any],
    model: DeviceModel,
    day: RememberedDay,
    rng: np.random.Generator,
    settings: PlannerSettings | None = None,
) -> PlannedDay:
    """The action sequence the model says earns ``day`` the most reward (cross-entropy method).

    Discrete actions: an independent categorical distribution per step, starting uniform.
    Box actions: a Gaussian per step, starting at the middle of the box with half its width
    as the deviation, samples clipped to the box. The day's own actions are among the first
    round's samples, so a plan never scores below what the device did (by the model).
    """
    s = settings or PlannerSettings()
    steps = len(day)
    space = world.action_space
    elite = max(1, round(s.samples * s.elite_fraction))
    best: npt.NDArray[Any] = np.asarray(day.actions)
    best_return = -np.inf
    if isinstance(space, gym.spaces.Discrete):
        n = int(space.n)
        probs = np.full((steps, n), 1.0 / n)
    elif isinstance(space, gym.spaces.Box):
        lo = space.low.astype(np.float64)
        hi = space.high.astype(np.float64)
        mean = np.broadcast_to((lo + hi) / 2.0, (steps, *lo.shape)).copy()
        std = np.broadcast_to((hi - lo) / 2.0, (steps, *lo.shape)).copy()
    else:
        msg = f"hindsight plans need Discrete or Box actions, not {type(space).__name__}"
        raise ConfigError(msg)
    for _ in range(s.iterations):
        if isinstance(space, gym.spaces.Discrete):
            draws = rng.random((s.samples, steps, 1))
            sampled = (draws > probs.cumsum(axis=1)[None]).sum(axis=2)
            actions: npt.NDArray[Any] = np.minimum(sampled, n - 1).astype(np.int64)
        else:
            noise = rng.standard_normal((s.samples, *mean.shape))
            actions = np.clip(mean[None] + std[None] * noise, lo, hi).astype(space.dtype)
        actions[0] = best  # the best so far competes again (and first, the day as lived)
        _, rewards = _rollout(world, model, day, actions)
        returns = rewards.sum(axis=1)
        order = np.argsort(-returns)[:elite]
        if returns[order[0]] > best_return:
            best_return = float(returns[order[0]])
            best = actions[order[0]].copy()
        chosen = actions[order]
        if isinstance(space, gym.spaces.Discrete):
            counts = (chosen[:, :, None] == np.arange(n)[None, None]).mean(axis=0)
            probs = s.smoothing * probs + (1.0 - s.smoothing) * counts
        else:
            mean = s.smoothing * mean + (1.0 - s.smoothing) * chosen.mean(axis=0)
            std = s.smoothing * std + (1.0 - s.smoothing) * chosen.std(axis=0)
    obs, rewards = _rollout(world, model, day, best[None])
    return PlannedDay(obs[0].astype(np.float32), best, rewards[0])


def check_hindsight(rate: float, imagination: float) -> None:
    """Raises :class:`ConfigError` unless ``rate`` plans per day lived can be had."""
    if not 0.0 <= rate <= MAX_HINDSIGHT:
        msg = f"hindsight={rate!r} must be in [0, {MAX_HINDSIGHT:g}] (plans per day lived)"
        raise ConfigError(msg)
    if rate > 0 and imagination <= 0:
        msg = "hindsight plans need imagination > 0 (they plan on the imagined device's model)"
        raise ConfigError(msg)


class HindsightPlans:
    """Plans ``rate`` of the days the device lives, and clones the latest plans into a policy."""

    def __init__(
        self,
        world: World[Any, Any],
        rate: float,
        *,
        seed: int = 0,
        settings: PlannerSettings | None = None,
    ) -> None:
        self.world = world
        self.rate = rate
        self.settings = settings or PlannerSettings()
        self.plans: deque[PlannedDay] = deque(maxlen=self.settings.keep_days)
        #: Days planned so far.
        self.planned_days = 0
        #: The latest plans' mean planned return less the same days' lived return (by the
        #: model): what hindsight says was left on the table.
        self.planned_gain: float | None = None
        self._owed = 0.0
        self._rng = np.random.default_rng(seed)

    def plan(self, model: DeviceModel, days: Sequence[RememberedDay], new_days: float) -> int:
        """Plan the latest of ``days`` owed for ``new_days`` more days lived; returns how many."""
        self._owed += self.rate * new_days
        due = min(int(self._owed), len(days))
        if due == 0:
            return 0
        self._owed -= due
        gains = []
        for day in days[len(days) - due :]:
            planned = plan_day(self.world, model, day, self._rng, self.settings)
            _, lived = _rollout(self.world, model, day, np.asarray(day.actions)[None])
            gains.append(planned.planned_return - float(lived.sum()))
            self.plans.append(planned)
        self.planned_days += due
        self.planned_gain = float(np.mean(gains))
        return due

    def forget(self) -> None:
        """Drop the kept plans (of days in a world that has changed)."""
        self.plans.clear()

    def clone_into(self, policy: ActorCriticPolicy, *, gamma: float) -> PretrainResult:
        """Behaviour cloning of the kept plans' actions into ``policy``'s actor."""
        columns = ExperienceColumns.concatenate([p.columns() for p in self.plans])
        return clone_actor_critic(
            policy,
            columns,
            gamma=gamma,
            epochs=self.settings.clone_epochs,
            fit_value=False,
            seed=int(self._rng.integers(2**31)),
        )
