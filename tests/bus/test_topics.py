from __future__ import annotations

import pytest

from agents.bus.topics import DELIVERY, Kind, TopicRef, Topics, parse_topic, topic_matches
from agents.exceptions import ConfigError


def test_agent_topics_follow_the_tree() -> None:
    topics = Topics("home")
    assert topics.agent("a1", Kind.STATUS) == "society/home/agents/a1/status"
    assert topics.agent("a1", Kind.POLICY) == "society/home/agents/a1/policy"
    assert topics.agents_filter(Kind.EXPERIENCE) == "society/home/agents/+/experience"
    assert topics.coordinator(Kind.EVALUATION) == "society/home/coordinator/evaluations"
    assert topics.coordinator(Kind.LEADERBOARD) == "society/home/coordinator/leaderboard"
    assert topics.everything == "society/home/#"


def test_coordinator_kinds_are_not_agent_topics() -> None:
    topics = Topics("home")
    with pytest.raises(ValueError, match="not an agent topic"):
        topics.agent("a1", Kind.LEADERBOARD)
    with pytest.raises(ValueError, match="not a coordinator topic"):
        topics.coordinator(Kind.STATUS)


@pytest.mark.parametrize("kind", [Kind.STATUS, Kind.EXPERIENCE, Kind.POLICY, Kind.TELEMETRY])
def test_parse_inverts_build(kind: Kind) -> None:
    topics = Topics("s-1")
    assert topics.parse(topics.agent("agent_7", kind)) == TopicRef("s-1", kind, "agent_7")


@pytest.mark.parametrize(
    "topic",
    [
        "society/home/agents/a1/unknown",
        "society/home/agents/a1",
        "society/home/agents/a1/status/extra",
        "society/home/coordinator/status",
        "other/home/agents/a1/status",
        "society/home/agents/+/status",
        "",
    ],
)
def test_parse_rejects_what_is_not_in_the_tree(topic: str) -> None:
    assert parse_topic(topic) is None


def test_parse_ignores_other_societies() -> None:
    assert Topics("home").parse("society/office/agents/a1/status") is None


@pytest.mark.parametrize("bad", ["", "a/b", "a+", "#", "-lead", "x" * 65, "sp ace"])
def test_names_that_could_widen_a_subscription_are_refused(bad: str) -> None:
    with pytest.raises(ConfigError, match="invalid"):
        Topics(bad)


@pytest.mark.parametrize(
    ("topic_filter", "topic", "expected"),
    [
        ("a/b", "a/b", True),
        ("a/+", "a/b", True),
        ("a/+", "a/b/c", False),
        ("a/#", "a", True),
        ("a/#", "a/b/c", True),
        ("#", "a/b", True),
        ("#", "$SYS/x", False),
        ("+/b", "$SYS/b", False),
        ("a/+/c", "a/b/c", True),
        ("a/+/c", "a/b/d", False),
        ("a/b", "a/b/c", False),
        ("a/b/c", "a/b", False),
    ],
)
def test_topic_matching(topic_filter: str, topic: str, expected: bool) -> None:
    assert topic_matches(topic_filter, topic) is expected


def test_delivery_rules() -> None:
    assert DELIVERY[Kind.STATUS].retain
    assert DELIVERY[Kind.POLICY].retain
    assert DELIVERY[Kind.POLICY].durable
    assert DELIVERY[Kind.EXPERIENCE].qos == 1
    assert not DELIVERY[Kind.EXPERIENCE].retain
    assert DELIVERY[Kind.EXPERIENCE].durable
    assert DELIVERY[Kind.LEADERBOARD].retain
    # Telemetry carries the episodes the lifelong metrics are computed from: durable, QoS 1.
    assert DELIVERY[Kind.TELEMETRY].durable
    assert DELIVERY[Kind.TELEMETRY].qos == 1
