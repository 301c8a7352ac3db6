"""Policy snapshots without pickle: weights as named arrays, the network as plain data.

A snapshot is the policy's ``state_dict`` turned into :class:`~agents.bus.arrays.Tensor`
entries plus a :class:`~agents.bus.schemas.PolicyArch` saying how to rebuild the network.
Loading goes the other way and refuses anything that does not fit the target policy exactly:
same tensor names, shapes and dtypes. ``torch.load`` is never used on received bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import numpy as np
import torch
from stable_baselines3.common.policies import BasePolicy
from torch import nn

from agents.bus.arrays import Tensor, from_wire, to_wire
from agents.bus.schemas import HyperValue, PolicyArch
from agents.exceptions import ConfigError, IncompatiblePolicy
from agents.learner.algorithms import AlgorithmSpec

__all__ = [
    "ACTIVATIONS",
    "build_policy",
    "default_arch",
    "learner_policy_kwargs",
    "load_tensors",
    "parse_net_arch",
    "policy_kwargs",
    "policy_tensors",
    "state_tensors",
    "tensors_as_state",
]

ACTIVATIONS: Final[dict[str, type[nn.Module]]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
}

# Scalar policy kwargs each algorithm's MlpPolicy accepts through PolicyArch.options.
_OPTIONS: Final[dict[str, dict[str, type]]] = {
    "ppo": {"ortho_init": bool, "log_std_init": float, "share_features_extractor": bool},
    "a2c": {"ortho_init": bool, "log_std_init": float, "share_features_extractor": bool},
    "dqn": {},
    "sac": {"log_std_init": float, "n_critics": int, "share_features_extractor": bool},
}

# stable-baselines3's own defaults for MlpPolicy, written out so every snapshot states them.
_DEFAULT_ARCH: Final[dict[str, PolicyArch]] = {
    "ppo": PolicyArch(
        policy="MlpPolicy", net_arch={"pi": [64, 64], "vf": [64, 64]}, activation="tanh"
    ),
    "a2c": PolicyArch(
        policy="MlpPolicy", net_arch={"pi": [64, 64], "vf": [64, 64]}, activation="tanh"
    ),
    "dqn": PolicyArch(policy="MlpPolicy", net_arch=[64, 64], activation="relu"),
    "sac": PolicyArch(policy="MlpPolicy", net_arch=[256, 256], activation="relu"),
}

_HEADS: Final[dict[str, frozenset[str]]] = {
    "ppo": frozenset({"pi", "vf"}),
    "a2c": frozenset({"pi", "vf"}),
    "dqn": frozenset(),
    "sac": frozenset({"pi", "qf"}),
}


def default_arch(algo: str) -> PolicyArch:
    return _DEFAULT_ARCH[algo]


def parse_net_arch(text: str) -> list[int] | dict[str, list[int]]:
    """Parse ``"64,64"`` or ``"pi=64,64;vf=128,128"``. Raises :class:`ConfigError`."""

    def sizes(part: str) -> list[int]:
        try:
            values = [int(v) for v in part.split(",") if v.strip()]
        except ValueError:
            values = []
        if not values or min(values) < 1:
            msg = f"invalid net_arch {text!r}: use sizes like 64,64 or pi=64,64;vf=64,64"
            raise ConfigError(msg)
        return values

    if "=" not in text:
        return sizes(text)
    heads: dict[str, list[int]] = {}
    for part in text.split(";"):
        head, _, layer_sizes = part.partition("=")
        heads[head.strip()] = sizes(layer_sizes)
    return heads


def make_arch(
    spec: AlgorithmSpec,
    *,
    net_arch: list[int] | dict[str, list[int]] | None = None,
    activation: str | None = None,
    options: Mapping[str, HyperValue] | None = None,
) -> PolicyArch:
    """The architecture an agent builds, checked. Unset parts take SB3's defaults."""
    base = _DEFAULT_ARCH[spec.name]
    arch = PolicyArch(
        policy=base.policy,
        net_arch=net_arch if net_arch is not None else base.net_arch,
        activation=activation or base.activation,
        options=dict(options or {}),
    )
    policy_kwargs(spec, arch)  # validates
    return arch


def policy_kwargs(spec: AlgorithmSpec, arch: PolicyArch) -> dict[str, Any]:
    """SB3 ``policy_kwargs`` for ``arch``; raises :class:`ConfigError` if it does not fit."""
    if arch.policy != "MlpPolicy":
        msg = f"policy {arch.policy!r} is not supported (only MlpPolicy)"
        raise ConfigError(msg)
    activation = ACTIVATIONS.get(arch.activation)
    if activation is None:
        msg = f"unknown activation {arch.activation!r}: choose one of {', '.join(ACTIVATIONS)}"
        raise ConfigError(msg)
    if isinstance(arch.net_arch, dict) and not set(arch.net_arch) <= _HEADS[spec.name]:
        heads = ", ".join(sorted(_HEADS[spec.name])) or "none (give a plain list)"
        msg = f"net_arch heads {sorted(arch.net_arch)} do not fit {spec.name} (heads: {heads})"
        raise ConfigError(msg)
    kwargs: dict[str, Any] = {"net_arch": arch.net_arch, "activation_fn": activation}
    allowed = _OPTIONS[spec.name]
    for key, value in arch.options.items():
        expected = allowed.get(key)
        if expected is None:
            msg = f"unknown policy option {key!r} for {spec.name} (known: {', '.join(allowed)})"
            raise ConfigError(msg)
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)  # noqa: PLW2901
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            msg = f"policy option {key}={value!r}: expected {expected.__name__}"
            raise ConfigError(msg)
        kwargs[key] = value
    return kwargs


def learner_policy_kwargs(spec: AlgorithmSpec, arch: PolicyArch) -> dict[str, Any]:
    """``policy_kwargs`` as a learner trains with them: the network's and the optimiser's."""
    kwargs = policy_kwargs(spec, arch)
    if spec.optimizer_kwargs:
        kwargs["optimizer_kwargs"] = dict(spec.optimizer_kwargs)
    return kwargs


def policy_tensors(policy: BasePolicy) -> list[Tensor]:
    """The policy's state dict as wire tensors, in state-dict order."""
    return state_tensors(policy.state_dict())


def state_tensors(state: Mapping[str, torch.Tensor]) -> list[Tensor]:
    """Named torch tensors (a state dict, or an update to one) as wire tensors, in order."""
    tensors = []
    for name, value in state.items():
        wire = to_wire(value.detach().cpu().numpy())
        tensors.append(Tensor(name=name, dtype=wire.dtype, shape=wire.shape, data=wire.data))
    return tensors


def load_tensors(policy: BasePolicy, tensors: list[Tensor]) -> None:
    """Load wire tensors into ``policy``; raises :class:`IncompatiblePolicy` on any mismatch.

    Nothing is changed unless every tensor fits: the check runs before the load.
    """
    policy.load_state_dict(tensors_as_state(tensors, policy.state_dict()))


def tensors_as_state(
    tensors: list[Tensor], expected: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Wire tensors as torch tensors named, shaped and typed as ``expected``, in its order.

    Raises :class:`IncompatiblePolicy` on any mismatch (a peer's weights or update for
    another network).
    """
    names = [t.name for t in tensors]
    if names != list(expected):
        missing = sorted(set(expected) - set(names))
        extra = sorted(set(names) - set(expected))
        msg = f"tensor names differ (missing {missing[:3]}, unexpected {extra[:3]})"
        raise IncompatiblePolicy(msg)
    state: dict[str, torch.Tensor] = {}
    for tensor in tensors:
        target = expected[tensor.name]
        array = from_wire(tensor.dtype, tensor.shape, tensor.data, what=tensor.name)
        if tuple(array.shape) != tuple(target.shape):
            msg = f"{tensor.name}: shape {tuple(array.shape)} != {tuple(target.shape)}"
            raise IncompatiblePolicy(msg)
        if torch.from_numpy(np.zeros(0, dtype=array.dtype)).dtype != target.dtype:
            msg = f"{tensor.name}: dtype {tensor.dtype} != {target.dtype}"
            raise IncompatiblePolicy(msg)
        state[tensor.name] = torch.from_numpy(array.copy())
    return state


def build_policy(
    spec: AlgorithmSpec,
    arch: PolicyArch,
    observation_space: Any,
    action_space: Any,
) -> BasePolicy:
    """A fresh policy network of ``arch`` for the given spaces, for evaluation only."""
    policy_class = spec.cls.policy_aliases[arch.policy]
    kwargs = policy_kwargs(spec, arch)
    policy: BasePolicy = policy_class(
        observation_space, action_space, lambda _progress: 0.0, **kwargs
    )
    policy.set_training_mode(False)
    return policy
