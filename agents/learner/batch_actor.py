"""A policy's deterministic actions for many observations at once, cheaply.

Evaluation plays every episode of a regime side by side (:func:`agents.worlds.play_batched`)
and asks the policy for all their actions in one call. Through stable-baselines3's
``predict`` one call costs about 0.2 ms however few rows it has (torch's per-operation
overhead), more than the worlds' own steps (a few microseconds). :func:`batch_actor` therefore
runs the policy's network in numpy when it is a plain MLP of the layers and activations
snapshots use (``Linear`` and the activations of :data:`~agents.learner.snapshots.ACTIVATIONS`
but GELU), on a flat ``Box`` observation: PPO and A2C (categorical or diagonal-Gaussian
actions: the argmax, or the mean clipped to the bounds), DQN (the argmax of the Q-values) and
SAC (the squashed mean, rescaled to the bounds). Anything else is served by ``predict`` on the
whole batch, which is exact by construction. The numpy pass computes in float32 like torch; it
gives the same discrete actions (tested against ``predict``) and continuous ones within float32
rounding.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final

import numpy as np
from gymnasium import spaces
from numpy.typing import NDArray
from stable_baselines3.common.distributions import (
    CategoricalDistribution,
    DiagGaussianDistribution,
)
from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy
from stable_baselines3.common.torch_layers import FlattenExtractor
from stable_baselines3.dqn.policies import DQNPolicy
from stable_baselines3.sac.policies import SACPolicy
from torch import nn

__all__ = [
    "ActorController",
    "BatchActor",
    "Layer",
    "batch_actor",
    "chain",
    "numpy_actor",
    "numpy_layers",
]

BatchActor = Callable[[NDArray[Any]], NDArray[Any]]
"""Observations stacked on a first axis in, one deterministic action per row out."""

Layer = Callable[[NDArray[np.float32]], NDArray[np.float32]]


def batch_actor(policy: BasePolicy) -> BatchActor:
    """The fastest exact way to act for a batch: numpy if the network allows, else ``predict``."""
    fast = numpy_actor(policy)
    if fast is not None:
        return fast

    def predict(obs: NDArray[Any]) -> NDArray[Any]:
        actions, _ = policy.predict(obs, deterministic=True)
        return np.asarray(actions)

    return predict


class ActorController:
    """A policy as a controller (``reset``, ``act``), one observation at a time.

    Through :func:`batch_actor`: the same actions as ``predict`` at a tenth of its cost.
    The network's weights are read when this is built: build it again after loading others.
    """

    def __init__(self, policy: BasePolicy) -> None:
        self._actor = batch_actor(policy)

    def reset(self) -> None:
        """Feed-forward policies keep no state."""

    def act(self, obs: NDArray[Any]) -> Any:
        return self._actor(np.asarray(obs)[None])[0]


def numpy_actor(policy: BasePolicy) -> BatchActor | None:
    """The policy's deterministic action in numpy; None where the network is not supported."""
    if not isinstance(policy.observation_space, spaces.Box):
        return None
    if isinstance(policy, ActorCriticPolicy):
        return _actor_critic(policy)
    if isinstance(policy, DQNPolicy):
        if not isinstance(policy.q_net.features_extractor, FlattenExtractor):
            return None
        q_values = numpy_layers(policy.q_net.q_net)
        return None if q_values is None else _argmax(q_values)
    if isinstance(policy, SACPolicy):
        return _squashed(policy)
    return None


def _actor_critic(policy: ActorCriticPolicy) -> BatchActor | None:
    if policy.squash_output or not isinstance(policy.pi_features_extractor, FlattenExtractor):
        return None
    latent = numpy_layers(policy.mlp_extractor.policy_net)
    head = numpy_layers(nn.Sequential(policy.action_net))
    if latent is None or head is None:
        return None
    logits = chain([_flatten, latent, head])
    if isinstance(policy.action_dist, CategoricalDistribution):
        return _argmax(logits)
    box = policy.action_space
    if isinstance(policy.action_dist, DiagGaussianDistribution) and isinstance(box, spaces.Box):
        low, high = box.low.astype(np.float32), box.high.astype(np.float32)

        def clipped_mean(obs: NDArray[Any]) -> NDArray[Any]:
            return np.clip(logits(obs), low, high).reshape((-1, *box.shape))

        return clipped_mean
    return None


def _squashed(policy: SACPolicy) -> BatchActor | None:
    actor, box = policy.actor, policy.action_space
    if actor.use_sde or not isinstance(actor.features_extractor, FlattenExtractor):
        return None
    if not isinstance(box, spaces.Box):
        return None
    latent = numpy_layers(actor.latent_pi)
    head = numpy_layers(nn.Sequential(actor.mu))
    if latent is None or head is None:
        return None
    mean = chain([_flatten, latent, head])
    low, high = box.low.astype(np.float32), box.high.astype(np.float32)

    def rescaled(obs: NDArray[Any]) -> NDArray[Any]:
        squashed = np.tanh(mean(obs))
        return (low + (squashed + 1.0) * 0.5 * (high - low)).reshape((-1, *box.shape))

    return rescaled


def _argmax(values: Layer) -> BatchActor:
    def argmax(obs: NDArray[Any]) -> NDArray[Any]:
        return np.asarray(np.argmax(values(_flatten(obs)), axis=1))

    return argmax


def _flatten(obs: NDArray[Any]) -> NDArray[np.float32]:
    return np.asarray(obs, dtype=np.float32).reshape((len(obs), -1))


def chain(layers: Sequence[Layer]) -> Layer:
    def run(x: NDArray[np.float32]) -> NDArray[np.float32]:
        for layer in layers:
            x = layer(x)
        return x

    return run


def numpy_layers(module: nn.Module, *, live: bool = False) -> Layer | None:
    """``module`` (a ``Sequential`` of linear layers and activations) as one numpy function.

    ``live``: the weights are read through views of the torch parameters' memory, so the
    function follows in-place changes of the weights (an optimiser's step, a
    ``load_state_dict``); otherwise they are copied now.
    """
    layers: list[Layer] = []
    owned = False  # whether the array reaching the next layer is one this chain made
    for child in module.children() if isinstance(module, nn.Sequential) else [module]:
        layer = _layer(child, in_place=owned, live=live)
        if layer is None:
            return None
        layers.append(layer)
        # Every layer but the identity hands on an array it made (or changed in place).
        owned = owned or not isinstance(child, nn.Identity)
    return chain(layers)


def _linear(
    weight: NDArray[np.float32], bias: NDArray[np.float32] | None, *, live: bool = False
) -> Layer:
    transposed = weight.T if live else np.ascontiguousarray(weight.T)

    def linear(x: NDArray[np.float32]) -> NDArray[np.float32]:
        out = x @ transposed  # a new array: what follows may change it in place
        if bias is not None:
            out += bias
        return out

    return linear


def _relu(x: NDArray[np.float32]) -> NDArray[np.float32]:
    return np.maximum(x, np.float32(0.0))


def _relu_in_place(x: NDArray[np.float32]) -> NDArray[np.float32]:
    return np.maximum(x, np.float32(0.0), out=x)


def _tanh_in_place(x: NDArray[np.float32]) -> NDArray[np.float32]:
    return np.tanh(x, out=x)


#: Activations that may overwrite their input where the chain made it (a linear layer's
#: output): a tenth of a small network's time in numpy is allocating arrays.
_IN_PLACE: Final[dict[type[nn.Module], Layer]] = {nn.Tanh: _tanh_in_place, nn.ReLU: _relu_in_place}


def _layer(module: nn.Module, *, in_place: bool = False, live: bool = False) -> Layer | None:
    if isinstance(module, nn.Linear):
        weight = module.weight.detach().cpu().numpy()
        if not live:
            weight = weight.astype(np.float32)
        bias = None if module.bias is None else module.bias.detach().cpu().numpy()
        return _linear(weight, bias, live=live)
    if isinstance(module, nn.Identity):
        return lambda x: x
    if in_place and type(module) in _IN_PLACE:
        return _IN_PLACE[type(module)]
    activation = _ACTIVATIONS.get(type(module))
    return None if activation is None else activation(module)


def _elu(module: nn.Module) -> Layer:
    alpha = np.float32(getattr(module, "alpha", 1.0))
    return lambda x: np.where(x > 0, x, alpha * np.expm1(x)).astype(np.float32)


def _leaky_relu(module: nn.Module) -> Layer:
    slope = np.float32(getattr(module, "negative_slope", 0.01))
    return lambda x: np.where(x > 0, x, slope * x).astype(np.float32)


_ACTIVATIONS: Final[dict[type[nn.Module], Callable[[nn.Module], Layer]]] = {
    nn.Tanh: lambda _module: np.tanh,
    nn.ReLU: lambda _module: _relu,
    nn.ELU: _elu,
    nn.LeakyReLU: _leaky_relu,
}
