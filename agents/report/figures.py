"""The report's figures, drawn with matplotlib's object API on the Agg canvas.

No pyplot: it keeps global state and picks a GUI backend from the environment, which a
headless coordinator, a container or a test has no use for. Each ``*_figure`` function returns
``None`` when it has nothing to draw, so the report can say so instead of showing an empty
frame; nothing here raises on a short or odd history.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from agents.report.records import AgentData, EvalRecord, HealthSample
from agents.report.values import threshold_text

__all__ = [
    "bus_health_figure",
    "evaluation_figure",
    "new_figure",
    "regime_colours",
    "sharing_figure",
]

#: A regime gets its colour from this cycle (matplotlib's tab10), in first-seen order.
_PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
)  # fmt: skip
_MAX_REGIME_PANELS = 8
_PANEL_HEIGHT = 2.1


def new_figure(width: float, height: float) -> Figure:
    """A figure bound to the Agg canvas, laid out so labels are never cut off."""
    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def regime_colours(regimes: Sequence[str]) -> dict[str, str]:
    return {regime: _PALETTE[i % len(_PALETTE)] for i, regime in enumerate(regimes)}


# --- evaluation ------------------------------------------------------------------------------


def evaluation_figure(agent: AgentData) -> Figure | None:
    """The agent's evaluation return over its steps, overall and per regime.

    The top panel is the mean over regimes (what the leaderboard ranks), with the baseline's
    score on the same worlds and the returns of the agent's own training episodes. One panel
    per regime follows when the world drifts: the agent's return there, the baseline's (dashed)
    and a random controller's (dotted). The background shows which regime the agent was
    training in; dashed vertical lines mark the regime changes.
    """
    if not agent.evaluations and not agent.training:
        return None
    regimes = agent.regimes
    panels = regimes[:_MAX_REGIME_PANELS] if len(regimes) > 1 else []
    colours = regime_colours(_all_regimes(agent))
    figure = new_figure(9.0, 0.8 + _PANEL_HEIGHT * (1 + len(panels)))
    axes = figure.subplots(1 + len(panels), 1, sharex=True, squeeze=False)[:, 0]
    _overall_panel(axes[0], agent)
    for ax, regime in zip(axes[1:], panels, strict=True):
        _regime_panel(ax, agent.evaluations, regime, colours[regime])
    for index, ax in enumerate(axes):
        _mark_regimes(ax, agent, colours, labels=index == 0)
        ax.grid(visible=True, alpha=0.3)
    axes[-1].set_xlabel("agent steps")
    figure.suptitle(_agent_title(agent), fontsize=11)
    return figure


def _all_regimes(agent: AgentData) -> list[str]:
    seen = dict.fromkeys(agent.regimes)
    seen.update(dict.fromkeys(b.regime for b in agent.blocks if b.regime))
    seen.update(dict.fromkeys(e.train_regime for e in agent.evaluations if e.train_regime))
    return list(seen)


def _agent_title(agent: AgentData) -> str:
    world = f"{agent.algo} on {agent.env}" if agent.algo and agent.env else agent.env
    drifts = f"{_plural(agent.drift_events, 'drift')} detected, " + _plural(
        agent.adaptations, "adaptation"
    )
    return f"{agent.id}" + (f" ({world})" if world else "") + f": {drifts}"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _overall_panel(ax: Axes, agent: AgentData) -> None:
    if agent.training:
        ax.plot(
            [s.step for s in agent.training],
            [s.mean_return for s in agent.training],
            color="#b0b0b0",
            linewidth=0.9,
            label="training episodes (telemetry)",
        )
    points = agent.evaluations
    if points:
        ax.plot(
            [p.step for p in points],
            [p.mean_return for p in points],
            marker="o",
            markersize=4,
            color="#1f77b4",
            label="evaluation (mean over regimes)",
        )
        _reference_line(ax, points, [p.baseline_return for p in points], "baseline", "--")
    ax.set_ylabel("return")
    ax.set_title("overall", fontsize=9, loc="left")
    ax.legend(fontsize=7, loc="best")


def _regime_panel(ax: Axes, points: Sequence[EvalRecord], regime: str, colour: str) -> None:
    scored = [p for p in points if regime in p.regimes]
    results = [p.regimes[regime] for p in scored]
    ax.plot(
        [p.step for p in scored],
        [r.mean_return for r in results],
        marker="o",
        markersize=3.5,
        color=colour,
        label="agent",
    )
    if any(r.recall_return is not None for r in results):
        ax.plot(
            [p.step for p, r in zip(scored, results, strict=True) if r.recall_return is not None],
            [r.recall_return for r in results if r.recall_return is not None],
            marker="x",
            linestyle=":",
            color=colour,
            label="with recall from its library",
        )
    _reference_line(ax, scored, [r.baseline_return for r in results], "baseline", "--")
    _reference_line(ax, scored, [r.random_return for r in results], "random", ":")
    ax.set_ylabel("return")
    ax.set_title(f"regime {regime}", fontsize=9, loc="left")
    ax.legend(fontsize=7, loc="best")


def _reference_line(
    ax: Axes, points: Sequence[EvalRecord], values: Sequence[float | None], label: str, style: str
) -> None:
    """A reference controller's score at each evaluation (constant unless its world changed)."""
    pairs = [(p.step, v) for p, v in zip(points, values, strict=True) if v is not None]
    if not pairs:
        return
    steps, scores = zip(*pairs, strict=True)
    if len(pairs) == 1:
        ax.axhline(scores[0], color="black", linestyle=style, linewidth=1.0, label=label)
    else:
        ax.plot(steps, scores, color="black", linestyle=style, linewidth=1.0, label=label)


def _mark_regimes(ax: Axes, agent: AgentData, colours: dict[str, str], *, labels: bool) -> None:
    """Shade the regime blocks and draw a dashed line at each regime change (named if labels)."""
    for block in agent.blocks:
        if block.regime in colours and block.end_step > block.start_step:
            ax.axvspan(block.start_step, block.end_step, color=colours[block.regime], alpha=0.08)
    for step, regime in agent.regime_changes():
        ax.axvline(step, color=colours.get(regime, "grey"), linestyle="--", linewidth=1.0)
    if labels:
        for step, regime in agent.regime_changes():
            ax.annotate(
                f"→ {regime}",
                xy=(step, 1.0),
                xycoords=("data", "axes fraction"),
                xytext=(2, -10),
                textcoords="offset points",
                fontsize=7,
                color=colours.get(regime, "grey"),
            )


# --- bus health ------------------------------------------------------------------------------


def bus_health_figure(samples: Sequence[HealthSample]) -> Figure | None:
    """The coordinator's bus counters over the run: traffic, trouble, evaluation backlog.

    Counters are cumulative, so a flat line is a quiet bus and a step is an event. Periods
    when the coordinator was disconnected from the broker are shaded red.
    """
    if not samples:
        return None
    start = samples[0].ts
    seconds = [s.ts - start for s in samples]
    figure = new_figure(9.0, 6.4)
    traffic, trouble, backlog = figure.subplots(3, 1, sharex=True)
    traffic.plot(seconds, [s.received for s in samples], color="#1f77b4", label="received")
    traffic.set_ylabel("messages")
    trouble.step(seconds, [s.rejected for s in samples], where="post", label="rejected")
    trouble.step(seconds, [s.duplicates for s in samples], where="post", label="duplicates")
    trouble.step(seconds, [s.reconnects for s in samples], where="post", label="reconnects")
    trouble.set_ylabel("count")
    backlog.step(seconds, [s.backlog for s in samples], where="post", color="#9467bd",
                 label="snapshots waiting for evaluation")  # fmt: skip
    backlog.set_ylabel("backlog")
    backlog.set_xlabel("seconds since the coordinator's first sample")
    for ax in (traffic, trouble, backlog):
        _shade_disconnected(ax, seconds, samples)
        ax.grid(visible=True, alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    _integer_axis(traffic, [s.received for s in samples])
    _integer_axis(trouble, [v for s in samples for v in (s.rejected, s.duplicates, s.reconnects)])
    _integer_axis(backlog, [s.backlog for s in samples])
    figure.suptitle("bus health, as the coordinator saw it (cumulative counts)", fontsize=11)
    return figure


def _shade_disconnected(
    ax: Axes, seconds: Sequence[float], samples: Sequence[HealthSample]
) -> None:
    """Shade the intervals that start with a disconnected sample, once the bus had been up.

    The coordinator's first sample precedes its first connection and its last one follows
    its disconnect: neither is an outage, so neither is shaded.
    """
    was_up = False
    for index, sample in enumerate(samples[:-1]):
        if sample.connected:
            was_up = True
        elif was_up:
            ax.axvspan(seconds[index], seconds[index + 1], color="red", alpha=0.12)


def _integer_axis(ax: Axes, values: Sequence[int]) -> None:
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylim(0, max(1, *values) * 1.1)


# --- sharing ---------------------------------------------------------------------------------


def sharing_figure(sharing: dict[str, Any], agents: Sequence[AgentData]) -> Figure | None:
    """Per pair, the sharing agent's and its isolated twin's evaluation curves.

    Dotted vertical lines mark each one's steps to the threshold, as the coordinator measured
    them; the gain is the twin's steps divided by the sharing agent's.
    """
    listed = sharing.get("pairs")
    pairs = [p for p in listed if isinstance(p, dict)] if isinstance(listed, list) else []
    by_id = {agent.id: agent for agent in agents}
    if not pairs:
        return None
    columns = min(2, len(pairs))
    rows = math.ceil(len(pairs) / columns)
    figure = new_figure(9.0, 0.6 + 2.6 * rows)
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for ax, pair in zip(axes, pairs, strict=False):
        _pair_panel(ax, pair, by_id)
    for ax in axes[len(pairs) :]:
        ax.set_visible(False)
    figure.suptitle(f"learning with and without sharing (threshold: {threshold_text(sharing)})",
                    fontsize=11)  # fmt: skip
    return figure


def _pair_panel(ax: Axes, pair: dict[str, Any], by_id: dict[str, AgentData]) -> None:
    # The twin is drawn first and dashed: where both learned alike, the sharing agent's line
    # lies on top of it and both stay visible.
    for key, steps_key, colour, style, label in (
        ("twin", "twin_steps_to_threshold", "#ff7f0e", "--", "isolated twin"),
        ("agent", "agent_steps_to_threshold", "#1f77b4", "-", "sharing"),
    ):
        member = by_id.get(str(pair.get(key)))
        if member is not None and member.evaluations:
            ax.plot(
                [p.step for p in member.evaluations],
                [p.mean_return for p in member.evaluations],
                marker="o",
                markersize=3.5,
                color=colour,
                linestyle=style,
                label=f"{label} ({member.id})",
            )
        steps = pair.get(steps_key)
        if isinstance(steps, int | float) and not isinstance(steps, bool):
            ax.axvline(float(steps), color=colour, linestyle=":", linewidth=1.2)
    ratio = pair.get("ratio")
    bound = "at least " if pair.get("twin_steps_to_threshold") is None else ""
    gain = f"gain {bound}{ratio:.2f}x" if isinstance(ratio, int | float) else "no gain measured yet"
    ax.set_title(f"{pair.get('agent')}: {gain}", fontsize=9, loc="left")
    ax.set_xlabel("agent steps")
    ax.set_ylabel("evaluation return")
    ax.grid(visible=True, alpha=0.3)
    ax.legend(fontsize=7, loc="best")
