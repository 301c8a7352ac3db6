"""The shop: customers who choose by a logit, stock that runs out, rules and bandits."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from agents.exceptions import ConfigError
from agents.worlds import (
    BASELINES,
    PRIMARY_BASELINE,
    SHOP_ID,
    Shop,
    make_world,
    run_controller,
)
from agents.worlds.shop import (
    N_PRODUCTS,
    OBS_EMA_SALES,
    OBS_FEATURED,
    OBS_LAST_PRICE,
    OBS_LAST_PROFIT,
    OBS_LAST_SALES,
    OBS_LAST_VISITORS,
    OBS_STOCK,
    PROFIT_SCALE,
    SHOP_REGIMES,
    UNIT_SCALE,
    VISITOR_SCALE,
    FixedMarkup,
    LinUCB,
    Popularity,
)

SEEDS = tuple(range(30, 38))


class Constant:
    """Always the same action."""

    def __init__(self, action: int) -> None:
        self.action = action

    def reset(self) -> None:
        pass

    def act(self, obs: Any) -> Any:
        return np.int64(self.action)


def week(env: Shop, action: int, seed: int) -> list[dict[str, Any]]:
    env.reset(seed=seed)
    infos = []
    done = False
    while not done:
        _, _, terminated, truncated, info = env.step(np.int64(action))
        infos.append(info)
        done = terminated or truncated
    return infos


def action(level: int, featured: int) -> int:
    return level * N_PRODUCTS + featured


def test_a_week_is_one_delivery_cycle_of_hourly_steps() -> None:
    env = Shop()
    obs, _ = env.reset(seed=0)
    assert env.episode_steps == 7 * 24
    assert list(obs[OBS_STOCK]) == [1.0] * N_PRODUCTS  # the delivery came this morning
    infos = week(env, action(2, 0), seed=0)
    assert len(infos) == env.episode_steps
    assert all(s >= 0 for info in infos for s in info["stock"])


def test_nothing_is_sold_that_is_not_in_stock() -> None:
    env = Shop()
    infos = week(env, action(0, 3), seed=1)  # cheapest, the smallest stock featured
    sold = np.sum([info["units"] for info in infos], axis=0)
    assert list(sold + np.asarray(infos[-1]["stock"])) == list(env.order_up_to)
    assert infos[-1]["stock"][3] == 0  # it sold out ...
    assert infos[-1]["episode_stockout_hours"] > 0  # ... and stayed out until the delivery
    out = next(k for k, info in enumerate(infos) if info["stock"][3] == 0)
    assert all(info["units"][3] == 0 for info in infos[out + 1 :])


def test_the_buyer_orders_from_the_usual_demand() -> None:
    env = Shop(stock_cover=50.0)  # stock never binds: sales are the demand
    expected = Shop.expected_weekly_demand(env.base_params)
    sold = np.zeros(N_PRODUCTS)
    for seed in range(40):
        for featured in range(N_PRODUCTS):
            infos = week(env, action(2, featured), seed=seed)
            sold += np.sum([info["units"] for info in infos], axis=0)
    sold /= 40 * N_PRODUCTS
    assert sold == pytest.approx(expected, rel=0.08)
    assert Shop().order_up_to == tuple(round(1.25 * d) for d in expected)


def test_higher_prices_sell_less_and_earn_more_per_unit() -> None:
    env = Shop(stock_cover=50.0)
    cheap = [week(env, action(0, 0), seed)[-1] for seed in SEEDS]
    dear = [week(env, action(4, 0), seed)[-1] for seed in SEEDS]
    assert sum(i["episode_units"] for i in cheap) > 1.3 * sum(i["episode_units"] for i in dear)

    def per_unit(infos: list[dict[str, Any]]) -> float:
        revenue = sum(float(i["episode_revenue"]) for i in infos)
        return revenue / sum(float(i["episode_units"]) for i in infos)

    assert per_unit(dear) > per_unit(cheap)


def test_the_front_page_sells_the_featured_product() -> None:
    env = Shop(stock_cover=50.0)
    for product in range(N_PRODUCTS):
        featured = sum(
            sum(info["units"][product] for info in week(env, action(2, product), seed))
            for seed in SEEDS
        )
        other = sum(
            sum(info["units"][product] for info in week(env, action(2, (product + 1) % 4), seed))
            for seed in SEEDS
        )
        assert featured > 1.3 * other


def test_actions_do_not_change_what_the_world_draws() -> None:
    env = Shop()
    visitors = [[info["visitors"] for info in week(env, a, seed=5)] for a in (0, 7, 19)]
    assert visitors[0] == visitors[1] == visitors[2]


def test_the_observation_reports_the_last_hour_and_the_reward() -> None:
    env = Shop()
    env.reset(seed=2)
    for _ in range(30):
        obs, reward, _, _, info = env.step(np.int64(action(3, 1)))
    while info["profit"] == 0.0:
        obs, reward, _, _, info = env.step(np.int64(action(3, 1)))
    assert float(obs[OBS_LAST_PROFIT]) * PROFIT_SCALE == pytest.approx(info["profit"], rel=1e-6)
    assert float(reward) == pytest.approx(info["profit"] * env.params.reward_scale)
    assert float(obs[OBS_LAST_VISITORS]) * VISITOR_SCALE == pytest.approx(info["visitors"])
    assert list(obs[OBS_LAST_SALES] * UNIT_SCALE) == pytest.approx(info["units"])
    assert float(obs[OBS_LAST_PRICE]) == pytest.approx(0.5)
    assert list(obs[OBS_FEATURED]) == [0.0, 1.0, 0.0, 0.0]
    assert info["price_level"] == pytest.approx(1.1)


@pytest.mark.parametrize("regime", sorted(SHOP_REGIMES))
def test_a_week_starts_alike_in_every_regime(regime: str) -> None:
    # The regime shows only in how customers behave, never in the first observation.
    first, _ = Shop().reset(seed=9)
    other, _ = Shop(regime=regime).reset(seed=9)
    assert np.array_equal(first, other)


def test_regimes_change_the_customers() -> None:
    def mean(regime: str, metric: str) -> float:
        return run_controller(
            Constant(action(2, 0)), SHOP_ID, seeds=SEEDS, regime=regime,
            env_kwargs={"stock_cover": 50.0},
        ).mean(metric)  # fmt: skip

    assert mean("holiday", "units_sold") > 1.3 * mean("regular", "units_sold")
    assert mean("competitor_sale", "conversion") < 0.7 * mean("regular", "conversion")
    trend = run_controller(Constant(action(2, 1)), SHOP_ID, seeds=SEEDS, regime="trend")
    assert trend.mean("stockout_hours") > 24  # the viral product sells out


def test_regimes_are_not_cumulative() -> None:
    env = Shop()
    env.set_regime("holiday")
    env.set_regime("trend")
    assert env.params.visitors_scale == 1.0
    assert env.params.shift_3 == SHOP_REGIMES["trend"].params["shift_3"]


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"cost_1": -3.0}, "cost_1"),
        ({"price_step": 0.3}, "min_margin"),
        ({"n_price_levels": 1}, "n_price_levels"),
        ({"bargain_share": 1.5}, "bargain_share"),
        ({"appeal_2": 50.0}, "appeal_2"),
        ({"episode_days": 0}, "episode_days"),
        ({"stock_cover": "lots"}, "stock_cover"),
        ({"regime": "black_friday"}, "black_friday"),
    ],
)
def test_bad_parameters_are_named(kwargs: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        Shop(**kwargs)


def test_a_regime_cannot_change_the_action_space() -> None:
    with pytest.raises(ConfigError, match="n_price_levels"):
        Shop().apply_regime({"n_price_levels": 7})


def test_bad_actions_and_options_are_refused() -> None:
    env = Shop()
    env.reset(seed=0)
    with pytest.raises(ValueError, match="price level"):
        env.step(np.int64(20))
    with pytest.raises(ConfigError, match="stock_frac"):
        env.reset(options={"stock_frac": 2.0})
    obs, _ = env.reset(options={"stock_frac": 0.5})
    assert float(obs[OBS_STOCK][0]) == pytest.approx(0.5, abs=0.01)


def test_the_price_levels_keep_the_margin_floor() -> None:
    env = Shop(list_markup=0.4, price_step=0.1)
    lowest = min(env.unit_margins(0)[k] / env.base_params.costs()[k] for k in range(N_PRODUCTS))
    assert lowest >= env.base_params.min_margin
    assert env.price_multipliers == pytest.approx((0.8, 0.9, 1.0, 1.1, 1.2))


def test_fixed_markup_features_the_best_margin_in_stock() -> None:
    env = make_world(SHOP_ID)
    rule = FixedMarkup(env)
    obs, _ = env.reset(seed=0)
    assert int(rule.act(obs)) == action(2, 1)  # premium earns most per unit
    obs[OBS_STOCK.start + 1] = 0.0
    assert int(rule.act(obs)) == action(2, 3)  # then the seasonal product
    assert PRIMARY_BASELINE[SHOP_ID] == "fixed_markup"


def test_popularity_features_the_best_seller_in_stock() -> None:
    env = make_world(SHOP_ID)
    rule = Popularity(env)
    obs, _ = env.reset(seed=0)
    sales = obs[OBS_EMA_SALES]
    assert int(rule.act(obs)) == action(2, int(np.argmax(sales)))
    obs[OBS_STOCK.start + int(np.argmax(sales))] = 0.0
    second = int(np.argsort(-sales)[1])
    assert int(rule.act(obs)) == action(2, second)


def test_the_bandit_learns_from_the_reward_in_the_observation() -> None:
    env = make_world(SHOP_ID, regime="regular")
    bandit = LinUCB(env)
    returns, learnable = [], 0
    for seed in range(20):
        bandit.reset()
        obs, _ = env.reset(seed=seed)
        total, done, visited = 0.0, False, []
        while not done:
            obs, reward, terminated, truncated, info = env.step(bandit.act(obs))
            total += float(reward)
            visited.append(info["visitors"] > 0)
            done = terminated or truncated
        returns.append(total)
        # Every hour with visitors is learned from, except each week's last (no observation
        # of the week shows its outcome).
        learnable += sum(visited[:-1])
    assert int(bandit.pulls.sum()) == learnable
    first, last = np.mean(returns[:5]), np.mean(returns[-5:])
    assert last > first  # it learned
    cheap = Constant(action(0, 2))
    assert last > run_controller(cheap, SHOP_ID, seeds=range(15, 20)).mean_return


def test_the_bandit_keeps_its_estimates_across_episodes_and_the_rules_are_stateless() -> None:
    env = make_world(SHOP_ID)
    bandit = BASELINES[SHOP_ID]["linucb"](env)
    assert isinstance(bandit, LinUCB)
    run_controller(bandit, SHOP_ID, seeds=range(2))
    pulls = int(bandit.pulls.sum())
    bandit.reset()
    assert int(bandit.pulls.sum()) == pulls
    for name in ("fixed_markup", "popularity"):
        once = run_controller(BASELINES[SHOP_ID][name], SHOP_ID, seeds=SEEDS)
        again = run_controller(BASELINES[SHOP_ID][name], SHOP_ID, seeds=SEEDS)
        assert once == again


def test_thompson_sampling_is_reproducible() -> None:
    first = run_controller(BASELINES[SHOP_ID]["thompson"], SHOP_ID, seeds=range(3))
    second = run_controller(BASELINES[SHOP_ID]["thompson"], SHOP_ID, seeds=range(3))
    assert first == second


def test_render_and_sampled_shops() -> None:
    env = Shop(render_mode="ansi")
    env.reset(seed=0)
    env.step(np.int64(5))
    text = env.render()
    assert text is not None
    assert "stock" in text
    rng = np.random.default_rng(0)
    samples: list[dict[str, Any]] = [Shop.sample_params(rng) for _ in range(20)]
    assert len({Shop(**params).order_up_to for params in samples}) == 20
