"""Evaluating a snapshot on fixed-seed evaluation worlds, next to the world's baseline.

:func:`evaluate_snapshot` runs in a process pool, off the coordinator's event loop. It gets
the snapshot's MessagePack payload (bytes, never a pickle of received data), decodes and
validates it again itself, rebuilds the policy network from its description, and loads the
weights. Then, for every regime of the agent's drift schedule (or the world as it is, if it
does not drift), it plays ``episodes`` episodes with the seeds ``seed, seed+1, ...`` acting
deterministically, and plays the world's primary baseline controller on the same worlds and
seeds through the same loop (:func:`agents.worlds.play_episodes`). Baseline scores do not
change between snapshots of one device, so each worker caches them.

Errors come back as a result with a reason, not as an exception, so nothing has to be pickled
but plain values, and a snapshot that breaks its world cannot break the coordinator.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from typing import Any

import gymnasium as gym
import msgspec
import numpy as np

from agents._process import die_with_parent
from agents.exceptions import ConfigError, IncompatiblePolicy, MessageRejected

__all__ = [
    "DEFAULT_REGIME",
    "EvaluationRequest",
    "EvaluationResult",
    "RegimeResult",
    "evaluate_snapshot",
    "make_pool",
]

log = logging.getLogger(__name__)

#: The regime name reported for a world that does not drift.
DEFAULT_REGIME = "default"


@dataclass(frozen=True, slots=True)
class EvaluationRequest:
    payload: bytes
    episodes: int
    seed: int
    max_episode_steps: int = 10_000
    allowed_envs: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class RegimeResult:
    """Returns (and the world's metrics, averaged) of the policy and the baseline on a regime."""

    regime: str
    returns: list[float]
    metrics: dict[str, float] = field(default_factory=dict)
    baseline_returns: list[float] | None = None
    baseline_metrics: dict[str, float] = field(default_factory=dict)
    #: A uniformly random controller on the same worlds: the floor for normalised scores.
    random_returns: list[float] | None = None
    #: With a library: the returns of the policy the agent would recall here, and which.
    recall_returns: list[float] | None = None
    recall_from: str = ""

    @property
    def mean(self) -> float:
        return float(np.mean(self.returns))

    @property
    def random_mean(self) -> float | None:
        return float(np.mean(self.random_returns)) if self.random_returns else None

    @property
    def recall_mean(self) -> float | None:
        return float(np.mean(self.recall_returns)) if self.recall_returns else None

    @property
    def baseline_mean(self) -> float | None:
        return float(np.mean(self.baseline_returns)) if self.baseline_returns else None


@dataclass(frozen=True, slots=True)
class EvaluationResult:
    regimes: list[RegimeResult] = field(default_factory=list)
    baseline: str = ""
    seconds: float = 0.0
    error_reason: str | None = None
    error_detail: str = ""

    @property
    def returns(self) -> list[float]:
        return [r for regime in self.regimes for r in regime.returns]

    @property
    def mean(self) -> float:
        """Mean over regimes of each regime's mean return: every regime counts the same."""
        return float(np.mean([r.mean for r in self.regimes])) if self.regimes else math.nan

    @property
    def std(self) -> float:
        return float(np.std(self.returns)) if self.regimes else math.nan

    @property
    def recall_mean(self) -> float | None:
        """Mean over regimes of what the agent achieves there recalling from its library.

        What a lifelong agent is worth across its world's regimes: one network cannot serve
        opposite wirings, the agent with its library does (on a regime where it would keep its
        current policy, that policy's return). ``None`` without a library.
        """
        if not any(r.recall_returns for r in self.regimes):
            return None
        means = [r.mean if r.recall_mean is None else r.recall_mean for r in self.regimes]
        return float(np.mean(means))

    @property
    def baseline_mean(self) -> float | None:
        means = [r.baseline_mean for r in self.regimes]
        if not means or any(m is None for m in means):
            return None
        return float(np.mean([m for m in means if m is not None]))


def _init_worker(coordinator_pid: int) -> None:
    # A coordinator killed with SIGKILL cannot shut its pool down: the kernel then stops the
    # workers (320 MB each), and with them the last holders of the resource tracker's pipe.
    die_with_parent()
    if os.getppid() != coordinator_pid:
        # It died while this worker was still starting (importing takes seconds), before the
        # kernel could be asked to tell us: nobody is left to work for.
        os._exit(0)
    from agents.learner.learner import limit_torch_threads  # noqa: PLC0415 - in the child

    limit_torch_threads()


def make_pool(workers: int) -> ProcessPoolExecutor:
    """Worker processes for evaluations; ``spawn`` so no event-loop or thread state leaks in."""
    return ProcessPoolExecutor(
        max_workers=workers, mp_context=get_context("spawn"), initializer=_init_worker,
        initargs=(os.getpid(),),
    )  # fmt: skip


def env_allowed(env_id: str, allowed: frozenset[str]) -> bool:
    """Only registered ids and explicitly allowed ``module:Class`` ids are ever built.

    The env id comes from a peer's message: importing a module it names would let any
    publisher make the coordinator run code. Registered ids import nothing new.
    """
    import agents.worlds  # noqa: F401, PLC0415 - registers the society/ worlds

    return env_id in gym.registry or env_id in allowed


def evaluate_snapshot(request: EvaluationRequest) -> EvaluationResult:
    """Play the snapshot's policy (and the baseline) on its worlds. Runs in a worker process."""
    started = time.perf_counter()
    try:
        regimes, baseline = _evaluate(request)
    except MessageRejected as exc:
        return EvaluationResult(error_reason=exc.reason, error_detail=exc.detail)
    except (IncompatiblePolicy, ConfigError) as exc:
        return EvaluationResult(error_reason="incompatible", error_detail=str(exc))
    except Exception as exc:  # a world that breaks under these weights must not break us
        log.exception("evaluation failed")
        detail = f"evaluation failed: {type(exc).__name__}: {exc}"
        return EvaluationResult(error_reason="incompatible", error_detail=detail)
    return EvaluationResult(
        regimes=regimes, baseline=baseline, seconds=time.perf_counter() - started
    )


# Reference scores (baseline, random) per (controller, world, device, regime, seeds), kept for
# the worker's life: they do not change between snapshots of one device.
_REFERENCE_CACHE: dict[bytes, tuple[list[float], dict[str, float]]] = {}


def _reference(
    name: str,
    make_controller: Callable[[gym.Env[Any, Any]], Any],
    env: gym.Env[Any, Any],
    *,
    key: list[Any],
    seeds: list[int],
    metrics: Any,
    max_steps: int,
) -> tuple[list[float], dict[str, float]]:
    """A reference controller's returns (and metrics) on ``env``; computed once per key."""
    from agents.worlds import play_episodes  # noqa: PLC0415

    cache_key = msgspec.msgpack.encode([name, *key])
    if cache_key not in _REFERENCE_CACHE:
        played = play_episodes(
            make_controller(env), env, seeds=seeds, metrics=metrics, max_steps=max_steps
        )
        _REFERENCE_CACHE[cache_key] = (list(played.returns), _means(played.metrics))
    return _REFERENCE_CACHE[cache_key]


def _evaluate(request: EvaluationRequest) -> tuple[list[RegimeResult], str]:
    # Imported here: the worker process pays for torch, the coordinator's loop does not.
    from agents.bus.codec import decode_as  # noqa: PLC0415
    from agents.bus.schemas import PolicySnapshot, RegimeSpec  # noqa: PLC0415
    from agents.learner.algorithms import get_algorithm  # noqa: PLC0415
    from agents.learner.envs import make_env  # noqa: PLC0415
    from agents.learner.snapshots import build_policy, load_tensors  # noqa: PLC0415
    from agents.learner.spaces import describe_space  # noqa: PLC0415
    from agents.worlds import (  # noqa: PLC0415
        BASELINES,
        PRIMARY_BASELINE,
        RandomController,
        metric_keys,
        play_batched,
    )

    snapshot = decode_as(PolicySnapshot, request.payload)
    if not env_allowed(snapshot.env_id, request.allowed_envs):
        msg = f"environment {snapshot.env_id!r} is not registered nor allowed here"
        raise IncompatiblePolicy(msg)
    spec = get_algorithm(snapshot.algo)
    seeds = [request.seed + i for i in range(request.episodes)]
    keys = metric_keys(snapshot.env_id)
    baseline = PRIMARY_BASELINE.get(snapshot.env_id, "")
    policy: Any = None
    results = []
    regimes: list[RegimeSpec | None] = [*snapshot.regimes] or [None]
    for regime in regimes:
        env = make_env(snapshot.env_id, snapshot.env_kwargs, regime=regime, checked=False)
        # The policy plays all its episodes of the regime side by side (one batched forward
        # pass per step); the references play on `env`, one episode after another.
        side_by_side = [env] + [
            make_env(snapshot.env_id, snapshot.env_kwargs, regime=regime, checked=False)
            for _ in range(0 if one_per_process(env) else max(len(seeds), _RECALL_EPISODES) - 1)
        ]
        try:
            if policy is None:
                if describe_space(env.observation_space) != snapshot.obs_space:
                    msg = "observation space differs from the evaluation world's"
                    raise IncompatiblePolicy(msg)
                if describe_space(env.action_space) != snapshot.action_space:
                    msg = "action space differs from the evaluation world's"
                    raise IncompatiblePolicy(msg)
                policy = build_policy(spec, snapshot.arch, env.observation_space, env.action_space)
                load_tensors(policy, snapshot.tensors)
                recaller = build_policy(
                    spec, snapshot.arch, env.observation_space, env.action_space
                )
            score = play_batched(
                deployed_actor(policy, snapshot, env), side_by_side, seeds=seeds, metrics=keys,
                max_steps=request.max_episode_steps,
            )  # fmt: skip
            world = [snapshot.env_id, snapshot.env_kwargs, regime, seeds, request.max_episode_steps]
            baseline_returns: list[float] | None = None
            baseline_metrics: dict[str, float] = {}
            limit = request.max_episode_steps
            recall_from, recall_returns = _recall(
                snapshot, recaller, side_by_side, score.returns, seeds=seeds,
                seed=request.seed, max_steps=limit,
            )  # fmt: skip
            if baseline:
                baseline_returns, baseline_metrics = _reference(
                    baseline, BASELINES[snapshot.env_id][baseline], env,
                    key=world, seeds=seeds, metrics=keys, max_steps=limit,
                )  # fmt: skip
            random_returns, _ = _reference(
                "random", RandomController, env, key=[request.seed, *world], seeds=seeds,
                metrics={}, max_steps=limit,
            )  # fmt: skip
        finally:
            for opened in side_by_side:
                opened.close()
        results.append(
            RegimeResult(
                regime=regime.name if regime is not None else DEFAULT_REGIME,
                returns=list(score.returns),
                metrics=_means(score.metrics),
                baseline_returns=baseline_returns,
                baseline_metrics=baseline_metrics,
                random_returns=random_returns,
                recall_returns=recall_returns,
                recall_from=recall_from,
            )
        )
    return results, baseline


#: The selection episode's seed is offset from the evaluation seeds, so the policy is chosen
#: on an episode it is not then scored on.
_RECALL_SEED_OFFSET = 7919
#: As many selection episodes as an agent's sandbox trials play by default.
_RECALL_EPISODES = 3


def one_per_process(env: gym.Env[Any, Any]) -> bool:
    """Whether the world runs one instance per process (SUMO): its episodes go one by one."""
    return bool(getattr(env.unwrapped, "one_per_process", False))


def _recall(
    snapshot: Any,
    recaller: Any,
    envs: list[gym.Env[Any, Any]],
    current_returns: Any,
    *,
    seeds: list[int],
    seed: int,
    max_steps: int,
) -> tuple[str, list[float] | None]:
    """What the agent would do here with its library: try each policy, keep the best.

    Mirrors the agent's own recall after a drift (its sandbox trials): every candidate plays
    the same ``_RECALL_EPISODES`` selection episodes, whose seeds are not evaluation seeds, and
    the best mean is then scored on the evaluation seeds. One selection episode was not
    enough: a traffic episode that starts at 01:00 hardly tells a policy for the crossed wiring
    from one for the normal wiring. Without a library there is nothing to recall: ``("", None)``.
    """
    from agents.learner.snapshots import load_tensors  # noqa: PLC0415
    from agents.worlds import play_batched  # noqa: PLC0415

    if not snapshot.library:
        return "", None
    candidates = [("current", snapshot.tensors)] + [
        (f"library:{entry.context}", entry.tensors) for entry in snapshot.library
    ]
    selection = [seed + _RECALL_SEED_OFFSET + i for i in range(_RECALL_EPISODES)]
    best_label, best_score = "current", -math.inf
    for label, tensors in candidates:
        load_tensors(recaller, tensors)
        played = play_batched(
            deployed_actor(recaller, snapshot, envs[0]),
            envs,
            seeds=selection,
            metrics={},
            max_steps=max_steps,
        )
        score = float(np.mean(played.returns))
        if score > best_score:
            best_label, best_score = label, score
    if best_label == "current":
        return best_label, list(current_returns)
    load_tensors(recaller, dict(candidates)[best_label])
    chosen = play_batched(
        deployed_actor(recaller, snapshot, envs[0]), envs, seeds=seeds, metrics={},
        max_steps=max_steps,
    )  # fmt: skip
    return best_label, list(chosen.returns)


def deployed_actor(policy: Any, snapshot: Any, env: gym.Env[Any, Any]) -> Any:
    """How the agent's device acts with ``policy``.

    The network, then its world's shield if the snapshot says it has one
    (:mod:`agents.learner.shield`).
    """
    from agents.learner.batch_actor import batch_actor  # noqa: PLC0415
    from agents.learner.shield import check_shield, shielded_actor  # noqa: PLC0415

    actor = batch_actor(policy)
    # A world without a shield: ConfigError, which evaluate_snapshot reports as incompatible.
    return shielded_actor(actor, check_shield(env)) if snapshot.shielded else actor


def _means(metrics: Any) -> dict[str, float]:
    return {name: float(np.mean(values)) for name, values in metrics.items() if len(values)}
