"""Encoding and validating decoding of bus messages.

Everything received from the bus is untrusted. :func:`decode` turns a payload into a message
only after these checks, cheapest first:

1. size: the payload is at most :data:`MAX_PAYLOAD_BYTES` for its kind (``too_large``);
2. syntax: it is MessagePack (``malformed``);
3. schema: it has exactly the fields of its kind with the right types (``schema``), and
   the schema version this build reads (``schema_version``);
4. semantics: array dtypes are on the whitelist (``dtype``), shapes agree with byte lengths
   and with each other (``shape``), floats are finite (``non_finite``), a snapshot's tensors
   match its digest (``digest``), and fields are in range (``invalid``).

A failed check raises :class:`~agents.exceptions.MessageRejected` with one of
:data:`REJECT_REASONS`; callers count it by reason and log it once. Nothing is ever
unpickled: MessagePack decodes to plain data only.
"""

from __future__ import annotations

import math
from typing import Final, TypeVar

import msgspec
import numpy as np
import numpy.typing as npt

from agents.bus.arrays import Array, Tensor, from_wire
from agents.bus.schemas import (
    SCHEMA_VERSION,
    Directive,
    Evaluation,
    EvaluationTask,
    EvaluatorPresence,
    ExperienceBatch,
    FederatedWeights,
    HyperValue,
    Leaderboard,
    LibraryPolicy,
    Message,
    PolicySnapshot,
    Receipt,
    RegimeOutcome,
    RolloutColumns,
    SpaceSpec,
    Status,
    TaskResult,
    Telemetry,
)
from agents.bus.signing import tensor_digest
from agents.bus.topics import Kind, validate_name
from agents.exceptions import ConfigError, MessageRejected

__all__ = [
    "MAX_MISSING_LISTED",
    "MAX_PAYLOAD_BYTES",
    "MESSAGE_TYPES",
    "RECEIPTED_KINDS",
    "REJECT_REASONS",
    "decode",
    "decode_as",
    "encode",
    "kind_of",
]

#: The numbered streams an agent keeps until the coordinator's receipt covers them.
RECEIPTED_KINDS: Final = ("experience", "policy", "telemetry")
#: The most missing numbers one receipt lists per stream (the lowest first).
MAX_MISSING_LISTED: Final = 1000

#: Every reason a message can be rejected for. Bounded: these are Prometheus label values.
REJECT_REASONS: Final = (
    "too_large",
    "malformed",
    "schema",
    "schema_version",
    "dtype",
    "shape",
    "non_finite",
    "digest",
    "signature",
    "invalid",
    "incompatible",
    "topic",
    "capacity",
    "stale",
)

_MiB: Final = 1 << 20

#: Largest payload accepted per kind. The broker's packet limit must be above the largest.
MAX_PAYLOAD_BYTES: Final[dict[Kind, int]] = {
    Kind.STATUS: 4 << 10,
    Kind.TELEMETRY: 64 << 10,
    Kind.DIRECTIVE: 64 << 10,
    Kind.EVALUATION: 64 << 10,
    Kind.LEADERBOARD: 1 * _MiB,
    Kind.EXPERIENCE: 8 * _MiB,
    Kind.POLICY: 16 * _MiB,
    Kind.WEIGHTS: 16 * _MiB,
    Kind.RECEIPT: 64 << 10,
    Kind.PRESENCE: 4 << 10,
    # A snapshot (at most 16 MiB) and the task's few fields around it.
    Kind.TASK: 16 * _MiB + (64 << 10),
    Kind.RESULT: 1 * _MiB,
}

MESSAGE_TYPES: Final[dict[Kind, type[Message]]] = {
    Kind.STATUS: Status,
    Kind.EXPERIENCE: ExperienceBatch,
    Kind.POLICY: PolicySnapshot,
    Kind.TELEMETRY: Telemetry,
    Kind.DIRECTIVE: Directive,
    Kind.EVALUATION: Evaluation,
    Kind.LEADERBOARD: Leaderboard,
    Kind.WEIGHTS: FederatedWeights,
    Kind.RECEIPT: Receipt,
    Kind.PRESENCE: EvaluatorPresence,
    Kind.TASK: EvaluationTask,
    Kind.RESULT: TaskResult,
}

KIND_OF: Final[dict[type[Message], Kind]] = {tp: kind for kind, tp in MESSAGE_TYPES.items()}

_DECODERS: Final = {kind: msgspec.msgpack.Decoder(tp) for kind, tp in MESSAGE_TYPES.items()}
_ENCODER: Final = msgspec.msgpack.Encoder()

M = TypeVar("M", bound=Message)

_MAX_BATCH: Final = 1_000_000
_MAX_TENSORS: Final = 4096
_MAX_PEERS: Final = 256


class _Header(msgspec.Struct):
    """Just enough of any message to tell a version mismatch from a schema error."""

    schema: int


def encode(message: Message) -> bytes:
    """Encode a message for the bus. Raises :class:`ConfigError` if it would be refused.

    The size limit is checked on the way out too, so an oversized snapshot fails loudly at
    its source instead of being dropped silently by a broker or a receiver.
    """
    kind = kind_of(message)
    payload = _ENCODER.encode(message)
    limit = MAX_PAYLOAD_BYTES[kind]
    if len(payload) > limit:
        msg = f"{kind.value} message of {len(payload)} bytes exceeds the {limit}-byte limit"
        raise ConfigError(msg)
    return payload


def kind_of(message: Message) -> Kind:
    """The kind (and so the topic suffix) of a message."""
    return KIND_OF[type(message)]


def decode_as(message_type: type[M], payload: bytes) -> M:
    """Decode and validate a payload that must be a ``message_type``."""
    message = decode(KIND_OF[message_type], payload)
    assert isinstance(message, message_type)
    return message


def decode(kind: Kind, payload: bytes) -> Message:
    """Decode and validate a payload received on a ``kind`` topic."""
    limit = MAX_PAYLOAD_BYTES[kind]
    if len(payload) > limit:
        raise MessageRejected("too_large", f"{len(payload)} bytes > {limit} for {kind.value}")
    try:
        message = _DECODERS[kind].decode(payload)
    except msgspec.ValidationError as exc:
        raise _schema_or_version(payload, exc) from None
    except msgspec.DecodeError as exc:
        raise MessageRejected("malformed", f"not MessagePack: {exc}") from None
    if message.schema != SCHEMA_VERSION:
        raise MessageRejected(
            "schema_version", f"schema {message.schema}, this build reads {SCHEMA_VERSION}"
        )
    _VALIDATORS[kind](message)
    return message


def _schema_or_version(payload: bytes, exc: msgspec.ValidationError) -> MessageRejected:
    try:
        header = msgspec.msgpack.decode(payload, type=_Header)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return MessageRejected("schema", str(exc))
    if header.schema != SCHEMA_VERSION:
        return MessageRejected(
            "schema_version", f"schema {header.schema}, this build reads {SCHEMA_VERSION}"
        )
    return MessageRejected("schema", str(exc))


# --- semantic checks -------------------------------------------------------------------------


def _name(value: str, what: str) -> None:
    try:
        validate_name(value, what)
    except ConfigError as exc:
        raise MessageRejected("invalid", str(exc)) from None


def _scalars(values: dict[str, HyperValue], what: str) -> None:
    for key, value in values.items():
        if isinstance(value, float):
            _finite(value, f"{what}[{key!r}]")


def _finite(value: float, what: str) -> None:
    if not math.isfinite(value):
        raise MessageRejected("non_finite", f"{what} is {value}")


def _at_least(value: int, low: int, what: str) -> None:
    if value < low:
        raise MessageRejected("invalid", f"{what} is {value}, must be >= {low}")


def _check_space(space: SpaceSpec, what: str) -> None:
    if len(space.shape) > 8 or any(d < 0 for d in space.shape):  # noqa: PLR2004
        raise MessageRejected("shape", f"{what}: bad shape {space.shape}")
    if space.kind == "box":
        if space.low is None or space.high is None:
            raise MessageRejected("invalid", f"{what}: a box needs low and high")
        for bound_name, bound in (("low", space.low), ("high", space.high)):
            from_wire(
                bound.dtype,
                bound.shape,
                bound.data,
                what=f"{what}.{bound_name}",
                require_finite=False,
            )
            if bound.shape != space.shape:
                raise MessageRejected("shape", f"{what}.{bound_name} shape != {space.shape}")
    elif space.kind == "discrete":
        if space.n is None or space.n < 1 or space.shape:
            raise MessageRejected("invalid", f"{what}: a discrete space needs n >= 1, shape []")
    elif space.kind == "multi_discrete" and (
        not space.nvec or [len(space.nvec)] != space.shape or min(space.nvec) < 1
    ):
        raise MessageRejected("invalid", f"{what}: multi_discrete needs nvec of its shape")


def _column(array: Array, rows: int, tail: list[int], what: str) -> npt.NDArray[np.generic]:
    """The column decoded (no copy), once its dtype, bytes and shape are checked."""
    values = from_wire(array.dtype, array.shape, array.data, what=what)
    if array.shape != [rows, *tail]:
        raise MessageRejected("shape", f"{what}: shape {array.shape} != {[rows, *tail]}")
    return values


def _check_status(message: Message) -> None:
    assert isinstance(message, Status)
    _name(message.agent, "agent")
    _finite(message.ts, "ts")


def _check_experience(message: Message) -> None:
    assert isinstance(message, ExperienceBatch)
    _name(message.agent, "agent")
    _at_least(message.seq, 1, "seq")
    _at_least(message.agent_step, 0, "agent_step")
    _check_space(message.obs_space, "obs_space")
    _check_space(message.action_space, "action_space")
    _scalars(message.device, "device")
    rows = message.rewards.shape[0] if message.rewards.shape else 0
    if not 1 <= rows <= _MAX_BATCH:
        raise MessageRejected("shape", f"batch of {rows} transitions")
    _column(message.obs, rows, message.obs_space.shape, "obs")
    _column(message.next_obs, rows, message.obs_space.shape, "next_obs")
    actions = _column(message.actions, rows, message.action_space.shape, "actions")
    _column(message.rewards, rows, [], "rewards")
    _column(message.terminated, rows, [], "terminated")
    _column(message.truncated, rows, [], "truncated")
    for flag_name, flag in (("terminated", message.terminated), ("truncated", message.truncated)):
        if flag.dtype != "bool":
            raise MessageRejected("dtype", f"{flag_name} must be bool, got {flag.dtype}")
    if message.rewards.dtype not in {"float32", "float64"}:
        raise MessageRejected("dtype", f"rewards must be float, got {message.rewards.dtype}")
    if message.action_space.kind == "discrete":
        _discrete_actions(actions, message.action_space)


def _discrete_actions(values: npt.NDArray[np.generic], space: SpaceSpec) -> None:
    """A discrete space's actions must be integers that it holds.

    Another index would crash the taker's Q-network: its fit test and its updates index the
    Q-values by action.
    """
    if values.dtype.kind not in "iu":
        raise MessageRejected("dtype", f"discrete actions must be integers, got {values.dtype}")
    low, high = space.start, space.start + (space.n or 0)
    if values.size and (int(values.min()) < low or int(values.max()) >= high):
        raise MessageRejected("invalid", f"actions outside the discrete space [{low}, {high})")


def _check_policy(message: Message) -> None:
    assert isinstance(message, PolicySnapshot)
    _name(message.agent, "agent")
    _at_least(message.version, 1, "version")
    _at_least(message.step, 0, "step")
    _check_space(message.obs_space, "obs_space")
    _check_space(message.action_space, "action_space")
    if message.lineage is not None:
        _name(message.lineage.agent, "lineage.agent")
        _at_least(message.lineage.version, 1, "lineage.version")
    _check_tensors(message.tensors)
    _scalars(message.hyperparams, "hyperparams")
    _scalars(message.env_kwargs, "env_kwargs")
    for regime in message.regimes:
        if not 1 <= len(regime.name) <= 64:  # noqa: PLR2004 - a label value, kept short
            raise MessageRejected("invalid", f"regime name {regime.name!r}")
        _scalars(regime.params, f"regime {regime.name}")
    if tensor_digest(message.tensors) != message.digest:
        raise MessageRejected("digest", "tensors do not match the SHA-256 digest")
    for remembered in message.library:
        _check_library_policy(remembered)


def _check_weights(message: Message) -> None:
    assert isinstance(message, FederatedWeights)
    _name(message.agent, "agent")
    _at_least(message.round, 1, "round")
    _at_least(message.step, 0, "step")
    _at_least(message.samples, 0, "samples")
    _check_space(message.obs_space, "obs_space")
    _check_space(message.action_space, "action_space")
    _check_tensors(message.tensors)
    if message.delta:
        _check_tensors(message.delta)
    _scalars(message.device, "device")
    if tensor_digest(message.tensors) != message.digest:
        raise MessageRejected("digest", "tensors do not match the SHA-256 digest")
    if message.rollout is not None:
        _check_rollout(message.rollout, message.obs_space, message.action_space)


def _check_rollout(rollout: RolloutColumns, obs_space: SpaceSpec, action_space: SpaceSpec) -> None:
    rows = rollout.values.shape[0] if rollout.values.shape else 0
    if not 1 <= rows <= _MAX_BATCH:
        raise MessageRejected("shape", f"rollout of {rows} steps")
    _column(rollout.obs, rows, obs_space.shape, "rollout obs")
    actions = _column(rollout.actions, rows, action_space.shape, "rollout actions")
    for name in ("log_probs", "advantages", "returns", "values"):
        column: Array = getattr(rollout, name)
        _column(column, rows, [], f"rollout {name}")
        if column.dtype not in {"float32", "float64"}:
            raise MessageRejected("dtype", f"rollout {name} must be float, got {column.dtype}")
    if action_space.kind == "discrete":
        _discrete_actions(actions, action_space)


def _check_tensors(tensors: list[Tensor]) -> None:
    if not 1 <= len(tensors) <= _MAX_TENSORS:
        raise MessageRejected("invalid", f"{len(tensors)} tensors")
    names = [t.name for t in tensors]
    if len(set(names)) != len(names):
        raise MessageRejected("invalid", "duplicate tensor names")
    for tensor in tensors:
        from_wire(tensor.dtype, tensor.shape, tensor.data, what=f"tensor {tensor.name!r}")


def _check_library_policy(remembered: LibraryPolicy) -> None:
    _finite(remembered.score, "library score")
    if not 1 <= len(remembered.tensors) <= _MAX_TENSORS:
        raise MessageRejected("invalid", f"library policy of {len(remembered.tensors)} tensors")
    for tensor in remembered.tensors:
        from_wire(tensor.dtype, tensor.shape, tensor.data, what=f"library {tensor.name!r}")
    if tensor_digest(remembered.tensors) != remembered.digest:
        raise MessageRejected("digest", "a library policy does not match its digest")


def _check_telemetry(message: Message) -> None:
    assert isinstance(message, Telemetry)
    _name(message.agent, "agent")
    _finite(message.ts, "ts")
    _finite(message.steps_per_second, "steps_per_second")
    _finite(message.regret, "regret")
    _finite(message.regret_baseline_return, "regret_baseline_return")
    for value in message.episode_returns:
        _finite(value, "episode_returns")
    count = len(message.episode_returns)
    for name in ("episode_steps", "episode_regimes"):
        column = getattr(message, name)
        if column and len(column) != count:
            raise MessageRejected("shape", f"{name} has {len(column)} entries, returns {count}")
    for field in (
        "env_steps",
        "episodes",
        "experience_batches_published",
        "snapshots_published",
        "snapshot_version",
        "outbox_pending",
        "drift_events",
        "adaptations",
        "federated_rounds",
    ):
        _at_least(getattr(message, field), 0, field)
    for field in ("learns_from", "federates_with"):
        peers = getattr(message, field)
        if len(peers) > _MAX_PEERS:
            raise MessageRejected("invalid", f"{field} names {len(peers)} peers")
        for peer in peers:
            _name(peer, field)


def _check_directive(message: Message) -> None:
    assert isinstance(message, Directive)
    _name(message.agent, "agent")
    _finite(message.ts, "ts")
    if message.action == "adopt" and message.source is None:
        raise MessageRejected("invalid", "an adopt directive needs a source")
    _scalars(message.hyperparams, "hyperparams")


def _check_evaluation(message: Message) -> None:
    assert isinstance(message, Evaluation)
    _name(message.agent, "agent")
    for field in ("mean_return", "std_return", "seconds", "ts"):
        _finite(getattr(message, field), field)
    if message.baseline_return is not None:
        _finite(message.baseline_return, "baseline_return")
    for score in message.regimes:
        _finite(score.mean_return, "regimes.mean_return")
        for reference in (score.baseline_return, score.random_return, score.recall_return):
            if reference is not None:
                _finite(reference, "regimes reference return")
        for key, value in (*score.metrics.items(), *score.baseline_metrics.items()):
            _finite(value, f"regimes.metrics[{key!r}]")


def _check_leaderboard(message: Message) -> None:
    assert isinstance(message, Leaderboard)
    for entry in message.entries:
        _name(entry.agent, "agent")


def _check_receipt(message: Message) -> None:
    assert isinstance(message, Receipt)
    _name(message.agent, "agent")
    _finite(message.ts, "ts")
    if len(message.streams) > len(RECEIPTED_KINDS):
        raise MessageRejected("invalid", f"{len(message.streams)} streams in a receipt")
    for stream in message.streams:
        if stream.stream not in RECEIPTED_KINDS:
            raise MessageRejected("invalid", f"no receipts for stream {stream.stream!r}")
        _at_least(stream.floor, 0, "floor")
        _at_least(stream.highest, stream.floor, "highest")
        if len(stream.missing) > MAX_MISSING_LISTED:
            raise MessageRejected("invalid", f"{len(stream.missing)} missing numbers listed")
        if any(not stream.floor < number < stream.highest for number in stream.missing):
            raise MessageRejected("invalid", "a missing number outside (floor, highest)")


#: Bounds of an evaluation task: what one evaluator may be asked to play.
_MAX_EPISODES: Final = 10_000
_MAX_REGIMES: Final = 256
#: A task id is ``{agent}:{version}:{incarnation}`` (hex): three names' worth.
_MAX_TASK_ID: Final = 200


def _task_id(value: str) -> None:
    if not 1 <= len(value) <= _MAX_TASK_ID or not value.isprintable():
        raise MessageRejected("invalid", f"task id {value[:_MAX_TASK_ID]!r}")


def _check_presence(message: Message) -> None:
    assert isinstance(message, EvaluatorPresence)
    _name(message.evaluator, "evaluator")
    _name(message.session, "session")
    _finite(message.ts, "ts")


def _check_task(message: Message) -> None:
    assert isinstance(message, EvaluationTask)
    _name(message.evaluator, "evaluator")
    _name(message.session, "session")
    _task_id(message.task)
    _finite(message.ts, "ts")
    if not 1 <= message.episodes <= _MAX_EPISODES:
        raise MessageRejected("invalid", f"{message.episodes} episodes")
    _at_least(message.seed, 0, "seed")
    _at_least(message.max_episode_steps, 1, "max_episode_steps")
    if len(message.snapshot) > MAX_PAYLOAD_BYTES[Kind.POLICY]:
        raise MessageRejected("too_large", f"a snapshot of {len(message.snapshot)} bytes")


def _returns(values: list[float] | None, what: str) -> None:
    if values is None:
        return
    if not 1 <= len(values) <= _MAX_EPISODES:
        raise MessageRejected("shape", f"{what}: {len(values)} returns")
    for value in values:
        _finite(value, what)


def _check_outcome(outcome: RegimeOutcome) -> None:
    if not 1 <= len(outcome.regime) <= 64:  # noqa: PLR2004 - a label value, kept short
        raise MessageRejected("invalid", f"regime name {outcome.regime[:64]!r}")
    _returns(outcome.returns, "returns")
    for name in ("baseline_returns", "random_returns", "recall_returns"):
        _returns(getattr(outcome, name), name)
    for key, value in (*outcome.metrics.items(), *outcome.baseline_metrics.items()):
        _finite(value, f"metrics[{key!r}]")
    if len(outcome.recall_from) > 64:  # noqa: PLR2004
        raise MessageRejected("invalid", "recall_from is too long")


def _check_result(message: Message) -> None:
    assert isinstance(message, TaskResult)
    _name(message.evaluator, "evaluator")
    _name(message.session, "session")
    _task_id(message.task)
    _finite(message.seconds, "seconds")
    _finite(message.ts, "ts")
    if message.seconds < 0:
        raise MessageRejected("invalid", f"seconds is {message.seconds}")
    # The reason becomes a label of society_messages_rejected_total: bounded, never free text.
    if message.error_reason and message.error_reason not in REJECT_REASONS:
        raise MessageRejected("invalid", f"error reason {message.error_reason[:64]!r}")
    if len(message.regimes) > _MAX_REGIMES:
        raise MessageRejected("invalid", f"{len(message.regimes)} regimes")
    if not message.error_reason and not message.regimes:
        raise MessageRejected("invalid", "a result without regimes nor an error")
    for outcome in message.regimes:
        _check_outcome(outcome)


_VALIDATORS: Final = {
    Kind.STATUS: _check_status,
    Kind.EXPERIENCE: _check_experience,
    Kind.POLICY: _check_policy,
    Kind.TELEMETRY: _check_telemetry,
    Kind.DIRECTIVE: _check_directive,
    Kind.EVALUATION: _check_evaluation,
    Kind.LEADERBOARD: _check_leaderboard,
    Kind.WEIGHTS: _check_weights,
    Kind.RECEIPT: _check_receipt,
    Kind.PRESENCE: _check_presence,
    Kind.TASK: _check_task,
    Kind.RESULT: _check_result,
}
