"""The lifelong benchmark's scoring, from raw records: what ``--rescore`` recomputes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench import lifelong


def raw_record() -> dict[str, Any]:
    """A hand-made CartPole life: 500s, a drift that costs two short failures, 500s again."""
    episodes: list[tuple[int, str, float]] = []
    step = 0
    for regime, returns in [
        ("earth", [500.0] * 3),
        ("reversed_motor", [20.0, 20.0, 500.0, 500.0]),
        ("earth", [10.0, 500.0, 500.0]),
    ]:
        for value in returns:
            step += int(value)
            episodes.append((step, regime, value))
    evaluations = [
        (1500, "earth", {"earth": 500.0, "reversed_motor": 20.0}),
        (2540, "reversed_motor", {"earth": 500.0, "reversed_motor": 500.0}),
        (3550, "earth", {"earth": 500.0, "reversed_motor": 500.0}),
    ]
    return {
        "phases": [["earth", 1500], ["reversed_motor", 1040], ["earth", 1010]],
        "learn_seconds": 1.0,
        "drift_events": 2,
        "adaptations": [
            {"step": 1520, "chosen": "fresh", "sandbox_steps": 30},
            {"step": 2550, "chosen": "library:1", "sandbox_steps": 40},
        ],
        "episodes": episodes,
        "evaluations": evaluations,
        "references": {},
    }


def test_a_run_is_scored_from_its_raw_record() -> None:
    run = lifelong.score("cartpole", "lifelong", 0, raw_record())
    new, known = run["recoveries"]
    # Window 10 covers each whole block. Reversed averages 260, below earth's 500: never
    # recovered, counted at the block's length, plus its sandbox steps.
    assert (new["regime"], new["recovered"], new["steps"], new["sandbox_steps"]) == (
        "reversed_motor", False, 1040, 30,
    )  # fmt: skip
    assert new["steps_with_sandbox"] == 1070
    # Back on earth the block averages 336.7: at once above reversed's level (260, l2metrics'
    # reference), never back at earth's own 500.
    assert (known["regime"], known["known"], known["recovered"]) == ("earth", True, True)
    assert (known["steps"], known["steps_with_sandbox"]) == (0, 40)
    assert not known["regime_recovered"]
    assert known["regime_steps_with_sandbox"] == 1010 + 40
    # Nothing was forgotten: every regime scored as well after as right after its block.
    assert run["performance_maintenance"] == pytest.approx(0.0)
    assert run["final_scores"] == {"earth": 1.0, "reversed_motor": 1.0}


def test_raw_records_survive_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lifelong, "RAW", tmp_path / "raw.json.gz")
    assert lifelong.read_raw_records() == {}
    record = raw_record()
    lifelong.write_raw_records({("cartpole", "lifelong", 3): record})
    [(key, back)] = lifelong.read_raw_records().items()
    assert key == ("cartpole", "lifelong", 3)
    assert back["episodes"] == [list(e) for e in record["episodes"]]
    assert lifelong.score("cartpole", "lifelong", 3, back) == lifelong.score(
        "cartpole", "lifelong", 3, record
    )
