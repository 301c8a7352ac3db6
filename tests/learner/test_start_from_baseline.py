"""A learner that starts from its device's controller, behind the guard, metering regret."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import pytest

from agents.coordinator.lifelong import normalise
from agents.exceptions import ConfigError
from agents.learner.algorithms import get_algorithm
from agents.learner.envs import DriftPlan
from agents.learner.learner import Learner, LearnerConfig
from agents.learner.pretrain import StartFrom, start_controller
from agents.learner.snapshots import build_policy, load_tensors, make_arch
from agents.worlds import PolicyController, run_controller
from agents.worlds.baselines import Controller, RandomController
from tests.learner.test_learner import Recorder

THERMOSTAT = "society/Thermostat-v0"


def make(
    steps: int, *, directory: Path | None = None, guard: bool = True, history: int = 2_880
) -> tuple[Learner, Recorder]:
    events = Recorder()
    config = LearnerConfig(
        env_id=THERMOSTAT, algo="ppo", seed=1, budget_steps=steps,
        hyperparams={"n_steps": 256, "batch_size": 64, "n_epochs": 2},
        arch=make_arch(get_algorithm("ppo"), net_arch={"pi": [32, 32], "vf": [32, 32]}),
        experience_batch=500, snapshot_every=1_000, checkpoint_every=100_000,
        checkpoint_dir=directory, drift=DriftPlan((("winter", 10**9),)),
        start_from=StartFrom.BASELINE, history_steps=history, guard=guard,
    )  # fmt: skip
    return Learner(config, events), events


def test_it_starts_as_a_clone_of_the_controller_and_its_history_counts() -> None:
    learner, events = make(4_000)
    learner.run()
    assert learner.step == 4_000
    # The first snapshot is the clone, published when the history ends: no untrained policy.
    first_tensors, first_step = events.snapshots[0]
    assert first_step == 2_880
    policy = build_policy(
        learner.spec, learner.arch, learner.env.observation_space, learner.env.action_space
    )
    load_tensors(policy, first_tensors)
    seeds = range(70, 73)

    def score(factory: Callable[[gym.Env[Any, Any]], Controller]) -> float:
        return run_controller(factory, THERMOSTAT, seeds=seeds, regime="winter").mean_return

    base = score(lambda e: start_controller(THERMOSTAT, e))
    random = score(RandomController)
    # On the scale the coordinator reports (0 random, 1 the controller): the clone is at the
    # controller's level; the untrained network it started from is not.
    assert normalise(score(lambda _e: PolicyController(policy)), random, base) >= 0.95
    untrained = build_policy(
        learner.spec, learner.arch, learner.env.observation_space, learner.env.action_space
    )
    assert normalise(score(lambda _e: PolicyController(untrained)), random, base) < 0.9
    # Every device step, the controller's included, was published as experience once.
    assert sum(len(batch) for batch, _ in events.batches) == 4_000
    stats = learner.stats
    assert stats.controller_steps >= 2_880
    # The history's thirty whole days were the controller's: compared, no regret.
    assert stats.regret_episodes >= 30
    assert stats.regret == pytest.approx(learner.meter.regret)


def test_regret_survives_a_restart(tmp_path: Path) -> None:
    learner, _ = make(3_000, directory=tmp_path)
    learner.run()
    before = learner.meter
    again, _ = make(3_960, directory=tmp_path)
    assert again.meter.episodes == before.episodes
    assert again.meter.regret == pytest.approx(before.regret)
    assert again.stats.controller_steps == before.controller_steps
    again.run()
    assert again.meter.episodes > before.episodes
    assert again.step == 3_960


def test_a_world_without_a_controller_cannot_start_from_one() -> None:
    config = LearnerConfig(env_id="Pendulum-v1", algo="sac", start_from=StartFrom.BASELINE)
    with pytest.raises(ConfigError, match="no baseline controller"):
        Learner(config, Recorder())


def test_the_guard_needs_a_controller_on_a_copy_of_the_device() -> None:
    config = LearnerConfig(env_id="Pendulum-v1", algo="sac", guard=True)
    with pytest.raises(ConfigError, match="the guard needs"):
        Learner(config, Recorder())


def test_a_learner_kept_off_the_device_learns_from_the_controller_driving_it() -> None:
    # Untrained and given no loss to spend: after its first day the controller drives, and
    # the learner imitates it between learn() calls.
    events = Recorder()
    config = LearnerConfig(
        env_id=THERMOSTAT, algo="ppo", seed=2, budget_steps=2_500,
        hyperparams={"n_steps": 96, "batch_size": 48, "n_epochs": 1},
        arch=make_arch(get_algorithm("ppo"), net_arch={"pi": [32, 32], "vf": [32, 32]}),
        drift=DriftPlan((("winter", 10**9),)), guard=True, guard_budget=0.0,
    )  # fmt: skip
    learner = Learner(config, events)
    before = build_policy(
        learner.spec, learner.arch, learner.env.observation_space, learner.env.action_space
    )
    load_tensors(before, learner.current_tensors())
    learner.run()
    assert learner.meter.learner_episodes == 1
    assert len(learner.demonstrations.episodes) == min(20, learner.meter.controller_episodes) > 10
    seeds = range(70, 73)

    def score(factory: Callable[[gym.Env[Any, Any]], Controller]) -> float:
        return run_controller(factory, THERMOSTAT, seeds=seeds, regime="winter").mean_return

    base = score(lambda e: start_controller(THERMOSTAT, e))
    random = score(RandomController)
    policy = build_policy(
        learner.spec, learner.arch, learner.env.observation_space, learner.env.action_space
    )
    load_tensors(policy, learner.current_tensors())
    assert normalise(score(lambda _e: PolicyController(before)), random, base) < 0.9
    assert normalise(score(lambda _e: PolicyController(policy)), random, base) >= 0.95


def test_where_the_device_cannot_be_copied_the_regret_is_unknown_not_zero(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # libsumo runs one simulation per process: no copy to play the controller on.
    monkeypatch.setattr("agents.learner.envs.can_shadow", lambda _env_id, _env: False)
    config = LearnerConfig(
        env_id="CartPole-v1", algo="ppo", seed=0, budget_steps=900,
        hyperparams={"n_steps": 64, "batch_size": 32, "n_epochs": 1},
        start_from=StartFrom.BASELINE, history_steps=600,
    )  # fmt: skip
    learner = Learner(config, Recorder())
    learner.run()
    assert learner.stats.controller_steps == 600
    assert learner.stats.regret_episodes == 0  # the history's episodes are not "no regret"
