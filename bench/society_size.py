"""The society of fifty: N agents on one machine against N bare stable-baselines3 processes.

For each size N, run one after the other (the order turns round from one size to the next):

- **bare**: N processes each learning PPO on CartPole alone (stable-baselines3, the benchmark
  scenario's hyperparameters and network, one torch thread), nothing else on the machine;
- **bare, same learner**: the same, set up as an agent's learner sets up stable-baselines3:
  its rollout policy (``agents.learner.rollout_policy.NumpyRolloutPolicy``) in place of SB3's
  ``MlpPolicy`` and Adam's fused kernel (``learner_policy_kwargs``): the society against this
  tells its own cost from its learner's speed-up;
- **society**: a managed Mosquitto, one ``society coordinator`` (one evaluation worker,
  evaluating every snapshot) and N ``society agent`` processes with the same scenario
  (``bench/scenarios/cartpole-scale.toml``: sharing experience, snapshots and evolution, a
  snapshot every 2,000 steps), each learning the same number of steps.

Measured:

- **CPU per step**: each process's CPU time (all its threads) over its learning, per step
  (an agent's from its ``final.json``), which tells the society's own work from waiting;
- **aggregate agent steps/s** while all N learn: each process's steps over time (the bare
  ones from a callback, the agents from their telemetry in the coordinator's history),
  interpolated over the window in which every one of them has started and none has finished;
  the ratio society / bare is the society's cost on this machine;
- **evaluation lag**: a snapshot received by the coordinator to its evaluation recorded, p50
  and p95 (the society waits up to ``--eval-wait`` seconds for the last ones; those still
  unevaluated then are counted and enter the percentiles with the wait so far: a lower bound);
- **CPU**: the broker's and the coordinator's (with its evaluation worker) CPU seconds per
  second of the run;
- **memory**: each agent process's peak proportional set size (PSS, /proc/PID/smaps_rollup,
  sampled every 2 s): a page shared by several processes counts a share in each;
- **start-up**: an agent process started to its first telemetry with a step count.

    python bench/scaling.py --societies 4 8 16 32 48 [--steps 4000] [--steps-per-agent 200]
"""

from __future__ import annotations

import itertools
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCENARIO = Path(__file__).resolve().parent / "scenarios" / "cartpole-scale.toml"
SAMPLE_EVERY = 2.0  # seconds between memory samples

BARE = """
import json, sys, time, torch
torch.set_num_threads(1); torch.set_num_interop_threads(1)
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from agents.scenarios import load_scenario
from agents.learner.algorithms import get_algorithm
from agents.learner.snapshots import learner_policy_kwargs, make_arch, policy_kwargs
s = load_scenario(sys.argv[1])
steps, seed, out = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
spec = get_algorithm(s.learner.algo)
arch = make_arch(spec, net_arch=s.learner.policy.net_arch, activation=s.learner.policy.activation)
policy, kwargs = "MlpPolicy", policy_kwargs(spec, arch)
if sys.argv[5] == "numpy":
    from agents.learner.rollout_policy import NumpyRolloutPolicy as policy
    kwargs = learner_policy_kwargs(spec, arch)
model = PPO(policy, s.world.env, policy_kwargs=kwargs, seed=seed,
            device="cpu", **s.learner.hyperparams)
progress = []
class Progress(BaseCallback):
    def _on_step(self):
        if self.num_timesteps % 256 == 0:
            progress.append((time.time(), self.num_timesteps))
        return True
progress.append((time.time(), 0))
cpu = time.process_time()
model.learn(steps, callback=Progress())
cpu = time.process_time() - cpu
progress.append((time.time(), steps))
with open(out, "w") as f:
    json.dump({"progress": progress, "cpu_seconds": cpu, "steps": steps}, f)
"""


@dataclass
class PeakPss:
    """The largest PSS seen per process (kB), sampled from /proc."""

    peak_kb: dict[int, int] = field(default_factory=dict)

    def sample(self, pids: list[int]) -> None:
        for pid in pids:
            kb = pss_kb(pid)
            if kb is not None:
                self.peak_kb[pid] = max(self.peak_kb.get(pid, 0), kb)


def pss_kb(pid: int) -> int | None:
    """A process's proportional set size now (kB), or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return None


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and of its children still running (Linux /proc)."""
    total = 0.0
    for path in Path("/proc").iterdir():
        if not path.name.isdigit():
            continue
        try:
            fields = (path / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(path.name) == pid or int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def steady_rate(series: list[list[tuple[float, int]]]) -> dict[str, float]:
    """Aggregate steps/s over the window in which every process has started and none ended.

    ``series``: per process, (time, steps so far) in order. The window opens at the latest
    first sample and closes at the earliest last one; each process's steps in it are
    interpolated linearly between its samples.
    """
    opens = max(s[0][0] for s in series)
    closes = min(s[-1][0] for s in series)
    if closes <= opens:
        return {"window_seconds": 0.0, "steps_per_second": float("nan")}

    def at(points: list[tuple[float, int]], t: float) -> float:
        for (t0, s0), (t1, s1) in itertools.pairwise(points):
            if t0 <= t <= t1:
                return s0 + (s1 - s0) * ((t - t0) / (t1 - t0) if t1 > t0 else 1.0)
        return float(points[-1][1] if t >= points[-1][0] else points[0][1])

    steps = sum(at(points, closes) - at(points, opens) for points in series)
    return {"window_seconds": closes - opens, "steps_per_second": steps / (closes - opens)}


def bare(n: int, steps: int, policy: str = "sb3") -> dict[str, Any]:
    """N bare SB3 processes at once: SB3's ``MlpPolicy`` (``sb3``) or the agents' (``numpy``)."""
    with tempfile.TemporaryDirectory() as folder:
        outs = [Path(folder) / f"{i}.json" for i in range(n)]
        started = time.time()
        processes = [
            subprocess.Popen(
                [sys.executable, "-c", BARE, str(SCENARIO), str(steps), str(i), str(out), policy]
            )
            for i, out in enumerate(outs)
        ]
        memory = PeakPss()
        while any(p.poll() is None for p in processes):
            memory.sample([p.pid for p in processes])
            time.sleep(SAMPLE_EVERY)
        if any(p.returncode != 0 for p in processes):
            msg = "a bare process failed"
            raise RuntimeError(msg)
        reports = [json.loads(out.read_text()) for out in outs]
    series = [[(t, s) for t, s in report["progress"]] for report in reports]
    return {
        "seconds": time.time() - started,
        **steady_rate(series),
        "cpu_ms_per_step": _cpu_ms_per_step(reports),
        "pss_mb": _mb(memory),
    }


def _cpu_ms_per_step(reports: list[dict[str, Any]]) -> float | None:
    """Process CPU time per step over the processes' learning (every thread)."""
    steps = sum(r["steps"] for r in reports)
    return 1000 * sum(r["cpu_seconds"] for r in reports) / steps if steps else None


def society(n: int, steps: int, eval_wait: float) -> dict[str, Any]:
    """A broker, a coordinator and N agents at once."""
    from agents.broker.managed import ManagedBroker

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        with ManagedBroker(root / "broker", kind="mosquitto") as broker:
            url = f"mqtt://{broker.url.host}:{broker.url.port}"
            assert broker.process is not None
            broker_pid = broker.process.pid
            started = time.time()
            broker_cpu0 = cpu_seconds(broker_pid)
            coordinator = subprocess.Popen(
                [sys.executable, "-m", "agents", "coordinator", "--society", "scale",
                 "--broker", url, "--metrics-port", "0", "--data-dir", str(root / "coord"),
                 "--eval-workers", "1", "--log-level", "WARNING"],
            )  # fmt: skip
            spawned: dict[str, float] = {}
            agents = []
            for i in range(n):
                spawned[f"a{i}"] = time.time()
                command = [
                    sys.executable, "-m", "agents", "agent", "--id", f"a{i}",
                    "--society", "scale", "--broker", url, "--scenario", str(SCENARIO),
                    "--seed", str(i), "--steps", str(steps), "--telemetry-interval", "1",
                    "--data-dir", str(root / f"a{i}"), "--log-level", "WARNING",
                ]  # fmt: skip
                agents.append(subprocess.Popen(command))
            memory = PeakPss()
            try:
                while any(p.poll() is None for p in agents):
                    memory.sample([p.pid for p in agents])
                    time.sleep(SAMPLE_EVERY)
                learned = time.time()
                history = root / "coord" / "history.sqlite"
                deadline = time.time() + eval_wait
                while time.time() < deadline and _unevaluated(history) > 0:
                    time.sleep(1.0)
                ended = time.time()
                coordinator_cpu = cpu_seconds(coordinator.pid)
                broker_cpu = cpu_seconds(broker_pid) - broker_cpu0
            finally:
                coordinator.terminate()
                coordinator.wait(60)
            failed = [p.args for p in agents if p.returncode != 0]
            if failed:
                msg = f"{len(failed)} agent(s) failed"
                raise RuntimeError(msg)
            telemetry, lags, unevaluated = _read_history(history, ended)
            finals = [json.loads((root / f"a{i}" / "final.json").read_text()) for i in range(n)]
    cpu_ms = _cpu_ms_per_step(
        [{"steps": f["steps_this_run"], "cpu_seconds": f["cpu_seconds"]} for f in finals]
    )
    series = [telemetry[a] for a in sorted(telemetry)]
    first = {a: next((t for t, s in points if s > 0), None) for a, points in telemetry.items()}
    startup = [t - spawned[a] for a, t in first.items() if t is not None]
    seconds = ended - started
    return {
        "seconds": seconds,
        "learning_seconds": learned - started,
        **steady_rate(series),
        "agents_reporting": len(series),
        "cpu_ms_per_step": cpu_ms,
        "evaluation_lag": {
            "snapshots": len(lags),
            "unevaluated_at_end": unevaluated,
            "p50": _quantile(lags, 0.5),
            "p95": _quantile(lags, 0.95),
            "max": max(lags, default=None),
        },
        "broker_cpu_per_second": broker_cpu / seconds,
        "coordinator_cpu_per_second": coordinator_cpu / seconds,
        "pss_mb": _mb(memory),
        "startup_seconds": {
            "median": statistics.median(startup) if startup else None,
            "max": max(startup, default=None),
        },
    }


def _unevaluated(history: Path) -> int:
    try:
        with sqlite3.connect(f"file:{history}?mode=ro", uri=True) as db:
            (count,) = db.execute(
                "SELECT COUNT(*) FROM snapshots s LEFT JOIN evaluations e "
                "ON s.agent = e.agent AND s.version = e.version WHERE e.agent IS NULL"
            ).fetchone()
    except sqlite3.Error:
        return 1
    return int(count)


def _read_history(
    history: Path, ended: float
) -> tuple[dict[str, list[tuple[float, int]]], list[float], int]:
    with sqlite3.connect(f"file:{history}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT agent, ts, env_steps FROM telemetry ORDER BY ts").fetchall()
        lag_rows = db.execute(
            "SELECT s.received_ts, e.ts FROM snapshots s LEFT JOIN evaluations e "
            "ON s.agent = e.agent AND s.version = e.version"
        ).fetchall()
    telemetry: dict[str, list[tuple[float, int]]] = {}
    for agent, ts, env_steps in rows:
        telemetry.setdefault(agent, []).append((float(ts), int(env_steps)))
    lags = [(done if done is not None else ended) - received for received, done in lag_rows]
    unevaluated = sum(1 for _, done in lag_rows if done is None)
    return telemetry, lags, unevaluated


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _mb(memory: PeakPss) -> dict[str, float | None]:
    peaks = [kb / 1024 for kb in memory.peak_kb.values()]
    return {
        "median": statistics.median(peaks) if peaks else None,
        "max": max(peaks, default=None),
    }


def run(
    sizes: list[int], steps: int, steps_per_agent: int, eval_wait: float
) -> list[dict[str, Any]]:
    """Each size: bare SB3, bare with the agents' policy, and the society, one after the other."""
    rows = []
    for index, n in enumerate(sizes):
        budget = max(steps, steps_per_agent * n)
        order = ("bare", "bare_numpy", "society")
        order = order if index % 2 == 0 else order[::-1]
        row: dict[str, Any] = {"agents": n, "steps_per_agent": budget, "order": list(order)}
        for kind in order:
            if kind == "society":
                row[kind] = society(n, budget, eval_wait)
            else:
                row[kind] = bare(n, budget, "numpy" if kind == "bare_numpy" else "sb3")
            print(f"{n} agents, {kind}: {json.dumps(row[kind])}", flush=True)
        society_rate = row["society"]["steps_per_second"]
        row["ratio"] = society_rate / row["bare"]["steps_per_second"]
        row["ratio_same_policy"] = society_rate / row["bare_numpy"]["steps_per_second"]
        rows.append(row)
    return rows


def report(
    sizes: list[int], steps: int, steps_per_agent: int, eval_wait: float, argv: list[str]
) -> None:
    """Run, keep the raw results, and write the table into docs/benchmarks.md."""
    from bench.common import machine, replace_section, write_result

    started = time.time()
    rows = run(sizes, steps, steps_per_agent, eval_wait)
    command = "python bench/scaling.py " + " ".join(argv)
    result = {
        "command": command,
        "machine": machine(),
        "seconds": round(time.time() - started),
        "scenario": SCENARIO.name,
        "rows": rows,
    }
    write_result("society_size", result)
    replace_section("society-size", table_markdown(result))
    print(table_markdown(result))


def table_markdown(result: dict[str, Any]) -> str:
    from bench.common import measured_on

    lines = [
        *measured_on(result),
        "",
        "| agents | steps each | bare SB3 (agent steps/s) | bare, the agents' learner "
        "| society (agent steps/s) | society / bare SB3 | society / bare, same learner "
        "| CPU ms per step, bare SB3 / same learner / agent | evaluation lag p50 / p95 (s) "
        "| unevaluated at the end | broker CPU | coordinator CPU | agent PSS median / max (MB) "
        "| bare PSS median (MB) | start-up median / max (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        b, n, s = row["bare"], row["bare_numpy"], row["society"]
        lag = s["evaluation_lag"]
        lines.append(
            f"| {row['agents']} | {row['steps_per_agent']:,} | {b['steps_per_second']:,.0f} | "
            f"{n['steps_per_second']:,.0f} | {s['steps_per_second']:,.0f} | "
            f"**{row['ratio']:.2f}** | {row['ratio_same_policy']:.2f} | "
            f"{_num(b.get('cpu_ms_per_step'), 3)} / {_num(n.get('cpu_ms_per_step'), 3)} / "
            f"{_num(s.get('cpu_ms_per_step'), 3)} | "
            f"{_num(lag['p50'])} / {_num(lag['p95'])} | {lag['unevaluated_at_end']} of "
            f"{lag['snapshots']} | {s['broker_cpu_per_second']:.2f} | "
            f"{s['coordinator_cpu_per_second']:.2f} | {_num(s['pss_mb']['median'], 0)} / "
            f"{_num(s['pss_mb']['max'], 0)} | {_num(b['pss_mb']['median'], 0)} | "
            f"{_num(s['startup_seconds']['median'])} / {_num(s['startup_seconds']['max'])} |"
        )
    return "\n".join(lines)


def _num(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"
