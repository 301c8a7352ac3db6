"""Helpers for the processes the society starts."""

from __future__ import annotations

import subprocess
import sys


def test_lower_priority_lowers_this_process_by_as_much_and_zero_leaves_it() -> None:
    code = (
        "import os; from agents._process import lower_priority\n"
        "before = os.getpriority(os.PRIO_PROCESS, 0)\n"
        "lower_priority(0); same = os.getpriority(os.PRIO_PROCESS, 0)\n"
        "lower_priority(5); print(before, same, os.getpriority(os.PRIO_PROCESS, 0))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    before, same, after = map(int, out.stdout.split())
    assert same == before
    assert after == min(19, before + 5)
