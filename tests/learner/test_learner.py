"""The learner with real stable-baselines3 learning on tiny budgets."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm

from agents.bus.arrays import Tensor
from agents.exceptions import ConfigError, IncompatiblePolicy, StorageError
from agents.learner.adaptation import Adaptation
from agents.learner.algorithms import get_algorithm, parse_hyperparams
from agents.learner.experience import ExperienceColumns
from agents.learner.learner import Learner, LearnerConfig, PolicyState
from agents.learner.snapshots import build_policy, load_tensors, make_arch, parse_net_arch

# Small networks and early learning so each case takes a second or two.
CASES = {
    "ppo": ("CartPole-v1", {"n_steps": 64, "batch_size": 32, "n_epochs": 1}),
    "a2c": ("CartPole-v1", {"n_steps": 8}),
    "dqn": ("CartPole-v1", {"learning_starts": 50, "exploration_steps": 200, "buffer_size": 5000}),
    "sac": ("Pendulum-v1", {"learning_starts": 50, "batch_size": 32, "buffer_size": 5000}),
}


class Recorder:
    def __init__(self) -> None:
        self.batches: list[tuple[ExperienceColumns, int]] = []
        self.snapshots: list[tuple[list[Tensor], int]] = []
        self.snapshot_regimes: list[str] = []
        self.states: list[PolicyState] = []
        self.episodes: list[tuple[float, int, int, str]] = []
        self.adaptations: list[Adaptation] = []

    def experience(self, batch: ExperienceColumns, step: int) -> None:
        self.batches.append((batch, step))

    def snapshot(self, state: PolicyState) -> None:
        self.snapshots.append((state.tensors, state.step))
        self.snapshot_regimes.append(state.regime)
        self.states.append(state)

    def episode(self, episode_return: float, length: int, step: int, regime: str) -> None:
        self.episodes.append((episode_return, length, step, regime))

    def adapted(self, adaptation: Adaptation) -> None:
        self.adaptations.append(adaptation)


def make(
    algo: str, steps: int, directory: Path | None = None, env_id: str | None = None
) -> tuple[Learner, Recorder]:
    default_env, hyperparams = CASES[algo]
    spec = get_algorithm(algo)
    arch = make_arch(
        spec, net_arch=[16, 16] if algo not in {"ppo", "a2c"} else {"pi": [16], "vf": [16]}
    )
    events = Recorder()
    config = LearnerConfig(
        env_id=env_id or default_env, algo=algo, hyperparams=hyperparams, arch=arch, seed=3,
        budget_steps=steps, experience_batch=50, snapshot_every=100, checkpoint_every=10_000,
        checkpoint_dir=directory,
    )  # fmt: skip
    return Learner(config, events), events


@pytest.mark.parametrize("algo", sorted(CASES))
def test_learner_publishes_what_it_learns(algo: str) -> None:
    learner, events = make(algo, steps=300)
    learner.run()
    assert learner.step == 300
    # Experience: full batches of 50, columns of matching length and the world's shapes.
    assert len(events.batches) == 6
    obs_shape = tuple(learner.env.observation_space.shape or ())
    act_shape = tuple(learner.env.action_space.shape or ())
    for batch, _step in events.batches:
        assert len(batch) == 50
        assert batch.obs.shape == (50, *obs_shape)
        assert batch.next_obs.shape == (50, *obs_shape)
        assert batch.actions.shape == (50, *act_shape)
        assert learner.env.action_space.contains(
            batch.actions[0].astype(learner.env.action_space.dtype)
        )
    # Each transition's next_obs is the following obs, except where an episode ended.
    first, _ = events.batches[0]
    ended = first.terminated | first.truncated
    following = np.asarray(first.obs[1:][~ended[:-1]], dtype=np.float64)
    np.testing.assert_allclose(np.asarray(first.next_obs[:-1][~ended[:-1]], np.float64), following)
    # The untrained policy first (step 0), then every 100 steps; the last is not repeated.
    assert [step for _, step in events.snapshots] == [0, 100, 200, 300]


@pytest.mark.parametrize("algo", sorted(CASES))
def test_snapshot_rebuilds_the_same_policy_elsewhere(algo: str) -> None:
    learner, events = make(algo, steps=120)
    learner.run()
    tensors, _ = events.snapshots[-1]
    env = learner.env
    policy = build_policy(learner.spec, learner.arch, env.observation_space, env.action_space)
    load_tensors(policy, tensors)
    obs = np.stack([env.observation_space.sample() for _ in range(16)])
    theirs, _ = learner.model.policy.predict(obs, deterministic=True)
    ours, _ = policy.predict(obs, deterministic=True)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


def test_incompatible_tensors_change_nothing() -> None:
    learner, events = make("ppo", steps=64)
    learner.run()
    tensors, _ = events.snapshots[-1]
    before = {k: v.clone() for k, v in learner.model.policy.state_dict().items()}
    wrong_shape = [*tensors[:-1], Tensor(tensors[-1].name, "float32", [999], bytes(999 * 4))]
    with pytest.raises(IncompatiblePolicy, match="shape"):
        load_tensors(learner.model.policy, wrong_shape)
    with pytest.raises(IncompatiblePolicy, match="names"):
        load_tensors(learner.model.policy, tensors[:-1])
    as_double = [
        Tensor(t.name, "float64", t.shape, np.frombuffer(t.data, "<f4").astype("<f8").tobytes())
        for t in tensors
    ]
    with pytest.raises(IncompatiblePolicy, match="dtype"):
        load_tensors(learner.model.policy, as_double)
    for name, value in learner.model.policy.state_dict().items():
        assert torch.equal(value, before[name])


@pytest.mark.parametrize("algo", sorted(CASES))
def test_adam_learners_step_with_the_fused_kernel(algo: str) -> None:
    learner, _ = make(algo, steps=100)
    learner.run()
    policy = learner.model.policy
    # SAC's actor and critic have an optimiser each; the others one for the whole policy.
    parts: list[Any] = [policy.actor, policy.critic] if algo == "sac" else [policy]
    optimizers: list[torch.optim.Optimizer] = [part.optimizer for part in parts]
    for optimizer in optimizers:
        fused = optimizer.param_groups[0].get("fused")
        if algo == "a2c":
            assert isinstance(optimizer, torch.optim.RMSprop)  # SB3's choice, left alone
        else:
            assert isinstance(optimizer, torch.optim.Adam)
            assert fused is True
            assert optimizer.state, "the fused optimiser took steps"


@pytest.mark.parametrize("algo", ["ppo", "dqn"])
def test_resume_continues_from_the_checkpoint(algo: str, tmp_path: Path) -> None:
    first, _ = make(algo, steps=200, directory=tmp_path)
    first.run()
    saved = first.step
    assert (tmp_path / "checkpoint.json").exists()
    second, events = make(algo, steps=400, directory=tmp_path)
    assert second.resumed_from_step == saved
    assert second.step == saved
    # The same network and the same optimiser moments: learning goes on where it stopped.
    mine, theirs = second.model.policy.state_dict(), first.model.policy.state_dict()
    assert mine.keys() == theirs.keys()
    for name, value in theirs.items():
        assert torch.equal(mine[name], value), name
    before = first.model.policy.optimizer.state_dict()
    after = second.model.policy.optimizer.state_dict()
    assert after["param_groups"] == before["param_groups"]
    assert after["param_groups"][0]["fused"] is True  # Adam's fused kernel, resumed too
    assert before["state"], "the optimiser had stepped"
    for index, moments in before["state"].items():
        for key, value in moments.items():
            assert torch.equal(after["state"][index][key], value), (index, key)
    assert second.stats.episodes == first.stats.episodes
    if isinstance(second.model, OffPolicyAlgorithm):
        assert isinstance(first.model, OffPolicyAlgorithm)
        assert second.model.replay_buffer is not None
        assert first.model.replay_buffer is not None
        assert second.model.replay_buffer.size() == first.model.replay_buffer.size()
    second.run()
    assert second.step == 400
    assert [step for _, step in events.snapshots] == [300, 400]


def test_a_checkpoint_never_leaves_a_half_written_state(tmp_path: Path) -> None:
    learner, _ = make("ppo", steps=64, directory=tmp_path)
    learner.run()
    learner.checkpoint()
    learner.checkpoint()
    files = sorted(p.name for p in tmp_path.iterdir())
    # One model file, named by the manifest; old ones are removed, no temporary left.
    assert len([f for f in files if f.startswith("model-")]) == 1
    assert not [f for f in files if f.endswith(".tmp")]


def test_a_checkpoint_that_cannot_be_written_says_where_and_keeps_the_previous(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    learner, _ = make("ppo", steps=64, directory=tmp_path)
    learner.run()
    learner.checkpoint()
    manifest = (tmp_path / "checkpoint.json").read_text()

    def disk_full(*_args: object, **_kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(learner.model, "save", disk_full)
    with pytest.raises(StorageError, match=r"cannot write a checkpoint in .*No space left"):
        learner.checkpoint()
    assert (tmp_path / "checkpoint.json").read_text() == manifest
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_stop_interrupts_learning_without_a_budget() -> None:
    import threading

    learner, _ = make("ppo", steps=0)
    thread = threading.Thread(target=learner.run)
    thread.start()
    while learner.step < 50:
        thread.join(0.01)
    learner.stop()
    thread.join(30)
    assert not thread.is_alive()
    assert learner.step > 0


def test_hyperparameters_are_checked() -> None:
    spec = get_algorithm("dqn")
    merged = parse_hyperparams(spec, {"learning_rate": 1, "buffer_size": 1000})
    assert merged["learning_rate"] == 1.0
    assert isinstance(merged["learning_rate"], float)
    assert merged["exploration_steps"] == 10_000
    with pytest.raises(ConfigError, match="unknown hyperparameter 'lr'"):
        parse_hyperparams(spec, {"lr": 0.1})
    with pytest.raises(ConfigError, match="exploration_steps"):
        parse_hyperparams(spec, {"exploration_fraction": 0.1})
    with pytest.raises(ConfigError, match="buffer_size='big'"):
        parse_hyperparams(spec, {"buffer_size": "big"})
    with pytest.raises(ConfigError, match="unknown algorithm"):
        get_algorithm("trpo")


def test_policy_architecture_is_checked() -> None:
    ppo = get_algorithm("ppo")
    assert parse_net_arch("64,64") == [64, 64]
    assert parse_net_arch("pi=32;vf=64,64") == {"pi": [32], "vf": [64, 64]}
    with pytest.raises(ConfigError, match="net_arch"):
        parse_net_arch("big")
    with pytest.raises(ConfigError, match="activation"):
        make_arch(ppo, activation="sigmoidish")
    with pytest.raises(ConfigError, match="heads"):
        make_arch(ppo, net_arch={"qf": [64]})
    with pytest.raises(ConfigError, match="policy option"):
        make_arch(get_algorithm("sac"), options={"n_critics": "two"})
    with pytest.raises(ConfigError, match="unknown policy option"):
        make_arch(get_algorithm("dqn"), options={"ortho_init": True})


def test_unknown_world_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="NoSuchEnv"):
        make("ppo", steps=10, env_id="NoSuchEnv-v0")
