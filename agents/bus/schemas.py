"""The messages of the society, as typed msgspec Structs.

Each message is a MessagePack map with a ``kind`` tag and a ``schema`` version. Decoding is
strict: unknown fields, missing fields and wrong types are rejected by msgspec before the
semantic checks in :mod:`agents.bus.codec` run. ``docs/protocol.md`` documents every field for
third-party clients; keep the two in step (a test checks that every field is documented).

Bump :data:`SCHEMA_VERSION` on any change that an old reader would misread.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from agents.bus.arrays import Array, Tensor

__all__ = [
    "SCHEMA_VERSION",
    "Directive",
    "Evaluation",
    "EvaluationTask",
    "EvaluatorPresence",
    "ExperienceBatch",
    "FederatedWeights",
    "HyperValue",
    "Leaderboard",
    "LeaderboardEntry",
    "LibraryPolicy",
    "Lineage",
    "Message",
    "PolicyArch",
    "PolicySnapshot",
    "RegimeOutcome",
    "RegimeScore",
    "RegimeSpec",
    "RolloutColumns",
    "SpaceSpec",
    "Status",
    "TaskResult",
    "Telemetry",
]

SCHEMA_VERSION = 1

#: A hyperparameter value: plain scalars only, so anything can read it and nothing executes.
Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
"""An integer field: what SQLite, numpy and every other reader store in 64 bits. MessagePack
carries up to 2**64 - 1; a larger value is refused at decoding, not deep in a handler."""

HyperValue = bool | int | float | str


class _Struct(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Base of every nested struct: strict about fields."""


class Message(_Struct, tag_field="kind"):
    """Base of every top-level message. ``schema`` is required in every message.

    ``signature`` is an HMAC-SHA256 over the message (:mod:`agents.bus.signing`) when the
    society has a key; receivers with the key refuse a message of any kind without it.
    """

    schema: Int64


class SpaceSpec(_Struct):
    """A gymnasium space, described well enough to rebuild it and to compare two of them.

    ``kind`` is ``box``, ``discrete``, ``multi_discrete`` or ``multi_binary``. ``low`` and
    ``high`` are set for boxes, ``n`` and ``start`` for discrete spaces, ``nvec`` for
    multi-discrete ones.
    """

    kind: Literal["box", "discrete", "multi_discrete", "multi_binary"]
    shape: list[int]
    dtype: str
    low: Array | None = None
    high: Array | None = None
    n: Int64 | None = None
    start: Int64 = 0
    nvec: list[int] | None = None


class Lineage(_Struct):
    """Where a policy came from: the agent and snapshot version it was adopted from."""

    agent: str
    version: Int64


class PolicyArch(_Struct):
    """What it takes to rebuild the policy network: SB3 policy class and its plain kwargs.

    ``net_arch`` is either a list of hidden layer sizes shared by all heads or a map from head
    (``pi``, ``vf``, ``qf``) to layer sizes. ``activation`` names a torch activation from a
    whitelist. ``options`` holds further scalar policy kwargs (``log_std_init``,
    ``n_critics`` and the like); the learner accepts only the keys it knows.
    """

    policy: str
    net_arch: list[int] | dict[str, list[int]]
    activation: str
    options: dict[str, HyperValue] = {}


class RegimeSpec(_Struct):
    """A named regime of a world: parameter overrides a drift schedule switches to.

    For the project's worlds the names are fields of the world's parameters; for a plain
    gymnasium env they are attributes of ``env.unwrapped`` (CartPole's ``gravity``...).
    """

    name: str
    params: dict[str, HyperValue] = {}


class LibraryPolicy(_Struct):
    """A policy an agent remembers for a context it lived through (see the agent's library).

    ``digest`` is the SHA-256 of ``tensors`` in the same framing as a snapshot's.
    """

    context: Int64
    score: float
    tensors: list[Tensor]
    digest: str


class Status(Message, tag="status"):
    """An agent's presence, retained. The Last Will carries the same struct with ``offline``.

    ``ts`` is the wall-clock time (Unix seconds) the status was produced; for a Last Will that
    is the time the will was registered, not the time the agent vanished.
    """

    agent: str
    state: Literal["online", "offline"]
    ts: float
    env_id: str = ""
    algo: str = ""
    pid: Int64 = 0
    incarnation: Int64 = 0
    signature: str | None = None


class ExperienceBatch(Message, tag="experience"):
    """A columnar batch of transitions, in the order the agent collected them.

    Every column has the batch length ``n`` as first dimension: ``obs`` and ``next_obs`` are
    ``(n, *obs_space.shape)``, ``actions`` ``(n, *action_space.shape)`` (``(n,)`` for
    discrete actions), ``rewards`` ``(n,)`` float, ``terminated`` and ``truncated`` ``(n,)``
    bool. ``next_obs`` is the true next observation, also at the end of an episode.
    ``seq`` starts at 1 and rises by one per batch of this agent, across restarts.
    """

    agent: str
    seq: Int64
    env_id: str
    obs_space: SpaceSpec
    action_space: SpaceSpec
    agent_step: Int64
    obs: Array
    next_obs: Array
    actions: Array
    rewards: Array
    terminated: Array
    truncated: Array
    shared: bool = True
    #: The device parameters the sender announces (its world's ``env_kwargs``): a receiver
    #: takes in only transitions from devices alike enough to its own.
    device: dict[str, HyperValue] = {}
    incarnation: Int64 = 0
    signature: str | None = None


class PolicySnapshot(Message, tag="policy"):
    """An agent's policy weights and everything needed to judge and rebuild them.

    ``tensors`` is the policy's state dict as ``[name, dtype, shape, bytes]`` entries, in
    order; ``digest`` is the SHA-256 over them (see :func:`agents.bus.signing.tensor_digest`).
    ``signature`` is an HMAC-SHA256 when the society has a key.
    """

    agent: str
    version: Int64
    step: Int64
    algo: str
    env_id: str
    obs_space: SpaceSpec
    action_space: SpaceSpec
    arch: PolicyArch
    tensors: list[Tensor]
    digest: str
    env_kwargs: dict[str, HyperValue] = {}
    hyperparams: dict[str, HyperValue] = {}
    lineage: Lineage | None = None
    regimes: list[RegimeSpec] = []
    regime: str = ""
    shared: bool = True
    library: list[LibraryPolicy] = []
    incarnation: Int64 = 0
    #: The world's shield stands between this policy and the device (shield.py): evaluation
    #: plays it through the same shield.
    shielded: bool = False
    signature: str | None = None


class RolloutColumns(_Struct):
    """An on-policy member's rollout as it trains on it (``agents.learner.pooling``).

    Every column has the rollout length ``n`` as first dimension: ``obs`` is
    ``(n, *obs_space.shape)``, ``actions`` ``(n, *action_space.shape)`` (``(n,)`` for discrete
    actions); ``log_probs`` the collecting policy's log-probabilities of the actions,
    ``advantages`` and ``returns`` its advantage estimates and value targets, ``values`` its
    value predictions, all ``(n,)`` float.
    """

    obs: Array
    actions: Array
    log_probs: Array
    advantages: Array
    returns: Array
    values: Array


class FederatedWeights(Message, tag="weights"):
    """An agent's policy weights after its latest local update, for peers to average in.

    Federated learning (``agents.learner.federation``): at every rollout boundary an on-policy
    agent publishes its weights, then averages into its own the fresh weights of the peers
    whose policies fit its world, weighted by ``samples``. ``round`` increases by one per
    publication; ``samples`` is the device steps learned from since the previous one;
    ``device`` the device parameters the agent announces (its world's ``env_kwargs``).
    ``tensors``, ``digest`` and ``signature`` are as in :class:`PolicySnapshot`.
    """

    agent: str
    round: Int64
    step: Int64
    algo: str
    env_id: str
    obs_space: SpaceSpec
    action_space: SpaceSpec
    arch: PolicyArch
    samples: Int64
    tensors: list[Tensor]
    digest: str
    device: dict[str, HyperValue] = {}
    regime: str = ""
    #: The agent's own update since its previous round (the floating-point entries of
    #: ``tensors`` minus where its local training started), so peers can sum the members'
    #: updates rather than average them; empty: peers average weights only.
    delta: list[Tensor] = []
    #: Pooled rollouts: the rollout these weights just collected, for alike peers to train on
    #: (``tensors`` are then the collecting policy, which peers' likeness check judges).
    rollout: RolloutColumns | None = None
    incarnation: Int64 = 0
    signature: str | None = None


class Telemetry(Message, tag="telemetry"):
    """An agent's progress, a few times a minute. Episode returns since the previous one.

    ``seq`` numbers an agent's telemetry from 1, across restarts, as ``ExperienceBatch.seq``
    does its batches (0: an agent that does not number it); it travels durably, so a receiver
    records every episode exactly once.
    """

    agent: str
    ts: float
    env_id: str
    algo: str
    env_steps: Int64
    steps_per_second: float
    episodes: Int64
    experience_batches_published: Int64
    snapshots_published: Int64
    snapshot_version: Int64
    budget_steps: Int64 = 0
    episode_returns: list[float] = []
    episode_steps: list[int] = []
    episode_regimes: list[str] = []
    outbox_pending: Int64 = 0
    drift_events: Int64 = 0
    adaptations: Int64 = 0
    context: Int64 = 0
    strategy: str = ""
    regime: str = ""
    shares: list[str] = []
    twin_of: str = ""
    peer_transitions: Int64 = 0
    messages_rejected: dict[str, int] = {}
    #: Against the world's baseline controller on the same episodes, over the agent's life:
    #: the baseline's summed return minus the deployed one's (> 0: worse than the controller),
    #: the baseline's summed return, and the episodes both sums cover (0: nothing compared).
    regret: float = 0.0
    regret_baseline_return: float = 0.0
    regret_episodes: Int64 = 0
    #: Device steps the baseline controller drove: the history before the agent took over,
    #: and the episodes its guard gave back to the controller.
    controller_steps: Int64 = 0
    #: The peers this agent learned from lately (whose weights it averaged in, or whose
    #: experience it took in): its group as it sees it. Sorted agent ids.
    learns_from: list[str] = []
    #: Of those, the peers whose weights it averaged in lately (federated): their learning is
    #: in its weights already, so evolution does not have it copy their snapshots.
    federates_with: list[str] = []
    #: Times the agent averaged peers' weights into its own (federated rounds), this run.
    federated_rounds: Int64 = 0
    seq: Int64 = 0
    incarnation: Int64 = 0
    signature: str | None = None


class Directive(Message, tag="directive"):
    """An instruction from the coordinator to one agent.

    ``action`` is ``adopt`` (load ``source``'s snapshot), ``mutate`` (apply
    ``hyperparams``), or ``snapshot`` (publish a snapshot now).
    """

    id: str
    agent: str
    action: Literal["adopt", "mutate", "snapshot"]
    ts: float
    source: Lineage | None = None
    hyperparams: dict[str, HyperValue] = {}
    signature: str | None = None


class StreamReceipt(_Struct):
    """What the coordinator has recorded of one of an agent's numbered streams.

    ``stream`` is the kind (``experience``, ``policy``, ``telemetry``); every number up to
    ``floor`` is recorded; ``highest`` is the highest recorded; ``missing`` the numbers between
    that have not arrived (at most ``MAX_MISSING_LISTED`` of them, the lowest first).
    """

    stream: str
    floor: Int64
    highest: Int64
    missing: list[Int64] = []


class Receipt(Message, tag="receipt"):
    """The coordinator's word to one agent of what it has recorded. Retained; the latest wins.

    An agent keeps each numbered message (experience, snapshots, telemetry) after the broker's
    acknowledgement until a receipt covers it, and sends again what a receipt lists as missing
    (docs/reliability.md).
    """

    agent: str
    incarnation: Int64
    ts: float
    streams: list[StreamReceipt]
    signature: str | None = None


class RegimeScore(_Struct):
    """An evaluation's mean return on one regime of the world."""

    regime: str
    mean_return: float
    baseline_return: float | None = None
    metrics: dict[str, float] = {}
    baseline_metrics: dict[str, float] = {}
    random_return: float | None = None
    recall_return: float | None = None
    recall_from: str = ""


class Evaluation(Message, tag="evaluation"):
    """The coordinator's evaluation of one snapshot on fixed-seed evaluation worlds."""

    agent: str
    version: Int64
    step: Int64
    env_id: str
    algo: str
    mean_return: float
    std_return: float
    episodes: Int64
    seeds: list[int]
    seconds: float
    ts: float
    regimes: list[RegimeScore] = []
    baseline: str = ""
    baseline_return: float | None = None
    train_regime: str = ""
    #: Mean over regimes of each regime's ``recall_return`` (its ``mean_return`` where the
    #: agent would keep its current policy): the agent's worth with its library. ``None``
    #: when the snapshot carries no library.
    recall_return: float | None = None
    signature: str | None = None


class LeaderboardEntry(_Struct):
    agent: str
    env_id: str
    algo: str
    version: Int64
    step: Int64
    eval_return: float


class Leaderboard(Message, tag="leaderboard"):
    """The latest evaluation of every agent, best first. Retained."""

    ts: float
    entries: list[LeaderboardEntry]
    signature: str | None = None


# --- remote evaluation (docs/scaling.md, "Evaluators anywhere") -----------------------------


class EvaluatorPresence(Message, tag="evaluator_presence"):
    """An evaluator's presence, retained; its Last Will carries the same with ``offline``.

    ``session`` is new on every connection: work handed to an earlier session of the same
    evaluator is handed out again, since a clean session lost whatever was on its way.
    """

    evaluator: str
    state: Literal["online", "offline"]
    session: str
    ts: float
    pid: Int64 = 0
    signature: str | None = None


class EvaluationTask(Message, tag="evaluation_task"):
    """The coordinator hands one snapshot to one evaluator.

    ``snapshot`` is the snapshot's MessagePack payload as the agent published it; the
    evaluator decodes and validates it itself. ``task`` names the work (agent, version and
    life): results are recorded once per task, whoever sends them.
    """

    task: str
    evaluator: str
    session: str
    snapshot: bytes
    episodes: Int64
    seed: Int64
    max_episode_steps: Int64
    ts: float
    signature: str | None = None


class RegimeOutcome(_Struct):
    """What an evaluator measured on one regime: every return, not only their means."""

    regime: str
    returns: list[float]
    metrics: dict[str, float] = {}
    baseline_returns: list[float] | None = None
    baseline_metrics: dict[str, float] = {}
    random_returns: list[float] | None = None
    recall_returns: list[float] | None = None
    recall_from: str = ""


class TaskResult(Message, tag="task_result"):
    """An evaluator's result for a task: the regimes played, or why it could not play them.

    ``error_reason`` is empty on success, else a reject reason (``incompatible``, ``digest``,
    ...) that the coordinator counts as it would its own evaluation's failure.
    """

    task: str
    evaluator: str
    session: str
    regimes: list[RegimeOutcome] = []
    baseline: str = ""
    seconds: float = 0.0
    error_reason: str = ""
    error_detail: str = ""
    ts: float = 0.0
    signature: str | None = None
