"""Building an agent's world from a name, optionally drifting or fixed at one regime.

A world is named by a registered gymnasium id (the project's own worlds register under
``society/``) or by ``package.module:Name``. Drift goes through the one mechanism of
:mod:`agents.worlds.drift`: a :class:`DriftPlan` names regimes and how long each lasts; the
regimes are the world's built-in ones (see ``agents.worlds.regimes_for``) or defined by the
scenario as parameter overrides.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
from gymnasium.envs.registration import EnvSpec

from agents.bus.schemas import HyperValue, RegimeSpec
from agents.exceptions import ConfigError
from agents.worlds import DriftSchedule, DriftWrapper, Regime, regimes_for
from agents.worlds.shadow import can_shadow, shadowed

METER_TWIN_RATIO = 1.0
"""Simulation steps the regret meter's copy of the device may play per step of the agent's.

At 1 the meter's copy costs at most what the agent's own simulation does; where episodes have
a fixed length it plays every episode (``agents.worlds.shadow``).
"""

__all__ = ["DriftPlan", "make_env", "parse_drift"]


@dataclass(frozen=True, slots=True)
class DriftPlan:
    """Which regime holds for how many agent steps; ``regimes`` adds or redefines regimes."""

    phases: tuple[tuple[str, int], ...]
    cyclic: bool = False
    regimes: Mapping[str, Mapping[str, HyperValue]] = field(default_factory=dict)

    def regime_table(self, env_id: str) -> dict[str, Regime]:
        table = dict(regimes_for(env_id))
        for name, params in self.regimes.items():
            table[name] = Regime(name, dict(params))
        return table

    def schedule(self, env_id: str) -> DriftSchedule:
        return DriftSchedule.from_names(
            self.regime_table(env_id), list(self.phases), cyclic=self.cyclic
        )

    def specs(self, env_id: str) -> list[RegimeSpec]:
        """The regimes the schedule visits, once each in order of first visit."""
        table = self.regime_table(env_id)
        names = list(dict.fromkeys(name for name, _ in self.phases))
        missing = [name for name in names if name not in table]
        if missing:
            known = ", ".join(table) or "(none)"
            msg = f"unknown regime {missing[0]!r} for {env_id}; known regimes: {known}"
            raise ConfigError(msg)
        return [RegimeSpec(name=n, params=_scalars(table[n].params)) for n in names]


def parse_drift(text: str) -> tuple[tuple[str, int], ...]:
    """``"winter:20000,summer:20000"`` as ``(("winter", 20000), ("summer", 20000))``."""
    phases = []
    for part in text.split(","):
        name, _, steps = part.strip().partition(":")
        try:
            count = int(steps.replace("_", ""))
        except ValueError:
            count = 0
        if not name or count < 1:
            msg = f"invalid drift {text!r}: use regime:steps,regime:steps (steps >= 1)"
            raise ConfigError(msg)
        phases.append((name, count))
    return tuple(phases)


def _scalars(params: Mapping[str, Any]) -> dict[str, HyperValue]:
    out: dict[str, HyperValue] = {}
    for key, value in params.items():
        if not isinstance(value, bool | int | float | str):
            msg = f"regime parameter {key}={value!r} is not a plain scalar"
            raise ConfigError(msg)
        out[key] = value
    return out


def make_env(
    env_id: str,
    kwargs: Mapping[str, HyperValue] | None = None,
    *,
    drift: DriftPlan | None = None,
    lifetime_step: int = 0,
    regime: RegimeSpec | None = None,
    shadow_baseline: bool = False,
    meter_baseline: bool = False,
    checked: bool = True,
) -> gym.Env[Any, Any]:
    """Build a gymnasium environment, drifting along ``drift`` or fixed at ``regime``.

    ``shadow_baseline`` plays the world's baseline controller on a copy of every episode and
    reports its return at the episode's end (:mod:`agents.worlds.shadow`: on a copy, or on a
    replay in a worker process for a world that cannot be copied); ``meter_baseline`` does
    so where the world allows it, and quietly not elsewhere, with the copy held to
    :data:`METER_TWIN_RATIO` times the agent's steps (episodes past it are not metered).

    ``checked=False`` leaves out the wrappers ``gymnasium.make`` adds to check how the world
    is used (the passive environment checker and the reset-before-step order): an evaluation
    plays a registered world with a loop of its own, and on CartPole those two wrappers were
    a tenth of its CPU per step (``bench/evaluation_speed.py``). The time limit stays.

    ``env_id`` is either an id in gymnasium's registry, or ``package.module:Name`` where
    ``Name`` is a ``gymnasium.Env`` subclass or a function returning one; ``kwargs`` go to its
    constructor. Raises :class:`ConfigError` naming the id if it cannot be built.
    """
    env = _base_env(env_id, dict(kwargs or {}), checked=checked)
    if shadow_baseline:
        env = shadowed(env, env_id)  # inside the drift: the copy sees the regime applied
    elif meter_baseline and can_shadow(env_id, env):
        env = shadowed(env, env_id, max_twin_ratio=METER_TWIN_RATIO)
    if drift is not None and regime is not None:
        msg = "give a drift plan or a fixed regime, not both"
        raise ConfigError(msg)
    if drift is not None:
        return DriftWrapper(env, drift.schedule(env_id), lifetime_step=lifetime_step)
    if regime is not None:
        fixed = DriftSchedule.constant(Regime(regime.name, dict(regime.params)))
        return DriftWrapper(env, fixed)
    return env


def _base_env(env_id: str, params: dict[str, Any], *, checked: bool) -> gym.Env[Any, Any]:
    if env_id in gym.registry:
        return _build(env_id, lambda: gym.make(_spec(env_id, checked=checked), **params))
    module_name, sep, attribute = env_id.partition(":")
    if not sep or not module_name or not attribute:
        msg = f"unknown environment {env_id!r}: not a registered gymnasium id nor module:Class"
        raise ConfigError(msg)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        msg = f"environment {env_id!r}: cannot import {module_name!r}: {exc}"
        raise ConfigError(msg) from None
    target = getattr(module, attribute, None)
    if target is None and attribute in gym.registry:
        # gymnasium's own "module:EnvId" form: importing the module registered the id.
        return _build(env_id, lambda: gym.make(_spec(attribute, checked=checked), **params))
    if not callable(target):
        msg = f"environment {env_id!r}: {module_name} has no class or function {attribute!r}"
        raise ConfigError(msg)
    return _build(env_id, lambda: target(**params))


def _spec(registered_id: str, *, checked: bool) -> EnvSpec:
    spec = gym.spec(registered_id)
    if checked:
        return spec
    return dataclasses.replace(spec, order_enforce=False, disable_env_checker=True)


def _build(env_id: str, factory: Callable[[], object]) -> gym.Env[Any, Any]:
    try:
        env = factory()
    except TypeError as exc:
        msg = f"environment {env_id!r} does not accept these parameters: {exc}"
        raise ConfigError(msg) from None
    except gym.error.Error as exc:
        msg = f"environment {env_id!r}: {exc}"
        raise ConfigError(msg) from None
    if not isinstance(env, gym.Env):  # a user's factory may return anything
        msg = f"environment {env_id!r} built a {type(env).__name__}, not a gymnasium.Env"
        raise ConfigError(msg)
    return env
