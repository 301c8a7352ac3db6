"""Snapshot evaluation, called directly (it normally runs in a worker process)."""

from __future__ import annotations

import msgspec
import torch

from agents.bus.codec import encode
from agents.bus.schemas import SCHEMA_VERSION, PolicySnapshot
from agents.bus.signing import tensor_digest
from agents.coordinator.evaluation import EvaluationRequest, evaluate_snapshot
from agents.learner.learner import Learner, LearnerConfig
from agents.learner.snapshots import policy_tensors
from tests import factories
from tests.learner.test_learner import Recorder


def snapshot_of(learner: Learner, env_id: str | None = None) -> PolicySnapshot:
    tensors = policy_tensors(learner.model.policy)
    return PolicySnapshot(
        schema=SCHEMA_VERSION, agent="a0", version=1, step=learner.step, algo=learner.spec.name,
        env_id=env_id or learner.config.env_id, obs_space=learner.obs_spec,
        action_space=learner.action_spec, arch=learner.arch, tensors=tensors,
        digest=tensor_digest(tensors),
    )  # fmt: skip


def learner(algo: str = "ppo", env: str = "CartPole-v1") -> Learner:
    return Learner(LearnerConfig(env_id=env, algo=algo, seed=1), Recorder())


def test_evaluation_is_deterministic_on_fixed_seeds() -> None:
    payload = encode(snapshot_of(learner()))
    first = evaluate_snapshot(EvaluationRequest(payload, episodes=3, seed=7))
    second = evaluate_snapshot(EvaluationRequest(payload, episodes=3, seed=7))
    assert first.error_reason is None
    assert len(first.returns) == 3
    assert first.returns == second.returns
    assert all(r >= 1 for r in first.returns)  # CartPole pays 1 per step


def test_evaluation_measures_the_policy_it_was_given() -> None:
    """A policy that always pushes left scores what always-left scores, not something else."""
    agent = learner()
    policy = agent.model.policy
    # Make the action head prefer action 0 overwhelmingly.
    state = policy.state_dict()
    state["action_net.weight"].zero_()
    state["action_net.bias"][:] = torch.tensor([10.0, -10.0])
    policy.load_state_dict(state)
    result = evaluate_snapshot(EvaluationRequest(encode(snapshot_of(agent)), episodes=3, seed=0))
    # Always pushing left topples the pole within a dozen steps.
    assert result.error_reason is None
    assert max(result.returns) < 15


def test_incompatible_spaces_are_reported_not_raised() -> None:
    snapshot = snapshot_of(learner())
    other = msgspec.structs.replace(snapshot, obs_space=factories.DISCRETE2)
    result = evaluate_snapshot(EvaluationRequest(encode(other), episodes=1, seed=0))
    assert result.error_reason == "incompatible"
    assert "observation space" in result.error_detail


def test_a_peer_cannot_make_the_coordinator_import_a_module() -> None:
    snapshot = snapshot_of(learner(), env_id="os:system")
    result = evaluate_snapshot(EvaluationRequest(encode(snapshot), episodes=1, seed=0))
    assert result.error_reason == "incompatible"
    assert "not registered nor allowed" in result.error_detail


def test_a_tampered_payload_is_refused_in_the_worker_too() -> None:
    payload = bytearray(encode(snapshot_of(learner())))
    payload[-100] ^= 0x01
    result = evaluate_snapshot(EvaluationRequest(bytes(payload), episodes=1, seed=0))
    assert result.error_reason in {"digest", "malformed", "schema"}
