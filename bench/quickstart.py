"""`make run` as a new user sees it: where every agent of the default society ends.

Each run is ``society run --scenario SCENARIO --seed SEED`` with everything else at the
scenario's defaults (for ``cartpole``: 3 agents, 30,000 steps each, the motor's wiring reversed
from 10,000 to 20,000 steps). Read from its ``summary.json``, per agent: the last evaluation of
its current policy averaged over the regimes, the same as the agent acts with its library
(recalling, on each regime, the policy it would choose there on other episodes), and the
baseline controller's on the same worlds.

Target (issue 15): by the end of ``make run`` every agent beats the PD controller averaged over
both wirings.

    python bench/quickstart.py [--scenario cartpole] [--seeds 0 3 6 9 12]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine, replace_section, write_result


def one_run(scenario: str, seed: int, folder: Path) -> dict[str, Any]:
    out = folder / f"{scenario}-{seed}"
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "agents", "run", "--scenario", scenario, "--seed", str(seed),
         "--out", str(out), "--quiet"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"{scenario} seed {seed}: exit {done.returncode}\n{done.stderr[-2000:]}")
    summary = json.loads((out / "summary.json").read_text())
    agents = [
        {
            "id": a["id"],
            "last_eval": a["last_eval_return"],
            "with_recall": a["last_eval_with_recall"],
            "baseline": a["baseline_eval_return"],
            "regimes": {
                name: {"mean": r["mean_return"], "recall": r["recall_return"]}
                for name, r in (a["evaluations"][-1]["regimes"] if a["evaluations"] else {}).items()
            },
        }
        for a in summary["agents"]
    ]
    return {
        "scenario": scenario,
        "seed": seed,
        "seconds": round(time.monotonic() - started),
        "line": done.stdout.strip().splitlines()[-1],
        "agents": agents,
    }


def _ahead(agent: dict[str, Any]) -> bool:
    end, baseline = agent["with_recall"], agent["baseline"]
    return end is not None and baseline is not None and end > baseline


def table_markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        f"Command: `{result['command']}` ({m['date']}, {result['seconds']} s; {m['cores']} "
        f"cores, {m['cpu']}, torch {m['torch']}, commit {m['commit']}).",
        "",
        "| scenario | seed | agent | last evaluation | with recall | baseline | ahead |",
        "|---|---|---|---|---|---|---|",
    ]
    lines.extend(
        f"| {run['scenario']} | {run['seed']} | {agent['id']} | "
        f"{_num(agent['last_eval'])} | {_num(agent['with_recall'])} | "
        f"{_num(agent['baseline'])} | {'yes' if _ahead(agent) else 'no'} |"
        for run in result["runs"]
        for agent in run["agents"]
    )
    agents = [a for run in result["runs"] for a in run["agents"]]
    ends = [a["with_recall"] for a in agents if a["with_recall"] is not None]
    ahead = sum(_ahead(a) for a in agents)
    seeds_all = sum(all(_ahead(a) for a in run["agents"]) for run in result["runs"])
    lines += [
        "",
        f"Agents ahead of the baseline at the end: {ahead} of {len(agents)}; runs where every "
        f"agent is: {seeds_all} of {len(result['runs'])}. Median final evaluation with recall: "
        f"{_num(statistics.median(ends) if ends else None)}.",
    ]
    return "\n".join(lines)


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="cartpole")
    # `society run --seed S` gives its agents seeds S, S+1, S+2: seeds 3 apart give every
    # agent of the benchmark its own (0..4 would run seed 1's first agent in three runs).
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 3, 6, 9, 12])
    args = parser.parse_args()
    started = time.time()
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-quickstart-") as folder:
        for seed in args.seeds:
            run = one_run(args.scenario, seed, Path(folder))
            print(f"seed {seed} ({run['seconds']} s): {run['line']}", flush=True)
            runs.append(run)
    result = {
        "machine": machine(),
        "command": "python bench/quickstart.py " + " ".join(sys.argv[1:]),
        "seconds": round(time.time() - started),
        "runs": runs,
    }
    write_result("quickstart", result)
    replace_section("quickstart", table_markdown(result))
    print(table_markdown(result))


if __name__ == "__main__":
    main()
