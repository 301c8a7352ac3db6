"""The regret benchmark's final figure per regime: the policy the agent had there last."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from bench import regret


@dataclass
class Snap:
    step: int
    regime: str


def test_each_regime_is_scored_on_the_latest_snapshot_taken_while_living_in_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    snapshots = [Snap(20_000, "winter"), Snap(30_000, "summer"), Snap(45_000, "summer"),
                 Snap(50_000, "winter")]  # fmt: skip
    evaluated: list[int] = []

    def evaluate(_learner: Any, state: Snap, _config: Any) -> dict[str, Any]:
        evaluated.append(state.step)
        return {r: {"mean": float(state.step), "regime": r} for r in ("winter", "summer")}

    monkeypatch.setattr(regret, "evaluate_state", evaluate)
    last = evaluate(None, snapshots[-1], None)
    evaluated.clear()
    out = regret.last_in_each_regime(None, snapshots, None, last)
    # Winter: the run's last snapshot, already evaluated; summer: the one at 45,000.
    assert evaluated == [45_000]
    assert out["winter"]["mean"] == 50_000.0
    assert out["winter"]["step"] == 50_000
    assert out["summer"]["mean"] == 45_000.0
    assert out["summer"]["step"] == 45_000


def test_the_summary_reads_the_per_regime_figures_and_marks_older_rows() -> None:
    def regime(mean: float) -> dict[str, Any]:
        return {"mean": mean, "baseline": -10.0, "random": -100.0, "metrics": {},
                "baseline_metrics": {}}  # fmt: skip

    run = {
        "world": "home-battery", "seed": 0, "steps": 100, "regret_at_default": [-1.0, -10.0],
        "regret_at_end": [-1.0, -10.0], "controller_steps": 10,
        "first": {"winter": regime(-10.0)},
        "last": {"winter": regime(-9.0)},
    }  # fmt: skip
    newer = {**run, "in_regime": {"winter": {**regime(-8.0), "step": 90}}}
    older_row, newer_row = (regret.summarise([r])["home-battery"]["rows"][0] for r in (run, newer))
    assert older_row["final_of"] == "last"
    assert older_row["final"]["winter"]["gain"] == pytest.approx(0.1)
    assert newer_row["final_of"] == "in_regime"
    assert newer_row["final"]["winter"]["gain"] == pytest.approx(0.2)
    assert newer_row["final"]["winter"]["step"] == 90
