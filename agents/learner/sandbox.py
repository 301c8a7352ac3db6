"""Trying policies on the sandbox: a twin of the agent's device, in its current conditions.

The *sandbox* is a second instance of the agent's own world in its current conditions (the
same device parameters and the same point of the drift schedule), a digital twin of the
device: candidates are tried there so that the learner's own episode and rollout are not
disturbed. What the trials decide is :mod:`agents.learner.adaptation`'s business.
"""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.policies import BasePolicy

from agents.bus.arrays import Tensor
from agents.bus.schemas import Lineage
from agents.exceptions import IncompatiblePolicy
from agents.learner.batch_actor import ActorController
from agents.learner.snapshots import load_tensors
from agents.worlds import play_episodes
from agents.worlds.shadow import BASELINE_RETURN

__all__ = ["Candidate", "Trial", "TrialRun", "streams_untouched", "try_candidates"]

log = logging.getLogger(__name__)


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

    def scores(self) -> dict[str, float]:
        """Each candidate's score, by label."""
        return {trial.candidate.label: trial.score for trial in self.trials}


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
            ActorController(scratch_policy), sandbox, seeds=seeds, metrics=metrics
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
