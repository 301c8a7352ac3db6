"""Every kind of message signed with the society's key; anything else refused."""

from __future__ import annotations

import msgspec
import pytest

from agents.bus.codec import decode, encode
from agents.bus.inbox import Inbox
from agents.bus.schemas import Lineage, Message, Status
from agents.bus.signing import SIGNED_KINDS, sign, verify
from agents.bus.topics import Kind, TopicRef, Topics
from agents.bus.transport import RawMessage
from agents.exceptions import MessageRejected
from tests import factories

KEY = b"correct horse battery staple"


def test_a_signed_snapshot_verifies() -> None:
    snapshot = sign(factories.snapshot(), KEY)
    assert snapshot.signature is not None
    assert len(snapshot.signature) == 64
    verify(decode(Kind.POLICY, encode(snapshot)), KEY)


@pytest.mark.parametrize("field", ["step", "algo", "hyperparams", "lineage"])
def test_any_changed_field_breaks_the_signature(field: str) -> None:
    snapshot = sign(factories.snapshot(), KEY)
    changed = {
        "step": {"step": snapshot.step + 1},
        "algo": {"algo": "dqn"},
        "hyperparams": {"hyperparams": {"learning_rate": 1.0}},
        "lineage": {"lineage": Lineage(agent="mallory", version=1)},
    }[field]
    with pytest.raises(MessageRejected, match="does not match") as info:
        verify(msgspec.structs.replace(snapshot, **changed), KEY)  # type: ignore[arg-type]
    assert info.value.reason == "signature"


def test_unsigned_and_wrongly_keyed_messages_are_refused() -> None:
    with pytest.raises(MessageRejected, match="unsigned"):
        verify(factories.snapshot(), KEY)
    with pytest.raises(MessageRejected, match="does not match"):
        verify(sign(factories.directive(), b"another key"), KEY)


class Kept:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def __call__(self, ref: TopicRef, message: Message) -> None:
        self.messages.append(message)


async def test_one_flipped_byte_gets_a_snapshot_refused() -> None:
    topics = Topics("s")
    kept = Kept()
    inbox = Inbox(topics, kept, key=KEY)
    topic = topics.agent("a0", Kind.POLICY)
    payload = encode(sign(factories.snapshot(), KEY))
    await inbox(RawMessage(topic, payload))
    assert len(kept.messages) == 1
    # Flip one byte in the step field (a MessagePack uint) of a fresh version.
    second = encode(sign(factories.snapshot(version=2), KEY))
    at = second.index(b"\xa4step") + len(b"\xa4step") + 1
    tampered = bytearray(second)
    tampered[at] ^= 0x01
    await inbox(RawMessage(topic, bytes(tampered)))
    await inbox(RawMessage(topic, encode(factories.snapshot(version=3))))  # unsigned
    assert len(kept.messages) == 1
    assert inbox.stats.rejected["signature"] == 2


async def test_without_a_key_signatures_are_not_required() -> None:
    topics = Topics("s")
    kept = Kept()
    inbox = Inbox(topics, kept)
    await inbox(RawMessage(topics.agent("a0", Kind.DIRECTIVE), encode(factories.directive())))
    assert len(kept.messages) == 1


EVERY_KIND = [
    (Kind.STATUS, factories.status()),
    (Kind.EXPERIENCE, factories.experience()),
    (Kind.POLICY, factories.snapshot()),
    (Kind.WEIGHTS, factories.weights()),
    (Kind.TELEMETRY, factories.telemetry()),
    (Kind.DIRECTIVE, factories.directive()),
    (Kind.EVALUATION, factories.evaluation()),
    (Kind.LEADERBOARD, factories.leaderboard()),
    (Kind.RECEIPT, factories.receipt()),
    (Kind.PRESENCE, factories.presence()),
    (Kind.TASK, factories.task()),
    (Kind.RESULT, factories.task_result()),
]


@pytest.mark.parametrize(("kind", "message"), EVERY_KIND, ids=lambda x: getattr(x, "value", ""))
def test_every_kind_of_message_is_signed_and_checked(kind: Kind, message: Message) -> None:
    assert {kind.value for kind, _ in EVERY_KIND} == set(SIGNED_KINDS)
    signed = sign(message, KEY)
    verify(decode(kind, encode(signed)), KEY)
    with pytest.raises(MessageRejected, match="unsigned"):
        verify(decode(kind, encode(message)), KEY)
    with pytest.raises(MessageRejected, match="does not match"):
        verify(decode(kind, encode(signed)), b"another key")
    # A forged status (an agent marked offline by someone else) does not pass either.
    if isinstance(signed, Status):
        forged = msgspec.structs.replace(signed, state="offline")
        with pytest.raises(MessageRejected, match="does not match"):
            verify(forged, KEY)
