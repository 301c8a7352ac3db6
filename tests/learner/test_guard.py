"""The guard: regret against the old controller, and conservative exploration that bounds it."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

from agents.learner.envs import DriftPlan, make_env
from agents.learner.guard import ConservativeGate, GuardedDevice, RegretMeter
from agents.learner.pretrain import start_controller
from agents.worlds.shadow import BASELINE_RETURN

EPISODE = 10


class Lever(gym.Env[np.ndarray, np.int64]):
    """Ten steps a day; action 0 costs 1 (the old controller's), 1 costs 0, 2 costs 2."""

    observation_space = spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32)
    action_space = spaces.Discrete(3)

    def __init__(self) -> None:
        self.t = 0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(1, dtype=np.float32), {}

    def step(self, action: np.int64) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self.t += 1
        done = self.t >= EPISODE
        info: dict[str, Any] = {BASELINE_RETURN: -float(EPISODE)} if done else {}
        reward = {0: -1.0, 1: 0.0, 2: -2.0}[int(action)]
        return np.zeros(1, dtype=np.float32), reward, False, done, info


class Always:
    def __init__(self, action: int) -> None:
        self.action = action

    def reset(self) -> None:
        pass

    def act(self, obs: Any) -> int:
        return self.action


def live(device: gym.Env[Any, Any], act: Any, steps: int) -> None:
    """The learner's loop: reset, act until the episode ends, again, for ``steps`` steps."""
    obs, _ = device.reset()
    for _ in range(steps):
        obs, _, terminated, truncated, _ = device.step(act(obs))
        if terminated or truncated:
            obs, _ = device.reset()


def test_regret_is_the_baselines_return_minus_the_deployed_one() -> None:
    meter = RegretMeter()
    meter.add(-5.0, -4.0, by_controller=False)
    meter.add(-3.0, -3.0, by_controller=True)
    meter.add(-2.0, -4.0, by_controller=False)
    assert meter.regret == pytest.approx(-1.0)
    assert (meter.learner_episodes, meter.controller_episodes, meter.episodes) == (2, 1, 3)


def test_a_learner_worse_than_the_controller_is_kept_within_the_budget() -> None:
    taken: list[Any] = []
    device = GuardedDevice(
        Lever(),
        Always(0),
        gate=ConservativeGate(budget=0.1),
        on_transition=lambda *t: taken.append(t),
    )
    live(device, lambda _obs: 2, 2_000)  # the learner always does the costly thing
    meter = device.meter
    # Controller days widen the budget; the learner gets one day each time it is wide enough.
    assert meter.controller_episodes > 5 * meter.learner_episodes > 0
    allowance = 0.1 * (abs(meter.baseline_return) + EPISODE)
    assert meter.regret <= allowance
    assert meter.regret >= allowance - EPISODE  # it did use the budget it had
    assert len(taken) == meter.controller_steps == EPISODE * meter.controller_episodes
    assert all(action == 0 for _, _, action, *_ in taken)


def test_without_a_gate_the_regret_is_only_metered() -> None:
    device = GuardedDevice(Lever(), Always(0), gate=None)
    live(device, lambda _obs: 2, 2_000)
    assert device.meter.controller_episodes == 0
    assert device.meter.regret == pytest.approx(2_000)  # 1 a step worse than the controller


def test_a_learner_better_than_the_controller_drives_every_day() -> None:
    device = GuardedDevice(Lever(), Always(0), gate=ConservativeGate(budget=0.0))
    live(device, lambda _obs: 1, 500)
    assert device.meter.controller_episodes == 0
    assert device.meter.regret == pytest.approx(-500)


def test_a_zero_budget_keeps_a_learner_that_ever_lost_off_the_device() -> None:
    def keep_going() -> bool:
        return device.meter.controller_steps < 30 * EPISODE

    device = GuardedDevice(
        Lever(), Always(0), gate=ConservativeGate(budget=0.0), keep_going=keep_going
    )
    actions = iter([2] * EPISODE + [1] * 10_000)  # one bad day, then good ones
    live(device, lambda _obs: next(actions), EPISODE)
    # It lost 10 on its first day and can earn nothing back: the controller drives every day
    # after, until the agent stops.
    assert device.meter.regret == pytest.approx(EPISODE)
    assert device.meter.learner_episodes == 1
    assert device.meter.controller_episodes == 30


def test_controller_days_count_as_device_steps_and_advance_the_drift() -> None:
    env_id = "society/Thermostat-v0"
    world = make_env(
        env_id, drift=DriftPlan((("winter", 960), ("summer", 960)), cyclic=True),
        shadow_baseline=True,
    )  # fmt: skip
    rng = np.random.default_rng(0)
    device = GuardedDevice(
        world, start_controller(env_id, world), gate=ConservativeGate(budget=0.5)
    )
    learner_steps = 960
    live(device, lambda _obs: int(rng.integers(7)), learner_steps)  # a random learner
    meter = device.meter
    assert meter.controller_episodes > 0
    assert meter.regret > 0  # random heating costs more than the thermostat
    drift: Any = world
    assert drift.lifetime_step == learner_steps + meter.controller_steps
    assert drift.switches >= (learner_steps + meter.controller_steps) // 960 - 1


def test_the_guard_hands_back_the_device_at_once_when_the_agent_stops() -> None:
    def keep_going() -> bool:
        return device.meter.controller_steps < 2 * EPISODE + 3

    device = GuardedDevice(
        Lever(), Always(0), gate=ConservativeGate(budget=0.0), keep_going=keep_going
    )
    live(device, lambda _obs: 2, EPISODE)  # one bad day closes the gate
    # Two whole controller days, then three steps of a third: the agent stops mid-day, and
    # gets the device back there.
    assert device.meter.controller_episodes == 2
    assert device.meter.controller_steps == 2 * EPISODE + 3


def test_the_controllers_episodes_are_not_also_played_on_a_copy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import copy

    copies = 0
    deepcopy = copy.deepcopy

    def counting(value: Any, memo: Any = None) -> Any:
        nonlocal copies
        copies += memo is None  # the shadow's own call, not deepcopy's recursion
        return deepcopy(value, memo)

    env = make_env("society/TrafficSignal-v0", meter_baseline=True)
    monkeypatch.setattr(copy, "deepcopy", counting)
    gate = ConservativeGate(budget=0.0)
    gate.record(-1.0)  # the learner lost once: with no budget it never drives again
    device = GuardedDevice(env, start_controller("society/TrafficSignal-v0", env), gate=gate)
    # One controller episode, then the agent stops and the device is reset for its own.
    device.keep_going = lambda: device.meter.controller_episodes < 1
    device.reset(seed=0)
    assert device.meter.controller_episodes == 1
    assert copies == 1  # the learner's episode after it is copied; the controller's was not
