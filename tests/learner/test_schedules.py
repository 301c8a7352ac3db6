"""Lifelong learning has no planned end: schedules must neither restart nor run out."""

from __future__ import annotations

from pathlib import Path

import pytest
from stable_baselines3 import DQN, PPO
from stable_baselines3.common.callbacks import BaseCallback

from agents.learner.learner import Learner, LearnerConfig
from agents.learner.schedules import LinearToFloor
from tests.learner.test_learner import Recorder


def test_plain_sb3_restarts_its_schedule_when_learning_in_chunks() -> None:
    """The problem this project handles: chunked ``learn()`` re-bases SB3's progress."""
    seen: list[float] = []

    class Watch(BaseCallback):
        def _on_rollout_start(self) -> None:
            seen.append(self.model.lr_schedule(self.model._current_progress_remaining))

        def _on_step(self) -> bool:
            return True

    model = PPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=32, n_epochs=1,
                learning_rate=lambda progress: 1e-3 * progress, device="cpu", seed=0)  # fmt: skip
    model.learn(128, callback=Watch())
    first_chunk = len(seen)
    model.learn(128, reset_num_timesteps=False, callback=Watch())
    # The learning rate decays to zero by the end of the first chunk, then comes back up:
    # the "decay" restarts at every chunk instead of following the agent's life.
    assert min(seen[: first_chunk + 1]) == pytest.approx(0.0, abs=1e-4) or seen[first_chunk] < 1e-4
    assert max(seen[first_chunk + 1 :]) > seen[first_chunk]


def dqn_learner(tmp_path: Path, steps: int) -> Learner:
    config = LearnerConfig(
        env_id="CartPole-v1", algo="dqn", budget_steps=steps, seed=0, checkpoint_dir=tmp_path,
        hyperparams={"exploration_steps": 200, "exploration_initial_eps": 1.0,
                     "exploration_final_eps": 0.05, "learning_starts": 50, "buffer_size": 2000},
    )  # fmt: skip
    return Learner(config, Recorder())


def test_epsilon_follows_the_agents_own_steps_across_restarts(tmp_path: Path) -> None:
    learner = dqn_learner(tmp_path, steps=100)
    learner.run()
    assert isinstance(learner.model, DQN)
    # Halfway through exploration_steps: halfway from 1.0 to 0.05 (within one step).
    assert learner.model.exploration_rate == pytest.approx(1.0 - 0.95 * 100 / 200, abs=0.005)
    resumed = dqn_learner(tmp_path, steps=300)
    assert resumed.step == 100
    resumed.run()
    assert isinstance(resumed.model, DQN)
    assert resumed.model.exploration_rate == pytest.approx(0.05)
    again = dqn_learner(tmp_path, steps=400)
    again.run()
    assert isinstance(again.model, DQN)
    # A restart does not bring exploration back to 1.0: the schedule is in agent steps.
    assert again.model.exploration_rate == pytest.approx(0.05)


@pytest.mark.parametrize("algo", ["ppo", "a2c", "dqn", "sac"])
def test_no_schedule_runs_out_however_long_the_agent_lives(algo: str) -> None:
    env = "Pendulum-v1" if algo == "sac" else "CartPole-v1"
    config = LearnerConfig(env_id=env, algo=algo, hyperparams={"learning_rate": 5e-4})
    learner = Learner(config, Recorder())
    model = learner.model
    for step in (0, 10_000, 10**9, 10**15):
        model.num_timesteps = step
        # Whatever progress SB3 computes, the value is the configured one.
        for progress in (1.0, 0.0, -5.0):
            assert model.lr_schedule(progress) == pytest.approx(5e-4)
            if isinstance(model, PPO):
                assert model.clip_range(progress) == pytest.approx(0.2)  # type: ignore[operator]
            if isinstance(model, DQN):
                assert model.exploration_schedule(progress) == pytest.approx(
                    1.0 if step == 0 else 0.05
                )


def test_linear_to_floor_holds_its_floor() -> None:
    schedule = LinearToFloor(start=1.0, floor=0.1, steps=100)
    assert schedule(0) == 1.0
    assert schedule(50) == pytest.approx(0.55)
    assert schedule(100) == 0.1
    assert schedule(10**12) == 0.1
