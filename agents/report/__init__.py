"""The run report: what the society did, as figures and one self-contained HTML page.

``society run`` renders it into the run folder when the run ends (:func:`render_after_run`);
``society report RUN_DIR`` renders it again from the folder's summary and history
(:func:`agents.report.render.render_report`). See ``docs/report.md`` for what it shows and
how to read it.

This module imports nothing heavy: matplotlib is loaded only when a report is rendered, so
the ``society`` command starts as fast without it.
"""

from __future__ import annotations

import logging
from pathlib import Path

__all__ = ["render_after_run"]

log = logging.getLogger(__name__)


def render_after_run(folder: Path) -> Path | None:
    """Render the report of a run that just ended; a failure is logged, never raised.

    The report is a view of the run, not part of it: a bug in a figure must not turn a
    successful run into a failed one, nor hide the run's own result.
    """
    try:
        from agents.report.render import render_report  # noqa: PLC0415 - matplotlib on demand

        path = render_report(folder)
    except Exception:  # whatever went wrong, the run's outcome stands
        log.warning("could not render the report of %s", folder, exc_info=True)
        return None
    log.info("report in %s", path)
    return path
