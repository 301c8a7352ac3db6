"""``society/SumoTraffic-v0``: SUMO through sumo-rl and libsumo, the optional ``sumo`` extra.

Skipped as a whole where the extra is not installed. Episodes here are 5-10 simulated minutes
(60-120 steps) so that the file runs in seconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

# libsumo first: it sets SUMO_HOME, without which importing sumo_rl raises ImportError.
pytest.importorskip("libsumo", reason="the sumo extra is not installed: pip install .[sumo]")
pytest.importorskip("sumo_rl", reason="the sumo extra is not installed: pip install .[sumo]")

from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3 import PPO
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from agents.exceptions import ConfigError
from agents.worlds import (
    BASELINES,
    PRIMARY_BASELINE,
    WORLD_IDS,
    device_params,
    make_schedule,
    make_world,
    regimes_for,
    run_controller,
)
from agents.worlds.baselines import metric_keys
from agents.worlds.registry import OPTIONAL_WORLD_IDS, SUMO_ID
from agents.worlds.sumo import (
    SumoFixedTime,
    SumoMaxPressure,
    SumoTrafficParams,
    SumoTrafficSignal,
    route_file_text,
)
from tests.worlds.test_worlds_envs import same

SHORT: dict[str, Any] = {"episode_s": 300}  # 60 steps of 5 s


@pytest.fixture
def env() -> Iterator[SumoTrafficSignal]:
    world = SumoTrafficSignal(**SHORT)
    try:
        yield world
    finally:
        world.close()


def rollout(env: gym.Env[Any, Any], seed: int, actions: list[int]) -> list[tuple[Any, ...]]:
    obs, info = env.reset(seed=seed)
    return [(obs, info), *(env.step(np.int64(action)) for action in actions)]


def play(env: gym.Env[Any, Any], seed: int) -> dict[str, Any]:
    """One episode under max-pressure; the last step's info."""
    controller = SumoMaxPressure(env)
    obs, info = env.reset(seed=seed)
    done = False
    while not done:
        obs, _, terminated, truncated, info = env.step(controller.act(obs))
        done = terminated or truncated
    return info


def test_registered_with_regimes_devices_and_baselines() -> None:
    assert SUMO_ID in gym.registry
    assert SUMO_ID in OPTIONAL_WORLD_IDS
    assert SUMO_ID not in WORLD_IDS  # the pure-numpy worlds stay the always-there set
    assert set(regimes_for(SUMO_ID)) == {"light", "rush", "reversed", "event"}
    assert set(BASELINES[SUMO_ID]) == {"fixed_time", "max_pressure", "longest_queue"}
    assert PRIMARY_BASELINE[SUMO_ID] == "max_pressure"
    assert set(metric_keys(SUMO_ID)) == {"total_waiting_time", "throughput"}
    one, two = device_params(SUMO_ID, 0, 0), device_params(SUMO_ID, 0, 1)
    assert set(one) == {"ns_mult", "we_mult"}
    assert one != two
    assert device_params(SUMO_ID, 0, 1) == two


def test_passes_gymnasium_and_sb3_checkers() -> None:
    env = gym.make(SUMO_ID, **SHORT)
    try:
        gym_check_env(env.unwrapped)
        sb3_check_env(env.unwrapped)
        obs, _ = env.reset(seed=0)
        assert obs.shape == (11,)
        assert obs.dtype == np.float32
        assert env.action_space == gym.spaces.Discrete(2)
    finally:
        env.close()


def test_seeded_episodes_are_identical(env: SumoTrafficSignal) -> None:
    actions = [0, 0, 1, 1, 1, 0, 1] * 9  # past the end: 63 > 60 steps
    first = rollout(env, 7, actions[:60])
    again = rollout(env, 7, actions[:60])
    other = rollout(env, 8, actions[:60])
    assert same(first, again)
    assert not same(first, other)
    assert first[-1][3] is True  # truncated at episode_s
    assert first[-2][3] is False
    assert not any(step[2] for step in first[1:])  # never terminated
    assert first[0][1]["sumo_seed"] == again[0][1]["sumo_seed"] != other[0][1]["sumo_seed"]


def test_fixed_sumo_seed_repeats_the_traffic() -> None:
    env = SumoTrafficSignal(sumo_seed=123, **SHORT)
    try:
        assert same(rollout(env, 1, [0, 1] * 30), rollout(env, 2, [0, 1] * 30))
        assert env.sumo_seed == 123
    finally:
        env.close()


def test_metrics_add_up(env: SumoTrafficSignal) -> None:
    steps = rollout(env, 3, [0] * 30 + [1] * 30)
    rewards = [float(step[1]) for step in steps[1:]]
    infos = [step[4] for step in steps[1:]]
    waited = sum(info["waiting_time"] for info in infos)
    assert infos[-1]["total_waiting_time"] == pytest.approx(waited)
    assert sum(rewards) == pytest.approx(-waited * env.params.reward_scale)
    assert infos[-1]["throughput"] > 0
    assert sum(info["arrivals"] for info in infos) >= infos[-1]["throughput"]
    assert infos[-1]["sim_time_s"] == 300
    assert infos[-1]["queues"].dtype == np.int64


def test_a_regime_switch_changes_the_arrivals() -> None:
    """light for one 10-minute episode, then rush: more vehicles, more waiting."""
    schedule = make_schedule(SUMO_ID, [("light", 120), ("rush", 120)])
    env = make_world(SUMO_ID, schedule=schedule, episode_s=600)
    try:
        light = play(env, seed=0)
        rush = play(env, seed=0)
    finally:
        env.close()
    assert (light["regime"], rush["regime"]) == ("light", "rush")
    # rush brings 2,500 veh/h against light's 1,200
    assert rush["throughput"] > 1.6 * light["throughput"]
    assert rush["total_waiting_time"] > light["total_waiting_time"]


def test_event_surge_arrives_in_its_window() -> None:
    env = make_world(SUMO_ID, regime="event", episode_s=600)
    try:
        env.reset(seed=4)
        arrivals = [env.step(np.int64(0))[4]["arrivals"] for _ in range(120)]
    finally:
        env.close()
    # event window: 35 %-65 % of the episode, i.e. steps 42-78
    inside = sum(arrivals[45:75]) / 30
    outside = sum(arrivals[:40] + arrivals[80:]) / 80
    assert inside > 1.5 * outside


def test_route_file_comes_from_the_demand() -> None:
    params = SumoTrafficParams(ns_veh_per_h=720.0, we_veh_per_h=0.0, ns_mult=0.5)
    text = route_file_text(params)
    assert 'id="flow_ns"' in text
    assert f"exp({360.0 / 3600.0:.9f})" in text
    assert "flow_we" not in text  # zero demand: no flow (SUMO rejects exp(0))
    assert "flow_ns_event" not in text
    assert 'begin="630" end="1170"' in route_file_text(SumoTrafficParams(event_veh_per_h=100.0))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"ns_veh_per_h": -1.0}, "ns_veh_per_h"),
        ({"we_mult": 0.0}, "we_mult"),
        ({"episode_s": 302}, "multiple of step_s"),
        ({"step_s": 2}, "yellow_s"),
        ({"event_start_frac": 0.7}, "event_start_frac"),
        ({"lanes": 3}, "unknown parameter"),
        ({"sumo_seed": -1}, "sumo_seed"),
        ({"sumo_seed": 1.5}, "sumo_seed"),
        ({"regime": "snow"}, "unknown regime"),
    ],
)
def test_bad_parameters_are_config_errors(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        SumoTrafficSignal(**kwargs)


def test_regimes_may_not_change_the_structure(env: SumoTrafficSignal) -> None:
    with pytest.raises(ConfigError, match="episode_s"):
        env.check_regime({"episode_s": 600})
    with pytest.raises(ConfigError, match="we_veh_per_h"):
        env.apply_regime({"we_veh_per_h": "many"})


def test_baselines_run_and_max_pressure_adapts_where_the_plan_cannot() -> None:
    scores = {
        name: run_controller(
            factory, SUMO_ID, seeds=[0], regime="reversed", env_kwargs={"episode_s": 600}
        )
        for name, factory in BASELINES[SUMO_ID].items()
    }
    for score in scores.values():
        assert score.lengths == (120,)
        assert score.mean("throughput") > 0
    # The plan is timed for the light regime's west-heavy demand; reversed, its short
    # north green lets a backlog grow. Max-pressure follows the queues.
    fixed = scores["fixed_time"].mean("total_waiting_time")
    assert scores["max_pressure"].mean("total_waiting_time") < 0.5 * fixed


def test_fixed_time_plan_respects_the_signal(env: SumoTrafficSignal) -> None:
    assert SumoFixedTime(env).durations == (2, 2)  # Webster for light: a 20 s cycle
    # 1 s of green would be cut by the signal's 5 s minimum after a 2 s yellow: 2 steps.
    assert SumoFixedTime(env, green_s=[1.0, 30.0]).durations == (2, 6)
    with pytest.raises(ConfigError, match="green_s"):
        SumoFixedTime(env, green_s=[10.0])


def test_one_simulation_per_process() -> None:
    first, second = SumoTrafficSignal(**SHORT), SumoTrafficSignal(**SHORT)
    try:
        first.reset(seed=0)
        first.step(np.int64(0))
        second.reset(seed=0)  # takes libsumo over
        second.step(np.int64(1))
        with pytest.raises(gym.error.ResetNeeded, match="one simulation per process"):
            first.step(np.int64(0))
        first.reset(seed=0)  # and back
        first.step(np.int64(0))
        with pytest.raises(gym.error.ResetNeeded):
            second.step(np.int64(0))
    finally:
        first.close()
        second.close()
    fresh = SumoTrafficSignal(**SHORT)
    try:
        with pytest.raises(gym.error.ResetNeeded, match="reset"):
            fresh.step(np.int64(0))
    finally:
        fresh.close()


def test_render_ansi() -> None:
    env = SumoTrafficSignal(render_mode="ansi", **SHORT)
    try:
        env.reset(seed=0)
        env.step(np.int64(0))
        text = env.render()
        assert text is not None
        assert text.startswith("t=5s phase 0")
    finally:
        env.close()


def test_ppo_learns_on_it() -> None:
    env = gym.make(SUMO_ID, **SHORT)
    try:
        model = PPO("MlpPolicy", env, n_steps=128, batch_size=64, n_epochs=2, seed=0, device="cpu")
        model.learn(256)
        action, _ = model.predict(env.reset(seed=0)[0], deterministic=True)
        assert env.action_space.contains(int(action))
    finally:
        env.close()


# --- the baseline on the same episode, replayed in a worker process -------------------------


@pytest.mark.parametrize("regime", ["light", "rush"])
def test_the_process_shadow_replays_the_very_episode_with_the_baseline(regime: str) -> None:
    from agents.worlds.shadow import BASELINE_RETURN, ProcessShadow

    device = {**SHORT, "ns_mult": 1.1, "we_mult": 0.9}
    world = SumoTrafficSignal(**device)
    world.set_regime(regime)
    shadow = ProcessShadow(world, SUMO_ID)
    try:
        shadow.reset(seed=3)
        seed = world.sumo_seed
        done, info = False, dict[str, Any]()
        while not done:  # the agent does something else than the controller: always phase 0
            _, _, terminated, truncated, info = shadow.step(np.int64(0))
            done = terminated or truncated
        replayed = info[BASELINE_RETURN]
    finally:
        shadow.close()
    # The baseline itself on a fresh world of the same device, regime and SUMO seed.
    assert replayed == pytest.approx(baseline_return(device, regime, seed), rel=1e-12)
    assert replayed != pytest.approx(baseline_return(device, regime, seed + 1), rel=1e-6)


def baseline_return(device: dict[str, Any], regime: str, sumo_seed: int) -> float:
    fresh = SumoTrafficSignal(**device, sumo_seed=sumo_seed)
    fresh.set_regime(regime)
    try:
        controller = BASELINES[SUMO_ID][PRIMARY_BASELINE[SUMO_ID]](fresh)
        controller.reset()
        obs, _ = fresh.reset()
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = fresh.step(controller.act(obs))
            total += float(reward)
            done = terminated or truncated
    finally:
        fresh.close()
    return total


def test_the_process_shadows_worker_is_gone_after_close() -> None:
    from agents.worlds.shadow import ProcessShadow

    shadow = ProcessShadow(SumoTrafficSignal(**SHORT), SUMO_ID)
    shadow.reset(seed=0)
    shadow.step(np.int64(1))
    pid = shadow.worker_pid
    assert pid is not None
    assert Path(f"/proc/{pid}").exists()
    shadow.close()
    assert shadow.worker_pid is None
    assert not Path(f"/proc/{pid}").exists()  # joined: not even a zombie left


def test_a_learner_on_sumo_meters_its_regret_and_can_be_guarded() -> None:
    from agents.learner.guard import GuardedDevice
    from agents.learner.learner import Learner, LearnerConfig
    from agents.learner.pretrain import StartFrom
    from tests.learner.test_learner import Recorder

    config = LearnerConfig(
        env_id=SUMO_ID, algo="ppo", env_kwargs=SHORT, budget_steps=240, seed=0,
        hyperparams={"n_steps": 60, "batch_size": 30, "n_epochs": 1},
        start_from=StartFrom.BASELINE, history_steps=60, guard=True, snapshot_every=10_000,
    )  # fmt: skip
    learner = Learner(config, Recorder())
    assert isinstance(learner.device, GuardedDevice)
    try:
        learner.run()
    finally:
        learner.close()
    meter = learner.meter
    # The recorded history's episode, then 3 more episodes of 60 steps, every one compared.
    assert meter.episodes == 4
    assert meter.baseline_return < 0.0  # waiting, so negative: something was measured
    assert meter.controller_episodes >= 1


def test_an_unjudged_episode_is_not_replayed() -> None:
    from agents.worlds.shadow import BASELINE_RETURN, ProcessShadow, unjudged

    shadow = ProcessShadow(SumoTrafficSignal(**SHORT), SUMO_ID)
    try:
        with unjudged(shadow):
            shadow.reset(seed=0)
            info: dict[str, Any] = {}
            for _ in range(60):
                _, _, _, truncated, info = shadow.step(np.int64(0))
            assert truncated
            assert BASELINE_RETURN not in info
            assert shadow.worker_pid is None  # no replay asked for: no worker even started
    finally:
        shadow.close()
