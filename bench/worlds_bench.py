"""Benchmark of the built-in worlds: raw speed, and a learned agent against today's baselines.

Not a test: it takes a few minutes. Run from the repository root::

    python bench/worlds_bench.py                 # full run, writes bench/results/worlds.json
    python bench/worlds_bench.py --quick         # smaller budgets, for a smoke run

(a) Raw speed: ``env.unwrapped.step`` in a loop with precomputed random actions, resetting at the
end of each episode (resets included), per world.

(b) Learning: a stable-baselines3 agent (PPO, one torch thread per process, one process per
world on a pool of ``--jobs`` workers) trained on the world's default device and regime, then
evaluated deterministically on held-out seeds next to every baseline of the world on the same
seeds and regime. The agent is also evaluated on every other regime of its world, untrained
there, to show what drift does to a fixed policy.

Targets (from the issue): thermostat energy cost -15 % against the setpoint thermostat with no
more comfort violation; traffic total waiting time -40 % against the fixed-time plan and -10 %
against max-pressure; every world >= 50,000 raw steps/s.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import json
import sys
import time
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
import stable_baselines3
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env

from agents.worlds import (
    BASELINES,
    BATTERY_ID,
    THERMOSTAT_ID,
    TRAFFIC_ID,
    WORLD_IDS,
    ControllerScore,
    PolicyController,
    make_world,
    regimes_for,
    run_controller,
    world_class,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine, replace_section

RAW_TARGET = 50_000

# Per world: algorithm settings, the regime to train and evaluate in, and the targets as
# (metric, baseline, minimum relative reduction, constraint metric or None).
# A constraint "no more X than the baseline" is reported strictly and with a tolerance of
# CONSTRAINT_TOLERANCE (comfort violation in K*h per day: 0.01 is one quarter-hour 0.04 K below
# the band, below what a thermometer resolves).
CONSTRAINT_TOLERANCE = 0.01
CONFIGS: dict[str, dict[str, Any]] = {
    THERMOSTAT_ID: {
        "regime": "winter",
        "steps": 500_000,
        "quick_steps": 60_000,
        "n_envs": 8,
        "ppo": {
            "n_steps": 256,
            "batch_size": 256,
            "n_epochs": 10,
            "gamma": 0.99,
            "learning_rate": 5e-4,
        },
        "targets": [
            ("energy_cost", "setpoint", 0.15, "comfort_violation"),
            ("energy_cost", "programmable", 0.15, "comfort_violation"),
        ],
    },
    TRAFFIC_ID: {
        "regime": "weekday",
        "steps": 1_000_000,
        "quick_steps": 60_000,
        "n_envs": 8,
        "ppo": {"n_steps": 256, "batch_size": 256, "n_epochs": 10, "gamma": 0.99},
        "targets": [
            ("total_waiting_time", "fixed_time", 0.40, None),
            ("total_waiting_time", "max_pressure", 0.10, None),
        ],
    },
    BATTERY_ID: {
        "regime": "winter",
        "steps": 300_000,
        "quick_steps": 60_000,
        "n_envs": 8,
        "ppo": {"n_steps": 512, "batch_size": 256, "n_epochs": 10, "gamma": 0.99},
        "targets": [],
    },
}


def machine_info() -> dict[str, Any]:
    """What the figures were measured on (``bench.common.machine``) and the learning stack."""
    return {
        **machine(),
        "numpy": np.__version__,
        "gymnasium": gymnasium.__version__,
        "stable_baselines3": stable_baselines3.__version__,
    }


def raw_speed(env_id: str, steps: int, variant: dict[str, Any] | None = None) -> dict[str, Any]:
    """Raw ``step`` throughput of the unwrapped world, resets included."""
    env = world_class(env_id)(**(variant or {}))
    env.action_space.seed(0)
    actions = [env.action_space.sample() for _ in range(4096)]
    env.reset(seed=0)
    step = env.step
    reset = env.reset
    start = time.perf_counter()
    for k in range(steps):
        if step(actions[k & 4095])[3]:
            reset()
    seconds = time.perf_counter() - start
    rate = steps / seconds
    return {
        "steps": steps,
        "seconds": round(seconds, 3),
        "steps_per_s": round(rate),
        "target": RAW_TARGET,
        "met": rate >= RAW_TARGET,
    }


def _summaries(scores: dict[str, ControllerScore]) -> dict[str, dict[str, float]]:
    return {name: score.summary() for name, score in scores.items()}


def _target(
    summaries: dict[str, dict[str, float]],
    metric: str,
    baseline: str,
    reduction: float,
    constraint: str | None,
) -> dict[str, Any]:
    """Check one target: ``metric`` at least ``reduction`` lower than ``baseline``'s."""
    ours = summaries["agent"][metric]
    theirs = summaries[baseline][metric]
    achieved = 1.0 - ours / theirs if theirs else 0.0
    entry: dict[str, Any] = {
        "metric": metric,
        "baseline": baseline,
        "required_reduction": reduction,
        "agent": ours,
        "baseline_value": theirs,
        "reduction": achieved,
        "met": achieved >= reduction,
        "met_strict": achieved >= reduction,
    }
    if constraint is not None:
        mine = summaries["agent"][constraint]
        limit = summaries[baseline][constraint]
        entry["constraint"] = {
            "metric": constraint,
            "agent": mine,
            "baseline_value": limit,
            "tolerance": CONSTRAINT_TOLERANCE,
            "met_strict": mine <= limit,
            "met": mine <= limit + CONSTRAINT_TOLERANCE,
        }
        entry["met"] = entry["met"] and entry["constraint"]["met"]
        entry["met_strict"] = entry["met_strict"] and entry["constraint"]["met_strict"]
    return entry


def train_and_evaluate(
    env_id: str, *, steps: int, seed: int, eval_seeds: list[int], cross_seeds: list[int]
) -> dict[str, Any]:
    """Train PPO on one world and evaluate it against the world's baselines (one process)."""
    torch.set_num_threads(1)
    cfg = CONFIGS[env_id]
    regime = cfg["regime"]
    venv = make_vec_env(lambda: make_world(env_id, regime=regime), n_envs=cfg["n_envs"], seed=seed)
    hyper = {"learning_rate": 3e-4, "ent_coef": 0.0, **cfg["ppo"]}
    model = PPO(
        "MlpPolicy",
        venv,
        seed=seed,
        verbose=0,
        policy_kwargs={"net_arch": [64, 64]},
        **hyper,
    )
    start = time.perf_counter()
    model.learn(total_timesteps=steps)
    train_seconds = time.perf_counter() - start

    agent = PolicyController(model)
    start = time.perf_counter()
    scores = {"agent": run_controller(agent, env_id, seeds=eval_seeds, regime=regime)}
    for name, factory in BASELINES[env_id].items():
        scores[name] = run_controller(factory, env_id, seeds=eval_seeds, regime=regime)
    cross: dict[str, dict[str, ControllerScore]] = {}
    for other in regimes_for(env_id):
        if other == regime:
            continue
        cross[other] = {"agent": run_controller(agent, env_id, seeds=cross_seeds, regime=other)}
        for name, factory in BASELINES[env_id].items():
            cross[other][name] = run_controller(factory, env_id, seeds=cross_seeds, regime=other)
    eval_seconds = time.perf_counter() - start

    summaries = _summaries(scores)
    targets = [
        _target(summaries, metric, baseline, reduction, constraint)
        for metric, baseline, reduction, constraint in cfg["targets"]
    ]
    return {
        "algo": "PPO",
        "policy": "MlpPolicy [64, 64]",
        "hyperparameters": hyper,
        "n_envs": cfg["n_envs"],
        "train_seed": seed,
        "train_steps": steps,
        "train_seconds": round(train_seconds, 1),
        "eval_seconds": round(eval_seconds, 1),
        "regime": regime,
        "eval_seeds": [eval_seeds[0], eval_seeds[-1]],
        "results": summaries,
        "targets": targets,
        "cross_regime": {
            other: {name: s.summary() for name, s in group.items()}
            for other, group in cross.items()
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small budgets (smoke run)")
    parser.add_argument("--worlds", nargs="*", default=list(WORLD_IDS), help="world ids")
    parser.add_argument("--jobs", type=int, default=2, help="training processes")
    parser.add_argument("--train-seeds", type=int, nargs="*", default=[0, 1])
    parser.add_argument("--eval-episodes", type=int, default=50)
    parser.add_argument("--raw-steps", type=int, default=300_000)
    parser.add_argument("--out", type=Path, default=Path("bench/results/worlds.json"))
    parser.add_argument(
        "--tables-only",
        action="store_true",
        help="only rewrite the tables in docs/benchmarks.md from --out",
    )
    args = parser.parse_args(argv)
    if args.tables_only:
        write_tables(json.loads(args.out.read_text()))
        return 0
    for env_id in args.worlds:
        if env_id not in CONFIGS:
            parser.error(f"unknown world {env_id!r}; known: {', '.join(CONFIGS)}")
    started = dt.datetime.now(dt.UTC)
    t0 = time.perf_counter()

    raw: dict[str, Any] = {}
    variants: list[tuple[str, str, dict[str, Any]]] = [(e, e, {}) for e in args.worlds]
    variants += [
        (f"{e} (continuous)", e, {"continuous": True})
        for e in args.worlds
        if e in (THERMOSTAT_ID, BATTERY_ID)
    ]
    raw_steps = 50_000 if args.quick else args.raw_steps
    for label, env_id, variant in variants:
        raw[label] = raw_speed(env_id, raw_steps, variant)
        print(f"raw {label}: {raw[label]['steps_per_s']:,} steps/s", flush=True)

    n_eval = 10 if args.quick else args.eval_episodes
    eval_seeds = list(range(10_000, 10_000 + n_eval))
    cross_seeds = list(range(20_000, 20_000 + max(n_eval // 2, 5)))
    jobs = [(env_id, seed) for env_id in args.worlds for seed in args.train_seeds]
    learned: dict[str, list[dict[str, Any]]] = {env_id: [] for env_id in args.worlds}
    with concurrent.futures.ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = {
            pool.submit(
                train_and_evaluate,
                env_id,
                steps=CONFIGS[env_id]["quick_steps" if args.quick else "steps"],
                seed=seed,
                eval_seeds=eval_seeds,
                cross_seeds=cross_seeds,
            ): (env_id, seed)
            for env_id, seed in jobs
        }
        for future in concurrent.futures.as_completed(futures):
            env_id, seed = futures[future]
            result = future.result()
            learned[env_id].append(result)
            print(f"trained {env_id} seed {seed} in {result['train_seconds']} s", flush=True)
            for target in result["targets"]:
                print(
                    f"  {target['metric']} vs {target['baseline']}: "
                    f"{100 * target['reduction']:+.1f} % reduction "
                    f"(need {100 * target['required_reduction']:.0f} %) met={target['met']} "
                    f"strict={target['met_strict']}",
                    flush=True,
                )
    for runs in learned.values():
        runs.sort(key=lambda r: int(r["train_seed"]))

    report = {
        # The script as the repository names it, wherever it was started from (make bench
        # passes an absolute path).
        "command": " ".join(["python", "bench/worlds_bench.py", *sys.argv[1:]]),
        "started": started.isoformat(timespec="seconds"),
        "duration_s": round(time.perf_counter() - t0, 1),
        "machine": machine_info(),
        "raw_steps_per_s": raw,
        "targets": summarise(learned),
        "learned": learned,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    if not args.quick:
        write_tables(report)
    return 0


def summarise(learned: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """Per world and target: the reduction on each training seed, and whether all met it."""
    summary: dict[str, list[dict[str, Any]]] = {}
    for env_id, runs in learned.items():
        if not runs:
            continue
        summary[env_id] = []
        for k, first in enumerate(runs[0]["targets"]):
            per_seed = [run["targets"][k] for run in runs]
            summary[env_id].append(
                {
                    "metric": first["metric"],
                    "baseline": first["baseline"],
                    "required_reduction": first["required_reduction"],
                    "reduction_per_seed": [t["reduction"] for t in per_seed],
                    "reduction_mean": float(np.mean([t["reduction"] for t in per_seed])),
                    "met_all_seeds": all(t["met"] for t in per_seed),
                    "met_strict_all_seeds": all(t["met_strict"] for t in per_seed),
                }
            )
    return summary


def write_tables(report: dict[str, Any]) -> None:
    """The issue's targets, met or not, in docs/benchmarks.md (details stay in worlds.md)."""
    measured_on = report["machine"]
    lines = [
        (
            f"Command: `{report['command']}` ({report['started'][:10]}, "
            f"{report['duration_s']:.0f} s; {measured_on['cores']} cores, {measured_on['cpu']}, "
            f"torch {measured_on['torch']}, commit {measured_on['commit']})."
        ),
        "",
        "| world | raw steps/s | target | met |",
        "|---|---|---|---|",
    ]
    for label, speed in report["raw_steps_per_s"].items():
        rate = speed["steps_per_s"]
        lines.append(f"| `{label}` | {rate:,} | >= 50,000 | {'yes' if rate >= 50_000 else 'no'} |")
    lines += [
        "",
        "| world | metric | against | reduction per seed | target | met (comfort no worse) |",
        "|---|---|---|---|---|---|",
    ]
    for env_id, targets in report["targets"].items():
        for target in targets:
            per_seed = ", ".join(f"{100 * r:.1f} %" for r in target["reduction_per_seed"])
            met = "yes" if target["met_all_seeds"] else "not on every seed"
            lines.append(
                f"| `{env_id}` | {target['metric']} | {target['baseline']} | {per_seed} |"
                f" >= {100 * target['required_reduction']:.0f} % | {met} |"
            )
    replace_section("worlds", "\n".join(lines))


if __name__ == "__main__":
    raise SystemExit(main())
