from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from agents.bus.outbox import RESENT, UNRECEIPTED_DROPPED, Outbox


def test_fifo_until_removed(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.sqlite")
    for i in range(5):
        outbox.put(f"t/{i}", bytes([i]), retain=i == 2)
    items = outbox.peek(3)
    assert [item.topic for item in items] == ["t/0", "t/1", "t/2"]
    assert items[2].retain
    outbox.remove(items[0].id)
    assert outbox.peek(1)[0].topic == "t/1"
    assert outbox.pending() == 4
    assert outbox.pending("t/3") == 1


def test_messages_and_counters_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    first = Outbox(path)
    for _ in range(3):
        first.put_counted("seq", lambda n: ("t", str(n).encode()))
    first.close()  # the process "dies" here
    second = Outbox(path)
    assert second.counter("seq") == 3
    assert [item.payload for item in second.peek()] == [b"1", b"2", b"3"]
    assert second.put_counted("seq", lambda n: ("t", str(n).encode())) == 4


def test_a_failed_build_uses_no_number(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.sqlite")
    outbox.put_counted("seq", lambda n: ("t", b"x"))

    def broken(n: int) -> tuple[str, bytes]:
        msg = "encoding failed"
        raise ValueError(msg)

    with pytest.raises(ValueError, match="encoding failed"):
        outbox.put_counted("seq", broken)
    assert outbox.counter("seq") == 1
    assert outbox.pending() == 1
    assert outbox.put_counted("seq", lambda n: ("t", b"y")) == 2


def test_counters_never_go_down() -> None:
    outbox = Outbox()
    outbox.advance_counter("v", 10)
    outbox.advance_counter("v", 4)
    assert outbox.counter("v") == 10


def numbered(outbox: Outbox, count: int, stream: str = "experience") -> None:
    for _ in range(count):
        outbox.put_counted("seq", lambda n: ("t", f"m{n}".encode()), receipted=stream)


def send_all(outbox: Outbox, now: float) -> list[bytes]:
    items = outbox.peek()
    for item in items:
        outbox.acknowledged(item.id, now)
    return [item.payload for item in items]


def test_a_receipted_message_stays_after_the_broker_ack_until_a_receipt_covers_it() -> None:
    outbox = Outbox()
    outbox.put("plain", b"p")
    numbered(outbox, 5)
    assert send_all(outbox, now=100.0) == [b"p", b"m1", b"m2", b"m3", b"m4", b"m5"]
    assert (outbox.unsent(), outbox.awaiting(), outbox.pending()) == (0, 5, 5)  # plain gone
    again = outbox.receipted("experience", floor=2, highest=5, missing=[3], resend_before=0.0)
    assert again == 1
    assert send_all(outbox, now=101.0) == [b"m3"]  # the missing one goes again
    assert outbox.counter(RESENT) == 1
    outbox.receipted("experience", floor=5, highest=5, missing=[], resend_before=0.0)
    assert outbox.pending() == 0


def test_a_tail_the_receiver_never_saw_goes_again_after_the_grace() -> None:
    outbox = Outbox()
    numbered(outbox, 4)
    send_all(outbox, now=100.0)
    # The receiver has 1 and 2; 3 and 4 were acknowledged at 100: too recent at first...
    assert outbox.receipted("experience", floor=2, highest=2, missing=[], resend_before=99.0) == 0
    # ... and missing for good once the grace has passed.
    assert outbox.receipted("experience", floor=2, highest=2, missing=[], resend_before=161.0) == 2
    assert send_all(outbox, now=162.0) == [b"m3", b"m4"]
    # Another stream's receipt touches nothing of this one.
    assert outbox.receipted("telemetry", floor=9, highest=9, missing=[], resend_before=999.0) == 0
    assert outbox.awaiting() == 2


def test_messages_awaiting_receipts_are_bounded_and_what_goes_is_counted() -> None:
    outbox = Outbox(max_awaiting=3)
    numbered(outbox, 5)
    send_all(outbox, now=1.0)
    assert outbox.awaiting() == 3
    assert outbox.counter(UNRECEIPTED_DROPPED) == 2
    assert [item.payload for item in outbox.peek()] == []
    assert outbox.receipted("experience", floor=0, highest=5, missing=[1, 2, 3], resend_before=0)
    assert send_all(outbox, now=2.0) == [b"m3"]  # 1 and 2 were given up


def test_an_outbox_from_before_receipts_opens_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, "
        "payload BLOB NOT NULL, qos INTEGER NOT NULL, retain INTEGER NOT NULL);"
        "CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);"
        "INSERT INTO outbox(topic, payload, qos, retain) VALUES ('t', x'01', 1, 0);"
    )
    db.commit()
    db.close()
    outbox = Outbox(path)
    assert [item.payload for item in outbox.peek()] == [b"\x01"]
    numbered(outbox, 1)
    send_all(outbox, now=1.0)
    assert (outbox.pending(), outbox.awaiting()) == (1, 1)
    outbox.close()
