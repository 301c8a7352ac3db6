"""Electricity tariffs shared by the home worlds (thermostat, battery).

Three kinds, all in $/kWh and constant within each clock hour:

- ``tou`` (time of use): ``price_offpeak`` at night (``offpeak_start_h`` to ``offpeak_end_h``,
  wrapping midnight), ``price_peak`` in the evening (``peak_start_h`` to ``peak_end_h``),
  ``price_mid`` otherwise. What most utilities offer heat-pump and battery owners today.
- ``flat``: ``price_mid`` all day; shifting load earns nothing.
- ``dynamic``: day-ahead wholesale-like prices: an evening peak near 18:30, a night trough near
  03:30 and a midday solar dip near 13:00, a random daily level and hourly noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from agents.exceptions import ConfigError
from agents.worlds.base import WorldParams, check_ranges

__all__ = ["TARIFFS", "TariffParams", "day_prices"]

TARIFFS = ("tou", "flat", "dynamic")


@dataclass(frozen=True)
class TariffParams(WorldParams):
    """The tariff fields of a home world's parameters: regime parameters, in $/kWh and hours.

    The thermostat's and the battery's parameter dataclasses derive from it, so a tariff is
    the same fields, defaults and checks in both, and a regime sets them by name.
    """

    tariff: str = "tou"
    """``tou`` (off-peak / mid / peak), ``flat`` or ``dynamic`` (noisy day-ahead prices)."""
    price_offpeak: float = 0.12
    """$/kWh during off-peak hours (night)."""
    price_mid: float = 0.25
    """$/kWh outside off-peak and peak hours; the flat tariff's price."""
    price_peak: float = 0.40
    """$/kWh during peak hours."""
    peak_start_h: float = 16.0
    peak_end_h: float = 20.0
    offpeak_start_h: float = 22.0
    offpeak_end_h: float = 7.0
    price_noise_sd: float = 0.03
    """Hourly price noise of the dynamic tariff, $/kWh."""

    def check_tariff(self, what: str) -> None:
        """Raise :class:`ConfigError` naming the first meaningless tariff field of ``what``."""
        check_ranges(
            self,
            what,
            non_negative=("price_offpeak", "price_mid", "price_peak", "price_noise_sd"),
            hours=("peak_start_h", "peak_end_h", "offpeak_start_h", "offpeak_end_h"),
        )
        if self.tariff not in TARIFFS:
            raise ConfigError(f"{what}: tariff={self.tariff!r} is not one of {TARIFFS}")


def day_prices(
    p: TariffParams, hours: NDArray[np.float64], rng: np.random.Generator
) -> NDArray[np.float64]:
    """Prices ($/kWh) of one day at ``hours`` (hours of day in [0, 24)).

    Only the ``dynamic`` tariff draws from ``rng`` (a daily level and 24 hourly shocks).
    """
    hour = np.floor(hours)
    if p.tariff == "flat":
        return np.full_like(hours, p.price_mid)
    if p.tariff == "tou":
        price = np.full_like(hours, p.price_mid)
        if p.offpeak_start_h > p.offpeak_end_h:
            off = (hour >= p.offpeak_start_h) | (hour < p.offpeak_end_h)
        else:
            off = (hour >= p.offpeak_start_h) & (hour < p.offpeak_end_h)
        price[off] = p.price_offpeak
        price[(hour >= p.peak_start_h) & (hour < p.peak_end_h)] = p.price_peak
        return price
    hourly = np.arange(24, dtype=np.float64) + 0.5
    shape = (
        p.price_mid
        + (p.price_peak - p.price_mid) * np.exp(-(((hourly - 18.5) / 1.5) ** 2))
        - (p.price_mid - p.price_offpeak) * np.exp(-(((hourly - 3.5) / 2.5) ** 2))
        - 0.7 * (p.price_mid - p.price_offpeak) * np.exp(-(((hourly - 13.0) / 2.0) ** 2))
    )
    level = rng.uniform(0.85, 1.15)
    prices = np.maximum(shape * level + rng.normal(0.0, p.price_noise_sd, 24), 0.01)
    return np.asarray(prices[hour.astype(np.int64) % 24], dtype=np.float64)
