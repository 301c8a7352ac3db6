"""The report of a run folder: every figure drawn and referenced, empty sections said so."""

from __future__ import annotations

import base64
import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from agents.cli import main
from agents.report import render_after_run
from agents.report.data import load_run
from agents.report.render import render_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FULL_FIGURES = {
    "evaluation-a0.png", "evaluation-a0-twin.png", "evaluation-a1.png",
    "sharing.png", "lineage.png", "bus-health.png",
}  # fmt: skip


def embedded_images(page: str) -> list[bytes]:
    return [
        base64.b64decode(data) for data in re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    ]


def test_every_figure_is_a_png_referenced_and_embedded_in_the_page(full_run: Path) -> None:
    page_path = render_report(full_run)
    assert page_path == full_run / "report.html"
    page = page_path.read_text()
    written = {path.name for path in (full_run / "figures").iterdir()}
    assert written == FULL_FIGURES
    images = embedded_images(page)
    for name in FULL_FIGURES:
        png = (full_run / "figures" / name).read_bytes()
        assert png.startswith(PNG_SIGNATURE), name
        assert len(png) > 5000, name  # a real plot, not an empty canvas
        assert f'href="figures/{name}"' in page, name
        assert png in images, name  # the page works alone, without the folder
    assert len(images) == len(FULL_FIGURES)


def test_the_page_needs_nothing_from_the_network(full_run: Path) -> None:
    page = render_report(full_run).read_text()
    assert "<script" not in page.lower()
    assert not re.search(r"(src|href)=\"(https?:)?//", page)
    assert all(src.startswith("data:") for src in re.findall(r'src="([^"]*)"', page))


def test_the_page_shows_the_tables(full_run: Path) -> None:
    page = render_report(full_run).read_text()
    summary = json.loads((full_run / "summary.json").read_text())
    lifelong = next(a["lifelong"] for a in summary["agents"] if a["id"] == "a0")
    relative = lifelong["relative_to_baseline"]["lifetime"]["mean"]
    lifelong_section = page[page.index('id="lifelong-metrics"') : page.index('id="gain-from')]
    assert f"<td>{relative:,.3f}</td>" in lifelong_section
    assert "<td>a0-twin</td>" in lifelong_section
    sharing = summary["sharing"]
    assert sharing["ratio_is_lower_bound"]
    assert f"at least {sharing['ratio']:.2f}" in page
    groups = page[page.index('id="groups"') : page.index('id="lineage"')]
    assert "<td>a0</td><td>a0</td><td>a1</td><td>19</td>" in groups
    assert "<td>a0</td><td>a1</td><td>a0</td><td>19</td>" in groups
    assert "Alone: a0-twin." in groups
    assert summary["groups"] == [["a0", "a1"], ["a0-twin"]]
    lineage = page[page.index('id="lineage"') : page.index('id="bus-health"')]
    assert "<td>a1</td><td>7</td>" in lineage
    assert "1 adopt" in lineage
    assert "malformed 1" in page
    # Beside the means, each agent's last evaluation per regime against the baseline's.
    agents = page[page.index('id="agents"') : page.index('id="evaluations"')]
    last = next(a for a in summary["agents"] if a["id"] == "a0")["evaluations"][-1]["regimes"]
    per_regime = "; ".join(
        f"{name} {score['mean_return']:,.1f} / {score['baseline_return']:,.1f}"
        for name, score in last.items()
    )
    assert f"<td>{per_regime}</td>" in agents


def test_regime_changes_come_from_the_training_blocks(full_run: Path) -> None:
    run = load_run(full_run)
    a0 = next(agent for agent in run.agents if agent.id == "a0")
    assert a0.regimes == ["earth", "moon"]
    assert [regime for _, regime in a0.regime_changes()] == ["moon", "earth"]
    assert all(3700 <= step <= 4000 for step, regime in a0.regime_changes() if regime == "moon")
    assert a0.evaluations[0].regimes["moon"].baseline_return == 300.0
    assert a0.training
    assert len(run.health) == 6
    assert [(a.agent, a.from_agent, a.from_version) for a in run.adoptions] == [("a1", "a0", 3)]


def test_an_empty_run_says_so_in_every_section(empty_run: Path) -> None:
    page = render_report(empty_run).read_text()
    assert not list((empty_run / "figures").glob("*.png"))
    assert "lonely: no evaluations and no training returns recorded." in page
    assert "No lifelong metrics" in page
    assert "No twins in this run" in page
    assert "No adoptions" in page
    assert "No groups: no agent learned from another." in page
    assert "No bus health over time: no bus health samples." in page


def test_a_coordinator_folder_without_summary_is_read_from_its_history(full_run: Path) -> None:
    (full_run / "summary.json").unlink()
    run = load_run(full_run)
    assert {agent.id for agent in run.agents} == {"a0", "a0-twin", "a1"}
    assert all(agent.evaluations for agent in run.agents)
    assert run.adoptions
    render_report(full_run)
    assert (full_run / "figures" / "evaluation-a0.png").read_bytes().startswith(PNG_SIGNATURE)


def test_a_history_from_an_older_build_is_read_for_what_it_has(full_run: Path) -> None:
    with sqlite3.connect(full_run / "coordinator" / "history.sqlite") as db:
        db.execute("DROP TABLE bus_health")
    page = render_report(full_run).read_text()
    assert "No bus health over time" in page
    assert not (full_run / "figures" / "bus-health.png").exists()  # the stale figure is gone


def test_society_report_renders_again(full_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(full_run)]) == 0
    assert capsys.readouterr().out.strip() == f"report: {full_run / 'report.html'}"
    assert (full_run / "report.html").is_file()


def test_society_report_leaves_nothing_beside_a_closed_history(full_run: Path) -> None:
    folder = full_run / "coordinator"
    before = sorted(path.name for path in folder.iterdir())
    assert "history.sqlite-wal" not in before  # its coordinator closed it
    assert main(["report", str(full_run)]) == 0
    assert sorted(path.name for path in folder.iterdir()) == before


@pytest.mark.parametrize("setup", ["missing", "not-a-run", "bad-summary"])
def test_society_report_of_something_else_is_one_line_exit_2(
    tmp_path: Path, setup: str, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "folder"
    if setup != "missing":
        folder.mkdir()
        (folder / "notes.txt").write_text("hello")
    if setup == "bad-summary":
        (folder / "summary.json").write_text("{not json")
    assert main(["report", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("society: error:")
    assert str(folder) in err


def test_a_failed_rendering_after_a_run_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert render_after_run(tmp_path / "nowhere") is None
    assert "could not render the report" in caplog.text


def test_the_society_command_loads_matplotlib_only_to_render() -> None:
    code = "import sys, agents.cli; print('matplotlib' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


def test_a_hand_edited_summary_with_wrong_types_still_renders(full_run: Path) -> None:
    summary = json.loads((full_run / "summary.json").read_text())
    summary.update(
        broker="not a mapping", started_at="yesterday", duration_seconds=None,
        sharing={"pairs": "none", "ratio": "big"}, lineage=[{"agent": 3}, "x"],
        coordinator=[], status=None,
    )  # fmt: skip
    first = summary["agents"][0]
    first["evaluations"] = [{"step": "0"}, {"step": 10, "mean_return": float("nan")}, 7]
    first["lifelong"] = {"blocks": "many", "forgetting": []}
    summary["agents"][1] = {"id": "odd", "env_steps": "lots", "evaluations": None}
    (full_run / "summary.json").write_text(json.dumps(summary))
    page = render_report(full_run).read_text()
    assert "<td>odd</td>" in page
    assert "No twins in this run" in page


@pytest.mark.parametrize(
    ("sharing", "text"),
    [
        ({"threshold": 475.0}, "475"),
        ({"threshold": 1.0, "threshold_scale": "normalised"}, "1 (normalised: 0 random"),
        ({"threshold": 0.15, "threshold_scale": "over_baseline"}, "15% better than the baseline"),
        ({"threshold": "x"}, "?"),
    ],
)
def test_the_threshold_is_shown_on_its_scale(sharing: dict[str, object], text: str) -> None:
    from agents.report.values import threshold_text

    assert threshold_text(sharing).startswith(text)


def test_a_start_past_the_threshold_reads_as_no_measurable_gain(full_run: Path) -> None:
    summary = json.loads((full_run / "summary.json").read_text())
    for pair in summary["sharing"]["pairs"]:
        pair["past_threshold_at_start"] = True
    summary["sharing"].update(ratio=None, ratio_is_lower_bound=False)
    (full_run / "summary.json").write_text(json.dumps(summary))
    page = render_report(full_run).read_text()
    assert "No gain can be measured" in page
    assert "past it at the start" in page
    assert "No sharing agent reached the threshold" not in page


def test_the_sharing_section_shows_each_pair_s_regret_and_the_society_s(full_run: Path) -> None:
    summary = json.loads((full_run / "summary.json").read_text())
    summary["sharing"]["regret_against_twins"] = -0.0412
    for pair in summary["sharing"]["pairs"]:
        pair.update(agent_regret=-0.153, twin_regret=-0.081)
    (full_run / "summary.json").write_text(json.dumps(summary))
    page = render_report(full_run).read_text()
    section = page[page.index('id="gain-from') : page.index('id="groups"')]
    assert "cost <strong>-4.1%</strong> of their controllers' cost" in section
    assert "<td>-15.3%</td><td>-8.1%</td>" in section
