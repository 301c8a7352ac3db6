"""The device's other controllers, cloned from the history its primary controller recorded.

A device often has more than one controller people use: a home battery runs in
self-consumption mode by default, and its installer can switch it to a time-of-use schedule;
a signal can run max-pressure, a fixed plan or an actuated plan. Which one pays depends on the
conditions: measured on the home-battery scenario's devices (``bench/controller_mix.py``,
docs/benchmarks.md), time-of-use costs 10-30 % less than self-consumption in winter on four
devices of five and 40-300 % more in a summer of dynamic prices. A learner that starts from the
primary controller alone does not find the other mode by exploring within a run's budget (an
exploration that pays, if ever, hours later); one that also remembers the other controllers
can recall the right one each time its world changes, as it recalls a policy it learned
itself.

So an agent that starts from its baseline also clones each of its world's other baseline
controllers (:func:`clone_other_controllers`), without a single extra device step: every state
its primary controller recorded is labelled with the action the other controller would take
there, and a copy of the primary's clone is fitted to those labels. A controller that decides
from the observation (all the built-in ones do) is reproduced well this way even on states its
own driving would visit more rarely. The clones go into the agent's library as *remembered
policies of contexts never lived* (negative context numbers, one per controller, in the
world's order of baselines), so the adaptation after a drift tries them beside what the agent
learned itself (:mod:`agents.learner.adaptation`), and the coordinator's evaluation recalls
them as it recalls the rest of the library. At takeover the agent starts from the best of
them and the primary's clone on the sandbox (``Adapter.start_from_best_controller``).

Only actor-critic learners (PPO, A2C) clone the other controllers: a DQN's pre-training is
TD learning on the transitions, which belong to the primary's actions.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy

from agents.bus.arrays import Tensor
from agents.learner.pretrain import ControllerHistory, clone_actor_critic
from agents.learner.snapshots import load_tensors, policy_tensors
from agents.worlds.baselines import PRIMARY_BASELINE, Controller, baseline_names, make_baseline

__all__ = ["ControllerClone", "clone_other_controllers", "relabel"]

log = logging.getLogger(__name__)

#: Epochs of fitting a copy of the primary's clone to another controller's labels (the copy
#: already knows the states; 100 epochs, as for the primary's clone, fitted no better).
_EPOCHS = 30
#: A controller that takes the primary's action in this share of the recorded states or more
#: adds nothing worth trying.
_SAME = 0.99


@dataclass(frozen=True, slots=True)
class ControllerClone:
    """Another controller of the device, as a policy of the learner's network."""

    name: str
    tensors: list[Tensor]
    #: Share of the recorded states where the clone's most likely action is the controller's
    #: (discrete actions), ``None`` otherwise.
    agreement: float | None


def relabel(history: ControllerHistory, controller: Controller) -> ControllerHistory:
    """``history`` with ``controller``'s action in every recorded state.

    The controller is reset where a recorded episode ended, as it would be on the device.
    """
    columns = history.columns
    controller.reset()
    actions = []
    for obs, terminated, truncated in zip(
        columns.obs, columns.terminated, columns.truncated, strict=True
    ):
        actions.append(np.asarray(controller.act(obs), dtype=columns.actions.dtype))
        if terminated or truncated:
            controller.reset()
    labels = np.stack(actions).reshape(columns.actions.shape)
    return ControllerHistory(replace(columns, actions=labels), history.episode_returns)


def clone_other_controllers(
    env_id: str,
    env: gym.Env[Any, Any],
    policy: BasePolicy,
    history: ControllerHistory,
    make_policy: Callable[[], BasePolicy],
    *,
    gamma: float,
    seed: int = 0,
) -> list[ControllerClone]:
    """Clone every baseline controller of ``env_id`` but the primary (module docstring).

    ``policy`` is the learner's policy, already fitted to the primary's ``history``; each clone
    starts from a copy of it. Returns nothing for a policy that is not an actor-critic one, a
    history that is not an array of observations, or a world with one controller.
    """
    primary = PRIMARY_BASELINE.get(env_id)
    others = [name for name in baseline_names(env_id) if name != primary]
    if not others or not isinstance(policy, ActorCriticPolicy):
        return []
    if not isinstance(history.columns.obs, np.ndarray) or history.columns.obs.dtype == object:
        return []
    start = policy_tensors(policy)
    recorded = np.asarray(history.columns.actions)
    clones = []
    for name in others:
        labelled = relabel(history, make_baseline(env_id, name, env))
        same = np.mean(
            np.isclose(np.asarray(labelled.columns.actions), recorded).reshape(len(recorded), -1)
        )
        if same >= _SAME:
            log.info("controller %s acts as %s on %.1f%% of the history: not cloned", name,
                     primary, 100 * same)  # fmt: skip
            continue
        copy = make_policy()
        load_tensors(copy, start)
        assert isinstance(copy, ActorCriticPolicy)
        fit = clone_actor_critic(copy, labelled.columns, gamma=gamma, epochs=_EPOCHS, seed=seed)
        clones.append(ControllerClone(name, policy_tensors(copy), fit.agreement))
        log.info(
            "cloned controller %s from the history (it differs from %s on %.1f%% of the "
            "states); the clone agrees on %s of its actions",
            name, primary, 100 * (1 - same),
            "n/a" if fit.agreement is None else f"{fit.agreement:.1%}",
        )  # fmt: skip
    return clones
