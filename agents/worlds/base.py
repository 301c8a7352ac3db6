"""What every built-in world shares: typed parameters, regimes and per-device sampling.

A world's physics, economics and demand are described by one frozen dataclass of parameters
(``ThermostatParams``, ``TrafficParams``, ...). The constructor's keyword arguments override the
defaults (these are the *device* parameters: one house, one intersection), and a *regime* (a
season, a tariff, a demand pattern) overrides some of them again on top of that base. Regimes are
never cumulative: applying ``summer`` after ``winter`` gives base + summer, not base + winter +
summer, so a drift schedule that comes back to an earlier regime gets exactly the same world.

Parameter changes take effect at the next ``reset``: every world precomputes its episode (weather,
prices, arrivals) at reset, which is both what makes it fast and what keeps an episode coherent.
"""

from __future__ import annotations

import dataclasses
import math
from abc import abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from numpy.typing import NDArray

from agents.exceptions import ConfigError

if TYPE_CHECKING:
    from agents.worlds.drift import Regime

__all__ = [
    "HOURS_PER_DAY",
    "EpisodeRecipe",
    "ParamValue",
    "World",
    "WorldParams",
    "ar1_noise",
    "build_params",
    "check_day_structure",
    "check_ranges",
]


@dataclass(frozen=True, slots=True)
class EpisodeRecipe:
    """What rebuilds an episode in another process: picklable, plain values only.

    ``kwargs`` build the world (its device parameters), ``regime`` is applied on top of them
    (``World.apply_regime``), ``options`` go to ``reset`` (the simulator's seed).
    """

    kwargs: dict[str, Any]
    regime: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)


ParamValue = float | int | str | bool
"""The value types a world parameter (and so a regime override) may take."""

HOURS_PER_DAY = 24.0
STEP_MINUTES = (5, 10, 15, 20, 30, 60)
"""Step lengths of the day-based worlds: each divides an hour."""
MAX_EPISODE_DAYS = 366
MAX_FORECAST_HOURS = 24

ActT = TypeVar("ActT")
ParamsT = TypeVar("ParamsT", bound="WorldParams")


@dataclasses.dataclass(frozen=True)
class WorldParams:
    """Base of the parameter dataclasses; subclasses add fields and override :meth:`validate`."""

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first physically meaningless value."""

    def as_dict(self) -> dict[str, ParamValue]:
        """The parameters as a plain dict (JSON-friendly; used in reports and snapshots)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def check_ranges(
    params: object,
    what: str,
    *,
    positive: tuple[str, ...] = (),
    non_negative: tuple[str, ...] = (),
    fractions: tuple[str, ...] = (),
    hours: tuple[str, ...] = (),
) -> None:
    """Raise :class:`ConfigError` naming the first field outside its range.

    ``positive``: > 0; ``non_negative``: >= 0; ``fractions``: in [0, 1]; ``hours``: in [0, 24].
    """
    checks: tuple[tuple[tuple[str, ...], float, float, bool, str], ...] = (
        (positive, 0.0, math.inf, False, "must be > 0"),
        (non_negative, 0.0, math.inf, True, "must be >= 0"),
        (fractions, 0.0, 1.0, True, "must be a fraction in [0, 1]"),
        (hours, 0.0, HOURS_PER_DAY, True, "must be an hour in [0, 24]"),
    )
    for names, low, high, closed, why in checks:
        for name in names:
            value = getattr(params, name)
            if value > high or value < low or (not closed and value == low):
                raise ConfigError(f"{what}: {name}={value!r} {why}")


def check_day_structure(params: object, what: str) -> None:
    """Validate ``step_minutes``, ``episode_days`` and ``forecast_hours`` of a day-based world."""
    step = getattr(params, "step_minutes")  # noqa: B009 - duck-typed on purpose
    days = getattr(params, "episode_days")  # noqa: B009
    horizon = getattr(params, "forecast_hours")  # noqa: B009
    if step not in STEP_MINUTES:
        raise ConfigError(f"{what}: step_minutes={step!r} must be one of {STEP_MINUTES}")
    if not 1 <= days <= MAX_EPISODE_DAYS:
        raise ConfigError(f"{what}: episode_days={days!r} must be in [1, {MAX_EPISODE_DAYS}]")
    if not 1 <= horizon <= MAX_FORECAST_HOURS:
        raise ConfigError(
            f"{what}: forecast_hours={horizon!r} must be in [1, {MAX_FORECAST_HOURS}]"
        )


def _coerce(name: str, value: object, default: ParamValue, what: str) -> ParamValue:
    """Check ``value`` against the type of the field's default and convert ints to floats."""
    if isinstance(default, bool):
        if isinstance(value, bool | np.bool_):
            return bool(value)
    elif isinstance(default, int):
        if isinstance(value, int | np.integer) and not isinstance(value, bool):
            return int(value)
    elif isinstance(default, float):
        if isinstance(value, int | float | np.integer | np.floating) and not isinstance(
            value, bool
        ):
            out = float(value)
            if not np.isfinite(out):
                raise ConfigError(f"{what}: parameter {name}={value!r} is not finite")
            return out
    elif isinstance(default, str) and isinstance(value, str):
        return value
    raise ConfigError(
        f"{what}: parameter {name}={value!r} has type {type(value).__name__}, "
        f"expected {type(default).__name__}"
    )


def build_params(base: ParamsT, overrides: Mapping[str, object], *, what: str) -> ParamsT:
    """Return ``base`` with ``overrides`` applied, type-checked and validated.

    Raises:
        ConfigError: an override names no parameter, has the wrong type, or makes the
            parameters physically meaningless (the message names the bad value).
    """
    known = {f.name: getattr(base, f.name) for f in dataclasses.fields(base)}
    changes: dict[str, ParamValue] = {}
    for name, value in overrides.items():
        if name not in known:
            raise ConfigError(
                f"{what}: unknown parameter {name!r}; known parameters: {', '.join(sorted(known))}"
            )
        changes[name] = _coerce(name, value, known[name], what)
    params = dataclasses.replace(base, **changes)
    params.validate()
    return params


def ar1_noise(rng: np.random.Generator, n: int, a: float, sd: float) -> NDArray[np.float64]:
    """``n`` samples of a stationary AR(1) process with coefficient ``a`` and std ``sd``.

    Weather and cloud noise are autocorrelated: a cold spell lasts hours, not one step.
    """
    shocks = rng.normal(0.0, sd * math.sqrt(max(1.0 - a * a, 0.0)), n).tolist()
    e = float(rng.normal(0.0, sd))
    out = [0.0] * n
    for k in range(n):
        out[k] = e
        e = a * e + shocks[k]
    return np.asarray(out, dtype=np.float64)


class World(gym.Env[NDArray[np.float32], ActT], Generic[ParamsT, ActT]):
    """Base class of the built-in worlds: parameters, regimes and device sampling.

    Subclasses set the class attributes and implement :meth:`sample_params` and
    :meth:`_params_changed` (re-derive cached floats from ``self.params``).

    Attributes:
        regimes: the named regimes of this world (name -> parameter overrides).
        default_regime: the regime a fresh world starts in when none is given (``None``: the
            plain defaults of the parameter dataclass).
        structural_params: parameters a regime may not override because they change the
            observation or action space or the episode length.
        metrics: evaluation metric name -> key of the episode-cumulative value in the final
            step's ``info`` (read by :func:`agents.worlds.baselines.run_controller`).
        endogenous_obs: the observation entries the agent's actions change (the house's
            temperature, the battery's charge). A world that names them promises that every
            other entry is exogenous (weather, prices, the household: the same whatever the
            agent does) and implements :meth:`action_features` and :meth:`obs_reward`, so that
            an agent can learn a model of its device and replay its past days through it
            (:mod:`agents.learner.imagination`). Empty: the world makes no such promise.
        has_shield: whether :meth:`shield_actions` keeps a learnt policy within a limit the
            device's user sets (the thermostat: the comfort band while someone is home).
        params: the parameters in force (base device parameters + current regime).
        base_params: the device parameters, before any regime.
        regime_name: name of the regime applied through :meth:`set_regime`, or ``None``.
    """

    metadata: dict[str, Any] = {"render_modes": ["ansi"], "render_fps": 4}  # noqa: RUF012
    regimes: ClassVar[Mapping[str, Regime]] = {}
    default_regime: ClassVar[str | None] = None
    structural_params: ClassVar[frozenset[str]] = frozenset()
    metrics: ClassVar[Mapping[str, str]] = {}
    endogenous_obs: ClassVar[tuple[int, ...]] = ()
    has_shield: ClassVar[bool] = False

    def __init__(
        self,
        defaults: ParamsT,
        overrides: Mapping[str, object],
        *,
        regime: str | None,
        render_mode: str | None,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ConfigError(
                f"{type(self).__name__}: render_mode={render_mode!r} is not supported; "
                f"use one of {self.metadata['render_modes']} or None"
            )
        self.render_mode = render_mode
        self.base_params: ParamsT = build_params(defaults, overrides, what=type(self).__name__)
        self.params: ParamsT = self.base_params
        self.regime_name: str | None = None
        start = regime if regime is not None else self.default_regime
        if start is not None:
            self.set_regime(start)
        else:
            self._params_changed()

    # --- regimes -------------------------------------------------------------------------

    @classmethod
    def regime(cls, name: str) -> Regime:
        """The regime called ``name``; :class:`ConfigError` listing the known ones if none."""
        try:
            return cls.regimes[name]
        except KeyError:
            raise ConfigError(
                f"{cls.__name__}: unknown regime {name!r}; known regimes: {', '.join(cls.regimes)}"
            ) from None

    def check_regime(self, params: Mapping[str, object]) -> None:
        """Raise :class:`ConfigError` if ``params`` cannot be applied as a regime."""
        for name in params:
            if name in self.structural_params:
                raise ConfigError(
                    f"{type(self).__name__}: parameter {name!r} changes the spaces or the "
                    "episode length and cannot be set by a regime"
                )
        build_params(self.base_params, params, what=f"{type(self).__name__} regime")

    def apply_regime(self, params: Mapping[str, object]) -> None:
        """Set the parameters to base + ``params`` (not cumulative); effective at next reset."""
        self.check_regime(params)
        self.params = build_params(self.base_params, params, what=f"{type(self).__name__} regime")
        self.regime_name = None
        self._params_changed()

    def set_regime(self, name: str) -> None:
        """Apply the named regime (see :attr:`regimes`); effective at the next reset."""
        regime = self.regime(name)
        self.apply_regime(regime.params)
        self.regime_name = name

    # --- devices -------------------------------------------------------------------------

    @classmethod
    @abstractmethod
    def sample_params(cls, rng: np.random.Generator) -> dict[str, ParamValue]:
        """Draw one device's constructor keyword arguments (a house, an intersection...)."""

    @abstractmethod
    def _params_changed(self) -> None:
        """Re-derive whatever the world caches from ``self.params``."""

    # --- a model of the device (worlds with endogenous_obs) ------------------------------

    def action_features(self, actions: NDArray[Any]) -> NDArray[np.float64]:
        """What a batch of actions does, as numbers a linear model of the device can use.

        Default: one-hot for ``Discrete`` actions, the action itself for ``Box``. A world
        whose actions are levels of one quantity says so (the thermostat: heating and
        cooling fractions), so a model fitted to the levels a controller used predicts the
        others too.
        """
        space = self.action_space
        if isinstance(space, spaces.Discrete):
            return np.eye(int(space.n), dtype=np.float64)[np.asarray(actions, dtype=np.int64)]
        return np.asarray(actions, dtype=np.float64).reshape(len(actions), -1)

    def shield_actions(self, obs: NDArray[Any], actions: NDArray[Any]) -> NDArray[Any]:
        """The actions a learnt policy's proposals become on the device, for a batch.

        A shield (Alshiekh et al., "Safe Reinforcement Learning via Shielding", AAAI 2018)
        sits between a learnt policy and the actuator and replaces a proposal that would break
        a limit the device's user sets by one that keeps it, from the observation alone, so
        that the snapshot a coordinator evaluates and the policy on the device act alike
        (:mod:`agents.learner.shield`). Default (``has_shield`` false): unchanged.
        """
        del obs
        return np.asarray(actions)

    def obs_reward(
        self, obs: NDArray[np.float32], actions: NDArray[Any], next_obs: NDArray[np.float32]
    ) -> NDArray[np.float64]:
        """The rewards of a batch of transitions, from their observations and actions alone.

        The device's objective is its owner's (a tariff, a comfort band), so the device
        knows it; what it does not know is how its world responds. Exactly what
        :meth:`step` returns for the same transition (tested for every world that
        implements it).
        """
        msg = f"{type(self).__name__} does not compute its reward from observations"
        raise NotImplementedError(msg)
