"""``society run`` and ``society agent`` as users run them: real processes, a real broker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from agents.broker.managed import ManagedBroker

pytestmark = pytest.mark.e2e

AGENT_FIELDS = {
    "id", "env", "algo", "env_steps", "experience_batches_published", "snapshots_published",
    "best_eval_return", "last_eval_return", "last_eval_with_recall", "group", "learns_from",
    "federated_rounds",
}  # fmt: skip
COORDINATOR_FIELDS = {"snapshots_evaluated", "messages_received", "messages_rejected"}


def society(*args: str) -> list[str]:
    return [sys.executable, "-m", "agents", *args]


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that mention ``text`` (our run folder)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (entry / "stat").read_text().split()[2]
        except OSError:
            continue
        if text in cmdline and state != "Z":
            found.append(cmdline)
    return found


def wait_until_gone(text: str, timeout: float = 10.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while (left := processes_mentioning(text)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def completed_run(out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``society run ARGS --out OUT --quiet``, which must exit 0."""
    done = subprocess.run(
        society("run", *args, "--out", str(out), "--quiet"),
        capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def test_society_run_trains_evaluates_and_summarises(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = completed_run(
        out, "--scenario", "cartpole", "--agents", "2", "--steps", "1200", "--metrics-port", "0"
    )
    assert "society run completed" in result.stdout
    assert "final evaluation" in result.stdout
    assert "against pd" in result.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert summary["broker"]["managed"] == "mosquitto"
    assert sorted(member for group in summary["groups"] for member in group) == [
        "cartpole-0", "cartpole-1",
    ]  # fmt: skip
    assert [agent["id"] for agent in summary["agents"]] == ["cartpole-0", "cartpole-1"]
    for agent in summary["agents"]:
        assert set(agent) >= AGENT_FIELDS
        assert agent["env"] == "CartPole-v1"
        assert agent["algo"] == "ppo"
        assert agent["env_steps"] == 1200
        assert agent["experience_batches_published"] == 5  # 4 full batches of 256 + the rest
        assert agent["experience_batches_received"] == 5
        assert agent["snapshots_published"] >= 1
        assert agent["last_eval_return"] is not None
        assert agent["best_eval_return"] >= agent["last_eval_return"]
        # Before any drift the library is empty: with recall is the policy's own return.
        assert agent["last_eval_with_recall"] == agent["last_eval_return"]
        assert agent["exit_code"] == 0
    coordinator = summary["coordinator"]
    assert set(coordinator) >= COORDINATOR_FIELDS
    assert coordinator["snapshots_evaluated"] == sum(
        agent["snapshots_published"] for agent in summary["agents"]
    )
    assert coordinator["messages_rejected"] == 0
    assert coordinator["exit_code"] == 0
    assert (out / "coordinator" / "history.sqlite").exists()
    assert (out / "agents" / "cartpole-0" / "checkpoint" / "checkpoint.json").exists()
    assert not wait_until_gone(str(out))


def start_learning_run(out: Path) -> subprocess.Popen[str]:
    """``society run`` in a terminal's place: its own process group, as a shell starts it.

    Returns once both agents are learning.
    """
    run = subprocess.Popen(
        society("run", "--scenario", "cartpole", "--agents", "2", "--steps", "0",
                "--out", str(out), "--quiet"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    logs = [out / "logs" / f"cartpole-{i}.log" for i in range(2)]
    while not all(log.exists() and "snapshot v1" in log.read_text() for log in logs):
        assert time.monotonic() < deadline, "agents did not start learning"
        assert run.poll() is None, run.stderr.read() if run.stderr else ""
        time.sleep(0.2)
    return run


def ctrl_c(run: subprocess.Popen[str]) -> None:
    """What Ctrl-C in a terminal does: SIGINT to every process of the foreground group."""
    os.killpg(run.pid, signal.SIGINT)


def test_ctrl_c_stops_everything_in_order_and_leaves_no_process(tmp_path: Path) -> None:
    out = tmp_path / "run"
    run = start_learning_run(out)
    try:
        ctrl_c(run)
        # Within seconds: the broker is not in the terminal's group, so it outlives the agents
        # and takes their last messages (it died first, and they waited 30 s for it).
        _, stderr = run.communicate(timeout=30)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 130
    lines = stderr.strip().splitlines()
    assert "society: stopping: waiting for 2 agents and the coordinator" in stderr
    assert lines[-1] == f"society: run interrupted; see {out / 'summary.json'}"
    assert not wait_until_gone(str(out)), "processes left behind"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    for agent in summary["agents"]:
        # Stopped gracefully: each agent checkpointed and reported how far it got, with
        # nothing left in its outbox.
        assert agent["exit_code"] == 0
        assert agent["env_steps"] > 0
        assert agent["outbox_pending"] == 0


def test_a_second_ctrl_c_stops_at_once(tmp_path: Path) -> None:
    out = tmp_path / "run"
    run = start_learning_run(out)
    try:
        ctrl_c(run)
        time.sleep(0.3)
        ctrl_c(run)
        _, stderr = run.communicate(timeout=15)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 130
    assert "society: stopping at once" in stderr
    assert not wait_until_gone(str(out)), "processes left behind"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "interrupted"


def test_an_agent_started_by_hand_joins_a_running_society(
    mosquitto: ManagedBroker, tmp_path: Path
) -> None:
    url = f"mqtt://{mosquitto.url.host}:{mosquitto.url.port}"
    out = tmp_path / "run"
    run = subprocess.Popen(
        society("run", "--scenario", "cartpole", "--agents", "1", "--steps", "0",
                "--duration", "30", "--broker", url, "--out", str(out), "--quiet"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        visitor = subprocess.run(
            society("agent", "--id", "visitor", "--society", "cartpole", "--broker", url,
                    "--scenario", "cartpole", "--steps", "800",
                    "--data-dir", str(tmp_path / "visitor")),
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert visitor.returncode == 0, visitor.stderr[-2000:]
        stdout, stderr = run.communicate(timeout=180)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0, stderr[-2000:]
    assert "completed" in stdout
    coordinator = json.loads((out / "coordinator" / "coordinator.json").read_text())
    seen = {agent["id"]: agent for agent in coordinator["agents"]}
    assert set(seen) == {"cartpole-0", "visitor"}
    assert seen["visitor"]["env_steps"] == 800
    assert seen["visitor"]["snapshots_evaluated"] >= 1
    assert seen["visitor"]["state"] == "offline"
    # The managed broker was not started: the run used ours, which is still up.
    assert not (out / "broker").exists()
    # The agent that joined by hand is in the summary and the final line, marked as joined.
    summary = json.loads((out / "summary.json").read_text())
    joined = {agent["id"]: agent["joined"] for agent in summary["agents"]}
    assert joined == {"cartpole-0": False, "visitor": True}
    assert "society run completed: 2 agents" in stdout


def test_a_drifting_device_scenario_reports_the_baseline_per_regime(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = subprocess.run(
        society("run", "--scenario", "traffic", "--agents", "2", "--steps", "600",
                "--out", str(out), "--quiet"),
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    first, second = summary["agents"]
    assert [first["device_index"], second["device_index"]] == [0, 1]
    for agent in (first, second):
        assert agent["env"] == "society/TrafficSignal-v0"
        assert agent["baseline"] == "max_pressure"
        assert agent["baseline_eval_return"] is not None
        latest = agent["evaluations"][-1]
        assert set(latest["regimes"]) == {"weekday", "event"}
        for regime in latest["regimes"].values():
            assert regime["baseline_return"] is not None
            assert "total_waiting_time" in regime["metrics"]
            assert "total_waiting_time" in regime["baseline_metrics"]
    # Two intersections of their own: the same controller scores differently on each.
    assert first["baseline_eval_return"] != second["baseline_eval_return"]


def test_twins_measure_the_gain_from_sharing(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = subprocess.run(
        society("run", "--scenario", "cartpole", "--agents", "2", "--twins", "--steps", "1000",
                "--out", str(out), "--quiet"),
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    by_id = {agent["id"]: agent for agent in summary["agents"]}
    assert set(by_id) == {"cartpole-0", "cartpole-1", "cartpole-0-twin", "cartpole-1-twin"}
    twin = by_id["cartpole-0-twin"]
    assert twin["twin_of"] == "cartpole-0"
    assert twin["shares"] == []
    assert twin["seed"] == by_id["cartpole-0"]["seed"]
    # The cartpole scenario shares all but federated averaging (its file says why).
    assert sorted(by_id["cartpole-0"]["shares"]) == ["evolution", "experience", "snapshots"]
    sharing = summary["sharing"]
    assert sharing["threshold"] == 475.0
    assert [(p["agent"], p["twin"]) for p in sharing["pairs"]] == [
        ("cartpole-0", "cartpole-0-twin"),
        ("cartpole-1", "cartpole-1-twin"),
    ]


def test_a_society_run_again_on_the_same_broker_reports_its_own_run(
    mosquitto: ManagedBroker, tmp_path: Path
) -> None:
    """The second run finds the first one's retained snapshots and statuses on the broker;
    its agents number their snapshots from 1 again. Its summary is its own run's."""
    url = f"mqtt://{mosquitto.url.host}:{mosquitto.url.port}"

    def run(out: Path, steps: int) -> dict[str, Any]:
        completed_run(out, "--scenario", "cartpole", "--agents", "1", "--steps", str(steps),
                      "--broker", url)  # fmt: skip
        summary: dict[str, Any] = json.loads((out / "summary.json").read_text())
        return summary

    first = run(tmp_path / "first", 1200)
    second = run(tmp_path / "second", 600)
    (before,) = first["agents"]
    (agent,) = second["agents"]
    assert before["evaluations"][-1]["step"] == 1200
    # Every snapshot of the second run evaluated, and only those: none of the first run's.
    assert agent["snapshots_evaluated"] == agent["snapshots_published"]
    assert [e["version"] for e in agent["evaluations"]] == list(
        range(1, agent["snapshots_published"] + 1)
    )
    assert agent["evaluations"][-1]["step"] == 600


def test_a_run_whose_evaluation_is_behind_still_completes(tmp_path: Path) -> None:
    """The agents did their work; evaluations not done in time are listed, not a failure."""
    out = tmp_path / "run"
    done = completed_run(
        out, "--scenario", "cartpole", "--agents", "2", "--steps", "600", "--eval-timeout", "0.01"
    )
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed"
    pending = {(p["agent"], p["version"]) for p in summary["evaluations_pending"]}
    for agent in summary["agents"]:
        evaluated = {e["version"] for e in agent["evaluations"]}
        last = (agent["id"], agent["last_snapshot_version"])
        # Every agent's last snapshot is either evaluated or listed as pending, not both.
        assert (last[1] in evaluated) != (last in pending)
    if pending:
        assert f"{len(pending)} last snapshots not evaluated in time" in done.stdout
