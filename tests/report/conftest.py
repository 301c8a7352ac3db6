"""Run folders built from the real History and Roster, without running a society.

``full_run`` has everything the report shows: two regimes with a drift back and forth, an
isolated twin, an adoption, directives, bus health samples. ``empty_run`` has agents and
nothing else. Both are written the way ``society run`` writes them: ``summary.json`` from the
coordinator's own summaries and ``coordinator/history.sqlite`` through :class:`History`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest

from agents.bus.schemas import SCHEMA_VERSION, Evaluation, Lineage, RegimeScore, Telemetry
from agents.coordinator.history import History
from agents.coordinator.roster import Roster
from agents.coordinator.sharing import sharing_gain
from tests import factories

REGIMES = {"earth": (500.0, 20.0), "moon": (300.0, 10.0)}  # baseline, random
SCHEDULE = [(0, "earth"), (4000, "moon"), (8000, "earth")]  # from step, regime


def regime_at(step: int) -> str:
    return [regime for start, regime in SCHEDULE if start <= step][-1]


def evaluation(agent: str, version: int, step: int, skill: float) -> Evaluation:
    scores = [
        RegimeScore(regime=name, mean_return=skill * baseline, baseline_return=baseline,
                    random_return=random)
        for name, (baseline, random) in REGIMES.items()
    ]  # fmt: skip
    return Evaluation(
        schema=SCHEMA_VERSION, agent=agent, version=version, step=step, env_id="CartPole-v1",
        algo="ppo", mean_return=sum(s.mean_return for s in scores) / len(scores),
        std_return=1.0, episodes=5, seeds=[1, 2, 3, 4, 5], seconds=0.5, ts=time.time(),
        regimes=scores, baseline="pd", baseline_return=400.0, train_regime=regime_at(step),
    )  # fmt: skip


def telemetry(agent: str, step: int, twin_of: str = "") -> Telemetry:
    steps = [step - 300, step - 150, step]
    # a0 and a1 average each other's weights; a twin learns from nobody.
    peer = {"a0": ["a1"], "a1": ["a0"]}.get(agent, [])
    return msgspec.structs.replace(
        factories.telemetry(agent), env_steps=step, episode_returns=[100.0, 120.0, 140.0],
        episode_steps=steps, episode_regimes=[regime_at(s) for s in steps],
        regime=regime_at(step), twin_of=twin_of, drift_events=2, adaptations=1,
        learns_from=peer, federated_rounds=step // 512,
    )  # fmt: skip


def write_run(folder: Path, summary: dict[str, Any], history: History) -> Path:
    history.close()
    (folder / "summary.json").write_text(json.dumps(summary, indent=2))
    return folder


def base_summary(roster: Roster) -> dict[str, Any]:
    return {
        "status": "completed", "reason": None, "society": "lab", "scenario": "cartpole",
        "steps_per_agent": 10000, "broker": {"url": "mqtt://127.0.0.1:1883", "managed": None},
        "started_at": time.time() - 60, "duration_seconds": 60.0,
        "agents": roster.summaries(),
        "groups": roster.groups_in_run(), "sharing": None, "lineage": [],
        "coordinator": {"messages_received_by_kind": {"policy": 4},
                        "messages_rejected_by_reason": {"malformed": 1}},
    }  # fmt: skip


@pytest.fixture
def full_run(tmp_path: Path) -> Path:
    folder = tmp_path / "run"
    history = History(folder / "coordinator" / "history.sqlite")
    roster = Roster()
    members = {"a0": ("", 1.0), "a0-twin": ("a0", 0.6), "a1": ("", 0.8)}
    for agent, (twin_of, pace) in members.items():
        for version, step in enumerate(range(0, 10001, 2000), start=1):
            message = telemetry(agent, max(step, 300), twin_of)
            record = roster.on_telemetry(message)
            history.record_telemetry(message, *record.latest_episodes)
            result = evaluation(agent, version, step, skill=min(1.0, pace * (0.2 + step / 8000)))
            roster.on_evaluation(result)
            history.record_evaluation(result)
    adopted = msgspec.structs.replace(
        factories.snapshot("a1", version=7), lineage=Lineage(agent="a0", version=3)
    )
    roster.on_snapshot(adopted)
    history.record_snapshot(adopted)
    adopt = msgspec.structs.replace(
        factories.directive("a1"), action="adopt", source=Lineage(agent="a0", version=3)
    )
    history.record_directive(adopt)
    for index in range(6):
        history.record_bus_health(
            connected=index not in {0, 3}, received=10 * index, rejected=index // 4,
            duplicates=index // 2, reconnects=int(index > 3), evaluation_backlog=index % 3,
        )  # fmt: skip
    summary = base_summary(roster)
    summary["sharing"] = sharing_gain(roster.agents, 0.9 * 400).as_dict()
    summary["lineage"] = history.lineage()
    summary["evolution_directives"] = 1
    return write_run(folder, summary, history)


@pytest.fixture
def empty_run(tmp_path: Path) -> Path:
    """Agents that never got evaluated: no evaluations, no twins, no drift, no adoptions."""
    folder = tmp_path / "empty"
    history = History(folder / "coordinator" / "history.sqlite")
    roster = Roster()
    roster.get("lonely")
    return write_run(folder, base_summary(roster), history)
