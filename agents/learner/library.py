"""The agent's memory of past policies, keyed by the context it was learned in.

A *context* is a stretch of the agent's life between two detected drifts; the agent numbers
them (1, 2, ...). When a drift is detected, the policy the context that just ended had
before its returns fell is stored under its number (:class:`ContextMemory` says which). When a
later drift brings the world back to conditions the agent already mastered, the policy stored
for them scores best on the sandbox and is adopted, and the agent continues from there
instead of relearning: that is how it does not forget.

The library is written next to the checkpoint in the project's own format (MessagePack of
named tensors, like a snapshot), so it survives restarts without pickle.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from agents._atomic import write_bytes_atomically
from agents.bus.arrays import Tensor
from agents.bus.schemas import Lineage

__all__ = ["ContextMemory", "LibraryEntry", "PolicyLibrary"]


class LibraryEntry(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One remembered policy: its context, its weights, how well it did there, and when."""

    context: int
    tensors: list[Tensor]
    score: float
    step: int
    lineage: Lineage | None = None


class _LibraryFile(msgspec.Struct, forbid_unknown_fields=True):
    format: int
    entries: list[LibraryEntry]


_FORMAT = 1


@dataclass
class PolicyLibrary:
    """At most ``capacity`` policies, one per context; the least recently used goes first."""

    capacity: int = 8

    def __post_init__(self) -> None:
        self.entries: dict[int, LibraryEntry] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def store(self, entry: LibraryEntry) -> None:
        """Remember ``entry`` for its context (replacing what was stored for it)."""
        self.entries[entry.context] = entry
        while len(self.entries) > self.capacity:
            oldest = min(self.entries.values(), key=lambda e: e.step)
            del self.entries[oldest.context]

    def get(self, context: int) -> LibraryEntry | None:
        return self.entries.get(context)

    def touch(self, context: int, step: int) -> None:
        """Mark ``context``'s policy as just used: the least recently used goes first."""
        entry = self.entries.get(context)
        if entry is not None:
            entry.step = step

    def save(self, path: Path) -> None:
        """Write atomically (new file, then rename)."""
        payload = msgspec.msgpack.encode(_LibraryFile(_FORMAT, list(self.entries.values())))
        write_bytes_atomically(path, payload)

    def load(self, path: Path) -> None:
        data = msgspec.msgpack.decode(path.read_bytes(), type=_LibraryFile)
        self.entries = {entry.context: entry for entry in data.entries}


@dataclass
class ContextMemory:
    """The current context's policies worth remembering, until a drift ends the context.

    Which policy of a context goes into the library? The one with the best window of recent
    scores is partly the luckiest: with noisy episodes (a traffic episode starting at a quiet
    or a busy hour) an earlier, weaker policy often has the best window, and the library would
    keep it over the better one the context ended with (the winner's curse). So, like the
    one-standard-error rule of model selection (Breiman et al., *Classification and Regression
    Trees*, 1984), a policy is a candidate when its window is within ``tolerance`` (1) standard
    errors of the best window's mean, and the newest candidate wins. But the newest is not
    wanted once the world has changed: the windows right after a change still hold mostly old
    scores while the weights already train on the new world. So candidates are kept with the
    episode they were recorded at, for the last ``horizon`` episodes, and :meth:`before` picks
    the newest one recorded before the drop began (the detector estimates when).
    """

    horizon: int
    tolerance: float = 1.0
    best_score: float | None = None
    best_error: float = 0.0
    candidates: deque[tuple[int, LibraryEntry]] = field(default_factory=deque)

    def clear(self) -> None:
        self.best_score, self.best_error = None, 0.0
        self.candidates.clear()

    def offer(
        self, episode: int, window: Sequence[float], entry: Callable[[float], LibraryEntry]
    ) -> None:
        """After ``episode``: record the policy (``entry(mean)``) if ``window`` makes it one."""
        mean = math.fsum(window) / len(window)
        if self.best_score is None or mean > self.best_score:
            spread = (
                math.sqrt(math.fsum((v - mean) ** 2 for v in window) / (len(window) - 1))
                if len(window) > 1
                else 0.0
            )
            self.best_score, self.best_error = mean, spread / math.sqrt(len(window))
        elif mean < self.best_score - self.tolerance * self.best_error:
            return
        self.candidates.append((episode, entry(mean)))
        # Keep those of the last `horizon` episodes, and the newest one older than that.
        while len(self.candidates) > 1 and self.candidates[1][0] <= episode - self.horizon:
            self.candidates.popleft()

    def before(self, episode: int) -> LibraryEntry | None:
        """The newest candidate recorded at or before ``episode``; else the oldest one kept."""
        chosen = None
        for recorded, entry in self.candidates:
            if recorded > episode:
                break
            chosen = entry
        if chosen is None and self.candidates:
            # Every candidate came after the estimated change: the earliest is the least
            # touched by the new world.
            chosen = self.candidates[0][1]
        return chosen
