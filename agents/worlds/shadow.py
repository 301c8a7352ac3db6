"""The baseline controller's return on the very episode the agent just played.

A thermostat's daily cost follows the weather: a cold spell raises it whatever the policy, and
cold spells last days. An agent that judges itself on raw returns then takes a run of cold
days for a change of its world. What the policy contributes is its return *relative to what
the controller people use today got on the same day*. :class:`BaselineShadow` measures that:
at every reset it copies the device just before the episode is drawn (the same parameters,
the same random generator state), so the copy plays the identical episode (weather,
occupancy, prices) with the world's primary baseline controller, step for step beside the
agent. At the episode's last step ``info[BASELINE_RETURN]`` holds the baseline's return, and
the agent's *advantage* that day is its return minus that.

This holds for worlds whose randomness does not depend on the actions taken: every built-in
world draws its exogenous conditions (at reset, or each step in an order the actions do not
change). Where episodes end on their own (CartPole's pole falls), the copy is played to its own
end: the baseline's return is that of its whole episode from the same start. The copy doubles
the simulation's cost, not the agent's steps: it is a digital twin kept for judging, its
transitions are never learned from.

Judging (``judge_against_baseline``: the drift detector compares advantages) needs every
episode played. Metering alone (the regret a user reads) does not: there the copy may be held
to a budget of simulation steps, ``max_twin_ratio`` times the agent's own, and an episode
starting while the copy is over budget is not played (its ``info`` has no
``BASELINE_RETURN``; the meter compares the episodes that were). Where episodes have a fixed
length the copy never goes over; where they end on their own it can play far more steps than
the agent: a PD controller holds CartPole's pole 500 steps while an agent still learning drops
it in 20, and the copy cost 7 times the agent's steps (a tenth of the agent's CPU) in the first
8,000 steps of a run.

A world that cannot be copied (libsumo runs one simulation per process) but can describe its
episode (``episode_recipe()``: the device's parameters, the regime's, and the simulator's
seed) gets a :class:`ProcessShadow` instead: the same episode is rebuilt and played with the
baseline in one long-lived worker process, in parallel with the agent's, and its return
awaited at the episode's end.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import time
from collections.abc import Iterator
from multiprocessing import get_context
from multiprocessing.connection import Connection
from typing import Any, SupportsFloat, TypeVar

import gymnasium as gym

from agents.exceptions import ConfigError
from agents.worlds.base import EpisodeRecipe
from agents.worlds.baselines import PRIMARY_BASELINE, make_baseline

__all__ = [
    "BASELINE_RETURN",
    "BaselineShadow",
    "EpisodeRecipe",
    "ProcessShadow",
    "can_shadow",
    "is_shadowed",
    "shadowed",
    "unjudged",
]

log = logging.getLogger(__name__)

ObsT = TypeVar("ObsT")
ActT = TypeVar("ActT")

BASELINE_RETURN = "baseline_return"
"""``info`` key, at an episode's last step: the baseline controller's return on that episode."""


class BaselineShadow(gym.Wrapper[ObsT, ActT, ObsT, ActT]):
    """Play the world's primary baseline on a copy of every episode (module docstring).

    Args:
        env: the world (the drift wrapper, if any, goes outside this one, so a regime applied
            at reset is in force before the copy is taken).
        env_id: the world's id, naming its baseline in :data:`PRIMARY_BASELINE`.
        max_twin_ratio: ``None`` plays every episode; a number holds the copy to that many
            simulation steps per step of the agent's (module docstring): an episode starting
            while the copy has played more is not played.

    Raises:
        ConfigError: the world has no baseline controller, or ``max_twin_ratio`` is not > 0.
    """

    def __init__(
        self, env: gym.Env[ObsT, ActT], env_id: str, max_twin_ratio: float | None = None
    ) -> None:
        super().__init__(env)
        name = PRIMARY_BASELINE.get(env_id)
        if name is None:
            msg = f"{env_id} has no baseline controller to judge episodes against"
            raise ConfigError(msg)
        if max_twin_ratio is not None and not max_twin_ratio > 0:
            msg = f"max_twin_ratio must be > 0, got {max_twin_ratio}"
            raise ConfigError(msg)
        self.controller = make_baseline(env_id, name, env)
        self.max_twin_ratio = max_twin_ratio
        #: While > 0, episodes starting are not played by the baseline (see :func:`unjudged`).
        self.paused = 0
        #: Steps the agent took in episodes the shadow was not paused for, and the copy's.
        self.agent_steps = 0
        self.twin_steps = 0
        #: Episodes not played because the copy was over its budget.
        self.over_budget = 0
        self._twin: gym.Env[ObsT, ActT] | None = None
        self._twin_obs: ObsT | None = None
        self._twin_done = False
        self._twin_return = 0.0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[ObsT, dict[str, Any]]:
        if self._twin is not None:
            self._twin.close()
            self._twin = None
        if self.paused:
            return self.env.reset(seed=seed, options=options)
        if self._over_budget():
            self.over_budget += 1
            return self.env.reset(seed=seed, options=options)
        # Copied before either resets: same parameters, same generator state, same episode.
        self._twin = copy.deepcopy(self.env)
        obs, info = self.env.reset(seed=seed, options=options)
        self._twin_obs, _ = self._twin.reset(seed=seed, options=options)
        self._twin_done = False
        self._twin_return = 0.0
        self.controller.reset()
        return obs, info

    def step(self, action: ActT) -> tuple[ObsT, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        if not self.paused:
            self.agent_steps += 1
        self._twin_step()
        if (terminated or truncated) and self._twin is not None:
            # Episodes that end on their own (a pole that falls) may end at another step on
            # the twin: the baseline plays its copy of the episode to its own end.
            while not self._twin_done and self._twin_obs is not None:
                self._twin_step()
            info[BASELINE_RETURN] = self._twin_return
        return obs, reward, terminated, truncated, info

    def _twin_step(self) -> None:
        twin = self._twin
        if twin is None or self._twin_done or self._twin_obs is None:
            return
        twin_obs, twin_reward, twin_end, twin_cut, _ = twin.step(
            self.controller.act(self._twin_obs)  # type: ignore[arg-type]
        )
        self._twin_obs = twin_obs
        self._twin_return += float(twin_reward)
        self._twin_done = twin_end or twin_cut
        self.twin_steps += 1

    def _over_budget(self) -> bool:
        ratio = self.max_twin_ratio
        return ratio is not None and self.twin_steps > ratio * self.agent_steps

    def close(self) -> None:
        if self._twin is not None:
            self._twin.close()
            self._twin = None
        super().close()


#: The worker's world, kept between episodes while the device parameters stay the same.
_WORKER_WORLD: dict[str, gym.Env[Any, Any]] = {}


def _play_recipe(env_id: str, world_class: type[Any], recipe: EpisodeRecipe) -> float:
    """In the worker: the primary baseline's return on the episode ``recipe`` describes."""
    key = repr(sorted(recipe.kwargs.items()))
    env = _WORKER_WORLD.get(key)
    if env is None:
        for old in _WORKER_WORLD.values():
            old.close()
        _WORKER_WORLD.clear()
        env = _WORKER_WORLD[key] = world_class(**recipe.kwargs)
    world: Any = env.unwrapped
    world.apply_regime(recipe.regime)
    controller = make_baseline(env_id, PRIMARY_BASELINE[env_id], env)
    controller.reset()
    obs, _ = env.reset(options=recipe.options)
    total = 0.0
    while True:
        obs, reward, terminated, truncated, _ = env.step(controller.act(obs))
        total += float(reward)
        if terminated or truncated:
            return total


def _serve(conn: Connection) -> None:
    """The worker's loop: replay each episode asked for, reply ``(tag, ok, value)``."""
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return  # the agent is gone
        if job is None:
            return
        tag, env_id, world_class, recipe = job
        try:
            conn.send((tag, True, _play_recipe(env_id, world_class, recipe)))
        except Exception as exc:  # noqa: BLE001 - reported to the agent, the worker goes on
            conn.send((tag, False, repr(exc)))


class _ReplayWorker:
    """One daemon process replaying episodes: it dies with the agent whatever happens."""

    def __init__(self) -> None:
        context = get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(
            target=_serve, args=(child,), daemon=True, name="baseline-replay"
        )
        self._process.start()
        child.close()
        self._tag = 0

    def submit(self, env_id: str, world_class: type[Any], recipe: EpisodeRecipe) -> int:
        self._tag += 1
        self._conn.send((self._tag, env_id, world_class, recipe))
        return self._tag

    def result(self, tag: int, timeout: float) -> float:
        """The replay ``tag``'s return; older replies (episodes cut short) are dropped."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not self._conn.poll(left):
                msg = f"no replay within {timeout:g} s"
                raise TimeoutError(msg)
            got, ok, value = self._conn.recv()
            if got != tag:
                continue
            if not ok:
                raise RuntimeError(value)
            return float(value)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._conn.send(None)
        self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._conn.close()


class ProcessShadow(gym.Wrapper[ObsT, ActT, ObsT, ActT]):
    """The baseline on the same episode, replayed in a worker process (module docstring).

    Args:
        env: the world, whose ``unwrapped`` has ``episode_recipe()`` (the drift wrapper goes
            outside this one, so the regime is in force when the recipe is read).
        env_id: the world's id, naming its baseline in :data:`PRIMARY_BASELINE`.
        timeout: seconds to wait at an episode's end for the baseline's return; past it (or
            if the replay failed) the episode has no ``BASELINE_RETURN`` and is not compared
            (counted in ``missed``, logged once), and a worker that timed out is replaced.
    """

    def __init__(self, env: gym.Env[ObsT, ActT], env_id: str, timeout: float = 300.0) -> None:
        super().__init__(env)
        if env_id not in PRIMARY_BASELINE:
            msg = f"{env_id} has no baseline controller to judge episodes against"
            raise ConfigError(msg)
        self.env_id = env_id
        self.timeout = timeout
        self.missed = 0
        #: While > 0, episodes starting are not replayed (see :func:`unjudged`).
        self.paused = 0
        self._worker: _ReplayWorker | None = None
        self._pending: int | None = None

    @property
    def worker_pid(self) -> int | None:
        """The replay worker's process id (``None`` before the first episode, after close)."""
        return self._worker._process.pid if self._worker is not None else None  # noqa: SLF001

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[ObsT, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        self._pending = None
        if self.paused:
            return obs, info
        world = self.env.unwrapped
        recipe: EpisodeRecipe = world.episode_recipe()  # type: ignore[attr-defined]
        if self._worker is None:
            self._worker = _ReplayWorker()
        try:
            self._pending = self._worker.submit(self.env_id, type(world), recipe)
        except OSError as exc:  # the worker died: the next episode gets a new one
            self._fail(exc)
        return obs, info

    def step(self, action: ActT) -> tuple[ObsT, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        tag, worker = self._pending, self._worker
        if (terminated or truncated) and tag is not None and worker is not None:
            self._pending = None
            try:
                info[BASELINE_RETURN] = worker.result(tag, self.timeout)
            except (TimeoutError, OSError, EOFError) as exc:
                self._fail(exc)
            except RuntimeError as exc:  # the replay raised: the worker itself is fine
                self.missed += 1
                if self.missed == 1:
                    log.warning("the baseline's replay of an episode failed: %s", exc)
        return obs, reward, terminated, truncated, info

    def _fail(self, exc: BaseException) -> None:
        self.missed += 1
        if self.missed == 1:
            log.warning("the baseline's replay worker failed (%r); starting another", exc)
        if self._worker is not None:
            self._worker.close()
            self._worker = None
        self._pending = None

    def close(self) -> None:
        if self._worker is not None:
            self._worker.close()
            self._worker = None
        super().close()


def can_shadow(env_id: str, env: gym.Env[Any, Any]) -> bool:
    """Whether ``env`` has a baseline to play, on a copy or on a replay of each episode."""
    world = env.unwrapped
    if env_id not in PRIMARY_BASELINE:
        return False
    return not getattr(world, "single_instance", False) or hasattr(world, "episode_recipe")


def shadowed(
    env: gym.Env[Any, Any], env_id: str, *, max_twin_ratio: float | None = None
) -> gym.Env[Any, Any]:
    """``env`` with the shadow it allows: a copy where it can be copied, else a replay.

    ``max_twin_ratio`` budgets the copy (:class:`BaselineShadow`); a replay runs in a process
    of its own, beside the agent, and is not budgeted.
    """
    if getattr(env.unwrapped, "single_instance", False):
        return ProcessShadow(env, env_id)
    return BaselineShadow(env, env_id, max_twin_ratio=max_twin_ratio)


@contextlib.contextmanager
def unjudged(env: gym.Env[Any, Any]) -> Iterator[None]:
    """Episodes started inside are not played by the baseline: the controller drives them.

    Its return on such an episode is the deployed one by definition; playing it on a copy or
    a replay as well would only double the simulation's cost.
    """
    shadows = [w for w in _wrappers(env) if isinstance(w, BaselineShadow | ProcessShadow)]
    for shadow in shadows:
        shadow.paused += 1
    try:
        yield
    finally:
        for shadow in shadows:
            shadow.paused -= 1


def _wrappers(env: gym.Env[Any, Any]) -> Iterator[gym.Env[Any, Any]]:
    while isinstance(env, gym.Wrapper):
        yield env
        env = env.env


def is_shadowed(env: gym.Env[Any, Any]) -> bool:
    """Whether a :class:`BaselineShadow` or :class:`ProcessShadow` is among ``env``'s wrappers."""
    return any(isinstance(w, BaselineShadow | ProcessShadow) for w in _wrappers(env))
