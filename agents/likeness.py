"""Whether two devices are alike enough for one to learn from the other.

Devices of one world differ (another house, another intersection): a policy or a transition
from a device unlike one's own can mislead (docs/benchmarks.md: another intersection's
experience made an agent learn slower than alone; a policy adopted from another house left
the house cold). Agents announce their device's parameters (the world's ``env_kwargs``) with
what they share, and everyone who takes something in (federated weights, experience, and the
coordinator's evolution choosing whom an agent copies) compares them the same way. Kept apart
from the learner and the coordinator so that neither imports the other (the learner imports
torch; the coordinator's loop must not).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from agents.bus.schemas import HyperValue

__all__ = ["ALIKE_RADIUS", "device_distance", "devices_alike"]

ALIKE_RADIUS = 0.5
"""Largest relative difference of any announced device parameter for two devices to be alike
(0.5: no parameter more than twice the other's)."""


def device_distance(ours: Mapping[str, HyperValue], theirs: Mapping[str, HyperValue]) -> float:
    """The largest relative difference of the numeric device parameters both announce.

    ``|a - b| / max(|a|, |b|)`` per parameter (0 for two zeros); a parameter one side does not
    announce is not compared; a non-numeric one that differs counts as 1 (unlike), and so does
    a non-finite number (a peer's announcement comes off the network: NaN must not read as 0).
    """
    distance = 0.0
    for key in ours.keys() & theirs.keys():
        a, b = ours[key], theirs[key]
        if isinstance(a, bool) or isinstance(b, bool) or isinstance(a, str) or isinstance(b, str):
            distance = max(distance, 0.0 if a == b else 1.0)
            continue
        if not (math.isfinite(float(a)) and math.isfinite(float(b))):
            distance = max(distance, 1.0)
            continue
        scale = max(abs(float(a)), abs(float(b)))
        if scale > 0.0:
            distance = max(distance, abs(float(a) - float(b)) / scale)
    return distance


def devices_alike(
    ours: Mapping[str, HyperValue],
    theirs: Mapping[str, HyperValue],
    radius: float = ALIKE_RADIUS,
) -> bool:
    """Whether no parameter both devices announce differs by more than ``radius``, relatively."""
    return device_distance(ours, theirs) <= radius
