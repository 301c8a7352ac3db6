"""Render a run folder's report: PNG figures in ``figures/`` and ``report.html``.

The one entry point is :func:`render_report`. It reads the folder (:mod:`agents.report.data`),
draws what there is to draw (:mod:`agents.report.figures`, :mod:`agents.report.lineage`),
writes each figure as a PNG, and writes the page (:mod:`agents.report.html`) last, through a
temporary file and a rename, so a reader never sees half a report.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

from matplotlib.figure import Figure

from agents._atomic import write_text_atomically
from agents.report.data import load_run
from agents.report.figures import bus_health_figure, evaluation_figure, sharing_figure
from agents.report.html import RenderedFigure, build_html
from agents.report.lineage import lineage_figure
from agents.report.records import RunData

__all__ = ["FIGURES_DIR", "REPORT_FILE", "render_report"]

REPORT_FILE = "report.html"
FIGURES_DIR = "figures"

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def render_report(folder: Path) -> Path:
    """Render the report of the run in ``folder``; returns the path of ``report.html``.

    Raises :class:`~agents.exceptions.ConfigError` if ``folder`` is not a run folder.
    """
    run = load_run(folder)
    figures_dir = folder / FIGURES_DIR
    figures_dir.mkdir(exist_ok=True)
    rendered = {
        key: _save(figure, figures_dir, stem, title)
        for key, stem, title, figure in _draw(run)
        if figure is not None
    }
    _remove_stale(figures_dir, {Path(f.href).name for f in rendered.values()})
    path = folder / REPORT_FILE
    write_text_atomically(path, build_html(run, rendered))
    return path


def _draw(run: RunData) -> list[tuple[str, str, str, Figure | None]]:
    """(key, file stem, title, figure or None) for every figure the report can show."""
    stems: set[str] = set()
    drawn = []
    for agent in run.agents:
        stem = _unique(f"evaluation-{_UNSAFE.sub('_', agent.id)}", stems)
        drawn.append((f"evaluation:{agent.id}", stem, f"Evaluation of {agent.id}",
                      evaluation_figure(agent)))  # fmt: skip
    if run.sharing is not None:
        drawn.append(("sharing", "sharing", "Sharing agents and their isolated twins",
                      sharing_figure(dict(run.sharing), run.agents)))  # fmt: skip
    drawn.append(("lineage", "lineage", "Lineage of adoptions",
                  lineage_figure([a.id for a in run.agents], run.adoptions)))  # fmt: skip
    drawn.append(
        ("bus-health", "bus-health", "Bus health over time", bus_health_figure(run.health))
    )
    return drawn


def _unique(stem: str, taken: set[str]) -> str:
    candidate, index = stem, 2
    while candidate in taken:
        candidate, index = f"{stem}-{index}", index + 1
    taken.add(candidate)
    return candidate


def _save(figure: Figure, directory: Path, stem: str, title: str) -> RenderedFigure:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    png = buffer.getvalue()
    (directory / f"{stem}.png").write_bytes(png)
    return RenderedFigure(href=f"{FIGURES_DIR}/{stem}.png", title=title, png=png)


def _remove_stale(directory: Path, keep: set[str]) -> None:
    """Figures of an earlier rendering that this one did not draw (say, a renamed agent)."""
    for pattern in ("evaluation-*.png", "sharing.png", "lineage.png", "bus-health.png"):
        for path in directory.glob(pattern):
            if path.name not in keep:
                path.unlink(missing_ok=True)
