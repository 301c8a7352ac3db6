"""`make bench` runs every benchmark: each script in bench/ is listed, with arguments it accepts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.run_all import BENCH, BENCHMARKS

HELPERS = {"__init__.py", "common.py", "run_all.py", "society_size.py"}  # run by scaling.py


def test_every_benchmark_script_is_run_by_make_bench() -> None:
    scripts = {p.name for p in BENCH.glob("*.py")} - HELPERS
    assert scripts == {script for script, *_ in BENCHMARKS.values()}


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_make_bench_passes_arguments_the_script_accepts(name: str) -> None:
    script, *arguments = BENCHMARKS[name]
    # Values before --help are checked as argparse takes them (choices, types); flags it does
    # not know would only be reported after --help, so they are looked up in the help text.
    done = subprocess.run(
        [sys.executable, str(BENCH / script), *arguments, "--help"],
        capture_output=True, text=True, timeout=120, check=False,
        cwd=Path(__file__).resolve().parents[1],
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    flags = [a for a in arguments if a.startswith("--")]
    assert [f for f in flags if f not in done.stdout] == []
