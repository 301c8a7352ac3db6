"""Pooled rollouts: alike on-policy members train on each other's fresh rollouts.

Why. PPO needs about as many updates to solve a task whatever the data each update is made
from (docs/benchmarks.md, "The ceiling of pooling": four times the data per update gained
nothing). What the members of a group can pool is therefore not bigger updates but more
frequent ones: each member collects a quarter of its configured rollout (``n_steps``,
:data:`CHUNKS`) and trains as soon as it holds ``n_steps`` fresh transitions, its own and its
alike peers' together. Four members then each update every ``n_steps / 4`` of their own steps on
a batch the size one learner alone would collect, which is data-parallel PPO (as in DD-PPO,
Wijmans et al., ICLR 2020), with no member waiting for another.

A member alone trains every four chunks on its own four: the learner its configuration
describes. Each chunk's advantage estimate (GAE) is computed when it is collected and so is cut
at the chunk's end (bootstrapped from the value of the next observation); before training, the
member's own pending chunks, which one policy collected one after another, are joined again
(:func:`join_own`), so its own rows carry the advantages one ``n_steps`` rollout would have
given them. A peer's chunk travels with the peer's estimate, cut at its end.

A peer's chunk was collected by the peer's policy, not ours: PPO's ratio uses the log-
probabilities the peer's policy gave its actions (what the chunk carries), so a chunk from a
policy a little apart is importance-weighted and clipped like any slightly stale data, and its
advantages are the peer's own estimate. Which peers are alike is the federation's call
(:class:`agents.learner.federation.Likeness`): a peer whose value function does not predict our
returns is left out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm

from agents.bus.arrays import Array, from_wire, to_wire
from agents.bus.schemas import RolloutColumns

__all__ = [
    "CHUNKS",
    "PooledA2C",
    "PooledPPO",
    "RolloutChunk",
    "RolloutPool",
    "chunk_of_columns",
    "chunk_steps",
    "join_own",
    "rollout_columns",
]

CHUNKS = 4
"""The parts a pooling member's rollout is cut into: it trains after each, if it holds enough."""

_FLOAT_COLUMNS = ("log_probs", "advantages", "returns", "values")


def chunk_steps(n_steps: int) -> int:
    """The own steps a pooling member collects between two chances to train."""
    return max(1, n_steps // CHUNKS)


@dataclass(frozen=True, slots=True)
class RolloutChunk:
    """One member's rollout, ready to train on: rows in the order collected.

    ``actions`` is ``(n, action_dim)`` as stable-baselines3's buffer keeps them; ``log_probs``
    the collecting policy's log-probabilities of them; ``advantages`` and ``returns`` its
    advantage estimate (GAE) and the value targets; ``values`` its value predictions.
    ``episode_starts`` (our own chunks only; they do not travel) says which rows began an
    episode, and ``n_envs`` how many environments' rows follow one another, what
    :func:`join_own` needs.
    """

    obs: np.ndarray[Any, Any]
    actions: np.ndarray[Any, Any]
    log_probs: np.ndarray[Any, Any]
    advantages: np.ndarray[Any, Any]
    returns: np.ndarray[Any, Any]
    values: np.ndarray[Any, Any]
    episode_starts: np.ndarray[Any, Any] | None = None
    n_envs: int = 1

    def __len__(self) -> int:
        return len(self.values)

    @classmethod
    def of(cls, buffer: RolloutBuffer) -> RolloutChunk:
        """A copy of a full buffer's rollout, one environment's rows after another's."""
        n = buffer.buffer_size * buffer.n_envs

        def rows(array: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
            return np.swapaxes(array, 0, 1).reshape(n, *array.shape[2:]).copy()

        return cls(
            obs=rows(buffer.observations),
            actions=rows(buffer.actions),
            log_probs=rows(buffer.log_probs),
            advantages=rows(buffer.advantages),
            returns=rows(buffer.returns),
            values=rows(buffer.values),
            episode_starts=rows(buffer.episode_starts),
            n_envs=buffer.n_envs,
        )


def join_own(chunks: Sequence[RolloutChunk], gamma_lambda: float) -> list[RolloutChunk]:
    """Our consecutive chunks with the advantages one rollout of all of them would have had.

    Collected by one policy one after another, chunk ``j``'s estimate was bootstrapped at its
    end from the value of chunk ``j + 1``'s first observation, and the λ-sum stopped there.
    GAE continued would add ``γλ`` times the next row's full advantage at the end, discounted
    back through the chunk and cut at every episode's start: ``A_t += (γλ)^(T - t + 1)
    · A_next`` while no episode starts in between. Returns move with the advantages (the value
    targets are advantages plus values). The last chunk ends the rollout and is kept as it is;
    a chunk without ``episode_starts`` (a peer's) breaks the join.
    """
    joined = list(chunks)
    for j in range(len(joined) - 2, -1, -1):
        chunk, after = joined[j], joined[j + 1]
        starts, next_starts = chunk.episode_starts, after.episode_starts
        if starts is None or next_starts is None or chunk.n_envs != after.n_envs:
            continue
        envs = chunk.n_envs
        steps, next_steps = len(chunk) // envs, len(after) // envs
        # Per environment: whether the observation after each row begins a new episode, the
        # factor γλ(1 - that) each row passes the next row's advantage back with, and their
        # products from each row to the chunk's end.
        begins = np.column_stack(
            [starts.reshape(envs, steps)[:, 1:], next_starts.reshape(envs, next_steps)[:, :1]]
        )
        factors = gamma_lambda * (1.0 - begins.astype(np.float64))
        reach = np.cumprod(factors[:, ::-1], axis=1)[:, ::-1]
        first_of_next = after.advantages.reshape(envs, next_steps)[:, :1].astype(np.float64)
        extra = (reach * first_of_next).reshape(-1).astype(chunk.advantages.dtype)
        joined[j] = dataclasses.replace(
            chunk, advantages=chunk.advantages + extra, returns=chunk.returns + extra
        )
    return joined


def pooled_buffer(model: OnPolicyAlgorithm, chunks: Sequence[RolloutChunk]) -> RolloutBuffer:
    """A full rollout buffer holding ``chunks``' rows, to train ``model`` on."""
    total = sum(len(chunk) for chunk in chunks)
    own = model.rollout_buffer
    buffer = RolloutBuffer(
        total, model.observation_space, model.action_space, device=model.device,
        gamma=own.gamma, gae_lambda=own.gae_lambda, n_envs=1,
    )  # fmt: skip
    buffer.observations = np.concatenate([c.obs for c in chunks])[:, None].astype(
        buffer.observations.dtype, copy=False
    )
    buffer.actions = np.concatenate([c.actions for c in chunks])[:, None].astype(
        buffer.actions.dtype, copy=False
    )
    for name in _FLOAT_COLUMNS:
        column = np.concatenate([getattr(c, name) for c in chunks]).astype(np.float32)
        setattr(buffer, name, column[:, None])
    buffer.full = True
    return buffer


class RolloutPool:
    """The fresh rollouts a member will train on next: its own chunks and its peers'.

    :meth:`batch` is called where the algorithm would train: it keeps the chunk just collected
    and the peers' chunks that arrived, and hands out a buffer of all of them once they hold
    ``n_steps`` rows (``None`` before: collect on, with the same policy).
    """

    def __init__(
        self,
        n_steps: int,
        peers: Callable[[], list[RolloutChunk]],
        publish: Callable[[RolloutChunk], object] | None = None,
    ) -> None:
        self.n_steps = n_steps
        self.peers = peers
        #: Sends each chunk we collect to the peers, before we take theirs.
        self.publish = publish
        self._own: list[RolloutChunk] = []
        self._peers: list[RolloutChunk] = []
        #: Updates made, and the peers' rows they were made from (beside our own).
        self.updates = 0
        self.peer_rows = 0
        #: Peers' chunks dropped unused: more arrived than one update could take in.
        self.dropped = 0

    def forget(self) -> None:
        """Drop what is pending: the policy changed under it (an adoption, a drift)."""
        self._own.clear()
        self._peers.clear()

    def batch(self, model: OnPolicyAlgorithm) -> RolloutBuffer | None:
        chunk = RolloutChunk.of(model.rollout_buffer)
        if self.publish is not None:
            self.publish(chunk)
        self._own.append(chunk)
        self._peers.extend(self.peers())
        # More than a few updates' worth of peers' rows cannot all be fresh: the oldest go.
        peer_rows = sum(map(len, self._peers))
        while peer_rows > CHUNKS * self.n_steps:
            peer_rows -= len(self._peers.pop(0))
            self.dropped += 1
        if sum(map(len, self._own)) + peer_rows < self.n_steps:
            return None
        gamma_lambda = model.rollout_buffer.gamma * model.rollout_buffer.gae_lambda
        chunks = [*join_own(self._own, gamma_lambda), *self._peers]
        self.updates += 1
        self.peer_rows += peer_rows
        self.forget()
        return pooled_buffer(model, chunks)


class _PoolsRollouts(OnPolicyAlgorithm):
    """Trains on its :class:`RolloutPool`'s batches when it has one, as its algorithm otherwise.

    Put before the algorithm among the bases: ``super().train()`` is then the algorithm's.
    """

    rollout_pool: RolloutPool | None = None

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "rollout_pool"]

    def train(self) -> None:
        pool = self.rollout_pool
        if pool is None:
            super().train()
            return
        batch = pool.batch(self)
        if batch is None:
            return
        own, self.rollout_buffer = self.rollout_buffer, batch
        try:
            super().train()
        finally:
            self.rollout_buffer = own


class PooledPPO(_PoolsRollouts, PPO):
    """PPO that trains on pooled rollouts when given a pool (plain PPO otherwise)."""


class PooledA2C(_PoolsRollouts, A2C):
    """A2C that trains on pooled rollouts when given a pool (plain A2C otherwise)."""


def rollout_columns(chunk: RolloutChunk, action_shape: Sequence[int]) -> RolloutColumns:
    """``chunk`` as it travels (actions in the action space's own shape)."""
    return RolloutColumns(
        obs=to_wire(chunk.obs),
        actions=to_wire(chunk.actions.reshape(len(chunk), *action_shape)),
        **{name: to_wire(getattr(chunk, name)) for name in _FLOAT_COLUMNS},
    )


def chunk_of_columns(columns: RolloutColumns) -> RolloutChunk:
    """A received rollout, its columns already checked by the codec."""

    def array(value: Array) -> np.ndarray[Any, Any]:
        return from_wire(value.dtype, value.shape, value.data)

    actions = array(columns.actions)
    return RolloutChunk(
        obs=array(columns.obs),
        actions=actions.reshape(len(actions), -1),
        log_probs=array(columns.log_probs),
        advantages=array(columns.advantages),
        returns=array(columns.returns),
        values=array(columns.values),
    )
