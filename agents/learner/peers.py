"""Peers' latest snapshots, kept for the learner to try when its world changes.

The asyncio side of the agent receives peers' retained snapshots (validated by the inbox) and
offers them here; the learner's thread reads them when it adapts. Only snapshots that fit the
learner exactly are kept: same world, spaces, algorithm and network.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from agents.bus.arrays import Tensor
from agents.bus.schemas import PolicyArch, PolicySnapshot, SpaceSpec

__all__ = ["PeerPolicy", "PeerSnapshots"]


@dataclass(frozen=True, slots=True)
class PeerPolicy:
    agent: str
    version: int
    step: int
    tensors: list[Tensor]


class PeerSnapshots:
    """Thread-safe: written from the event loop, read from the learner's thread."""

    def __init__(
        self, *, env_id: str, algo: str, obs_space: SpaceSpec, action_space: SpaceSpec,
        arch: PolicyArch, own_id: str,
    ) -> None:  # fmt: skip
        self.env_id = env_id
        self.algo = algo
        self.obs_space = obs_space
        self.action_space = action_space
        self.arch = arch
        self.own_id = own_id
        self._latest: dict[str, PeerPolicy] = {}
        self._lock = threading.Lock()
        self.ignored = 0

    def fits(self, snapshot: PolicySnapshot) -> bool:
        return (
            snapshot.agent != self.own_id
            and snapshot.env_id == self.env_id
            and snapshot.algo == self.algo
            and snapshot.obs_space == self.obs_space
            and snapshot.action_space == self.action_space
            and snapshot.arch == self.arch
        )

    def offer(self, snapshot: PolicySnapshot) -> bool:
        """Keep ``snapshot`` if it fits and is newer than what we have; returns whether kept."""
        if not self.fits(snapshot):
            self.ignored += 1
            return False
        policy = PeerPolicy(snapshot.agent, snapshot.version, snapshot.step, snapshot.tensors)
        with self._lock:
            current = self._latest.get(snapshot.agent)
            if current is not None and current.version >= snapshot.version:
                return False
            self._latest[snapshot.agent] = policy
        return True

    def latest(self) -> list[PeerPolicy]:
        with self._lock:
            return list(self._latest.values())

    def get(self, agent: str) -> PeerPolicy | None:
        with self._lock:
            return self._latest.get(agent)
