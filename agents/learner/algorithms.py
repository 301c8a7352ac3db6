"""The stable-baselines3 algorithms an agent can learn with, and their hyperparameters.

Hyperparameters travel on the bus and in scenario files, so they are plain scalars
(:data:`~agents.bus.schemas.HyperValue`). Each algorithm accepts the scalar keyword arguments
of its SB3 constructor, minus those that make no sense for a lifelong agent, plus the lifelong
ones this project adds (see :mod:`agents.learner.schedules`).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from gymnasium import spaces
from stable_baselines3 import DQN, SAC
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.logger import Logger

from agents.bus.schemas import HyperValue
from agents.exceptions import ConfigError
from agents.learner.pooling import PooledA2C, PooledPPO

__all__ = [
    "ALGORITHMS",
    "FUSED_ADAM",
    "HYPERPARAMETER_RANGES",
    "AlgorithmSpec",
    "Range",
    "get_algorithm",
    "parse_hyperparams",
    "silence_logger",
]

# Constructor arguments that are not hyperparameters (objects, logging, plumbing).
_NOT_HYPERPARAMETERS: Final = frozenset(
    {
        "self",
        "policy",
        "env",
        "policy_kwargs",
        "verbose",
        "seed",
        "device",
        "_init_setup_model",
        "tensorboard_log",
        "rollout_buffer_class",
        "rollout_buffer_kwargs",
        "replay_buffer_class",
        "replay_buffer_kwargs",
        "action_noise",
        "stats_window_size",
    }
)

# Arguments that only mean something against a planned end of training.
_FINITE_HORIZON: Final = {
    "exploration_fraction": (
        "exploration_fraction is a fraction of a finite training budget; a lifelong agent has "
        "none: set exploration_steps (agent steps over which epsilon decays) instead"
    ),
}


@dataclass(frozen=True, slots=True)
class AlgorithmSpec:
    """One algorithm: its SB3 class, whether it learns off-policy, and its hyperparameters."""

    name: str
    cls: type[BaseAlgorithm]
    off_policy: bool
    #: Values this project uses unless told otherwise (SB3's defaults where absent).
    defaults: Mapping[str, HyperValue] = field(default_factory=dict)
    #: Keys this project adds on top of SB3's constructor arguments.
    lifelong_keys: frozenset[str] = frozenset()
    #: The action spaces it can act in (stable-baselines3's ``supported_action_spaces``).
    action_spaces: tuple[type[spaces.Space[Any]], ...] = (
        spaces.Box,
        spaces.Discrete,
        spaces.MultiDiscrete,
        spaces.MultiBinary,
    )
    #: What the learner passes to the algorithm's optimiser (``FUSED_ADAM`` where it is Adam).
    optimizer_kwargs: Mapping[str, bool] = field(default_factory=dict)

    def check_action_space(self, env_id: str, space: spaces.Space[Any]) -> None:
        """Raise :class:`ConfigError` if this algorithm cannot act in ``space``."""
        if not isinstance(space, self.action_spaces):
            needs = " or ".join(kind.__name__ for kind in self.action_spaces)
            msg = f"{self.name} cannot act in {env_id}: it needs {needs} actions, not {space}"
            raise ConfigError(msg)

    @property
    def constructor_keys(self) -> frozenset[str]:
        params = inspect.signature(self.cls.__init__).parameters
        return frozenset(params) - _NOT_HYPERPARAMETERS - frozenset(_FINITE_HORIZON)

    @property
    def accepted_keys(self) -> frozenset[str]:
        return self.constructor_keys | self.lifelong_keys

    def constructor_defaults(self) -> dict[str, HyperValue]:
        """SB3's default for every accepted scalar argument, overlaid with ours."""
        params = inspect.signature(self.cls.__init__).parameters
        values: dict[str, HyperValue] = {
            key: params[key].default
            for key in self.constructor_keys
            if isinstance(params[key].default, bool | int | float | str)
        }
        values.update(self.defaults)
        return values


#: Adam's fused CPU kernel (torch >= 2.4): one pass over every parameter instead of a dozen
#: tensor operations per parameter tensor. The same update up to float rounding; on CartPole's
#: [64, 64] networks about a tenth off a PPO learner's CPU per step (docs/architecture.md).
FUSED_ADAM: Final[Mapping[str, bool]] = {"fused": True}

# A replay buffer of a million transitions is SB3's default for a single training run; a
# device agent that checkpoints its buffer wants something it can write in a second.
_OFF_POLICY_DEFAULTS: Final[dict[str, HyperValue]] = {"buffer_size": 100_000}

ALGORITHMS: Final[dict[str, AlgorithmSpec]] = {
    # PPO and A2C as they are, able to train on pooled rollouts when given a pool (pooling.py).
    "ppo": AlgorithmSpec("ppo", PooledPPO, off_policy=False, optimizer_kwargs=FUSED_ADAM),
    # A2C's optimiser is RMSprop (stable-baselines3 sets it and its arguments itself).
    "a2c": AlgorithmSpec("a2c", PooledA2C, off_policy=False),
    "dqn": AlgorithmSpec(
        "dqn",
        DQN,
        off_policy=True,
        defaults={**_OFF_POLICY_DEFAULTS, "exploration_steps": 10_000},
        lifelong_keys=frozenset({"exploration_steps"}),
        action_spaces=(spaces.Discrete,),
        optimizer_kwargs=FUSED_ADAM,
    ),
    "sac": AlgorithmSpec(
        "sac",
        SAC,
        off_policy=True,
        defaults=_OFF_POLICY_DEFAULTS,
        action_spaces=(spaces.Box,),
        optimizer_kwargs=FUSED_ADAM,
    ),
}


def get_algorithm(name: str) -> AlgorithmSpec:
    try:
        return ALGORITHMS[name.lower()]
    except KeyError:
        msg = f"unknown algorithm {name!r}: choose one of {', '.join(ALGORITHMS)}"
        raise ConfigError(msg) from None


def parse_hyperparams(
    spec: AlgorithmSpec, given: Mapping[str, HyperValue]
) -> dict[str, HyperValue]:
    """Check ``given`` against ``spec`` and return it merged over the algorithm's defaults.

    Unknown keys and values of the wrong type raise :class:`ConfigError` naming the key.
    """
    defaults = spec.constructor_defaults()
    merged = dict(defaults)
    for key, value in given.items():
        if key in _FINITE_HORIZON:
            raise ConfigError(f"hyperparameter {key}: {_FINITE_HORIZON[key]}")
        if key not in spec.accepted_keys:
            known = ", ".join(sorted(spec.accepted_keys))
            msg = f"unknown hyperparameter {key!r} for {spec.name} (known: {known})"
            raise ConfigError(msg)
        merged[key] = _in_range(key, _coerce(key, value, defaults.get(key)))
    return merged


@dataclass(frozen=True, slots=True)
class Range:
    """The values a hyperparameter may take: ``low`` to ``high``, ``low`` itself if closed."""

    low: float
    high: float
    low_included: bool = True

    def __contains__(self, value: float) -> bool:
        above = value >= self.low if self.low_included else value > self.low
        return above and value <= self.high

    def __str__(self) -> str:
        return f"{'[' if self.low_included else '('}{self.low:g}, {self.high:g}]"


#: What the numbers stable-baselines3 takes mean allows: a rate, a coefficient or a discount
#: outside these makes learning diverge or stop (a negative learning rate climbs the loss,
#: ``gamma = 7`` sums growing returns). Scenarios, flags and directives are held to them.
HYPERPARAMETER_RANGES: Final[Mapping[str, Range]] = {
    "learning_rate": Range(0.0, 1.0, low_included=False),
    "ent_coef": Range(0.0, 1.0),
    "vf_coef": Range(0.0, 10.0),
    "clip_range": Range(0.0, 1.0, low_included=False),
    "clip_range_vf": Range(0.0, 1.0, low_included=False),
    "gamma": Range(0.0, 1.0),
    "gae_lambda": Range(0.0, 1.0),
    "tau": Range(0.0, 1.0, low_included=False),
    "max_grad_norm": Range(0.0, 1e6, low_included=False),
    "exploration_initial_eps": Range(0.0, 1.0),
    "exploration_final_eps": Range(0.0, 1.0),
}


def _in_range(key: str, value: HyperValue) -> HyperValue:
    """``value`` if it is finite and within ``key``'s range; else :class:`ConfigError`."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    if not math.isfinite(value):
        raise ConfigError(f"hyperparameter {key}={value!r}: not a finite number")
    allowed = HYPERPARAMETER_RANGES.get(key)
    if allowed is not None and value not in allowed:
        raise ConfigError(f"hyperparameter {key}={value!r}: must be in {allowed}")
    return value


def _coerce(key: str, value: HyperValue, default: HyperValue | None) -> HyperValue:
    """Give ``value`` the type of the default where that is unambiguous."""
    if isinstance(value, bool) and not isinstance(default, bool):
        msg = f"hyperparameter {key}={value!r}: expected a number"
        raise ConfigError(msg)
    if default is None or isinstance(value, type(default)):
        return value
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(default, str) and isinstance(value, int | float) and not isinstance(value, bool):
        # ent_coef is "auto" by default but also takes a number.
        return value
    msg = f"hyperparameter {key}={value!r}: expected {type(default).__name__}"
    raise ConfigError(msg)


def silence_logger(model: BaseAlgorithm) -> None:
    """Give ``model`` a logger that writes nowhere.

    Without a logger of its own, every ``learn()`` call makes stable-baselines3 create an
    empty ``SB3-<date-time>`` folder in the system's temporary directory (its logger's default
    folder, made even when nothing is logged): one for each agent started and one for each
    round of imagined days, for as long as a society runs. The agent reports through its own
    telemetry, so SB3's logger has nothing to write.
    """
    model.set_logger(Logger(folder=None, output_formats=[]))
