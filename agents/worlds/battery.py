"""``society/HomeBattery-v0``: a home battery next to rooftop solar and a household load.

Energy balance per step of ``dt`` hours (all powers in kW, positive battery power = charging):

    grid = load - pv + p_batt
    import_kwh = max(grid, 0) dt,  export_kwh = max(-grid, 0) dt
    cost = import_kwh * price - export_kwh * feed_in + degradation * |p_batt| dt

The battery stores ``eta_charge * p dt`` when charging and delivers ``p dt`` for
``p dt / eta_discharge`` of stored energy when discharging; its state of charge stays within
``[soc_min_frac * capacity, capacity]`` (a request beyond the limits is cut to them, and what
was actually done is what ``info`` reports). ``degradation_per_kwh`` prices the wear of each
kWh cycled.

The household load is a base load with a morning and an evening bump and multiplicative
per-step noise; the solar output is the panel's peak times a clear-sky bell between sunrise and
sunset, times a daily cloudiness and per-step AR(1) cloud noise. Prices come from
:mod:`agents.worlds.tariff`; exports are paid a flat ``feed_in`` price.

Why an agent can beat the battery's built-in modes: it sees the next hours' prices and net load,
so it can keep charge for the evening peak instead of spending it at noon, charge from the grid
at night only when tomorrow's sun will not fill it, and skip cycles that cost more in wear than
they save.
"""

from __future__ import annotations

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
    "BATTERY_REGIMES",
    "DISCHARGE",
    "GRID_CHARGE",
    "IDLE",
    "MODES",
    "OBS_CAPACITY",
    "OBS_LOAD",
    "OBS_POWER",
    "OBS_PRICE",
    "OBS_PV",
    "OBS_SOC",
    "OBS_TOD_COS",
    "OBS_TOD_SIN",
    "SELF_CONSUMPTION",
    "STORE_ONLY",
    "BatteryAction",
    "BatteryParams",
    "HomeBattery",
    "battery_obs_layout",
]

BatteryAction = int | np.integer[Any] | NDArray[np.floating[Any]]
"""A mode index (``Discrete``) or a one-element array in [-1, 1] (``continuous=True``)."""

OBS_SOC = 0
OBS_LOAD = 1
OBS_PV = 2
OBS_PRICE = 3
OBS_FEED_IN = 4
OBS_TOD_SIN = 5
OBS_TOD_COS = 6
OBS_CAPACITY = 7
OBS_POWER = 8
_FIXED = 9

POWER_SCALE_KW = 3.0
"""Loads and solar output are observed as kW / 3."""
CAPACITY_SCALE_KWH = 10.0
PRICE_REF = 0.25
PRICE_SCALE = 0.15
OBS_BOUND = 10.0

MODES = ("idle", "self_consumption", "store_only", "grid_charge", "discharge")
"""Discrete actions: the operating modes of a home energy-management system."""
IDLE, SELF_CONSUMPTION, STORE_ONLY, GRID_CHARGE, DISCHARGE = range(len(MODES))


def battery_obs_layout(forecast_hours: int) -> dict[str, slice]:
    """Slices of the hourly forecast blocks: price and net load (load - pv) at +1..+h hours."""
    h = forecast_hours
    return {
        "price_forecast": slice(_FIXED, _FIXED + h),
        "net_load_forecast": slice(_FIXED + h, _FIXED + 2 * h),
    }


@dataclass(frozen=True)
class BatteryParams(TariffParams):
    """Every parameter of the battery world, with units. Defaults: 10 kWh, 5 kWp, winter."""

    # The battery: device parameters.
    capacity_kwh: float = 10.0
    power_max_kw: float = 4.0
    """Maximum charge and discharge power, kW."""
    eta_charge: float = 0.95
    eta_discharge: float = 0.95
    soc_min_frac: float = 0.1
    """Fraction of the capacity the battery management system never goes below."""
    degradation_per_kwh: float = 0.02
    """Wear cost of each kWh charged or discharged, $."""
    # The home: device parameters.
    pv_kwp: float = 5.0
    """Solar array's peak power, kW."""
    load_scale: float = 1.0
    """Multiplier on the household load profile (about 10 kWh/day at 1)."""
    load_noise: float = 0.3
    """Standard deviation of the per-step log-normal load noise."""
    # Season: regime parameters.
    sunrise_h: float = 8.0
    sunset_h: float = 16.5
    sun_strength: float = 0.35
    """Clear-sky noon output as a fraction of ``pv_kwp`` (low winter sun)."""
    season_load: float = 1.2
    """Seasonal multiplier on the load (lighting, heating circulation pumps)."""
    # Tariff: regime parameters, from TariffParams; exports are paid a flat price.
    feed_in: float = 0.05
    """Price paid for exported energy, $/kWh."""
    stored_value_per_kwh: float = 0.15
    """Credit for each kWh more in the battery at the end of the episode than at its start
    (a debit if less), $/kWh: without it a one-day episode would reward emptying the battery
    before midnight and punish charging at the off-peak price for the next day."""
    reward_scale: float = 1.0
    # Structure: fixed for the world's life.
    step_minutes: int = 15
    episode_days: int = 1
    forecast_hours: int = 4

    def validate(self) -> None:
        what = "HomeBattery"
        check_ranges(
            self,
            what,
            positive=(
                "capacity_kwh",
                "power_max_kw",
                "eta_charge",
                "eta_discharge",
                "reward_scale",
            ),
            non_negative=(
                "degradation_per_kwh",
                "pv_kwp",
                "load_scale",
                "load_noise",
                "sun_strength",
                "season_load",
                "feed_in",
                "stored_value_per_kwh",
            ),
            fractions=("eta_charge", "eta_discharge", "soc_min_frac"),
            hours=("sunrise_h", "sunset_h"),
        )
        check_day_structure(self, what)
        if self.soc_min_frac >= 1.0:
            raise ConfigError(f"{what}: soc_min_frac={self.soc_min_frac!r} must be < 1")
        if self.sunset_h <= self.sunrise_h:
            raise ConfigError(
                f"{what}: sunset_h={self.sunset_h!r} must be after sunrise_h={self.sunrise_h!r}"
            )
        self.check_tariff(what)


_WINTER = {"sunrise_h": 8.0, "sunset_h": 16.5, "sun_strength": 0.35, "season_load": 1.2}
_SUMMER = {"sunrise_h": 5.5, "sunset_h": 21.0, "sun_strength": 0.85, "season_load": 0.9}

BATTERY_REGIMES: Mapping[str, Regime] = types.MappingProxyType(
    {
        r.name: r
        for r in (
            Regime("winter", {**_WINTER, "tariff": "tou"}, "short days, time-of-use tariff"),
            Regime("summer", {**_SUMMER, "tariff": "tou"}, "long sunny days, time-of-use"),
            Regime("winter_dynamic", {**_WINTER, "tariff": "dynamic"}, "day-ahead prices"),
            Regime("summer_dynamic", {**_SUMMER, "tariff": "dynamic"}, "day-ahead prices"),
            Regime("flat", {**_SUMMER, "tariff": "flat"}, "summer on a flat tariff"),
        )
    }
)
"""Seasons and price regimes of the battery world."""


class HomeBattery(World[BatteryParams, BatteryAction]):
    """A home battery's charge controller (``society/HomeBattery-v0``).

    Args:
        continuous: ``False`` (default): ``Discrete(5)``, the operating *modes* of a home
            energy-management system (see :data:`MODES`): 0 idle, 1 self-consumption (store the
            solar surplus, cover the deficit), 2 store only (store the surplus, keep the charge
            for later), 3 charge from the grid at full power, 4 discharge at full power.
            ``True``: ``Box([-1], [1])``, the battery power as a fraction of ``power_max_kw``
            (negative: discharge), for SAC.
        regime: the regime to start in (see :data:`BATTERY_REGIMES`); default ``winter``.
        render_mode: ``None`` or ``"ansi"``.
        **params: overrides of :class:`BatteryParams` (the device).

    Observation (float32): state of charge (-1 empty .. 1 full), load and solar now (kW / 3),
    import and feed-in price, time of day (sin/cos), capacity / 10 kWh, power / 3 kW, then
    hourly forecasts of price and net load for the next ``forecast_hours`` hours.

    Reward: ``-(import cost - export revenue + wear) * reward_scale`` per step; the last step
    also credits the change of stored energy at ``stored_value_per_kwh``.

    ``info``: ``energy_cost`` ($ this step, net of export revenue, including wear and, on the
    last step, the stored-energy credit),
    ``grid_import_kwh``, ``grid_export_kwh``, ``battery_power_kw`` (done, not asked),
    ``soc_kwh`` (at the end of the step), the step's ``load_kw``, ``pv_kw`` and ``price``,
    and the episode totals
    ``episode_energy_cost``, ``episode_grid_import_kwh``, ``episode_grid_export_kwh``,
    ``episode_throughput_kwh``.
    """

    regimes: ClassVar[Mapping[str, Regime]] = BATTERY_REGIMES
    default_regime: ClassVar[str | None] = "winter"
    structural_params: ClassVar[frozenset[str]] = frozenset(
        {"step_minutes", "episode_days", "forecast_hours"}
    )
    metrics: ClassVar[Mapping[str, str]] = types.MappingProxyType(
        {
            "energy_cost": "episode_energy_cost",
            "grid_import_kwh": "episode_grid_import_kwh",
            "grid_export_kwh": "episode_grid_export_kwh",
            "throughput_kwh": "episode_throughput_kwh",
        }
    )

    def __init__(
        self,
        *,
        continuous: bool = False,
        regime: str | None = None,
        render_mode: str | None = None,
        **params: ParamValue,
    ) -> None:
        self.continuous = bool(continuous)
        super().__init__(BatteryParams(), params, regime=regime, render_mode=render_mode)
        p = self.base_params
        self.steps_per_hour = 60 // p.step_minutes
        self.episode_steps = p.episode_days * 24 * self.steps_per_hour
        self.dt_h = p.step_minutes / 60.0
        self.layout = battery_obs_layout(p.forecast_hours)
        self.obs_dim = _FIXED + 2 * p.forecast_hours
        self.observation_space = spaces.Box(
            -OBS_BOUND, OBS_BOUND, shape=(self.obs_dim,), dtype=np.float32
        )
        self.action_space: spaces.Space[BatteryAction]
        if self.continuous:
            self.action_space = spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        else:
            self.action_space = spaces.Discrete(len(MODES))
        self._exo = np.zeros((self.episode_steps + 1, self.obs_dim), dtype=np.float32)
        self._t = 0
        self._soc = 0.5 * p.capacity_kwh
        self._soc0 = self._soc
        self._load: list[float] = []
        self._pv: list[float] = []
        self._price: list[float] = []
        self._sum_cost = self._sum_import = self._sum_export = self._sum_through = 0.0

    def _params_changed(self) -> None:
        p = self.params
        self._cap = p.capacity_kwh
        self._soc_min = p.soc_min_frac * p.capacity_kwh
        self._pmax = p.power_max_kw
        self._eta_c = p.eta_charge
        self._eta_d = p.eta_discharge
        self._wear = p.degradation_per_kwh
        self._feed_in = p.feed_in
        self._scale = p.reward_scale
        self._stored_value = p.stored_value_per_kwh

    @classmethod
    def sample_params(cls, rng: np.random.Generator) -> dict[str, ParamValue]:
        """One home: battery size and power, efficiency, solar array, household consumption."""
        capacity = float(rng.uniform(5.0, 15.0))
        eta = float(rng.uniform(0.92, 0.97))
        return {
            "capacity_kwh": round(capacity, 2),
            "power_max_kw": round(capacity * float(rng.uniform(0.3, 0.5)), 2),
            "eta_charge": round(eta, 3),
            "eta_discharge": round(eta, 3),
            "pv_kwp": round(float(rng.uniform(2.0, 8.0)), 2),
            "load_scale": round(float(rng.uniform(0.7, 1.4)), 3),
        }

    def _generate(self) -> None:
        p = self.params
        rng = self.np_random
        sph = self.steps_per_hour
        per_day = 24 * sph
        fh = p.forecast_hours
        days = p.episode_days + 1 + (fh * sph) // per_day
        n = days * per_day
        hours_day = (np.arange(per_day, dtype=np.float64) + 0.5) / sph
        profile = (
            0.25
            + 0.6 * np.exp(-0.5 * ((hours_day - 7.5) / 1.0) ** 2)
            + 0.9 * np.exp(-0.5 * ((hours_day - 19.0) / 1.5) ** 2)
        )
        span = p.sunset_h - p.sunrise_h
        bell = np.clip(np.sin(np.pi * (hours_day - p.sunrise_h) / span), 0.0, None) ** 1.2
        bell[(hours_day < p.sunrise_h) | (hours_day > p.sunset_h)] = 0.0
        load = np.zeros(n)
        pv = np.zeros(n)
        price = np.zeros(n)
        for d in range(days):
            sl = slice(d * per_day, (d + 1) * per_day)
            load[sl] = profile * rng.uniform(0.8, 1.2)
            pv[sl] = p.pv_kwp * p.sun_strength * rng.uniform(0.25, 1.0) * bell
            price[sl] = day_prices(p, hours_day, rng)
        sd = p.load_noise
        load *= p.load_scale * p.season_load * np.exp(rng.normal(-0.5 * sd * sd, sd, n))
        # Passing clouds: AR(1) with a correlation time of about an hour.
        pv *= np.clip(1.0 + ar1_noise(rng, n, 0.8 ** (1.0 / sph), 0.15), 0.3, 1.2)
        steps = self.episode_steps + 1
        idx = np.arange(steps)
        exo = self._exo
        exo[:, OBS_LOAD] = load[:steps] / POWER_SCALE_KW
        exo[:, OBS_PV] = pv[:steps] / POWER_SCALE_KW
        exo[:, OBS_PRICE] = (price[:steps] - PRICE_REF) / PRICE_SCALE
        exo[:, OBS_FEED_IN] = (p.feed_in - PRICE_REF) / PRICE_SCALE
        angle = 2.0 * np.pi * (idx % per_day) / per_day
        exo[:, OBS_TOD_SIN] = np.sin(angle)
        exo[:, OBS_TOD_COS] = np.cos(angle)
        exo[:, OBS_CAPACITY] = p.capacity_kwh / CAPACITY_SCALE_KWH
        exo[:, OBS_POWER] = p.power_max_kw / POWER_SCALE_KW
        ahead = idx[:, None] + sph * np.arange(1, fh + 1)[None, :]
        exo[:, self.layout["price_forecast"]] = (price[ahead] - PRICE_REF) / PRICE_SCALE
        exo[:, self.layout["net_load_forecast"]] = (load[ahead] - pv[ahead]) / POWER_SCALE_KW
        np.clip(exo, -OBS_BOUND, OBS_BOUND, out=exo)
        self._load = load.tolist()
        self._pv = pv.tolist()
        self._price = price.tolist()

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[NDArray[np.float32], dict[str, Any]]:
        """Start at midnight with a random charge (``options``: ``soc_frac``)."""
        super().reset(seed=seed)
        opts = options or {}
        frac = float(self.np_random.uniform(0.1, 0.6))
        if "soc_frac" in opts:
            frac = float(opts["soc_frac"])
            if not 0.0 <= frac <= 1.0:
                raise ConfigError(f"HomeBattery.reset: soc_frac={frac!r} must be in [0, 1]")
        self._generate()
        self._t = 0
        self._soc = max(self._soc_min, frac * self._cap)
        self._soc0 = self._soc
        self._sum_cost = self._sum_import = self._sum_export = self._sum_through = 0.0
        return self._obs(), self._info(0, 0.0, 0.0, 0.0, 0.0)

    def _obs(self) -> NDArray[np.float32]:
        obs: NDArray[np.float32] = self._exo[self._t].copy()
        obs[OBS_SOC] = 2.0 * self._soc / self._cap - 1.0
        return obs

    def _info(self, t: int, cost: float, imp: float, exp: float, power: float) -> dict[str, Any]:
        return {
            "energy_cost": cost,
            "grid_import_kwh": imp,
            "grid_export_kwh": exp,
            "battery_power_kw": power,
            "soc_kwh": self._soc,
            "load_kw": self._load[t],
            "pv_kw": self._pv[t],
            "price": self._price[t],
            "episode_energy_cost": self._sum_cost,
            "episode_grid_import_kwh": self._sum_import,
            "episode_grid_export_kwh": self._sum_export,
            "episode_throughput_kwh": self._sum_through,
        }

    def _requested_power(self, action: BatteryAction, t: int) -> float:
        """Battery power (kW, + charging) the action asks for, before the charge limits."""
        pmax = self._pmax
        if self.continuous:
            u = float(np.asarray(action).reshape(-1)[0])
            return min(max(u, -1.0), 1.0) * pmax
        mode = int(action)
        if mode == SELF_CONSUMPTION:
            return min(max(self._pv[t] - self._load[t], -pmax), pmax)
        if mode == STORE_ONLY:
            return min(max(self._pv[t] - self._load[t], 0.0), pmax)
        if mode == GRID_CHARGE:
            return pmax
        if mode == DISCHARGE:
            return -pmax
        if mode == IDLE:
            return 0.0
        raise ValueError(f"HomeBattery: action {mode} is not a mode in [0, {len(MODES)})")

    def step(
        self, action: BatteryAction
    ) -> tuple[NDArray[np.float32], SupportsFloat, bool, bool, dict[str, Any]]:
        """Run the battery in the chosen mode (or at the chosen power) for one step."""
        t = self._t
        dt = self.dt_h
        power = self._requested_power(action, t)
        soc = self._soc
        if power > 0.0:
            room = self._cap - soc
            power = min(power, room / (self._eta_c * dt))
            soc += power * dt * self._eta_c
        elif power < 0.0:
            avail = soc - self._soc_min
            power = -min(-power, max(avail, 0.0) * self._eta_d / dt)
            soc += power * dt / self._eta_d
        self._soc = soc
        grid = self._load[t] - self._pv[t] + power
        if grid > 0.0:
            imp = grid * dt
            exp = 0.0
        else:
            imp = 0.0
            exp = -grid * dt
        through = abs(power) * dt
        cost = imp * self._price[t] - exp * self._feed_in + self._wear * through
        self._t = t + 1
        truncated = self._t >= self.episode_steps
        if truncated:
            cost -= (soc - self._soc0) * self._stored_value
        self._sum_cost += cost
        self._sum_import += imp
        self._sum_export += exp
        self._sum_through += through
        return (
            self._obs(),
            -cost * self._scale,
            False,
            truncated,
            self._info(t, cost, imp, exp, power),
        )

    def render(self) -> str | None:
        """A one-line text status (``render_mode="ansi"``)."""
        if self.render_mode != "ansi":
            return None
        t = self._t
        hour = (t % (24 * self.steps_per_hour)) / self.steps_per_hour
        return (
            f"{int(hour):02d}:{round((hour % 1) * 60):02d} soc {self._soc:5.2f} kWh "
            f"load {self._load[t]:4.2f} kW pv {self._pv[t]:4.2f} kW "
            f"price {self._price[t]:.2f} cost {self._sum_cost:.2f}"
        )
