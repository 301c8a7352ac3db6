"""The shared wait helper: a stalled wait fails saying what it waited for and where it stuck."""

from __future__ import annotations

import pytest

from tests.waiting import eventually


async def test_a_wait_returns_once_the_condition_holds() -> None:
    calls = iter([False, False, True])
    await eventually(lambda: next(calls), timeout=5, interval=0.001)


async def test_a_stalled_wait_names_what_it_waited_for_and_the_state() -> None:
    with pytest.raises(pytest.fail.Exception, match=r"the floor not reached in 0.05 s: floor 3"):
        await eventually(lambda: False, 0.05, what="the floor", describe=lambda: "floor 3")
