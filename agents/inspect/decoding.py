"""What the inspector makes of one raw MQTT message: a flat, printable description.

:func:`describe` runs the same validating decoder as every process of the society
(:func:`agents.bus.codec.decode`), so what the inspector calls rejected is exactly what an
agent or the coordinator would refuse, with the same reason. It never raises: whatever the
bytes, the result is a :class:`Seen` (a bug in a summary shows up as the reason ``error``).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np

from agents.bus.arrays import from_wire
from agents.bus.codec import MESSAGE_TYPES, decode
from agents.bus.schemas import (
    Directive,
    Evaluation,
    EvaluationTask,
    EvaluatorPresence,
    ExperienceBatch,
    FederatedWeights,
    Leaderboard,
    Lineage,
    Message,
    PolicySnapshot,
    Receipt,
    Status,
    TaskResult,
    Telemetry,
)
from agents.bus.topics import Kind, parse_topic
from agents.bus.transport import RawMessage
from agents.exceptions import MessageRejected

__all__ = ["KINDS", "Scalar", "Seen", "describe", "parse_kinds"]

#: A value of a description's field: what a JSON line and a table cell can both hold.
Scalar = str | int | float | bool | None

#: Kind names as messages spell them (``kind`` in every payload), by topic kind.
KIND_NAMES: Final[dict[Kind, str]] = {
    kind: str(message_type.__struct_config__.tag) for kind, message_type in MESSAGE_TYPES.items()
}
KINDS: Final = tuple(KIND_NAMES.values())
_ALIASES: Final = {kind.value: name for kind, name in KIND_NAMES.items()}  # "evaluations"

_DIGEST_PREFIX = 12


@dataclass(frozen=True, slots=True)
class Seen:
    """One message as the inspector shows it.

    ``number`` is the message's ``seq`` (experience) or ``version`` (snapshot, evaluation),
    named by ``number_name``. ``reason`` is set when the message was rejected, with ``error``
    saying why; ``fields`` holds the key fields of an accepted message's kind.
    """

    ts: float
    topic: str
    society: str
    agent: str
    kind: str
    size: int
    retained: bool
    number: int | None = None
    number_name: str = ""
    fields: dict[str, Scalar] = field(default_factory=dict)
    reason: str | None = None
    error: str = ""

    @property
    def rejected(self) -> bool:
        return self.reason is not None

    def as_json(self) -> dict[str, Scalar]:
        """One JSON object: the common fields first, then the kind's own."""
        line: dict[str, Scalar] = {
            "ts": round(self.ts, 3),
            "topic": self.topic,
            "society": self.society,
            "agent": self.agent,
            "kind": self.kind,
            "bytes": self.size,
            "retained": self.retained,
            "rejected": self.rejected,
        }
        if self.number_name:
            line[self.number_name] = self.number
        if self.reason is not None:
            line["reason"] = self.reason
            line["error"] = self.error
        line.update(self.fields)
        return line


def parse_kinds(text: str) -> frozenset[str]:
    """``--kinds``: comma-separated kind names (``evaluations``, the topic's word, works too)."""
    names = {part.strip().lower() for part in text.split(",") if part.strip()}
    chosen = {_ALIASES.get(name, name) for name in names}
    unknown = sorted(chosen - set(KINDS))
    if unknown or not chosen:
        msg = f"unknown kind {', '.join(unknown) or repr(text)}: use some of {','.join(KINDS)}"
        raise argparse.ArgumentTypeError(msg)
    return frozenset(chosen)


def describe(raw: RawMessage, *, ts: float) -> Seen:
    """Decode and summarise ``raw``; never raises."""
    levels = raw.topic.split("/")
    society = levels[1] if len(levels) > 1 else ""

    def seen(agent: str, kind: str, **details: Any) -> Seen:
        return Seen(ts=ts, topic=raw.topic, society=society, agent=agent, kind=kind,
                    size=len(raw.payload), retained=raw.retain, **details)  # fmt: skip

    ref = parse_topic(raw.topic)
    if ref is None:
        return seen("", "unknown", reason="topic",
                    error="not a topic of the society tree (see docs/protocol.md)")  # fmt: skip
    kind = KIND_NAMES[ref.kind]
    # An evaluator's topics name the evaluator where an agent's name the agent.
    agent = ref.agent or ref.evaluator or ""
    try:
        message = decode(ref.kind, raw.payload)
        role = "agent" if ref.agent is not None else "evaluator"
        claimed = getattr(message, role, None)
        if agent and claimed != agent:
            raise MessageRejected(  # noqa: TRY301 - the same rejection as the Inbox's
                "topic", f"payload says {role} {claimed!r} on the topic of {agent!r}"
            )
        number_name, number, fields = _summary(message)
    except MessageRejected as exc:
        return seen(agent, kind, reason=exc.reason, error=exc.detail)
    except Exception as exc:  # noqa: BLE001 - the inspector shows anything, and goes on
        return seen(agent, kind, reason="error", error=f"{type(exc).__name__}: {exc}")
    # Coordinator topics name no agent; their messages (an evaluation) may.
    agent = agent or str(getattr(message, "agent", "") or "")
    return seen(agent, kind, number=number, number_name=number_name, fields=fields)


def _summary(message: Message) -> tuple[str, int | None, dict[str, Scalar]]:
    """(``seq``/``version``/"", its value, the key fields) of a valid message."""
    fields = _FIELDS[type(message)](message)
    if isinstance(message, ExperienceBatch):
        return "seq", message.seq, fields
    if isinstance(message, PolicySnapshot | Evaluation):
        return "version", message.version, fields
    if isinstance(message, FederatedWeights):
        return "round", message.round, fields
    return "", None, fields


def _status(message: Message) -> dict[str, Scalar]:
    assert isinstance(message, Status)
    return {"state": message.state, "env_id": message.env_id, "algo": message.algo,
            "pid": message.pid}  # fmt: skip


def _experience(message: Message) -> dict[str, Scalar]:
    assert isinstance(message, ExperienceBatch)
    rewards = from_wire(message.rewards.dtype, message.rewards.shape, message.rewards.data)
    return {
        "rows": int(rewards.shape[0]),
        "reward_sum": _round(float(np.sum(rewards, dtype=np.float64))),
        "agent_step": message.agent_step,
        "env_id": message.env_id,
        "shared": message.shared,
    }


def _directive(message: Message) -> dict[str, Scalar]:
    assert isinstance(message, Directive)
    hyper = ",".join(f"{k}={v}" for k, v in sorted(message.hyperparams.items()))
    return {"action": message.action, "source": _lineage(message.source),
            "hyperparams": hyper or None, "id": message.id,
            "signed": bool(message.signature)}  # fmt: skip


def _evaluation(message: Message) -> dict[str, Scalar]:
    assert isinstance(message, Evaluation)
    return {
        "step": message.step,
        "mean_return": _round(message.mean_return),
        "baseline": message.baseline or None,
        "baseline_return": _round(message.baseline_return),
        "train_regime": message.train_regime or None,
        "regimes": len(message.regimes),
    }


def _leaderboard(message: Message) -> dict[str, Scalar]:
    assert isinstance(message, Leaderboard)
    best = message.entries[0] if message.entries else None
    return {
        "entries": len(message.entries),
        "leader": best.agent if best else None,
        "leader_return": _round(best.eval_return) if best else None,
    }


def _policy(message: Message) -> dict[str, Scalar]:
    assert isinstance(message, PolicySnapshot)
    return {
        "step": message.step,
        "algo": message.algo,
        "env_id": message.env_id,
        "tensors": len(message.tensors),
        "parameters": sum(math.prod(t.shape) for t in message.tensors),
        "digest": message.digest[:_DIGEST_PREFIX],
        "lineage": _lineage(message.lineage),
        "regime": message.regime or None,
        "library": len(message.library),
        "shared": message.shared,
        "signed": bool(message.signature),
    }


def _weights(message: Message) -> dict[str, Scalar]:
    assert isinstance(message, FederatedWeights)
    return {
        "step": message.step,
        "samples": message.samples,
        "algo": message.algo,
        "env_id": message.env_id,
        "parameters": sum(math.prod(t.shape) for t in message.tensors),
        "digest": message.digest[:_DIGEST_PREFIX],
        "update": bool(message.delta),
        # Pooling rollouts: the chunk's length (steps the receivers may train on).
        "rollout": message.rollout.values.shape[0] if message.rollout is not None else None,
        "regime": message.regime or None,
        "signed": bool(message.signature),
    }


def _telemetry(message: Message) -> dict[str, Scalar]:
    assert isinstance(message, Telemetry)
    returns = message.episode_returns
    return {
        "env_steps": message.env_steps,
        "steps_per_second": _round(message.steps_per_second),
        "episodes": message.episodes,
        "episode_return": _round(sum(returns) / len(returns)) if returns else None,
        "snapshot_version": message.snapshot_version,
        "regime": message.regime or None,
        "drift_events": message.drift_events,
        "outbox_pending": message.outbox_pending,
        "learns_from": ",".join(message.learns_from) or None,
    }


def _receipt(message: Message) -> dict[str, Scalar]:
    assert isinstance(message, Receipt)
    return {
        "incarnation": f"{message.incarnation:x}",
        **{f"{s.stream}_through": s.floor for s in message.streams},
        "missing": sum(len(s.missing) for s in message.streams) or None,
    }


def _presence(message: Message) -> dict[str, Scalar]:
    assert isinstance(message, EvaluatorPresence)
    return {"state": message.state, "session": message.session, "pid": message.pid}


def _task(message: Message) -> dict[str, Scalar]:
    assert isinstance(message, EvaluationTask)
    return {"task": message.task, "session": message.session, "episodes": message.episodes,
            "snapshot_bytes": len(message.snapshot), "signed": bool(message.signature)}  # fmt: skip


def _result(message: Message) -> dict[str, Scalar]:
    assert isinstance(message, TaskResult)
    means = [sum(r.returns) / len(r.returns) for r in message.regimes if r.returns]
    return {
        "task": message.task,
        "regimes": len(message.regimes),
        "mean_return": _round(sum(means) / len(means)) if means else None,
        "seconds": _round(message.seconds),
        "error": message.error_reason or None,
    }


_FIELDS: Final[dict[type[Message], Callable[[Message], dict[str, Scalar]]]] = {
    Status: _status,
    ExperienceBatch: _experience,
    PolicySnapshot: _policy,
    Telemetry: _telemetry,
    Directive: _directive,
    Evaluation: _evaluation,
    Leaderboard: _leaderboard,
    FederatedWeights: _weights,
    Receipt: _receipt,
    EvaluatorPresence: _presence,
    EvaluationTask: _task,
    TaskResult: _result,
}


def _lineage(lineage: Lineage | None) -> str | None:
    return f"{lineage.agent}@{lineage.version}" if lineage is not None else None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
