"""Noticing that the world changed, from the agent's own performance.

The agent never sees the regime its world is in; it sees its episode returns. A drift that
matters shows up as a drop in them. :class:`DropDetector` is a one-sided two-window test, a
simplification of ADWIN (Bifet & Gavaldà, 2007) to the direction that matters: after every
episode it compares the mean of the last ``w`` returns, for each ``w`` in ``windows``, with
the mean of the returns just before them (up to ``reference`` of them), and raises an alarm
when for some ``w``

    drop = mean(reference) - mean(last w)              > relative_drop * |mean(reference)|   and
    drop / sqrt(s_ref^2 / n_ref + s_w^2 / w)           > threshold

Welch's statistic: ``s_ref`` is the reference returns' standard deviation and ``s_w`` the
window's own, each floored at ``min_relative_scale`` of the reference mean's magnitude (so a
stream that sat at a constant, CartPole at 500, does not alarm on a one-point dip). Windows
shorter than ``own_spread_from`` (10) borrow ``s_ref`` for ``s_w``: three similar values say
little about their spread. The window's own spread matters after a drift that strikes while
the agent is still learning: the reference then spans a rising curve (CartPole from 30 to 300),
its spread is large, and a collapse to a steady 10 measured with that spread for both sides
went unnoticed in 19 of 50 seeded streams (and in a real `make run`: the agent never
remembered the wiring it had just learned); with Welch's, in none. The price is a few more
false alarms on a stationary world, each settled by a sandbox confirmation. Short windows catch
collapses within a few episodes; long ones catch smaller drops. Rising returns (an agent
learning) never alarm: the test is one-sided.

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

__all__ = ["DropDetector", "ShiftDetector"]


@dataclass(slots=True)
class DropDetector:
    windows: tuple[int, ...] = (3, 5, 10, 20)
    reference: int = 40
    threshold: float = 5.0
    relative_drop: float = 0.10
    min_relative_scale: float = 0.05
    min_scale: float = 1e-6
    own_spread_from: int = 10
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
            floor = max(self.min_relative_scale * abs(mean_before), self.min_scale)
            spread_before = max(_spread(before), floor)
            # A window's own spread is trusted from `own_spread_from` values on; a shorter
            # one borrows the reference's (three similar values say little).
            spread_recent = (
                max(_spread(recent), floor) if window >= self.own_spread_from else spread_before
            )
            error = math.sqrt(spread_before**2 / len(before) + spread_recent**2 / window)
            if drop / error > self.threshold:
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


@dataclass(slots=True)
class ShiftDetector:
    """A clear move of a stream's mean either way: two :class:`DropDetector`, one on its negation.

    For the baseline controller's own returns on the agent's episodes (the shadow twin's):
    they do not depend on the agent's policy, so when they move, the world moved, whether or
    not the agent's own score shows it (an agent as good as the controller before and after a
    change of season scores the same; the other controller it remembers may not).
    """

    falling: DropDetector = field(default_factory=DropDetector)
    rising: DropDetector = field(default_factory=DropDetector)

    def reset(self) -> None:
        self.falling.reset()
        self.rising.reset()

    def update(self, value: float) -> bool:
        """Add one value; True when the stream's mean moved clearly (then call reset)."""
        fell = self.falling.update(value)
        rose = self.rising.update(-value)
        return fell or rose


def _spread(values: list[float]) -> float:
    """The sample standard deviation."""
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
