"""Noticing that the world changed, from the agent's own performance.

The agent never sees the regime its world is in; it sees its episode returns. A drift that
matters shows up as a drop in them. :class:`PageHinkley` is the one-sided Page-Hinkley
(CUSUM) test for a decrease in the mean of a stream:

    z_t = (mean_{t-1} - x_t) / scale_{t-1} - delta        how far below the mean, in scales
    g_t = max(0, g_{t-1} + z_t)                           evidence of a drop, accumulated
    alarm when g_t > threshold

``mean`` and ``scale`` are exponentially weighted estimates (weight ``1 - alpha`` on the new
value), so the test follows an agent whose returns rise as it learns and only reacts to
drops below its recent level. ``delta`` is the drop (in scales) the test tolerates without
accumulating evidence; ``threshold`` trades false alarms against detection delay. The first
``warmup`` values only estimate mean and scale. The scale is floored at ``min_relative_scale``
of the mean's magnitude (and ``min_scale``), so a stream that sat at a constant (CartPole at
500) does not turn a one-point dip into an alarm.

The false-alarm rate on a stationary stream and the delay after a real drop are measured on
seeded data in ``tests/learner/test_drift_detector.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["PageHinkley"]


@dataclass(slots=True)
class PageHinkley:
    delta: float = 0.5
    threshold: float = 10.0
    warmup: int = 20
    alpha: float = 0.99
    min_scale: float = 1e-6
    min_relative_scale: float = 0.02

    count: int = 0
    mean: float = 0.0
    variance: float = 0.0
    evidence: float = 0.0

    def reset(self) -> None:
        """Forget everything: a new context starts (after an alarm was handled)."""
        self.count = 0
        self.mean = 0.0
        self.variance = 0.0
        self.evidence = 0.0

    @property
    def scale(self) -> float:
        floor = max(self.min_scale, self.min_relative_scale * abs(self.mean))
        return max(math.sqrt(self.variance), floor)

    def update(self, value: float) -> bool:
        """Add one observation; returns True when a drop is detected (then call reset)."""
        self.count += 1
        if self.count <= self.warmup:
            # Welford's running mean and variance over the warm-up values.
            previous = self.mean
            self.mean += (value - previous) / self.count
            self.variance += ((value - previous) * (value - self.mean) - self.variance) / self.count
            return False
        z = (self.mean - value) / self.scale - self.delta
        self.evidence = max(0.0, self.evidence + z)
        weight = 1.0 - self.alpha
        difference = value - self.mean
        self.mean += weight * difference
        self.variance = (1.0 - weight) * (self.variance + weight * difference * difference)
        return self.evidence > self.threshold
