"""Noticing that the world changed, from the agent's own performance.

The agent never sees the regime its world is in; it sees its episode returns. A drift that
matters shows up as a drop in them. :class:`DropDetector` is a one-sided two-window test, a
simplification of ADWIN (Bifet & Gavaldà, 2007) to the direction that matters: after every
episode it compares the mean of the last ``w`` returns, for each ``w`` in ``windows``, with
the mean of the returns just before them (up to ``reference`` of them), and raises an alarm
when for some ``w``

    drop = mean(reference) - mean(last w)   > relative_drop * |mean(reference)|   and
    drop / (s * sqrt(1/w + 1/n_ref))        > threshold

where ``s`` is the reference returns' standard deviation, floored at ``min_relative_scale``
of their mean's magnitude (so a stream that sat at a constant, CartPole at 500, does not
alarm on a one-point dip). Short windows catch collapses within a few episodes; long ones
catch smaller drops. Rising returns (an agent learning) never alarm: the test is one-sided.

Why not Page-Hinkley: its running mean and variance are dominated by the heavy-tailed returns
of an agent still learning (CartPole's swing between 10 and 500), and then a collapse to 10
after a drift hides inside the inflated variance. Comparing windows does not carry that
history. The false-alarm rate on a stationary stream, the delay after real drops and the
behaviour on a learning curve are measured on seeded data in
``tests/learner/test_drift_detector.py``.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

__all__ = ["DropDetector"]


@dataclass(slots=True)
class DropDetector:
    windows: tuple[int, ...] = (3, 5, 10, 20)
    reference: int = 40
    threshold: float = 5.0
    relative_drop: float = 0.10
    min_relative_scale: float = 0.05
    min_scale: float = 1e-6
    history: deque[float] = field(init=False)
    quiet: int = 0

    def __post_init__(self) -> None:
        self.history = deque(maxlen=self.history_length)

    @property
    def history_length(self) -> int:
        """How many of the latest values the detector keeps (and can date a change within)."""
        return self.reference + max(self.windows)

    def reset(self) -> None:
        """Forget everything: a new context starts (after a confirmed drift)."""
        self.history.clear()
        self.quiet = 0

    def snooze(self, episodes: int) -> None:
        """No alarm for the next ``episodes`` values (after an alarm that was not confirmed).

        The history is kept, so a real drift right after a false alarm is still measured
        against the returns from before it.
        """
        self.quiet = episodes

    def update(self, value: float) -> bool:
        """Add one episode's return; True when a drop is detected (then call reset)."""
        self.history.append(value)
        if self.quiet > 0:
            self.quiet -= 1
            return False
        values = list(self.history)
        for window in self.windows:
            before = values[: len(values) - window][-self.reference :]
            if len(before) < max(5, window):
                continue
            recent = values[len(values) - window :]
            mean_before = sum(before) / len(before)
            drop = mean_before - sum(recent) / window
            if drop <= self.relative_drop * abs(mean_before):
                continue
            variance = sum((v - mean_before) ** 2 for v in before) / (len(before) - 1)
            scale = max(
                math.sqrt(variance), self.min_relative_scale * abs(mean_before), self.min_scale
            )
            if drop / (scale * math.sqrt(1 / window + 1 / len(before))) > self.threshold:
                return True
        return False

    def episodes_since_change(self) -> int:
        """How many of the latest values came after the drop: the most likely change point.

        The split of the history that best explains it as a drop of the mean, the classic
        least-squares change-point estimate: the ``k`` maximising
        ``(mean(before) - mean(last k)) * sqrt(k * n / (k + n))``, ``before`` being up to
        ``reference`` values before the last ``k`` (at least 5 of them). After an alarm it tells
        which policies the agent had before its returns began to fall; 0 without enough history.
        """
        values = list(self.history)
        best_k, best_score = 0, 0.0
        for k in range(1, len(values) - 4):
            before = values[: len(values) - k][-self.reference :]
            after = values[len(values) - k :]
            n = len(before)
            drop = sum(before) / n - sum(after) / k
            score = drop * math.sqrt(k * n / (k + n))
            if score > best_score:
                best_k, best_score = k, score
        return best_k
