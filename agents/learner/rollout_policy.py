"""PPO's and A2C's rollouts with the policy's forward pass in numpy.

Collecting a rollout asks the policy for one step's action, value and log-probability at a
time. Through torch that call costs 0.15-0.3 ms on CartPole's [64, 64] network (torch's
per-operation overhead on tensors of a few numbers), and it was 40 % of a CartPole PPO
agent's CPU; in numpy it costs about a seventh of that. :class:`NumpyRolloutPolicy` computes the
same numbers in numpy when gradients are off (the rollout; stable-baselines3 collects under
``torch.no_grad``), from views of the torch parameters' memory, so every in-place change of
the weights (the optimiser's step, a ``load_state_dict`` between rollouts) is seen at once.
Training (``evaluate_actions``, with gradients) stays torch, with the distribution's numbers
written out: the log-softmax or the Gaussian log-density straight from the network's outputs,
instead of a ``torch.distributions`` object built, validated and queried for every minibatch.
The same values and gradients up to float rounding, at three quarters of the cost of a
minibatch's forward and backward pass (a [64, 64] CartPole network, batches of 64).

What stays as it was: the network, the float32 arithmetic, the distributions (categorical, or
diagonal Gaussian with the state-independent log-std), and the random stream: the draws come
from torch's generator (``torch.rand``, ``torch.randn``), so ``seed`` and
``sandbox.streams_untouched`` govern them as before. What differs: a categorical action is
drawn by inverting the cumulative probabilities with one uniform number rather than by
``torch.multinomial``, so a seed gives other (equally distributed) actions than plain
stable-baselines3 does. Networks it does not cover (other feature extractors, gSDE, squashed
outputs, other distributions, observations that are not a flat ``Box``) take torch's path.
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np
import torch
from gymnasium import spaces
from numpy.typing import NDArray
from stable_baselines3.common.distributions import (
    CategoricalDistribution,
    DiagGaussianDistribution,
)
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import FlattenExtractor
from stable_baselines3.common.type_aliases import PyTorchObs

from agents.learner.batch_actor import Layer, chain, numpy_layers

__all__ = ["NumpyRolloutPolicy", "RolloutPass", "rollout_pass"]


class RolloutPass(Protocol):
    """``(obs, deterministic=...) -> (actions, values, log_probs)``, as SB3's ``forward``."""

    def __call__(
        self, obs: torch.Tensor, *, deterministic: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]: ...


Outputs = tuple[torch.Tensor, torch.Tensor, torch.Tensor]

_HALF_LOG_2PI_T = 0.5 * math.log(2.0 * math.pi)  # training's (torch) and the rollout's (numpy)
_HALF_LOG_2PI = np.float32(_HALF_LOG_2PI_T)


class NumpyRolloutPolicy(ActorCriticPolicy):
    """stable-baselines3's ``MlpPolicy`` for PPO and A2C, its rollouts in numpy (module docstring).

    The numpy pass is built at the first forward pass without gradients after the policy left
    training mode (stable-baselines3 leaves it at the start of every rollout, and in
    ``predict``, which does not use the forward pass), and belongs to this very object: a copy
    of the policy builds its own. ``None`` in the second place: the network is not covered.
    """

    _rollout: tuple[int, RolloutPass | None] | None = None

    def set_training_mode(self, mode: bool) -> None:  # noqa: FBT001 - SB3's signature
        super().set_training_mode(mode)
        self._rollout = None

    def forward(
        self,
        obs: torch.Tensor,
        deterministic: bool = False,  # noqa: FBT001, FBT002 - as SB3's
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if torch.is_grad_enabled() or self.training:
            return super().forward(obs, deterministic)
        rollout = self._rollout
        if rollout is None or rollout[0] != id(self):
            rollout = self._rollout = (id(self), rollout_pass(self))
        fast = rollout[1]
        if fast is None:
            return super().forward(obs, deterministic)
        return fast(obs, deterministic=deterministic)

    def evaluate_actions(
        self, obs: PyTorchObs, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Values, log-probabilities and entropies for training, as SB3's, with less overhead."""
        categorical = isinstance(self.action_dist, CategoricalDistribution)
        gaussian = isinstance(self.action_dist, DiagGaussianDistribution) and not self.use_sde
        if not (categorical or gaussian):
            return super().evaluate_actions(obs, actions)
        features = self.extract_features(obs)
        if self.share_features_extractor:
            latent_pi, latent_vf = self.mlp_extractor(features)
        else:
            pi_features, vf_features = features
            latent_pi = self.mlp_extractor.forward_actor(pi_features)
            latent_vf = self.mlp_extractor.forward_critic(vf_features)
        values = self.value_net(latent_vf)
        head = self.action_net(latent_pi)
        if categorical:
            log_p = torch.log_softmax(head, dim=-1)
            log_prob = log_p.gather(1, actions.long().reshape(-1, 1)).squeeze(1)
            entropy = -(log_p.exp() * log_p).sum(dim=-1)
            return values, log_prob, entropy
        log_std = self.log_std
        z = (actions.reshape(head.shape) - head) * torch.exp(-log_std)
        log_prob = (-0.5 * z * z - log_std - _HALF_LOG_2PI_T).sum(dim=-1)
        entropy = (0.5 + _HALF_LOG_2PI_T + log_std).sum().expand(len(head))
        return values, log_prob, entropy


def rollout_pass(policy: ActorCriticPolicy) -> RolloutPass | None:
    """``policy``'s forward pass in numpy, or ``None`` where the network is not covered."""
    if not _covered(policy):
        return None
    parts = [
        numpy_layers(module, live=True)
        for module in (
            policy.mlp_extractor.policy_net,
            policy.action_net,
            policy.mlp_extractor.value_net,
            policy.value_net,
        )
    ]
    latent_pi, head, latent_vf, value = parts
    if latent_pi is None or head is None or latent_vf is None or value is None:
        return None
    actor = chain([latent_pi, head])
    critic = chain([latent_vf, value])
    shape = policy.action_space.shape or ()
    if isinstance(policy.action_dist, CategoricalDistribution):
        return _categorical(actor, critic, shape)
    if isinstance(policy.action_dist, DiagGaussianDistribution):
        return _gaussian(actor, critic, shape, log_std=policy.log_std.detach().cpu().numpy())
    return None


def _covered(policy: ActorCriticPolicy) -> bool:
    """A flat ``Box`` observation, flattened features, no gSDE, no squashed output."""
    if not isinstance(policy.observation_space, spaces.Box):
        return False
    if policy.use_sde or policy.squash_output:
        return False
    extractors = (policy.pi_features_extractor, policy.vf_features_extractor)
    return all(isinstance(e, FlattenExtractor) for e in extractors)


def _features(obs: torch.Tensor) -> NDArray[np.float32]:
    x = obs.detach().cpu().numpy()
    return np.asarray(x.reshape((len(x), -1)), dtype=np.float32)


def _categorical(actor: Layer, critic: Layer, shape: tuple[int, ...]) -> RolloutPass:
    def categorical(obs: torch.Tensor, *, deterministic: bool) -> Outputs:
        x = _features(obs)
        logits = actor(x)
        logits -= logits.max(axis=1, keepdims=True)
        log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        if deterministic:
            actions = np.argmax(log_probs, axis=1)
        else:
            # One uniform number per row, through the cumulative probabilities.
            cumulative = np.cumsum(np.exp(log_probs), axis=1)
            drawn = torch.rand(len(x)).numpy()[:, None] * cumulative[:, -1:]
            actions = np.minimum((cumulative <= drawn).sum(axis=1), logits.shape[1] - 1)
        chosen = log_probs[np.arange(len(x)), actions]
        return (
            torch.from_numpy(actions.astype(np.int64).reshape((-1, *shape))),
            torch.from_numpy(critic(x)),
            torch.from_numpy(np.ascontiguousarray(chosen)),
        )

    return categorical


def _gaussian(
    actor: Layer, critic: Layer, shape: tuple[int, ...], *, log_std: NDArray[np.float32]
) -> RolloutPass:
    """``log_std`` is a view of the policy's parameter: it follows its changes too."""

    def gaussian(obs: torch.Tensor, *, deterministic: bool) -> Outputs:
        x = _features(obs)
        mean = actor(x)
        # The standard normal draw is the action's distance from the mean in standard
        # deviations: its log-density gives the action's.
        z = np.zeros_like(mean) if deterministic else torch.randn(mean.shape).numpy()
        actions = mean + np.exp(log_std) * z
        log_prob = (-0.5 * z * z - log_std - _HALF_LOG_2PI).sum(axis=1)
        return (
            torch.from_numpy(np.asarray(actions, dtype=np.float32).reshape((-1, *shape))),
            torch.from_numpy(critic(x)),
            torch.from_numpy(np.asarray(log_prob, dtype=np.float32)),
        )

    return gaussian
