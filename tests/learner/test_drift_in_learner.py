"""The agent's world drifts as its own steps go by, and keeps drifting after a restart."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gymnasium.envs.classic_control import CartPoleEnv

from agents.exceptions import ConfigError
from agents.learner.envs import DriftPlan, make_env, parse_drift
from agents.learner.learner import Learner, LearnerConfig
from agents.learner.sandbox import Candidate, try_candidates
from agents.learner.snapshots import policy_tensors
from agents.worlds import PRIMARY_BASELINE, DriftWrapper, make_baseline, play_episodes
from tests.learner.test_learner import Recorder

SMALL = {"n_steps": 64, "batch_size": 32, "n_epochs": 1}


def learner(tmp_path: Path, steps: int, drift: DriftPlan) -> Learner:
    config = LearnerConfig(
        env_id="CartPole-v1", algo="ppo", hyperparams=SMALL, budget_steps=steps, seed=0,
        checkpoint_dir=tmp_path, drift=drift, snapshot_every=10_000,
    )  # fmt: skip
    return Learner(config, Recorder())


def cartpole(env: object) -> CartPoleEnv:
    assert isinstance(env, DriftWrapper)
    target = env.unwrapped
    assert isinstance(target, CartPoleEnv)
    return target


def test_the_regime_changes_with_the_agents_steps_and_survives_a_restart(tmp_path: Path) -> None:
    plan = DriftPlan((("earth", 150), ("jupiter", 150)))
    first = learner(tmp_path, 250, plan)
    assert [spec.name for spec in first.regimes] == ["earth", "jupiter"]
    first.run()
    # Past step 150 the next episode starts on Jupiter; the learner saw it in info.
    assert first.current_regime == "jupiter"
    assert cartpole(first.env).gravity > 20
    resumed = learner(tmp_path, 300, plan)
    wrapper = resumed.env
    assert isinstance(wrapper, DriftWrapper)
    assert wrapper.lifetime_step == 250  # not 0: the schedule continues
    resumed.run()
    assert resumed.current_regime == "jupiter"
    assert cartpole(resumed.env).gravity > 20


def test_scenario_regimes_can_drift_a_plain_gymnasium_env() -> None:
    plan = DriftPlan((("calm", 5), ("windy", 5)), regimes={"calm": {"force_mag": 10.0},
                                                          "windy": {"force_mag": 2.5}})  # fmt: skip
    env = make_env("CartPole-v1", drift=plan, lifetime_step=7)
    env.reset(seed=0)
    assert cartpole(env).force_mag == 2.5
    assert [spec.params for spec in plan.specs("CartPole-v1")] == [
        {"force_mag": 10.0},
        {"force_mag": 2.5},
    ]


def test_unknown_regimes_and_attributes_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown regime 'mars'"):
        DriftPlan((("mars", 10),)).specs("CartPole-v1")
    with pytest.raises(ConfigError, match="warp_drive"):
        make_env("CartPole-v1", drift=DriftPlan((("x", 5),), regimes={"x": {"warp_drive": 1.0}}))


@pytest.mark.parametrize(
    ("text", "expected"),
    [("earth:100", (("earth", 100),)), ("a:1_000, b:20", (("a", 1000), ("b", 20)))],
)
def test_parse_drift(text: str, expected: tuple[tuple[str, int], ...]) -> None:
    assert parse_drift(text) == expected


@pytest.mark.parametrize("text", ["earth", "earth:0", ":5", "earth:many"])
def test_parse_drift_refuses_nonsense(text: str) -> None:
    with pytest.raises(ConfigError, match="invalid drift"):
        parse_drift(text)


def test_judged_against_the_baseline_the_learner_scores_its_advantage() -> None:
    def run(judge: bool) -> tuple[list[float], list[float]]:
        config = LearnerConfig(
            env_id="society/Thermostat-v0", algo="ppo", hyperparams=SMALL, budget_steps=96 * 4,
            seed=0, snapshot_every=10_000, judge_against_baseline=judge,
        )  # fmt: skip
        events = Recorder()
        learner = Learner(config, events)
        learner.run()
        return [e[0] for e in events.episodes], list(learner.adapter.detector.history)

    plain_returns, plain_scores = run(judge=False)
    returns, scores = run(judge=True)
    # The copy of the house changes nothing the agent lives: same episodes, same returns.
    assert returns == plain_returns
    assert plain_scores == plain_returns
    # Judged against the programmable thermostat: return minus its (negative) return that day.
    advantages = [s - r for r, s in zip(returns, scores, strict=True)]
    assert len(advantages) == 4
    assert all(a > 0 for a in advantages)
    assert len(set(advantages)) == 4  # a different day, a different baseline cost


def test_sandbox_trials_judged_against_the_baseline_score_the_advantage() -> None:
    config = LearnerConfig(env_id="society/Thermostat-v0", algo="ppo", hyperparams=SMALL, seed=0)
    learner = Learner(config, Recorder())
    candidate = [Candidate("current", policy_tensors(learner.model.policy))]
    seeds = [7, 8, 9]

    def trial(*, against_baseline: bool) -> float:
        sandbox = make_env(config.env_id, shadow_baseline=against_baseline)
        run = try_candidates(candidate, sandbox=sandbox, scratch_policy=learner.fresh_policy(),
                             episodes=3, seed=7, against_baseline=against_baseline)  # fmt: skip
        return run.trials[0].score

    plain = make_env(config.env_id)
    baseline = make_baseline(config.env_id, PRIMARY_BASELINE[config.env_id], plain)
    baseline_mean = float(np.mean(play_episodes(baseline, plain, seeds=seeds, metrics={}).returns))
    assert trial(against_baseline=True) == pytest.approx(
        trial(against_baseline=False) - baseline_mean
    )
