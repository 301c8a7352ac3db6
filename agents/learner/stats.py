"""The learner's counters, in one place: what telemetry, the final report and checkpoints tell.

The agent builds its :class:`~agents.bus.schemas.Telemetry` messages and its ``final.json``
report from :class:`LearnerStats` by field name (:meth:`LearnerStats.counters`), so a counter
added here reaches every message that has a field of that name, and no other.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agents.learner.guard import RegretMeter

__all__ = ["LearnerStats", "StepRate"]


@dataclass(slots=True)
class LearnerStats:
    """What the learner counted over its life (the first four and the regret survive a restart)."""

    #: Episodes finished in the agent's own world.
    episodes: int = 0
    #: The current context: a stretch of life between two detected drifts, numbered from 1.
    context: int = 1
    #: Confirmed drifts (and, for ``finetune``, every detected one).
    drift_events: int = 0
    #: Drifts after which the agent took on other weights than it had.
    adaptations: int = 0
    #: Drops of the returns the sandbox did not confirm.
    false_alarms: int = 0
    #: Environment steps played on the sandbox, trying candidates.
    adaptation_steps: int = 0
    #: Directives whose weights were taken on.
    adoptions: int = 0
    #: Directives whose weights did clearly worse on this agent's sandbox.
    adoptions_declined: int = 0
    #: Peers' transitions taken into the replay buffer.
    peer_transitions: int = 0
    #: Peers' batches alike by parameters that did not fit our Q-network (intake.py).
    experience_unfit: int = 0
    #: The agent's own transitions collected (this run).
    own_transitions: int = 0
    #: Against the world's baseline controller on the same episodes, over the agent's life
    #: (guard.RegretMeter, copied here by :meth:`take_regret`): the baseline's summed return
    #: minus the deployed one's, the baseline's summed return, the episodes compared.
    regret: float = 0.0
    regret_baseline_return: float = 0.0
    regret_episodes: int = 0
    #: Device steps the baseline controller drove: its recorded history and guard fallbacks.
    controller_steps: int = 0
    #: Imagined steps trained on (imagination.py), this run.
    imagined_steps: int = 0
    #: Remembered days planned in hindsight and cloned (hindsight.py), this run.
    planned_days: int = 0
    #: Device steps whose proposed action the world's shield replaced (shield.py), this run.
    shield_interventions: int = 0

    def take_regret(self, meter: RegretMeter) -> None:
        """Copy the meter's sums into the counters that telemetry and the report carry."""
        self.regret = meter.regret
        self.regret_baseline_return = meter.baseline_return
        self.regret_episodes = meter.episodes
        self.controller_steps = meter.controller_steps

    def counters(self, wanted: Collection[str]) -> dict[str, Any]:
        """The counters whose names are in ``wanted`` (a message's or report's field names)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name in wanted}


class StepRate:
    """Steps per second over the last few seconds of wall time."""

    def __init__(self, step: int, window: float = 5.0) -> None:
        self.window = window
        self._mark = (time.monotonic(), step)
        self.value = 0.0

    def update(self, step: int) -> None:
        now = time.monotonic()
        then, then_step = self._mark
        if now - then >= self.window:
            self.value = (step - then_step) / (now - then)
            self._mark = (now, step)
        elif self.value == 0.0 and now - then >= 1.0:
            self.value = (step - then_step) / (now - then)
