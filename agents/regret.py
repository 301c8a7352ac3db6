"""An agent's regret against its world's baseline controller, as agents report it.

The agent meters it (:class:`agents.learner.guard.RegretMeter`) and reports four counters by
name, in its telemetry and its ``final.json``; the coordinator, the run summary and the
report read them back into a :class:`Regret`. Kept apart from both sides so that neither
imports the other (the learner imports torch; the coordinator and the report must not).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["Regret"]


@dataclass(frozen=True, slots=True)
class Regret:
    """The baseline controller's summed return minus the deployed one, on the same episodes.

    Positive: the device did worse than under its old controller. ``episodes`` is how many
    episodes both sums cover (0: nothing was compared, the regret is undefined).
    """

    total: float = 0.0
    baseline_return: float = 0.0
    episodes: int = 0
    controller_steps: int = 0

    @classmethod
    def from_counters(cls, counters: Mapping[str, object]) -> Regret:
        """From the counters as messages and reports name them (``regret``, ...)."""

        def number(name: str) -> float:
            value = counters.get(name, 0)
            return float(value) if isinstance(value, int | float) else 0.0

        return cls(
            number("regret"),
            number("regret_baseline_return"),
            int(number("regret_episodes")),
            int(number("controller_steps")),
        )

    @property
    def relative(self) -> float | None:
        """The regret as a share of the baseline's summed return's size (0.05: 5 % worse)."""
        if self.episodes == 0 or self.baseline_return == 0.0:
            return None
        return self.total / abs(self.baseline_return)

    def as_dict(self) -> dict[str, float | int | None]:
        return {
            "total": self.total if self.episodes else None,
            "relative": self.relative,
            "baseline_return": self.baseline_return,
            "episodes": self.episodes,
            "controller_steps": self.controller_steps,
        }
