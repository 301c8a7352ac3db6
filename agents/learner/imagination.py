"""Learning from imagined days: the device's own past, replayed through a model of the device.

A device agent lives one day at a time, and a policy gradient learns from each day once: that
is why PPO needs hundreds of thousands of steps to beat a thermostat. Yet most of what a day
holds does not depend on the agent at all. The weather, the prices and the household's
comings and goings are *exogenous*; only a few observation entries (the indoor temperature,
the heat pump's state) answer to the actions. A world that says which ones
(:attr:`~agents.worlds.base.World.endogenous_obs`) lets the agent learn far more from each
day it lived (Dyna, Sutton 1990; with exogenous inputs replayed rather than modelled, as in
input-driven MDPs, Mao et al. 2019):

- :class:`DeviceMemory` keeps the device's latest whole days, every observation of them.
- :class:`DeviceModel` fits a linear model of the endogenous entries' next values to those
  days (ridge regression on the observation crossed with the action's features): the
  thermal response of a house is linear in exactly these terms.
- :class:`ImaginedDays` replays a remembered day: the exogenous entries as they were, the
  endogenous ones as the model says the agent's actions would have made them (plus a
  residual of the fit drawn at random, for what the observation does not show, like the
  sun through the clouds), and the reward the world's own objective gives them
  (:meth:`~agents.worlds.base.World.obs_reward`).
- :class:`Imagination` trains the learner's policy on imagined days, ``ratio`` imagined
  steps per device step, with the learner's algorithm and hyperparameters.

No imagined step touches the device or counts in its budget; the guard still decides what
drives the device on what it does there. The memory covers the latest days only, so after a
drift the model and the replayed days follow the new conditions within ``memory_steps``.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
import numpy.typing as npt
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.vec_env import DummyVecEnv

from agents.bus.schemas import HyperValue
from agents.exceptions import ConfigError
from agents.learner.algorithms import silence_logger
from agents.learner.experience import ExperienceColumns
from agents.worlds.base import World

if TYPE_CHECKING:
    from agents.learner.hindsight import HindsightPlans

__all__ = [
    "DEFAULT_MEMORY_STEPS",
    "DeviceMemory",
    "DeviceModel",
    "Imagination",
    "ImaginedDays",
    "RememberedDay",
    "check_imagination",
]

log = logging.getLogger(__name__)

DEFAULT_MEMORY_STEPS = 10_000
"""The device steps the memory keeps (about 100 days of a thermostat): enough for a model of
the device's response, recent enough to follow a drift."""
IMAGINED_ENVS = 4
"""Imagined days played side by side: one forward pass of the policy serves all of them."""
MIN_DAYS = 5
"""Whole days remembered before anything is imagined."""


@dataclass(frozen=True, slots=True)
class RememberedDay:
    """One whole episode the device lived: its observations (one more than its actions)."""

    obs: npt.NDArray[np.float32]
    actions: npt.NDArray[Any]

    def __len__(self) -> int:
        return len(self.actions)


class DeviceMemory:
    """The device's latest whole episodes, up to ``capacity`` steps (the oldest go first)."""

    def __init__(self, capacity: int = DEFAULT_MEMORY_STEPS) -> None:
        self.capacity = capacity
        self._days: deque[RememberedDay] = deque()
        self._steps = 0
        self._obs: list[npt.NDArray[np.float32]] = []
        self._actions: list[Any] = []

    def record(
        self, obs: npt.NDArray[Any], action: Any, next_obs: npt.NDArray[Any], *, done: bool
    ) -> None:
        """One step the device lived.

        A step that does not follow on from the last one (the learner restarted an episode)
        drops the unfinished episode: only whole days replay.
        """
        obs32 = np.asarray(obs, dtype=np.float32)
        if self._obs and not np.array_equal(self._obs[-1], obs32):
            self._obs, self._actions = [], []
        if not self._obs:
            self._obs.append(obs32.copy())
        self._obs.append(np.asarray(next_obs, dtype=np.float32).copy())
        self._actions.append(np.asarray(action).copy())
        if done:
            day = RememberedDay(np.stack(self._obs), np.stack(self._actions))
            self._days.append(day)
            self._steps += len(day)
            while self._steps > self.capacity and len(self._days) > 1:
                self._steps -= len(self._days.popleft())
            self._obs, self._actions = [], []

    def record_columns(self, columns: ExperienceColumns) -> None:
        """Recorded transitions (a controller's history), one step after another."""
        for i in range(len(columns)):
            self.record(
                columns.obs[i], columns.actions[i], columns.next_obs[i],
                done=bool(columns.terminated[i]) or bool(columns.truncated[i]),
            )  # fmt: skip

    @property
    def days(self) -> Sequence[RememberedDay]:
        return tuple(self._days)

    @property
    def steps(self) -> int:
        return self._steps

    def transitions(
        self,
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[Any], npt.NDArray[np.float32]]:
        """Every remembered step as ``(obs, actions, next_obs)``."""
        days = self._days
        obs = np.concatenate([d.obs[:-1] for d in days])
        actions = np.concatenate([d.actions for d in days])
        next_obs = np.concatenate([d.obs[1:] for d in days])
        return obs, actions, next_obs


class DeviceModel:
    """A linear model of the endogenous observation entries one step ahead.

    ``next[endogenous] = x[endogenous] + W^T (x ⊗ [1, f])``, with ``x`` the observation and a
    constant and ``f`` the action's features: every term of the observation may act alone and
    scaled by what the action does (a heat pump's heat is its power times a COP that depends
    on the outdoor temperature). Fitted by ridge regression; the residuals are kept to draw
    from.

    The model learns the *change* of each endogenous entry, so the ridge pulls it towards
    "nothing changes" where the data say little. A controller's history says little: a
    thermostat with a dead band keeps the house within a kelvin and switches its heat pump
    only at the band's edges, so heat and temperature move together. Fitted to the
    programmable thermostat's history, a model of the next value itself let a plan "coast" for
    hours on heat the house did not have. Over a whole day of heat-pump settings the controller
    never held (the house swinging 9-20 K), the model of the next value was off by 31-55 % of
    the swing at worst, the model of the change by 8-13 % (tests/learner/test_imagination.py).
    """

    def __init__(self, endogenous: Sequence[int], ridge: float = 1e-3) -> None:
        self.endogenous = np.asarray(endogenous, dtype=np.int64)
        self.ridge = ridge
        self._weights: npt.NDArray[np.float64] | None = None
        self.residuals: npt.NDArray[np.float64] = np.zeros((0, len(self.endogenous)))

    @property
    def fitted(self) -> bool:
        return self._weights is not None

    @staticmethod
    def _design(obs: npt.NDArray[Any], features: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
        n = len(obs)
        x = np.concatenate([np.asarray(obs, dtype=np.float64), np.ones((n, 1))], axis=1)
        f = np.concatenate([np.ones((n, 1)), np.asarray(features, dtype=np.float64)], axis=1)
        design: npt.NDArray[np.float64] = (x[:, :, None] * f[:, None, :]).reshape(n, -1)
        return design

    def fit(
        self,
        obs: npt.NDArray[Any],
        features: npt.NDArray[Any],
        next_obs: npt.NDArray[Any],
    ) -> float:
        """Fit to the transitions; returns the root-mean-square error of the fit."""
        design = self._design(obs, features)
        target = (
            np.asarray(next_obs, dtype=np.float64)[:, self.endogenous]
            - np.asarray(obs, dtype=np.float64)[:, self.endogenous]
        )
        gram = design.T @ design
        gram[np.diag_indices_from(gram)] += self.ridge * len(design)
        weights = np.asarray(np.linalg.solve(gram, design.T @ target), dtype=np.float64)
        self._weights = weights
        self.residuals = target - design @ weights
        return float(np.sqrt(np.mean(self.residuals**2)))

    def predict(self, obs: npt.NDArray[Any], features: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
        """The endogenous entries' next values, one row per observation."""
        if self._weights is None:
            msg = "DeviceModel.predict before fit"
            raise RuntimeError(msg)
        change = self._design(obs, features) @ self._weights
        prediction: npt.NDArray[np.float64] = (
            np.asarray(obs, dtype=np.float64)[:, self.endogenous] + change
        )
        return prediction

    def predict_varying(
        self,
        obs: npt.NDArray[Any],
        endogenous: npt.NDArray[Any],
        features: npt.NDArray[Any],
    ) -> npt.NDArray[np.float64]:
        """:meth:`predict` for rows that share ``obs`` except its endogenous entries.

        ``endogenous`` ``(n, len(self.endogenous))`` and ``features`` ``(n, f)`` are each
        row's own. A planner plays hundreds of action sequences on one remembered day, where
        every exogenous entry is the day's: their part of the product is computed once, not
        once per row (the same numbers; 0.28 ms against 0.69 ms for 512 rows of a thermostat).
        """
        if self._weights is None:
            msg = "DeviceModel.predict_varying before fit"
            raise RuntimeError(msg)
        endo = np.asarray(endogenous, dtype=np.float64)
        f = np.asarray(features, dtype=np.float64)
        n = len(endo)
        x = np.append(np.asarray(obs, dtype=np.float64), 1.0)
        x[self.endogenous] = 0.0
        weights = self._weights.reshape(len(x), f.shape[1] + 1, len(self.endogenous))
        shared = np.tensordot(x, weights, axes=1)  # (1 + f, endogenous)
        own = np.einsum("nj,jke->nke", endo, weights[self.endogenous])
        f1 = np.concatenate([np.ones((n, 1)), f], axis=1)
        change = np.einsum("nk,nke->ne", f1, shared[None] + own)
        prediction: npt.NDArray[np.float64] = endo + change
        return prediction


class ImaginedDays(gym.Env[npt.NDArray[np.float32], Any]):
    """A remembered day, replayed with the endogenous entries the model predicts.

    ``source`` holds the days and the model (refitted between trainings); each ``reset``
    picks one of its days at random. A shielded learner's imagined actions pass through the
    world's shield as its real ones do (shield.py).
    """

    def __init__(self, world: World[Any, Any], source: Imagination, seed: int) -> None:
        self.world = world
        self.source = source
        self.observation_space = world.observation_space
        self.action_space = world.action_space
        self._rng = np.random.default_rng(seed)
        self._day: RememberedDay | None = None
        self._t = 0
        self._obs = np.zeros(world.observation_space.shape or (0,), dtype=np.float32)

    def reset(
        self,
        *,
        seed: int | None = None,
        options: dict[str, Any] | None = None,  # noqa: ARG002 - gymnasium's signature
    ) -> tuple[npt.NDArray[np.float32], dict[str, Any]]:
        super().reset(seed=seed)
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        days = self.source.memory.days
        self._day = days[int(self._rng.integers(len(days)))]
        self._t = 0
        self._obs = self._day.obs[0].copy()
        return self._obs.copy(), {}

    def step(
        self, action: Any
    ) -> tuple[npt.NDArray[np.float32], float, bool, bool, dict[str, Any]]:
        day = self._day
        assert day is not None, "step before reset"
        model = self.source.model
        actions = np.asarray([action])
        if self.source.shield:
            actions = self.world.shield_actions(self._obs[None, :], actions)
        features = self.world.action_features(actions)
        predicted = model.predict(self._obs[None, :], features)[0]
        residuals = model.residuals
        if len(residuals):
            predicted = predicted + residuals[int(self._rng.integers(len(residuals)))]
        next_obs = day.obs[self._t + 1].copy()
        next_obs[model.endogenous] = predicted
        space = self.observation_space
        assert isinstance(space, gym.spaces.Box)
        np.clip(next_obs, space.low, space.high, out=next_obs)
        reward = float(self.world.obs_reward(self._obs[None, :], actions, next_obs[None, :])[0])
        self._t += 1
        self._obs = next_obs
        return next_obs.copy(), reward, False, self._t >= len(day), {}


def check_imagination(world: gym.Env[Any, Any], algo: str, ratio: float) -> World[Any, Any] | None:
    """The world to imagine in, ``None`` if ``ratio`` is 0.

    Raises:
        ConfigError: ``ratio`` imagined steps per device step cannot be had here.
    """
    if ratio < 0:
        msg = f"imagination={ratio!r} must be >= 0 (imagined steps per device step)"
        raise ConfigError(msg)
    if ratio == 0:
        return None
    inner = world.unwrapped
    if not isinstance(inner, World) or not inner.endogenous_obs:
        msg = (
            f"imagination needs a world that names the observation entries its actions change "
            f"(endogenous_obs); {type(inner).__name__} does not"
        )
        raise ConfigError(msg)
    if algo.lower() not in ("ppo", "a2c"):
        msg = f"imagination trains on-policy learners (ppo, a2c), not {algo}"
        raise ConfigError(msg)
    return inner


class Imagination:
    """Trains a learner's policy on imagined days, ``ratio`` imagined steps per device step."""

    def __init__(
        self,
        world: World[Any, Any],
        ratio: float,
        *,
        memory_steps: int = DEFAULT_MEMORY_STEPS,
        hindsight: HindsightPlans | None = None,
        seed: int = 0,
        shield: bool = False,
    ) -> None:
        self.world = world
        self.ratio = ratio
        self.seed = seed
        #: Imagined actions pass through the world's shield (shield.py).
        self.shield = shield
        #: Plans of remembered days, cloned into the policy before it imagines (hindsight.py).
        self.hindsight = hindsight
        self.memory = DeviceMemory(memory_steps)
        self.model = DeviceModel(world.endogenous_obs)
        #: Root-mean-square error of the latest fit (normalised observation units).
        self.fit_error: float | None = None
        #: Imagined steps trained on so far.
        self.imagined_steps = 0
        self._owed = 0.0
        self._lived = 0
        self._lived_since_fit = 0
        self._twin: OnPolicyAlgorithm | None = None
        self._twin_hyperparams: dict[str, HyperValue] = {}

    @property
    def planned_days(self) -> int:
        """Remembered days planned in hindsight so far."""
        return self.hindsight.planned_days if self.hindsight is not None else 0

    def train(
        self,
        model: BaseAlgorithm,
        device_steps: int,
        hyperparams: Mapping[str, HyperValue],
        constructor_keys: frozenset[str],
    ) -> int:
        """Train ``model``'s policy on ``ratio * device_steps`` imagined steps.

        Steps owed are carried over until a whole rollout is due. With :attr:`hindsight`, the
        days owed a plan are planned first, and the plans cloned into the policy. Returns the
        imagined steps trained on.

        The model of the device is fitted again once the device has lived a configured
        rollout (``n_steps``) since the last fit, not at every call: a pooling member calls
        this after every quarter of its rollout (pooling.py), and refitting four times as
        often took a third of its speed (docs/benchmarks.md) for a model of whole days that a
        quarter rollout, less than a day of a house, hardly moves.
        """
        if not isinstance(model, PPO | A2C):
            return 0
        self._owed += self.ratio * device_steps
        self._lived += device_steps
        self._lived_since_fit += device_steps
        days = self.memory.days
        if len(days) < MIN_DAYS:
            return 0
        twin = self._twin_for(model, hyperparams, constructor_keys)
        rollout = twin.n_steps * twin.n_envs
        rollouts = int(self._owed // rollout)
        if rollouts == 0:
            return 0
        self._owed -= rollouts * rollout
        if self.fit_error is None or self._lived_since_fit >= rollout:
            obs, actions, next_obs = self.memory.transitions()
            self.fit_error = self.model.fit(obs, self.world.action_features(actions), next_obs)
            self._lived_since_fit = 0
        if self.hindsight is not None:
            lived_days = self._lived * len(days) / self.memory.steps
            self._lived = 0
            if self.hindsight.plan(self.model, days, lived_days):
                self.hindsight.clone_into(model.policy, gamma=model.gamma)
        # The learner's own policy (its optimiser inside it) and its lifelong schedules.
        twin.policy = model.policy
        twin.lr_schedule = model.lr_schedule
        if isinstance(model, PPO) and isinstance(twin, PPO):
            twin.clip_range = model.clip_range
            twin.clip_range_vf = model.clip_range_vf
        twin.learn(rollouts * rollout, reset_num_timesteps=True, progress_bar=False)
        self.imagined_steps += rollouts * rollout
        return rollouts * rollout

    def _twin_for(
        self,
        model: PPO | A2C,
        hyperparams: Mapping[str, HyperValue],
        constructor_keys: frozenset[str],
    ) -> OnPolicyAlgorithm:
        """The algorithm that plays imagined days (rebuilt when the hyperparameters change)."""
        if self._twin is not None and dict(hyperparams) == self._twin_hyperparams:
            return self._twin
        constructor: dict[str, Any] = {
            key: value for key, value in hyperparams.items() if key in constructor_keys
        }
        # The configured rollout, shared out over the imagined days played side by side.
        n_steps = int(constructor.get("n_steps", model.n_steps))
        constructor["n_steps"] = max(1, n_steps // IMAGINED_ENVS)
        envs: list[Callable[[], gym.Env[Any, Any]]] = [
            partial(ImaginedDays, self.world, self, self.seed + i) for i in range(IMAGINED_ENVS)
        ]
        self._twin = type(model)(
            type(model.policy),
            DummyVecEnv(envs),
            policy_kwargs=model.policy_kwargs,
            seed=self.seed,
            device="cpu",
            verbose=0,
            **constructor,
        )
        silence_logger(self._twin)
        self._twin_hyperparams = dict(hyperparams)
        return self._twin
