"""What an agent does when it notices its world changed: its strategy.

- ``lifelong`` (the default): remember the policy the context that just ended had before its
  returns fell (``library.ContextMemory``), try every remembered policy, every peer's latest
  snapshot and an untrained network (``fresh``) against the current one on a few sandbox
  episodes, adopt the best if it clearly beats the current one, keep learning from there. A
  world that comes back is met with the policy that mastered it: no relearning. A world where
  untrained weights do better than everything the agent knows is one where its knowledge
  misleads it: it starts over, as ``scratch`` would.
- ``finetune``: keep training the one policy (what plain SB3 does); the drift is only counted.
- ``scratch``: start over: fresh random weights, optimiser, replay buffer and schedules.

The *sandbox* is a second instance of the agent's own world in its current conditions (the
same device parameters and the same point of the drift schedule), a digital twin of the
device: candidates are tried there so that the learner's own episode and rollout are not
disturbed. Its steps are counted as ``adaptation_steps`` and reported.
"""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.policies import BasePolicy

from agents.bus.arrays import Tensor
from agents.bus.schemas import Lineage
from agents.exceptions import ConfigError, IncompatiblePolicy
from agents.learner.snapshots import load_tensors
from agents.worlds import PolicyController, play_episodes
from agents.worlds.shadow import BASELINE_RETURN

__all__ = [
    "FRESH",
    "Candidate",
    "Strategy",
    "Trial",
    "TrialRun",
    "choose",
    "reinitialise",
    "reset_optimizers",
    "streams_untouched",
    "try_candidates",
]

log = logging.getLogger(__name__)


FRESH = "fresh"
"""The label of the untrained candidate a lifelong agent tries beside what it remembers."""


class Strategy(StrEnum):
    LIFELONG = "lifelong"
    FINETUNE = "finetune"
    SCRATCH = "scratch"

    @classmethod
    def parse(cls, value: str) -> Strategy:
        try:
            return cls(value)
        except ValueError:
            choices = ", ".join(s.value for s in cls)
            msg = f"unknown strategy {value!r}: choose one of {choices}"
            raise ConfigError(msg) from None


@dataclass(frozen=True, slots=True)
class Candidate:
    """A policy worth trying (``label``).

    ``current``, ``library:<context>``, ``peer:<agent>@v<n>`` or ``fresh`` (untrained weights).
    """

    label: str
    tensors: list[Tensor]
    context: int | None = None
    lineage: Lineage | None = None


@dataclass(frozen=True, slots=True)
class Trial:
    candidate: Candidate
    score: float


@dataclass(slots=True)
class TrialRun:
    trials: list[Trial] = field(default_factory=list)
    steps: int = 0


def try_candidates(
    candidates: list[Candidate],
    *,
    sandbox: gym.Env[Any, Any],
    scratch_policy: BasePolicy,
    episodes: int,
    seed: int,
    against_baseline: bool = False,
) -> TrialRun:
    """Play each candidate for ``episodes`` episodes on the sandbox, on the same seeds.

    Same seeds for every candidate make it a paired comparison: the differences are the
    policies', not the weather's. A candidate that does not fit the network is skipped.
    ``against_baseline`` (a sandbox built with ``shadow_baseline``): a candidate's score is
    its mean advantage over the baseline on the same episodes, the scale the agent judges its
    training episodes on.
    """
    metrics = {"baseline": BASELINE_RETURN} if against_baseline else {}
    run = TrialRun()
    seeds = [seed + i for i in range(episodes)]
    for candidate in candidates:
        try:
            load_tensors(scratch_policy, candidate.tensors)
        except IncompatiblePolicy as exc:
            log.info("skipping %s: %s", candidate.label, exc)
            continue
        score = play_episodes(
            PolicyController(scratch_policy), sandbox, seeds=seeds, metrics=metrics
        )
        values = np.asarray(score.returns)
        if against_baseline:
            values = values - np.asarray(score.metrics["baseline"])
        run.trials.append(Trial(candidate, float(np.mean(values))))
        run.steps += sum(score.lengths)
    return run


@contextlib.contextmanager
def streams_untouched() -> Iterator[None]:
    """Run the block without moving the global random streams (torch, NumPy, ``random``).

    Trying candidates builds networks (random initial weights) and plays episodes; drawn from
    the streams the learner trains with, that would make an agent that keeps its policy after
    a drift learn on differently from one that never looked, and a comparison of strategies
    on the same seeds would compare luck. Inside the block the streams run on; after it they
    are where they were.
    """
    numpy_state = np.random.get_state()  # noqa: NPY002 - the legacy stream SB3 draws from
    python_state = random.getstate()
    with torch.random.fork_rng(devices=[]):
        try:
            yield
        finally:
            np.random.set_state(numpy_state)  # noqa: NPY002
            random.setstate(python_state)


def choose(trials: list[Trial], *, margin: float = 0.02) -> Trial | None:
    """The best trial if it beats the current policy's by more than ``margin`` (relative).

    The margin keeps the agent from swapping policies on noise. Returns None to keep the
    current policy.
    """
    current = next((t for t in trials if t.candidate.label == "current"), None)
    if current is None or len(trials) < 2:  # noqa: PLR2004 - current plus one other
        return None
    best = max(trials, key=lambda t: t.score)
    if best is current:
        return None
    needed = current.score + margin * max(abs(current.score), 1e-6)
    return best if best.score > needed else None


def reset_optimizers(policy: BasePolicy) -> None:
    """New optimiser state for new weights: old moment estimates belong to the old ones."""
    for module in policy.modules():
        optimizer = getattr(module, "optimizer", None)
        if isinstance(optimizer, torch.optim.Optimizer):
            params = [p for group in optimizer.param_groups for p in group["params"]]
            fresh = type(optimizer)(params, **optimizer.defaults)
            for group, old in zip(fresh.param_groups, optimizer.param_groups, strict=True):
                group["lr"] = old["lr"]
            setattr(module, "optimizer", fresh)  # noqa: B010 - torch types it as a submodule


def reinitialise(model: BaseAlgorithm, make_policy: Callable[[], BasePolicy]) -> None:
    """Start over in place: fresh random weights, optimisers and (off-policy) replay buffer.

    The objects stay the same (SB3 holds references to them mid-rollout); their contents are
    replaced.
    """
    fresh = make_policy()
    model.policy.load_state_dict(fresh.state_dict())
    reset_optimizers(model.policy)
    if isinstance(model, OffPolicyAlgorithm) and model.replay_buffer is not None:
        model.replay_buffer.reset()
