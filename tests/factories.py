"""Valid messages to start from; tests break them one field at a time."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from agents.bus.arrays import Tensor, to_wire
from agents.bus.codec import encode
from agents.bus.schemas import (
    SCHEMA_VERSION,
    Directive,
    Evaluation,
    EvaluationTask,
    EvaluatorPresence,
    ExperienceBatch,
    FederatedWeights,
    Leaderboard,
    LeaderboardEntry,
    Lineage,
    Message,
    PolicyArch,
    PolicySnapshot,
    Receipt,
    RegimeOutcome,
    SpaceSpec,
    Status,
    StreamReceipt,
    TaskResult,
    Telemetry,
)
from agents.bus.signing import tensor_digest
from agents.bus.topics import Kind

BOX4 = SpaceSpec(
    kind="box",
    shape=[4],
    dtype="float32",
    low=to_wire(np.full(4, -10, dtype=np.float32)),
    high=to_wire(np.full(4, 10, dtype=np.float32)),
)
DISCRETE2 = SpaceSpec(kind="discrete", shape=[], dtype="int64", n=2)


def status(agent: str = "a0", state: str = "online") -> Status:
    return Status(
        schema=SCHEMA_VERSION, agent=agent, state=state, ts=time.time(),  # type: ignore[arg-type]
        env_id="CartPole-v1", algo="ppo", pid=1,
    )  # fmt: skip


def experience(agent: str = "a0", seq: int = 1, rows: int = 8) -> ExperienceBatch:
    rng = np.random.default_rng(seq)
    return ExperienceBatch(
        schema=SCHEMA_VERSION,
        agent=agent,
        seq=seq,
        env_id="CartPole-v1",
        obs_space=BOX4,
        action_space=DISCRETE2,
        agent_step=seq * rows,
        obs=to_wire(rng.standard_normal((rows, 4)).astype(np.float32)),
        next_obs=to_wire(rng.standard_normal((rows, 4)).astype(np.float32)),
        actions=to_wire(rng.integers(0, 2, rows)),
        rewards=to_wire(np.ones(rows, dtype=np.float32)),
        terminated=to_wire(np.zeros(rows, dtype=bool)),
        truncated=to_wire(np.zeros(rows, dtype=bool)),
    )


def tensors(seed: int = 0) -> list[Tensor]:
    rng = np.random.default_rng(seed)
    out = []
    for name, shape in (("w1", (8, 4)), ("b1", (8,)), ("w2", (2, 8))):
        wire = to_wire(rng.standard_normal(shape).astype(np.float32))
        out.append(Tensor(name=name, dtype=wire.dtype, shape=wire.shape, data=wire.data))
    return out


def snapshot(agent: str = "a0", version: int = 1) -> PolicySnapshot:
    weights = tensors(version)
    return PolicySnapshot(
        schema=SCHEMA_VERSION,
        agent=agent,
        version=version,
        step=1000 * version,
        algo="ppo",
        env_id="CartPole-v1",
        obs_space=BOX4,
        action_space=DISCRETE2,
        arch=PolicyArch(policy="MlpPolicy", net_arch=[8], activation="tanh"),
        tensors=weights,
        digest=tensor_digest(weights),
        hyperparams={"learning_rate": 3e-4, "n_steps": 512},
        lineage=Lineage(agent="a1", version=3),
    )


def weights(agent: str = "a0", round_: int = 1) -> FederatedWeights:
    values = tensors(round_)
    return FederatedWeights(
        schema=SCHEMA_VERSION, agent=agent, round=round_, step=512 * round_, algo="ppo",
        env_id="CartPole-v1", obs_space=BOX4, action_space=DISCRETE2,
        arch=PolicyArch(policy="MlpPolicy", net_arch=[8], activation="tanh"), samples=512,
        tensors=values, digest=tensor_digest(values), device={"length": 0.5},
    )  # fmt: skip


def telemetry(agent: str = "a0") -> Telemetry:
    return Telemetry(
        schema=SCHEMA_VERSION, agent=agent, ts=time.time(), env_id="CartPole-v1", algo="ppo",
        env_steps=1234, steps_per_second=800.5, episodes=12, experience_batches_published=4,
        snapshots_published=1, snapshot_version=1, episode_returns=[10.0, 20.0],
    )  # fmt: skip


def directive(agent: str = "a0") -> Directive:
    return Directive(schema=SCHEMA_VERSION, id="d1", agent=agent, action="snapshot", ts=time.time())


def evaluation(agent: str = "a0", version: int = 1) -> Evaluation:
    return Evaluation(
        schema=SCHEMA_VERSION, agent=agent, version=version, step=1000, env_id="CartPole-v1",
        algo="ppo", mean_return=100.0, std_return=5.0, episodes=5, seeds=[1, 2, 3, 4, 5],
        seconds=0.5, ts=time.time(),
    )  # fmt: skip


def leaderboard() -> Leaderboard:
    entry = LeaderboardEntry(
        agent="a0", env_id="CartPole-v1", algo="ppo", version=1, step=1000, eval_return=100.0
    )
    return Leaderboard(schema=SCHEMA_VERSION, ts=time.time(), entries=[entry])


def receipt(agent: str = "a0") -> Receipt:
    return Receipt(
        schema=SCHEMA_VERSION, agent=agent, incarnation=7, ts=time.time(),
        streams=[StreamReceipt(stream="experience", floor=3, highest=9, missing=[5, 6])],
    )  # fmt: skip


def presence(
    evaluator: str = "e0", state: str = "online", session: str = "s1"
) -> EvaluatorPresence:
    return EvaluatorPresence(
        schema=SCHEMA_VERSION, evaluator=evaluator, state=state,  # type: ignore[arg-type]
        session=session, ts=time.time(), pid=1,
    )  # fmt: skip


def task(evaluator: str = "e0", agent: str = "a0", version: int = 1) -> EvaluationTask:
    return EvaluationTask(
        schema=SCHEMA_VERSION, task=f"{agent}:{version}:0", evaluator=evaluator, session="s1",
        snapshot=encode(snapshot(agent, version)), episodes=2, seed=10_000,
        max_episode_steps=500, ts=time.time(),
    )  # fmt: skip


def task_result(
    evaluator: str = "e0", task_id: str = "a0:1:0", episodes: int = 2, session: str = "s1"
) -> TaskResult:
    return TaskResult(
        schema=SCHEMA_VERSION, task=task_id, evaluator=evaluator, session=session,
        regimes=[
            RegimeOutcome(
                regime="default", returns=[10.0 + i for i in range(episodes)],
                metrics={"steps": 10.0}, baseline_returns=[20.0] * episodes,
                random_returns=[5.0] * episodes,
            )
        ],
        baseline="pd", seconds=0.5, ts=time.time(),
    )  # fmt: skip


#: A valid message of every kind, by the kind whose topics carry it.
BY_KIND: dict[Kind, Callable[[], Message]] = {
    Kind.STATUS: status,
    Kind.EXPERIENCE: experience,
    Kind.POLICY: snapshot,
    Kind.TELEMETRY: telemetry,
    Kind.DIRECTIVE: directive,
    Kind.EVALUATION: evaluation,
    Kind.LEADERBOARD: leaderboard,
    Kind.WEIGHTS: weights,
    Kind.RECEIPT: receipt,
    Kind.PRESENCE: presence,
    Kind.TASK: task,
    Kind.RESULT: task_result,
}
