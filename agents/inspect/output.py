"""How the inspector prints what it sees: a table that grows line by line, or JSON lines.

Either way every message is one line, written and flushed as it arrives, so the output can be
watched, piped into ``grep`` or ``jq``, or read by a test while the inspector runs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Final, TextIO

from agents.inspect.decoding import Scalar, Seen

__all__ = ["Printer", "table_header", "table_row"]

#: (title, width) of the fixed columns; the details column takes the rest of the line.
_COLUMNS: Final = (("TIME", 12), ("SOCIETY", 12), ("AGENT", 18), ("KIND", 11),
                   ("SEQ/VER", 7), ("BYTES", 9))  # fmt: skip
_HEADER_EVERY = 50


def table_header() -> str:
    cells = [title.ljust(width) if i < 4 else title.rjust(width)  # noqa: PLR2004
             for i, (title, width) in enumerate(_COLUMNS)]  # fmt: skip
    return " ".join([*cells, "DETAILS"])


def table_row(seen: Seen) -> str:
    clock = (
        time.strftime("%H:%M:%S", time.localtime(seen.ts)) + f".{int(seen.ts * 1000) % 1000:03d}"
    )
    number = "" if seen.number is None else str(seen.number)
    values = (clock, seen.society, seen.agent, seen.kind, number, f"{seen.size:,}")
    cells = [
        _fit(value, width).ljust(width) if i < 4 else _fit(value, width).rjust(width)  # noqa: PLR2004
        for i, (value, (_, width)) in enumerate(zip(values, _COLUMNS, strict=True))
    ]
    if seen.reason is not None:
        details = f"REJECTED {seen.reason}: {seen.error}"
    else:
        details = " ".join(f"{k}={_cell(v)}" for k, v in seen.fields.items() if v is not None)
    if seen.retained:
        details = f"(retained) {details}"
    return " ".join([*cells, details])


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _cell(value: Scalar) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


class Printer:
    """Filters by kind, prints, counts; calls ``on_done`` after ``count`` printed messages.

    Args:
        out: where lines go (stdout).
        json_lines: one JSON object per message instead of table rows.
        kinds: kind names to show (``None``: all). A message whose topic is outside the tree
            has no kind and is shown only when no filter is set.
        count: stop after this many printed messages (``None``: never).
        on_done: called once, when ``count`` is reached or ``out`` is closed (a closed pipe,
            as with ``| head``).
    """

    def __init__(
        self,
        out: TextIO,
        *,
        json_lines: bool = False,
        kinds: frozenset[str] | None = None,
        count: int | None = None,
        on_done: Callable[[], None] = lambda: None,
    ) -> None:
        self.out = out
        self.json_lines = json_lines
        self.kinds = kinds
        self.count = count
        self.on_done = on_done
        self.printed = 0
        self.done = False

    def wants(self, seen: Seen) -> bool:
        return self.kinds is None or seen.kind in self.kinds

    def show(self, seen: Seen) -> None:
        if self.done or not self.wants(seen):
            return
        if self.json_lines:
            line = json.dumps(seen.as_json(), ensure_ascii=False)
        else:
            row = table_row(seen)
            line = f"{table_header()}\n{row}" if self.printed % _HEADER_EVERY == 0 else row
        try:
            self.out.write(line + "\n")
            self.out.flush()
        except (BrokenPipeError, ValueError):  # the reader went away, or out was closed
            self._finish()
            return
        self.printed += 1
        if self.count is not None and self.printed >= self.count:
            self._finish()

    def _finish(self) -> None:
        if not self.done:
            self.done = True
            self.on_done()
