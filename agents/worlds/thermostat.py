"""``society/Thermostat-v0``: one home, a heat pump and the person paying for it.

Physics (a one-node RC model, the workhorse of building control research):

    C dT/dt = (T_out - T) / R + Q_hvac + Q_gains

with ``T`` the indoor temperature (°C), ``R`` the envelope's thermal resistance (K/kW, more
insulation = larger R), ``C`` the thermal capacitance of air, furniture and walls (kWh/K),
``Q_hvac`` the heat pump's thermal output (kW; electrical input times COP, negative when
cooling) and ``Q_gains`` internal gains (people, appliances) plus solar gains. With inputs held
constant over a step of ``dt`` hours the solution is exact:

    T' = T_eq + (T - T_eq) * exp(-dt / (R C)),   T_eq = T_out + R (Q_hvac + Q_gains)

so the model is stable at any step length. The heating COP rises with outdoor temperature, the
cooling COP falls with it (a heat pump works harder across a larger temperature lift).

The outdoor temperature is a season mean plus a daily cycle (minimum near dawn, maximum at
15:00), a day-to-day offset and AR(1) weather noise. Occupancy follows the household's routine
(wake, leave, return, sleep) with seeded jitter, work-from-home days and weekend outings;
comfort counts only while someone is home and awake. Electricity has a time-of-use tariff
(off-peak night, peak evening), a flat tariff or a noisy day-ahead ("dynamic") tariff.

Why an agent can beat the thermostat on the wall: the observation carries the next hours'
prices, occupancy and outdoor temperature, so the agent can pre-heat on cheap power before the
peak, coast through it on the stored heat, skip heating an empty house and hold the lower edge
of the comfort band instead of a setpoint in its middle.

Episodes start at midnight of a random weekday and last ``episode_days`` days of 15-minute steps
(96 steps per day by default). All randomness of an episode is drawn at ``reset`` from the env's
seeded generator, so one seed and one action sequence always give the same episode.
"""

from __future__ import annotations

import math
import types
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, SupportsFloat

import numpy as np
from gymnasium import spaces
from numpy.typing import NDArray

from agents.exceptions import ConfigError
from agents.worlds.base import (
    ParamValue,
    World,
    ar1_noise,
    check_day_structure,
    check_ranges,
)
from agents.worlds.drift import Regime
from agents.worlds.tariff import TariffParams, day_prices

__all__ = [
    "OBS_COMFORT_HIGH",
    "OBS_COMFORT_LOW",
    "OBS_HVAC",
    "OBS_INDOOR",
    "OBS_OCCUPIED",
    "OBS_OUTDOOR",
    "OBS_PRICE",
    "OBS_TOD_COS",
    "OBS_TOD_SIN",
    "OBS_WEEKEND",
    "THERMOSTAT_REGIMES",
    "Thermostat",
    "ThermostatAction",
    "ThermostatParams",
    "indoor_from_obs",
    "obs_layout",
]

ThermostatAction = int | np.integer[Any] | NDArray[np.floating[Any]]
"""A level index (``Discrete``) or a one-element array in [-1, 1] (``continuous=True``)."""

# Observation layout (fixed part). Temperatures: (T - T_REF) / T_SCALE; outdoor temperatures:
# (T - OUT_REF) / OUT_SCALE; prices: (p - PRICE_REF) / PRICE_SCALE; flags are 0/1.
OBS_INDOOR = 0
OBS_OUTDOOR = 1
OBS_COMFORT_LOW = 2
OBS_COMFORT_HIGH = 3
OBS_TOD_SIN = 4
OBS_TOD_COS = 5
OBS_WEEKEND = 6
OBS_OCCUPIED = 7
OBS_PRICE = 8
#: The fraction the heat pump runs at now (what it was last told; 0 after a reset): a
#: thermostat knows whether its heat pump is on, and a controller with a dead band acts on it.
OBS_HVAC = 9
_FIXED = 10

T_REF = 21.0
T_SCALE = 5.0
OUT_REF = 10.0
OUT_SCALE = 15.0
PRICE_REF = 0.25
PRICE_SCALE = 0.15
OBS_BOUND = 10.0
MIN_LEVELS = 3
_FLAG = 0.5
"""Observation flags are 0 or 1."""
DAYS_PER_WEEK = 7
SATURDAY = 5


def obs_layout(forecast_hours: int) -> dict[str, slice]:
    """Slices of the forecast blocks in the observation (hourly, ``+1 h .. +forecast_hours``)."""
    h = forecast_hours
    return {
        "price_forecast": slice(_FIXED, _FIXED + h),
        "occupancy_forecast": slice(_FIXED + h, _FIXED + 2 * h),
        "outdoor_forecast": slice(_FIXED + 2 * h, _FIXED + 3 * h),
    }


def indoor_from_obs(value: float) -> float:
    """Undo the indoor-temperature normalisation (°C)."""
    return value * T_SCALE + T_REF


@dataclass(frozen=True)
class ThermostatParams(TariffParams):
    """Every parameter of the thermostat world, with units. Defaults: a mid-size house in winter.

    Device (per home): ``r_k_per_kw``, ``c_kwh_per_k``, ``hp_max_kw``, the COP curves, gains,
    comfort band and the household routine. Regime (season, tariff): ``t_*``, ``solar_peak_kw``,
    ``tariff`` and the prices. Structural (fixed for a world's life): step, episode length,
    forecast horizon.
    """

    # The building and its heat pump: device parameters.
    r_k_per_kw: float = 5.0
    """Envelope thermal resistance, K/kW (UA = 0.2 kW/K). Better insulation = larger R."""
    c_kwh_per_k: float = 4.0
    """Thermal capacitance, kWh/K. R*C = 20 h is the house's time constant."""
    hp_max_kw: float = 3.0
    """Heat pump's maximum electrical input, kW (heating and cooling)."""
    cop_heat_7c: float = 3.2
    """Heating COP at 7 °C outdoor."""
    cop_heat_slope: float = 0.07
    """Heating COP change per K of outdoor temperature."""
    cop_cool_30c: float = 3.5
    """Cooling COP (EER) at 30 °C outdoor."""
    cop_cool_slope: float = 0.06
    """Cooling COP loss per K of outdoor temperature above 30 °C (gain below)."""
    cop_min: float = 1.5
    """Floor of both COP curves."""
    base_gain_kw: float = 0.1
    """Always-on internal gains (fridge, standby), kW thermal."""
    internal_gain_kw: float = 0.3
    """Extra internal gains while people are home and awake, kW thermal."""
    solar_aperture: float = 1.0
    """Multiplier on solar gains (window area and orientation)."""
    comfort_low_c: float = 20.0
    """Lower edge of the comfort band while occupied, °C."""
    comfort_high_c: float = 24.0
    """Upper edge of the comfort band while occupied, °C."""
    # The household's routine, in hours of the day: device parameters.
    wake_h: float = 6.5
    leave_h: float = 8.0
    return_h: float = 17.5
    sleep_h: float = 23.0
    weekend_wake_h: float = 8.0
    weekend_sleep_h: float = 23.5
    schedule_jitter_h: float = 0.5
    """Standard deviation of the daily jitter of wake/leave/return/sleep times, hours."""
    wfh_prob: float = 0.2
    """Probability that a weekday is a work-from-home day (home all day)."""
    weekend_outing_prob: float = 0.5
    """Probability of a 2-5 h afternoon outing on a weekend day."""
    # Climate: regime parameters (seasons).
    t_mean_c: float = 3.0
    """Season's mean outdoor temperature, °C."""
    t_amplitude_c: float = 4.0
    """Half the daily outdoor temperature swing, K."""
    t_day_sd_c: float = 2.5
    """Standard deviation of the day-to-day offset of the outdoor temperature, K."""
    weather_sd_c: float = 1.0
    """Stationary standard deviation of the AR(1) weather noise, K."""
    weather_ar: float = 0.97
    """AR(1) coefficient of the weather noise per 15 minutes."""
    solar_peak_kw: float = 0.8
    """Clear-sky solar gain at noon, kW thermal (scaled by daily cloudiness)."""
    # Tariff: regime parameters, from TariffParams.
    # Reward.
    comfort_weight: float = 10.0
    """Price of discomfort, $ per K*h outside the comfort band while occupied. The default
    says the household would much rather pay for heat than be cold: one degree too cold for an
    hour weighs more than a winter day's heating bill, so a learner keeps the band and saves
    money only where comfort does not suffer."""
    comfort_margin_k: float = 0.25
    """The reward's comfort band is narrower than the household's by this margin on each side,
    K. A learner then keeps a little distance from the edge, so the unobserved solar gains and
    the coarse heat-pump levels do not push it over; ``comfort_violation`` in ``info`` is
    always measured against the household's true band."""
    reward_scale: float = 1.0
    """Reward = -(energy cost + comfort_weight * violation of the narrowed band) * reward_scale."""
    shield_lead_h: int = 2
    """The comfort shield (:meth:`Thermostat.shield_actions`) acts while someone is home and
    awake, and when the occupancy forecast expects them within this many hours (0 to
    ``forecast_hours``): a house left to warm up while empty cannot be cooled in one step.
    With one hour, a summer house was still too warm on some homecomings
    (docs/benchmarks.md)."""
    # Structure: fixed for the world's life.
    step_minutes: int = 15
    episode_days: int = 1
    forecast_hours: int = 4

    def validate(self) -> None:
        what = "Thermostat"
        check_ranges(
            self,
            what,
            positive=("r_k_per_kw", "c_kwh_per_k", "hp_max_kw", "cop_heat_7c", "cop_cool_30c"),
            non_negative=(
                "cop_min",
                "base_gain_kw",
                "internal_gain_kw",
                "solar_aperture",
                "solar_peak_kw",
                "t_day_sd_c",
                "weather_sd_c",
                "schedule_jitter_h",
                "comfort_weight",
                "comfort_margin_k",
            ),
            fractions=("wfh_prob", "weekend_outing_prob"),
            hours=(
                "wake_h",
                "leave_h",
                "return_h",
                "sleep_h",
                "weekend_wake_h",
                "weekend_sleep_h",
            ),
        )
        check_day_structure(self, what)
        if self.reward_scale <= 0:
            raise ConfigError(f"{what}: reward_scale={self.reward_scale!r} must be > 0")
        if self.comfort_high_c - self.comfort_low_c <= 2.0 * self.comfort_margin_k:
            raise ConfigError(
                f"{what}: comfort_high_c={self.comfort_high_c!r} must exceed "
                f"comfort_low_c={self.comfort_low_c!r} by more than twice "
                f"comfort_margin_k={self.comfort_margin_k!r}"
            )
        if not self.wake_h <= self.leave_h <= self.return_h <= self.sleep_h:
            raise ConfigError(
                f"{what}: routine wake_h={self.wake_h}, leave_h={self.leave_h}, "
                f"return_h={self.return_h}, sleep_h={self.sleep_h} must be in that order"
            )
        if self.weekend_sleep_h < self.weekend_wake_h:
            raise ConfigError(
                f"{what}: weekend_sleep_h={self.weekend_sleep_h!r} must be >= weekend_wake_h"
            )
        if not 0.0 <= self.weather_ar < 1.0:
            raise ConfigError(f"{what}: weather_ar={self.weather_ar!r} must be in [0, 1)")
        if not 0 <= self.shield_lead_h <= self.forecast_hours:
            raise ConfigError(
                f"{what}: shield_lead_h={self.shield_lead_h!r} must be in "
                f"[0, forecast_hours={self.forecast_hours}]"
            )
        self.check_tariff(what)


def _regimes(*regimes: Regime) -> Mapping[str, Regime]:
    return types.MappingProxyType({r.name: r for r in regimes})


_WINTER = {"t_mean_c": 3.0, "t_amplitude_c": 4.0, "solar_peak_kw": 0.8}
_SUMMER = {"t_mean_c": 25.0, "t_amplitude_c": 6.0, "solar_peak_kw": 2.0}

THERMOSTAT_REGIMES: Mapping[str, Regime] = _regimes(
    Regime("winter", {**_WINTER, "tariff": "tou"}, "3 °C mean, time-of-use tariff"),
    Regime(
        "spring",
        {"t_mean_c": 12.0, "t_amplitude_c": 6.0, "solar_peak_kw": 1.4, "tariff": "tou"},
        "12 °C mean, large daily swing: little heating, some free solar",
    ),
    Regime("summer", {**_SUMMER, "tariff": "tou"}, "25 °C mean, strong sun: cooling"),
    Regime(
        "cold_snap",
        {"t_mean_c": -8.0, "t_amplitude_c": 3.0, "solar_peak_kw": 0.6, "tariff": "tou"},
        "-8 °C mean: the heat pump is near its limit and its COP drops",
    ),
    Regime(
        "heatwave",
        {"t_mean_c": 31.0, "t_amplitude_c": 6.0, "solar_peak_kw": 2.2, "tariff": "tou"},
        "31 °C mean: cooling all day",
    ),
    Regime("winter_flat", {**_WINTER, "tariff": "flat"}, "winter on a flat tariff"),
    Regime("winter_dynamic", {**_WINTER, "tariff": "dynamic"}, "winter on day-ahead prices"),
    Regime("summer_dynamic", {**_SUMMER, "tariff": "dynamic"}, "summer on day-ahead prices"),
)
"""Seasons and price regimes of the thermostat world."""


class Thermostat(World[ThermostatParams, ThermostatAction]):
    """A heat-pump thermostat in one home (``society/Thermostat-v0``).

    Args:
        continuous: ``False`` (default): ``Discrete(n_levels)`` actions, level ``i`` runs the heat
            pump at fraction ``-1 + 2 i / (n_levels - 1)`` of its power (negative: cooling).
            ``True``: ``Box([-1], [1])``, the fraction itself (for SAC).
        n_levels: number of discrete levels, odd, >= 3 (the middle one is "off").
        regime: the regime to start in (see :data:`THERMOSTAT_REGIMES`); default ``winter``.
        render_mode: ``None`` or ``"ansi"``.
        **params: overrides of :class:`ThermostatParams` (the device).

    Observation (float32, roughly [-1, 1]): see the module constants ``OBS_*`` and
    :func:`obs_layout`: indoor and outdoor temperature, the comfort band, time of day (sin/cos),
    weekend flag, occupied flag, current price, the heat pump's current fraction, then hourly
    forecasts of price, occupancy and outdoor temperature for the next ``forecast_hours``
    hours.

    Reward: ``-(energy_cost + comfort_weight * v) * reward_scale`` per step, ``v`` the K*h
    outside the comfort band narrowed by ``comfort_margin_k`` on each side, while occupied.

    ``info``: ``energy_cost`` ($ this step), ``energy_kwh``, ``comfort_violation`` (K*h this
    step, only while occupied), ``indoor_temp_c`` (at the end of the step), the step's
    conditions ``outdoor_temp_c``, ``price`` ($/kWh) and ``occupied``, ``hvac_power_kw``
    (electrical, >= 0), ``hvac_fraction`` (-1..1), and the episode totals
    ``episode_energy_cost``, ``episode_energy_kwh``, ``episode_comfort_violation``. After
    ``reset`` the conditions are those of the first step and the totals are zero.
    """

    regimes: ClassVar[Mapping[str, Regime]] = THERMOSTAT_REGIMES
    default_regime: ClassVar[str | None] = "winter"
    structural_params: ClassVar[frozenset[str]] = frozenset(
        {"step_minutes", "episode_days", "forecast_hours"}
    )
    metrics: ClassVar[Mapping[str, str]] = types.MappingProxyType(
        {
            "energy_cost": "episode_energy_cost",
            "comfort_violation": "episode_comfort_violation",
            "energy_kwh": "episode_energy_kwh",
        }
    )
    endogenous_obs: ClassVar[tuple[int, ...]] = (OBS_INDOOR, OBS_HVAC)
    has_shield: ClassVar[bool] = True

    def __init__(
        self,
        *,
        continuous: bool = False,
        n_levels: int = 7,
        regime: str | None = None,
        render_mode: str | None = None,
        **params: ParamValue,
    ) -> None:
        if isinstance(n_levels, bool) or not isinstance(n_levels, int):
            raise ConfigError(f"Thermostat: n_levels={n_levels!r} must be an integer")
        if n_levels < MIN_LEVELS or n_levels % 2 == 0:
            raise ConfigError(f"Thermostat: n_levels={n_levels} must be odd and >= 3")
        self.continuous = bool(continuous)
        self.n_levels = n_levels
        self._levels = [-1.0 + 2.0 * i / (n_levels - 1) for i in range(n_levels)]
        super().__init__(ThermostatParams(), params, regime=regime, render_mode=render_mode)
        p = self.base_params
        self.steps_per_hour = 60 // p.step_minutes
        self.episode_steps = p.episode_days * 24 * self.steps_per_hour
        self.dt_h = p.step_minutes / 60.0
        self.layout = obs_layout(p.forecast_hours)
        self.obs_dim = _FIXED + 3 * p.forecast_hours
        self.observation_space = spaces.Box(
            -OBS_BOUND, OBS_BOUND, shape=(self.obs_dim,), dtype=np.float32
        )
        self.action_space: spaces.Space[ThermostatAction]
        if self.continuous:
            self.action_space = spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        else:
            self.action_space = spaces.Discrete(n_levels)
        self._t = 0
        self._tin = p.comfort_low_c
        self._frac = 0.0
        self._day0 = 0
        self._exo = np.zeros((self.episode_steps + 1, self.obs_dim), dtype=np.float32)
        self._tout: list[float] = []
        self._price: list[float] = []
        self._occ: list[bool] = []
        self._gain: list[float] = []
        self._cop_h: list[float] = []
        self._cop_c: list[float] = []
        self._sum_cost = 0.0
        self._sum_kwh = 0.0
        self._sum_viol = 0.0

    # --- parameters and devices ----------------------------------------------------------

    def _params_changed(self) -> None:
        p = self.params
        self._r = p.r_k_per_kw
        self._alpha = math.exp(-(p.step_minutes / 60.0) / (p.r_k_per_kw * p.c_kwh_per_k))
        self._hp = p.hp_max_kw
        self._low = p.comfort_low_c
        self._high = p.comfort_high_c
        self._low_r = p.comfort_low_c + p.comfort_margin_k
        self._high_r = p.comfort_high_c - p.comfort_margin_k
        self._w = p.comfort_weight
        self._scale = p.reward_scale

    @classmethod
    def sample_params(cls, rng: np.random.Generator) -> dict[str, ParamValue]:
        """One home: insulation, thermal mass, a heat pump sized to it, comfort band, routine.

        The heat pump is sized like an installer would: 20 % above the heat loss at a -7 °C
        design day, at the COP it has there.
        """
        r = float(rng.uniform(3.0, 8.0))
        c = float(rng.uniform(2.5, 7.0))
        design_load_kw = (21.0 + 7.0) / r
        cop_design = 3.2 + 0.07 * (-7.0 - 7.0)
        low = float(rng.uniform(19.5, 21.0))
        wake = float(rng.uniform(5.5, 7.5))
        return {
            "r_k_per_kw": round(r, 3),
            "c_kwh_per_k": round(c, 3),
            "hp_max_kw": round(1.2 * design_load_kw / cop_design, 3),
            "internal_gain_kw": round(float(rng.uniform(0.2, 0.5)), 3),
            "solar_aperture": round(float(rng.uniform(0.6, 1.4)), 3),
            "comfort_low_c": round(low, 2),
            "comfort_high_c": round(low + float(rng.uniform(3.0, 4.5)), 2),
            "wake_h": round(wake, 2),
            "leave_h": round(wake + float(rng.uniform(1.0, 2.5)), 2),
            "return_h": round(float(rng.uniform(16.0, 19.0)), 2),
            "sleep_h": round(float(rng.uniform(22.0, 24.0)), 2),
            "wfh_prob": round(float(rng.uniform(0.0, 0.4)), 3),
        }

    # --- episode generation --------------------------------------------------------------

    def _occupancy_day(self, weekday: int, hours: NDArray[np.float64]) -> NDArray[np.bool_]:
        """Occupied-and-awake flags for one day at the given hours (step midpoints)."""
        p = self.params
        rng = self.np_random
        j = p.schedule_jitter_h
        if weekday >= SATURDAY:
            wake = p.weekend_wake_h + rng.normal(0.0, j)
            sleep = p.weekend_sleep_h + rng.normal(0.0, j)
            occ = (hours >= wake) & (hours < sleep)
            if rng.random() < p.weekend_outing_prob:
                start = rng.uniform(10.0, 15.0)
                occ &= ~((hours >= start) & (hours < start + rng.uniform(2.0, 5.0)))
            return occ
        wake = p.wake_h + rng.normal(0.0, j * 0.5)
        sleep = p.sleep_h + rng.normal(0.0, j * 0.5)
        if rng.random() < p.wfh_prob:
            return (hours >= wake) & (hours < sleep)
        leave = max(wake, p.leave_h + rng.normal(0.0, j))
        back = max(leave, p.return_h + rng.normal(0.0, j))
        return ((hours >= wake) & (hours < leave)) | ((hours >= back) & (hours < sleep))

    def _generate(self) -> None:
        """Draw the episode's weather, occupancy, prices and gains; build the exogenous obs."""
        p = self.params
        rng = self.np_random
        sph = self.steps_per_hour
        per_day = 24 * sph
        fh = p.forecast_hours
        days = p.episode_days + 1 + (fh * sph) // per_day  # room for the last forecasts
        n = days * per_day
        hours_day = (np.arange(per_day, dtype=np.float64) + 0.5) / sph
        occ = np.zeros(n, dtype=np.bool_)
        price = np.zeros(n, dtype=np.float64)
        tout = np.zeros(n, dtype=np.float64)
        solar = np.zeros(n, dtype=np.float64)
        daylight = np.maximum(np.sin(np.pi * (hours_day - 6.0) / 12.0), 0.0)
        daily_cycle = p.t_amplitude_c * np.cos(2.0 * np.pi * (hours_day - 15.0) / 24.0)
        weekend = np.zeros(n, dtype=np.float64)
        for d in range(days):
            weekday = (self._day0 + d) % DAYS_PER_WEEK
            sl = slice(d * per_day, (d + 1) * per_day)
            occ[sl] = self._occupancy_day(weekday, hours_day)
            price[sl] = day_prices(p, hours_day, rng)
            tout[sl] = p.t_mean_c + rng.normal(0.0, p.t_day_sd_c) + daily_cycle
            solar[sl] = p.solar_peak_kw * p.solar_aperture * rng.uniform(0.2, 1.0) * daylight
            weekend[sl] = 1.0 if weekday >= SATURDAY else 0.0
        # AR(1) weather noise, stationary from the first step.
        a = p.weather_ar ** (p.step_minutes / 15.0)
        tout += ar1_noise(rng, n, a, p.weather_sd_c)
        cop_h = np.maximum(p.cop_heat_7c + p.cop_heat_slope * (tout - 7.0), p.cop_min)
        cop_c = np.maximum(p.cop_cool_30c - p.cop_cool_slope * (tout - 30.0), p.cop_min)
        gain = p.base_gain_kw + p.internal_gain_kw * occ + solar
        self._fill_exogenous(tout, price, occ, weekend)
        self._tout = tout.tolist()
        self._price = price.tolist()
        self._occ = occ.tolist()
        self._gain = gain.tolist()
        self._cop_h = cop_h.tolist()
        self._cop_c = cop_c.tolist()

    def _fill_exogenous(
        self,
        tout: NDArray[np.float64],
        price: NDArray[np.float64],
        occ: NDArray[np.bool_],
        weekend: NDArray[np.float64],
    ) -> None:
        """Write every observation entry except the indoor temperature, for every step."""
        p = self.params
        sph = self.steps_per_hour
        per_day = 24 * sph
        fh = p.forecast_hours
        steps = self.episode_steps + 1
        idx = np.arange(steps)
        exo = self._exo
        exo[:, OBS_OUTDOOR] = (tout[:steps] - OUT_REF) / OUT_SCALE
        exo[:, OBS_COMFORT_LOW] = (p.comfort_low_c - T_REF) / T_SCALE
        exo[:, OBS_COMFORT_HIGH] = (p.comfort_high_c - T_REF) / T_SCALE
        angle = 2.0 * np.pi * (idx % per_day) / per_day
        exo[:, OBS_TOD_SIN] = np.sin(angle)
        exo[:, OBS_TOD_COS] = np.cos(angle)
        exo[:, OBS_WEEKEND] = weekend[:steps]
        exo[:, OBS_OCCUPIED] = occ[:steps]
        exo[:, OBS_PRICE] = (price[:steps] - PRICE_REF) / PRICE_SCALE
        ahead = idx[:, None] + sph * np.arange(1, fh + 1)[None, :]
        exo[:, self.layout["price_forecast"]] = (price[ahead] - PRICE_REF) / PRICE_SCALE
        exo[:, self.layout["occupancy_forecast"]] = occ[ahead]
        exo[:, self.layout["outdoor_forecast"]] = (tout[ahead] - OUT_REF) / OUT_SCALE
        np.clip(exo, -OBS_BOUND, OBS_BOUND, out=exo)

    # --- gymnasium API -------------------------------------------------------------------

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[NDArray[np.float32], dict[str, Any]]:
        """Start at midnight of a random day of the week.

        ``options``: ``day_of_week`` (0 = Monday .. 6) and ``indoor_temp_c`` fix the start.
        """
        super().reset(seed=seed)
        opts = options or {}
        rng = self.np_random
        p = self.params
        self._day0 = int(rng.integers(0, DAYS_PER_WEEK))
        tin = float(rng.uniform(p.comfort_low_c - 3.0, p.comfort_high_c))
        if "day_of_week" in opts:
            day = opts["day_of_week"]
            if not isinstance(day, int | np.integer) or not 0 <= int(day) < DAYS_PER_WEEK:
                raise ConfigError(f"Thermostat.reset: day_of_week={day!r} must be in 0..6")
            self._day0 = int(day)
        if "indoor_temp_c" in opts:
            tin = float(opts["indoor_temp_c"])
        self._generate()
        self._t = 0
        self._tin = tin
        self._frac = 0.0
        self._sum_cost = self._sum_kwh = self._sum_viol = 0.0
        info = self._info(0)
        return self._obs(), info

    def _obs(self) -> NDArray[np.float32]:
        obs: NDArray[np.float32] = self._exo[self._t].copy()
        v = (self._tin - T_REF) / T_SCALE
        obs[OBS_INDOOR] = OBS_BOUND if v > OBS_BOUND else max(v, -OBS_BOUND)
        obs[OBS_HVAC] = self._frac
        return obs

    def _info(
        self,
        t: int,
        *,
        cost: float = 0.0,
        kwh: float = 0.0,
        viol: float = 0.0,
        power: float = 0.0,
        frac: float = 0.0,
    ) -> dict[str, Any]:
        return {
            "energy_cost": cost,
            "energy_kwh": kwh,
            "comfort_violation": viol,
            "indoor_temp_c": self._tin,
            "outdoor_temp_c": self._tout[t],
            "price": self._price[t],
            "occupied": self._occ[t],
            "hvac_power_kw": power,
            "hvac_fraction": frac,
            "episode_energy_cost": self._sum_cost,
            "episode_energy_kwh": self._sum_kwh,
            "episode_comfort_violation": self._sum_viol,
        }

    def step(
        self, action: ThermostatAction
    ) -> tuple[NDArray[np.float32], SupportsFloat, bool, bool, dict[str, Any]]:
        """Run the heat pump at the chosen fraction for one step; see the class docstring."""
        if self.continuous:
            u = float(np.asarray(action).reshape(-1)[0])
            u = min(max(u, -1.0), 1.0)
        else:
            i = int(action)
            if not 0 <= i < self.n_levels:
                raise ValueError(f"Thermostat: action {i} is not in [0, {self.n_levels})")
            u = self._levels[i]
        t = self._t
        tout = self._tout[t]
        if u > 0.0:
            power = u * self._hp
            q = power * self._cop_h[t]
        elif u < 0.0:
            power = -u * self._hp
            q = -power * self._cop_c[t]
        else:
            power = q = 0.0
        t_eq = tout + self._r * (q + self._gain[t])
        t_old = self._tin
        t_new = t_eq + (t_old - t_eq) * self._alpha
        dt = self.dt_h
        kwh = power * dt
        cost = kwh * self._price[t]
        viol = penalty = 0.0
        if self._occ[t]:
            mid = 0.5 * (t_old + t_new)
            if mid < self._low_r:
                penalty = (self._low_r - mid) * dt
                viol = max(self._low - mid, 0.0) * dt
            elif mid > self._high_r:
                penalty = (mid - self._high_r) * dt
                viol = max(mid - self._high, 0.0) * dt
        self._tin = t_new
        self._frac = u
        self._sum_cost += cost
        self._sum_kwh += kwh
        self._sum_viol += viol
        self._t = t + 1
        reward = -(cost + self._w * penalty) * self._scale
        truncated = self._t >= self.episode_steps
        return (
            self._obs(),
            reward,
            False,
            truncated,
            self._info(t, cost=cost, kwh=kwh, viol=viol, power=power, frac=u),
        )

    # --- a model of the device ------------------------------------------------------------

    def _fractions(self, actions: NDArray[Any]) -> NDArray[np.float64]:
        if self.continuous:
            return np.clip(np.asarray(actions, dtype=np.float64).reshape(-1), -1.0, 1.0)
        return np.asarray(self._levels, dtype=np.float64)[np.asarray(actions, dtype=np.int64)]

    def action_features(self, actions: NDArray[Any]) -> NDArray[np.float64]:
        """The heating and the cooling fraction of each action (heat and cold scale with them)."""
        u = self._fractions(actions)
        return np.stack([np.maximum(u, 0.0), np.maximum(-u, 0.0)], axis=1)

    def shield_actions(self, obs: NDArray[Any], actions: NDArray[Any]) -> NDArray[Any]:
        """The comfort shield: full power back towards the band where the house has left it.

        While someone is home and awake, or expected within ``shield_lead_h`` hours, and the
        indoor temperature is outside the reward's comfort band (the household's, narrowed
        by ``comfort_margin_k``), the heat pump runs at full power towards the band whatever
        the policy proposed: what a thermostat on the wall does at its setpoint. Elsewhere the
        proposal stands. It reads the observation only, as the policy does.
        """
        obs64 = np.asarray(obs, dtype=np.float64).reshape(len(actions), -1)
        margin = self.params.comfort_margin_k
        tin = obs64[:, OBS_INDOOR] * T_SCALE + T_REF
        low = obs64[:, OBS_COMFORT_LOW] * T_SCALE + T_REF + margin
        high = obs64[:, OBS_COMFORT_HIGH] * T_SCALE + T_REF - margin
        forecast = obs64[:, self.layout["occupancy_forecast"]][:, : self.params.shield_lead_h]
        expected = (obs64[:, OBS_OCCUPIED] > _FLAG) | (forecast > _FLAG).any(axis=1)
        shielded = np.array(actions, copy=True)
        heat, cool = (1.0, -1.0) if self.continuous else (self.n_levels - 1, 0)
        shielded[expected & (tin < low)] = heat
        shielded[expected & (tin > high)] = cool
        return shielded

    def obs_reward(
        self, obs: NDArray[np.float32], actions: NDArray[Any], next_obs: NDArray[np.float32]
    ) -> NDArray[np.float64]:
        """The step's reward from the price, occupancy and indoor temperatures observed."""
        obs64 = np.asarray(obs, dtype=np.float64)
        u = self._fractions(actions)
        price = obs64[:, OBS_PRICE] * PRICE_SCALE + PRICE_REF
        cost = np.abs(u) * self._hp * self.dt_h * price
        t_old = obs64[:, OBS_INDOOR] * T_SCALE + T_REF
        t_new = np.asarray(next_obs, dtype=np.float64)[:, OBS_INDOOR] * T_SCALE + T_REF
        mid = 0.5 * (t_old + t_new)
        outside = np.maximum(self._low_r - mid, 0.0) + np.maximum(mid - self._high_r, 0.0)
        occupied = obs64[:, OBS_OCCUPIED] > _FLAG
        penalty = np.where(occupied, outside * self.dt_h, 0.0)
        reward: NDArray[np.float64] = -(cost + self._w * penalty) * self._scale
        return reward

    def render(self) -> str | None:
        """A one-line text status (``render_mode="ansi"``)."""
        if self.render_mode != "ansi":
            return None
        t = self._t
        hour = (t % (24 * self.steps_per_hour)) / self.steps_per_hour
        return (
            f"{int(hour):02d}:{round((hour % 1) * 60):02d} indoor {self._tin:5.1f} C "
            f"outdoor {self._tout[t]:5.1f} C price {self._price[t]:.2f} "
            f"{'home' if self._occ[t] else 'away'} cost {self._sum_cost:.2f}"
        )
