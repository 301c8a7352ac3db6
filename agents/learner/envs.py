"""Building an agent's world from a name: a registered gymnasium id or ``module:Attr``."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

import gymnasium as gym

from agents.bus.schemas import HyperValue
from agents.exceptions import ConfigError

__all__ = ["make_env"]


def make_env(env_id: str, kwargs: Mapping[str, HyperValue] | None = None) -> gym.Env[Any, Any]:
    """Build a gymnasium environment.

    ``env_id`` is either an id in gymnasium's registry (the project's own worlds register under
    ``society/``), or ``package.module:Name`` where ``Name`` is a ``gymnasium.Env`` subclass or
    a function returning one; ``kwargs`` go to its constructor. Raises :class:`ConfigError`
    naming the id if it cannot be built.
    """
    import agents.worlds  # noqa: F401, PLC0415 - registers the society/ worlds

    params: dict[str, Any] = dict(kwargs or {})
    if env_id in gym.registry:
        return _build(env_id, lambda: gym.make(env_id, **params))
    module_name, sep, attribute = env_id.partition(":")
    if not sep or not module_name or not attribute:
        msg = f"unknown environment {env_id!r}: not a registered gymnasium id nor module:Class"
        raise ConfigError(msg)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        msg = f"environment {env_id!r}: cannot import {module_name!r}: {exc}"
        raise ConfigError(msg) from None
    target = getattr(module, attribute, None)
    if target is None and attribute in gym.registry:
        # gymnasium's own "module:EnvId" form: importing the module registered the id.
        return _build(env_id, lambda: gym.make(attribute, **params))
    if not callable(target):
        msg = f"environment {env_id!r}: {module_name} has no class or function {attribute!r}"
        raise ConfigError(msg)
    return _build(env_id, lambda: target(**params))


def _build(env_id: str, factory: Callable[[], object]) -> gym.Env[Any, Any]:
    try:
        env = factory()
    except TypeError as exc:
        msg = f"environment {env_id!r} does not accept these parameters: {exc}"
        raise ConfigError(msg) from None
    except gym.error.Error as exc:
        msg = f"environment {env_id!r}: {exc}"
        raise ConfigError(msg) from None
    if not isinstance(env, gym.Env):  # a user's factory may return anything
        msg = f"environment {env_id!r} built a {type(env).__name__}, not a gymnasium.Env"
        raise ConfigError(msg)
    return env
