"""The agent's memory of past policies, keyed by the context it was learned in.

A *context* is a stretch of the agent's life between two detected drifts; the agent numbers
them (1, 2, ...). When a drift is detected, the best policy of the context that just ended is
stored under its number. When a later drift brings the world back to conditions the agent
already mastered, the policy stored for them scores best on the sandbox and is adopted, and
the agent continues from there instead of relearning: that is how it does not forget.

The library is written next to the checkpoint in the project's own format (MessagePack of
named tensors, like a snapshot), so it survives restarts without pickle.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import msgspec

from agents.bus.arrays import Tensor
from agents.bus.schemas import Lineage

__all__ = ["LibraryEntry", "PolicyLibrary"]


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
        temporary = path.with_suffix(path.suffix + ".tmp")
        temporary.write_bytes(payload)
        temporary.replace(path)

    def load(self, path: Path) -> None:
        data = msgspec.msgpack.decode(path.read_bytes(), type=_LibraryFile)
        self.entries = {entry.context: entry for entry in data.entries}
