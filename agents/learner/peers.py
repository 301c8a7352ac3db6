"""Peers' latest snapshots, kept for the learner to try when its world changes.

The asyncio side of the agent receives peers' retained snapshots (validated by the inbox) and
offers them here; the learner's thread reads them when it adapts. Only snapshots that fit the
learner exactly are kept: same world, spaces, algorithm and network, and a device alike to
ours (:mod:`agents.likeness`, from the parameters the snapshot announces). A policy from an
unlike device can look good on the few sandbox days a drift is judged on and then fail the
device: in a `smart-home` run a house took another's policy on a summer drift and, when winter
came, scored 165 % worse than its thermostat in evaluation for the rest of the run.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass

from agents.bus.arrays import Tensor
from agents.bus.schemas import FederatedWeights, HyperValue, PolicyArch, PolicySnapshot, SpaceSpec
from agents.likeness import devices_alike

__all__ = ["OwnNetwork", "PeerPolicy", "PeerSnapshots"]


@dataclass(frozen=True, slots=True)
class OwnNetwork:
    """Whose weights can be loaded into ours: another agent's, same world, algorithm, network."""

    own_id: str
    env_id: str
    algo: str
    obs_space: SpaceSpec
    action_space: SpaceSpec
    arch: PolicyArch

    def fits(self, message: PolicySnapshot | FederatedWeights) -> bool:
        return (
            message.agent != self.own_id
            and message.env_id == self.env_id
            and message.algo == self.algo
            and message.obs_space == self.obs_space
            and message.action_space == self.action_space
            and message.arch == self.arch
        )


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
        arch: PolicyArch, own_id: str, device: Mapping[str, HyperValue] | None = None,
    ) -> None:  # fmt: skip
        self.network = OwnNetwork(own_id, env_id, algo, obs_space, action_space, arch)
        #: Our device's parameters (the world's ``env_kwargs``): peers' must be alike.
        self.device: Mapping[str, HyperValue] = dict(device or {})
        self._latest: dict[str, PeerPolicy] = {}
        self._lock = threading.Lock()
        #: Snapshots not kept: another network or world, or (``unlike``) another kind of device.
        self.ignored = 0
        self.unlike = 0

    def offer(self, snapshot: PolicySnapshot) -> bool:
        """Keep ``snapshot`` if it fits and is newer than what we have; returns whether kept."""
        if not self.network.fits(snapshot):
            self.ignored += 1
            return False
        if not devices_alike(self.device, snapshot.env_kwargs):
            self.unlike += 1
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
