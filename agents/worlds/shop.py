"""``society/Shop-v0``: an online shop's pricing and front page, facing drifting customers.

Each hour the shop sets a store-wide price level (a multiplier on its cost-plus list prices)
and picks the product it features on its front page. Visitors arrive by a Poisson process whose
rate follows the hour, the weekday and the season, and each chooses by a multinomial logit
(McFadden 1974) among the products in stock and not buying at all (the outside option, which
includes buying at a competitor):

    u_j = appeal_j + shift_j + e_j + feature_boost [j featured] - beta_s (m - 1)
    P(j) = exp(u_j) / (exp(outside_utility) + sum_k in stock exp(u_k))

``m`` is the price level (1 = list price = cost times ``1 + list_markup``), ``beta_s`` the price
sensitivity of the visitor's segment (bargain hunters or convenience buyers: a latent-class
logit, Kamakura & Russell 1989), ``shift_j`` the season's or the trend's preference shift and
``e_j`` the week's own taste noise. The segment mix follows the hour and the weekday (bargain
hunters in the evening and at weekends). Stock is delivered once a week, at the start of each
episode, up to ``stock_cover`` times the week's expected demand in regular trade: a product
that sells out is out until the next delivery, and its would-be buyers choose among the rest.

The reward is the hour's gross margin (revenue minus the cost of the goods sold). Everything
random (arrivals, each visitor's segment and the uniform draw that decides their choice, the
week's taste noise) is drawn at reset, so the same seed and actions give the same week, the
actions never change what the world draws (a copy played by another controller meets the same
visitors), and a step is plain float arithmetic.

Why an agent can beat the shop's rules and a contextual bandit: stock makes pricing
sequential (Gallego & van Ryzin 1994: with limited stock and a horizon the right price rises
as stock runs short), which a myopic bandit never learns; and the regimes change the customers
(price sensitivity, preferences, a competitor's sale) while the observation shows only their
behaviour, so a bandit's estimates from one regime mislead it in the next.
"""

from __future__ import annotations

import math
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from numpy.typing import NDArray

from agents.exceptions import ConfigError
from agents.worlds.base import ParamValue, World, WorldParams, check_ranges
from agents.worlds.drift import Regime

__all__ = [
    "N_PRODUCTS",
    "OBS_EMA_CONVERSION",
    "OBS_EMA_SALES",
    "OBS_EMA_VISITORS",
    "OBS_FEATURED",
    "OBS_HOUR_COS",
    "OBS_HOUR_SIN",
    "OBS_LAST_PRICE",
    "OBS_LAST_PROFIT",
    "OBS_LAST_SALES",
    "OBS_LAST_VISITORS",
    "OBS_STOCK",
    "OBS_WEEKEND",
    "OBS_WEEK_PROGRESS",
    "PRODUCTS",
    "PROFIT_SCALE",
    "SHOP_BASELINES",
    "SHOP_PRIMARY_BASELINE",
    "SHOP_REGIMES",
    "UNIT_SCALE",
    "VISITOR_SCALE",
    "FixedMarkup",
    "LinUCB",
    "LinearThompson",
    "Popularity",
    "Shop",
    "ShopParams",
]

PRODUCTS = ("classic", "premium", "budget", "seasonal")
"""The catalogue: four products of one line (``cost_k``, ``appeal_k`` are product ``k``'s)."""
N_PRODUCTS = len(PRODUCTS)

OBS_HOUR_SIN = 0
OBS_HOUR_COS = 1
OBS_WEEKEND = 2
OBS_WEEK_PROGRESS = 3
"""Share of the week (the time between two deliveries) gone, 0 .. 1."""
OBS_STOCK = slice(4, 4 + N_PRODUCTS)
"""Stock of each product as a share of its order-up-to level."""
OBS_LAST_VISITORS = 8
OBS_LAST_SALES = slice(9, 9 + N_PRODUCTS)
OBS_LAST_PROFIT = 13
"""The previous hour's gross margin, $ / ``PROFIT_SCALE``."""
OBS_EMA_VISITORS = 14
OBS_EMA_SALES = slice(15, 15 + N_PRODUCTS)
OBS_EMA_CONVERSION = 19
"""The last day's conversion: smoothed units over smoothed visitors, / ``CONVERSION_SCALE``."""
OBS_LAST_PRICE = 20
"""The previous hour's price level, -1 (lowest) .. 1 (highest)."""
OBS_FEATURED = slice(21, 21 + N_PRODUCTS)
"""One-hot: the product the previous hour featured."""
OBS_DIM = 21 + N_PRODUCTS

VISITOR_SCALE = 20.0
"""Visitors per hour are observed divided by 20."""
UNIT_SCALE = 5.0
"""Units sold per hour are observed divided by 5."""
PROFIT_SCALE = 100.0
"""The hour's gross margin is observed in hundreds of dollars."""
CONVERSION_SCALE = 0.25
"""Conversion (units per visitor) is observed divided by 0.25."""
EMA_HOURS = 24.0
"""Time constant of the smoothed visitors and sales (a shop's last-day dashboard)."""
OBS_BOUND = 10.0

_WEEKEND_TRAFFIC = 1.25
"""Weekend visitors relative to a weekday's."""
_OFFICE_HOURS = (9.0, 17.0)
"""Weekday hours when fewer bargain hunters shop."""


def _hour_profile(hour: float) -> float:
    """Relative visitors by hour of day: quiet nights, a lunch bump, an evening peak."""
    return (
        0.12
        + 0.55 * math.exp(-0.5 * ((hour - 12.5) / 1.5) ** 2)
        + 0.6 * (1.0 / (1.0 + math.exp(-(hour - 7.5))))
        - 0.6 * (1.0 / (1.0 + math.exp(-(hour - 23.0) * 2.0)))
        + 0.75 * math.exp(-0.5 * ((hour - 20.5) / 1.6) ** 2)
    )


def _bargain_bias(hour: float, *, weekend: bool) -> float:
    """Shift of the bargain hunters' share: more in the evening and at weekends, fewer at work."""
    bias = 0.2 * math.exp(-0.5 * ((hour - 21.0) / 2.0) ** 2)
    if weekend:
        return bias + 0.15
    if _OFFICE_HOURS[0] <= hour < _OFFICE_HOURS[1]:
        bias -= 0.15
    return bias


@dataclass(frozen=True)
class ShopParams(WorldParams):
    """Every parameter of the shop, with units. Defaults: a small shop in regular trade.

    Device parameters (one shop: what :meth:`Shop.sample_params` draws) are its catalogue,
    costs, markup, traffic, stock policy and clientele; regime parameters (what drift changes)
    are the season's traffic, price sensitivity, segment mix, preferences and competition.
    """

    # The catalogue: device parameters.
    cost_0: float = 12.0
    """Unit cost of product 0 (classic), $."""
    cost_1: float = 30.0
    """Unit cost of product 1 (premium), $."""
    cost_2: float = 6.0
    """Unit cost of product 2 (budget), $."""
    cost_3: float = 18.0
    """Unit cost of product 3 (seasonal), $."""
    appeal_0: float = -2.6
    """Utility of product 0 at its list price, not featured (logit units)."""
    appeal_1: float = -3.2
    appeal_2: float = -2.4
    appeal_3: float = -3.4
    list_markup: float = 0.5
    """List price = cost * (1 + list_markup): the shop's cost-plus rule."""
    price_step: float = 0.1
    """Price levels are list * (1 + price_step * (i - centre)), i = 0 .. n_price_levels - 1."""
    min_margin: float = 0.1
    """Margin floor: the lowest price level must sell at least this fraction above cost."""
    feature_boost: float = 0.7
    """Utility the front page adds to the featured product (logit units)."""
    # Traffic and stock: device parameters.
    visitors_per_hour: float = 12.0
    """Visitors per hour on weekdays, before the hour's profile (0.12 at night, 1.5 at the
    evening peak)."""
    visitor_noise_sd: float = 0.2
    """Standard deviation of the day's log-normal traffic factor."""
    appeal_noise_sd: float = 0.15
    """Standard deviation of each product's weekly taste noise (logit units)."""
    stock_cover: float = 1.25
    """Order-up-to level per product, as a multiple of its expected weekly demand in regular
    trade (list prices, each product featured a quarter of the time)."""
    # The clientele: device parameters.
    price_sensitivity_bargain: float = 6.0
    """Logit price coefficient of bargain hunters, per unit of relative price."""
    price_sensitivity_convenience: float = 2.0
    """Logit price coefficient of convenience buyers."""
    bargain_share: float = 0.45
    """Share of bargain hunters among visitors, before the hour's and the weekday's shift."""
    # The market: regime parameters.
    visitors_scale: float = 1.0
    """Multiplier on traffic (season)."""
    price_sensitivity_scale: float = 1.0
    """Multiplier on both segments' price sensitivity (recession, price comparison)."""
    bargain_share_shift: float = 0.0
    """Added to the bargain hunters' share."""
    outside_utility: float = 0.0
    """Utility of not buying here (a competitor's sale raises it), logit units."""
    shift_0: float = 0.0
    """Preference shift of product 0 (season, trend), logit units."""
    shift_1: float = 0.0
    shift_2: float = 0.0
    shift_3: float = 0.0
    reward_scale: float = 0.1
    """Reward = gross margin ($) * reward_scale."""
    # Structure: fixed for the world's life.
    n_price_levels: int = 5
    episode_days: int = 7
    """Days between two deliveries; one episode is one delivery cycle."""

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first meaningless value."""
        what = "Shop"
        check_ranges(
            self,
            what,
            positive=(
                "cost_0",
                "cost_1",
                "cost_2",
                "cost_3",
                "list_markup",
                "price_step",
                "visitors_per_hour",
                "stock_cover",
                "visitors_scale",
                "reward_scale",
            ),
            non_negative=(
                "min_margin",
                "feature_boost",
                "visitor_noise_sd",
                "appeal_noise_sd",
                "price_sensitivity_bargain",
                "price_sensitivity_convenience",
                "price_sensitivity_scale",
            ),
            fractions=("bargain_share",),
        )
        if self.n_price_levels < 2 or self.n_price_levels > 15:  # noqa: PLR2004
            raise ConfigError(f"{what}: n_price_levels={self.n_price_levels!r} must be in [2, 15]")
        if not 1 <= self.episode_days <= 28:  # noqa: PLR2004
            raise ConfigError(f"{what}: episode_days={self.episode_days!r} must be in [1, 28]")
        if not -1.0 <= self.bargain_share_shift <= 1.0:
            raise ConfigError(
                f"{what}: bargain_share_shift={self.bargain_share_shift!r} must be in [-1, 1]"
            )
        lowest = 1.0 - self.price_step * (self.n_price_levels - 1) / 2.0
        if lowest * (1.0 + self.list_markup) < 1.0 + self.min_margin:
            raise ConfigError(
                f"{what}: price_step={self.price_step!r} puts the lowest price level at "
                f"{lowest:.2f} x list, below the margin floor min_margin={self.min_margin!r} "
                f"with list_markup={self.list_markup!r}"
            )
        for name in ("appeal", "shift"):
            for k in range(N_PRODUCTS):
                value = getattr(self, f"{name}_{k}")
                if abs(value) > 20.0:  # noqa: PLR2004 - exp() must not overflow
                    raise ConfigError(f"{what}: {name}_{k}={value!r} must be in [-20, 20]")
        if abs(self.outside_utility) > 20.0:  # noqa: PLR2004
            raise ConfigError(
                f"{what}: outside_utility={self.outside_utility!r} must be in [-20, 20]"
            )

    def costs(self) -> tuple[float, ...]:
        return tuple(float(getattr(self, f"cost_{k}")) for k in range(N_PRODUCTS))

    def price_levels(self) -> tuple[float, ...]:
        """The price multipliers on list prices, lowest first."""
        centre = (self.n_price_levels - 1) / 2.0
        return tuple(1.0 + self.price_step * (i - centre) for i in range(self.n_price_levels))


SHOP_REGIMES: Mapping[str, Regime] = types.MappingProxyType(
    {
        r.name: r
        for r in (
            Regime("regular", {}, "regular trade: the shop's own device parameters"),
            Regime(
                "holiday",
                {
                    "visitors_scale": 1.4,
                    "price_sensitivity_scale": 0.75,
                    "shift_1": 0.4,
                    "shift_3": 0.2,
                },
                "gift season: more visitors, less price-sensitive, premium in demand",
            ),
            Regime(
                "competitor_sale",
                {"outside_utility": 1.0, "price_sensitivity_scale": 1.5},
                "a competitor's sale: visitors compare prices and many buy there",
            ),
            Regime(
                "trend",
                {"shift_3": 1.5, "shift_0": -0.7},
                "the seasonal product goes viral, the classic falls out of fashion",
            ),
            Regime(
                "summer",
                {
                    "visitors_scale": 0.85,
                    "shift_1": -1.0,
                    "shift_3": 0.8,
                    "bargain_share_shift": 0.1,
                },
                "fewer visitors, the seasonal product in season, premium out",
            ),
            Regime(
                "recession",
                {
                    "visitors_scale": 0.9,
                    "price_sensitivity_scale": 1.4,
                    "bargain_share_shift": 0.2,
                    "shift_1": -0.5,
                },
                "tight budgets: more bargain hunters, everyone more price-sensitive",
            ),
        )
    }
)
"""Seasons, trends and market changes of the shop."""

ShopAction = int | np.integer[Any]


class Shop(World[ShopParams, ShopAction]):
    """An online shop's hourly price level and front-page product (``society/Shop-v0``).

    Args:
        regime: the regime to start in (see :data:`SHOP_REGIMES`); default ``regular``.
        render_mode: ``None`` or ``"ansi"``.
        **params: overrides of :class:`ShopParams` (the shop).

    Action: ``Discrete(n_price_levels * 4)``; action ``a`` sets price level ``a // 4`` (0 the
    lowest, list price in the middle) and features product ``a % 4``.

    Observation (25 float32): hour of day (sin, cos), weekend flag, share of the week gone,
    stock of each product as a share of its order-up-to level, the previous hour's visitors
    (/ 20), units sold per product (/ 5) and gross margin ($ / 100), the last day's
    smoothed visitors and units per product (same scales) and conversion (units per visitor
    / 0.25), the previous price level (-1 .. 1) and the previously featured product
    (one-hot). Customers' preferences and price sensitivity are not observed; the regime is
    not either.

    Reward: the hour's gross margin times ``reward_scale``.

    ``info``: ``profit`` and ``revenue`` ($ this hour), ``units`` (per product, list),
    ``visitors``, ``price_level`` (multiplier), ``featured``, ``stock`` (per product, list,
    after the hour), and the episode totals ``episode_profit``, ``episode_revenue``,
    ``episode_units``, ``episode_visitors``, ``episode_conversion`` (units per visitor) and
    ``episode_stockout_hours`` (product-hours out of stock).
    """

    regimes: ClassVar[Mapping[str, Regime]] = SHOP_REGIMES
    default_regime: ClassVar[str | None] = "regular"
    structural_params: ClassVar[frozenset[str]] = frozenset({"n_price_levels", "episode_days"})
    metrics: ClassVar[Mapping[str, str]] = types.MappingProxyType(
        {
            "profit": "episode_profit",
            "revenue": "episode_revenue",
            "units_sold": "episode_units",
            "conversion": "episode_conversion",
            "stockout_hours": "episode_stockout_hours",
        }
    )

    def __init__(
        self, *, regime: str | None = None, render_mode: str | None = None, **params: ParamValue
    ) -> None:
        super().__init__(ShopParams(), params, regime=regime, render_mode=render_mode)
        p = self.base_params
        # The shop's usual trade (the device's, whatever the regime) sets its orders.
        self._usual_demand = self.expected_weekly_demand(p)
        self._order_up_to = [max(1, round(p.stock_cover * d)) for d in self._usual_demand]
        self.episode_steps = p.episode_days * 24
        self.n_levels = p.n_price_levels
        self._centre = (self.n_levels - 1) / 2.0
        self.observation_space = spaces.Box(
            -OBS_BOUND, OBS_BOUND, shape=(OBS_DIM,), dtype=np.float32
        )
        self.action_space: spaces.Space[ShopAction] = spaces.Discrete(self.n_levels * N_PRODUCTS)
        hours = [(t % 24) + 0.5 for t in range(self.episode_steps)]
        weekend = [(t // 24) % 7 >= 5 for t in range(self.episode_steps)]  # noqa: PLR2004
        self._profile = [
            _hour_profile(h) * (_WEEKEND_TRAFFIC if w else 1.0)
            for h, w in zip(hours, weekend, strict=True)
        ]
        self._bias_arr = np.array(
            [_bargain_bias(h, weekend=w) for h, w in zip(hours, weekend, strict=True)]
        )
        self._profile_arr = np.array(self._profile)
        clock = np.zeros((self.episode_steps + 1, 4), dtype=np.float32)
        t = np.arange(self.episode_steps + 1)
        angle = 2.0 * np.pi * (t % 24) / 24.0
        clock[:, OBS_HOUR_SIN] = np.sin(angle)
        clock[:, OBS_HOUR_COS] = np.cos(angle)
        clock[:, OBS_WEEKEND] = ((t // 24) % 7 >= 5).astype(np.float32)  # noqa: PLR2004
        clock[:, OBS_WEEK_PROGRESS] = t / self.episode_steps
        self._clock = clock.tolist()
        self._ema_keep = math.exp(-1.0 / EMA_HOURS)
        self._starts: list[int] = [0] * (self.episode_steps + 1)
        self._seg: list[bool] = []
        self._u: list[float] = []
        self._reset_state()
        self._weights: list[list[list[float]]] = [[], []]
        self._totals: list[list[float]] = [[], []]

    # --- parameters ----------------------------------------------------------------------

    def _params_changed(self) -> None:
        p = self.params
        self._costs = p.costs()
        self._levels = p.price_levels()
        self._list = tuple(c * (1.0 + p.list_markup) for c in self._costs)
        # margin[l][k]: $ earned per unit of product k sold at price level l
        self._margin = [[lp * m - c for lp, c in zip(self._list, self._costs, strict=True)]
                        for m in self._levels]  # fmt: skip
        self._price = [[lp * m for lp in self._list] for m in self._levels]
        self._scale = p.reward_scale
        betas = np.array([p.price_sensitivity_convenience, p.price_sensitivity_bargain])
        betas *= p.price_sensitivity_scale
        levels = np.asarray(self._levels)
        price = np.exp(-betas[:, None] * (levels[None, :] - 1.0))  # [segment, level]
        boost = 1.0 + (math.exp(p.feature_boost) - 1.0) * np.eye(N_PRODUCTS)  # [featured, k]
        # exp(utility - appeal) by segment, action (level * 4 + featured) and product
        self._price_boost = (price[:, :, None, None] * boost).reshape(
            2, len(self._levels) * N_PRODUCTS, N_PRODUCTS
        )
        # Below this many visitors an hour every observed count is within OBS_BOUND (units
        # never exceed visitors; an hour's margin is at most visitors * the largest margin).
        top = max(max(row) for row in self._margin)
        self._safe_visitors = int(
            min(OBS_BOUND * VISITOR_SCALE, OBS_BOUND * UNIT_SCALE, OBS_BOUND * PROFIT_SCALE / top)
        )
        self._outside = math.exp(p.outside_utility)

    @staticmethod
    def expected_weekly_demand(params: ShopParams) -> list[float]:
        """Units per product a week of regular trade sells at list prices (no noise).

        Each product featured a quarter of the time, every product in stock: the figure the
        shop's buyer orders from (``stock_cover`` times it).
        """
        out = [0.0] * N_PRODUCTS
        appeal = [float(getattr(params, f"appeal_{k}")) for k in range(N_PRODUCTS)]
        visitors = 0.0
        for t in range(params.episode_days * 24):
            hour = (t % 24) + 0.5
            weekend = (t // 24) % 7 >= 5  # noqa: PLR2004
            visitors += _hour_profile(hour) * (_WEEKEND_TRAFFIC if weekend else 1.0)
        visitors *= params.visitors_per_hour
        for featured in range(N_PRODUCTS):
            w = [
                math.exp(a + (params.feature_boost if k == featured else 0.0))
                for k, a in enumerate(appeal)
            ]
            total = 1.0 + sum(w)
            for k in range(N_PRODUCTS):
                out[k] += visitors * w[k] / total / N_PRODUCTS
        return out

    @property
    def order_up_to(self) -> tuple[int, ...]:
        """Units each product is restocked to at each delivery (the start of an episode)."""
        return tuple(self._order_up_to)

    @property
    def list_prices(self) -> tuple[float, ...]:
        return tuple(self._list)

    @property
    def price_multipliers(self) -> tuple[float, ...]:
        return tuple(self._levels)

    def unit_margins(self, level: int) -> tuple[float, ...]:
        """$ per unit of each product sold at price level ``level``."""
        return tuple(self._margin[level])

    @classmethod
    def sample_params(cls, rng: np.random.Generator) -> dict[str, ParamValue]:
        """One shop: its costs, how its products appeal, its markup, traffic, stock, clientele."""
        cost_ranges = ((8.0, 16.0), (22.0, 40.0), (4.0, 8.0), (12.0, 24.0))
        appeal_ref = (-2.6, -3.2, -2.4, -3.4)
        out: dict[str, ParamValue] = {}
        for k, (low, high) in enumerate(cost_ranges):
            out[f"cost_{k}"] = round(float(rng.uniform(low, high)), 2)
        for k, ref in enumerate(appeal_ref):
            out[f"appeal_{k}"] = round(ref + float(rng.uniform(-0.3, 0.3)), 3)
        out["list_markup"] = round(float(rng.uniform(0.4, 0.7)), 3)
        out["visitors_per_hour"] = round(float(rng.uniform(8.0, 18.0)), 2)
        out["stock_cover"] = round(float(rng.uniform(1.05, 1.5)), 3)
        out["price_sensitivity_bargain"] = round(float(rng.uniform(5.0, 7.0)), 3)
        out["price_sensitivity_convenience"] = round(float(rng.uniform(1.5, 2.5)), 3)
        out["bargain_share"] = round(float(rng.uniform(0.35, 0.55)), 3)
        return out

    # --- episodes ------------------------------------------------------------------------

    def _reset_state(self) -> None:
        self._t = 0
        self._stock = [0] * N_PRODUCTS
        self._last_visitors = 0
        self._last_units = [0] * N_PRODUCTS
        self._last_profit = 0.0
        self._last_level = (self.n_levels - 1) // 2
        self._last_featured = -1
        self._ema_visitors = 0.0
        self._ema_units = [0.0] * N_PRODUCTS
        self._crowded = False
        self._sum_profit = self._sum_revenue = 0.0
        self._sum_units = self._sum_visitors = self._sum_stockout = 0

    def _generate(self) -> None:
        """Draw the week: visitors per hour, each one's segment and choice draw, taste noise."""
        p = self.params
        rng = self.np_random
        n = self.episode_steps
        days = p.episode_days
        daily = np.exp(rng.normal(-0.5 * p.visitor_noise_sd**2, p.visitor_noise_sd, days))
        rate = self._profile_arr * np.repeat(daily, 24)
        rate *= p.visitors_per_hour * p.visitors_scale
        counts = rng.poisson(rate)
        total = int(counts.sum())
        starts = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(counts, out=starts[1:])
        share = np.clip(p.bargain_share + p.bargain_share_shift + self._bias_arr, 0.0, 1.0)
        per_visitor_share = np.repeat(share, counts)
        self._seg = (rng.random(total) < per_visitor_share).tolist()
        self._u = rng.random(total).tolist()
        self._starts = starts.tolist()
        noise = rng.normal(0.0, p.appeal_noise_sd, N_PRODUCTS)
        appeal = [
            float(getattr(p, f"appeal_{k}")) + float(getattr(p, f"shift_{k}")) + float(noise[k])
            for k in range(N_PRODUCTS)
        ]
        w = np.exp(np.asarray(appeal)) * self._price_boost  # [segment, action, product]
        # weights[segment][action][k] = exp(u_k); totals[segment][action] = sum over k
        weights: list[list[list[float]]] = w.tolist()
        totals: list[list[float]] = w.sum(axis=2).tolist()
        self._weights = weights
        self._totals = totals

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[NDArray[np.float32], dict[str, Any]]:
        """Start the week with a delivery (``options``: ``stock_frac``, the share restocked)."""
        super().reset(seed=seed)
        opts = options or {}
        frac = 1.0
        if "stock_frac" in opts:
            frac = float(opts["stock_frac"])
            if not 0.0 <= frac <= 1.0:
                raise ConfigError(f"Shop.reset: stock_frac={frac!r} must be in [0, 1]")
        self._generate()
        self._reset_state()
        self._stock = [round(frac * q) for q in self._order_up_to]
        # The dashboard starts from the shop's usual trade, not from this week's customers.
        hours = self.episode_steps
        self._ema_units = [u / hours for u in self._usual_demand]
        self._ema_visitors = sum(self._profile) * self.base_params.visitors_per_hour / hours
        return self._obs(), self._info(0.0, 0.0, [0] * N_PRODUCTS, 0, level=1.0, featured=-1)

    def _obs(self) -> NDArray[np.float32]:
        q = self._order_up_to
        s = self._stock
        u = self._last_units
        e = self._ema_units
        featured = [0.0, 0.0, 0.0, 0.0]
        if self._last_featured >= 0:
            featured[self._last_featured] = 1.0
        ema_visitors = self._ema_visitors
        values = [
            *self._clock[self._t],
            s[0] / q[0], s[1] / q[1], s[2] / q[2], s[3] / q[3],
            self._last_visitors / VISITOR_SCALE,
            u[0] / UNIT_SCALE, u[1] / UNIT_SCALE, u[2] / UNIT_SCALE, u[3] / UNIT_SCALE,
            self._last_profit / PROFIT_SCALE,
            ema_visitors / VISITOR_SCALE,
            e[0] / UNIT_SCALE, e[1] / UNIT_SCALE, e[2] / UNIT_SCALE, e[3] / UNIT_SCALE,
            (e[0] + e[1] + e[2] + e[3]) / (ema_visitors * CONVERSION_SCALE)
            if ema_visitors > 0.0
            else 0.0,
            (self._last_level - self._centre) / self._centre,
            *featured,
        ]  # fmt: skip
        obs = np.array(values, dtype=np.float32)
        if self._crowded:  # counts that large may pass the bound: cut them to it
            np.minimum(obs, OBS_BOUND, out=obs)
        return obs

    def _info(
        self,
        profit: float,
        revenue: float,
        units: list[int],
        visitors: int,
        *,
        level: float,
        featured: int,
    ) -> dict[str, Any]:
        return {
            "profit": profit,
            "revenue": revenue,
            "units": units,
            "visitors": visitors,
            "price_level": level,
            "featured": featured,
            "stock": list(self._stock),
            "episode_profit": self._sum_profit,
            "episode_revenue": self._sum_revenue,
            "episode_units": float(self._sum_units),
            "episode_visitors": float(self._sum_visitors),
            "episode_conversion": self._sum_units / self._sum_visitors
            if self._sum_visitors
            else 0.0,
            "episode_stockout_hours": float(self._sum_stockout),
        }

    def _serve(self, a: int, lo: int, hi: int) -> list[int]:
        """Walk visitors ``lo .. hi`` through the logit under action ``a``; units sold."""
        stock = self._stock
        w_conv = self._weights[0][a]
        w_barg = self._weights[1][a]
        outside = self._outside
        if stock[0] and stock[1] and stock[2] and stock[3]:
            tot_conv = outside + self._totals[0][a]
            tot_barg = outside + self._totals[1][a]
        else:
            tot_conv = outside + sum(w for w, s in zip(w_conv, stock, strict=True) if s)
            tot_barg = outside + sum(w for w, s in zip(w_barg, stock, strict=True) if s)
        units = [0, 0, 0, 0]
        seg = self._seg
        uni = self._u
        for i in range(lo, hi):
            if seg[i]:
                r = uni[i] * tot_barg - outside
                w = w_barg
            else:
                r = uni[i] * tot_conv - outside
                w = w_conv
            if r < 0.0:
                continue  # buys nothing here
            for k in range(N_PRODUCTS):
                if stock[k]:
                    r -= w[k]
                    if r < 0.0:
                        units[k] += 1
                        stock[k] -= 1
                        if not stock[k]:  # sold out: the rest choose among what is left
                            tot_conv -= w_conv[k]
                            tot_barg -= w_barg[k]
                        break
        return units

    def step(
        self, action: ShopAction
    ) -> tuple[NDArray[np.float32], SupportsFloat, bool, bool, dict[str, Any]]:
        """Serve one hour's visitors at the chosen price level with the chosen product featured."""
        a = int(action)
        if not 0 <= a < self.n_levels * N_PRODUCTS:
            raise ValueError(
                f"Shop: action {a} is not in [0, {self.n_levels * N_PRODUCTS}): "
                "price level * 4 + featured product"
            )
        level, featured = divmod(a, N_PRODUCTS)
        t = self._t
        lo = self._starts[t]
        hi = self._starts[t + 1]
        units = self._serve(a, lo, hi)
        stock = self._stock
        margin = self._margin[level]
        price = self._price[level]
        profit = (
            units[0] * margin[0] + units[1] * margin[1] + units[2] * margin[2]
            + units[3] * margin[3]
        )  # fmt: skip
        revenue = (
            units[0] * price[0] + units[1] * price[1] + units[2] * price[2] + units[3] * price[3]
        )
        visitors = hi - lo
        sold = units[0] + units[1] + units[2] + units[3]
        keep = self._ema_keep
        fresh = 1.0 - keep
        e = self._ema_units
        self._ema_units = [
            keep * e[0] + fresh * units[0], keep * e[1] + fresh * units[1],
            keep * e[2] + fresh * units[2], keep * e[3] + fresh * units[3],
        ]  # fmt: skip
        self._ema_visitors = keep * self._ema_visitors + fresh * visitors
        if visitors > self._safe_visitors:
            self._crowded = True  # until the episode ends: the smoothed counts remember it
        self._last_visitors = visitors
        self._last_units = units
        self._last_profit = profit
        self._last_level = level
        self._last_featured = featured
        self._sum_profit += profit
        self._sum_revenue += revenue
        self._sum_units += sold
        self._sum_visitors += visitors
        self._sum_stockout += (not stock[0]) + (not stock[1]) + (not stock[2]) + (not stock[3])
        self._t = t + 1
        truncated = self._t >= self.episode_steps
        info = self._info(
            profit, revenue, units, visitors, level=self._levels[level], featured=featured
        )
        return self._obs(), profit * self._scale, False, truncated, info

    def render(self) -> str | None:
        """A one-line text status (``render_mode="ansi"``)."""
        if self.render_mode != "ansi":
            return None
        t = self._t
        day, hour = divmod(t, 24)
        stock = " ".join(f"{s:3d}" for s in self._stock)
        return (
            f"day {day} {hour:02d}:00 stock [{stock}] level "
            f"{self._levels[self._last_level]:.2f} featured {self._last_featured} "
            f"profit {self._sum_profit:8.2f} $"
        )


# --- baselines: the shop's rules and contextual bandits ----------------------------------------


def _shop(env: gym.Env[Any, Any]) -> Shop:
    world = env.unwrapped
    if not isinstance(world, Shop):
        raise ConfigError(f"this baseline needs a Shop world, got {type(world).__name__}")
    return world


class FixedMarkup:
    """Cost-plus pricing at list price, the highest-margin product in stock on the front page.

    The rule most small shops run: a fixed markup on cost (``list_markup``), never changed by
    the hour, and the product that earns most per unit featured while it is in stock.
    """

    def __init__(self, env: gym.Env[Any, Any]) -> None:
        world = _shop(env)
        self.level = (world.n_levels - 1) // 2
        margins = world.unit_margins(self.level)
        self.order = sorted(range(N_PRODUCTS), key=lambda k: -margins[k])

    def reset(self) -> None:
        """Stateless."""

    def act(self, obs: NDArray[np.float32]) -> Any:
        stock = obs[OBS_STOCK]
        featured = next((k for k in self.order if stock[k] > 0.0), self.order[0])
        return np.int64(self.level * N_PRODUCTS + featured)


class Popularity:
    """Cost-plus pricing at list price, the best seller of the last day on the front page.

    Popularity is the standard non-personalised recommender ("most popular", a strong
    baseline on top-N recommendation, Cremonesi, Koren & Turrin 2010): it follows a trend as
    soon as sales show it. It reads the smoothed sales of the observation and features the
    product with the most, among those in stock.
    """

    def __init__(self, env: gym.Env[Any, Any]) -> None:
        world = _shop(env)
        self.level = (world.n_levels - 1) // 2

    def reset(self) -> None:
        """Stateless: the sales history is in the observation."""

    def act(self, obs: NDArray[np.float32]) -> Any:
        stock = obs[OBS_STOCK]
        sales = obs[OBS_EMA_SALES]
        ranked = sorted(range(N_PRODUCTS), key=lambda k: (-float(sales[k]), k))
        featured = next((k for k in ranked if stock[k] > 0.0), ranked[0])
        return np.int64(self.level * N_PRODUCTS + featured)


def bandit_context(obs: NDArray[np.float32]) -> NDArray[np.float64]:
    """The context a shop's bandit sees: a bias, the clock and the stock.

    Hour of day (sin, cos), weekend, share of the week gone and the stock of each product:
    what the shop knows before the hour's visitors arrive. The sales figures are the
    bandit's rewards, not its context.
    """
    x = np.empty(5 + N_PRODUCTS, dtype=np.float64)
    x[0] = 1.0
    x[1:5] = obs[OBS_HOUR_SIN : OBS_WEEK_PROGRESS + 1]
    x[5:] = obs[OBS_STOCK]
    return x


class _LinearBandit:
    """Disjoint linear bandit over every action: per arm a ridge regression of the reward.

    The reward of an action is read from the next observation: the previous hour's gross
    margin per visitor (``OBS_LAST_PROFIT`` over ``OBS_LAST_VISITORS``, in $; "revenue per
    session", the figure shops test prices on: visitors come whatever the price, so the best
    action per visitor is the best action, and an hour's traffic no longer hides the price's
    effect). The bandit runs through the same
    ``reset``/``act`` loop as every controller and learns online over its whole life; an
    episode's last hour, whose outcome no observation of that episode shows, is not learned
    from. ``reset`` forgets only the pending action, never the estimates.
    """

    def __init__(self, env: gym.Env[Any, Any], *, ridge: float = 1.0) -> None:
        world = _shop(env)
        self.n_arms = world.n_levels * N_PRODUCTS
        self.dim = 5 + N_PRODUCTS
        eye = np.eye(self.dim)
        self.a_inv = np.repeat((eye / ridge)[None, :, :], self.n_arms, axis=0)
        self.b = np.zeros((self.n_arms, self.dim))
        self.theta = np.zeros((self.n_arms, self.dim))
        self.pulls = np.zeros(self.n_arms, dtype=np.int64)
        self._pending: tuple[int, NDArray[np.float64]] | None = None

    def reset(self) -> None:
        self._pending = None

    def update(self, arm: int, x: NDArray[np.float64], reward: float) -> None:
        """Sherman-Morrison update of arm ``arm``'s ridge regression with ``(x, reward)``."""
        a_inv = self.a_inv[arm]
        ax = a_inv @ x
        a_inv -= np.outer(ax, ax) / (1.0 + float(x @ ax))
        self.b[arm] += reward * x
        self.theta[arm] = a_inv @ self.b[arm]
        self.pulls[arm] += 1
        self._updated(arm)

    def _updated(self, arm: int) -> None:
        """Hook for subclasses that cache per-arm quantities."""

    def choose(self, x: NDArray[np.float64]) -> int:
        raise NotImplementedError

    def act(self, obs: NDArray[np.float32]) -> Any:
        visitors = round(float(obs[OBS_LAST_VISITORS]) * VISITOR_SCALE)
        if self._pending is not None and visitors > 0:
            arm, x_prev = self._pending
            self.update(arm, x_prev, float(obs[OBS_LAST_PROFIT]) * PROFIT_SCALE / visitors)
        x = bandit_context(obs)
        arm = self.choose(x)
        self._pending = (arm, x)
        return np.int64(arm)


class LinUCB(_LinearBandit):
    """LinUCB with disjoint linear models (Li, Chu, Langford & Schapire 2010, Algorithm 1).

    Each hour it plays the action with the highest upper confidence bound
    ``theta_a . x + alpha sqrt(x' A_a^-1 x)``. It has no forgetting: every hour it has lived
    weighs the same, which is what makes its estimates from an earlier regime mislead it.
    ``alpha = 3`` is the best of {0.3, 1, 3, 10} over its first 200 weeks of regular trade
    (docs/worlds.md).
    """

    def __init__(self, env: gym.Env[Any, Any], *, alpha: float = 3.0, ridge: float = 1.0) -> None:
        if alpha < 0 or ridge <= 0:
            raise ConfigError(f"LinUCB: alpha={alpha} must be >= 0 and ridge={ridge} > 0")
        super().__init__(env, ridge=ridge)
        self.alpha = alpha

    def choose(self, x: NDArray[np.float64]) -> int:
        width = np.einsum("adk,d,k->a", self.a_inv, x, x)
        ucb = self.theta @ x + self.alpha * np.sqrt(np.maximum(width, 0.0))
        return int(np.argmax(ucb))


class LinearThompson(_LinearBandit):
    """Linear Thompson sampling (Agrawal & Goyal 2013), one posterior per action.

    Each hour it draws ``theta_a ~ N(theta_a_hat, v^2 A_a^-1)`` for every action and plays the
    best draw. ``v = 1`` is the best of {0.1, 0.3, 1, 3} over its first 200 weeks of regular
    trade (docs/worlds.md); the draws come from its own generator (``seed``), so a run is
    reproducible.
    """

    def __init__(
        self, env: gym.Env[Any, Any], *, v: float = 1.0, ridge: float = 1.0, seed: int = 0
    ) -> None:
        if v < 0 or ridge <= 0:
            raise ConfigError(f"LinearThompson: v={v} must be >= 0 and ridge={ridge} > 0")
        super().__init__(env, ridge=ridge)
        self.v = v
        self.rng = np.random.default_rng(seed)
        self.chol = np.linalg.cholesky(self.a_inv)

    def _updated(self, arm: int) -> None:
        sym = 0.5 * (self.a_inv[arm] + self.a_inv[arm].T)
        self.chol[arm] = np.linalg.cholesky(sym)

    def choose(self, x: NDArray[np.float64]) -> int:
        z = self.rng.standard_normal((self.n_arms, self.dim))
        draws = self.theta + self.v * np.einsum("adk,ak->ad", self.chol, z)
        return int(np.argmax(draws @ x))


SHOP_BASELINES: Mapping[str, Callable[[gym.Env[Any, Any]], Any]] = types.MappingProxyType(
    {
        "fixed_markup": FixedMarkup,
        "popularity": Popularity,
        "linucb": LinUCB,
        "thompson": LinearThompson,
    }
)
"""The shop's controllers, as ``agents.worlds.baselines.BASELINES["society/Shop-v0"]``."""

SHOP_PRIMARY_BASELINE = "fixed_markup"
"""The rule the shop runs today, what an agent starts from and is guarded against: the
bandits learn as they go (their score depends on how long they have lived, and cloning one
would clone its exploration), so the reference is the fixed rule, the stronger of the two rules
(in every regime but the holiday season, where they tie)."""
