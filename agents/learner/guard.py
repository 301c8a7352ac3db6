"""Never worse than the old controller while learning: regret, and a guard that bounds it.

A person judges a learning thermostat or signal controller by what it costs them against the
controller it replaced, on the same days, over the whole time it has been learning. That is
its **regret**: the baseline controller's return minus the deployed return, episode by
episode, summed (:class:`RegretMeter`; positive means worse than the old controller). The
baseline's return on the very episode the device lived through comes from the shadow twin
(:mod:`agents.worlds.shadow`).

The guard (:class:`GuardedDevice`) decides, before each episode, who drives the device: the
learner (its training policy, exploration included) or the old controller. It follows
*conservative exploration* (Wu et al., "Conservative Bandits", ICML 2016; Garcelon et al.,
"Conservative Exploration in Reinforcement Learning", AISTATS 2020): the learner may drive an
episode only if, even should that episode go as badly as its worst recent one, the run's regret
stays within a budget, a fraction ``budget`` of what the controller's returns sum to
(:class:`ConservativeGate`). Episodes the controller drives cost no regret and widen the budget;
episodes the learner drives better than the controller pay into it. So:

- at every moment the regret is at most ``budget`` times the controller's cumulated cost (up to
  one episode's misjudged worst case), whatever the learner does;
- a learner that beats the controller earns room to explore, and its regret turns negative;
- a learner that does not is kept off the device, and its user gets the old controller.

The controller's episodes are played inside ``reset`` (the learner's algorithm only ever sees
its own episodes, so on-policy updates stay on-policy); their transitions go to ``on_transition``
(published as the device's experience, and an off-policy learner's replay buffer can take them).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, SupportsFloat

import gymnasium as gym

from agents.worlds.baselines import Controller
from agents.worlds.shadow import BASELINE_RETURN, unjudged

__all__ = [
    "DEFAULT_BUDGET",
    "ConservativeGate",
    "GuardedDevice",
    "RegretMeter",
    "TransitionSink",
]

DEFAULT_BUDGET = 0.02
"""Share of the controller's cumulated cost the learner may lose at most (2 %)."""


@dataclass(slots=True)
class RegretMeter:
    """The deployed returns and the baseline's on the same episodes, summed over the run."""

    deployed_return: float = 0.0
    baseline_return: float = 0.0
    #: Finished episodes the learner drove, and the controller drove.
    learner_episodes: int = 0
    controller_episodes: int = 0
    #: Device steps the controller drove (history and guard), outside the learner's algorithm.
    controller_steps: int = 0

    @property
    def regret(self) -> float:
        """The baseline's return minus the deployed return: > 0 is worse than the controller."""
        return self.baseline_return - self.deployed_return

    @property
    def episodes(self) -> int:
        return self.learner_episodes + self.controller_episodes

    def add_history(self, steps: int, episode_returns: Iterable[float]) -> None:
        """The controller drove the device for ``steps`` steps, finishing these episodes."""
        self.controller_steps += steps
        for episode_return in episode_returns:
            self.add(episode_return, episode_return, by_controller=True)

    def add(self, deployed: float, baseline: float, *, by_controller: bool) -> None:
        self.deployed_return += deployed
        self.baseline_return += baseline
        if by_controller:
            self.controller_episodes += 1
        else:
            self.learner_episodes += 1


class ConservativeGate:
    """Whether the learner may drive the next episode (module docstring).

    Args:
        budget: the regret allowed, as a share of the magnitude of the controller's cumulated
            return (``0.02``: 2 % of what the old controller cost on the same days).
        window: the learner's last episodes whose worst advantage over the controller
            predicts its next one. Before it drove any, the prediction is 0: it starts as a
            clone of the controller (:mod:`agents.learner.pretrain`).
    """

    def __init__(self, budget: float = DEFAULT_BUDGET, window: int = 5) -> None:
        if not 0.0 <= budget <= 1.0:
            msg = f"guard budget must be within [0, 1], got {budget}"
            raise ValueError(msg)
        self.budget = budget
        self.recent_advantages: deque[float] = deque(maxlen=max(1, window))

    def record(self, advantage: float) -> None:
        """The learner drove an episode: its return minus the controller's on it."""
        self.recent_advantages.append(advantage)

    def learner_may_drive(self, meter: RegretMeter) -> bool:
        worst = min(self.recent_advantages, default=0.0)
        typical = abs(meter.baseline_return) / meter.episodes if meter.episodes else 0.0
        allowance = self.budget * (abs(meter.baseline_return) + typical)
        return meter.regret - min(0.0, worst) <= allowance


TransitionSink = Callable[[Any, Any, Any, float, bool, bool], None]
"""``(obs, next_obs, action, reward, terminated, truncated)`` of a controller-driven step."""


class GuardedDevice(gym.Wrapper[Any, Any, Any, Any]):
    """The device, driven each episode by the learner or by its old controller (module docstring).

    Args:
        env: the device; its ``info`` must carry :data:`BASELINE_RETURN` at every episode's end
            (a :class:`agents.worlds.shadow.BaselineShadow` inside it). Put this wrapper
            outside the drift wrapper, so the controller's steps advance the drift schedule.
        controller: the device's old controller.
        gate: decides who drives; ``None`` lets the learner drive always (regret is still
            metered).
        on_transition: receives every controller-driven transition.
        keep_going: asked between controller episodes; ``False`` (the agent is stopping)
            hands the device back to the learner's loop at once, so it can stop.
    """

    def __init__(
        self,
        env: gym.Env[Any, Any],
        controller: Controller,
        *,
        gate: ConservativeGate | None,
        meter: RegretMeter | None = None,
        on_transition: TransitionSink | None = None,
        keep_going: Callable[[], bool] = lambda: True,
    ) -> None:
        super().__init__(env)
        self.controller = controller
        self.gate = gate
        self.meter = meter if meter is not None else RegretMeter()
        self.on_transition = on_transition
        self.keep_going = keep_going
        self._episode_return = 0.0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        gate = self.gate
        self._episode_return = 0.0
        while gate is not None and not gate.learner_may_drive(self.meter) and self.keep_going():
            # The controller's episode: the baseline's return on it is its own, not played.
            with unjudged(self.env):
                obs, info = self.env.reset(seed=seed, options=options)
                finished, obs = self._drive_with_controller(obs)
            seed = None
            if not finished:
                # The agent stops: it gets the device back as the controller left it.
                return obs, info
        return self.env.reset(seed=seed, options=options)

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._episode_return += float(reward)
        if (terminated or truncated) and BASELINE_RETURN in info:
            baseline = float(info[BASELINE_RETURN])
            self.meter.add(self._episode_return, baseline, by_controller=False)
            if self.gate is not None:
                self.gate.record(self._episode_return - baseline)
        return obs, reward, terminated, truncated, info

    def _drive_with_controller(self, obs: Any) -> tuple[bool, Any]:
        """One episode driven by the controller (no regret, by definition).

        Unless the agent stops first (``keep_going``). Returns whether the episode finished,
        and the last observation.
        """
        self.controller.reset()
        episode_return = 0.0
        while True:
            if not self.keep_going():
                return False, obs
            action = self.controller.act(obs)
            next_obs, reward, terminated, truncated, _ = self.env.step(action)
            episode_return += float(reward)
            self.meter.controller_steps += 1
            if self.on_transition is not None:
                self.on_transition(obs, next_obs, action, float(reward), terminated, truncated)
            if terminated or truncated:
                break
            obs = next_obs
        self.meter.add(episode_return, episode_return, by_controller=True)
        return True, next_obs
