"""Federated learning: whom an agent averages with, how, and that learners really do it."""

from __future__ import annotations

import math
import threading

import msgspec
import numpy as np
import pytest
import torch

from agents.bus.schemas import SCHEMA_VERSION, FederatedWeights, HyperValue
from agents.bus.signing import tensor_digest
from agents.learner.federation import (
    Federation,
    FitData,
    Likeness,
    OwnWeights,
    PeerWeights,
    value_error,
)
from agents.learner.learner import Learner, LearnerConfig
from agents.learner.snapshots import load_tensors, policy_tensors, state_tensors
from agents.likeness import device_distance
from tests.learner.test_learner import Recorder

N_STEPS = 64


def test_device_distance_is_the_largest_relative_difference() -> None:
    assert device_distance({"a": 100.0, "b": 1.0}, {"a": 80.0, "b": 1.0}) == pytest.approx(0.2)
    assert device_distance({"a": 1.0}, {"b": 5.0}) == 0.0  # nothing in common to compare
    assert device_distance({"a": 0.0}, {"a": 0.0}) == 0.0
    assert device_distance({"mode": "eco"}, {"mode": "eco"}) == 0.0
    assert device_distance({"mode": "eco"}, {"mode": "boost"}) == 1.0


def learner(seed: int, *, init_seed: int | None = 7, budget: int = 4 * N_STEPS) -> Learner:
    config = LearnerConfig(
        env_id="CartPole-v1", algo="ppo", seed=seed, init_seed=init_seed, budget_steps=budget,
        snapshot_every=10_000, hyperparams={"n_steps": N_STEPS, "batch_size": 32, "n_epochs": 2},
    )  # fmt: skip
    return Learner(config, Recorder())


def message(
    source: Learner, agent: str, round_: int, samples: int, device: dict[str, HyperValue]
) -> FederatedWeights:
    tensors = policy_tensors(source.model.policy)
    return FederatedWeights(
        schema=SCHEMA_VERSION, agent=agent, round=round_, step=source.step,
        algo=source.spec.name, env_id=source.config.env_id, obs_space=source.obs_spec,
        action_space=source.action_spec, arch=source.arch, samples=samples, tensors=tensors,
        digest=tensor_digest(tensors), device=device,
    )  # fmt: skip


def federation(owner: Learner, device: dict[str, HyperValue] | None = None) -> Federation:
    published: list[OwnWeights] = []
    made = Federation(
        own_id="me", env_id=owner.config.env_id, algo=owner.spec.name,
        obs_space=owner.obs_spec, action_space=owner.action_spec, arch=owner.arch,
        likeness=Likeness(device=device or {}), publish=published.append,
    )  # fmt: skip
    made.published = published  # type: ignore[attr-defined]
    return made


def test_a_shared_init_seed_gives_identical_networks_and_own_seeds_do_not() -> None:
    a, b, c = learner(0), learner(1), learner(1, init_seed=None)
    for x, y in zip(policy_tensors(a.model.policy), policy_tensors(b.model.policy), strict=True):
        assert x.data == y.data
    assert policy_tensors(a.model.policy)[0].data != policy_tensors(c.model.policy)[0].data


def test_offers_keep_only_peers_that_could_be_averaged_and_their_newest_round() -> None:
    me, other = learner(0), learner(1)
    fed = federation(me, device={"length": 0.5})
    assert not fed.offer(message(other, "me", 1, 64, {}))  # our own, echoed
    assert not fed.offer(message(other, "far", 1, 64, {"length": 2.0}))  # unlike device
    wrong = message(other, "p", 1, 64, {})
    assert not fed.offer(msgspec.structs.replace(wrong, env_id="Acrobot-v1"))
    assert fed.ignored == 3
    assert fed.offer(message(other, "p", 2, 64, {"length": 0.55}))
    assert not fed.offer(message(other, "p", 1, 64, {}))  # older than what waits
    taken = fed.take()
    assert [(p.agent, p.round) for p in taken] == [("p", 2)]
    assert fed.take() == []  # each update is used once


def test_averaging_weighs_each_member_by_its_samples() -> None:
    me, peer_a, peer_b = (
        learner(0, init_seed=None),
        learner(1, init_seed=None),
        learner(2, init_seed=None),
    )
    fed = federation(me)
    own_before = {k: v.clone() for k, v in me.model.policy.state_dict().items()}
    loaded = []
    for name, source, samples in (("a", peer_a, 128), ("b", peer_b, 256)):
        scratch = me.fresh_policy()
        load_tensors(scratch, policy_tensors(source.model.policy))
        loaded.append((PeerWeights(name, 1, samples, [], {}), scratch))
    used = fed.average_into(me.model.policy, 128, loaded, fit=None)
    assert used == ["a", "b"]
    after = me.model.policy.state_dict()
    for key, value in after.items():
        expected = (
            own_before[key] * 0.25
            + peer_a.model.policy.state_dict()[key] * 0.25
            + peer_b.model.policy.state_dict()[key] * 0.5
        )
        torch.testing.assert_close(value, expected)
    assert fed.rounds == 1
    assert fed.learns_from == ["a", "b"]


def test_a_peer_whose_values_do_not_fit_our_rollout_is_left_out() -> None:
    me = learner(0)
    fed = federation(me)
    obs = np.random.default_rng(0).standard_normal((64, 4)).astype(np.float32)
    own_values = value_error(me.model.policy, FitData(obs, np.zeros(64), 0.0))
    fit = FitData(obs=obs, returns=np.zeros(64), own_error=max(own_values, 1e-3))
    alike, unlike = me.fresh_policy(), me.fresh_policy()
    load_tensors(alike, policy_tensors(me.model.policy))
    state = unlike.state_dict()
    bias = next(k for k in state if k.startswith("value_net") and k.endswith("bias"))
    state[bias] = state[bias] + 100.0  # predicts returns of 100 where ours are 0
    unlike.load_state_dict(state)
    before = {k: v.clone() for k, v in me.model.policy.state_dict().items()}
    used = fed.average_into(
        me.model.policy,
        64,
        [
            (PeerWeights("alike", 1, 64, [], {}), alike),
            (PeerWeights("unlike", 1, 64, [], {}), unlike),
        ],
        fit,
    )
    assert used == ["alike"]
    assert fed.unfit == 1
    for key, value in me.model.policy.state_dict().items():
        torch.testing.assert_close(value, before[key])  # the alike peer was our own weights


def test_learners_publish_every_rollout_and_average_each_others_weights() -> None:
    a, b = learner(0, budget=8 * N_STEPS), learner(1, budget=8 * N_STEPS)
    lock = threading.Lock()
    feds = {"a": federation(a), "b": federation(b)}
    rounds = {"a": 0, "b": 0}

    def sender(name: str, source: Learner, to: str) -> object:
        def publish(weights: OwnWeights) -> None:
            with lock:
                rounds[name] += 1
                sent = message(source, name, rounds[name], weights.samples, {})
                feds[to].offer(msgspec.structs.replace(sent, tensors=weights.tensors))

        return publish

    feds["a"].publish = sender("a", a, "b")  # type: ignore[assignment]
    feds["b"].publish = sender("b", b, "a")  # type: ignore[assignment]
    a.federation, b.federation = feds["a"], feds["b"]
    threads = [threading.Thread(target=x.run) for x in (a, b)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    # One publication at the start of each of the 8 rollouts of 64 steps.
    assert rounds == {"a": 8, "b": 8}
    assert feds["a"].rounds >= 1
    assert feds["b"].rounds >= 1
    assert feds["a"].learns_from == ["b"]
    assert feds["b"].learns_from == ["a"]


def test_with_updates_the_members_updates_are_summed_not_averaged() -> None:
    # Synchronous case: both started at w0 and trained to w0 + d_me and w0 + d_peer; the
    # round must land at w0 + d_me + d_peer, as one learner that had both rollouts' updates.
    me, other = learner(0), learner(1)
    start = {k: v.clone() for k, v in me.model.policy.state_dict().items()}
    d_me = {k: torch.full_like(v, 0.01) for k, v in start.items()}
    d_peer = {k: torch.full_like(v, -0.03) for k, v in start.items()}
    me.model.policy.load_state_dict({k: start[k] + d_me[k] for k in start})
    peer_policy = other.fresh_policy()
    peer_policy.load_state_dict({k: start[k] + d_peer[k] for k in start})
    peer = PeerWeights("p", 1, 64, [], {}, delta=state_tensors(d_peer))
    fed = federation(me)
    assert fed.average_into(me.model.policy, 64, [(peer, peer_policy)], None, d_me) == ["p"]
    for key, value in me.model.policy.state_dict().items():
        torch.testing.assert_close(value, start[key] + d_me[key] + d_peer[key])


def test_apart_the_round_adds_each_update_once_and_pulls_part_way_to_the_members_landing() -> None:
    # Asynchronous case: the peer started its round elsewhere (w1, not our w0). We keep our
    # own weights plus the peer's update, then move ``pull`` of the way toward where the two
    # members land on average, not all the way to an average that would undo our update.
    me, other = learner(0), learner(1)
    w0 = {k: v.clone() for k, v in me.model.policy.state_dict().items()}
    w1 = {k: v + 0.2 for k, v in w0.items()}
    d_me = {k: torch.full_like(v, 0.01) for k, v in w0.items()}
    d_peer = {k: torch.full_like(v, -0.03) for k, v in w0.items()}
    peer_policy = other.fresh_policy()
    peer_policy.load_state_dict({k: w1[k] + d_peer[k] for k in w0})
    peer = PeerWeights("p", 1, 64, [], {}, delta=state_tensors(d_peer))
    for pull in (0.0, 0.25, 1.0):
        me.model.policy.load_state_dict({k: w0[k] + d_me[k] for k in w0})
        fed = federation(me)
        fed.pull = pull
        assert fed.average_into(me.model.policy, 64, [(peer, peer_policy)], None, d_me) == ["p"]
        for key, value in me.model.policy.state_dict().items():
            ours = w0[key] + d_me[key] + d_peer[key]
            landing = (w0[key] + w1[key]) / 2 + d_me[key] + d_peer[key]
            torch.testing.assert_close(value, ours + pull * (landing - ours))
    with pytest.raises(ValueError, match="pull"):
        Federation(
            own_id="me", env_id="CartPole-v1", algo="ppo", obs_space=me.obs_spec,
            action_space=me.action_spec, arch=me.arch, likeness=Likeness(), publish=print,
            pull=1.5,
        )  # fmt: skip


def test_a_peer_without_an_update_makes_the_round_a_plain_average() -> None:
    me, other = learner(0), learner(1)
    start = {k: v.clone() for k, v in me.model.policy.state_dict().items()}
    peer_policy = other.fresh_policy()
    peer_policy.load_state_dict({k: v + 1.0 for k, v in start.items()})
    fed = federation(me)
    own_delta = {k: torch.ones_like(v) for k, v in start.items()}
    fed.average_into(
        me.model.policy, 64, [(PeerWeights("p", 1, 64, [], {}), peer_policy)], None, own_delta
    )
    for key, value in me.model.policy.state_dict().items():
        torch.testing.assert_close(value, start[key] + 0.5)


def test_a_peers_update_that_does_not_fit_is_counted_and_the_round_is_a_plain_average() -> None:
    me, other = learner(0), learner(1)
    start = {k: v.clone() for k, v in me.model.policy.state_dict().items()}
    peer_policy = other.fresh_policy()
    peer_policy.load_state_dict({k: v + 1.0 for k, v in start.items()})
    wrong = {f"x.{k}": torch.ones(3) for k in start}  # another network's names and shapes
    peer = PeerWeights("p", 1, 64, [], {}, delta=state_tensors(wrong))
    fed = federation(me)
    own_delta = {k: torch.ones_like(v) for k, v in start.items()}
    assert fed.average_into(me.model.policy, 64, [(peer, peer_policy)], None, own_delta) == ["p"]
    assert fed.unusable_updates == 1
    for key, value in me.model.policy.state_dict().items():
        torch.testing.assert_close(value, start[key] + 0.5)


def test_a_device_announcing_a_non_finite_parameter_is_unlike() -> None:
    """A peer's announcement comes off the network: NaN or infinity must not read as alike."""
    ours = {"capacity_kwh": 10.0}
    for odd in (math.nan, math.inf, -math.inf):
        assert device_distance(ours, {"capacity_kwh": odd}) == 1.0
        assert device_distance({"capacity_kwh": odd}, ours) == 1.0
    assert device_distance(ours, {"capacity_kwh": 9.0}) == pytest.approx(0.1)
