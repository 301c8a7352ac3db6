"""The society's MQTT topic tree, built in one place.

Every topic the project publishes or subscribes to is made here, so the tree can be read (and
changed) in one module. The layout, documented in ``docs/protocol.md``::

    society/{society}/agents/{agent}/status       retained, QoS 1, Last Will "offline"
    society/{society}/agents/{agent}/experience   QoS 1, columnar batches of transitions
    society/{society}/agents/{agent}/policy       retained, QoS 1, the latest snapshot
    society/{society}/agents/{agent}/telemetry    QoS 0, progress and episode returns
    society/{society}/agents/{agent}/weights      QoS 1, federated learning's weights
    society/{society}/agents/{agent}/directive    QoS 1, coordinator to agent
    society/{society}/coordinator/evaluations     QoS 1, one message per evaluated snapshot
    society/{society}/coordinator/leaderboard     retained, QoS 1
    society/{society}/evaluators/{evaluator}/presence  retained, QoS 1, Last Will "offline"
    society/{society}/evaluators/{evaluator}/task      QoS 1, coordinator to evaluator
    society/{society}/evaluators/{evaluator}/result    QoS 1, evaluator to coordinator

``{agent}`` doubles as the MQTT client id, so a broker ACL can confine an agent to its own
subtree with a ``%c`` pattern.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from agents.exceptions import ConfigError

__all__ = [
    "DELIVERY",
    "ROOT",
    "SHARE_KINDS",
    "Delivery",
    "Kind",
    "TopicRef",
    "Topics",
    "topic_matches",
    "validate_name",
]

ROOT = "society"

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class Kind(StrEnum):
    """What a message is; also the last level of its topic."""

    STATUS = "status"
    EXPERIENCE = "experience"
    POLICY = "policy"
    TELEMETRY = "telemetry"
    DIRECTIVE = "directive"
    EVALUATION = "evaluations"
    LEADERBOARD = "leaderboard"
    WEIGHTS = "weights"
    RECEIPT = "receipt"
    PRESENCE = "presence"
    TASK = "task"
    RESULT = "result"


#: What an agent can share with (and take in from) its peers, each over its own topics:
#: ``experience`` (transitions), ``snapshots`` (policies to recall), ``evolution`` (the
#: coordinator's directives) and ``federated`` (weights averaged with alike peers').
SHARE_KINDS = ("experience", "snapshots", "evolution", "federated")

AGENT_KINDS = (
    Kind.STATUS, Kind.EXPERIENCE, Kind.POLICY, Kind.TELEMETRY, Kind.DIRECTIVE, Kind.WEIGHTS,
    Kind.RECEIPT,
)  # fmt: skip
COORDINATOR_KINDS = (Kind.EVALUATION, Kind.LEADERBOARD)
EVALUATOR_KINDS = (Kind.PRESENCE, Kind.TASK, Kind.RESULT)


@dataclass(frozen=True, slots=True)
class Delivery:
    """How a kind of message travels: MQTT QoS, retained flag, and whether it is durable.

    Durable messages go through the sender's on-disk outbox and survive a broker outage or a
    crash of the sender; the others are sent when connected and dropped otherwise.
    """

    qos: int
    retain: bool
    durable: bool


DELIVERY: dict[Kind, Delivery] = {
    Kind.STATUS: Delivery(qos=1, retain=True, durable=False),
    Kind.EXPERIENCE: Delivery(qos=1, retain=False, durable=True),
    Kind.POLICY: Delivery(qos=1, retain=True, durable=True),
    # Durable: the episodes it carries are what the lifelong metrics are computed from.
    Kind.TELEMETRY: Delivery(qos=1, retain=False, durable=True),
    Kind.DIRECTIVE: Delivery(qos=1, retain=False, durable=True),
    Kind.EVALUATION: Delivery(qos=1, retain=False, durable=True),
    Kind.LEADERBOARD: Delivery(qos=1, retain=True, durable=True),
    # Perishable: the next round replaces a lost one, and nobody waits for it.
    Kind.WEIGHTS: Delivery(qos=1, retain=False, durable=False),
    # The latest replaces any lost one; retained, so an agent that reconnects finds it.
    Kind.RECEIPT: Delivery(qos=1, retain=True, durable=False),
    Kind.PRESENCE: Delivery(qos=1, retain=True, durable=False),
    # Perishable: the coordinator keeps the work pending and hands it out again if lost.
    Kind.TASK: Delivery(qos=1, retain=False, durable=False),
    Kind.RESULT: Delivery(qos=1, retain=False, durable=True),
}


def validate_name(value: str, what: str) -> str:
    """Return ``value`` if it is usable as one topic level, else raise :class:`ConfigError`.

    Names are 1-64 characters of letters, digits, ``_``, ``-`` and ``.``, starting with a letter
    or digit: no ``/``, ``+`` or ``#``, so a name can never widen a subscription.
    """
    if not _NAME.fullmatch(value):
        msg = (
            f"invalid {what} {value!r}: use 1-64 letters, digits, '_', '-' or '.', "
            "starting with a letter or digit"
        )
        raise ConfigError(msg)
    return value


@dataclass(frozen=True, slots=True)
class TopicRef:
    """A parsed society topic.

    ``agent`` is set for agent topics only, ``evaluator`` for evaluator topics only.
    """

    society: str
    kind: Kind
    agent: str | None = None
    evaluator: str | None = None


class Topics:
    """Topic names and subscription filters for one society."""

    def __init__(self, society: str) -> None:
        self.society = validate_name(society, "society name")
        self.base = f"{ROOT}/{self.society}"

    def agent(self, agent: str, kind: Kind) -> str:
        """The topic on which ``agent`` publishes (or, for directives, receives) ``kind``."""
        return f"{self.base}/agents/{agent}/{_of(kind, AGENT_KINDS, 'an agent')}"

    def agents_filter(self, kind: Kind) -> str:
        """A subscription filter matching ``kind`` from every agent of the society."""
        return f"{self.base}/agents/+/{_of(kind, AGENT_KINDS, 'an agent')}"

    def coordinator(self, kind: Kind) -> str:
        return f"{self.base}/coordinator/{_of(kind, COORDINATOR_KINDS, 'a coordinator')}"

    def evaluator(self, evaluator: str, kind: Kind) -> str:
        """The topic of ``kind`` for ``evaluator`` (its presence, its tasks, its results)."""
        return f"{self.base}/evaluators/{evaluator}/{_of(kind, EVALUATOR_KINDS, 'an evaluator')}"

    def evaluators_filter(self, kind: Kind) -> str:
        """A subscription filter matching ``kind`` of every evaluator of the society."""
        return f"{self.base}/evaluators/+/{_of(kind, EVALUATOR_KINDS, 'an evaluator')}"

    @property
    def everything(self) -> str:
        """A filter matching every topic of the society (for inspectors)."""
        return f"{self.base}/#"

    def parse(self, topic: str) -> TopicRef | None:
        """Parse a topic of this society; ``None`` if it is not one of ours."""
        ref = parse_topic(topic)
        if ref is None or ref.society != self.society:
            return None
        return ref


def parse_topic(topic: str) -> TopicRef | None:
    """Parse any society topic; ``None`` if the topic is not in the tree."""
    levels = topic.split("/")
    if len(levels) == 5 and levels[0] == ROOT:  # noqa: PLR2004
        _, society, section, owner, last = levels
        kinds = {"agents": AGENT_KINDS, "evaluators": EVALUATOR_KINDS}.get(section)
        kind = _kind(last)
        if kinds is None or kind not in kinds or not _NAME.fullmatch(owner):
            return None
        if not _NAME.fullmatch(society):
            return None
        if section == "agents":
            return TopicRef(society=society, kind=kind, agent=owner)
        return TopicRef(society=society, kind=kind, evaluator=owner)
    if len(levels) == 4 and levels[0] == ROOT and levels[2] == "coordinator":  # noqa: PLR2004
        _, society, _, last = levels
        kind = _kind(last)
        if kind in COORDINATOR_KINDS and _NAME.fullmatch(society):
            return TopicRef(society=society, kind=kind)
    return None


def _kind(level: str) -> Kind | None:
    try:
        return Kind(level)
    except ValueError:
        return None


def topic_matches(topic_filter: str, topic: str) -> bool:
    """Whether ``topic`` matches the MQTT subscription filter ``topic_filter``.

    Implements MQTT 3.1.1 section 4.7: ``+`` matches one level, a trailing ``#`` matches the
    parent level and everything below it, and filters starting with a wildcard do not match
    topics starting with ``$``.
    """
    if topic.startswith("$") and topic_filter[:1] in {"+", "#"}:
        return False
    filter_levels = topic_filter.split("/")
    topic_levels = topic.split("/")
    for index, level in enumerate(filter_levels):
        if level == "#":
            return index == len(filter_levels) - 1
        if index >= len(topic_levels):
            return False
        if level not in {"+", topic_levels[index]}:
            return False
    return len(filter_levels) == len(topic_levels)


def _of(kind: Kind, kinds: tuple[Kind, ...], whose: str) -> str:
    """``kind``'s topic level, if it is one of ``whose`` topics (else ``ValueError``)."""
    if kind not in kinds:
        msg = f"{kind} is not {whose} topic"
        raise ValueError(msg)
    return kind.value
