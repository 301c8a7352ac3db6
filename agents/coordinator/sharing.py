"""The society's gain from sharing: steps to a threshold, twins against sharing agents.

``society run --twins`` gives every sharing agent an isolated twin: same world, same device,
same seed, sharing nothing. An agent's *steps to threshold* is the step of its first
snapshot whose evaluation (per regime, what the agent achieves recalling from its library
where it has one, as the run's final line reports) reaches the scenario's
``evaluation.threshold`` on the scale ``threshold_scale`` names (:class:`ThresholdScale`):
a mean return; a mean normalised score (0: a random controller, 1: the world's baseline), for
worlds whose devices differ; or the mean share by which the agent beats the world's baseline
controller on the same episodes, for agents that start as that controller; with
``threshold_window`` the mean of that many evaluations in a row. The
gain is the twins' steps divided by the sharing agents', per pair
and in total (sums over pairs). A twin that never reached the threshold counts with the steps
it took so far, and the gain is then a lower bound (``at_least``).

A pair whose sharing agent and twin both held the threshold at their first evaluation
(``at_start``) is left out of the gain: it would read 1.00, as if sharing had given nothing,
when the steps cannot tell the two apart (an agent that starts as its device's controller with
a planner on top can be past a low threshold before it has learned anything). The gain says
how many pairs were left out so, and is None when every pair that reached the threshold was:
the threshold is too low for this society to show a gain.

Beside the steps, what a user of the device feels: each pair's regret against the device's
controller over the run (:class:`agents.regret.Regret`, what the agent and its twin report),
and the society's regret against its twins (:attr:`SharingGain.regret_against_twins`): how much
less (negative) or more the sharing agents' devices cost than their twins', as a share of the
controller's cost on the same days. Where steps cannot tell the two apart (every pair past the
threshold at the start, or learning that goes on after it), this still can.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agents._choice import Choice
from agents.bus.schemas import RegimeScore
from agents.coordinator.lifelong import DEGENERATE_GAP, normalise, reference_spans
from agents.coordinator.roster import AgentRecord, EvaluationPoint
from agents.regret import Regret

__all__ = [
    "PairGain",
    "SharingGain",
    "ThresholdScale",
    "describe",
    "score",
    "sharing_gain",
    "steps_to_threshold",
]


class ThresholdScale(Choice):
    """What the number in ``evaluation.threshold`` measures.

    ``return``: the mean evaluation return. ``normalised``: the mean normalised score, 0 a
    random controller and 1 the world's baseline (:func:`agents.coordinator.lifelong.normalise`),
    so that one threshold fits devices whose returns differ. ``over_baseline``: the mean share
    by which the agent's return beats the baseline controller's on the same episodes,
    ``(return - baseline) / |baseline|`` per regime (0.10: 10 % better). An agent that starts
    as its device's controller is at 0 on that scale, and at 1.0 on the normalised one, from
    its first evaluation: only a threshold above the controller can tell how soon it learned
    to do better. On the normalised scale a few percent of a thermostat's cost are a hundredth
    of the way from random to the controller; on this one they read as what they are.
    """

    RETURN = "return"
    NORMALISED = "normalised"
    OVER_BASELINE = "over_baseline"

    @classmethod
    def setting(cls) -> str:
        return "threshold scale"


@dataclass(frozen=True, slots=True)
class PairGain:
    agent: str
    twin: str
    agent_steps: int | None
    twin_steps: int | None
    twin_steps_so_far: int
    #: Both at the threshold at their first evaluation: not counted in the society's gain.
    at_start: bool = False
    #: Each one's regret against the device's controller so far (none compared: 0 episodes).
    agent_regret: Regret = field(default_factory=Regret)
    twin_regret: Regret = field(default_factory=Regret)

    @property
    def ratio(self) -> float | None:
        twin = self.twin_steps if self.twin_steps is not None else self.twin_steps_so_far
        if self.agent_steps is None or self.agent_steps <= 0:
            return None
        return twin / self.agent_steps

    @property
    def regret_against_twin(self) -> float | None:
        """The agent's relative regret minus its twin's (negative: sharing cost less).

        Relative regrets, each over its own episodes, so that a pair compared while one has
        lived more days than the other reads as it will at the end. None until both compared.
        """
        ours, theirs = self.agent_regret.relative, self.twin_regret.relative
        return None if ours is None or theirs is None else ours - theirs


@dataclass(frozen=True, slots=True)
class SharingGain:
    threshold: float
    pairs: tuple[PairGain, ...]
    window: int = 1
    scale: ThresholdScale = ThresholdScale.RETURN

    @property
    def ratio(self) -> float | None:
        """Total twin steps over total sharing steps, over pairs whose sharer reached it.

        Pairs past the threshold at their start (``at_start``) are not counted.
        """
        done = self._counted()
        if not done:
            return None
        agent_total = sum(p.agent_steps or 0 for p in done)
        twin_total = sum(p.twin_steps if p.twin_steps is not None else p.twin_steps_so_far
                         for p in done)  # fmt: skip
        return twin_total / agent_total

    @property
    def at_least(self) -> bool:
        """True when some twin has not reached the threshold yet: the ratio is a lower bound."""
        return any(p.twin_steps is None for p in self._counted())

    @property
    def past_at_start(self) -> int:
        """How many pairs were both at the threshold at their first evaluation."""
        return sum(1 for p in self.pairs if p.at_start)

    @property
    def regret_against_twins(self) -> float | None:
        """The pairs' :attr:`PairGain.regret_against_twin`, weighted by the controller's cost.

        A device whose controller costs more weighs more: the figure is what the sharing
        agents' devices saved (negative) or lost against their twins', in all, as a share of
        what their controllers cost. None when no pair has both regrets yet.
        """
        weighted = [
            (difference, abs(p.twin_regret.baseline_return))
            for p in self.pairs
            if (difference := p.regret_against_twin) is not None
        ]
        total = sum(weight for _, weight in weighted)
        if not weighted or total == 0.0:
            return None
        return sum(difference * weight for difference, weight in weighted) / total

    def _counted(self) -> list[PairGain]:
        return [p for p in self.pairs if p.agent_steps and not p.at_start]

    def as_dict(self) -> dict[str, object]:
        return {
            "threshold": self.threshold,
            "threshold_scale": self.scale.value,
            "threshold_window": self.window,
            "ratio": self.ratio,
            "ratio_is_lower_bound": self.at_least,
            "pairs_past_threshold_at_start": self.past_at_start,
            "regret_against_twins": self.regret_against_twins,
            "pairs": [
                {
                    "agent": p.agent,
                    "twin": p.twin,
                    "agent_steps_to_threshold": p.agent_steps,
                    "twin_steps_to_threshold": p.twin_steps,
                    "twin_steps_so_far": p.twin_steps_so_far,
                    "ratio": p.ratio,
                    "past_threshold_at_start": p.at_start,
                    "agent_regret": p.agent_regret.relative,
                    "twin_regret": p.twin_regret.relative,
                    "regret_against_twin": p.regret_against_twin,
                }
                for p in self.pairs
            ],
        }


def score(point: EvaluationPoint, scale: ThresholdScale = ThresholdScale.RETURN) -> float:
    """An evaluation on ``scale``: its mean return, normalised score, or share over the baseline.

    Per regime, what the agent achieves recalling from its library where it has one
    (``recall_return``): in a world whose regimes ask for conflicting policies one network
    cannot reach a threshold in all of them, an agent with its library can, and that is what
    the run's final line and ``summary.json`` report too. On the ``over_baseline`` scale an
    evaluation without any baseline score is NaN: it reaches no threshold.
    """
    if scale is ThresholdScale.RETURN:
        return point.with_recall
    if scale is ThresholdScale.OVER_BASELINE:
        shares = [
            _over(_worth(s), s.baseline_return)
            for s in point.regimes
            if s.baseline_return is not None
        ]
        return sum(shares) / len(shares) if shares else math.nan
    references = {
        s.regime: (s.random_return, s.baseline_return)
        for s in point.regimes
        if s.random_return is not None and s.baseline_return is not None
    }
    spans = reference_spans(references)
    values = [
        normalise(_worth(s), *references[s.regime], span=spans[s.regime])
        if s.regime in references
        else _worth(s)
        for s in point.regimes
    ]
    return sum(values) / len(values) if values else point.mean_return


def _over(raw: float, baseline: float) -> float:
    """The share by which ``raw`` beats ``baseline`` (a difference where the baseline is ~0)."""
    scale = abs(baseline) if abs(baseline) > DEGENERATE_GAP else 1.0
    return (raw - baseline) / scale


def _worth(regime: RegimeScore) -> float:
    return regime.mean_return if regime.recall_return is None else regime.recall_return


def steps_to_threshold(
    record: AgentRecord,
    threshold: float,
    *,
    scale: ThresholdScale = ThresholdScale.RETURN,
    window: int = 1,
) -> int | None:
    """The step of the first snapshot where the last ``window`` evaluations' mean reached it.

    The mean is over that snapshot's evaluation and the ``window - 1`` before it.

    ``window`` 1 takes the first evaluation at the threshold. A learner whose evaluations jump
    (DQN: 500, then 110, then 500) may touch the threshold long before it holds it; a window of
    a few evaluations counts when it got there and stayed, as l2metrics smooths its curves.
    """
    scores: list[float] = []
    for point in sorted(record.evaluations, key=lambda e: e.step):
        scores.append(score(point, scale))
        recent = scores[-window:]
        if len(recent) == window and sum(recent) / window >= threshold:
            return point.step
    return None


def sharing_gain(
    records: Mapping[str, AgentRecord] | Iterable[AgentRecord],
    threshold: float,
    *,
    scale: ThresholdScale = ThresholdScale.RETURN,
    window: int = 1,
) -> SharingGain:
    by_id = records if isinstance(records, Mapping) else {r.id: r for r in records}

    def reached(record: AgentRecord) -> int | None:
        return steps_to_threshold(record, threshold, scale=scale, window=window)

    def first_judged(record: AgentRecord) -> int | None:
        steps = sorted(e.step for e in record.evaluations)
        return steps[window - 1] if len(steps) >= window else None

    pairs = []
    for twin in by_id.values():
        agent = by_id.get(twin.twin_of) if twin.twin_of else None
        if agent is None:
            continue
        agent_steps, twin_steps = reached(agent), reached(twin)
        at_start = (
            agent_steps is not None
            and twin_steps is not None
            and agent_steps == first_judged(agent)
            and twin_steps == first_judged(twin)
        )
        pairs.append(
            PairGain(
                agent=agent.id,
                twin=twin.id,
                agent_steps=agent_steps,
                twin_steps=twin_steps,
                twin_steps_so_far=twin.env_steps,
                at_start=at_start,
                agent_regret=agent.regret,
                twin_regret=twin.regret,
            )
        )
    return SharingGain(threshold, tuple(sorted(pairs, key=lambda p: p.agent)), window, scale)


def describe(sharing: Mapping[str, Any] | None, *, ended: bool = False) -> str:
    """The gain as one says it, from :meth:`SharingGain.as_dict` ("" without twins).

    The live table's title and the run's final line (``ended``: no "yet") both say it so: the
    gain in steps (or why there is none), then the regret against the twins where there is one.
    """
    if not sharing:
        return ""
    yet = "" if ended else " yet"
    listed = sharing.get("pairs")
    pairs = listed if isinstance(listed, list) else []
    skipped = sharing.get("pairs_past_threshold_at_start")
    skipped = skipped if isinstance(skipped, int) and not isinstance(skipped, bool) else 0
    ratio = sharing.get("ratio")
    at_start = f"{skipped} of {len(pairs)} pairs past the threshold at their first evaluation"
    if isinstance(ratio, int | float):
        counted = f" ({at_start}, not counted)" if skipped else ""
        bound = ">= " if sharing.get("ratio_is_lower_bound") else ""
        text = f"sharing gain {bound}{ratio:.2f}x{counted}"
    elif skipped:
        text = f"sharing gain: not measurable{yet}, {at_start}"
    else:
        text = f"sharing gain: no sharing agent at the threshold{yet}"
    regret = sharing.get("regret_against_twins")
    if isinstance(regret, int | float):
        text += f"; regret against twins {regret:+.1%}"
    return text
