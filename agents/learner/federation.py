"""Federated learning for on-policy learners: learn with alike peers, never waiting.

Two forms. By default (``pool_rollouts``, what agents do) members train on each other's fresh
rollouts: each publishes every chunk of rollout it collects with the weights that collected it,
and trains on its own and its alike peers' chunks together (:mod:`agents.learner.pooling`).
This module keeps the peers' messages and decides which peers are alike. The first form,
averaging weights, is described below; it is kept for comparison (docs/benchmarks.md).

PPO and A2C learn from their own fresh rollouts only, so a peer's experience cannot help them
and a peer's snapshot every few thousand steps is too rare to matter. What can is what
federated learning does (McMahan et al., "Communication-Efficient Learning of Deep Networks
from Decentralized Data", AISTATS 2017): each member trains on its own data, and members
average their weights often, so every one learns from all members' data. Asynchronously here
(as in Xie et al., "Asynchronous Federated Optimization", 2019): at every rollout boundary a
learner

1. publishes its weights as its latest local update left them (``samples``: the device steps
   it learned from since its previous publication) and that update itself (``delta``), then
2. adds to its own weights every update that arrived from a peer since it last looked, each
   used once, so every member moves as far as all members' data do together (a sum, not an
   average, of the updates: FedAvg with a server step of ``m`` for ``m`` members, Reddi et
   al., "Adaptive Federated Optimization", ICLR 2021), and
3. moves a fraction ``pull`` of the way from there to where the members land on average (the
   members' weights averaged by their ``samples``, plus ``m - 1`` times their averaged update).

In lockstep, with every member starting the round from the same weights, both land on the
same point. Asynchronously they do not: members publish at different moments, so their
weights drift apart, and a full step to the average (``pull = 1``) throws away each member's
most recent progress against a stale peer's. Measured (docs/benchmarks.md, "Federated PPO"):
``pull = 1`` lost most of what lockstep pooling gains; a partial pull keeps the members
together without undoing their updates. A round without every member's update (after a
drift, an adoption) is a plain average. A slow or dead peer is simply absent from a round:
nobody waits.

Only peers alike enough are averaged in (:class:`Likeness`):

- **the device they announce**: numeric device parameters (the world's ``env_kwargs``) within
  ``radius`` of our own, relatively (``0.5``: the difference at most half the larger value,
  so no parameter more than twice the other's);
- **how well their policy fits our world now**: the peer's value function, on our latest
  rollout, errs at most ``tolerance`` times as much as ours did before we trained on it. A peer
  in another regime (after a drift, on either side) or on a device that behaves otherwise
  predicts our returns badly and is left out of that round, whatever its announcement says.

Averaging needs networks that start aligned: members of a federation build their initial
weights from one shared seed (``LearnerConfig.init_seed``), as federated learning does.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.policies import BasePolicy

from agents.bus.arrays import Tensor
from agents.bus.schemas import FederatedWeights, HyperValue, PolicyArch, SpaceSpec
from agents.exceptions import IncompatiblePolicy
from agents.learner.peers import OwnNetwork
from agents.learner.pooling import RolloutChunk, chunk_of_columns
from agents.learner.snapshots import tensors_as_state
from agents.likeness import ALIKE_RADIUS, devices_alike

__all__ = [
    "ACTIVE_SECONDS",
    "DEFAULT_PULL",
    "DEFAULT_RADIUS",
    "DEFAULT_TOLERANCE",
    "Federation",
    "FitData",
    "Likeness",
    "OwnWeights",
    "PeerWeights",
    "value_error",
]

log = logging.getLogger(__name__)

DEFAULT_RADIUS = ALIKE_RADIUS
"""Largest relative difference of any announced device parameter for a peer to be alike."""
DEFAULT_TOLERANCE = 2.0
"""How many times our own value error a peer's may reach on our rollout and still be alike."""
DEFAULT_PULL = 0.25
"""The fraction of the way a round moves a member toward the members' average landing point."""
#: Rounds over which ``learns_from`` remembers the peers averaged in.
_REMEMBERED_ROUNDS = 20
#: Pooling rollouts: the most of one peer's rollouts kept between two of our rounds.
_KEPT_ROLLOUTS = 4
ACTIVE_SECONDS = 10.0
"""A pooling member waits for the fresh rollouts of peers heard from within this many seconds."""


@dataclass(frozen=True, slots=True)
class PeerWeights:
    """A peer's weights after its latest local update, as received."""

    agent: str
    round: int
    samples: int
    tensors: list[Tensor]
    device: Mapping[str, HyperValue]
    #: The peer's own update since its previous round (``tensors`` minus where it started).
    delta: list[Tensor] = field(default_factory=list)
    #: Pooled rollouts: the rollout ``tensors`` collected (pooling.py).
    rollout: RolloutChunk | None = None


@dataclass(frozen=True, slots=True)
class OwnWeights:
    """Our weights after our latest local update, to publish (``samples``: steps since the last)."""

    tensors: list[Tensor]
    step: int
    samples: int
    regime: str
    #: Our own update since our previous round: what local training changed.
    delta: list[Tensor] = field(default_factory=list)
    #: Pooled rollouts: the rollout these weights just collected.
    rollout: RolloutChunk | None = None


@dataclass(frozen=True, slots=True)
class FitData:
    """Our latest rollout: observations, the returns earned, our value error before training."""

    obs: np.ndarray[Any, Any]
    returns: np.ndarray[Any, Any]
    own_error: float


def value_error(policy: BasePolicy, fit: FitData) -> float:
    """Mean squared error of ``policy``'s value function on the rollout's returns."""
    with torch.no_grad():
        obs = torch.as_tensor(fit.obs, dtype=torch.float32)
        values = policy.predict_values(obs).flatten().numpy()  # type: ignore[operator]
    return float(np.mean((values - fit.returns) ** 2))


@dataclass(frozen=True, slots=True)
class Likeness:
    """Whether a peer is alike enough to learn from (module docstring)."""

    device: Mapping[str, HyperValue] = field(default_factory=dict)
    radius: float = DEFAULT_RADIUS
    tolerance: float = DEFAULT_TOLERANCE

    def device_alike(self, peer: PeerWeights) -> bool:
        return devices_alike(self.device, peer.device, self.radius)

    def fits(self, peer_error: float, fit: FitData) -> bool:
        # A floor keeps a near-perfect own fit (a world whose returns are all 0) from
        # refusing every peer over rounding.
        own = max(fit.own_error, 1e-8 * (1.0 + float(np.mean(fit.returns**2))))
        return math.isfinite(peer_error) and peer_error <= self.tolerance * own


class Federation:
    """Peers' fresh weights, and the averaging rounds (module docstring).

    Thread-safe where it must be: :meth:`offer` runs on the agent's event loop, everything
    else in the learner's thread.
    """

    def __init__(
        self, *, own_id: str, env_id: str, algo: str, obs_space: SpaceSpec,
        action_space: SpaceSpec, arch: PolicyArch, likeness: Likeness,
        publish: Callable[[OwnWeights], object], sum_updates: bool = True,
        pull: float = DEFAULT_PULL, pool_rollouts: bool = False,
    ) -> None:  # fmt: skip
        if not 0.0 <= pull <= 1.0:
            raise ValueError(f"pull must be within [0, 1], got {pull}")
        self.publish = publish
        """Sends our weights to the peers (the agent's bus; called from the learner's thread)."""
        self.network = OwnNetwork(own_id, env_id, algo, obs_space, action_space, arch)
        self.likeness = likeness
        #: Members train on each other's rollouts instead of averaging weights (pooling.py).
        self.pool_rollouts = pool_rollouts
        #: Per peer, what arrived since the last round, oldest first.
        self._fresh: dict[str, list[PeerWeights]] = {}
        self._lock = threading.Lock()
        #: Notified when a peer's message is kept (pooling members wait on it, briefly).
        self._arrived = threading.Condition(self._lock)
        #: When each alike peer was last heard from (``time.monotonic``).
        self._heard: dict[str, float] = {}
        #: Peers' rollouts dropped unread: more of one peer's arrived than are kept.
        self.rollouts_dropped = 0
        #: Rounds whose wait for the peers' fresh rollouts ran out, and the seconds waited.
        self.waits_timed_out = 0
        self.waited_seconds = 0.0
        #: Weights that did not fit this learner's world, network or device, and rounds.
        self.ignored = 0
        self.rounds = 0
        #: Peers left out of a round because their policy did not fit our latest rollout.
        self.unfit = 0
        #: Rounds whose peers' updates could not be used (malformed for our network).
        self.unusable_updates = 0
        self._recent: deque[frozenset[str]] = deque(maxlen=_REMEMBERED_ROUNDS)
        #: Sum the members' updates instead of averaging them (see :meth:`average_into`).
        self.sum_updates = sum_updates
        #: How far a round moves us toward the members' average landing point (module docstring).
        self.pull = pull

    def offer(self, message: FederatedWeights) -> bool:
        """Keep a peer's weights for the next round if they could be averaged with ours."""
        if not self.network.fits(message):
            self.ignored += 1
            return False
        if self.pool_rollouts and message.rollout is None:
            self.ignored += 1  # a member that averages weights: nothing to train on
            return False
        peer = PeerWeights(
            message.agent, message.round, message.samples, message.tensors,
            dict(message.device), list(message.delta),
            rollout=chunk_of_columns(message.rollout) if message.rollout is not None else None,
        )  # fmt: skip
        if not self.likeness.device_alike(peer):
            self.ignored += 1
            return False
        with self._lock:
            queue = self._fresh.setdefault(peer.agent, [])
            if queue and queue[-1].round >= peer.round:
                return False
            # Averaging weights needs only a peer's newest; pooling, every fresh rollout.
            kept = _KEPT_ROLLOUTS if self.pool_rollouts else 1
            if self.pool_rollouts and len(queue) == kept:
                self.rollouts_dropped += 1  # a peer's oldest rollout, never trained on
            queue[:] = [*queue, peer][-kept:]
            self._heard[peer.agent] = time.monotonic()
            self._arrived.notify_all()
        return True

    def wait_for_peers(self, timeout: float) -> None:
        """Wait up to ``timeout`` s until every peer heard from lately has sent something new.

        Pooling members train on fresher rows this way: without it a member's update takes
        the peers' previous chunks, collected by policies an update older (docs/benchmarks.md,
        "Pooled rollouts"). A peer silent for :data:`ACTIVE_SECONDS` is not waited for, and
        the wait is bounded, so a slow peer slows us at most by ``timeout`` per round and a
        dead one not at all once silent.
        """
        started = time.monotonic()
        with self._arrived:

            def all_fresh() -> bool:
                now = time.monotonic()
                return all(
                    self._fresh.get(agent)
                    for agent, heard in self._heard.items()
                    if now - heard <= ACTIVE_SECONDS
                )

            if not self._arrived.wait_for(all_fresh, timeout=timeout):
                self.waits_timed_out += 1
        self.waited_seconds += time.monotonic() - started

    def incompatible(self, peer: PeerWeights, exc: IncompatiblePolicy) -> None:
        """A peer's weights that do not load into our network: counted, logged once."""
        self.ignored += 1
        if self.ignored == 1:
            log.warning("weights of %s do not fit this network: %s", peer.agent, exc)

    def take(self) -> list[PeerWeights]:
        """What arrived since the last call (consumed), by peer, oldest first.

        Averaging weights: each peer's newest. Pooling rollouts: each peer's last few.
        """
        with self._lock:
            fresh, self._fresh = self._fresh, {}
        return [peer for agent in sorted(fresh) for peer in fresh[agent]]

    @property
    def learns_from(self) -> list[str]:
        """The peers averaged in over the last rounds, sorted."""
        return sorted(set().union(*self._recent)) if self._recent else []

    def fitting(
        self, peers: Sequence[tuple[PeerWeights, BasePolicy]], fit: FitData | None
    ) -> list[tuple[PeerWeights, BasePolicy]]:
        """The ``peers`` whose policy fits our world (all without ``fit``), remembered."""
        used: list[tuple[PeerWeights, BasePolicy]] = []
        for peer, scratch in peers:
            if fit is not None and not self.likeness.fits(value_error(scratch, fit), fit):
                self.unfit += 1
                continue
            used.append((peer, scratch))
        self._recent.append(frozenset(peer.agent for peer, _ in used))
        return used

    def average_into(
        self,
        policy: BasePolicy,
        own_samples: int,
        peers: Sequence[tuple[PeerWeights, BasePolicy]],
        fit: FitData | None,
        own_delta: Mapping[str, torch.Tensor] | None = None,
    ) -> list[str]:
        """Average the fitting ``peers`` (each loaded in its own scratch policy) into ``policy``.

        Returns the peers averaged in (none: ``policy`` is unchanged). Without ``fit`` (no
        rollout yet, or observations a value function cannot take as one array) every peer
        offered is averaged in.

        With ``own_delta`` and every peer's ``delta``, and ``sum_updates`` on, the members'
        updates are summed rather than averaged: our weights plus every peer's update, moved
        ``pull`` of the way toward where the members land on average (the weights' average plus
        ``m - 1`` times the updates' average, for ``m`` members). In lockstep both points are
        one: FedAvg with a server step of ``m``, which is what turns ``m`` members' data into
        ``m`` times the progress per round of each.
        """
        used = self.fitting(peers, fit)
        if not used:
            return []
        weights = [float(max(own_samples, 1))] + [float(max(p.samples, 1)) for p, _ in used]
        total = sum(weights)
        own_state = policy.state_dict()
        states = [own_state] + [scratch.state_dict() for _, scratch in used]
        averaged = {}
        for name, value in own_state.items():
            if not torch.is_floating_point(value):
                averaged[name] = value
                continue
            averaged[name] = sum(
                (w / total) * state[name] for w, state in zip(weights, states, strict=True)
            )
        try:
            deltas = _deltas(own_delta, [peer for peer, _ in used]) if self.sum_updates else None
        except IncompatiblePolicy as exc:
            deltas = None  # a plain average this round; the update is counted and logged once
            self.unusable_updates += 1
            if self.unusable_updates == 1:
                log.warning("a peer's update does not fit this network: %s", exc)
        if deltas is not None:
            extra = len(states) - 1
            for name, members in deltas.items():
                landing = averaged[name] + extra * sum(
                    (w / total) * d for w, d in zip(weights, members, strict=True)
                )
                ours = own_state[name] + sum(members[1:])
                averaged[name] = ours + self.pull * (landing - ours)
        policy.load_state_dict(averaged)
        self.rounds += 1
        return [peer.agent for peer, _ in used]


def _deltas(
    own: Mapping[str, torch.Tensor] | None, peers: Sequence[PeerWeights]
) -> dict[str, list[torch.Tensor]] | None:
    """Every member's update per float tensor, own first; ``None`` if one sent none.

    Raises :class:`IncompatiblePolicy` when a peer's update does not fit our network.
    """
    if own is None or any(not peer.delta for peer in peers):
        return None
    out: dict[str, list[torch.Tensor]] = {name: [value] for name, value in own.items()}
    for peer in peers:
        for name, value in tensors_as_state(peer.delta, own).items():
            out[name].append(value)
    return out
