"""Pooled rollouts: members train on their own and alike peers' fresh rollouts."""

from __future__ import annotations

import threading
from pathlib import Path

import msgspec
import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.buffers import RolloutBuffer

from agents.bus.arrays import to_wire
from agents.bus.codec import decode_as, encode
from agents.bus.schemas import FederatedWeights
from agents.exceptions import MessageRejected
from agents.learner import federation as federation_module
from agents.learner.federation import Federation, Likeness, OwnWeights
from agents.learner.learner import Learner, LearnerConfig
from agents.learner.pooling import (
    CHUNKS,
    PooledPPO,
    RolloutChunk,
    RolloutPool,
    chunk_of_columns,
    chunk_steps,
    join_own,
    pooled_buffer,
    rollout_columns,
)
from tests.learner.test_federation import message
from tests.learner.test_learner import Recorder

N_STEPS = 128
SMALL = {"n_steps": N_STEPS, "batch_size": 32, "n_epochs": 2}


def learner(seed: int, *, budget: int = 4 * N_STEPS) -> Learner:
    config = LearnerConfig(
        env_id="CartPole-v1", algo="ppo", seed=seed, init_seed=7, budget_steps=budget,
        snapshot_every=10_000, hyperparams=SMALL,
    )  # fmt: skip
    return Learner(config, Recorder())


def pooling(owner: Learner) -> Federation:
    published: list[OwnWeights] = []
    made = Federation(
        own_id="me", env_id=owner.config.env_id, algo=owner.spec.name,
        obs_space=owner.obs_spec, action_space=owner.action_spec, arch=owner.arch,
        likeness=Likeness(), publish=published.append, pool_rollouts=True,
    )  # fmt: skip
    made.published = published  # type: ignore[attr-defined]
    return made


def collected(seed: int = 0) -> PooledPPO:
    """A PPO of 64-step rollouts that has collected one (its buffer full), untrained."""
    model = PooledPPO("MlpPolicy", "CartPole-v1", seed=seed, n_steps=64, batch_size=32)
    _, callback = model._setup_learn(64)
    assert model.env is not None
    model.collect_rollouts(model.env, callback, model.rollout_buffer, 64)
    return model


def test_a_chunk_and_a_pooled_buffer_hold_the_rollouts_rows() -> None:
    a, b = collected(0), collected(1)
    chunks = [RolloutChunk.of(a.rollout_buffer), RolloutChunk.of(b.rollout_buffer)]
    assert [len(c) for c in chunks] == [64, 64]
    np.testing.assert_array_equal(chunks[0].obs, a.rollout_buffer.observations[:, 0])
    np.testing.assert_array_equal(chunks[1].log_probs, b.rollout_buffer.log_probs[:, 0])
    buffer = pooled_buffer(a, chunks)
    rows: dict[str, list[np.ndarray]] = {n: [] for n in ("observations", "actions", "advantages")}
    for batch in buffer.get(32):
        for name, column in rows.items():
            column.append(getattr(batch, name).numpy())
    got = np.concatenate(rows["advantages"])
    want = np.concatenate([c.advantages for c in chunks])
    assert sorted(got.tolist()) == pytest.approx(sorted(want.tolist()))  # every row, once
    assert np.concatenate(rows["observations"]).shape == (128, 4)


def test_a_chunk_travels_and_comes_back_equal() -> None:
    me = learner(0)
    model = collected(0)
    chunk = RolloutChunk.of(model.rollout_buffer)
    sent = msgspec.structs.replace(
        message(me, "peer", 1, 64, {}), rollout=rollout_columns(chunk, me.action_spec.shape)
    )
    received = decode_as(FederatedWeights, encode(sent))
    assert received.rollout is not None
    back = chunk_of_columns(received.rollout)
    for name in ("obs", "actions", "log_probs", "advantages", "returns", "values"):
        np.testing.assert_array_equal(getattr(back, name), getattr(chunk, name))


@pytest.mark.parametrize(
    ("column", "bad", "reason"),
    [
        ("log_probs", np.zeros(63, dtype=np.float32), "shape"),  # a row short
        ("advantages", np.zeros(64, dtype=np.int32), "dtype"),  # not a float
        ("actions", np.full(64, 7, dtype=np.int64), "invalid"),  # CartPole has actions 0 and 1
        ("values", np.full(64, np.nan, dtype=np.float32), "non_finite"),
    ],
)
def test_a_malformed_rollout_is_rejected(column: str, bad: np.ndarray, reason: str) -> None:
    me = learner(0)
    chunk = RolloutChunk.of(collected(0).rollout_buffer)
    columns = rollout_columns(chunk, me.action_spec.shape)
    columns = msgspec.structs.replace(columns, **{column: to_wire(bad)})
    sent = msgspec.structs.replace(message(me, "peer", 1, 64, {}), rollout=columns)
    with pytest.raises(MessageRejected) as caught:
        decode_as(FederatedWeights, encode(sent))
    assert caught.value.reason == reason


def _gae(
    rewards: np.ndarray,
    values: np.ndarray,
    starts: np.ndarray,
    last_values: np.ndarray,
    dones: np.ndarray,
) -> RolloutChunk:
    """SB3's advantages of one rollout (steps x envs) as a chunk."""
    steps, envs = rewards.shape
    buffer = RolloutBuffer(steps, spaces.Box(-1, 1, (1,)), spaces.Discrete(2), gamma=0.9,
                           gae_lambda=0.8, n_envs=envs)  # fmt: skip
    buffer.rewards, buffer.values, buffer.episode_starts = rewards, values, starts
    buffer.compute_returns_and_advantage(torch.as_tensor(last_values), dones)
    return RolloutChunk.of(buffer)


def test_own_chunks_joined_have_the_advantages_of_one_rollout() -> None:
    rng = np.random.default_rng(0)
    steps, envs, parts = 32, 2, 4
    rewards = rng.normal(size=(steps, envs)).astype(np.float32)
    values = rng.normal(size=(steps, envs)).astype(np.float32)
    starts = (rng.random((steps, envs)) < 0.1).astype(np.float32)
    last_values, dones = rng.normal(size=envs).astype(np.float32), np.array([0.0, 1.0])
    whole = _gae(rewards, values, starts, last_values, dones)
    n = steps // parts
    chunks = []
    for j in range(parts):
        rows = slice(j * n, (j + 1) * n)
        end = (values[(j + 1) * n], starts[(j + 1) * n]) if j < parts - 1 else (last_values, dones)
        chunks.append(_gae(rewards[rows], values[rows], starts[rows], *end))
    joined = join_own(chunks, 0.9 * 0.8)
    for env in range(envs):
        want = whole.advantages[env * steps : (env + 1) * steps]
        cut = np.concatenate([c.advantages[env * n : (env + 1) * n] for c in chunks])
        got = np.concatenate([c.advantages[env * n : (env + 1) * n] for c in joined])
        assert not np.allclose(cut, want)  # cut at every chunk's end, the estimate differs
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
        got_returns = np.concatenate([c.returns[env * n : (env + 1) * n] for c in joined])
        np.testing.assert_allclose(got_returns, whole.returns[env * steps : (env + 1) * steps],
                                   rtol=1e-5, atol=1e-5)  # fmt: skip
    # A peer's chunk (no episode starts: it did not travel) is not joined to ours.
    peer = RolloutChunk(**{f: getattr(chunks[0], f) for f in ("obs", "actions", "log_probs",
                           "advantages", "returns", "values")})  # fmt: skip
    assert join_own([peer, chunks[1]], 0.72)[0] is peer


def test_alone_the_pool_trains_every_fourth_chunk_on_all_four() -> None:
    model = collected(0)
    pool = RolloutPool(4 * 64, list)
    for _ in range(CHUNKS - 1):
        assert pool.batch(model) is None
    batch = pool.batch(model)
    assert batch is not None
    assert batch.buffer_size == 4 * 64
    assert pool.updates == 1
    assert pool.peer_rows == 0
    assert pool.batch(model) is None  # the four were used: a fresh start


def test_with_three_peers_the_pool_trains_after_every_chunk() -> None:
    model = collected(0)
    peer_chunks = [RolloutChunk.of(collected(s).rollout_buffer) for s in (1, 2, 3)]
    pool = RolloutPool(4 * 64, lambda: list(peer_chunks))
    for update in range(1, 4):
        batch = pool.batch(model)
        assert batch is not None
        assert batch.buffer_size == 4 * 64
        assert pool.updates == update
    assert pool.peer_rows == 3 * 3 * 64


def test_more_peers_rows_than_a_few_updates_take_are_dropped_oldest_first() -> None:
    model = collected(0)
    many = [RolloutChunk.of(collected(1).rollout_buffer)] * (CHUNKS * 4 + 3)
    pool = RolloutPool(4 * 64, lambda: list(many))
    batch = pool.batch(model)
    assert batch is not None
    # The cap is four updates' worth of peers' rows (16 chunks), our own chunk beside them.
    assert pool.dropped == 3
    assert batch.buffer_size == 64 + 16 * 64


def test_without_a_pool_it_is_plain_ppo() -> None:
    torch.manual_seed(0)
    plain = PPO("MlpPolicy", "CartPole-v1", seed=3, n_steps=64, batch_size=32, n_epochs=2)
    plain.learn(128)
    torch.manual_seed(0)
    pooled = PooledPPO("MlpPolicy", "CartPole-v1", seed=3, n_steps=64, batch_size=32, n_epochs=2)
    pooled.learn(128)
    for x, y in zip(
        plain.policy.state_dict().values(), pooled.policy.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(x, y)


def test_a_pool_is_not_saved_with_the_model(tmp_path: Path) -> None:
    model = collected(0)
    model.rollout_pool = RolloutPool(64, list)
    path = tmp_path / "model.zip"
    model.save(path)
    assert PooledPPO.load(path).rollout_pool is None


@pytest.mark.parametrize("chunks", [CHUNKS - 1, CHUNKS])
def test_a_pooling_learner_alone_trains_only_once_it_holds_a_rollout(chunks: int) -> None:
    me = learner(0, budget=chunks * chunk_steps(N_STEPS) + 1)  # the last chunk completes
    fed = pooling(me)
    me.join_federation(fed)
    assert isinstance(me.model, PooledPPO)
    assert me.model.n_steps == chunk_steps(N_STEPS) == N_STEPS // CHUNKS
    before = {k: v.clone() for k, v in me.model.policy.state_dict().items()}
    me.run()
    published = fed.published  # type: ignore[attr-defined]
    assert [len(w.rollout) for w in published] == [N_STEPS // CHUNKS] * chunks
    changed = any(
        not torch.equal(value, before[key]) for key, value in me.model.policy.state_dict().items()
    )
    # Three chunks alone are not yet a rollout's worth; the fourth makes one update of all four.
    assert changed == (chunks == CHUNKS)
    assert me.rollout_pool is not None
    assert me.rollout_pool.updates == (chunks == CHUNKS)


def test_pooling_learners_train_on_each_others_rollouts() -> None:
    a, b = learner(0, budget=8 * N_STEPS + 1), learner(1, budget=8 * N_STEPS + 1)
    feds = {"a": pooling(a), "b": pooling(b)}
    lock = threading.Lock()
    rounds = {"a": 0, "b": 0}

    def sender(name: str, source: Learner, to: str) -> object:
        def publish(weights: OwnWeights) -> None:
            assert weights.rollout is not None
            with lock:
                rounds[name] += 1
                sent = msgspec.structs.replace(
                    message(source, name, rounds[name], weights.samples, {}),
                    tensors=weights.tensors,
                    rollout=rollout_columns(weights.rollout, source.action_spec.shape),
                )
                feds[to].offer(decode_as(FederatedWeights, encode(sent)))

        return publish

    feds["a"].publish = sender("a", a, "b")  # type: ignore[assignment]
    feds["b"].publish = sender("b", b, "a")  # type: ignore[assignment]
    a.join_federation(feds["a"])
    b.join_federation(feds["b"])
    threads = [threading.Thread(target=x.run) for x in (a, b)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert rounds == {"a": 8 * CHUNKS, "b": 8 * CHUNKS}  # every chunk published
    for me, fed in ((a, feds["a"]), (b, feds["b"])):
        pool = me.rollout_pool
        assert pool is not None
        assert pool.peer_rows > 0
        # Two members: an update every two chunks or so, more than eight alone would make.
        assert pool.updates > 8
        assert fed.learns_from == (["b"] if me is a else ["a"])


@pytest.mark.parametrize("tolerance", [0.0, 2.0])
def test_a_peer_whose_policy_does_not_fit_our_world_is_not_trained_on(tolerance: float) -> None:
    me = learner(0, budget=chunk_steps(N_STEPS) + 1)
    fed = pooling(me)
    fed.likeness = Likeness(tolerance=tolerance)  # 0: no peer's value function is good enough
    me.join_federation(fed)
    other = learner(1)  # the same initial network: its value function fits as well as ours
    for round_ in (1, 2):
        chunk = RolloutChunk.of(collected(round_).rollout_buffer)
        sent = msgspec.structs.replace(
            message(other, "peer", round_, 64, {}),
            rollout=rollout_columns(chunk, me.action_spec.shape),
        )
        assert fed.offer(decode_as(FederatedWeights, encode(sent)))
    me.run()  # one chunk of 32 own steps, then the two peers' 64 each: a rollout's worth
    pool = me.rollout_pool
    assert pool is not None
    fits = tolerance > 0
    assert (pool.updates, pool.peer_rows, fed.unfit) == ((1, 128, 0) if fits else (0, 0, 2))


def test_a_weights_only_message_is_ignored_by_a_pooling_member() -> None:
    me, other = learner(0), learner(1)
    fed = pooling(me)
    assert not fed.offer(message(other, "peer", 1, 64, {}))
    assert fed.ignored == 1


def _pooled_message(source: Learner, agent: str, round_: int) -> FederatedWeights:
    chunk = RolloutChunk.of(collected(round_).rollout_buffer)
    sent = msgspec.structs.replace(
        message(source, agent, round_, 64, {}),
        rollout=rollout_columns(chunk, source.action_spec.shape),
    )
    return decode_as(FederatedWeights, encode(sent))


def test_a_member_waits_for_its_active_peers_fresh_rollouts_and_no_longer() -> None:
    me, other = learner(0), learner(1)
    fed = pooling(me)
    fed.wait_for_peers(5.0)  # nobody heard from yet: nobody to wait for, no timeout
    assert fed.waits_timed_out == 0
    assert fed.offer(_pooled_message(other, "peer", 1))
    fed.take()
    # The peer is active and has sent nothing since: its next chunk is waited for (had the
    # wait returned at once, the chunk sent 0.2 s later would not be there to take)...
    later = threading.Timer(0.2, lambda: fed.offer(_pooled_message(other, "peer", 2)))
    later.start()
    fed.wait_for_peers(5.0)
    assert [p.round for p in fed.take()] == [2]
    assert fed.waits_timed_out == 0  # ...until it arrives, not the whole timeout
    # ...and when it does not come, until the timeout runs out.
    fed.wait_for_peers(0.3)
    assert fed.waits_timed_out == 1


def test_a_peer_silent_for_long_is_not_waited_for(monkeypatch: pytest.MonkeyPatch) -> None:
    me, other = learner(0), learner(1)
    fed = pooling(me)
    assert fed.offer(_pooled_message(other, "peer", 1))
    fed.take()
    monkeypatch.setattr(federation_module, "ACTIVE_SECONDS", 0.0)
    fed.wait_for_peers(5.0)
    assert fed.waits_timed_out == 0  # waited for, it would have timed out


def test_a_pooling_learners_checkpoint_resumes_with_the_configured_rollout(tmp_path: Path) -> None:
    def resumable(budget: int) -> Learner:
        config = LearnerConfig(
            env_id="CartPole-v1", algo="ppo", seed=0, init_seed=7, budget_steps=budget,
            snapshot_every=10_000, hyperparams=SMALL, checkpoint_dir=tmp_path,
        )  # fmt: skip
        return Learner(config, Recorder())

    first = resumable(CHUNKS * chunk_steps(N_STEPS) + 1)
    first.join_federation(pooling(first))
    first.run()  # checkpoints at the end, its model collecting quarter rollouts
    resumed = resumable(2 * N_STEPS)
    assert resumed.resumed_from_step is not None
    assert isinstance(resumed.model, PooledPPO)
    assert resumed.model.n_steps == N_STEPS
    assert resumed.model.rollout_buffer.buffer_size == N_STEPS
    resumed.join_federation(pooling(resumed))
    assert resumed.model.n_steps == chunk_steps(N_STEPS)


def test_a_peers_rollouts_beyond_the_kept_few_are_dropped_and_counted() -> None:
    me, other = learner(0), learner(1)
    fed = pooling(me)
    for round_ in range(1, 7):
        assert fed.offer(_pooled_message(other, "peer", round_))
    assert [p.round for p in fed.take()] == [3, 4, 5, 6]
    assert fed.rollouts_dropped == 2
