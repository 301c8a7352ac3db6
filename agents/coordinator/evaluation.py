"""Evaluating a snapshot on fixed-seed evaluation worlds, in a worker process.

:func:`evaluate_snapshot` runs in a process pool, off the coordinator's event loop. It gets
the snapshot's MessagePack payload (bytes, never a pickle of received data) and decodes and
validates it again itself, rebuilds the policy network from its description, loads the
weights, and plays ``episodes`` episodes with seeds ``seed, seed+1, ...`` acting
deterministically. Errors come back as a result with a reason, not as an exception, so
nothing has to be pickled but plain values.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from typing import Any

import gymnasium as gym
import numpy as np

from agents.exceptions import ConfigError, IncompatiblePolicy, MessageRejected

__all__ = ["EvaluationRequest", "EvaluationResult", "evaluate_snapshot", "make_pool"]


@dataclass(frozen=True, slots=True)
class EvaluationRequest:
    payload: bytes
    episodes: int
    seed: int
    max_episode_steps: int = 10_000
    allowed_envs: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class EvaluationResult:
    returns: list[float] = field(default_factory=list)
    seconds: float = 0.0
    error_reason: str | None = None
    error_detail: str = ""

    @property
    def mean(self) -> float:
        return float(np.mean(self.returns)) if self.returns else math.nan

    @property
    def std(self) -> float:
        return float(np.std(self.returns)) if self.returns else math.nan


def _init_worker() -> None:
    from agents.learner.learner import limit_torch_threads  # noqa: PLC0415 - in the child

    limit_torch_threads()


def make_pool(workers: int) -> ProcessPoolExecutor:
    """Worker processes for evaluations; ``spawn`` so no event-loop or thread state leaks in."""
    return ProcessPoolExecutor(
        max_workers=workers, mp_context=get_context("spawn"), initializer=_init_worker
    )


def env_allowed(env_id: str, allowed: Iterable[str]) -> bool:
    """Only registered ids and explicitly allowed ``module:Class`` ids are ever built.

    The env id comes from a peer's message: importing a module it names would let any
    publisher make the coordinator run code. Registered ids import nothing new.
    """
    import agents.worlds  # noqa: F401, PLC0415 - registers the society/ worlds

    return env_id in gym.registry or env_id in set(allowed)


def evaluate_snapshot(request: EvaluationRequest) -> EvaluationResult:
    """Play the snapshot's policy on its world. Runs in a worker process."""
    started = time.perf_counter()
    try:
        returns = _play(request)
    except MessageRejected as exc:
        return EvaluationResult(error_reason=exc.reason, error_detail=exc.detail)
    except (IncompatiblePolicy, ConfigError) as exc:
        return EvaluationResult(error_reason="incompatible", error_detail=str(exc))
    return EvaluationResult(returns=returns, seconds=time.perf_counter() - started)


def _play(request: EvaluationRequest) -> list[float]:
    # Imported here: the worker process pays for torch, the coordinator's loop does not.
    from agents.bus.codec import decode_as  # noqa: PLC0415
    from agents.bus.schemas import PolicySnapshot  # noqa: PLC0415
    from agents.learner.algorithms import get_algorithm  # noqa: PLC0415
    from agents.learner.envs import make_env  # noqa: PLC0415
    from agents.learner.snapshots import build_policy, load_tensors  # noqa: PLC0415
    from agents.learner.spaces import describe_space  # noqa: PLC0415

    snapshot = decode_as(PolicySnapshot, request.payload)
    if not env_allowed(snapshot.env_id, request.allowed_envs):
        msg = f"environment {snapshot.env_id!r} is not registered nor allowed here"
        raise IncompatiblePolicy(msg)
    spec = get_algorithm(snapshot.algo)
    env = make_env(snapshot.env_id, snapshot.env_kwargs)
    try:
        if describe_space(env.observation_space) != snapshot.obs_space:
            msg = "observation space differs from the evaluation world's"
            raise IncompatiblePolicy(msg)
        if describe_space(env.action_space) != snapshot.action_space:
            msg = "action space differs from the evaluation world's"
            raise IncompatiblePolicy(msg)
        policy = build_policy(spec, snapshot.arch, env.observation_space, env.action_space)
        load_tensors(policy, snapshot.tensors)
        return [
            _episode(env, policy, request.seed + i, request.max_episode_steps)
            for i in range(request.episodes)
        ]
    finally:
        env.close()


def _episode(env: gym.Env[Any, Any], policy: Any, seed: int, max_steps: int) -> float:
    obs, _ = env.reset(seed=seed)
    total = 0.0
    for _ in range(max_steps):
        action, _ = policy.predict(obs, deterministic=True)
        obs, reward, terminated, truncated, _ = env.step(action)
        total += float(reward)
        if terminated or truncated:
            break
    return total
