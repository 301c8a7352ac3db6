"""Lifelong-learning metrics of one agent's life in a drifting world: pure computation.

The DARPA L2M metrics (as the ``l2metrics`` package computes them) and the Continual World
forgetting measure, adapted to a society whose agents never stop learning while their world
drifts through regimes. The mapping, and every choice made where the two settings differ, is
written up in ``docs/lifelong-metrics.md``; in short:

* an l2metrics *task* is one of our regimes;
* a *training block* is a maximal run of the agent's life during which one regime is in force,
  found from the dense per-episode history (or, lacking it, from the sparse evaluations);
* a *test* is one evaluated snapshot. It tests every regime, on fixed seeds, so any snapshot is
  a test of any regime. Snapshots are taken *during* training, never in separate test phases,
  so the test "right after" block ``b`` is the last snapshot taken during ``b`` and the test
  "right before" it is the last one taken during block ``b - 1`` (for the first block: the
  last one before any learning). Taking the first snapshot *after* the block instead, as a
  literal reading of l2metrics would, measures the agent after it already trained on the next
  regime, which is exactly the interference these metrics try to isolate.

Scores and episode values are expected on a normalised scale (:func:`normalise`: 0 = random
controller, 1 = the world's baseline controller), so regimes with different reward scales can be
averaged. Everything here is total: any input of the right types gives a result, metrics that
the history cannot define are ``None``, and non-finite numbers are ignored on input and never
produced on output.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from itertools import pairwise
from typing import TypeAlias, TypeVar

import numpy as np
import numpy.typing as npt

__all__ = [
    "DEFAULT_WINDOW",
    "DEGENERATE_GAP",
    "INFORMATIVE_SHARE",
    "PRE_TRAINING",
    "TERMINAL_FRACTION",
    "EpisodePoint",
    "EvalPoint",
    "JsonValue",
    "LifelongReport",
    "PerformanceMaintenance",
    "Recovery",
    "RecoverySummary",
    "RegimeValues",
    "RelativePerformance",
    "TrainingBlock",
    "Transfer",
    "TransferMeans",
    "backward_transfer",
    "continual_world_forgetting",
    "forward_transfer",
    "lifelong_report",
    "normalise",
    "performance_maintenance",
    "recovery_summary",
    "recovery_times",
    "reference_spans",
    "relative_to_baseline",
    "training_blocks",
    "transfer_means",
]

#: Moving-average window, in episodes, for the per-episode learning curve (l2metrics smooths
#: with a flat window too). Ten episodes damp single lucky episodes without hiding a drift.
DEFAULT_WINDOW = 10
#: Terminal performance is the mean of the last ``1 / TERMINAL_FRACTION`` of a block's smoothed
#: curve: l2metrics' ``term_window_ratio = 0.1``, kept as an integer so that block lengths like
#: 30 episodes give exactly 3 values and not 4 through floating-point rounding.
TERMINAL_FRACTION = 10
#: Relative size of ``|baseline - random|`` below which the two controllers are taken as equal
#: and :func:`normalise` falls back (see there).
DEGENERATE_GAP = 1e-6
#: Share of the world's widest baseline-over-random margin below which a regime's baseline is
#: no reference: it does little better than random, or worse (:func:`reference_spans`).
INFORMATIVE_SHARE = 0.1
#: Block index of snapshots taken before the first training block: "before any learning".
PRE_TRAINING = -1

JsonValue: TypeAlias = float | int | str | bool | list["JsonValue"] | dict[str, "JsonValue"] | None

_T = TypeVar("_T")
_FloatArray: TypeAlias = npt.NDArray[np.float64]


# --------------------------------------------------------------------------------------------
# Inputs and plain results


@dataclass(frozen=True, slots=True)
class EvalPoint:
    """One evaluated snapshot: the agent's policy at ``step``, scored on every regime."""

    step: int
    train_regime: str  # regime its weights were trained in up to ``step`` ("" = unknown)
    scores: Mapping[str, float]  # regime -> normalised score on that regime


@dataclass(frozen=True, slots=True)
class EpisodePoint:
    """One finished training episode."""

    step: int  # agent step at the end of the episode
    regime: str  # regime in force during the episode ("" = unknown)
    value: float  # its normalised return


@dataclass(frozen=True, slots=True)
class TrainingBlock:
    """A maximal stretch of life in one regime: it covers agent steps ``(start_step, end_step]``.

    ``start_step`` is where the previous block ended (0 for the first block), so the blocks tile
    the life without gaps and every snapshot falls in exactly one of them. ``episodes`` is the
    number of training episodes in the block (0 when the blocks were found from evaluations).
    """

    regime: str
    start_step: int
    end_step: int
    episodes: int = 0


@dataclass(frozen=True, slots=True)
class RegimeValues:
    """One number per regime (``None`` where the history does not define it) and their mean."""

    per_regime: Mapping[str, float | None]
    mean: float | None


@dataclass(frozen=True, slots=True)
class PerformanceMaintenance:
    """l2metrics Performance Maintenance, both reference choices; negative means forgetting."""

    mrlep: RegimeValues  # reference: the test right after the regime's latest block
    mrtlp: RegimeValues  # reference: terminal training performance of that block (episodes)


@dataclass(frozen=True, slots=True)
class Transfer:
    """Change of ``target``'s score across one training block of ``source``.

    ``before`` and ``after`` are the target's scores in the snapshots right before and right
    after block ``block`` (an index into :func:`training_blocks`).
    """

    source: str
    target: str
    block: int
    before_step: int
    after_step: int
    before: float
    after: float
    difference: float | None  # after - before
    contrast: float | None  # (after - before) / (after + before), l2metrics' default
    ratio: float | None  # after / before


@dataclass(frozen=True, slots=True)
class TransferMeans:
    """Lifetime aggregate of transfer values: the mean of each form over the defined ones."""

    count: int
    contrast: float | None
    ratio: float | None
    difference: float | None


@dataclass(frozen=True, slots=True)
class Recovery:
    """How long the agent took, after a regime change, to perform as well as before it.

    ``reference`` is the terminal (smoothed) training performance of the previous block.
    Recovery is at the first episode from which the next ``window`` episodes average at least
    the reference (a recovery that holds: one lucky episode is not one). ``episodes`` counts the
    block's episodes before it (l2metrics' count) and ``steps`` the agent steps they took, from
    the block's start; both are ``None`` if the block never got there. ``ongoing`` marks the
    last block, which may still recover.

    For a regime trained before (``known``), ``regime_reference`` is the terminal performance
    of its latest earlier block, and ``regime_episodes``/``regime_steps`` count the way back to
    *that*: l2metrics' reference compares with whatever regime came just before, which says
    little when regimes differ in scale (a winter day costs more than a summer day). This
    second reference is ours, reported beside l2metrics'; ``None`` for new regimes.
    """

    regime: str
    previous_regime: str
    known: bool  # the regime had been trained on before in the agent's life
    start_step: int
    reference: float | None
    recovered: bool
    episodes: int | None
    steps: int | None
    block_episodes: int
    block_steps: int
    ongoing: bool
    regime_reference: float | None = None
    regime_episodes: int | None = None
    regime_steps: int | None = None

    @property
    def regime_recovered(self) -> bool:
        return self.regime_episodes is not None


@dataclass(frozen=True, slots=True)
class RecoverySummary:
    """Recoveries of one kind (to known or to new regimes).

    ``blocks`` leaves out the ongoing block unless it has already recovered: it is not yet
    known whether it will, and counting it as a failure would punish the present moment.
    """

    blocks: int
    recovered: int
    mean_steps: float | None
    mean_episodes: float | None


@dataclass(frozen=True, slots=True)
class RelativePerformance:
    """Performance relative to the baseline controller (1.0 = baseline level, 0.0 = random).

    ``lifetime`` is the analogue of l2metrics' relative performance (a ratio of sums over the
    learning curve: the step-weighted mean score); ``latest`` is where the agent stands now.
    """

    latest: RegimeValues
    lifetime: RegimeValues


# --------------------------------------------------------------------------------------------
# Small numeric helpers: everything that leaves this module goes through ``_finite``.


def _finite(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def _to_float(value: int) -> float:
    """``float(value)`` for an int too large for a float saturates to infinity instead."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _mean(values: Iterable[float]) -> float | None:
    items = list(values)
    if not items:
        return None
    return _finite(sum(items) / len(items))


def _mean_of_ints(values: Iterable[int]) -> float | None:
    return _mean(_to_float(v) for v in values)


def _regime_values(per_regime: Mapping[str, float | None]) -> RegimeValues:
    per = {regime: _finite(value) for regime, value in sorted(per_regime.items())}
    return RegimeValues(per, _mean(v for v in per.values() if v is not None))


def normalise(raw: float, random: float, baseline: float, *, span: float | None = None) -> float:
    """Map a raw return onto the scale 0 = random controller, 1 = baseline controller.

    It is linear, so averages and differences keep their meaning, and it makes regimes (and
    worlds) with different reward scales comparable; returns that are costs (negative) work the
    same way.

    ``span`` replaces ``baseline - random`` as the scale's unit where the baseline is no real
    reference (see :func:`reference_spans`): 1.0 is then ``random + span``.

    When the two controllers score the same, ``|baseline - random| <=
    DEGENERATE_GAP * max(1, |baseline|, |random|)``, and no ``span`` is given, the scale is
    undefined; the agent is then measured relative to that common level, keeping 1.0 = baseline
    level: ``1 + (raw - baseline) / |baseline|`` (``raw / baseline`` for a positive baseline), or
    ``1 + (raw - baseline)`` when the baseline itself is within ``DEGENERATE_GAP`` of 0.
    Non-finite inputs give a non-finite result, which the metrics below ignore.
    """
    gap = baseline - random if span is None else span
    if abs(gap) > DEGENERATE_GAP * max(1.0, abs(baseline), abs(random)):
        return (raw - random) / gap
    scale = abs(baseline) if abs(baseline) > DEGENERATE_GAP else 1.0
    return 1.0 + (raw - baseline) / scale


def reference_spans(references: Mapping[str, tuple[float, float]]) -> dict[str, float | None]:
    """The unit of each regime's normalised scale, from its ``(random, baseline)`` returns.

    A regime's unit is ``baseline - random`` where the baseline is a real reference: at least
    :data:`INFORMATIVE_SHARE` of the world's largest margin of a baseline over random, in any
    of its regimes. Where it is not (CartPole's PD controller on a reversed motor scores below
    random), the world's largest margin is the unit instead, so 1.0 there means "random plus
    what the baseline adds where it works". Scores then keep their sign and size: an agent at
    that helpless baseline's level reads about 0, one that masters the regime about 1, where a
    unit of ``baseline - random`` would have read -17 or +40. ``None`` (use ``normalise``'s own
    rule) when no regime has a margin at all.
    """
    gaps = {regime: baseline - random for regime, (random, baseline) in references.items()}
    finite = [gap for gap in gaps.values() if math.isfinite(gap)]
    widest = max(finite, default=0.0)
    if widest <= 0.0:
        return dict.fromkeys(gaps)
    return {
        regime: gap if math.isfinite(gap) and gap >= INFORMATIVE_SHARE * widest else widest
        for regime, gap in gaps.items()
    }


# --------------------------------------------------------------------------------------------
# The timeline: training blocks, and which block each snapshot was taken in.


def _clean_evals(evals: Iterable[EvalPoint]) -> tuple[EvalPoint, ...]:
    """Finite scores only, in step order (stable: ties keep their order).

    A snapshot left without any score tested nothing, and is dropped.
    """
    cleaned = [
        EvalPoint(e.step, e.train_regime, finite)
        for e in evals
        if (finite := {r: float(s) for r, s in e.scores.items() if math.isfinite(s)})
    ]
    return tuple(sorted(cleaned, key=lambda e: e.step))


def _clean_episodes(episodes: Iterable[EpisodePoint]) -> tuple[EpisodePoint, ...]:
    kept = [e for e in episodes if e.regime and math.isfinite(e.value)]
    return tuple(sorted(kept, key=lambda e: e.step))


def _runs(items: Sequence[_T], regime_of: Callable[[_T], str]) -> list[list[_T]]:
    """Maximal runs of consecutive items in the same regime."""
    runs: list[list[_T]] = []
    for item in items:
        if runs and regime_of(runs[-1][-1]) == regime_of(item):
            runs[-1].append(item)
        else:
            runs.append([item])
    return runs


def _tile(
    runs: Sequence[Sequence[_T]],
    regime: Callable[[_T], str],
    step: Callable[[_T], int],
    *,
    first_start: int,
    count_episodes: bool,
) -> list[TrainingBlock]:
    blocks: list[TrainingBlock] = []
    start = first_start
    for run in runs:
        end = step(run[-1])
        blocks.append(TrainingBlock(regime(run[0]), start, end, len(run) if count_episodes else 0))
        start = end
    return blocks


def _episode_blocks(
    episodes: Sequence[EpisodePoint],
) -> tuple[list[TrainingBlock], list[list[EpisodePoint]]]:
    runs = _runs(episodes, lambda e: e.regime)
    first_start = min(0, runs[0][0].step - 1) if runs else 0
    blocks = _tile(
        runs, lambda e: e.regime, lambda e: e.step, first_start=first_start, count_episodes=True
    )
    return blocks, runs


def _eval_blocks(evals: Sequence[EvalPoint]) -> list[TrainingBlock]:
    """Blocks from the snapshots' training regimes, for when no episode history is given.

    A snapshot at step 0 or before precedes any learning, so it opens no block.
    """
    known = [e for e in evals if e.train_regime and e.step > 0]
    runs = _runs(known, lambda e: e.train_regime)
    return _tile(
        runs, lambda e: e.train_regime, lambda e: e.step, first_start=0, count_episodes=False
    )


def _smooth(values: Sequence[float], window: int) -> _FloatArray:
    """Trailing moving average within one block (the first values average what exists).

    Trailing, unlike l2metrics' centred window, so that "performance reached X at episode k"
    never uses episodes after k.
    """
    x = np.asarray(values, dtype=np.float64)
    width = max(1, window)
    if width == 1 or x.size == 0:
        return x
    with np.errstate(all="ignore"):
        sums = np.concatenate(([0.0], np.cumsum(x)))
        upper = np.arange(1, x.size + 1)
        lower = np.maximum(upper - width, 0)
        smoothed: _FloatArray = (sums[upper] - sums[lower]) / (upper - lower)
    return smoothed


def _held(values: Sequence[float], window: int) -> _FloatArray:
    """Forward moving average over full windows: element k is the mean of values k..k+w-1.

    ``w`` is ``window``, or the whole block when it is shorter. Recovery is read off this
    curve: "recovered at episode k" means the ``w`` episodes from k on averaged at the
    reference, so a single lucky episode (a night-time traffic episode that any policy plays
    well) does not count as a recovery. l2metrics' centred window looks ahead too.
    """
    width = min(max(1, window), len(values))
    # The trailing mean over full windows, read from the window's first episode.
    return _smooth(values, width)[max(width - 1, 0) :]


def _terminal(smoothed: _FloatArray) -> float | None:
    """Terminal performance: mean of the last tenth (at least one value) of the curve."""
    if smoothed.size == 0:
        return None
    count = -(-smoothed.size // TERMINAL_FRACTION)  # ceil(size / 10), in integers
    tail = smoothed[smoothed.size - count :]
    with np.errstate(all="ignore"):
        return _finite(float(np.mean(tail)))


@dataclass(frozen=True, slots=True)
class _Timeline:
    """Blocks, and the snapshots in step order with the block each was taken in.

    ``runs``, ``curves``, ``held`` and ``terminals`` hold each block's episodes, their trailing
    and forward (:func:`_held`) smoothed values and its terminal performance; they are empty
    when the blocks were found from evaluations.
    """

    blocks: tuple[TrainingBlock, ...]
    evals: tuple[EvalPoint, ...]
    owners: tuple[int, ...]
    closing: Mapping[tuple[int, str], tuple[int, float]]  # (block, regime) -> last test in it
    curves: tuple[_FloatArray, ...]
    held: tuple[_FloatArray, ...]
    terminals: tuple[float | None, ...]
    runs: tuple[tuple[EpisodePoint, ...], ...]

    def test_after(self, block: int, regime: str) -> tuple[int, float] | None:
        """Step and score of ``regime``'s test right after ``block``: the last one during it.

        A snapshot whose evaluation gave no score for the regime does not count, so one failed
        evaluation falls back to the snapshot before it in the same block.
        """
        return self.closing.get((block, regime))

    def bracket(
        self, block: int, regime: str
    ) -> tuple[tuple[int, float], tuple[int, float]] | None:
        """``regime``'s tests right before and right after ``block``, if both exist."""
        before, after = self.test_after(block - 1, regime), self.test_after(block, regime)
        return None if before is None or after is None else (before, after)

    def terminal(self, block: int) -> float | None:
        return self.terminals[block] if 0 <= block < len(self.terminals) else None

    def blocks_of(self, regime: str) -> list[int]:
        return [i for i, b in enumerate(self.blocks) if b.regime == regime]

    def regimes(self) -> list[str]:
        names = {b.regime for b in self.blocks}
        for e in self.evals:
            names.update(e.scores)
        return sorted(names)


def _owner(blocks: Sequence[TrainingBlock], ends: Sequence[int], e: EvalPoint) -> int:
    """The block a snapshot was taken in; after the last block: the last block.

    By its step, except for the snapshot an agent takes when its world changes: taken at the
    first step of the new regime, before any training on it, and labelled with the regime its
    weights were trained in. That label wins: the snapshot closes the block before.
    """
    if not blocks or e.step <= blocks[0].start_step:
        return PRE_TRAINING
    owner = min(bisect.bisect_left(ends, e.step), len(blocks) - 1)
    if owner > 0 and blocks[owner].regime != e.train_regime == blocks[owner - 1].regime:
        return owner - 1
    return owner


def _timeline(
    evals: Iterable[EvalPoint], episodes: Iterable[EpisodePoint], window: int
) -> _Timeline:
    ordered = _clean_evals(evals)
    blocks, runs = _episode_blocks(_clean_episodes(episodes))
    if not blocks:
        blocks, runs = _eval_blocks(ordered), []
    ends = [b.end_step for b in blocks]
    owners = tuple(_owner(blocks, ends, e) for e in ordered)
    closing: dict[tuple[int, str], tuple[int, float]] = {}
    for owner, e in zip(owners, ordered, strict=True):  # the last snapshot of a block wins
        for regime, score in e.scores.items():
            closing[owner, regime] = (e.step, score)
    curves = tuple(_smooth([e.value for e in run], window) for run in runs)
    held = tuple(_held([e.value for e in run], window) for run in runs)
    terminals = tuple(_terminal(curve) for curve in curves)
    return _Timeline(
        tuple(blocks), ordered, owners, closing, curves, held, terminals, tuple(map(tuple, runs))
    )


def training_blocks(
    evals: Iterable[EvalPoint] = (), episodes: Iterable[EpisodePoint] = ()
) -> list[TrainingBlock]:
    """The agent's training blocks in life order.

    From the episodes when any has a known regime (dense and exact: a block ends at its last
    episode); otherwise from the snapshots' ``train_regime`` (a block ends at its last
    snapshot, so its start is only known to lie after the previous block's last snapshot).
    Episodes or snapshots of unknown regime ("") neither start nor end a block.
    """
    return list(_timeline(evals, episodes, DEFAULT_WINDOW).blocks)


# --------------------------------------------------------------------------------------------
# Performance maintenance (l2metrics performance_maintenance.py)


def _maintenance_gaps(tl: _Timeline, regime: str) -> tuple[list[float], list[float]]:
    """Differences ``test - reference`` for every test of ``regime`` while it is not trained.

    Tests are the snapshots taken after the regime's first block and outside its own blocks
    (during a block of the regime the agent relearns it: that is not maintenance). The
    reference is the regime's most recent block before the test.
    """
    own = tl.blocks_of(regime)
    lep: list[float] = []
    tlp: list[float] = []
    for e, owner in zip(tl.evals, tl.owners, strict=True):
        position = bisect.bisect_left(own, owner)
        score = e.scores.get(regime)
        if score is None or position == 0 or (position < len(own) and own[position] == owner):
            continue
        latest = own[position - 1]
        reference = tl.test_after(latest, regime)
        if reference is not None:
            lep.append(score - reference[1])
        terminal = tl.terminal(latest)
        if terminal is not None:
            tlp.append(score - terminal)
    return lep, tlp


def _performance_maintenance(tl: _Timeline) -> PerformanceMaintenance:
    lep: dict[str, float | None] = {}
    tlp: dict[str, float | None] = {}
    for regime in tl.regimes():
        gaps_lep, gaps_tlp = _maintenance_gaps(tl, regime)
        lep[regime], tlp[regime] = _mean(gaps_lep), _mean(gaps_tlp)
    return PerformanceMaintenance(_regime_values(lep), _regime_values(tlp))


def performance_maintenance(
    evals: Iterable[EvalPoint],
    episodes: Iterable[EpisodePoint] = (),
    *,
    window: int = DEFAULT_WINDOW,
) -> PerformanceMaintenance:
    """Per regime: mean of ``score(test) - reference`` over the tests after its training.

    ``mrlep`` (l2metrics' default) takes as reference the score in the test right after the
    regime's most recent training block; ``mrtlp`` the terminal training performance of that
    block, so it needs ``episodes``. Negative means the agent forgot; the overall value is the
    mean over regimes, as l2metrics aggregates task values into a lifetime value.
    """
    return _performance_maintenance(_timeline(evals, episodes, window))


# --------------------------------------------------------------------------------------------
# Forward and backward transfer (l2metrics forward_transfer.py, backward_transfer.py)


def _contrast(before: float, after: float) -> float | None:
    """``(after - before) / (after + before)``, defined for non-negative scores only.

    l2metrics assumes non-negative performance (rewards, accuracies); on our normalised scale a
    score below 0 is worse than random, and there the contrast leaves [-1, 1] or flips sign.
    """
    if before < 0 or after < 0 or before + after <= 0:
        return None
    return _finite((after - before) / (after + before))


def _ratio(before: float, after: float) -> float | None:
    if before <= 0 or after < 0:
        return None
    return _finite(after / before)


def _transfer(tl: _Timeline, block: int, target: str) -> Transfer | None:
    bracket = tl.bracket(block, target)
    if bracket is None:
        return None
    (before_step, before), (after_step, after) = bracket
    return Transfer(
        source=tl.blocks[block].regime, target=target, block=block,
        before_step=before_step, after_step=after_step, before=before, after=after,
        difference=_finite(after - before), contrast=_contrast(before, after),
        ratio=_ratio(before, after),
    )  # fmt: skip


def _first_blocks(tl: _Timeline) -> dict[str, int]:
    first: dict[str, int] = {}
    for index, block in enumerate(tl.blocks):
        first.setdefault(block.regime, index)
    return first


def _forward_transfer(tl: _Timeline) -> dict[tuple[str, str], Transfer]:
    first, regimes = _first_blocks(tl), tl.regimes()
    found: dict[tuple[str, str], Transfer] = {}
    for index, block in enumerate(tl.blocks):
        for target in regimes:
            pair = (block.regime, target)
            if target == block.regime or pair in found or first.get(target, math.inf) < index:
                continue
            transfer = _transfer(tl, index, target)
            if transfer is not None:
                found[pair] = transfer
    return found


def forward_transfer(
    evals: Iterable[EvalPoint], episodes: Iterable[EpisodePoint] = ()
) -> dict[tuple[str, str], Transfer]:
    """Transfer from training on ``source`` to a ``target`` regime not yet trained.

    For each ordered pair, the first block of ``source`` that comes before any training on
    ``target`` and has a test right before and right after it: one value per pair, as in
    l2metrics. Positive means training on the source already improved the target.
    """
    return _forward_transfer(_timeline(evals, episodes, DEFAULT_WINDOW))


def _backward_transfer(tl: _Timeline) -> list[Transfer]:
    first, regimes = _first_blocks(tl), tl.regimes()
    found: list[Transfer] = []
    for index, block in enumerate(tl.blocks):
        for target in regimes:
            if target == block.regime or first.get(target, math.inf) >= index:
                continue
            transfer = _transfer(tl, index, target)
            if transfer is not None:
                found.append(transfer)
    return found


def backward_transfer(
    evals: Iterable[EvalPoint], episodes: Iterable[EpisodePoint] = ()
) -> list[Transfer]:
    """Effect of each training block on every regime trained before it, in life order.

    One value per (block, earlier-trained regime) with a test right before and right after the
    block, as in l2metrics. Negative means training on the block's regime made the agent worse
    at the earlier one (interference); positive, better.
    """
    return _backward_transfer(_timeline(evals, episodes, DEFAULT_WINDOW))


def transfer_means(transfers: Iterable[Transfer], *, first_per_pair: bool) -> TransferMeans:
    """Lifetime transfer: the mean of each form over the values where it is defined.

    ``first_per_pair`` keeps only the first value of each (source, target) pair, as l2metrics'
    lifetime aggregation does for backward transfer.
    """
    values = list(transfers)
    if first_per_pair:
        firsts: dict[tuple[str, str], Transfer] = {}
        for t in values:
            firsts.setdefault((t.source, t.target), t)
        values = list(firsts.values())
    return TransferMeans(
        count=len(values),
        contrast=_mean(t.contrast for t in values if t.contrast is not None),
        ratio=_mean(t.ratio for t in values if t.ratio is not None),
        difference=_mean(t.difference for t in values if t.difference is not None),
    )


# --------------------------------------------------------------------------------------------
# Recovery time (l2metrics recovery_time.py)


def _reaching(tl: _Timeline, block: int, reference: float | None) -> tuple[int | None, int | None]:
    """Episodes and steps from ``block``'s start until performance held at ``reference``."""
    current, run, curve = tl.blocks[block], tl.runs[block], tl.held[block]
    reached = np.flatnonzero(curve >= reference) if reference is not None else np.array([])
    if not reached.size:
        return None, None
    episodes = int(reached[0])
    start_of_episode = run[episodes - 1].step if episodes > 0 else current.start_step
    return episodes, start_of_episode - current.start_step


def _recovery(tl: _Timeline, block: int, *, known: bool) -> Recovery:
    current, previous = tl.blocks[block], tl.blocks[block - 1]
    reference = tl.terminal(block - 1)
    episodes, steps = _reaching(tl, block, reference)
    earlier = [i for i in tl.blocks_of(current.regime) if i < block]
    regime_reference = tl.terminal(earlier[-1]) if known and earlier else None
    regime_episodes, regime_steps = _reaching(tl, block, regime_reference)
    return Recovery(
        regime=current.regime, previous_regime=previous.regime, known=known,
        start_step=current.start_step, reference=reference, recovered=episodes is not None,
        episodes=episodes, steps=steps, block_episodes=len(tl.runs[block]),
        block_steps=current.end_step - current.start_step, ongoing=block == len(tl.blocks) - 1,
        regime_reference=regime_reference, regime_episodes=regime_episodes,
        regime_steps=regime_steps,
    )  # fmt: skip


def _recovery_times(tl: _Timeline) -> list[Recovery]:
    if not tl.runs:
        return []
    seen = {tl.blocks[0].regime}
    found: list[Recovery] = []
    for block in range(1, len(tl.blocks)):
        regime = tl.blocks[block].regime
        found.append(_recovery(tl, block, known=regime in seen))
        seen.add(regime)
    return found


def recovery_times(
    episodes: Iterable[EpisodePoint], *, window: int = DEFAULT_WINDOW
) -> list[Recovery]:
    """For every training block after the first, how long until performance recovered.

    The reference is the previous block's terminal performance, whatever its regime: our
    regimes are parametric variations of one world, i.e. one l2metrics *task*, and l2metrics
    compares a block with the task's previous block. The reference is the last tenth of the
    previous block's ``window``-episode trailing mean; the block has recovered at the first
    episode from which the mean of the next ``window`` of its episodes reaches it.
    """
    return _recovery_times(_timeline((), episodes, window))


def recovery_summary(recoveries: Iterable[Recovery], *, known: bool) -> RecoverySummary:
    """Recoveries to known (``known=True``) or to new regimes, aggregated."""
    chosen = [r for r in recoveries if r.known == known and (r.recovered or not r.ongoing)]
    done = [r for r in chosen if r.recovered]
    return RecoverySummary(
        blocks=len(chosen),
        recovered=len(done),
        mean_steps=_mean_of_ints(r.steps for r in done if r.steps is not None),
        mean_episodes=_mean_of_ints(r.episodes for r in done if r.episodes is not None),
    )


# --------------------------------------------------------------------------------------------
# Performance relative to the baseline, and Continual World forgetting


def _lifetime_mean(points: Sequence[tuple[int, float]]) -> float | None:
    """Step-weighted mean of the linearly interpolated score curve (plain mean if no span)."""
    span = _to_float(points[-1][0] - points[0][0])
    if span <= 0:
        return _mean(score for _, score in points)
    area = 0.0
    for (s0, v0), (s1, v1) in pairwise(points):
        area += _to_float(s1 - s0) * (v0 / 2 + v1 / 2)
    return _finite(area / span)


def _relative_to_baseline(tl: _Timeline) -> RelativePerformance:
    latest: dict[str, float | None] = {}
    lifetime: dict[str, float | None] = {}
    for regime in tl.regimes():
        points = [(e.step, e.scores[regime]) for e in tl.evals if regime in e.scores]
        latest[regime] = points[-1][1] if points else None
        lifetime[regime] = _lifetime_mean(points) if points else None
    return RelativePerformance(_regime_values(latest), _regime_values(lifetime))


def relative_to_baseline(evals: Iterable[EvalPoint]) -> RelativePerformance:
    """Normalised scores per regime: the latest, and the step-weighted mean over the life.

    With normalised scores the baseline controller sits at 1.0 at all times, so l2metrics'
    ratio of summed performance over the same experience reduces to the agent's mean score;
    weighting by steps keeps extra snapshots (e.g. at a regime change) from counting more.
    """
    return _relative_to_baseline(_timeline(evals, (), DEFAULT_WINDOW))


def _regime_forgetting(tl: _Timeline, regime: str) -> float | None:
    final, current = tl.evals[-1], tl.owners[-1]
    if current == PRE_TRAINING:
        return None
    if tl.blocks[current].regime == regime:
        return 0.0  # trained last: its end of training is the final evaluation
    earlier = [b for b in tl.blocks_of(regime) if b < current]
    end = tl.test_after(earlier[-1], regime) if earlier else None
    if end is None or regime not in final.scores:
        return None
    return _finite(end[1] - final.scores[regime])


def _forgetting(tl: _Timeline) -> RegimeValues:
    if not tl.evals:
        return _regime_values(dict.fromkeys(tl.regimes()))
    return _regime_values({r: _regime_forgetting(tl, r) for r in tl.regimes()})


def continual_world_forgetting(
    evals: Iterable[EvalPoint], episodes: Iterable[EpisodePoint] = ()
) -> RegimeValues:
    """Continual World's ``F_i = p_i(end of training on i) - p_i(T)``; positive = forgotten.

    ``p_i(end of training on i)`` is the score in the test right after the regime's last
    training block before the final evaluation ``T``. The regime in force at ``T`` has
    ``F = 0`` and counts in the mean, as the paper's last task does; a regime never trained
    before ``T`` is ``None`` and does not count.
    """
    return _forgetting(_timeline(evals, episodes, DEFAULT_WINDOW))


# --------------------------------------------------------------------------------------------
# Everything at once


def _json_safe(value: object) -> JsonValue:
    """Plain JSON types, with any non-finite float turned into ``None`` (a last safety net)."""
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, float):
        return _finite(value)
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return str(value)


@dataclass(frozen=True, slots=True)
class LifelongReport:
    """All lifelong-learning metrics of one agent's history."""

    evaluations: int
    episodes: int
    window: int
    blocks: tuple[TrainingBlock, ...]
    performance_maintenance: PerformanceMaintenance
    forward_transfer: Mapping[tuple[str, str], Transfer]
    forward_transfer_mean: TransferMeans
    backward_transfer: tuple[Transfer, ...]
    backward_transfer_mean: TransferMeans
    recovery: tuple[Recovery, ...]
    recovery_known: RecoverySummary
    recovery_new: RecoverySummary
    relative_to_baseline: RelativePerformance
    forgetting: RegimeValues

    def as_dict(self) -> dict[str, JsonValue]:
        """JSON-ready: floats, ints, strings, ``None`` for undefined; never NaN or infinity."""
        plain = {
            "evaluations": self.evaluations,
            "episodes": self.episodes,
            "window": self.window,
            "blocks": [asdict(b) for b in self.blocks],
            "performance_maintenance": asdict(self.performance_maintenance),
            "forward_transfer": [asdict(t) for t in self.forward_transfer.values()],
            "forward_transfer_mean": asdict(self.forward_transfer_mean),
            "backward_transfer": [asdict(t) for t in self.backward_transfer],
            "backward_transfer_mean": asdict(self.backward_transfer_mean),
            "recovery": [asdict(r) for r in self.recovery],
            "recovery_known": asdict(self.recovery_known),
            "recovery_new": asdict(self.recovery_new),
            "relative_to_baseline": asdict(self.relative_to_baseline),
            "forgetting": asdict(self.forgetting),
        }
        safe = _json_safe(plain)
        assert isinstance(safe, dict)
        return safe


def lifelong_report(
    evals: Iterable[EvalPoint],
    episodes: Iterable[EpisodePoint] = (),
    *,
    window: int = DEFAULT_WINDOW,
) -> LifelongReport:
    """Every metric of this module from one history; inputs may come in any order."""
    tl = _timeline(evals, episodes, window)
    forward = _forward_transfer(tl)
    backward = _backward_transfer(tl)
    recoveries = _recovery_times(tl)
    return LifelongReport(
        evaluations=len(tl.evals),
        episodes=sum(len(run) for run in tl.runs),
        window=window,
        blocks=tl.blocks,
        performance_maintenance=_performance_maintenance(tl),
        forward_transfer=forward,
        forward_transfer_mean=transfer_means(forward.values(), first_per_pair=False),
        backward_transfer=tuple(backward),
        backward_transfer_mean=transfer_means(backward, first_per_pair=True),
        recovery=tuple(recoveries),
        recovery_known=recovery_summary(recoveries, known=True),
        recovery_new=recovery_summary(recoveries, known=False),
        relative_to_baseline=_relative_to_baseline(tl),
        forgetting=_forgetting(tl),
    )
