"""Which policy of a context the library keeps: ContextMemory, on hand-made score windows."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from agents.bus.arrays import Tensor
from agents.learner.library import ContextMemory, LibraryEntry


def policy(name: str) -> Callable[[float], LibraryEntry]:
    """An entry whose weights are labelled ``name``, as the loop makes one after an episode."""
    weights = [Tensor(name, "float32", [1], np.zeros(1, np.float32).tobytes())]
    return lambda mean: LibraryEntry(context=1, tensors=weights, score=mean, step=0)


def kept(memory: ContextMemory, episode: int) -> str | None:
    entry = memory.before(episode)
    return None if entry is None else entry.tensors[0].name


def test_a_newer_policy_within_one_standard_error_of_the_best_window_wins() -> None:
    memory = ContextMemory(horizon=60)
    memory.offer(1, [150.0, 70.0, 150.0, 70.0, 150.0], policy("lucky"))  # 118, SE 19.6
    memory.offer(2, [100.0] * 20, policy("steady"))  # 100 >= 118 - 19.6
    assert memory.best_score == pytest.approx(118.0)
    assert memory.best_error == pytest.approx(np.std([150, 70, 150, 70, 150], ddof=1) / 5**0.5)
    assert kept(memory, 2) == "steady"


def test_a_policy_clearly_below_the_best_window_is_not_a_candidate() -> None:
    memory = ContextMemory(horizon=60)
    memory.offer(1, [150.0, 70.0, 150.0, 70.0, 150.0], policy("good"))
    memory.offer(2, [90.0] * 20, policy("worse"))  # 90 < 118 - 19.6
    assert kept(memory, 2) == "good"
    # With a wider tolerance it would have been one.
    wide = ContextMemory(horizon=60, tolerance=2.0)
    wide.offer(1, [150.0, 70.0, 150.0, 70.0, 150.0], policy("good"))
    wide.offer(2, [90.0] * 20, policy("worse"))
    assert kept(wide, 2) == "worse"


def test_the_policy_from_before_the_drop_is_kept_not_the_newest() -> None:
    memory = ContextMemory(horizon=60)
    for episode, name in [(10, "a"), (11, "b"), (12, "after-change"), (13, "after-change")]:
        memory.offer(episode, [100.0] * 20, policy(name))
    assert kept(memory, 11) == "b"
    assert kept(memory, 13) == "after-change"
    # Every candidate came after the estimated change: the earliest is the least touched.
    assert kept(memory, 5) == "a"


def test_only_the_horizon_and_the_newest_candidate_before_it_are_kept() -> None:
    memory = ContextMemory(horizon=10)
    for episode in range(1, 31):
        memory.offer(episode, [100.0] * 20, policy(f"p{episode}"))
    recorded = [episode for episode, _ in memory.candidates]
    assert recorded == list(range(20, 31))  # 21..30 within 10 episodes, and 20 before them
    assert kept(memory, 15) == "p20"  # the oldest kept stands in for the forgotten ones


def test_clear_forgets_the_context() -> None:
    memory = ContextMemory(horizon=10)
    memory.offer(1, [1.0, 2.0, 3.0], policy("p"))
    memory.clear()
    assert memory.best_score is None
    assert memory.before(5) is None
