"""PPO's and A2C's rollouts in numpy: torch's numbers, the weights followed, learning intact."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
import torch
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.policies import ActorCriticPolicy
from torch import nn

from agents.learner.envs import make_env
from agents.learner.rollout_policy import NumpyRolloutPolicy, rollout_pass
from agents.worlds import THERMOSTAT_ID

CASES = [
    ("CartPole-v1", nn.Tanh, {"pi": [64, 64], "vf": [64, 64]}),
    ("Pendulum-v1", nn.ReLU, [32, 32]),
    (THERMOSTAT_ID, nn.ReLU, {"pi": [32], "vf": [16, 16]}),
    ("CartPole-v1", nn.ELU, []),
]


def policy_for(env_id: str, activation: type[nn.Module], net_arch: Any) -> NumpyRolloutPolicy:
    env = make_env(env_id, {})
    torch.manual_seed(0)
    model = PPO(
        NumpyRolloutPolicy,
        env,
        policy_kwargs={"net_arch": net_arch, "activation_fn": activation, "log_std_init": -0.3},
        device="cpu",
        seed=0,
    )
    policy = model.policy
    assert isinstance(policy, NumpyRolloutPolicy)
    return policy


def observations(policy: ActorCriticPolicy, n: int = 16) -> torch.Tensor:
    space = policy.observation_space
    space.seed(1)
    return torch.as_tensor(np.stack([space.sample() for _ in range(n)]), dtype=torch.float32)


@pytest.mark.parametrize(("env_id", "activation", "net_arch"), CASES)
def test_the_numpy_pass_gives_torchs_values_and_log_probs(
    env_id: str, activation: type[nn.Module], net_arch: Any
) -> None:
    policy = policy_for(env_id, activation, net_arch)
    fast = rollout_pass(policy)
    assert fast is not None
    obs = observations(policy)
    with torch.no_grad():
        torch.manual_seed(7)
        actions, values, log_probs = fast(obs, deterministic=False)
        # torch's own numbers for the actions the numpy pass drew
        dist = policy.get_distribution(obs)
        expected_values = policy.predict_values(obs)
        expected_log_probs = dist.log_prob(actions)
        deterministic, _, _ = fast(obs, deterministic=True)
    assert actions.shape == deterministic.shape
    assert values.shape == expected_values.shape
    np.testing.assert_allclose(values.numpy(), expected_values.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(log_probs.numpy(), expected_log_probs.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        deterministic.numpy(), dist.get_actions(deterministic=True).numpy(), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize(("env_id", "activation", "net_arch"), CASES)
def test_training_gets_sb3s_values_log_probs_entropies_and_gradients(
    env_id: str, activation: type[nn.Module], net_arch: Any
) -> None:
    policy = policy_for(env_id, activation, net_arch)
    policy.set_training_mode(True)
    obs = observations(policy, n=32)
    space = policy.action_space
    space.seed(2)
    actions = torch.as_tensor(np.stack([space.sample() for _ in range(32)]), dtype=torch.float32)
    if actions.ndim == 1:
        actions = actions.long()  # as PPO's train() passes a discrete action

    def outputs_and_gradients(
        evaluate: Any,
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        policy.zero_grad()
        values, log_prob, entropy = evaluate(obs, actions)
        assert entropy is not None
        (values.pow(2).mean() - (log_prob.exp() * 3).mean() - entropy.mean()).backward()
        grads = [p.grad.clone() for p in policy.parameters() if p.grad is not None]
        return [values.detach(), log_prob.detach(), entropy.detach()], grads

    lean, lean_grads = outputs_and_gradients(policy.evaluate_actions)
    sb3, sb3_grads = outputs_and_gradients(
        lambda o, a: ActorCriticPolicy.evaluate_actions(policy, o, a)
    )
    for ours, theirs in zip(lean, sb3, strict=True):
        assert ours.shape == theirs.shape
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-5, atol=1e-5)
    assert len(lean_grads) == len(sb3_grads) == len(list(policy.parameters()))
    for ours, theirs in zip(lean_grads, sb3_grads, strict=True):
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-4, atol=1e-6)


def test_categorical_actions_follow_the_policys_probabilities() -> None:
    policy = policy_for("CartPole-v1", nn.Tanh, [8])
    fast = rollout_pass(policy)
    assert fast is not None
    obs = observations(policy, n=1).repeat(20_000, 1)
    with torch.no_grad():
        torch.manual_seed(3)
        actions, _, _ = fast(obs, deterministic=False)
        logits = policy.action_net(policy.mlp_extractor.forward_actor(obs[:1]))
        probs = torch.softmax(logits, dim=1).numpy()[0]
    counts = np.bincount(actions.numpy(), minlength=2) / len(actions)
    np.testing.assert_allclose(counts, probs, atol=0.015)


def test_the_draws_come_from_torchs_seeded_generator() -> None:
    policy = policy_for("CartPole-v1", nn.Tanh, [8])
    fast = rollout_pass(policy)
    assert fast is not None
    obs = observations(policy, n=64)
    with torch.no_grad():
        torch.manual_seed(11)
        first, _, _ = fast(obs, deterministic=False)
        torch.manual_seed(11)
        again, _, _ = fast(obs, deterministic=False)
        other, _, _ = fast(obs, deterministic=False)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_the_pass_follows_weights_changed_in_place() -> None:
    # Federation and adoption load weights between rollouts, after the pass was built.
    policy = policy_for("CartPole-v1", nn.Tanh, [8])
    policy.set_training_mode(False)
    obs = observations(policy)
    with torch.no_grad():
        before = policy(obs, deterministic=True)[1].clone()
        other = policy_for("CartPole-v1", nn.Tanh, [8])
        for p in other.parameters():
            p.add_(0.5)
        policy.load_state_dict(other.state_dict())
        after = policy(obs, deterministic=True)[1]
        expected = policy.predict_values(obs)
    assert not torch.allclose(before, after)
    np.testing.assert_allclose(after.numpy(), expected.numpy(), rtol=1e-5, atol=1e-5)


def test_a_copy_of_the_policy_acts_on_its_own_weights() -> None:
    policy = policy_for("CartPole-v1", nn.Tanh, [8])
    policy.set_training_mode(False)
    obs = observations(policy)
    with torch.no_grad():
        original = policy(obs, deterministic=True)[1].clone()  # the pass is built here
        twin = copy.deepcopy(policy)
        for p in twin.parameters():
            p.add_(0.5)
        twin_values = twin(obs, deterministic=True)[1]
        expected = twin.predict_values(obs)
        again = policy(obs, deterministic=True)[1]
    np.testing.assert_allclose(twin_values.numpy(), expected.numpy(), rtol=1e-5, atol=1e-5)
    assert torch.equal(again, original)
    assert not torch.allclose(twin_values, original)


def test_training_mode_and_gradients_take_torchs_path() -> None:
    policy = policy_for("CartPole-v1", nn.Tanh, [8])
    policy.set_training_mode(True)
    obs = observations(policy, n=4)
    _, values, _ = policy(obs)
    assert values.requires_grad  # torch's graph: the update can flow through it
    policy.set_training_mode(False)
    with torch.no_grad():
        _, fast_values, _ = policy(obs)
    assert not fast_values.requires_grad


@pytest.mark.parametrize("algo", [PPO, A2C])
def test_ppo_and_a2c_learn_cartpole_with_it(algo: type[PPO | A2C]) -> None:
    # Real learning on a small budget: a random policy holds CartPole about 22 steps.
    env = make_env("CartPole-v1", {})
    kwargs: dict[str, Any] = (
        {"n_steps": 256, "batch_size": 64} if algo is PPO else {"n_steps": 8, "learning_rate": 1e-3}
    )
    model = algo(NumpyRolloutPolicy, env, seed=0, device="cpu", **kwargs)
    model.learn(12_000)
    lengths = []
    eval_env = make_env("CartPole-v1", {})
    for seed in range(5):
        obs, _ = eval_env.reset(seed=100 + seed)
        done, steps = False, 0
        while not done:
            action, _ = model.predict(obs, deterministic=True)
            obs, _, terminated, truncated, _ = eval_env.step(action)
            done, steps = terminated or truncated, steps + 1
        lengths.append(steps)
    assert np.mean(lengths) > 100
