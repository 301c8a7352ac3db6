"""The world's shield between a learnt policy and the device, wherever the policy acts.

A learner keeps a thermostat about as comfortable as the old controller on average, and still
lets the house drift over the band's edge on the afternoons its model misjudges: the reward
prices discomfort, it does not forbid it (docs/benchmarks.md, issue 15). A shield (Alshiekh
et al., "Safe Reinforcement Learning via Shielding", AAAI 2018) forbids it: the world states
its user's limit as a rule on the observation (:meth:`agents.worlds.base.World.shield_actions`)
and the rule replaces any proposal that breaks it. The shield is *post-posed*: the policy
proposes, the device executes the shielded action, and the learner learns from what
happened; the transitions it publishes and remembers carry the executed action.

A shielded agent's policy is "the network, then the shield" everywhere it is judged: on the
device (:class:`ShieldedDevice`), on its sandbox, in imagined days, and in the coordinator's
evaluation, which a snapshot tells with ``shielded`` (:func:`shielded_actor`). The device's
controllers are never shielded: the baseline is the controller as its user has it.
"""

from __future__ import annotations

from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np

from agents.exceptions import ConfigError
from agents.learner.batch_actor import BatchActor
from agents.worlds.base import World

__all__ = ["EXECUTED_ACTION", "ShieldedDevice", "check_shield", "shielded_actor"]

EXECUTED_ACTION = "executed_action"
"""``info`` key: the action the device executed when the shield replaced the proposal."""


def check_shield(env: gym.Env[Any, Any]) -> World[Any, Any]:
    """The world whose shield ``env`` would use; :class:`ConfigError` if it has none."""
    world = env.unwrapped
    if not isinstance(world, World) or not world.has_shield:
        msg = f"{type(world).__name__} has no shield; shield = true needs a world with one"
        raise ConfigError(msg)
    return world


class ShieldedDevice(gym.Wrapper[Any, Any, Any, Any]):
    """``env`` with the world's shield between the policy's action and the device.

    Put it outside the guard (:class:`agents.learner.guard.GuardedDevice`): the controller's
    episodes, played inside the guard, are not shielded. ``interventions`` counts the steps
    whose action the shield replaced; ``steps`` all the steps the policy proposed.
    """

    def __init__(self, env: gym.Env[Any, Any]) -> None:
        super().__init__(env)
        self.world = check_shield(env)
        self.interventions = 0
        self.steps = 0
        self._obs: Any = None

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        self._obs = obs
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        proposed = np.asarray(action)
        executed = self.world.shield_actions(np.asarray(self._obs)[None], proposed[None])[0]
        replaced = not np.array_equal(executed, proposed)
        obs, reward, terminated, truncated, info = self.env.step(executed if replaced else action)
        self.steps += 1
        if replaced:
            self.interventions += 1
            info = {**info, EXECUTED_ACTION: executed}
        self._obs = obs
        return obs, reward, terminated, truncated, info


def shielded_actor(actor: BatchActor, world: World[Any, Any]) -> BatchActor:
    """``actor``'s actions for a batch of observations, through ``world``'s shield."""

    def act(obs: Any) -> Any:
        return world.shield_actions(obs, actor(obs))

    return act
