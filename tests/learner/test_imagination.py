"""Learning from imagined days: the memory, the model of the device, the replay, the training."""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from stable_baselines3 import PPO

from agents.exceptions import ConfigError
from agents.learner.algorithms import get_algorithm
from agents.learner.envs import DriftPlan
from agents.learner.imagination import (
    DeviceMemory,
    DeviceModel,
    Imagination,
    ImaginedDays,
    check_imagination,
)
from agents.learner.learner import Learner, LearnerConfig
from agents.learner.pretrain import StartFrom, record_controller
from agents.learner.snapshots import make_arch
from agents.worlds import THERMOSTAT_ID, make_world
from agents.worlds.baselines import SetpointThermostat
from agents.worlds.thermostat import OBS_INDOOR, T_SCALE
from tests.learner.test_learner import Recorder

DAY = 96


def thermostat(regime: str = "winter") -> Any:
    return make_world(THERMOSTAT_ID, regime=regime)


def controller_days(days: int, seed: int = 0) -> tuple[Any, Any]:
    """The programmable thermostat driving a house for ``days`` days: (world, history)."""
    env = thermostat()
    return env, record_controller(env, SetpointThermostat(env), days * DAY, seed=seed)


def remembered(history: Any, capacity: int = 100_000) -> DeviceMemory:
    memory = DeviceMemory(capacity)
    memory.record_columns(history.columns)
    return memory


def test_the_memory_keeps_whole_days_and_the_latest_ones() -> None:
    _, history = controller_days(5)
    memory = remembered(history, capacity=3 * DAY)
    assert [len(day) for day in memory.days] == [DAY] * 3
    assert memory.steps == 3 * DAY
    last = memory.days[-1]
    assert np.array_equal(last.obs[1:], history.columns.next_obs[-DAY:])
    assert np.array_equal(last.actions, history.columns.actions[-DAY:])
    obs, actions, next_obs = memory.transitions()
    assert len(obs) == len(actions) == len(next_obs) == 3 * DAY


def test_a_step_that_does_not_follow_on_drops_the_unfinished_day() -> None:
    _, history = controller_days(2)
    columns = history.columns
    memory = DeviceMemory()
    for i in range(50):  # half a day, then the learner restarts the episode
        memory.record(columns.obs[i], columns.actions[i], columns.next_obs[i], done=False)
    for i in range(DAY, 2 * DAY):
        last = i == 2 * DAY - 1
        memory.record(columns.obs[i], columns.actions[i], columns.next_obs[i], done=last)
    assert [len(day) for day in memory.days] == [DAY]
    assert np.array_equal(memory.days[0].obs[0], columns.obs[DAY])


def test_the_model_predicts_the_house_and_heat_levels_its_controller_never_used() -> None:
    env, history = controller_days(60)
    memory = remembered(history)
    obs, actions, next_obs = memory.transitions()
    model = DeviceModel(env.unwrapped.endogenous_obs)
    error = model.fit(obs, env.unwrapped.action_features(actions), next_obs)
    persistence = float(np.sqrt(np.mean((next_obs[:, OBS_INDOOR] - obs[:, OBS_INDOOR]) ** 2)))
    assert error * T_SCALE < 0.1  # kelvin
    assert error < 0.2 * persistence
    # A day driven at random over the heating levels and off: every heat level, in states the
    # controller never went to (cooling, which it never used in winter, is not predicted).
    rng = np.random.default_rng(7)
    o, _ = env.reset(seed=99)
    rows = []
    for _ in range(DAY):
        action = int(rng.integers(3, 7))
        n, *_ = env.step(action)
        rows.append((o, action, n))
        o = n
    o_arr, a_arr, n_arr = (np.asarray(c) for c in zip(*rows, strict=True))
    heating = a_arr > 3
    assert set(a_arr[heating]) - set(actions.tolist())  # levels the controller never chose
    predicted = model.predict(o_arr, env.unwrapped.action_features(a_arr))[:, 0]
    random_error = float(np.sqrt(np.mean((predicted - n_arr[:, OBS_INDOOR]) ** 2))) * T_SCALE
    assert random_error < 0.3  # kelvin, one step ahead


def _imagination(days: int = 30, ratio: float = 2.0) -> tuple[Imagination, Any]:
    env, history = controller_days(days)
    imagination = Imagination(env.unwrapped, ratio, seed=0)
    imagination.memory.record_columns(history.columns)
    return imagination, history


def test_the_model_predicts_rows_that_share_their_exogenous_entries_as_it_predicts_each() -> None:
    env, history = controller_days(6)
    memory = remembered(history)
    obs, actions, next_obs = memory.transitions()
    world = env.unwrapped
    model = DeviceModel(world.endogenous_obs)
    model.fit(obs, world.action_features(actions), next_obs)
    rng = np.random.default_rng(0)
    shared = obs[37]
    rows = np.repeat(shared[None], 50, axis=0).astype(np.float64)
    rows[:, model.endogenous] = rng.uniform(-1.0, 1.0, (50, len(model.endogenous)))
    features = world.action_features(rng.integers(0, env.action_space.n, 50))
    one_by_one = model.predict(rows, features)
    varying = model.predict_varying(shared, rows[:, model.endogenous], features)
    assert np.allclose(varying, one_by_one, rtol=0.0, atol=1e-10)
    assert np.ptp(varying[:, 0]) > 0.01  # the rows' own entries and actions do matter


def test_an_imagined_day_is_a_remembered_day_with_the_modelled_house() -> None:
    imagination, _ = _imagination()
    obs, actions, next_obs = imagination.memory.transitions()
    imagination.fit_error = imagination.model.fit(
        obs, imagination.world.action_features(actions), next_obs
    )
    env = ImaginedDays(imagination.world, imagination, seed=0)
    check_env(env, skip_render_check=True)
    first, _ = env.reset(seed=1)
    day = next(d for d in imagination.memory.days if np.array_equal(d.obs[0], first))
    total, real = 0.0, 0.0
    exogenous = np.ones(len(first), dtype=bool)
    exogenous[list(imagination.world.endogenous_obs)] = False
    for t, action in enumerate(day.actions):
        imagined, reward, terminated, truncated, _ = env.step(action)
        assert np.array_equal(imagined[exogenous], day.obs[t + 1][exogenous])
        total += reward
        real += float(
            imagination.world.obs_reward(day.obs[t : t + 1], day.actions[t : t + 1],
                                         day.obs[t + 1 : t + 2])[0]
        )  # fmt: skip
        assert not terminated
        assert truncated == (t == len(day) - 1)
    # The controller's own actions, replayed through the model: about what they cost.
    assert total == pytest.approx(real, rel=0.1, abs=0.5)


def test_imagination_trains_the_policy_in_whole_rollouts_as_many_steps_as_asked() -> None:
    imagination, _ = _imagination(ratio=2.0)
    env = thermostat()
    model = PPO("MlpPolicy", env, n_steps=256, batch_size=64, n_epochs=1, seed=0, device="cpu")
    hyperparams: dict[str, Any] = {"n_steps": 256, "batch_size": 64, "n_epochs": 1}
    keys = get_algorithm("ppo").constructor_keys
    before = [p.detach().clone() for p in model.policy.parameters()]
    assert imagination.train(model, 100, hyperparams, keys) == 0  # 200 owed: no whole rollout
    assert imagination.train(model, 100, hyperparams, keys) == 256  # 400 owed: one rollout
    assert imagination.imagined_steps == 256
    after = list(model.policy.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
    assert imagination.fit_error is not None
    assert imagination.fit_error < 0.05


@pytest.mark.parametrize("call_steps", [64, 16])
def test_the_model_is_fitted_once_per_rollout_lived_however_often_it_is_called(
    call_steps: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A pooling member calls after every quarter of its rollout (16 of 64 steps here); it must
    # imagine as much as a learner called after whole rollouts, and refit its model as often.
    imagination, _ = _imagination(ratio=4.0)  # the smart-home scenario's ratio
    fits = 0
    fit = imagination.model.fit

    def counted(*args: Any) -> float:
        nonlocal fits
        fits += 1
        return fit(*args)

    monkeypatch.setattr(imagination.model, "fit", counted)
    model = PPO("MlpPolicy", thermostat(), n_steps=64, batch_size=64, n_epochs=1, seed=0,
                device="cpu")  # fmt: skip
    hyperparams: dict[str, Any] = {"n_steps": 64, "batch_size": 64, "n_epochs": 1}
    keys = get_algorithm("ppo").constructor_keys
    imagined = sum(
        imagination.train(model, call_steps, hyperparams, keys) for _ in range(256 // call_steps)
    )
    assert imagined == 1024  # four rollouts imagined per rollout lived either way
    assert fits == 4  # and the model fitted once per rollout lived


def test_nothing_is_imagined_before_a_few_whole_days_are_remembered() -> None:
    imagination, _ = _imagination(days=2, ratio=10.0)
    model = PPO("MlpPolicy", thermostat(), n_steps=64, batch_size=64, seed=0, device="cpu")
    keys = get_algorithm("ppo").constructor_keys
    assert imagination.train(model, 10_000, {"n_steps": 64}, keys) == 0


@pytest.mark.parametrize(
    ("env_id", "algo", "ratio", "needle"),
    [
        ("CartPole-v1", "ppo", 1.0, "endogenous_obs"),
        (THERMOSTAT_ID, "dqn", 1.0, "on-policy"),
        (THERMOSTAT_ID, "ppo", -1.0, ">= 0"),
    ],
)
def test_imagination_that_cannot_be_had_is_a_config_error(
    env_id: str, algo: str, ratio: float, needle: str
) -> None:
    env = gym.make(env_id) if env_id == "CartPole-v1" else thermostat()
    with pytest.raises(ConfigError, match=needle):
        check_imagination(env, algo, ratio)
    check_imagination(env, algo, 0.0)  # none asked: always fine


def imagining_learner(**overrides: Any) -> Learner:
    """A thermostat learner that imagines 2 steps per step, run for 12 days (6 of history)."""
    config = LearnerConfig(
        env_id=THERMOSTAT_ID, algo="ppo", seed=0, budget_steps=12 * DAY,
        hyperparams={"n_steps": 256, "batch_size": 64, "n_epochs": 1},
        arch=make_arch(get_algorithm("ppo"), net_arch={"pi": [16], "vf": [16]}),
        snapshot_every=100_000, checkpoint_every=100_000,
        drift=DriftPlan((("winter", 10**9),)),
        start_from=StartFrom.BASELINE, history_steps=6 * DAY, other_controllers=False,
        imagination=2.0,
    )  # fmt: skip
    learner = Learner(replace(config, **overrides), Recorder())
    learner.run()
    return learner


def test_a_learner_with_imagination_trains_on_imagined_days() -> None:
    learner = imagining_learner()
    imagination = learner.imagination
    assert imagination is not None
    assert len(imagination.memory.days) >= 6  # the history's days and the learner's
    # Two imagined steps per device step lived, the history's included, in whole rollouts of
    # 256, trained at each rollout's start (the last rollout's steps are still owed).
    lived = learner.step
    assert 2 * (lived - 256) - 256 <= imagination.imagined_steps <= 2 * lived
    assert imagination.imagined_steps % 256 == 0


def test_a_learner_leaves_no_folders_in_the_temporary_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SB3's default logger makes an empty SB3-<time> folder there at every learn(): the
    # learner's own model once, and its imagined days' algorithm at every round.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    learner = imagining_learner()
    assert learner.imagination is not None
    assert learner.imagination.imagined_steps > 0  # the imagined rounds ran
    # (torch keeps one cache folder per user there, torchinductor_<user>: not one per run)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("SB3-")] == []


@pytest.mark.parametrize("seed", [99, 100])
def test_the_model_follows_a_whole_day_far_from_anything_its_controller_did(seed: int) -> None:
    """Open loop over a day of long heat-pump settings at random: the house swings 9-20 K.

    The model learns each entry's change, so where the controller's history says little (it
    never left its band) the ridge pulls towards "nothing changes". A model of the next value
    itself was off by 31 % and 55 % of these days' swings at worst; this one stays within 15 %.
    """
    env, history = controller_days(60)
    world = env.unwrapped
    obs, actions, next_obs = remembered(history).transitions()
    model = DeviceModel(world.endogenous_obs)
    model.fit(obs, world.action_features(actions), next_obs)
    rng = np.random.default_rng(seed)
    lived = [env.reset(seed=seed)[0]]
    chosen: list[int] = []
    while len(chosen) < DAY:
        level = int(rng.choice([3, 3, 4, 5, 6]))  # off, or a heating level, for 1-6 hours
        for _ in range(min(int(rng.integers(4, 24)), DAY - len(chosen))):
            chosen.append(level)
            lived.append(env.step(level)[0])
    day = np.asarray(lived, dtype=np.float64)
    swing = (day[:, OBS_INDOOR].max() - day[:, OBS_INDOOR].min()) * T_SCALE
    assert swing > 5.0
    state = day[0:1].copy()
    worst = 0.0
    for t in range(DAY):
        following = day[t + 1 : t + 2].copy()
        following[:, model.endogenous] = model.predict(
            state, world.action_features(np.asarray(chosen[t : t + 1]))
        )
        state = following
        worst = max(worst, abs(float(state[0, OBS_INDOOR] - day[t + 1, OBS_INDOOR])) * T_SCALE)
    assert worst < 0.15 * swing
