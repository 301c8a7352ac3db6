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

from typing import Protocol

import numpy as np
from numpy.typing import NDArray

__all__ = ["TARIFFS", "TariffParams", "day_prices"]

TARIFFS = ("tou", "flat", "dynamic")


class TariffParams(Protocol):
    """The tariff fields a world's parameter dataclass carries."""

    @property
    def tariff(self) -> str: ...
    @property
    def price_offpeak(self) -> float: ...
    @property
    def price_mid(self) -> float: ...
    @property
    def price_peak(self) -> float: ...
    @property
    def peak_start_h(self) -> float: ...
    @property
    def peak_end_h(self) -> float: ...
    @property
    def offpeak_start_h(self) -> float: ...
    @property
    def offpeak_end_h(self) -> float: ...
    @property
    def price_noise_sd(self) -> float: ...


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
