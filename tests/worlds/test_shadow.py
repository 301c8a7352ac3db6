"""The baseline's return on the agent's own episode: a copy of the device plays it alongside."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from agents.exceptions import ConfigError
from agents.learner.envs import DriftPlan, make_env
from agents.worlds import PRIMARY_BASELINE, WORLD_IDS, make_baseline
from agents.worlds.shadow import BASELINE_RETURN, BaselineShadow, unjudged


def play(env: gym.Env[Any, Any], act: Any, episodes: int) -> list[tuple[float, float]]:
    """(return, baseline return) of consecutive episodes, the generator left to run on."""
    out = []
    for _ in range(episodes):
        obs, _ = env.reset()
        total, done, info = 0.0, False, dict[str, Any]()
        while not done:
            obs, reward, terminated, truncated, info = env.step(act(obs))
            total += float(reward)
            done = terminated or truncated
        out.append((total, float(info[BASELINE_RETURN])))
    return out


@pytest.mark.parametrize("env_id", WORLD_IDS)
def test_the_baseline_playing_itself_scores_exactly_its_own_return(env_id: str) -> None:
    # Equal only if the copy plays the very same episodes: weather, demand, prices.
    env = make_env(env_id, shadow_baseline=True)
    env.reset(seed=3)
    controller = make_baseline(env_id, PRIMARY_BASELINE[env_id], env)
    results = play(env, controller.act, episodes=4)
    returns = [r for r, _ in results]
    assert len(set(returns)) == len(returns)  # four different episodes...
    assert [b for _, b in results] == returns  # ...each matched exactly


@pytest.mark.parametrize("env_id", WORLD_IDS)
def test_the_baseline_return_does_not_depend_on_the_agent(env_id: str) -> None:
    lazy, busy = make_env(env_id, shadow_baseline=True), make_env(env_id, shadow_baseline=True)
    lazy.reset(seed=5)
    busy.reset(seed=5)
    busy.action_space.seed(0)
    idle = np.zeros(lazy.action_space.shape, dtype=np.int64) if lazy.action_space.shape else 0
    first = play(lazy, lambda _: idle, episodes=2)
    second = play(busy, lambda _: busy.action_space.sample(), episodes=2)
    assert [r for r, _ in first] != [r for r, _ in second]  # the agents played differently...
    assert [b for _, b in first] == [b for _, b in second]  # ...the baseline did not


def test_the_copy_follows_the_drift_into_a_new_regime() -> None:
    # The drift wrapper applies summer at the reset after step 96: the copy must be in summer
    # too, or the baseline would be scored on a winter day.
    env_id = "society/Thermostat-v0"
    env = make_env(env_id, shadow_baseline=True, drift=DriftPlan((("winter", 96), ("summer", 96))))
    env.reset(seed=1)
    controller = make_baseline(env_id, PRIMARY_BASELINE[env_id], env)
    winter, summer = play(env, controller.act, episodes=2)
    assert winter[0] == winter[1]
    assert summer[0] == summer[1]


def test_a_world_without_a_baseline_is_refused() -> None:
    with pytest.raises(ConfigError, match="no baseline controller"):
        BaselineShadow(gym.make("Pendulum-v1"), "Pendulum-v1")


def test_an_episode_that_ends_early_still_gets_the_baselines_whole_episode() -> None:
    # CartPole: an agent that always pushes left drops the pole within a few dozen steps;
    # the PD controller on the same start balances it to the time limit.
    env = make_env("CartPole-v1", shadow_baseline=True)
    env.reset(seed=2)
    ((agent, baseline),) = play(env, lambda _: 0, episodes=1)
    assert agent < 50
    solo = make_env("CartPole-v1")
    solo.reset(seed=2)
    obs, _ = solo.reset()  # play() started the shadowed env's second episode
    pd = make_baseline("CartPole-v1", "pd", solo)
    expected, done = 0.0, False
    while not done:
        obs, reward, terminated, truncated, _ = solo.step(pd.act(obs))
        expected += float(reward)
        done = terminated or truncated
    assert baseline == expected > 400


def test_an_unjudged_episode_is_not_played_by_the_baseline_and_the_next_one_is() -> None:
    env = make_env("society/TrafficSignal-v0", shadow_baseline=True)
    shadow = next(w for w in _chain(env) if isinstance(w, BaselineShadow))
    env.reset(seed=0)
    with unjudged(env):
        env.reset()
        assert shadow._twin is None  # no copy taken: no work done twice
        done, info = False, dict[str, Any]()
        while not done:
            _, _, terminated, truncated, info = env.step(env.action_space.sample())
            done = terminated or truncated
        assert BASELINE_RETURN not in info
    assert shadow.paused == 0
    judged = play(env, lambda _: env.action_space.sample(), episodes=1)
    assert judged[0][1] != 0.0  # compared again once the controller's episode is over


def _chain(env: gym.Env[Any, Any]) -> list[gym.Env[Any, Any]]:
    out: list[gym.Env[Any, Any]] = []
    while isinstance(env, gym.Wrapper):
        out.append(env)
        env = env.env
    return out


def _play_counting(env: gym.Env[Any, Any], act: Any, episodes: int) -> tuple[int, int]:
    """(episodes compared with the baseline, agent steps) over ``episodes`` episodes."""
    judged = steps = 0
    for _ in range(episodes):
        env.reset()
        done, info = False, dict[str, Any]()
        while not done:
            _, _, terminated, truncated, info = env.step(act())
            steps += 1
            done = terminated or truncated
        judged += BASELINE_RETURN in info
    return judged, steps


def test_the_meters_copy_plays_no_more_steps_than_the_agent() -> None:
    # An agent that drops CartPole's pole in a few dozen steps, against the PD controller
    # that holds it 500: the copy would play ten times the agent's steps; held to one, it
    # skips episodes (and says so) and plays no more than the agent plus one episode.
    env = make_env("CartPole-v1", meter_baseline=True)
    shadow = next(w for w in _chain(env) if isinstance(w, BaselineShadow))
    assert shadow.max_twin_ratio == 1.0
    env.reset(seed=0)
    judged, steps = _play_counting(env, lambda: 0, episodes=200)
    assert 0 < judged < 200
    assert shadow.over_budget == 200 - judged
    assert shadow.agent_steps == steps
    assert steps < shadow.twin_steps <= steps + 500


def test_judging_plays_every_episode_whatever_it_costs() -> None:
    # The drift detector compares advantages: no episode may go without the baseline's.
    env = make_env("CartPole-v1", shadow_baseline=True)
    env.reset(seed=0)
    judged, _ = _play_counting(env, lambda: 0, episodes=30)
    assert judged == 30


@pytest.mark.parametrize("env_id", ["society/Thermostat-v0", "society/Shop-v0"])
def test_a_budgeted_copy_plays_every_episode_of_a_fixed_length_world(env_id: str) -> None:
    env = make_env(env_id, meter_baseline=True)
    shadow = next(w for w in _chain(env) if isinstance(w, BaselineShadow))
    env.reset(seed=0)
    judged, _ = _play_counting(env, env.action_space.sample, episodes=3)
    assert judged == 3
    assert shadow.over_budget == 0


def test_a_budget_that_is_not_positive_is_refused() -> None:
    with pytest.raises(ConfigError, match="max_twin_ratio must be > 0"):
        BaselineShadow(gym.make("CartPole-v1"), "CartPole-v1", max_twin_ratio=0.0)
