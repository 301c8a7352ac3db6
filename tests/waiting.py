"""Waiting for a condition in tests that run against real brokers and processes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

__all__ = ["eventually"]


async def eventually(
    predicate: Callable[..., object],
    timeout: float = 30.0,
    *,
    what: str = "condition",
    describe: Callable[[], str] | None = None,
    interval: float = 0.05,
) -> None:
    """Wait until ``predicate()`` holds, polling every ``interval`` seconds.

    On timeout the test fails naming ``what`` and, if given, the state ``describe()`` reports
    at that moment (a stalled wait says where it stuck, not only that it did).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            state = f": {describe()}" if describe is not None else ""
            pytest.fail(f"{what} not reached in {timeout:g} s{state}")
        await asyncio.sleep(interval)
