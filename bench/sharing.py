"""Sharing agents against their isolated twins, whole societies on this machine.

Each run is ``society run --twins`` on a benchmark scenario (``bench/scenarios/``): 4 sharing
agents (snapshots and population-based evolution; PPO takes in no experience) and 4 twins on
the same worlds and seeds sharing nothing. From each run's ``summary.json``: per pair, the
agent steps to the first snapshot evaluated at the threshold, and the best final evaluations.

Targets (issue 5): the sharing agents reach the threshold with at least 1.5x fewer per-agent
steps than their twins, and the society's best final evaluation is at least the twins' best.

    python bench/sharing.py [--settings cartpole traffic] [--seeds 0 1 2] [--keep DIR]
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

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
SETTINGS = {"cartpole": "cartpole-sharing.toml", "traffic": "traffic-sharing.toml"}


def one_run(setting: str, seed: int, keep: Path | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        out = (keep / f"{setting}-{seed}") if keep else Path(folder) / "run"
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "agents", "run", "--config", str(SCENARIOS / SETTINGS[setting]),
             "--twins", "--seed", str(seed * 100), "--out", str(out), "--quiet",
             "--eval-timeout", "600"],
            check=True,
        )  # fmt: skip
        summary = json.loads((out / "summary.json").read_text())
    sharing = summary["sharing"]
    agents = summary["agents"]
    sharers = [a for a in agents if not a["twin_of"]]
    twins = [a for a in agents if a["twin_of"]]

    def best(group: list[dict[str, Any]]) -> float | None:
        finals = [float(a["last_eval_return"]) for a in group if a["last_eval_return"] is not None]
        return max(finals) if finals else None

    return {
        "setting": setting,
        "seed": seed,
        "seconds": round(time.perf_counter() - started, 1),
        "ratio": sharing["ratio"],
        "ratio_is_lower_bound": sharing["ratio_is_lower_bound"],
        "pairs": sharing["pairs"],
        "best_final_sharing": best(sharers),
        "best_final_twins": best(twins),
        "adoptions": sum(a["adoptions"] for a in sharers),
        "evolution_directives": summary["evolution_directives"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", nargs="*", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--keep", type=Path, help="keep each run folder under this folder")
    args = parser.parse_args()
    started = time.perf_counter()
    runs = []
    for setting in args.settings:
        for seed in args.seeds:
            run = one_run(setting, seed, args.keep)
            runs.append(run)
            print(json.dumps({k: v for k, v in run.items() if k != "pairs"}), flush=True)
    command = (
        f"python bench/sharing.py --settings {' '.join(args.settings)} "
        f"--seeds {' '.join(map(str, args.seeds))}"
    )
    result = {
        "benchmark": "sharing",
        "command": command,
        "machine": machine(),
        "seconds": time.perf_counter() - started,
        "runs": runs,
    }
    write_result("sharing", result)
    write_table(result)


def write_table(result: dict[str, Any]) -> None:
    m = result["machine"]
    lines = [
        f"Command: `{result['command']}` ({m['date']}, {result['seconds']:.0f} s; "
        f"{m['cores']} cores, {m['cpu']}, torch {m['torch']}, commit {m['commit']}).",
        "",
        "| world | seed | steps-to-threshold gain (twins / sharing) | best final, sharing | "
        "best final, twins | adoptions | directives |",
        "|---|---|---|---|---|---|---|",
    ]
    by_setting: dict[str, list[dict[str, Any]]] = {}
    for run in result["runs"]:
        by_setting.setdefault(run["setting"], []).append(run)
        ratio = "-" if run["ratio"] is None else f"{run['ratio']:.2f}"
        if run["ratio_is_lower_bound"] and run["ratio"] is not None:
            ratio = f">= {ratio}"
        lines.append(
            f"| {run['setting']} | {run['seed']} | {ratio} | {_fmt(run['best_final_sharing'])} | "
            f"{_fmt(run['best_final_twins'])} | {run['adoptions']} | "
            f"{run['evolution_directives']} |"
        )
    lines += ["", "| world | median gain (>= 1.5) | best final sharing >= twins (every seed) |",
              "|---|---|---|"]  # fmt: skip
    for setting, runs in by_setting.items():
        ratios = [r["ratio"] for r in runs if r["ratio"] is not None]
        gain = statistics.median(ratios) if ratios else None
        best_ok = all(
            r["best_final_sharing"] is not None
            and r["best_final_twins"] is not None
            and r["best_final_sharing"] >= r["best_final_twins"]
            for r in runs
        )
        lines.append(
            f"| {setting} | {_fmt(gain, 2)} ({'met' if gain and gain >= 1.5 else 'not met'}) | "
            f"{'met' if best_ok else 'not met'} |"
        )
    replace_section("sharing", "\n".join(lines))


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


if __name__ == "__main__":
    main()
