"""The controllers people use today, acting from the same observation as the agents.

Every controller has ``reset()`` (called at the start of each episode) and ``act(obs)``, so a
baseline and a learned policy (through :class:`PolicyController`) run through the same loop,
:func:`run_controller`, on the same seeds and regimes. A controller may read its world's
*configuration* when it is built (a heat pump's comfort band, the installer's schedule, the
signal's saturation flows: what an installer or traffic engineer knows), but at run time it sees
only the observation.

- Thermostat: ``programmable`` (setpoint with hysteresis and a 2 K setback schedule programmed
  for the household's routine, with a one-hour warm-up lead) and ``setpoint`` (the same without
  setback: comfort setpoint around the clock).
- Traffic signal: ``fixed_time`` (a Webster plan for the intersection's average daytime demand),
  ``max_pressure`` (serve the phase with the largest total queue, after a minimum green),
  ``longest_queue`` (serve the phase holding the single longest queue, after a minimum green)
  and ``actuated`` (extend green while the served queues last, up to a maximum green).
- Home battery: ``self_consumption`` (store solar surplus, cover deficits: the default mode of
  home batteries) and ``tou`` (also charge from the grid at off-peak and hold the charge for the
  peak).
- Shop: ``fixed_markup`` (cost-plus list prices, the highest-margin product featured),
  ``popularity`` (list prices, the last day's best seller featured) and the contextual bandits
  ``linucb`` and ``thompson``, which learn from the reward the observation reports
  (:mod:`agents.worlds.shop`).
- Car following: ``idm`` (the Intelligent Driver Model) and ``acc`` (a constant-time-gap
  adaptive cruise control); both live in :mod:`agents.worlds.vehicle`.
- CartPole: ``pd`` (a proportional-derivative balance rule), so the seed's example has a
  reference too.
"""

from __future__ import annotations

import dataclasses
import math
import types
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import gymnasium as gym
import numpy as np
from numpy.typing import NDArray

from agents.exceptions import ConfigError
from agents.worlds import battery as bat
from agents.worlds import thermostat as th
from agents.worlds.registry import (
    BATTERY_ID,
    OPTIONAL_WORLD_IDS,
    SHOP_ID,
    SUMO_ID,
    THERMOSTAT_ID,
    TRAFFIC_ID,
    VEHICLE_ID,
    WORLD_CLASSES,
    make_world,
)
from agents.worlds.shop import SHOP_BASELINES, SHOP_PRIMARY_BASELINE
from agents.worlds.sumo import SumoFixedTime, SumoLongestQueue, SumoMaxPressure
from agents.worlds.traffic import TIME_IN_PHASE_SCALE_S, TrafficSignal, arrival_rates_per_h
from agents.worlds.vehicle import ConstantTimeGapACC, IntelligentDriver

__all__ = [
    "BASELINES",
    "PRIMARY_BASELINE",
    "ActuatedSignal",
    "CartPolePD",
    "Controller",
    "ControllerFactory",
    "ControllerScore",
    "FixedTimePlan",
    "LongestQueueFirst",
    "MaxPressure",
    "PolicyController",
    "Predictor",
    "RandomController",
    "SelfConsumptionBattery",
    "SetpointThermostat",
    "baseline_names",
    "make_baseline",
    "metric_keys",
    "play_batched",
    "play_episodes",
    "run_controller",
]


@runtime_checkable
class Controller(Protocol):
    """Anything that picks an action from an observation."""

    def reset(self) -> None:
        """Forget per-episode state (called before each episode)."""

    def act(self, obs: NDArray[np.float32]) -> Any:
        """The action for ``obs``."""


ControllerFactory = Callable[[gym.Env[Any, Any]], Controller]
"""Builds a controller for an env (which may be wrapped; factories look at ``env.unwrapped``)."""


def _unwrapped(env: gym.Env[Any, Any], cls: type[Any]) -> Any:
    target = env.unwrapped
    if not isinstance(target, cls):
        raise ConfigError(
            f"this baseline needs a {cls.__name__} world, got {type(target).__name__}"
        )
    return target


_HALF = 0.5
"""Threshold of the observation's 0/1 flags."""


def _hour(sin_v: float, cos_v: float) -> float:
    """Hour of day (0..24) from the (sin, cos) time features."""
    return (math.atan2(sin_v, cos_v) / (2.0 * math.pi) * 24.0) % 24.0


def _in_any(hour: float, periods: Sequence[tuple[float, float]]) -> bool:
    return any(start <= hour < end for start, end in periods)


class _LevelMapper:
    """Map a desired fraction in [-1, 1] to the action a (discrete or continuous) world wants."""

    def __init__(self, *, continuous: bool, n_levels: int) -> None:
        self.continuous = continuous
        self.n_levels = n_levels

    def __call__(self, fraction: float) -> Any:
        fraction = max(-1.0, min(1.0, fraction))
        if self.continuous:
            return np.array([fraction], dtype=np.float32)
        return np.int64(round((fraction + 1.0) * 0.5 * (self.n_levels - 1)))


# --- thermostat ------------------------------------------------------------------------------


class SetpointThermostat:
    """A thermostat on the wall: setpoints, hysteresis, optionally a setback schedule.

    Heating setpoint = ``comfort_low + heat_margin``, cooling setpoint = ``comfort_high -
    cool_margin`` (read from the observation), each with a ``hysteresis`` dead band: the heat
    pump switches on at full power below ``setpoint - hysteresis`` and off above ``setpoint +
    hysteresis``. Outside the schedule's comfort periods both setpoints move ``setback_k``
    further out (a programmable thermostat's night and away setback).

    Args:
        env: the thermostat world (its action space and household routine are read once).
        heat_margin: K above the comfort band's lower edge the heating setpoint sits.
        cool_margin: K below the upper edge the cooling setpoint sits.
        hysteresis: half-width of the dead band, K.
        setback_k: how far setpoints move out when nobody is expected, K; 0 disables setback.
        lead_h: how early the schedule starts warming up before wake-up and return, hours.
    """

    def __init__(
        self,
        env: gym.Env[Any, Any],
        *,
        heat_margin: float = 1.0,
        cool_margin: float = 1.0,
        hysteresis: float = 0.5,
        setback_k: float = 2.0,
        lead_h: float = 1.0,
    ) -> None:
        world: th.Thermostat = _unwrapped(env, th.Thermostat)
        if hysteresis < 0 or setback_k < 0 or lead_h < 0:
            raise ConfigError("SetpointThermostat: hysteresis, setback_k, lead_h must be >= 0")
        p = world.base_params
        self.heat_margin = heat_margin
        self.cool_margin = cool_margin
        self.hysteresis = hysteresis
        self.setback_k = setback_k
        self.weekday_periods = (
            (p.wake_h - lead_h, p.leave_h),
            (p.return_h - lead_h, p.sleep_h),
        )
        self.weekend_periods = ((p.weekend_wake_h - lead_h, p.weekend_sleep_h),)
        self._action = _LevelMapper(continuous=world.continuous, n_levels=world.n_levels)
        self._mode = 0

    def reset(self) -> None:
        self._mode = 0

    def comfort_scheduled(self, hour: float, *, weekend: bool) -> bool:
        """Whether the programmed schedule asks for comfort at ``hour``."""
        if self.setback_k == 0:
            return True
        return _in_any(hour, self.weekend_periods if weekend else self.weekday_periods)

    def act(self, obs: NDArray[np.float32]) -> Any:
        tin = th.indoor_from_obs(float(obs[th.OBS_INDOOR]))
        low = th.indoor_from_obs(float(obs[th.OBS_COMFORT_LOW]))
        high = th.indoor_from_obs(float(obs[th.OBS_COMFORT_HIGH]))
        hour = _hour(float(obs[th.OBS_TOD_SIN]), float(obs[th.OBS_TOD_COS]))
        comfort = self.comfort_scheduled(hour, weekend=bool(obs[th.OBS_WEEKEND] > _HALF))
        setback = 0.0 if comfort else self.setback_k
        heat_sp = low + self.heat_margin - setback
        cool_sp = high - self.cool_margin + setback
        h = self.hysteresis
        if (self._mode == 1 and tin >= heat_sp + h) or (self._mode == -1 and tin <= cool_sp - h):
            self._mode = 0
        if self._mode == 0:
            if tin < heat_sp - h:
                self._mode = 1
            elif tin > cool_sp + h:
                self._mode = -1
        return self._action(float(self._mode))


# --- traffic ---------------------------------------------------------------------------------


class _PhaseController:
    """Shared decoding of the traffic observation.

    The reference controllers are commissioned for the cabinet's wiring as it is: they read
    which movements each phase action lights (``lit_phases``) when they act, so a regime with
    crossed signal groups leaves them as good as before. They measure what good control of the
    intersection achieves; the learning agents are told nothing and must find out.
    """

    def __init__(self, env: gym.Env[Any, Any]) -> None:
        world: TrafficSignal = _unwrapped(env, TrafficSignal)
        self._world = world
        self.world_params = world.base_params
        self.n_queues = world.n_queues
        self.n_phases = world.n_phases
        self.step_s = world.base_params.step_s
        self.queue_scale = world.base_params.queue_scale
        self.sat_flow = world.sat_flow

    @property
    def phases(self) -> tuple[tuple[int, ...], ...]:
        """The movements each phase action lights now (regimes apply at a reset)."""
        return self._world.lit_phases

    def decode(self, obs: NDArray[np.float32]) -> tuple[list[float], int, float]:
        """(queues in vehicles, current phase, seconds of green in the current phase)."""
        queues = [float(v) * self.queue_scale for v in obs[: self.n_queues]]
        onehot = obs[self.n_queues : self.n_queues + self.n_phases]
        phase = int(np.argmax(onehot))
        in_phase = float(obs[self.n_queues + self.n_phases]) * TIME_IN_PHASE_SCALE_S
        return queues, phase, in_phase

    def reset(self) -> None:
        """Nothing to forget by default."""


class FixedTimePlan(_PhaseController):
    """A fixed-time signal plan: phases in order, each for a fixed number of steps.

    By default the plan is Webster's, computed for the intersection's average demand between
    07:00 and 19:00: cycle ``C = (1.5 L + 5) / (1 - Y)`` (``L`` lost time per cycle, ``Y`` the
    sum of the phases' critical flow ratios), effective green split in proportion to the flow
    ratios but never below the signal's minimum green, each phase's duration rounded to whole
    steps (green + its lost time). That is how a traffic engineer times a signal from counts; the
    plan cannot react to a rush or an empty road.

    Args:
        env: the traffic world.
        green_s: effective green per signal group (the movements of ``phases[k]``), seconds;
            ``None`` for Webster's plan.
    """

    def __init__(self, env: gym.Env[Any, Any], *, green_s: Sequence[float] | None = None) -> None:
        super().__init__(env)
        p = self.world_params
        lost = p.lost_time_s
        if green_s is None:
            green_s = self.webster_greens()
        if len(green_s) != self.n_phases or any(g <= 0 for g in green_s):
            raise ConfigError(
                f"FixedTimePlan: green_s={list(green_s)!r} needs {self.n_phases} positive values"
            )
        self.green_s = tuple(float(g) for g in green_s)
        self.durations = tuple(max(1, round((g + lost) / self.step_s)) for g in self.green_s)
        self._phase = 0
        self._elapsed = 0

    def webster_greens(self) -> list[float]:
        """Effective greens (s) of Webster's plan for the average 07:00-19:00 demand."""
        p = self.world_params
        rates = arrival_rates_per_h(p, np.linspace(7.0, 19.0, 97)).mean(axis=0) / 3600.0
        groups = self._world.phases
        ratios = [max(rates[m] / self.sat_flow[m] for m in ph) for ph in groups]
        total = min(sum(ratios), 0.9)
        lost = p.lost_time_s * self.n_phases
        cycle = min(max((1.5 * lost + 5.0) / (1.0 - total), 40.0), 150.0)
        floor = max(p.min_green_s, self.step_s)  # the signal's safety minimum
        return [max((cycle - lost) * r / sum(ratios), floor) for r in ratios]

    def reset(self) -> None:
        self._phase = 0
        self._elapsed = 0

    def act(self, obs: NDArray[np.float32]) -> Any:  # noqa: ARG002 - a fixed plan is blind
        # Durations belong to signal groups; a phase action lights the group its wiring says.
        group = self._world.phases.index(self.phases[self._phase])
        if self._elapsed >= self.durations[group]:
            self._phase = (self._phase + 1) % self.n_phases
            self._elapsed = 0
        self._elapsed += 1
        return np.int64(self._phase)


class MaxPressure(_PhaseController):
    """Max-pressure control (Varaiya 2013) for an isolated intersection.

    A phase's pressure is the total queue of the movements it serves (downstream links are
    unbounded here, so their queues count as zero); ``weighted=True`` multiplies each queue by
    its saturation flow, as in Varaiya's original. After ``min_green_s`` of green the controller
    switches to the phase of highest pressure. The default minimum green, 20 s, is the best of
    {10, 15, 20, 25, 30} s on the default intersection (see ``docs/worlds.md``): without it,
    max-pressure flips phases every few seconds and loses most of the time to yellow/all-red.
    """

    def __init__(
        self, env: gym.Env[Any, Any], *, min_green_s: float = 20.0, weighted: bool = False
    ) -> None:
        super().__init__(env)
        if min_green_s < 0:
            raise ConfigError(f"MaxPressure: min_green_s={min_green_s} must be >= 0")
        self.min_green_s = min_green_s
        self.weights = self.sat_flow if weighted else (1.0,) * self.n_queues

    def act(self, obs: NDArray[np.float32]) -> Any:
        queues, phase, in_phase = self.decode(obs)
        if in_phase < self.min_green_s - 1e-6:
            return np.int64(phase)
        pressures = [sum(queues[m] * self.weights[m] for m in ph) for ph in self.phases]
        best = max(range(self.n_phases), key=lambda k: (pressures[k], k == phase))
        return np.int64(best)


class LongestQueueFirst(_PhaseController):
    """Serve the phase that holds the single longest queue, after ``min_green_s`` of green."""

    def __init__(self, env: gym.Env[Any, Any], *, min_green_s: float = 20.0) -> None:
        super().__init__(env)
        if min_green_s < 0:
            raise ConfigError(f"LongestQueueFirst: min_green_s={min_green_s} must be >= 0")
        self.min_green_s = min_green_s
        self._wiring: tuple[tuple[int, ...], ...] = ()
        self._phase_of: dict[int, int] = {}

    def act(self, obs: NDArray[np.float32]) -> Any:
        queues, phase, in_phase = self.decode(obs)
        if in_phase < self.min_green_s - 1e-6:
            return np.int64(phase)
        if self.phases is not self._wiring:  # a regime rewired the signal groups
            self._wiring = self.phases
            self._phase_of = {m: k for k, ph in enumerate(self._wiring) for m in ph}
        phase_of = self._phase_of
        longest = max(range(self.n_queues), key=lambda m: (queues[m], phase_of[m] == phase))
        return np.int64(phase_of[longest])


class ActuatedSignal(_PhaseController):
    """Fully actuated control: hold green while the served queues last, then serve the most.

    The logic of a detector-actuated controller: after ``min_green_s`` the green is extended
    while any movement of the phase still has more than ``gap_vehicles`` queued (no gap in the
    stream yet), up to ``max_green_s``; then it "gaps out" to the phase with the largest total
    queue. Serving a queue to exhaustion pays the switching cost once per queue, which is why it
    beats max-pressure at this intersection (see ``docs/worlds.md``).
    """

    def __init__(
        self,
        env: gym.Env[Any, Any],
        *,
        min_green_s: float = 10.0,
        max_green_s: float = 60.0,
        gap_vehicles: float = 2.0,
    ) -> None:
        super().__init__(env)
        if not 0 <= min_green_s <= max_green_s:
            raise ConfigError(
                f"ActuatedSignal: need 0 <= min_green_s={min_green_s} <= max_green_s={max_green_s}"
            )
        self.min_green_s = min_green_s
        self.max_green_s = max_green_s
        self.gap_vehicles = gap_vehicles

    def act(self, obs: NDArray[np.float32]) -> Any:
        queues, phase, in_phase = self.decode(obs)
        if in_phase < self.min_green_s - 1e-6:
            return np.int64(phase)
        busy = max(queues[m] for m in self.phases[phase]) > self.gap_vehicles
        if busy and in_phase < self.max_green_s:
            return np.int64(phase)
        pressures = [sum(queues[m] for m in ph) for ph in self.phases]
        if not busy:
            pressures[phase] = -1.0  # gapped out: go elsewhere if anyone waits
        best = max(range(self.n_phases), key=lambda k: (pressures[k], k == phase))
        return np.int64(best if pressures[best] > 0 else phase)


# --- home battery ----------------------------------------------------------------------------


class SelfConsumptionBattery:
    """A home battery's built-in modes.

    ``self_consumption``: store the solar surplus, cover the deficit, never touch the grid on
    purpose (the factory default of home batteries). ``tou`` adds the time-of-use rule installers
    program: charge at full power from the grid during off-peak hours, keep the charge outside
    the peak (store surplus only) and spend it on the household's deficit during the peak.
    With the discrete world these are its modes; with the continuous one the same powers.
    """

    def __init__(self, env: gym.Env[Any, Any], *, tou: bool = False) -> None:
        world: bat.HomeBattery = _unwrapped(env, bat.HomeBattery)
        p = world.base_params
        self.tou = tou
        self.continuous = world.continuous
        self.power_max = p.power_max_kw
        if p.offpeak_start_h > p.offpeak_end_h:
            self.offpeak: tuple[tuple[float, float], ...] = (
                (p.offpeak_start_h, 24.0),
                (0.0, p.offpeak_end_h),
            )
        else:
            self.offpeak = ((p.offpeak_start_h, p.offpeak_end_h),)
        self.peak = ((p.peak_start_h, p.peak_end_h),)

    def reset(self) -> None:
        """Stateless."""

    def mode(self, obs: NDArray[np.float32]) -> int:
        """The mode this controller runs the battery in for ``obs``."""
        if not self.tou:
            return bat.SELF_CONSUMPTION
        hour = _hour(float(obs[bat.OBS_TOD_SIN]), float(obs[bat.OBS_TOD_COS]))
        if _in_any(hour, self.offpeak):
            return bat.GRID_CHARGE
        if _in_any(hour, self.peak):
            return bat.SELF_CONSUMPTION
        return bat.STORE_ONLY

    def act(self, obs: NDArray[np.float32]) -> Any:
        mode = self.mode(obs)
        if not self.continuous:
            return np.int64(mode)
        surplus = (float(obs[bat.OBS_PV]) - float(obs[bat.OBS_LOAD])) * bat.POWER_SCALE_KW
        power = {
            bat.SELF_CONSUMPTION: surplus,
            bat.STORE_ONLY: max(surplus, 0.0),
            bat.GRID_CHARGE: self.power_max,
        }[mode]
        fraction = max(-1.0, min(1.0, power / self.power_max))
        return np.array([fraction], dtype=np.float32)


# --- CartPole --------------------------------------------------------------------------------


class CartPolePD:
    """Push the cart toward the side the pole leans to, with derivative and centring terms."""

    def __init__(self, env: gym.Env[Any, Any]) -> None:  # noqa: ARG002 - uniform factory
        self.gains = (0.05, 0.1, 1.0, 0.3)

    def reset(self) -> None:
        """Stateless."""

    def act(self, obs: NDArray[np.float32]) -> Any:
        x, v, theta, omega = (float(o) for o in obs[:4])
        kx, kv, kt, ko = self.gains
        return np.int64(1 if kx * x + kv * v + kt * theta + ko * omega > 0.0 else 0)


# --- generic ---------------------------------------------------------------------------------


class RandomController:
    """Uniformly random actions from the env's action space (seeded): the floor to beat."""

    def __init__(self, env: gym.Env[Any, Any], *, seed: int = 0) -> None:
        self.space = env.action_space
        self.seed = seed
        self.space.seed(seed)

    def reset(self) -> None:
        """Episodes share one random stream."""

    def act(self, obs: NDArray[np.float32]) -> Any:  # noqa: ARG002 - random is blind
        return self.space.sample()


class Predictor(Protocol):
    """The part of a stable-baselines3 model a controller needs."""

    def predict(
        self,
        observation: Any,
        state: Any = None,
        episode_start: Any = None,
        deterministic: bool = False,  # noqa: FBT001, FBT002 - SB3's signature
    ) -> tuple[Any, Any]: ...


class PolicyController:
    """Run a learned policy (anything with SB3's ``predict``) through the baseline loop."""

    def __init__(self, model: Predictor, *, deterministic: bool = True) -> None:
        self.model = model
        self.deterministic = deterministic

    def reset(self) -> None:
        """Feed-forward policies keep no state."""

    def act(self, obs: NDArray[np.float32]) -> Any:
        action, _ = self.model.predict(obs, deterministic=self.deterministic)
        return action


# The SUMO world's (agents/worlds/sumo.py), only where the sumo extra is installed.
_SUMO_FACTORIES: dict[str, ControllerFactory] = {
    "fixed_time": SumoFixedTime,
    "max_pressure": SumoMaxPressure,
    "longest_queue": SumoLongestQueue,
}
_SUMO_BASELINES: dict[str, Mapping[str, ControllerFactory]] = (
    {SUMO_ID: types.MappingProxyType(_SUMO_FACTORIES)} if SUMO_ID in OPTIONAL_WORLD_IDS else {}
)

BASELINES: Mapping[str, Mapping[str, ControllerFactory]] = types.MappingProxyType(
    {
        THERMOSTAT_ID: types.MappingProxyType(
            {
                "programmable": SetpointThermostat,
                "setpoint": lambda env: SetpointThermostat(env, setback_k=0.0),
            }
        ),
        TRAFFIC_ID: types.MappingProxyType(
            {
                "fixed_time": FixedTimePlan,
                "max_pressure": MaxPressure,
                "longest_queue": LongestQueueFirst,
                "actuated": ActuatedSignal,
            }
        ),
        BATTERY_ID: types.MappingProxyType(
            {
                "self_consumption": SelfConsumptionBattery,
                "tou": lambda env: SelfConsumptionBattery(env, tou=True),
            }
        ),
        SHOP_ID: SHOP_BASELINES,
        VEHICLE_ID: types.MappingProxyType({"idm": IntelligentDriver, "acc": ConstantTimeGapACC}),
        "CartPole-v1": types.MappingProxyType({"pd": CartPolePD}),
        "CartPole-v0": types.MappingProxyType({"pd": CartPolePD}),
        **_SUMO_BASELINES,
    }
)
"""World id -> baseline name -> factory(env) -> controller."""

PRIMARY_BASELINE: Mapping[str, str] = types.MappingProxyType(
    {
        THERMOSTAT_ID: "programmable",
        TRAFFIC_ID: "max_pressure",
        BATTERY_ID: "self_consumption",
        SHOP_ID: SHOP_PRIMARY_BASELINE,
        VEHICLE_ID: "idm",
        "CartPole-v1": "pd",
        "CartPole-v0": "pd",
        **({SUMO_ID: "max_pressure"} if SUMO_ID in OPTIONAL_WORLD_IDS else {}),
    }
)
"""The baseline an agent is compared with by default (the strongest one people use)."""


def baseline_names(env_id: str) -> tuple[str, ...]:
    """The baselines of ``env_id`` (empty if it has none)."""
    return tuple(BASELINES.get(env_id, {}))


def make_baseline(env_id: str, name: str, env: gym.Env[Any, Any]) -> Controller:
    """Build baseline ``name`` of ``env_id`` for ``env``; :class:`ConfigError` if unknown."""
    names = BASELINES.get(env_id)
    if not names or name not in names:
        raise ConfigError(
            f"unknown baseline {name!r} for {env_id}; known: "
            f"{', '.join(baseline_names(env_id)) or '(none)'}"
        )
    return names[name](env)


@dataclasses.dataclass(frozen=True)
class ControllerScore:
    """Per-episode results of :func:`run_controller`.

    Attributes:
        seeds: the reset seed of each episode.
        returns: undiscounted episode returns.
        lengths: episode lengths in steps.
        metrics: metric name -> per-episode value (the world's episode totals, e.g.
            ``energy_cost``, ``comfort_violation``, ``total_waiting_time``, ``throughput``).
        regime: the regime the episodes ran in (``None``: the env's own default).
    """

    seeds: tuple[int, ...]
    returns: tuple[float, ...]
    lengths: tuple[int, ...]
    metrics: Mapping[str, tuple[float, ...]]
    regime: str | None = None

    @property
    def mean_return(self) -> float:
        return float(np.mean(self.returns))

    def mean(self, metric: str) -> float:
        """Mean of ``metric`` over the episodes."""
        if metric not in self.metrics:
            raise ConfigError(f"no metric {metric!r}; have {', '.join(self.metrics)}")
        return float(np.mean(self.metrics[metric]))

    def summary(self) -> dict[str, float]:
        """``{"return": mean, <metric>: mean, ...}`` for reports and JSON."""
        out = {"return": self.mean_return}
        out.update({name: self.mean(name) for name in self.metrics})
        return out


def run_controller(
    controller: Controller | Callable[[gym.Env[Any, Any]], Controller],
    env_id: str,
    *,
    seeds: Sequence[int],
    regime: str | None = None,
    env_kwargs: Mapping[str, Any] | None = None,
    max_steps: int = 1_000_000,
) -> ControllerScore:
    """Run ``controller`` for one episode per seed on ``env_id`` (fixed at ``regime``).

    ``controller`` is a controller or a factory taking the env (baselines need the env to be
    built). Returns per-episode returns and the world's episode metrics (see
    ``World.metrics``).
    """
    if not seeds:
        raise ConfigError("run_controller: give at least one seed")
    env = make_world(env_id, regime=regime, **dict(env_kwargs or {}))
    try:
        # A class is a factory even though it has ``act`` and ``reset`` attributes.
        if isinstance(controller, type) or not isinstance(controller, Controller):
            ctrl: Controller = controller(env)
        else:
            ctrl = controller
        return play_episodes(
            ctrl, env, seeds=seeds, metrics=metric_keys(env_id), regime=regime,
            max_steps=max_steps,
        )  # fmt: skip
    finally:
        env.close()


def metric_keys(env_id: str) -> Mapping[str, str]:
    """Evaluation metric name -> ``info`` key of its episode total, for ``env_id``."""
    world_cls = WORLD_CLASSES.get(env_id)
    return dict(world_cls.metrics) if world_cls is not None else {}


def play_episodes(
    controller: Controller,
    env: gym.Env[Any, Any],
    *,
    seeds: Sequence[int],
    metrics: Mapping[str, str],
    regime: str | None = None,
    max_steps: int = 1_000_000,
) -> ControllerScore:
    """The evaluation loop: one episode per seed on ``env``, acting with ``controller``.

    Learned policies (through :class:`PolicyController`) and baselines run through this same
    loop, so their scores compare like for like. ``metrics`` maps metric names to the ``info``
    keys of episode totals, read at each episode's last step.
    """
    returns: list[float] = []
    lengths: list[int] = []
    totals: dict[str, list[float]] = {name: [] for name in metrics}
    for seed in seeds:
        controller.reset()
        obs, info = env.reset(seed=int(seed))
        total = 0.0
        steps = 0
        done = False
        while not done and steps < max_steps:
            obs, reward, terminated, truncated, info = env.step(controller.act(obs))
            total += float(reward)
            steps += 1
            done = terminated or truncated
        returns.append(total)
        lengths.append(steps)
        for name, key in metrics.items():
            totals[name].append(float(info[key]))
    return _score(seeds, returns, lengths, totals, regime)


def _score(
    seeds: Sequence[int],
    returns: list[float],
    lengths: list[int],
    totals: dict[str, list[float]],
    regime: str | None,
) -> ControllerScore:
    """The episodes' figures, frozen."""
    return ControllerScore(
        seeds=tuple(int(s) for s in seeds),
        returns=tuple(returns),
        lengths=tuple(lengths),
        metrics=types.MappingProxyType({k: tuple(v) for k, v in totals.items()}),
        regime=regime,
    )


def play_batched(
    act: Callable[[NDArray[Any]], NDArray[Any]],
    envs: Sequence[gym.Env[Any, Any]],
    *,
    seeds: Sequence[int],
    metrics: Mapping[str, str],
    regime: str | None = None,
    max_steps: int = 1_000_000,
) -> ControllerScore:
    """:func:`play_episodes` for a policy, every episode at once: one ``act`` call per step.

    Episode ``i`` (seed ``seeds[i]``) is played on ``envs[i % len(envs)]``, up to
    ``len(envs)`` side by side; ``act`` gets the observations of the episodes still running,
    stacked, and returns their actions. The worlds draw an episode at reset from its seed, so
    each episode is the one :func:`play_episodes` plays with the same seed.
    """
    width = len(envs)
    returns = [0.0] * len(seeds)
    lengths = [0] * len(seeds)
    totals: dict[str, list[float]] = {name: [0.0] * len(seeds) for name in metrics}
    for start in range(0, len(seeds), width):
        running = list(range(start, min(start + width, len(seeds))))  # row -> episode
        # The running episodes' observations, one row each, written in place step by step:
        # stacking them anew at every step cost more than a row's share of the forward pass.
        batch = np.stack([envs[i - start].reset(seed=int(seeds[i]))[0] for i in running])
        while running:
            actions = act(batch)
            finished: list[int] = []
            for row, index in enumerate(running):
                obs, reward, terminated, truncated, info = envs[index - start].step(actions[row])
                returns[index] += float(reward)
                lengths[index] += 1
                if terminated or truncated or lengths[index] >= max_steps:
                    finished.append(row)
                    for name, key in metrics.items():
                        totals[name][index] = float(info[key])
                else:
                    batch[row] = obs
            if finished:
                kept = [row for row in range(len(running)) if row not in finished]
                running = [running[row] for row in kept]
                batch = batch[kept]
    return _score(seeds, returns, lengths, totals, regime)
