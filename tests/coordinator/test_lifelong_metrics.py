"""Lifelong-learning metrics on hand-made histories whose answers are worked out in comments."""

from __future__ import annotations

import dataclasses
import json
import math
import random
from collections.abc import Iterator, Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.coordinator.lifelong import (
    DEGENERATE_GAP,
    EpisodePoint,
    EvalPoint,
    Recovery,
    TrainingBlock,
    Transfer,
    backward_transfer,
    continual_world_forgetting,
    forward_transfer,
    lifelong_report,
    normalise,
    performance_maintenance,
    recovery_summary,
    recovery_times,
    relative_to_baseline,
    training_blocks,
    transfer_means,
)

approx = pytest.approx

# --------------------------------------------------------------------------------------------
# The main history: regimes A, B, A, 30 steps each, one episode every 10 steps, and a snapshot
# every 10 steps (the one at step 0 is taken before any learning).
#
#   step      0    10   20   30 | 40   50   60 | 70   80   90
#   regime    -    A    A    A  | B    B    B  | A    A    A
#   score A  0.0  0.3  0.6  0.8 | 0.7  0.6  0.5 | 0.6  0.8  1.0
#   score B  0.1  0.2  0.3  0.4 | 0.5  0.7  0.9 | 0.8  0.5  0.6
#   episode       0.2  0.5  0.7 | 0.1  0.4  0.8 | 0.6  0.85 0.9
#
# Blocks: 0 = A (0, 30], 1 = B (30, 60], 2 = A (60, 90]. The test right after a block is the
# last snapshot taken during it: @30, @60, @90; the one right before block 0 is @0.

SCORES_A = [0.0, 0.3, 0.6, 0.8, 0.7, 0.6, 0.5, 0.6, 0.8, 1.0]
SCORES_B = [0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 0.9, 0.8, 0.5, 0.6]
TRAINING = ["", "A", "A", "A", "B", "B", "B", "A", "A", "A"]
EPISODES = [
    (10, "A", 0.2), (20, "A", 0.5), (30, "A", 0.7),
    (40, "B", 0.1), (50, "B", 0.4), (60, "B", 0.8),
    (70, "A", 0.6), (80, "A", 0.85), (90, "A", 0.9),
]  # fmt: skip


def aba_evals() -> list[EvalPoint]:
    return [EvalPoint(10 * k, TRAINING[k], {"A": SCORES_A[k], "B": SCORES_B[k]}) for k in range(10)]


def aba_episodes() -> list[EpisodePoint]:
    return [EpisodePoint(step, regime, value) for step, regime, value in EPISODES]


def test_blocks_are_the_same_from_episodes_and_from_evaluations() -> None:
    expected = [TrainingBlock("A", 0, 30), TrainingBlock("B", 30, 60), TrainingBlock("A", 60, 90)]
    from_episodes = training_blocks(aba_evals(), aba_episodes())
    assert [(b.regime, b.start_step, b.end_step) for b in from_episodes] == [
        (b.regime, b.start_step, b.end_step) for b in expected
    ]
    assert [b.episodes for b in from_episodes] == [3, 3, 3]
    assert training_blocks(aba_evals()) == expected  # episodes = 0: found from snapshots


def test_performance_maintenance_mrlep_compares_with_the_test_right_after_the_regimes_block() -> (
    None
):
    pm = performance_maintenance(aba_evals(), aba_episodes())
    # A: reference = A@30 = 0.8 (end of its block); tests while B trains: @40 @50 @60.
    #    (0.7-0.8 + 0.6-0.8 + 0.5-0.8) / 3 = -0.2. Snapshots @70..@90 are excluded: A is being
    #    retrained there. A literal "first test after the block" reference (@40 = 0.7) would give
    #    (-0.1 - 0.2) / 2 = -0.15; counting the retraining snapshots would give -0.1.
    # B: reference = B@60 = 0.9; tests while A trains again: @70 @80 @90.
    #    (0.8-0.9 + 0.5-0.9 + 0.6-0.9) / 3 = -0.8 / 3.
    assert pm.mrlep.per_regime == {"A": approx(-0.2), "B": approx(-0.8 / 3)}
    assert pm.mrlep.mean == approx((-0.2 - 0.8 / 3) / 2)


def test_performance_maintenance_mrtlp_compares_with_terminal_training_performance() -> None:
    pm = performance_maintenance(aba_evals(), aba_episodes(), window=1)
    # Terminal performance of a 3-episode block = its last episode (the last tenth, rounded up).
    # A: block 0 ends at 0.7: (0.7-0.7 + 0.6-0.7 + 0.5-0.7) / 3 = -0.1.
    # B: block 1 ends at 0.8: (0.8-0.8 + 0.5-0.8 + 0.6-0.8) / 3 = -0.5 / 3.
    assert pm.mrtlp.per_regime == {"A": approx(-0.1), "B": approx(-0.5 / 3)}
    # Without episode history there is no terminal training performance.
    assert performance_maintenance(aba_evals()).mrtlp.per_regime == {"A": None, "B": None}
    assert performance_maintenance(aba_evals()).mrtlp.mean is None


def test_maintenance_is_positive_when_the_agent_keeps_improving() -> None:
    evals = [
        EvalPoint(10, "A", {"A": 0.5}),
        EvalPoint(20, "B", {"A": 0.6}),
        EvalPoint(30, "B", {"A": 0.9}),
    ]
    episodes = [EpisodePoint(10, "A", 0.4), EpisodePoint(30, "B", 0.0)]
    # Reference A@10 = 0.5; (0.6-0.5 + 0.9-0.5) / 2 = 0.25 > 0: no forgetting, improvement.
    assert performance_maintenance(evals, episodes).mrlep.per_regime["A"] == approx(0.25)


def test_forward_transfer_of_the_aba_history() -> None:
    ft = forward_transfer(aba_evals(), aba_episodes())
    # Only A -> B: B is tested @0 (0.1), A is trained, B is tested @30 (0.4). B -> A is not
    # eligible: A was trained before B's block.
    assert list(ft) == [("A", "B")]
    t = ft["A", "B"]
    assert (t.source, t.target, t.block, t.before_step, t.after_step) == ("A", "B", 0, 0, 30)
    assert t.contrast == approx((0.4 - 0.1) / (0.4 + 0.1))  # 0.6: positive = helped
    assert t.ratio == approx(4.0)
    assert t.difference == approx(0.3)


def test_backward_transfer_of_the_aba_history() -> None:
    bt = backward_transfer(aba_evals(), aba_episodes())
    # Block 1 (B) on A: A@30 = 0.8 -> A@60 = 0.5: contrast -0.3 / 1.3, ratio 0.625.
    # Block 2 (A) on B: B@60 = 0.9 -> B@90 = 0.6: contrast -0.3 / 1.5 = -0.2, ratio 2/3.
    # Block 0 has no earlier-trained regime. Negative = interference.
    assert [(t.source, t.target, t.block) for t in bt] == [("B", "A", 1), ("A", "B", 2)]
    assert [t.contrast for t in bt] == [approx(-0.3 / 1.3), approx(-0.2)]
    assert [t.ratio for t in bt] == [approx(0.625), approx(2 / 3)]
    assert [(t.before_step, t.after_step) for t in bt] == [(30, 60), (60, 90)]


def test_recovery_of_the_aba_history() -> None:
    first, second = recovery_times(aba_episodes(), window=1)
    # B (new): reference = terminal of block 0 = 0.7; B's episodes 0.1, 0.4, 0.8 reach it at the
    # third: 2 episodes before it, which took steps 30 -> 50 = 20.
    assert (first.regime, first.previous_regime, first.known) == ("B", "A", False)
    assert first.reference == approx(0.7)
    assert (first.recovered, first.episodes, first.steps) == (True, 2, 20)
    assert (first.block_episodes, first.block_steps, first.ongoing) == (3, 30, False)
    # A (known): reference = terminal of block 1 = 0.8; 0.6, 0.85 reaches it at the second.
    assert (second.regime, second.known) == ("A", True)
    assert second.reference == approx(0.8)
    assert (second.episodes, second.steps, second.ongoing) == (1, 10, True)


def test_continual_world_forgetting_of_the_aba_history() -> None:
    forgetting = continual_world_forgetting(aba_evals(), aba_episodes())
    # A is trained last: F = 0 by definition. B: B@60 (end of its training) - B@90 = 0.3 > 0.
    assert forgetting.per_regime == {"A": 0.0, "B": approx(0.3)}
    assert forgetting.mean == approx(0.15)  # the paper averages over all tasks, the last too


def test_relative_to_baseline_latest_and_step_weighted_lifetime() -> None:
    relative = relative_to_baseline(aba_evals())
    assert relative.latest.per_regime == {"A": 1.0, "B": 0.6}
    assert relative.latest.mean == approx(0.8)
    # Trapezoids on a 10-step grid over 90 steps: (sum - (first + last) / 2) / 9.
    # A: (5.9 - 0.5) / 9 = 0.6 (the plain mean would be 0.59); B: (5.0 - 0.35) / 9.
    assert relative.lifetime.per_regime == {"A": approx(0.6), "B": approx(4.65 / 9)}


def test_the_report_gathers_every_metric_and_is_plain_json() -> None:
    report = lifelong_report(aba_evals(), aba_episodes(), window=1)
    assert report.evaluations == 10
    assert report.episodes == 9
    assert report.performance_maintenance == performance_maintenance(
        aba_evals(), aba_episodes(), window=1
    )
    assert report.forward_transfer == forward_transfer(aba_evals(), aba_episodes())
    assert list(report.backward_transfer) == backward_transfer(aba_evals(), aba_episodes())
    assert list(report.recovery) == recovery_times(aba_episodes(), window=1)
    assert report.recovery_new.mean_steps == 20.0
    assert report.recovery_known.mean_steps == 10.0
    as_dict = report.as_dict()
    assert json.loads(json.dumps(as_dict, allow_nan=False)) == as_dict
    assert as_dict["forgetting"] == {
        "per_regime": {"A": 0.0, "B": approx(0.3)},
        "mean": approx(0.15),
    }
    forward = as_dict["forward_transfer"]
    assert isinstance(forward, list)
    assert forward[0] == dataclasses.asdict(report.forward_transfer["A", "B"])


def test_input_order_does_not_matter() -> None:
    evals, episodes = aba_evals(), aba_episodes()
    shuffled_evals, shuffled_episodes = evals[::-1], episodes[:]
    random.Random(3).shuffle(shuffled_episodes)
    expected = lifelong_report(evals, episodes).as_dict()
    assert lifelong_report(shuffled_evals, shuffled_episodes).as_dict() == expected


# --------------------------------------------------------------------------------------------
# Schedule A, C, A, B: one forward-transfer value per pair, the first eligible one.
#
#   step      0 | 10 | 20 | 30 | 40
#   regime    - | A  | C  | A  | B
#   score A  0.0  0.5  0.4  0.9  0.6
#   score B  0.2  0.3  0.4  0.8  1.0
#   score C  0.5  0.25 0.9  0.7  0.95


def acab() -> tuple[list[EvalPoint], list[EpisodePoint]]:
    rows = [
        (0, "", 0.0, 0.2, 0.5), (10, "A", 0.5, 0.3, 0.25), (20, "C", 0.4, 0.4, 0.9),
        (30, "A", 0.9, 0.8, 0.7), (40, "B", 0.6, 1.0, 0.95),
    ]  # fmt: skip
    evals = [EvalPoint(s, r, {"A": a, "B": b, "C": c}) for s, r, a, b, c in rows]
    episodes = [EpisodePoint(s, r, 0.0) for s, r, *_ in rows[1:]]
    return evals, episodes


def test_forward_transfer_keeps_the_first_eligible_block_per_pair() -> None:
    ft = forward_transfer(*acab())
    # A -> B: blocks 0 and 2 of A both precede B's training; the first counts:
    #   B@0 = 0.2 -> B@10 = 0.3: 0.1 / 0.5 = 0.2 (block 2 would give 0.4 / 1.2 = 1/3).
    # A -> C: C@0 = 0.5 -> C@10 = 0.25: -0.25 / 0.75 = -1/3 (negative transfer).
    # C -> B: B@10 = 0.3 -> B@20 = 0.4: 0.1 / 0.7.
    # C -> A, B -> anything: the target was trained before. Nothing else is eligible.
    assert sorted(ft) == [("A", "B"), ("A", "C"), ("C", "B")]
    assert ft["A", "B"].block == 0
    assert ft["A", "B"].contrast == approx(0.2)
    assert ft["A", "C"].contrast == approx(-1 / 3)
    assert ft["C", "B"].contrast == approx(0.1 / 0.7)
    report = lifelong_report(*acab())
    assert report.forward_transfer_mean.count == 3
    assert report.forward_transfer_mean.contrast == approx((0.2 - 1 / 3 + 0.1 / 0.7) / 3)


def test_forgetting_can_be_negative_and_uses_the_last_block_of_each_regime() -> None:
    forgetting = continual_world_forgetting(*acab())
    # Final test @40 during B: F_B = 0. A's last block is block 2: A@30 - A@40 = 0.9 - 0.6.
    # C's is block 1: C@20 - C@40 = 0.9 - 0.95 = -0.05 (it got better: backward transfer).
    assert forgetting.per_regime == {"A": approx(0.3), "B": 0.0, "C": approx(-0.05)}
    assert forgetting.mean == approx(0.25 / 3)


def test_the_reports_backward_transfer_mean_keeps_the_first_value_of_each_pair() -> None:
    # A, B, A, B with a snapshot at the end of each block (and one before learning):
    #   step      0 | 10 | 20 | 30 | 40
    #   score A  0.2  0.8  0.4  0.9  0.3
    #   score B  0.1  0.2  0.8  0.6  0.9
    # Block 1 (B) on A: 0.8 -> 0.4: -0.4 / 1.2 = -1/3.  Block 2 (A) on B: 0.8 -> 0.6: -1/7.
    # Block 3 (B) on A again: 0.9 -> 0.3: -0.5, the second value of the pair (B, A).
    rows = [(0, 0.2, 0.1), (10, 0.8, 0.2), (20, 0.4, 0.8), (30, 0.9, 0.6), (40, 0.3, 0.9)]
    evals = [EvalPoint(s, "", {"A": a, "B": b}) for s, a, b in rows]
    episodes = [EpisodePoint(s, r, 0.0) for s, r in [(10, "A"), (20, "B"), (30, "A"), (40, "B")]]
    report = lifelong_report(evals, episodes)
    assert [t.contrast for t in report.backward_transfer] == [
        approx(-1 / 3),
        approx(-1 / 7),
        approx(-0.5),
    ]
    assert report.backward_transfer_mean.count == 2
    assert report.backward_transfer_mean.contrast == approx((-1 / 3 - 1 / 7) / 2)


def test_backward_transfer_lifetime_mean_keeps_the_first_value_of_each_pair() -> None:
    def transfer(block: int, contrast: float) -> Transfer:
        return Transfer("B", "A", block, 0, 1, 1.0, 1.0, 0.0, contrast, 1.0)

    values = [transfer(1, -0.5), transfer(3, 0.1)]
    assert transfer_means(values, first_per_pair=True).contrast == -0.5
    assert transfer_means(values, first_per_pair=True).count == 1
    assert transfer_means(values, first_per_pair=False).contrast == approx(-0.2)


# --------------------------------------------------------------------------------------------
# Sparse snapshots, dense episodes


def test_a_block_without_a_snapshot_brackets_no_transfer() -> None:
    # A (0, 10], B (10, 20], C (20, 30]; snapshots @0, @10 (A) and @30 (C): none during B.
    evals = [
        EvalPoint(0, "", {"A": 0.1, "B": 0.1, "C": 0.1}),
        EvalPoint(10, "A", {"A": 0.8, "B": 0.3, "C": 0.2}),
        EvalPoint(30, "C", {"A": 0.4, "B": 0.6, "C": 0.9}),
    ]
    episodes = [EpisodePoint(10, "A", 0.5), EpisodePoint(20, "B", 0.5), EpisodePoint(30, "C", 0.5)]
    ft = forward_transfer(evals, episodes)
    # Only block 0 has tests right before and after it. A literal l2metrics reading would also
    # pair @10 and @30 around B's block for B -> C, though @30 comes after training on C.
    assert sorted(ft) == [("A", "B"), ("A", "C")]
    assert backward_transfer(evals, episodes) == []
    # B's end of training was never observed; A's was (@10): 0.8 - 0.4.
    forgetting = continual_world_forgetting(evals, episodes)
    assert forgetting.per_regime == {"A": approx(0.4), "B": None, "C": 0.0}
    pm = performance_maintenance(evals, episodes, window=1)
    assert pm.mrlep.per_regime == {"A": approx(0.4 - 0.8), "B": None, "C": None}
    assert pm.mrtlp.per_regime["B"] == approx(0.6 - 0.5)  # terminal training value needs no test


def test_snapshots_between_block_ends_belong_to_the_block_they_were_taken_in() -> None:
    # Episodes every 7 steps: A up to step 105, then B up to step 210. Snapshots every 50 steps.
    episodes = [EpisodePoint(s, "A" if s <= 105 else "B", 0.5) for s in range(7, 211, 7)]
    evals = [EvalPoint(s, "", {"A": s / 1000, "B": 1 - s / 1000}) for s in (50, 100, 150, 250)]
    blocks = training_blocks(evals, episodes)
    assert [(b.regime, b.start_step, b.end_step) for b in blocks] == [
        ("A", 0, 105),
        ("B", 105, 210),
    ]
    # Right after A: @100, the last one taken during A (not @150, after 45 steps of B); right
    # after B: @250, taken after the last episode, while B is still in force.
    [bt] = backward_transfer(evals, episodes)
    assert (bt.before_step, bt.after_step) == (100, 250)


def test_recovery_uses_the_smoothed_curve_and_the_last_tenth_as_terminal_value() -> None:
    before = [EpisodePoint(s, "A", v) for s, v in [(10, 1.0), (20, 3.0), (30, 5.0)]]
    after = [
        EpisodePoint(s, "B", v) for s, v in [(40, 0.0), (50, 5.0), (60, 0.0), (70, 4.0), (80, 4.0)]
    ]
    # Raw (window 1): reference 5.0, reached by the lucky second episode of B.
    [raw] = recovery_times(before + after, window=1)
    assert (raw.reference, raw.episodes, raw.steps) == (5.0, 1, 10)
    # Window 2: A's trailing curve is 1, 2, 4 (reference 4). B's pairs from each episode on
    # average 2.5, 2.5, 2, 4: it holds the reference from its fourth episode (3 before it,
    # steps 30 -> 60). The lucky 5.0 alone does not count: the episode after it drops to 0.
    [smooth] = recovery_times(before + after, window=2)
    assert smooth.reference == approx(4.0)
    assert (smooth.episodes, smooth.steps) == (3, 30)
    # A block shorter than the window is judged as a whole: A ends at 3 (its trailing mean of
    # all three), B's five average 2.6.
    [short] = recovery_times(before + after, window=6)
    assert not short.recovered
    # A 20-episode block: terminal = mean of its last two values (a tenth, rounded up).
    long = [EpisodePoint(i + 1, "A", float(i)) for i in range(20)]
    [rec] = recovery_times([*long, EpisodePoint(30, "B", 0.0)], window=1)
    assert rec.reference == approx(18.5)


def test_a_block_that_never_recovers_reports_none_and_its_length() -> None:
    episodes = [
        EpisodePoint(10, "A", 1.0), EpisodePoint(20, "B", 0.2), EpisodePoint(35, "B", 0.4),
        EpisodePoint(50, "A", 0.9), EpisodePoint(60, "A", 0.95),
    ]  # fmt: skip
    first, second = recovery_times(episodes, window=1)
    assert (first.recovered, first.episodes, first.steps) == (False, None, None)
    assert (first.block_episodes, first.block_steps, first.ongoing) == (2, 25, False)
    # Back in A: reference = B's terminal 0.4, reached at once: 0 episodes, 0 steps.
    assert (second.known, second.recovered, second.steps) == (True, True, 0)
    assert recovery_summary([first, second], known=False).blocks == 1
    assert recovery_summary([first, second], known=False).recovered == 0
    assert recovery_summary([first, second], known=False).mean_steps is None


def test_a_known_regime_also_measures_the_way_back_to_its_own_earlier_level() -> None:
    # Winter (A) scores 0.6 at its end, summer (B) ends at 0.9: a winter never reaches
    # summer's 0.9 (l2metrics' reference), but winter's own 0.6 is reached at the second
    # episode of the second winter: 1 episode before it, steps 60 -> 75 = 15.
    episodes = [
        EpisodePoint(20, "A", 0.4), EpisodePoint(30, "A", 0.6),
        EpisodePoint(45, "B", 0.5), EpisodePoint(60, "B", 0.9),
        EpisodePoint(75, "A", 0.3), EpisodePoint(90, "A", 0.65), EpisodePoint(99, "A", 0.7),
    ]  # fmt: skip
    new, known = recovery_times(episodes, window=1)
    assert (new.regime_reference, new.regime_episodes, new.regime_steps) == (None, None, None)
    assert not new.regime_recovered
    assert (known.reference, known.recovered) == (0.9, False)
    assert known.regime_reference == approx(0.6)
    assert (known.regime_episodes, known.regime_steps, known.regime_recovered) == (1, 15, True)


def test_an_ongoing_block_that_has_not_recovered_is_left_out_of_the_summary() -> None:
    episodes = [EpisodePoint(10, "A", 1.0), EpisodePoint(20, "B", 0.2)]
    [rec] = recovery_times(episodes, window=1)
    assert (rec.ongoing, rec.recovered) == (True, False)
    assert recovery_summary([rec], known=False).blocks == 0
    fake_done = Recovery(
        regime="B", previous_regime="A", known=False, start_step=10, reference=1.0,
        recovered=True, episodes=3, steps=30, block_episodes=5, block_steps=50, ongoing=False,
    )  # fmt: skip
    assert recovery_summary([rec, fake_done], known=False).mean_steps == 30.0
    assert recovery_summary([rec, fake_done], known=True).blocks == 0


# --------------------------------------------------------------------------------------------
# Degenerate histories


def walk_floats(value: object) -> Iterator[float]:
    """Every float inside a report, through dataclasses, mappings and sequences."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            yield from walk_floats(getattr(value, f.name))
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from walk_floats(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from walk_floats(item)
    elif isinstance(value, float):
        yield value


def test_an_empty_history_gives_an_empty_report() -> None:
    report = lifelong_report([], [])
    assert report.blocks == ()
    assert report.performance_maintenance.mrlep.mean is None
    assert report.forward_transfer == {}
    assert report.backward_transfer == ()
    assert report.recovery == ()
    assert report.relative_to_baseline.latest.mean is None
    assert report.forgetting.mean is None
    assert report.recovery_known.blocks == 0
    json.dumps(report.as_dict(), allow_nan=False)


def test_one_regime_and_no_drift() -> None:
    evals = [EvalPoint(s, "A", {"A": s / 100}) for s in (0, 50, 100)]
    episodes = [EpisodePoint(s, "A", 0.5) for s in range(10, 101, 10)]
    report = lifelong_report(evals, episodes)
    assert len(report.blocks) == 1
    assert report.performance_maintenance.mrlep.per_regime == {"A": None}  # never left A
    assert report.forward_transfer == {}
    assert report.backward_transfer == ()
    assert report.recovery == ()
    assert report.forgetting.per_regime == {"A": 0.0}
    assert report.relative_to_baseline.latest.per_regime == {"A": 1.0}


def test_snapshots_before_any_learning_define_nothing_that_needs_training() -> None:
    evals = [EvalPoint(0, "A", {"A": 0.3, "B": 0.2})]
    report = lifelong_report(evals, [])
    assert report.blocks == ()
    assert report.forgetting.per_regime == {"A": None, "B": None}
    assert report.relative_to_baseline.latest.per_regime == {"A": 0.3, "B": 0.2}


@pytest.mark.parametrize(
    ("before", "after", "contrast", "ratio"),
    [
        (0.0, 0.0, None, None),  # tp1 + tp2 == 0
        (0.0, 0.5, 1.0, None),  # no ratio from zero
        (-0.5, 1.0, None, None),  # worse than random: contrast and ratio lose their meaning
        (0.5, -0.1, None, None),
    ],
)
def test_contrast_and_ratio_are_undefined_off_the_non_negative_scale(
    before: float, after: float, contrast: float | None, ratio: float | None
) -> None:
    evals = [EvalPoint(0, "", {"B": before}), EvalPoint(10, "A", {"B": after})]
    t = forward_transfer(evals, [EpisodePoint(10, "A", 0.0)])["A", "B"]
    assert (t.contrast, t.ratio) == (contrast, ratio)
    assert t.difference == approx(after - before)  # always defined


def test_non_finite_scores_and_values_are_ignored() -> None:
    evals = [*aba_evals(), EvalPoint(95, "A", {"A": math.nan, "B": math.inf})]
    episodes = [*aba_episodes(), EpisodePoint(85, "A", math.nan)]
    assert lifelong_report(evals, episodes) == lifelong_report(aba_evals(), aba_episodes())


def test_a_failed_regime_evaluation_falls_back_to_the_previous_snapshot_of_the_block() -> None:
    evals = aba_evals()
    evals[6] = EvalPoint(60, "B", {"A": 0.5})  # B's score @60 is missing
    # The test right after block 1 for B is now @50 (B = 0.7), so PM of B uses 0.7:
    # (0.8-0.7 + 0.5-0.7 + 0.6-0.7) / 3 = -0.2 / 3; BT of block 2 on B starts from 0.7 @50.
    pm = performance_maintenance(evals, aba_episodes())
    assert pm.mrlep.per_regime["B"] == approx(-0.2 / 3)
    on_b = [t for t in backward_transfer(evals, aba_episodes()) if t.target == "B"]
    assert [(t.before_step, t.before) for t in on_b] == [(50, 0.7)]


def test_a_window_below_one_means_no_smoothing() -> None:
    assert recovery_times(aba_episodes(), window=0) == recovery_times(aba_episodes(), window=1)
    assert recovery_times(aba_episodes(), window=-5) == recovery_times(aba_episodes(), window=1)


# --------------------------------------------------------------------------------------------
# Normalisation


def test_normalise_maps_random_to_zero_and_baseline_to_one() -> None:
    assert normalise(20.0, random=20.0, baseline=500.0) == 0.0
    assert normalise(500.0, random=20.0, baseline=500.0) == 1.0
    assert normalise(260.0, random=20.0, baseline=500.0) == approx(0.5)
    assert normalise(10.0, random=20.0, baseline=500.0) < 0  # worse than random
    # Costs: higher (less negative) is better, and the scale still points the right way.
    assert normalise(-200.0, random=-300.0, baseline=-100.0) == approx(0.5)
    assert normalise(-50.0, random=-300.0, baseline=-100.0) == approx(1.25)


def test_normalise_falls_back_when_baseline_and_random_coincide() -> None:
    # 1.0 stays "the baseline's level"; the distance is measured relative to |baseline|.
    assert normalise(50.0, random=50.0, baseline=50.0) == 1.0
    assert normalise(75.0, random=50.0, baseline=50.0) == approx(1.5)
    assert normalise(-50.0, random=-100.0, baseline=-100.0) == approx(1.5)
    assert normalise(-150.0, random=-100.0, baseline=-100.0) == approx(0.5)
    # Both at 0: raw units.
    assert normalise(0.25, random=0.0, baseline=0.0) == approx(1.25)
    # The tolerance is relative to the returns' magnitude.
    near = 1000.0 * (1 + DEGENERATE_GAP / 10)
    assert normalise(1000.0, random=near, baseline=1000.0) == 1.0
    assert normalise(1000.0, random=990.0, baseline=1000.0) == 1.0
    assert normalise(995.0, random=990.0, baseline=1000.0) == approx(0.5)


# --------------------------------------------------------------------------------------------
# Properties

REGIMES = st.sampled_from(["", "A", "B", "C"])
FINITE = st.floats(allow_nan=False, allow_infinity=False)
SCORES = st.dictionaries(st.sampled_from(["A", "B", "C"]), FINITE, max_size=3)
EVALS = st.lists(st.builds(EvalPoint, st.integers(), REGIMES, SCORES), max_size=12)
EPISODES_ST = st.lists(st.builds(EpisodePoint, st.integers(), REGIMES, FINITE), max_size=40)


@settings(max_examples=300, deadline=None)
@given(evals=EVALS, episodes=EPISODES_ST, window=st.integers(-3, 30))
def test_the_report_never_raises_nor_emits_non_finite_numbers(
    evals: list[EvalPoint], episodes: list[EpisodePoint], window: int
) -> None:
    report = lifelong_report(evals, episodes, window=window)
    assert all(math.isfinite(x) for x in walk_floats(report))
    json.dumps(report.as_dict(), allow_nan=False)


@settings(max_examples=100, deadline=None)
@given(
    evals=st.lists(
        st.builds(EvalPoint, st.integers(-100, 10_000), REGIMES, SCORES),
        unique_by=lambda e: e.step,
        max_size=12,
    ),
    episodes=st.lists(
        st.builds(EpisodePoint, st.integers(-100, 10_000), REGIMES, FINITE),
        unique_by=lambda e: e.step,
        max_size=40,
    ),
    seed=st.integers(0, 2**16),
)
def test_the_report_does_not_depend_on_input_order(
    evals: list[EvalPoint], episodes: list[EpisodePoint], seed: int
) -> None:
    shuffled_evals, shuffled_episodes = evals[:], episodes[:]
    random.Random(seed).shuffle(shuffled_evals)
    random.Random(seed).shuffle(shuffled_episodes)
    assert lifelong_report(shuffled_evals, shuffled_episodes) == lifelong_report(evals, episodes)


def test_the_snapshot_taken_when_the_world_changed_closes_the_block_before() -> None:
    # A's last episode ends at step 30; the agent's next step is B's first, and there it takes
    # a snapshot of weights trained on A only, labelled A. It is A's test right after A.
    episodes = [EpisodePoint(s, "A" if s <= 30 else "B", 0.5) for s in range(10, 70, 10)]
    evals = [
        EvalPoint(20, "A", {"A": 0.2}),
        EvalPoint(31, "A", {"A": 0.8}),
        EvalPoint(45, "B", {"A": 0.7}),
        EvalPoint(60, "B", {"A": 0.6}),
    ]
    maintenance = performance_maintenance(evals, episodes)
    assert maintenance.mrlep.per_regime["A"] == approx(-0.15)  # (0.7 - 0.8 + 0.6 - 0.8) / 2
    # Labelled B, the same snapshot is one of B's: then A's reference is the one at 20.
    relabelled = [evals[0], EvalPoint(31, "B", {"A": 0.8}), *evals[2:]]
    assert performance_maintenance(relabelled, episodes).mrlep.per_regime["A"] == approx(0.5)
