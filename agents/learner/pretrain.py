"""Starting from what the device knows: its controller's history, and learning from it.

A device that gets a learning agent already has a controller: the setpoint thermostat on the
wall, the max-pressure signal plan, the battery's self-consumption mode. Its history under
that controller is the best data an agent can start from, and a person expects the new
controller to be at least as good as the old one from its first day. So an agent that starts
from the baseline (``start_from = "baseline"``):

1. records the world's primary baseline controller driving the device
   (:func:`record_controller`). These are real device steps: they advance the drift schedule,
   are published as experience and count in the agent's budget;
2. fits its model to that history (:func:`pretrain`):

   - actor-critic learners (PPO, A2C): behaviour cloning, the policy maximises the
     log-probability of the controller's actions; and the value function is regressed on the
     returns those actions earned, discounted with the learner's ``gamma`` and bootstrapped
     with the value being fitted where an episode was cut by its time limit (a few rounds of
     fitted policy evaluation). Without the value fit, the first PPO updates would follow the
     advantages of an untrained critic and undo the cloning;
   - off-policy learners (DQN, SAC): the transitions seed the replay buffer, so the first
     updates already learn from the device's history; a DQN's Q-network is also fitted to
     them as DQfD pre-trains one (TD learning plus a large-margin loss that makes the
     controller's action the greedy one), so its first greedy policy is the controller's;

3. then learns by reinforcement as any agent does.

For a Gaussian policy (continuous actions) only the mean is cloned; the exploration noise
stays the algorithm's own (``log_std`` is left alone): cloning a deterministic controller would
shrink it to nothing and leave nothing to learn from.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import numpy.typing as npt
import torch
from gymnasium import spaces
from stable_baselines3 import DQN
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.policies import ActorCriticPolicy
from torch.nn import functional as F  # noqa: N812 - torch's own convention

from agents._choice import Choice
from agents.exceptions import ConfigError
from agents.learner.experience import ExperienceColumns, ExperienceRecorder
from agents.learner.intake import add_to_replay_buffer
from agents.worlds.baselines import PRIMARY_BASELINE, Controller, make_baseline

__all__ = [
    "ControllerDemonstrations",
    "ControllerHistory",
    "PretrainResult",
    "StartFrom",
    "clone_actor_critic",
    "pretrain",
    "record_controller",
    "start_controller",
]

log = logging.getLogger(__name__)


class StartFrom(Choice):
    """Where an agent's learning starts (``start_from`` in a scenario, ``--start-from``)."""

    BASELINE = "baseline"
    SCRATCH = "scratch"

    @classmethod
    def setting(cls) -> str:
        return "start_from"


@dataclass(frozen=True, slots=True)
class ControllerHistory:
    """The device driven by its controller: the transitions and the finished episodes' returns."""

    columns: ExperienceColumns
    episode_returns: tuple[float, ...]

    def __len__(self) -> int:
        return len(self.columns)


@dataclass(frozen=True, slots=True)
class PretrainResult:
    """How well the model fits the controller's history after :func:`pretrain`."""

    transitions: int
    #: Share of the history's states where the policy's most likely action is the
    #: controller's (discrete actions), ``None`` otherwise.
    agreement: float | None
    #: Mean squared error of the value function against its last targets (actor-critic).
    value_error: float | None
    #: Transitions put into the replay buffer (off-policy).
    replayed: int


def start_controller(env_id: str, env: gym.Env[Any, Any]) -> Controller:
    """The controller the device runs today: the world's primary baseline.

    Raises:
        ConfigError: the world has none, so there is nothing to start from.
    """
    name = PRIMARY_BASELINE.get(env_id)
    if name is None:
        msg = f'{env_id} has no baseline controller: start_from = "baseline" needs one'
        raise ConfigError(msg)
    return make_baseline(env_id, name, env)


def record_controller(
    env: gym.Env[Any, Any],
    controller: Controller,
    steps: int,
    *,
    seed: int | None = None,
) -> ControllerHistory:
    """Let ``controller`` drive ``env`` for ``steps`` steps and record every transition.

    The last episode is cut where the steps run out (its return is not counted); the caller's
    next ``reset`` starts a new one.
    """
    recorder = ExperienceRecorder(env.observation_space, env.action_space, max(1, steps))
    returns: list[float] = []
    obs, _ = env.reset(seed=seed)
    controller.reset()
    episode_return = 0.0
    batch: ExperienceColumns | None = None
    for _ in range(steps):
        action = controller.act(obs)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        episode_return += float(reward)
        batch = recorder.record(
            obs, next_obs, action, float(reward), terminated=terminated, truncated=truncated
        )
        if terminated or truncated:
            returns.append(episode_return)
            episode_return = 0.0
            obs, _ = env.reset()
            controller.reset()
        else:
            obs = next_obs
    columns = batch if batch is not None else recorder.drain()
    if columns is None:
        msg = "record_controller needs steps >= 1"
        raise ValueError(msg)
    return ControllerHistory(columns, tuple(returns))


def pretrain(
    model: BaseAlgorithm,
    history: ControllerHistory,
    *,
    epochs: int = 100,
    batch_size: int = 256,
    learning_rate: float = 1e-3,
    value_rounds: int = 3,
    smoothing: float = 0.0,
    margin: float = 1.0,
    seed: int = 0,
) -> PretrainResult:
    """Fit ``model`` to the controller's history (module docstring); returns how well it fits.

    Uses its own optimiser, and leaves the model's optimiser state as it was: the
    reinforcement learning that follows starts with fresh moments, as after a reset.
    """
    columns = history.columns
    if isinstance(model, OffPolicyAlgorithm):
        add_to_replay_buffer(model, columns)
        if isinstance(model, DQN):
            return _clone_q_network(
                model, columns, epochs=epochs, batch_size=batch_size,
                learning_rate=learning_rate, margin=margin,
                generator=np.random.default_rng(seed),
            )  # fmt: skip
        return PretrainResult(len(columns), None, None, len(columns))
    policy = model.policy
    if not isinstance(policy, ActorCriticPolicy):
        msg = f"cannot pretrain a {type(policy).__name__}: not an actor-critic policy"
        raise ConfigError(msg)
    gamma = float(getattr(model, "gamma", 0.99))
    return clone_actor_critic(
        policy,
        columns,
        gamma=gamma,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        value_rounds=value_rounds,
        smoothing=smoothing,
        seed=seed,
    )


def clone_actor_critic(
    policy: ActorCriticPolicy,
    columns: ExperienceColumns,
    *,
    gamma: float,
    epochs: int = 100,
    batch_size: int = 256,
    learning_rate: float = 1e-3,
    value_rounds: int = 3,
    smoothing: float = 0.0,
    fit_value: bool = True,
    seed: int = 0,
) -> PretrainResult:
    """Behaviour cloning of ``columns``' actions, and the value function fitted to their returns.

    What :func:`pretrain` does for an actor-critic model (module docstring), on its policy.
    ``fit_value=False`` clones the actions only and leaves the value function alone.
    """
    generator = np.random.default_rng(seed)
    value_rounds = max(1, value_rounds)
    obs = torch.as_tensor(np.asarray(columns.obs, dtype=np.float32))
    next_obs = torch.as_tensor(np.asarray(columns.next_obs, dtype=np.float32))
    actions = _action_tensor(policy.action_space, columns.actions)
    log_std = getattr(policy, "log_std", None)
    trained = [p for p in policy.parameters() if p is not log_std]
    optimizer = torch.optim.Adam(trained, lr=learning_rate)
    n = len(columns)
    rounds = min(value_rounds, epochs) if fit_value else 1
    policy.set_training_mode(True)
    for round_ in range(rounds):
        targets = _value_targets(policy, columns, next_obs, gamma) if fit_value else None
        # The epochs shared out over the rounds, the remainder in the first.
        for _ in range(epochs // rounds + (epochs % rounds if round_ == 0 else 0)):
            order = generator.permutation(n)
            for start in range(0, n, batch_size):
                idx = torch.as_tensor(order[start : start + batch_size])
                loss = _imitation_loss(policy, obs[idx], actions[idx], smoothing)
                if targets is not None:
                    values = policy.predict_values(obs[idx]).flatten()
                    loss = loss + F.mse_loss(values, targets[idx])
                optimizer.zero_grad()
                loss.backward()  # type: ignore[no-untyped-call]
                optimizer.step()
    value_error = None
    if fit_value:
        targets = _value_targets(policy, columns, next_obs, gamma)
        with torch.no_grad():
            value_error = float(F.mse_loss(policy.predict_values(obs).flatten(), targets))
    policy.set_training_mode(False)
    return PretrainResult(n, _agreement(policy, obs, columns.actions), value_error, 0)


def _imitation_loss(
    policy: ActorCriticPolicy, obs: torch.Tensor, actions: torch.Tensor, smoothing: float
) -> torch.Tensor:
    """Cross-entropy with the controller's actions; optionally label-smoothed (discrete).

    Plain cross-entropy drives a categorical policy's probabilities towards 0 and 1, and with
    them PPO's exploration: on the battery, 90,000 steps of PPO left the clone's greedy
    policy unchanged. Smoothing asks for ``1 - smoothing`` on the controller's action and
    spreads the rest over all actions (the most likely action stays the controller's). It is
    off by default: measured with 0.05 behind the guard (``bench/regret.py``), the exploration
    it buys cost more than it earned within 100,000 steps on all three device worlds
    (median regret +1.1 % on traffic, +1.8 % on the battery, against -0.8 % and 0.0 %).
    """
    distribution = policy.get_distribution(obs)
    inner = distribution.distribution
    if isinstance(inner, torch.distributions.Categorical) and smoothing > 0.0:
        log_probs: torch.Tensor = inner.logits  # normalised log-probabilities
        chosen = log_probs.gather(1, actions.long().reshape(-1, 1)).squeeze(1)
        return -((1.0 - smoothing) * chosen + smoothing * log_probs.mean(dim=1)).mean()
    log_prob: torch.Tensor = distribution.log_prob(actions)
    return -log_prob.mean()


def _action_tensor(space: spaces.Space[Any], actions: npt.NDArray[Any]) -> torch.Tensor:
    if isinstance(space, spaces.Discrete | spaces.MultiDiscrete | spaces.MultiBinary):
        return torch.as_tensor(np.asarray(actions, dtype=np.int64))
    return torch.as_tensor(np.asarray(actions, dtype=np.float32))


def _value_targets(
    policy: ActorCriticPolicy,
    columns: ExperienceColumns,
    next_obs: torch.Tensor,
    gamma: float,
) -> torch.Tensor:
    """Discounted returns to each episode's end, bootstrapped where it was cut, not ended.

    A time limit (``truncated``) and the end of the recording are cuts: the value of the
    state reached is estimated with the current value function, as SB3 does on a timeout.
    """
    with torch.no_grad():
        bootstrap = policy.predict_values(next_obs).flatten().numpy().astype(np.float64)
    rewards = np.asarray(columns.rewards, dtype=np.float64)
    terminated = np.asarray(columns.terminated, dtype=bool)
    truncated = np.asarray(columns.truncated, dtype=bool)
    targets = np.zeros_like(rewards)
    following = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        if terminated[t]:
            following = 0.0
        elif truncated[t] or t == len(rewards) - 1:
            following = bootstrap[t]
        following = rewards[t] + gamma * following
        targets[t] = following
    return torch.as_tensor(targets, dtype=torch.float32)


def _agreement(
    policy: ActorCriticPolicy, obs: torch.Tensor, actions: npt.NDArray[Any]
) -> float | None:
    if not isinstance(policy.action_space, spaces.Discrete):
        return None
    with torch.no_grad():
        chosen = policy.get_distribution(obs).mode().numpy()
    return float(np.mean(chosen.reshape(-1) == np.asarray(actions).reshape(-1)))


class ControllerDemonstrations:
    """The controller's latest episodes on the device, for a learner the guard kept off it.

    A policy the guard keeps off the device learns nothing by reinforcement (PPO learns from
    its own episodes only). Imitating the controller where it now drives keeps the policy
    close to what works in today's conditions (a season its history never saw), so its next
    episodes lose little and the guard lets it drive again. :meth:`record` takes the
    controller's transitions and returns each episode when it ends (an off-policy learner
    replays it); :meth:`imitate` fits an actor-critic policy to the latest ``episodes``, a
    few epochs for each episode since the last time, so that a long stretch of the controller
    driving is imitated as thoroughly as the history was.
    """

    def __init__(
        self,
        observation_space: spaces.Space[Any],
        action_space: spaces.Space[Any],
        *,
        episodes: int = 20,
        epochs_per_episode: int = 5,
        max_epochs: int = 100,
    ) -> None:
        self.episodes: deque[ExperienceColumns] = deque(maxlen=episodes)
        self.epochs_per_episode = epochs_per_episode
        self.max_epochs = max_epochs
        #: Episodes recorded since the policy last imitated them.
        self.new = 0
        self._recorder = ExperienceRecorder(observation_space, action_space, 4096)
        self._parts: list[ExperienceColumns] = []

    @property
    def pending(self) -> bool:
        return self.new > 0

    def record(
        self, obs: Any, next_obs: Any, action: Any, reward: float, *, terminated: bool,
        truncated: bool,
    ) -> ExperienceColumns | None:  # fmt: skip
        """Add one controller transition; returns the episode it ended, if it ended one."""
        part = self._recorder.record(
            obs, next_obs, action, reward, terminated=terminated, truncated=truncated
        )
        if part is not None:
            self._parts.append(part)
        if not (terminated or truncated):
            return None
        last = self._recorder.drain()
        parts = [*self._parts, *([last] if last is not None else [])]
        self._parts = []
        episode = ExperienceColumns.concatenate(parts)
        self.episodes.append(episode)
        self.new += 1
        return episode

    def imitate(self, model: BaseAlgorithm, *, seed: int = 0) -> PretrainResult | None:
        """Fit ``model``'s actor-critic policy to the latest episodes (:func:`pretrain`)."""
        epochs = min(self.epochs_per_episode * self.new, self.max_epochs)
        self.new = 0
        if not self.episodes:
            return None
        columns = ExperienceColumns.concatenate(list(self.episodes))
        return pretrain(model, ControllerHistory(columns, ()), epochs=epochs, seed=seed)


def _clone_q_network(
    model: DQN,
    columns: ExperienceColumns,
    *,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    margin: float,
    generator: np.random.Generator,
    target_every: int = 200,
) -> PretrainResult:
    """Fit a DQN's Q-network to the controller's history: TD learning and a large margin.

    The pre-training phase of DQfD (Hester et al., "Deep Q-learning from Demonstrations",
    AAAI 2018). The history says nothing about the actions the controller did not take, so TD
    learning alone leaves their values arbitrary and the greedy policy anything. The margin
    loss asks every other action's value to lie at least ``margin`` mean absolute rewards
    below the controller's, so the greedy policy starts as the controller, while the TD loss
    (with a target network synchronised every ``target_every`` updates) gives the controller's
    actions the values of what followed them.
    """
    q_net, target_net = model.q_net, model.q_net_target
    obs = torch.as_tensor(np.asarray(columns.obs, dtype=np.float32))
    next_obs = torch.as_tensor(np.asarray(columns.next_obs, dtype=np.float32))
    actions = torch.as_tensor(np.asarray(columns.actions, dtype=np.int64)).reshape(-1, 1)
    rewards = torch.as_tensor(np.asarray(columns.rewards, dtype=np.float32))
    # A time limit is not an end: only a termination stops the bootstrap (as SB3's DQN).
    continues = 1.0 - torch.as_tensor(np.asarray(columns.terminated, dtype=np.float32))
    gap = margin * float(rewards.abs().mean()) + 1e-6
    gamma = float(model.gamma)
    optimizer = torch.optim.Adam(q_net.parameters(), lr=learning_rate)
    n = len(columns)
    updates = 0
    q_net.set_training_mode(True)
    for _ in range(epochs):
        order = generator.permutation(n)
        for start in range(0, n, batch_size):
            idx = torch.as_tensor(order[start : start + batch_size])
            values = q_net(obs[idx])
            chosen = values.gather(1, actions[idx]).squeeze(1)
            with torch.no_grad():
                following = target_net(next_obs[idx]).max(dim=1).values
                target = rewards[idx] + gamma * continues[idx] * following
            others_lower = torch.full_like(values, gap).scatter(1, actions[idx], 0.0)
            large_margin = ((values + others_lower).max(dim=1).values - chosen).mean()
            loss = F.smooth_l1_loss(chosen, target) + large_margin
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            updates += 1
            if updates % target_every == 0:
                target_net.load_state_dict(q_net.state_dict())
    target_net.load_state_dict(q_net.state_dict())
    q_net.set_training_mode(False)
    with torch.no_grad():
        greedy = q_net(obs).argmax(dim=1)
    agreement = float((greedy == actions.squeeze(1)).float().mean())
    return PretrainResult(n, agreement, None, n)
