from __future__ import annotations

from pathlib import Path

import pytest

from agents.bus.outbox import Outbox


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
