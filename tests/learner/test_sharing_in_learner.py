"""Peers' experience in the replay buffer, and adopting a peer's policy, in the learner."""

from __future__ import annotations

import logging

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3 import DQN, PPO, SAC
from stable_baselines3.common.type_aliases import TrainFreq, TrainFrequencyUnit

from agents.bus.schemas import HyperValue, Lineage
from agents.learner import intake
from agents.learner.adaptation import Adoption
from agents.learner.experience import ExperienceColumns
from agents.learner.learner import Learner, LearnerConfig
from agents.learner.snapshots import load_tensors, policy_tensors
from tests.learner.test_learner import Recorder
from tests.learner.test_lifelong_loop import balancer


def peer_batch(rows: int, obs_dim: int, action: np.ndarray, reward: float) -> ExperienceColumns:
    rng = np.random.default_rng(0)
    return ExperienceColumns(
        obs=rng.standard_normal((rows, obs_dim)).astype(np.float32),
        next_obs=rng.standard_normal((rows, obs_dim)).astype(np.float32),
        actions=np.repeat(action[None], rows, axis=0),
        rewards=np.full(rows, reward, dtype=np.float32),
        terminated=np.zeros(rows, dtype=bool),
        truncated=np.zeros(rows, dtype=bool),
    )


def dqn(peer_fraction: float, *, fit_test: bool = False, **overrides: object) -> Learner:
    """A small DQN on CartPole; without ``fit_test`` it takes every batch (the marker rewards of
    7.0 below would not fit CartPole's 1.0: the fit test has tests of its own)."""
    settings: dict[str, object] = {
        "env_id": "CartPole-v1", "algo": "dqn", "budget_steps": 300, "seed": 0,
        "peer_fraction": peer_fraction,
        "hyperparams": {"learning_starts": 50, "buffer_size": 5000},
    }  # fmt: skip
    learner = Learner(LearnerConfig(**{**settings, **overrides}), Recorder())  # type: ignore[arg-type]
    if not fit_test:
        learner.intake.fit_tolerance = None
    return learner


def cartpole_batch(rows: int, seed: int) -> ExperienceColumns:
    """Transitions of CartPole itself under random actions: what a like peer would send."""
    env = gym.make("CartPole-v1")
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    columns: dict[str, list[object]] = {k: [] for k in ("obs", "next", "act", "rew", "term")}
    for _ in range(rows):
        action = int(rng.integers(2))
        next_obs, reward, terminated, truncated, _ = env.step(action)
        for key, value in zip(columns, (obs, next_obs, action, reward, terminated), strict=True):
            columns[key].append(value)
        obs = env.reset()[0] if terminated or truncated else next_obs
    return ExperienceColumns(
        obs=np.array(columns["obs"], dtype=np.float32),
        next_obs=np.array(columns["next"], dtype=np.float32),
        actions=np.array(columns["act"]),
        rewards=np.array(columns["rew"], dtype=np.float32),
        terminated=np.array(columns["term"], dtype=bool),
        truncated=np.zeros(rows, dtype=bool),
    )


def test_a_dqn_learner_takes_batches_that_fit_its_world_and_refuses_others() -> None:
    learner = dqn(peer_fraction=0.5, fit_test=True, budget_steps=1200, experience_batch=100)
    # Another world's transitions: other dynamics, rewards of 7 where CartPole pays 1.
    for _ in range(3):
        assert learner.offer_experience(peer_batch(100, 4, np.array(1), reward=7.0), "stranger")
    for seed in range(3):
        assert learner.offer_experience(cartpole_batch(100, seed), "alike")
    learner.run()
    assert learner.stats.experience_unfit == 3
    assert learner.stats.peer_transitions == 300
    assert set(learner.intake.taken_from) == {"alike"}
    model = learner.model
    assert isinstance(model, DQN)
    assert model.replay_buffer is not None
    assert not (model.replay_buffer.rewards[: model.replay_buffer.size()] == 7.0).any()


@pytest.mark.parametrize(("ratio", "taken"), [(1.2, True), (1.5, False), (2.0, False)])
def test_the_fit_test_takes_a_batch_a_little_worse_than_ours_and_refuses_half_again_as_bad(
    ratio: float, taken: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The default tolerance is measured (traffic-dqn-mixed, docs/benchmarks.md): a peer's batch
    # 1.5 or 2 times as wrong as our own under our Q-network misled intersections unlike it.
    learner = dqn(peer_fraction=0.5, fit_test=True)
    own, theirs = cartpole_batch(100, 0), cartpole_batch(100, 1)
    errors = {id(own): 0.4, id(theirs): 0.4 * ratio}
    monkeypatch.setattr(intake, "td_error", lambda _model, batch: errors[id(batch)])
    learner.intake.remember_own(own)
    assert learner.intake.fits(learner.model, theirs) is taken


def test_without_a_batch_of_its_own_a_dqn_learner_takes_no_peers_batch_yet() -> None:
    # The first own batch comes at 256 steps: a run of 200 has nothing to measure peers by.
    learner = dqn(peer_fraction=0.5, fit_test=True, budget_steps=200)
    assert learner.offer_experience(cartpole_batch(100, 0), "alike")
    learner.run()
    assert learner.stats.peer_transitions == 0
    assert learner.stats.experience_unfit == 0
    assert not learner.intake.empty()


def test_off_policy_learners_add_peers_transitions_up_to_their_share() -> None:
    learner = dqn(peer_fraction=0.5)
    for _ in range(4):
        assert learner.offer_experience(peer_batch(100, 4, np.array(1), reward=7.0))
    learner.run()
    model = learner.model
    assert isinstance(model, DQN)
    assert model.replay_buffer is not None
    # Half the intake at most: 300 own transitions admit up to 300 from peers, by batches.
    assert learner.stats.peer_transitions == 300
    # (SB3 stores a transition after the callback: the one that hit the budget is not kept.)
    assert model.replay_buffer.size() == 299 + 300
    rewards = model.replay_buffer.rewards[: model.replay_buffer.size()]
    assert int((rewards == 7.0).sum()) == 300  # the peers' transitions, as they were sent


def test_peers_transitions_add_updates_in_proportion() -> None:
    alone, sharing = dqn(peer_fraction=0.5), dqn(peer_fraction=0.5)
    for _ in range(4):
        sharing.offer_experience(peer_batch(100, 4, np.array(1), reward=7.0))
    alone.run()
    sharing.run()
    assert isinstance(alone.model, DQN)
    assert isinstance(sharing.model, DQN)
    # SB3's default: one update per 4 own steps after learning_starts (50): about 62 of them.
    # Twice the intake (300 own + 300 peers') gives about twice the updates.
    updates_alone, updates_sharing = alone.model._n_updates, sharing.model._n_updates
    assert 55 <= updates_alone <= 65
    assert updates_sharing >= 1.8 * updates_alone
    # ...more often, not longer, and with the target network refreshed twice as often too.
    # (SB3 annotates train_freq as its constructor argument; after setup it is a TrainFreq.)
    frequencies: list[object] = [alone.model.train_freq, sharing.model.train_freq]
    step = TrainFrequencyUnit.STEP
    assert frequencies == [TrainFreq(4, step), TrainFreq(2, step)]
    assert alone.model.target_update_interval == 10_000  # SB3's default
    assert 4_800 <= sharing.model.target_update_interval <= 5_200


def test_a_small_share_admits_little() -> None:
    learner = dqn(peer_fraction=0.1)
    for _ in range(4):
        learner.offer_experience(peer_batch(10, 4, np.array(0), reward=7.0))
    learner.run()
    # 300 own steps at a tenth admit about 33 peer transitions: here 4 batches of 10 = 40.
    assert learner.stats.peer_transitions <= 0.1 / 0.9 * 300 + 10


def test_box_actions_are_stored_the_way_sb3_stores_them() -> None:
    config = LearnerConfig(
        env_id="Pendulum-v1", algo="sac", budget_steps=60, seed=0,
        hyperparams={"learning_starts": 1000, "buffer_size": 1000},
    )  # fmt: skip
    learner = Learner(config, Recorder())
    learner.offer_experience(peer_batch(5, 3, np.array([2.0], dtype=np.float32), reward=7.0))
    learner.run()
    model = learner.model
    assert isinstance(model, SAC)
    assert model.replay_buffer is not None
    stored = model.replay_buffer.actions[: model.replay_buffer.size()]
    peers = stored[model.replay_buffer.rewards[: model.replay_buffer.size()] == 7.0]
    np.testing.assert_allclose(peers, 1.0)  # 2.0, the top of Pendulum's range, scaled to 1


def test_on_policy_learners_never_take_peers_transitions() -> None:
    learner = Learner(LearnerConfig(env_id="CartPole-v1", algo="ppo"), Recorder())
    assert not learner.offer_experience(peer_batch(10, 4, np.array(1), reward=1.0))


def ppo_learner() -> Learner:
    config = LearnerConfig(
        env_id="CartPole-v1", algo="ppo", seed=0,
        hyperparams={"n_steps": 64, "batch_size": 32, "learning_rate": 3e-4},
    )  # fmt: skip
    return Learner(config, Recorder())


MUTATED: dict[str, HyperValue] = {"learning_rate": 1e-4, "ent_coef": 0.01, "n_steps": 4096}


def test_adopting_a_peers_policy_and_mutated_hyperparameters() -> None:
    learner = ppo_learner()
    theirs = balancer(learner)  # keeps the pole up; our fresh network does not
    adoption = Adoption(
        tensors=theirs, lineage=Lineage(agent="peer", version=7), hyperparams=MUTATED,
        reason="test",
    )  # fmt: skip
    learner.adapter.adopt(adoption)
    model = learner.model
    assert isinstance(model, PPO)
    assert [t.data for t in policy_tensors(model.policy)] == [t.data for t in theirs]
    assert learner.lineage == Lineage(agent="peer", version=7)
    assert (learner.stats.adoptions, learner.stats.adoptions_declined) == (1, 0)
    assert model.lr_schedule(1.0) == pytest.approx(1e-4)
    assert model.ent_coef == pytest.approx(0.01)
    assert model.n_steps == 64  # not a hyperparameter that can change mid-life
    assert learner.hyperparams["learning_rate"] == pytest.approx(1e-4)


def test_weights_that_do_clearly_worse_on_this_device_are_declined(
    caplog: pytest.LogCaptureFixture,
) -> None:
    learner = ppo_learner()
    ours = balancer(learner)
    load_tensors(learner.model.policy, ours)
    # The mirrored rule pushes the cart the wrong way: fine for a reversed motor, not here.
    adoption = Adoption(
        tensors=balancer(learner, mirrored=True), lineage=Lineage(agent="peer", version=3),
        hyperparams=MUTATED, reason="test",
    )  # fmt: skip
    steps_before = learner.stats.adaptation_steps
    with caplog.at_level(logging.INFO, logger="agents.learner.adaptation"):
        learner.adapter.adopt(adoption)
    said = [r.getMessage() for r in caplog.records if "peer" in r.getMessage()]
    assert len(said) == 1
    assert said[0].startswith("declined peer@v3's weights")  # and never "adopted"
    assert [t.data for t in policy_tensors(learner.model.policy)] == [t.data for t in ours]
    assert (learner.stats.adoptions, learner.stats.adoptions_declined) == (0, 1)
    assert learner.lineage is None
    assert learner.stats.adaptation_steps > steps_before  # the trial is counted
    assert learner.hyperparams["learning_rate"] == pytest.approx(1e-4)  # exploring goes on


def test_adopted_weights_start_a_new_context_and_the_old_one_is_remembered() -> None:
    learner = ppo_learner()
    ours = balancer(learner)
    load_tensors(learner.model.policy, ours)
    for episode in range(8):  # a context with a policy worth remembering
        learner.adapter.observe(480.0 + episode, step=100 * episode)
    context = learner.stats.context
    learner.adapter.check_adoptions = False  # the sandbox's verdict is another test's
    learner.adapter.adopt(
        Adoption(
            tensors=balancer(learner, mirrored=True),
            lineage=Lineage(agent="peer", version=3),
            hyperparams={},
            reason="test",
        )
    )
    remembered = learner.library.get(context)
    assert remembered is not None, "the replaced policy went with the weights"
    assert [t.data for t in remembered.tensors] == [t.data for t in ours]
    assert learner.stats.context == context + 1
