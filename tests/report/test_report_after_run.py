"""``society run`` leaves a report in its run folder, and ``society report`` renders it again."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def society(*args: str) -> list[str]:
    return [sys.executable, "-m", "agents", *args]


def test_a_real_run_gets_its_report(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = subprocess.run(
        society("run", "--scenario", "cartpole", "--agents", "1", "--steps", "1000", "--twins",
                "--out", str(out), "--quiet"),
        capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    page = (out / "report.html").read_text()
    figures = {path.name for path in (out / "figures").glob("*.png")}
    # Both members were evaluated, the twin pair is measured, the coordinator sampled the bus.
    assert {"evaluation-cartpole-0.png", "evaluation-cartpole-0-twin.png", "sharing.png",
            "bus-health.png"} <= figures  # fmt: skip
    for name in figures:
        assert (out / "figures" / name).read_bytes().startswith(PNG_SIGNATURE)
        assert f'href="figures/{name}"' in page
    assert len(re.findall(r'src="data:image/png;base64,', page)) == len(figures)
    assert "No adoptions" in page  # PPO agents that never drifted adopt nothing

    before = (out / "report.html").stat().st_mtime_ns
    again = subprocess.run(
        society("report", str(out)), capture_output=True, text=True, timeout=120, check=False
    )
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == f"report: {out / 'report.html'}"
    assert (out / "report.html").stat().st_mtime_ns > before
