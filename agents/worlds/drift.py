"""The one drift mechanism of every world: regimes, a schedule over lifetime steps, a wrapper.

Lifelong learning is only measurable if the world's changes are explicit and reproducible. A
:class:`Regime` is a name and a set of parameter overrides (``winter`` sets the season's mean
outdoor temperature, ``moon`` sets CartPole's gravity). A :class:`DriftSchedule` says which regime
holds at each *lifetime* step of an agent (all steps it has ever taken, across episodes), as an
ordered list of phases that may repeat cyclically so a world comes back to an earlier regime. The
:class:`DriftWrapper` counts the steps and switches the regime only at an episode boundary
(``reset``), so an episode never changes its physics half-way.

``info["regime"]`` carries the regime's name for evaluation and metrics; the observation never
does: detecting the change is the agent's job.

The wrapper works on any gymnasium env. Built-in worlds implement ``apply_regime(params)``
(they know how to re-derive their cached quantities). For a plain env the wrapper sets
attributes of ``env.unwrapped``, after checking that each exists, and then calls a
*derived-attribute hook* registered for the env's class (CartPole caches ``total_mass`` and
``polemass_length`` from the masses and the length; the hook recomputes them).
"""

from __future__ import annotations

import bisect
import dataclasses
import types
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol, SupportsFloat, TypeVar, runtime_checkable

import gymnasium as gym
from gymnasium.envs.classic_control.cartpole import CartPoleEnv

from agents.exceptions import ConfigError

__all__ = [
    "CARTPOLE_REGIMES",
    "PENDULUM_REGIMES",
    "DriftPhase",
    "DriftSchedule",
    "DriftWrapper",
    "Regime",
    "SupportsRegimes",
    "register_derived_attributes",
]

ObsT = TypeVar("ObsT")
ActT = TypeVar("ActT")


@dataclasses.dataclass(frozen=True, eq=True)
class Regime:
    """A named set of parameter overrides: a season, a tariff, a demand pattern, a physics.

    Attributes:
        name: short identifier reported in ``info["regime"]`` and in metrics labels.
        params: parameter name -> value; for built-in worlds the names are fields of the
            world's parameter dataclass, for plain envs attributes of ``env.unwrapped``.
        description: one line for humans (docs, ``society scenarios``).
    """

    name: str
    params: Mapping[str, Any]
    description: str = ""

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ConfigError(f"regime name must be a non-empty string, got {self.name!r}")
        # A read-only copy: a regime must not change after a schedule was built from it.
        object.__setattr__(self, "params", types.MappingProxyType(dict(self.params)))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Regime):
            return NotImplemented
        return self.name == other.name and dict(self.params) == dict(other.params)

    def __hash__(self) -> int:
        return hash((self.name, tuple(sorted(self.params))))


@dataclasses.dataclass(frozen=True)
class DriftPhase:
    """One phase of a schedule: ``regime`` holds for ``steps`` lifetime steps."""

    regime: Regime
    steps: int

    def __post_init__(self) -> None:
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps <= 0:
            raise ConfigError(
                f"drift phase {self.regime.name!r}: steps must be a positive integer, "
                f"got {self.steps!r}"
            )


class DriftSchedule:
    """Which regime holds at each lifetime step: ordered phases, optionally cyclic.

    A non-cyclic schedule stays in its last regime once all phases have elapsed; a cyclic one
    starts over, so regime ``k`` holds again at steps ``[start_k + n * period, ...)``.
    The mapping from step to regime is pure arithmetic: two schedules built alike give the same
    regime at every step, whatever the seed.
    """

    def __init__(
        self, phases: Iterable[DriftPhase | tuple[Regime, int]], *, cyclic: bool = False
    ) -> None:
        built = [p if isinstance(p, DriftPhase) else DriftPhase(*p) for p in phases]
        if not built:
            raise ConfigError("a drift schedule needs at least one phase")
        self.phases: tuple[DriftPhase, ...] = tuple(built)
        self.cyclic = cyclic
        ends: list[int] = []
        total = 0
        for phase in self.phases:
            total += phase.steps
            ends.append(total)
        self._ends = ends
        self.period = total

    @classmethod
    def constant(cls, regime: Regime) -> DriftSchedule:
        """A schedule that holds ``regime`` forever (fixed-regime evaluation worlds)."""
        return cls([DriftPhase(regime, 1)])

    @classmethod
    def from_names(
        cls,
        regimes: Mapping[str, Regime],
        phases: Sequence[tuple[str, int]],
        *,
        cyclic: bool = False,
    ) -> DriftSchedule:
        """Build from ``[(regime_name, steps), ...]`` looked up in ``regimes``."""
        built: list[DriftPhase] = []
        for name, steps in phases:
            if name not in regimes:
                raise ConfigError(
                    f"unknown regime {name!r} in drift schedule; known regimes: "
                    f"{', '.join(regimes) or '(none)'}"
                )
            built.append(DriftPhase(regimes[name], steps))
        return cls(built, cyclic=cyclic)

    def phase_index_at(self, step: int) -> int:
        """Index into :attr:`phases` of the phase that holds at lifetime ``step``."""
        if step < 0:
            raise ConfigError(f"lifetime step must be >= 0, got {step}")
        if self.cyclic:
            step %= self.period
        elif step >= self.period:
            return len(self.phases) - 1
        return bisect.bisect_right(self._ends, step)

    def regime_at(self, step: int) -> Regime:
        """The regime that holds at lifetime ``step``."""
        return self.phases[self.phase_index_at(step)].regime

    def next_change(self, step: int) -> int | None:
        """The first lifetime step after ``step`` whose scheduled regime differs, if any."""
        current = self.regime_at(step)
        horizon = step + self.period if self.cyclic else self.period
        cursor = step
        while True:
            idx = self.phase_index_at(cursor)
            offset = cursor - cursor % self.period if self.cyclic else 0
            boundary = offset + self._ends[idx]
            if boundary > horizon or (not self.cyclic and boundary >= self.period):
                return None
            if self.regime_at(boundary) != current:
                return boundary
            cursor = boundary

    @property
    def regimes(self) -> tuple[Regime, ...]:
        """The distinct regimes of the schedule, in order of first appearance."""
        seen: dict[str, Regime] = {}
        for phase in self.phases:
            seen.setdefault(phase.regime.name, phase.regime)
        return tuple(seen.values())

    @property
    def parameter_names(self) -> frozenset[str]:
        """Every parameter some regime of the schedule overrides."""
        return frozenset(name for regime in self.regimes for name in regime.params)

    def __repr__(self) -> str:
        inner = ", ".join(f"({p.regime.name!r}, {p.steps})" for p in self.phases)
        return f"DriftSchedule([{inner}], cyclic={self.cyclic})"


@runtime_checkable
class SupportsRegimes(Protocol):
    """A world that applies regimes itself (every built-in world)."""

    def check_regime(self, params: Mapping[str, object]) -> None: ...

    def apply_regime(self, params: Mapping[str, object]) -> None: ...


DerivedHook = Callable[[Any], None]
_DERIVED: dict[type, DerivedHook] = {}


def register_derived_attributes(cls: type, hook: DerivedHook) -> None:
    """Register ``hook(env)`` to recompute ``cls``'s cached attributes after a regime change.

    Plain envs often cache quantities derived from their parameters in ``__init__`` (CartPole's
    ``total_mass``); setting the parameter alone would silently leave the dynamics unchanged.
    """
    _DERIVED[cls] = hook


def _cartpole_derived(env: CartPoleEnv) -> None:
    env.total_mass = env.masspole + env.masscart
    env.polemass_length = env.masspole * env.length


register_derived_attributes(CartPoleEnv, _cartpole_derived)

CARTPOLE_REGIMES: Mapping[str, Regime] = types.MappingProxyType(
    {
        r.name: r
        for r in (
            Regime("earth", {"gravity": 9.8, "length": 0.5, "force_mag": 10.0}, "gym defaults"),
            Regime("moon", {"gravity": 1.62}, "low gravity: the pole falls slowly"),
            Regime("jupiter", {"gravity": 24.79}, "high gravity: the pole falls fast"),
            Regime("long_pole", {"length": 1.0}, "pole twice as long"),
            Regime("short_pole", {"length": 0.25}, "pole half as long: fast, twitchy"),
            Regime("weak_motor", {"force_mag": 5.0}, "half the push force"),
            Regime("strong_motor", {"force_mag": 20.0}, "twice the push force"),
            Regime("heavy_pole", {"masspole": 0.5}, "pole five times heavier"),
            Regime(
                "reversed_motor",
                {"force_mag": -10.0},
                "motor wired backwards after a repair: every push goes the other way",
            ),
        )
    }
)
"""Physics regimes for ``CartPole-v0``/``CartPole-v1`` (attributes of ``CartPoleEnv``)."""

PENDULUM_REGIMES: Mapping[str, Regime] = types.MappingProxyType(
    {
        r.name: r
        for r in (
            Regime("earth", {"g": 10.0, "m": 1.0, "l": 1.0}, "gym defaults"),
            Regime("moon", {"g": 1.62}, "low gravity"),
            Regime("heavy", {"m": 1.6}, "heavier bob: the motor barely lifts it"),
            Regime("long", {"l": 1.4}, "longer rod"),
        )
    }
)
"""Physics regimes for ``Pendulum-v1`` (attributes of ``PendulumEnv``)."""


class _AttributeApplier:
    """Applies regimes to a plain env by setting validated attributes of ``env.unwrapped``."""

    def __init__(self, target: Any, names: Iterable[str]) -> None:
        self._target = target
        cls_name = type(target).__name__
        base: dict[str, Any] = {}
        for name in sorted(names):
            if name.startswith("_") or not hasattr(target, name):
                raise ConfigError(
                    f"drift: {cls_name} has no attribute {name!r} that a regime could set"
                )
            value = getattr(target, name)
            if callable(value):
                raise ConfigError(f"drift: {cls_name}.{name} is a method, not a parameter")
            base[name] = value
        self._base = base
        self._hook: DerivedHook | None = None
        for klass in type(target).__mro__:
            if klass in _DERIVED:
                self._hook = _DERIVED[klass]
                break

    def check(self, params: Mapping[str, Any]) -> None:
        for name, value in params.items():
            if name not in self._base:
                raise ConfigError(
                    f"drift: {type(self._target).__name__} has no attribute {name!r} "
                    "that a regime could set"
                )
            original = self._base[name]
            numeric = isinstance(original, int | float) and not isinstance(original, bool)
            if numeric and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise ConfigError(
                    f"drift: {type(self._target).__name__}.{name}={value!r} must be a number"
                )

    def apply(self, params: Mapping[str, Any]) -> None:
        self.check(params)
        for name, original in self._base.items():
            setattr(self._target, name, params.get(name, original))
        if self._hook is not None:
            self._hook(self._target)


class DriftWrapper(gym.Wrapper[ObsT, ActT, ObsT, ActT]):
    """Switch an env's regime at episode boundaries according to a :class:`DriftSchedule`.

    The wrapper counts every ``step`` as one lifetime step. At each ``reset`` it looks up the
    regime the schedule assigns to the current lifetime step and applies it if it differs from
    the one in force. ``info["regime"]`` is set on every ``reset`` and ``step``.

    After a checkpoint restore call :meth:`set_lifetime_step` with the saved count: the next
    reset applies the regime that the schedule assigns to that step.

    Raises:
        ConfigError: a regime of the schedule names a parameter the env does not have (checked
            when the wrapper is built, not at the first switch hours later).
    """

    def __init__(
        self, env: gym.Env[ObsT, ActT], schedule: DriftSchedule, *, lifetime_step: int = 0
    ) -> None:
        super().__init__(env)
        self.schedule = schedule
        target = env.unwrapped
        self._apply: Callable[[Mapping[str, Any]], None]
        if isinstance(target, SupportsRegimes):
            for regime in schedule.regimes:
                target.check_regime(regime.params)
            self._apply = target.apply_regime
        else:
            applier = _AttributeApplier(target, schedule.parameter_names)
            for regime in schedule.regimes:
                applier.check(regime.params)
            self._apply = applier.apply
        self._lifetime_step = 0
        self.set_lifetime_step(lifetime_step)
        self._current: Regime | None = None
        self.switches = 0
        """How many times a regime was applied (the first application counts)."""

    @property
    def lifetime_step(self) -> int:
        """Steps taken through this wrapper over its whole life (plus any restored offset)."""
        return self._lifetime_step

    @property
    def current_regime(self) -> Regime | None:
        """The regime in force (``None`` before the first reset)."""
        return self._current

    def set_lifetime_step(self, step: int) -> None:
        """Continue the schedule from ``step`` (after a restart); applied at the next reset."""
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ConfigError(f"lifetime step must be a non-negative integer, got {step!r}")
        self._lifetime_step = step

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[ObsT, dict[str, Any]]:
        regime = self.schedule.regime_at(self._lifetime_step)
        if regime != self._current:
            self._apply(regime.params)
            self._current = regime
            self.switches += 1
        obs, info = self.env.reset(seed=seed, options=options)
        info["regime"] = regime.name
        return obs, info

    def step(self, action: ActT) -> tuple[ObsT, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._lifetime_step += 1
        if self._current is not None:
            info["regime"] = self._current.name
        return obs, reward, terminated, truncated, info
