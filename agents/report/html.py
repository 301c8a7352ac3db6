"""``report.html``: one self-contained page, readable offline, without JavaScript.

Each figure is embedded as a base64 ``data:`` URI, so the file alone is the whole report (mail
it, attach it to an issue), and links to its PNG in ``figures/`` for a full-size view. Styles
are inline; nothing is fetched from anywhere. Every piece of text from the run is escaped.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agents.report.records import AgentData, RunData
from agents.report.values import threshold_text

__all__ = ["RenderedFigure", "build_html"]


#: What a table shows for a value the history does not define (an en dash).
_UNDEFINED = "\u2013"


@dataclass(frozen=True, slots=True)
class RenderedFigure:
    """A figure written to ``href`` (relative to the report), with its PNG bytes."""

    href: str
    title: str
    png: bytes


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1000px; color: #222;
       line-height: 1.45; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; }
.scroll { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; margin: .8em 0; font-size: .85em; }
td:first-child { white-space: nowrap; }
th, td { border: 1px solid #ddd; padding: .25em .55em; text-align: right; }
th { background: #f4f4f4; } td:first-child, th:first-child { text-align: left; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: .85em; color: #555; }
.empty { color: #666; font-style: italic; background: #f8f8f8; padding: .6em; }
.note { font-size: .85em; color: #555; }
dl { display: grid; grid-template-columns: max-content auto; gap: .1em 1em; }
dt { font-weight: 600; } dd { margin: 0; }
"""


def build_html(run: RunData, figures: Mapping[str, RenderedFigure]) -> str:
    """The whole page. ``figures`` maps a figure key (see :mod:`agents.report.render`) to it."""
    body = [
        f"<h1>{_e(run.title)}</h1>",
        _overview(run),
        _agents_table(run.agents),
        _evaluations(run, figures),
        _lifelong(run.agents),
        _sharing(run, figures.get("sharing")),
        _groups(run.agents),
        _lineage(run, figures.get("lineage")),
        _bus_health(run, figures.get("bus-health")),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{_e(run.title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


# --- sections --------------------------------------------------------------------------------


def _overview(run: RunData) -> str:
    summary = run.summary
    items = [
        ("status", f"{summary.get('status', 'unknown')}"
                   + (f" ({summary['reason']})" if summary.get("reason") else "")),
        ("scenario", summary.get("scenario")),
        ("agents", len(run.agents)),
        ("steps per agent", summary.get("steps_per_agent")),
        ("started", _time(summary.get("started_at"))),
        ("duration", _seconds(summary.get("duration_seconds"))),
        ("broker", _get(summary, "broker", "url")),
        ("run folder", str(run.folder)),
        ("report made", _time(dt.datetime.now(dt.UTC).timestamp())),
    ]  # fmt: skip
    rows = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in items if v is not None)
    return f"<dl>{rows}</dl>"


def _agents_table(agents: Sequence[AgentData]) -> str:
    if not agents:
        return _section("Agents", _empty("No agents in this run's summary or history."))
    header = ["agent", "world", "algo", "strategy", "steps", "episodes", "best eval",
              "last eval", "with recall", "baseline", "last eval per regime (agent / baseline)",
              "regret", "drifts", "adaptations", "adoptions", "twin of"]  # fmt: skip
    rows = [
        [a.id, a.env, a.algo, a.strategy, f"{a.env_steps:,}", f"{a.episodes:,}",
         _num(a.best_eval_return, 1), _num(a.last_eval_return, 1),
         _num(a.last_eval_with_recall, 1),
         f"{a.baseline} {_num(a.baseline_eval_return, 1)}" if a.baseline else _UNDEFINED,
         _last_per_regime(a),
         _regret(a.regret, a.regret_ratio),
         a.drift_events, a.adaptations, a.adoptions, a.twin_of or _UNDEFINED]
        for a in agents
    ]  # fmt: skip
    note = _note(
        "Evaluations are the coordinator's, on fixed-seed worlds of every regime of the agent's "
        "world; the baseline is the world's usual controller on the same worlds. Regret is what "
        "the device lived through: the baseline's summed return minus the deployed one's on the "
        "same episodes over the whole run, learning included (positive: worse than the "
        "controller), with its share of the baseline's. 'With recall' is the last evaluation "
        "as the agent acts with its library: on each regime, the policy it would recall there "
        "(chosen on other episodes than those scored). Drifts are those the agent detected in "
        "its own returns; adaptations are the times it changed policy because of one."
    )
    return _section("Agents", _table(header, rows) + note)


def _last_per_regime(agent: AgentData) -> str:
    """The last evaluation on each regime (with recall where there is one) / the baseline's."""
    if not agent.evaluations or not agent.evaluations[-1].regimes:
        return _UNDEFINED
    parts = []
    last = max(agent.evaluations, key=lambda e: e.step)
    for name, result in last.regimes.items():
        value = result.mean_return if result.recall_return is None else result.recall_return
        parts.append(f"{name} {_num(value, 1)} / {_num(result.baseline_return, 1)}")
    return "; ".join(parts)


def _evaluations(run: RunData, figures: Mapping[str, RenderedFigure]) -> str:
    parts = [
        _note(
            "Each agent's evaluation return over its steps. Top: the mean over regimes, with the "
            "baseline (dashed) and the agent's training episodes (grey, from telemetry). Below, "
            "one panel per regime: the agent, the baseline (dashed), a random controller "
            "(dotted). The shading shows which regime the agent was training in; dashed "
            "vertical lines mark regime changes."
        )
    ]
    for agent in run.agents:
        figure = figures.get(f"evaluation:{agent.id}")
        if figure is None:
            parts.append(_empty(f"{agent.id}: no evaluations and no training returns recorded."))
        else:
            parts.append(_figure(figure))
    if not run.agents:
        parts.append(_empty("No evaluations: the run has no agents."))
    return _section("Evaluations", "\n".join(parts))


def _lifelong(agents: Sequence[AgentData]) -> str:
    measured = [a for a in agents if a.lifelong]
    if not measured:
        return _section("Lifelong metrics", _empty("No lifelong metrics: no agent was evaluated."))
    header = ["agent", "evals", "blocks", "maintenance", "forward transfer", "backward transfer",
              "forgetting", "vs baseline (life)", "vs baseline (now)", "recovery, known",
              "recovery, new"]  # fmt: skip
    rows = []
    for agent in measured:
        report = agent.lifelong or {}
        rows.append([
            agent.id,
            _get(report, "evaluations"),
            len(agent.blocks),
            _num(_get(report, "performance_maintenance", "mrlep", "mean")),
            _num(_get(report, "forward_transfer_mean", "difference")),
            _num(_get(report, "backward_transfer_mean", "difference")),
            _num(_get(report, "forgetting", "mean")),
            _num(_get(report, "relative_to_baseline", "lifetime", "mean")),
            _num(_get(report, "relative_to_baseline", "latest", "mean")),
            _recovery(_get(report, "recovery_known")),
            _recovery(_get(report, "recovery_new")),
        ])  # fmt: skip
    note = _note(
        "On normalised scores: 0 is a random controller, 1 the baseline. Maintenance (L2M, "
        "MRLEP): negative means the agent forgot a regime after it moved on. Transfer: how "
        "training on one regime changed the score on another (positive helps). Forgetting "
        "(Continual World): positive means forgotten. Versus baseline: above 1 beats it, over "
        "the whole life and now. Recovery: drifts recovered from / drifts, and the mean steps it "
        "took; a lifelong learner recovers faster in a regime it knows. A dash means undefined for "
        "this history (see docs/lifelong-metrics.md)."
    )
    return _section("Lifelong metrics", _table(header, rows) + note + _per_regime_details(measured))


def _per_regime_details(agents: Sequence[AgentData]) -> str:
    header = ["agent", "regime", "maintenance", "forgetting", "vs baseline (life)",
              "vs baseline (now)"]  # fmt: skip
    rows = [
        [
            agent.id,
            regime,
            _num(_get(agent.lifelong, "performance_maintenance", "mrlep", "per_regime", regime)),
            _num(_get(agent.lifelong, "forgetting", "per_regime", regime)),
            _num(_get(agent.lifelong, "relative_to_baseline", "lifetime", "per_regime", regime)),
            _num(_get(agent.lifelong, "relative_to_baseline", "latest", "per_regime", regime)),
        ]
        for agent in agents
        for regime in _keys(_get(agent.lifelong, "relative_to_baseline", "lifetime", "per_regime"))
    ]
    if not rows:
        return ""
    return f"<details><summary>Per regime</summary>{_table(header, rows)}</details>"


def _sharing(run: RunData, figure: RenderedFigure | None) -> str:
    sharing = run.sharing
    listed = (sharing or {}).get("pairs")
    pairs = [p for p in listed if isinstance(p, dict)] if isinstance(listed, list) else []
    if not sharing or not pairs:
        return _section(
            "Gain from sharing",
            _empty("No twins in this run: society run --twins adds an isolated twin per agent "
                   "(same world and seed, sharing nothing) to measure the gain from sharing."),
        )  # fmt: skip
    ratio = sharing.get("ratio")
    bound = "at least " if sharing.get("ratio_is_lower_bound") else ""
    at_start = sum(1 for p in pairs if p.get("past_threshold_at_start") is True)
    threshold = _e(threshold_text(sharing))
    if isinstance(ratio, int | float):
        headline = (
            f"Twins needed <strong>{bound}{_num(ratio, 2)}&times;</strong> the steps of sharing "
            f"agents to reach the threshold, {threshold}."
        )
        if at_start:
            headline += f" {at_start} pair(s) past it at their first evaluation are not counted."
    elif at_start:
        headline = (
            f"No gain can be measured: the pairs that reached the threshold, {threshold}, were "
            "past it at their first evaluation, sharing agent and twin alike. A higher "
            "<code>[evaluation] threshold</code> would show how soon each learned beyond it."
        )
    else:
        headline = f"No sharing agent reached the threshold, {threshold}, yet."
    regret = sharing.get("regret_against_twins")
    if isinstance(regret, int | float):
        headline += (
            f" Over the run the sharing agents' devices cost <strong>{_share(regret)}</strong> "
            "of their controllers' cost against their twins' (negative: less)."
        )
    header = ["agent", "twin", "agent steps", "twin steps", "twin steps so far", "gain",
              "agent regret", "twin regret"]  # fmt: skip
    rows = [
        [p.get("agent"), p.get("twin"), _int(p.get("agent_steps_to_threshold")),
         _int(p.get("twin_steps_to_threshold")), _int(p.get("twin_steps_so_far")),
         "past it at the start" if p.get("past_threshold_at_start") is True
         else _num(p.get("ratio"), 2),
         _share(p.get("agent_regret")), _share(p.get("twin_regret"))]
        for p in pairs
    ]  # fmt: skip
    parts = [f"<p>{headline}</p>", _table(header, rows)]
    if figure is not None:
        parts.append(_figure(figure))
    parts.append(_note(
        "Steps to threshold: the agent's step at its first snapshot evaluated at the threshold. "
        "The gain is the twin's steps over the sharing agent's; a twin that has not reached it "
        "counts with the steps it took so far, and the gain is then a lower bound. Regret: "
        "what the device cost against its controller on the same days over the run, as a "
        "share of the controller's cost (negative: it cost less)."
    ))  # fmt: skip
    return _section("Gain from sharing", "\n".join(parts))


def _groups(agents: Sequence[AgentData]) -> str:
    members: dict[str, list[AgentData]] = {}
    for agent in agents:
        members.setdefault(agent.group or agent.id, []).append(agent)
    together = {name: group for name, group in members.items() if len(group) > 1}
    note = _note(
        "Every agent chooses by itself the peers it learns from: those alike enough (federated "
        "weights averaged in, experience taken in). A group is the agents linked by such "
        "choices, directly or through others, named after its first member. An agent that "
        "learns from nobody, and from which nobody learns (a twin, a device unlike the "
        "others), is alone."
    )
    if not together:
        return _section("Groups", _empty("No groups: no agent learned from another.") + note)
    header = ["group", "agent", "learns from", "federated rounds"]
    rows = [
        [name, a.id, ", ".join(a.learns_from) or _UNDEFINED, f"{a.federated_rounds:,}"]
        for name, group in sorted(together.items())
        for a in sorted(group, key=lambda a: a.id)
    ]
    alone = sorted(a.id for group in members.values() if len(group) == 1 for a in group)
    extra = _note(f"Alone: {_e(', '.join(alone))}.") if alone else ""
    return _section("Groups", _table(header, rows) + extra + note)


def _lineage(run: RunData, figure: RenderedFigure | None) -> str:
    directives = ", ".join(f"{count} {action}" for action, count in run.directives.items())
    extra = _note(f"Directives sent by evolution: {_e(directives)}.") if directives else ""
    if not run.adoptions:
        return _section(
            "Lineage", _empty("No adoptions: no agent took on another's weights.") + extra
        )
    header = ["agent", "its version", "at step", "adopted from", "version"]
    rows = [[a.agent, a.version, f"{a.step:,}", a.from_agent, a.from_version]
            for a in run.adoptions[:200]]  # fmt: skip
    parts = [_figure(figure)] if figure is not None else []
    parts += [_table(header, rows), extra]
    return _section("Lineage", "\n".join(parts))


def _bus_health(run: RunData, figure: RenderedFigure | None) -> str:
    received = _counts(_get(run.summary, "coordinator", "messages_received_by_kind"))
    rejected = _counts(_get(run.summary, "coordinator", "messages_rejected_by_reason"))
    details = [f"Received by kind: {received}."] if received else []
    details.append(f"Rejected by reason: {rejected or 'none'}.")
    note = _note(" ".join(_e(d) for d in details))
    if figure is None:
        reason = "no history database" if not run.has_history else "no bus health samples"
        return _section("Bus health", _empty(f"No bus health over time: {reason}.") + note)
    return _section("Bus health", _figure(figure) + note)


# --- building blocks -------------------------------------------------------------------------


def _section(title: str, content: str) -> str:
    anchor = title.lower().replace(" ", "-")
    return f'<section id="{_e(anchor)}">\n<h2>{_e(title)}</h2>\n{content}\n</section>'


def _figure(figure: RenderedFigure) -> str:
    data = base64.b64encode(figure.png).decode("ascii")
    return (
        f'<figure><a href="{_e(figure.href)}">'
        f'<img src="data:image/png;base64,{data}" alt="{_e(figure.title)}"></a>'
        f"<figcaption>{_e(figure.title)}</figcaption></figure>"
    )


def _regret(total: float | None, ratio: float | None) -> str:
    if total is None:
        return _UNDEFINED
    share = "" if ratio is None else f" ({_share(ratio)})"
    return f"{total:+,.1f}{share}"


def _table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    # Wide tables (many agents' columns, long metric names) scroll inside the page instead of
    # running off it; agent ids never wrap.
    return (
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


def _empty(text: str) -> str:
    return f'<p class="empty">{_e(text)}</p>'


def _note(text: str) -> str:
    return f'<p class="note">{text}</p>' if text else ""


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value))


def _num(value: object, digits: int = 3) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return _UNDEFINED
    return f"{value:,.{digits}f}"


def _share(value: object) -> str:
    """A share as a signed percentage ("-4.1%"), or the undefined mark."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return _UNDEFINED
    return f"{value:+.1%}"


def _int(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return _UNDEFINED
    return f"{int(value):,}"


def _get(data: object, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, Mapping):
            return None
        data = data.get(key)
    return data


def _keys(value: object) -> list[str]:
    return [str(key) for key in value] if isinstance(value, Mapping) else []


def _recovery(summary: object) -> str:
    if not isinstance(summary, Mapping) or not summary.get("blocks"):
        return _UNDEFINED
    steps = summary.get("mean_steps")
    mean = f", {_int(steps)} steps" if isinstance(steps, int | float) else ""
    return f"{summary.get('recovered', 0)}/{summary.get('blocks')}{mean}"


def _seconds(value: object) -> str | None:
    return f"{_num(value, 1)} s" if isinstance(value, int | float) else None


def _counts(value: object) -> str:
    if not isinstance(value, Mapping):
        return ""
    return ", ".join(f"{key} {count}" for key, count in sorted(value.items(), key=str))


def _time(timestamp: object) -> str | None:
    if isinstance(timestamp, bool) or not isinstance(timestamp, int | float):
        return None
    try:
        moment = dt.datetime.fromtimestamp(timestamp, tz=dt.UTC)
    except (OverflowError, OSError, ValueError):
        return None
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")
