"""The lineage of adoptions as a graph: agents as nodes, adoptions as arrows.

Drawn with plain matplotlib (annotations with arrow props), no graphviz: the agents sit on a
circle, and an arrow from A to B means B took on A's weights (through evolution's directive,
or its own adaptation after a drift). Several adoptions along the same edge are one arrow,
thicker, labelled with their count.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Circle

from agents.report.figures import new_figure
from agents.report.records import Adoption

__all__ = ["lineage_figure"]

_NODE_RADIUS = 0.13


def lineage_figure(agents: Sequence[str], adoptions: Sequence[Adoption]) -> Figure | None:
    if not adoptions:
        return None
    names = list(dict.fromkeys([*agents, *(a.from_agent for a in adoptions),
                                *(a.agent for a in adoptions)]))  # fmt: skip
    positions = _circle(names)
    edges = Counter((a.from_agent, a.agent) for a in adoptions)
    involved = {name for edge in edges for name in edge}
    size = 4.5 + 0.25 * len(names)
    figure = new_figure(size, size)
    ax = figure.subplots()
    for (source, target), count in sorted(edges.items()):
        if source == target:
            _self_loop(ax, positions[target], count)
        else:
            _arrow(ax, positions[source], positions[target], count)
    for name in names:
        _node(ax, positions[name], name, active=name in involved)
    ax.set_xlim(-1.5, 1.5)
    ax.set_ylim(-1.5, 1.5)
    ax.set_aspect("equal")
    ax.axis("off")
    total = sum(edges.values())
    ax.set_title(
        f"{total} adoption{'s' if total != 1 else ''}: an arrow A → B means B took A's weights",
        fontsize=10,
    )
    return figure


def _circle(names: Sequence[str]) -> dict[str, tuple[float, float]]:
    if len(names) == 1:
        return {names[0]: (0.0, 0.0)}
    step = 2 * math.pi / len(names)
    return {
        name: (math.cos(math.pi / 2 - i * step), math.sin(math.pi / 2 - i * step))
        for i, name in enumerate(names)
    }


def _node(ax: Axes, xy: tuple[float, float], name: str, *, active: bool) -> None:
    colour = "#1f77b4" if active else "#c7c7c7"
    ax.add_patch(Circle(xy, _NODE_RADIUS, facecolor=colour, edgecolor="black", zorder=3))
    x, y = xy
    # Labels outside the circle of nodes, so arrows never cross them.
    norm = math.hypot(x, y)
    dx, dy = (0.27 * x / norm, 0.27 * y / norm) if norm else (0.0, -0.27)
    ax.text(
        x + dx,
        y + dy,
        name,
        ha="center",
        va="center",
        fontsize=8,
        zorder=4,
    )


def _arrow(ax: Axes, source: tuple[float, float], target: tuple[float, float], count: int) -> None:
    ax.annotate(
        "",
        xy=target,
        xytext=source,
        arrowprops={
            "arrowstyle": "-|>",
            "connectionstyle": "arc3,rad=0.15",
            "color": "#d62728",
            "linewidth": 1.0 + math.log2(count),
            "shrinkA": 14,
            "shrinkB": 14,
            "mutation_scale": 14,
        },
        zorder=2,
    )
    if count > 1:
        # The arc bends to the right of the source→target direction; put the label there.
        (x0, y0), (x1, y1) = source, target
        dx, dy = x1 - x0, y1 - y0
        mx, my = (x0 + x1) / 2 + 0.1 * dy, (y0 + y1) / 2 - 0.1 * dx
        ax.text(mx, my, f"\u00d7{count}", fontsize=8, color="#d62728", ha="center", va="center")


def _self_loop(ax: Axes, xy: tuple[float, float], count: int) -> None:
    """An agent adopting an earlier snapshot of its own: a ring around its node."""
    ax.add_patch(Circle(xy, _NODE_RADIUS * 1.35, fill=False, edgecolor="#d62728", linewidth=1.5))
    x, y = xy
    ax.text(x, y - _NODE_RADIUS * 1.9, f"↺ {count}", fontsize=8, color="#d62728", ha="center")
