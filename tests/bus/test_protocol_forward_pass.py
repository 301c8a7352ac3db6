"""docs/protocol.md's forward pass, written from the wire tensors alone, acts as the policy does."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
import torch
from stable_baselines3 import DQN, PPO, SAC
from stable_baselines3.common.base_class import BaseAlgorithm

from agents.bus.arrays import Tensor
from agents.learner.snapshots import policy_tensors

Weights = dict[str, npt.NDArray[np.float32]]


def weights(tensors: list[Tensor]) -> Weights:
    """The wire tensors as arrays, by name, the way a third-party reader decodes them."""
    return {
        t.name: np.frombuffer(t.data, dtype=np.dtype(t.dtype).newbyteorder("<")).reshape(t.shape)
        for t in tensors
    }


def mlp(
    w: Weights, prefix: str, layers: list[int], obs: npt.NDArray[np.float32]
) -> npt.NDArray[np.float32]:
    """Linear layers ``prefix.{i}`` with tanh between them, none after the last."""
    x = obs
    for position, index in enumerate(layers):
        x = x @ w[f"{prefix}.{index}.weight"].T + w[f"{prefix}.{index}.bias"]
        if position < len(layers) - 1:
            x = np.tanh(x)
    return x


def by_the_document(
    algo: str, w: Weights, obs: npt.NDArray[np.float32], low: float, high: float
) -> npt.NDArray[np.float64]:
    if algo == "ppo":
        latent = np.tanh(mlp(w, "mlp_extractor.policy_net", [0, 2], obs))
        logits = latent @ w["action_net.weight"].T + w["action_net.bias"]
        return np.asarray(np.argmax(logits, axis=1), dtype=np.float64)
    if algo == "dqn":
        return np.asarray(
            np.argmax(mlp(w, "q_net.q_net", [0, 2, 4], obs), axis=1), dtype=np.float64
        )
    latent = np.tanh(mlp(w, "actor.latent_pi", [0, 2], obs))
    mean = latent @ w["actor.mu.weight"].T + w["actor.mu.bias"]
    return np.asarray(low + (np.tanh(mean) + 1.0) / 2.0 * (high - low), dtype=np.float64)


@pytest.mark.parametrize("algo", ["ppo", "dqn", "sac"])
def test_the_documented_forward_pass_gives_the_policys_actions(algo: str) -> None:
    arch = {"net_arch": [64, 64], "activation_fn": torch.nn.Tanh}
    model: BaseAlgorithm
    if algo == "ppo":
        model = PPO("MlpPolicy", "CartPole-v1", seed=0, device="cpu", policy_kwargs=arch)
    elif algo == "dqn":
        model = DQN("MlpPolicy", "CartPole-v1", seed=0, device="cpu", policy_kwargs=arch)
    else:
        model = SAC("MlpPolicy", "Pendulum-v1", seed=0, device="cpu", policy_kwargs=arch)
    rng = np.random.default_rng(0)
    shape = model.observation_space.shape or ()
    obs = rng.normal(size=(32, *shape)).astype(np.float32)
    expected, _ = model.predict(obs, deterministic=True)
    space = model.action_space
    low = float(getattr(space, "low", np.zeros(1))[0])
    high = float(getattr(space, "high", np.zeros(1))[0])
    ours = by_the_document(algo, weights(policy_tensors(model.policy)), obs, low, high)
    np.testing.assert_allclose(ours.reshape(expected.shape), expected, rtol=1e-4, atol=1e-5)
