"""The receiving side of the bus: untrusted bytes in, validated typed messages out.

:class:`Inbox` is the one place where received payloads are parsed, validated, de-duplicated
and counted. Every rejection is counted by reason and logged once per (reason, topic) at
WARNING (later repeats at DEBUG), and never raises into the connection loop.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from agents.bus.codec import decode
from agents.bus.schemas import (
    ExperienceBatch,
    Message,
    PolicySnapshot,
    Telemetry,
)
from agents.bus.signing import verify
from agents.bus.topics import Kind, TopicRef, Topics
from agents.bus.transport import RawMessage
from agents.exceptions import MessageRejected

__all__ = ["Inbox", "InboxStats", "SeqTracker"]

log = logging.getLogger(__name__)

Handler = Callable[[TopicRef, Message], Awaitable[None]]

_LOGGED_ONCE_LIMIT = 10_000


class SeqTracker:
    """Remembers which sequence numbers of one stream were seen, in O(gaps) memory.

    Everything up to ``floor`` has been seen (or was before we joined: a new tracker starts at
    the first number it sees); ``above`` holds numbers seen beyond a gap. A gap wider than
    ``max_gap`` numbers is given up on, so memory stays bounded.
    """

    def __init__(self, floor: int | None = None, *, max_gap: int = 100_000) -> None:
        self.floor = floor
        self.max_gap = max_gap
        self.above: set[int] = set()
        #: Numbers that arrived after a later one had (a gap filled: a repair).
        self.repaired = 0
        #: Numbers given up on (a gap wider than ``max_gap``).
        self.given_up = 0
        #: The sender's life these numbers belong to (0: not known, as after a restore).
        self.incarnation = 0

    @property
    def highest(self) -> int:
        """The highest number seen (``floor`` when nothing beyond it)."""
        return max(self.above, default=self.floor or 0)

    @property
    def missing_count(self) -> int:
        """How many numbers below the highest seen have not arrived."""
        if not self.above or self.floor is None:
            return 0
        return self.highest - self.floor - len(self.above)

    def add(self, seq: int) -> bool:
        """Record ``seq``; returns False if it was seen before (a duplicate)."""
        if self.floor is None:
            self.floor = seq - 1
        if seq <= self.floor or seq in self.above:
            return False
        if self.above and seq < self.highest:
            self.repaired += 1
        self.above.add(seq)
        if len(self.above) > self.max_gap:
            self.given_up += self.missing_count
            self.floor = min(self.above) - 1
        while self.floor + 1 in self.above:
            self.floor += 1
            self.above.remove(self.floor)
        return True

    @property
    def missing(self) -> list[int]:
        """Numbers below the highest seen that have not arrived (yet)."""
        return self.lowest_missing(self.missing_count)

    def lowest_missing(self, limit: int) -> list[int]:
        """The lowest ``limit`` numbers below the highest seen that have not arrived."""
        found: list[int] = []
        if self.floor is None:
            return found
        number = self.floor + 1
        while len(found) < min(limit, self.missing_count):
            if number not in self.above:
                found.append(number)
            number += 1
        return found


@dataclass(slots=True)
class InboxStats:
    """What came in, by kind; what was refused, by reason; what was seen twice, by kind."""

    received: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    duplicates: Counter[str] = field(default_factory=Counter)


class Inbox:
    """Turns raw messages of one society into validated messages for ``handler``.

    Args:
        topics: the society's topic tree; messages of other societies count as ``topic``
            rejections (they should not arrive, given our subscriptions).
        handler: called with each accepted message and its parsed topic.
        kinds: the kinds this process wants; others are ignored without counting.
        dedupe: de-duplicate experience by (agent, seq) and snapshots by (agent, version).
        key: the society's key: snapshots and directives must carry its HMAC signature.
        numbered_from_one: every agent's streams start at 1, so numbers before the first one
            seen are missing, not before our time (the coordinator, which receipts them; a
            peer joining late takes a stream from where it finds it).
    """

    def __init__(
        self,
        topics: Topics,
        handler: Handler,
        *,
        kinds: Iterable[Kind] | None = None,
        dedupe: bool = True,
        key: bytes | None = None,
        numbered_from_one: bool = False,
    ) -> None:
        self.topics = topics
        self.numbered_from_one = numbered_from_one
        #: Agents whose streams changed since :meth:`take_changed` was last called.
        self.changed: set[str] = set()
        self.handler = handler
        self.kinds = set(kinds) if kinds is not None else set(Kind)
        self.dedupe = dedupe
        self.key = key
        self.stats = InboxStats()
        self.streams: dict[tuple[Kind, str], SeqTracker] = {}
        self._logged: set[tuple[str, str]] = set()

    async def __call__(self, raw: RawMessage) -> None:
        ref = self.topics.parse(raw.topic)
        if ref is None:
            self._reject(raw.topic, MessageRejected("topic", "not a topic of this society"))
            return
        if ref.kind not in self.kinds:
            return
        try:
            message = decode(ref.kind, raw.payload)
            self._check_sender(ref, message)
            if self.key is not None:
                verify(message, self.key)
        except MessageRejected as exc:
            self._reject(raw.topic, exc)
            return
        self.stats.received[ref.kind.value] += 1
        if self.dedupe and self._is_duplicate(ref, message):
            self.stats.duplicates[ref.kind.value] += 1
            return
        await self.handler(ref, message)

    def remember(self, kind: Kind, agent: str, number: int) -> None:
        """Mark ``(agent, number)`` of ``kind`` as seen (state restored after a restart)."""
        tracker = self.streams.setdefault((kind, agent), SeqTracker(floor=0))
        tracker.add(number)
        self.changed.add(agent)

    def take_changed(self) -> set[str]:
        """The agents whose streams changed since the last call (and forget them)."""
        changed, self.changed = self.changed, set()
        return changed

    def forget(self, agent: str) -> None:
        """Forget ``agent``'s sequence numbers and versions: a new life numbers from 1."""
        for key in [key for key in self.streams if key[1] == agent]:
            del self.streams[key]

    def count_rejection(self, topic: str, exc: MessageRejected) -> None:
        """Count a rejection found later by the handler (say, incompatible spaces)."""
        self._reject(topic, exc)

    def _check_sender(self, ref: TopicRef, message: Message) -> None:
        if ref.evaluator is not None:
            claimed = getattr(message, "evaluator", None)
            if claimed != ref.evaluator:
                raise MessageRejected(
                    "topic",
                    f"payload says evaluator {claimed!r} on the topic of {ref.evaluator!r}",
                )
            return
        if ref.agent is None:
            return
        claimed = getattr(message, "agent", None)
        if claimed != ref.agent:
            raise MessageRejected(
                "topic", f"payload says agent {claimed!r} on the topic of {ref.agent!r}"
            )

    def _is_duplicate(self, ref: TopicRef, message: Message) -> bool:
        if isinstance(message, ExperienceBatch):
            number = message.seq
        elif isinstance(message, PolicySnapshot):
            number = message.version
        elif isinstance(message, Telemetry) and message.seq > 0:
            number = message.seq
        else:
            return False
        assert ref.agent is not None
        incarnation = getattr(message, "incarnation", 0)
        tracker = self.streams.get((ref.kind, ref.agent))
        if tracker is None:
            tracker = SeqTracker(floor=0 if self.numbered_from_one else None)
            tracker.incarnation = incarnation
            self.streams[(ref.kind, ref.agent)] = tracker
        elif incarnation and tracker.incarnation and incarnation != tracker.incarnation:
            # Another life's numbers (an old one's still in flight, or a new one's before it
            # said so): not counted against this life's; the handler decides what it is.
            return False
        elif incarnation and not tracker.incarnation:
            tracker.incarnation = incarnation
        if not tracker.add(number):
            return True
        self.changed.add(ref.agent)
        return False

    def _reject(self, topic: str, exc: MessageRejected) -> None:
        self.stats.rejected[exc.reason] += 1
        key = (exc.reason, topic)
        if key in self._logged:
            log.debug("rejected message on %s: %s", topic, exc)
            return
        if len(self._logged) < _LOGGED_ONCE_LIMIT:
            self._logged.add(key)
        log.warning("rejected message on %s: %s", topic, exc)
