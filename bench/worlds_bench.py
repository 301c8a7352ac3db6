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

(c) The shop (issue 20) learns through a drift schedule instead (:func:`train_through_drift`):
PPO lives regular trade, a holiday season, regular trade and a competitor's sale, keeping the
policy each regime ended with (the lifelong agent's library, which also holds clones of the
shop's controllers, as the ``shop`` scenario's agent's does), and is measured in every regime
after the life, recalling the best of its library on three selection weeks as a lifelong agent
does after a drift; the contextual bandits live the same life and are then measured online in
every regime, where their old estimates may mislead them.

Targets (from the issues): thermostat energy cost -15 % against the setpoint thermostat with no
more comfort violation; traffic total waiting time -40 % against the fixed-time plan and -10 %
against max-pressure; the shop's agent earns more than the bandits after a drift; every world
>= 50,000 raw steps/s.

(c) The car-following world (``society/CarFollowing-v0``, issue 20) is trained and judged
differently: across all its regimes at once (a cyclic drift schedule), starting as the society's
device agents start, from its controller (the IDM drives 20,000 steps, PPO clones it), and
judged per regime on the combined score against both controllers; the policy kept is the best
of those evaluated during training on validation seeds (the last one is reported too). Target:
a lower combined score than the better controller in every regime, with no more collisions.
Results: ``bench/results/worlds-vehicle.json`` and the ``worlds-vehicle`` table of
``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import copy
import datetime as dt
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
import stable_baselines3
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.vec_env import DummyVecEnv

from agents.learner.algorithms import silence_logger
from agents.learner.other_controllers import clone_other_controllers
from agents.learner.pretrain import clone_actor_critic, pretrain, record_controller
from agents.learner.snapshots import load_tensors
from agents.worlds import (
    BASELINES,
    BATTERY_ID,
    PRIMARY_BASELINE,
    SHOP_ID,
    THERMOSTAT_ID,
    TRAFFIC_ID,
    VEHICLE_ID,
    WORLD_IDS,
    Controller,
    ControllerScore,
    PolicyController,
    make_baseline,
    make_schedule,
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
    SHOP_ID: {
        "regime": "regular",
        # A life through drift (train_through_drift): 240 weeks of each phase, in agent steps
        # summed over the n_envs copies (each copy lives 30 weeks of each).
        "drift": (
            ("regular", 40_320),
            ("holiday", 40_320),
            ("regular", 40_320),
            ("competitor_sale", 40_320),
        ),
        "steps": 161_280,
        "quick_steps": 40_320,
        "n_envs": 8,
        # An entropy bonus and longer rollouts: with ent_coef 0 and 256-step rollouts PPO
        # settled on list price with premium featured and never left it; with 0.01 it still
        # stopped changing after the holiday season on one seed in three. A week-long horizon
        # (gamma 0.995, lambda 0.98; the delivery cycle is 168 hours) is what makes it ration
        # the week's stock (docs/worlds.md has every setting tried).
        "ppo": {
            "n_steps": 1024,
            "batch_size": 512,
            "n_epochs": 10,
            "gamma": 0.995,
            "gae_lambda": 0.98,
            "ent_coef": 0.03,
        },
        "targets": [],
    },
}


# The car-following world: trained on every regime at once (each of the 8 training copies
# cycles through the regimes, 1,800 steps = 3 episodes each, starting at a different one), from
# the IDM's clone. gamma 0.998 and lambda 0.98: an acceleration now pays off as a shorter gap
# for many seconds, while braking saves energy at once (with 0.99 PPO drifted to ever longer
# gaps); log_std -3: exploration noise of 0.4 m/s² (the default, 8 m/s², is a crash a second);
# learning rate 1e-4: with 3e-4 the policy swung between short and long gaps from one update to
# the next, and with a KL target of 0.02 or gamma 0.995 it fell behind the IDM in stop-and-go.
VEHICLE: dict[str, Any] = {
    "steps": 180_000,
    "quick_steps": 20_000,
    "history_steps": 20_000,
    "quick_history_steps": 4_000,
    "phase_steps": 1_800,
    "n_envs": 8,
    "validate_every": 20_000,
    "validation_episodes": 5,
    "ppo": {
        "n_steps": 1024,
        "batch_size": 512,
        "n_epochs": 10,
        "gamma": 0.998,
        "gae_lambda": 0.98,
        "learning_rate": 1e-4,
    },
    "policy": {"net_arch": [64, 64], "log_std_init": -3.0},
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
    silence_logger(model)
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
        vehicle = args.out.with_name("worlds-vehicle.json")
        if vehicle.exists():
            write_vehicle_table(json.loads(vehicle.read_text()))
        return 0
    for env_id in args.worlds:
        if env_id not in CONFIGS and env_id != VEHICLE_ID:
            parser.error(f"unknown world {env_id!r}; known: {', '.join([*CONFIGS, VEHICLE_ID])}")
    if VEHICLE_ID in args.worlds:
        vehicle_main(args)
    args.worlds = [env_id for env_id in args.worlds if env_id in CONFIGS]
    return standard_worlds(args) if args.worlds else 0


def standard_worlds(args: argparse.Namespace) -> int:
    """The other worlds: trained in their default regime, judged against their targets."""
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
                train_through_drift if "drift" in CONFIGS[env_id] else train_and_evaluate,
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
    if report["learned"].get(SHOP_ID):
        write_shop_table(report)
    if all(env_id == SHOP_ID for env_id in report["learned"]):
        return  # a shop-only run leaves the other worlds' figures as they are
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


# --- the shop: a life through drift, and the bandits with the same life (issue 20) -------------

RECALL_EPISODES = 3
"""Selection weeks a recalled policy is chosen on, as the coordinator's recall does."""
RECALL_SEED_OFFSET = 7919
"""Selection weeks are not evaluation weeks (the coordinator's offset)."""
BANDITS = ("linucb", "thompson")


class _PhaseEnds(BaseCallback):
    """Keep the policy each phase of the life ended with: the lifelong agent's library.

    The agent stores a context's policy when it confirms a drift; here the phase ends stand
    for a detector that confirms every drift at once (an idealisation, said in docs/worlds.md).
    """

    def __init__(self, ends: list[tuple[int, str]]) -> None:
        super().__init__()
        self.ends = ends
        self.library: dict[str, dict[str, Any]] = {}
        self._next = 0

    def _on_step(self) -> bool:
        while self._next < len(self.ends) and self.num_timesteps >= self.ends[self._next][0]:
            regime = self.ends[self._next][1]
            self.library[regime] = copy.deepcopy(self.model.policy.state_dict())
            self._next += 1
        return True


def _life_phases(env_id: str, steps: int) -> list[tuple[str, int]]:
    """The drift schedule of ``CONFIGS[env_id]``, scaled to ``steps`` agent steps in all."""
    phases = CONFIGS[env_id]["drift"]
    scale = steps / sum(n for _, n in phases)
    return [(name, max(1, round(n * scale))) for name, n in phases]


def _bandit_life(env_id: str, name: str, phases: list[tuple[str, int]], seed: int) -> Controller:
    """A bandit that has lived ``phases`` (weeks of its own, seeded ``seed``), learning online."""
    env = make_world(env_id, schedule=make_schedule(env_id, phases))
    bandit = BASELINES[env_id][name](env)
    remaining = sum(n for _, n in phases)
    obs, _ = env.reset(seed=seed)
    bandit.reset()
    while remaining > 0:
        obs, _, terminated, truncated, _ = env.step(bandit.act(obs))
        remaining -= 1
        if terminated or truncated:
            bandit.reset()
            obs, _ = env.reset()
    env.close()
    return bandit


SHOP_HISTORY = (("regular", 10_080), ("holiday", 10_080))
"""The hours of the shop's rule its clones are fitted to: the ``shop`` scenario's history."""


def controller_clones(
    env_id: str, model: PPO, *, seed: int, history: Sequence[tuple[str, int]] = SHOP_HISTORY
) -> tuple[list[tuple[str, dict[str, Any]]], dict[str, float | None]]:
    """The shop's controllers as the ``shop`` scenario's agent keeps them in its library.

    That agent records its rule (the primary baseline) running the shop for its first
    20,160 hours (``history``), clones it, and clones every other controller from the
    same states relabelled (``agents/learner/other_controllers.py``); after a drift it tries
    them beside the policies it learned. Returns the clones as recall candidates, and how
    often each agrees with its controller on the history.
    """
    recorder = make_world(env_id, schedule=make_schedule(env_id, history))
    recorded = record_controller(
        recorder,
        make_baseline(env_id, PRIMARY_BASELINE[env_id], recorder),
        sum(hours for _, hours in history),
        seed=seed + 1_000,
    )

    def fresh() -> ActorCriticPolicy:
        built = model.policy_class(
            model.observation_space, model.action_space, model.lr_schedule, **model.policy_kwargs
        )
        assert isinstance(built, ActorCriticPolicy)
        return built

    policy = fresh()
    fit = clone_actor_critic(policy, recorded.columns, gamma=float(model.gamma), seed=seed)
    clones = [(f"clone:{PRIMARY_BASELINE[env_id]}", copy.deepcopy(policy.state_dict()))]
    agreement = {PRIMARY_BASELINE[env_id]: fit.agreement}
    others = clone_other_controllers(
        env_id, recorder, policy, recorded, fresh, gamma=float(model.gamma), seed=seed
    )
    for other in others:
        load_tensors(policy, other.tensors)
        clones.append((f"clone:{other.name}", copy.deepcopy(policy.state_dict())))
        agreement[other.name] = other.agreement
    recorder.close()
    return clones, agreement


def train_through_drift(
    env_id: str,
    *,
    steps: int,
    seed: int,
    eval_seeds: list[int],
    cross_seeds: list[int],  # noqa: ARG001 - every regime is measured on eval_seeds
) -> dict[str, Any]:
    """PPO through the drift schedule, then every regime against the rules and the bandits.

    The agent: its last policy (``agent``) and the best of its library on three selection
    weeks of the regime (``agent_recall``): the policies it ended each phase with and the
    clones of the shop's controllers (:func:`controller_clones`). The rules and the bandits fresh
    (learning over the evaluation weeks), the bandits after the agent's life
    (``<bandit>_after_life``: the same phases, then learning on over the evaluation weeks)
    and after the life's last phase only (``<bandit>_after_last``: as long in that regime,
    nothing else). One process.
    """
    torch.set_num_threads(1)
    cfg = CONFIGS[env_id]
    n_envs = cfg["n_envs"]
    life = _life_phases(env_id, steps)
    per_copy = [(name, max(1, n // n_envs)) for name, n in life]
    schedule = make_schedule(env_id, per_copy)
    venv = make_vec_env(lambda: make_world(env_id, schedule=schedule), n_envs=n_envs, seed=seed)
    hyper = {"learning_rate": 3e-4, "ent_coef": 0.0, **cfg["ppo"]}
    model = PPO(
        "MlpPolicy", venv, seed=seed, verbose=0, policy_kwargs={"net_arch": [64, 64]}, **hyper
    )
    silence_logger(model)
    ends: list[tuple[int, str]] = []
    done = 0
    for name, n in per_copy:
        done += n * n_envs
        ends.append((done, name))
    keeper = _PhaseEnds(ends)
    start = time.perf_counter()
    model.learn(total_timesteps=done, callback=keeper)
    train_seconds = time.perf_counter() - start

    start = time.perf_counter()
    current = copy.deepcopy(model.policy.state_dict())
    candidates = [("current", current)] + [(f"library:{k}", v) for k, v in keeper.library.items()]
    clones, clone_agreement = controller_clones(env_id, model, seed=seed)
    candidates += clones
    agent = PolicyController(model)
    lived = [(name, n * n_envs) for name, n in per_copy]
    after_life = {name: _bandit_life(env_id, name, lived, seed) for name in BANDITS}
    after_last = {name: _bandit_life(env_id, name, lived[-1:], seed) for name in BANDITS}
    selection = [eval_seeds[0] + RECALL_SEED_OFFSET + i for i in range(RECALL_EPISODES)]
    regimes: dict[str, dict[str, Any]] = {}
    for regime in regimes_for(env_id):
        scores: dict[str, ControllerScore] = {}
        model.policy.load_state_dict(current)
        scores["agent"] = run_controller(agent, env_id, seeds=eval_seeds, regime=regime)
        trials = []
        for label, weights in candidates:
            model.policy.load_state_dict(weights)
            trial = run_controller(agent, env_id, seeds=selection, regime=regime)
            trials.append((trial.mean_return, label, weights))
        _, recalled, weights = max(trials, key=lambda t: t[0])
        model.policy.load_state_dict(weights)
        scores["agent_recall"] = run_controller(agent, env_id, seeds=eval_seeds, regime=regime)
        for name, factory in BASELINES[env_id].items():
            scores[name] = run_controller(factory, env_id, seeds=eval_seeds, regime=regime)
        for name, bandit in after_life.items():
            scores[f"{name}_after_life"] = run_controller(
                copy.deepcopy(bandit), env_id, seeds=eval_seeds, regime=regime
            )
        for name, bandit in after_last.items():
            scores[f"{name}_after_last"] = run_controller(
                copy.deepcopy(bandit), env_id, seeds=eval_seeds, regime=regime
            )
        regimes[regime] = {"recalled": recalled, "results": _summaries(scores)}
    eval_seconds = time.perf_counter() - start
    return {
        "algo": "PPO",
        "policy": "MlpPolicy [64, 64]",
        "hyperparameters": hyper,
        "n_envs": n_envs,
        "train_seed": seed,
        "train_steps": done,
        "life": [list(phase) for phase in lived],
        "train_seconds": round(train_seconds, 1),
        "eval_seconds": round(eval_seconds, 1),
        "eval_seeds": [eval_seeds[0], eval_seeds[-1]],
        "selection_seeds": selection,
        "clone_agreement": clone_agreement,
        "regimes": regimes,
        "targets": [],
        "drift_targets": shop_targets(regimes, last=lived[-1][0]),
    }


def shop_targets(regimes: dict[str, dict[str, Any]], *, last: str) -> list[dict[str, Any]]:
    """After each drift away from the life's last regime: the agent against the bandits.

    The target (issue 20): the agent, recalling from its library, earns more than the better of
    the two bandits that lived the same life, in every regime other than the last one lived.
    """
    out = []
    for regime, measured in regimes.items():
        if regime == last:
            continue
        results = measured["results"]
        ours = results["agent_recall"]["profit"]
        entry: dict[str, Any] = {"regime": regime, "after": last, "agent_profit": ours}
        for life in ("after_life", "after_last"):
            bandit = max(BANDITS, key=lambda b: results[f"{b}_{life}"]["profit"])
            theirs = results[f"{bandit}_{life}"]["profit"]
            entry[life] = {
                "bandit": bandit,
                "bandit_profit": theirs,
                "gain": ours / theirs - 1.0,
                "met": ours > theirs,
            }
        entry["met"] = entry["after_life"]["met"]
        out.append(entry)
    return out


SHOP_COLUMNS = (
    ("agent_recall", "PPO, recall"),
    ("agent", "PPO, last policy"),
    ("fixed_markup", "fixed_markup"),
    ("popularity", "popularity"),
    ("linucb", "LinUCB fresh"),
    ("thompson", "Thompson fresh"),
    ("linucb_after_life", "LinUCB after the life"),
    ("thompson_after_life", "Thompson after the life"),
    ("linucb_after_last", "LinUCB after the last phase only"),
    ("thompson_after_last", "Thompson after the last phase only"),
)


def write_shop_table(report: dict[str, Any]) -> None:
    """The shop's figures per regime and its after-drift target, in docs/benchmarks.md."""
    runs = report["learned"][SHOP_ID]
    first = runs[0]
    measured_on = report["machine"]
    life = " -> ".join(f"{name} {n:,}" for name, n in first["life"])
    speed = report["raw_steps_per_s"].get(SHOP_ID, {}).get("steps_per_s")
    lines = [
        (
            f"Command: `{report['command']}` ({report['started'][:10]}, "
            f"{report['duration_s']:.0f} s; {measured_on['cores']} cores, {measured_on['cpu']}, "
            f"torch {measured_on['torch']}, commit {measured_on['commit']})."
        ),
        "",
        f"Raw speed: {speed:,} steps/s (target >= 50,000). Life: {life} agent steps; "
        f"{len(runs)} training seed(s); weekly gross margin ($) on weeks "
        f"{first['eval_seeds'][0]}-{first['eval_seeds'][1]}, mean over the seeds.",
        "",
        "| regime | " + " | ".join(label for _, label in SHOP_COLUMNS) + " |",
        "|---|" + "---|" * len(SHOP_COLUMNS),
    ]
    for regime in first["regimes"]:
        cells = []
        for key, _ in SHOP_COLUMNS:
            values = [run["regimes"][regime]["results"][key]["profit"] for run in runs]
            cells.append(f"{np.mean(values):,.0f}")
        lines.append(f"| {regime} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "| after the drift to | PPO (recall) against the better bandit after the same life, "
        "per seed | met on every seed | against the better bandit after the last phase only |",
        "|---|---|---|---|",
    ]
    for k, target in enumerate(first["drift_targets"]):
        per_seed = [run["drift_targets"][k] for run in runs]
        cells = []
        for life in ("after_life", "after_last"):
            cells.append(
                ", ".join(f"{100 * t[life]['gain']:+.1f} % ({t[life]['bandit']})" for t in per_seed)
            )
        met = "yes" if all(t["met"] for t in per_seed) else "no"
        lines.append(
            f"| {target['regime']} (from {target['after']}) | {cells[0]} | {met} | {cells[1]} |"
        )
    replace_section("shop", "\n".join(lines))


# --- the car-following world (issue 20) ------------------------------------------------------


def _vehicle_envs(seed: int, n_envs: int, phase_steps: int) -> DummyVecEnv:
    """Training copies, each cycling through every regime from a different one."""
    regimes = list(regimes_for(VEHICLE_ID))

    def factory(i: int) -> Any:
        order = regimes[i % len(regimes) :] + regimes[: i % len(regimes)]
        phases = [(regime, phase_steps) for regime in order]
        return lambda: make_world(
            VEHICLE_ID, schedule=make_schedule(VEHICLE_ID, phases, cyclic=True)
        )

    venv = DummyVecEnv([factory(i) for i in range(n_envs)])
    venv.seed(seed)
    return venv


def _vehicle_scores(
    controller: Any, seeds: list[int], regimes: list[str]
) -> dict[str, ControllerScore]:
    return {r: run_controller(controller, VEHICLE_ID, seeds=seeds, regime=r) for r in regimes}


def vehicle_baselines(seeds: list[int]) -> dict[str, dict[str, dict[str, float]]]:
    """Every controller's summary per regime on ``seeds``: ``{regime: {name: summary}}``."""
    regimes = list(regimes_for(VEHICLE_ID))
    out: dict[str, dict[str, dict[str, float]]] = {r: {} for r in regimes}
    for name, factory in BASELINES[VEHICLE_ID].items():
        for regime, score in _vehicle_scores(factory, seeds, regimes).items():
            out[regime][name] = score.summary()
    return out


class _Validation(BaseCallback):
    """Every ``every`` steps: the deterministic policy on the validation seeds; keep the best.

    "Best" is the lowest mean over regimes of the score relative to the better controller's on
    the same seeds, so every regime counts the same.
    """

    def __init__(self, every: int, seeds: list[int], reference: dict[str, float]) -> None:
        super().__init__()
        self.every = every
        self.seeds = seeds
        self.reference = reference
        self.next_at = every
        self.history: list[dict[str, Any]] = []
        self.best: tuple[float, int, dict[str, Any]] | None = None

    def check(self, steps: int) -> None:
        """Validate the policy as it is now (``steps`` into training)."""
        scores = _vehicle_scores(PolicyController(self.model), self.seeds, list(self.reference))
        relative = float(np.mean([s.mean("score") / self.reference[r] for r, s in scores.items()]))
        self.history.append({"steps": steps, "relative_score": round(relative, 4)})
        if self.best is None or relative < self.best[0]:
            state = copy.deepcopy(self.model.policy.state_dict())
            self.best = (relative, steps, state)

    def _on_step(self) -> bool:
        if self.num_timesteps >= self.next_at:
            self.next_at += self.every
            self.check(self.num_timesteps)
        return True


def train_vehicle(
    *,
    seed: int,
    steps: int,
    history_steps: int,
    eval_seeds: list[int],
    val_seeds: list[int],
) -> dict[str, Any]:
    """Clone the IDM, train PPO on every regime, evaluate the kept and the last policy."""
    torch.set_num_threads(1)
    cfg = VEHICLE
    regimes = list(regimes_for(VEHICLE_ID))
    venv = _vehicle_envs(seed, cfg["n_envs"], cfg["phase_steps"])
    hyper = {"ent_coef": 0.0, **cfg["ppo"]}
    model = PPO("MlpPolicy", venv, seed=seed, verbose=0, policy_kwargs=cfg["policy"], **hyper)
    silence_logger(model)
    start = time.perf_counter()
    recorder = make_world(
        VEHICLE_ID,
        schedule=make_schedule(VEHICLE_ID, [(r, 600) for r in regimes], cyclic=True),
    )
    controller = make_baseline(VEHICLE_ID, PRIMARY_BASELINE[VEHICLE_ID], recorder)
    history = record_controller(recorder, controller, history_steps, seed=seed + 1_000)
    fit = pretrain(model, history, seed=seed)
    reference = {
        regime: min(s["score"] for s in by_name.values())
        for regime, by_name in vehicle_baselines(val_seeds).items()
    }
    validation = _Validation(cfg["validate_every"], val_seeds, reference)
    validation.init_callback(model)
    validation.check(0)  # the clone
    model.learn(total_timesteps=steps, callback=validation)
    if validation.history[-1]["steps"] < model.num_timesteps:
        validation.check(model.num_timesteps)
    train_seconds = time.perf_counter() - start

    start = time.perf_counter()
    last = {r: s.summary() for r, s in _vehicle_scores(PolicyController(model), eval_seeds,
                                                       regimes).items()}  # fmt: skip
    assert validation.best is not None
    _, kept_at, state = validation.best
    model.policy.load_state_dict(state)
    kept = {r: s.summary() for r, s in _vehicle_scores(PolicyController(model), eval_seeds,
                                                       regimes).items()}  # fmt: skip
    return {
        "algo": "PPO from the IDM's clone",
        "hyperparameters": hyper,
        "policy": cfg["policy"],
        "n_envs": cfg["n_envs"],
        "phase_steps": cfg["phase_steps"],
        "train_seed": seed,
        "history_steps": history_steps,
        "train_steps": steps,
        "clone_value_error": fit.value_error,
        "train_seconds": round(train_seconds, 1),
        "eval_seconds": round(time.perf_counter() - start, 1),
        "validation": validation.history,
        "kept_at_steps": kept_at,
        "kept": kept,
        "last": last,
    }


def vehicle_targets(
    runs: list[dict[str, Any]], baselines: dict[str, dict[str, dict[str, float]]], which: str
) -> dict[str, dict[str, Any]]:
    """Per regime: did policy ``which`` (kept or last) beat the better controller on every seed?

    Met on a seed: a lower combined score than the better controller (by score) and no more
    collisions than it on the same 50 episodes.
    """
    out: dict[str, dict[str, Any]] = {}
    for regime, by_name in baselines.items():
        best_name = min(by_name, key=lambda name: by_name[name]["score"])
        best = by_name[best_name]
        seeds = []
        for run in runs:
            mine = run[which][regime]
            seeds.append(
                {
                    "seed": run["train_seed"],
                    "score": mine["score"],
                    "collisions": mine["collisions"],
                    "reduction": 1.0 - mine["score"] / best["score"],
                    "met": mine["score"] < best["score"]
                    and mine["collisions"] <= best["collisions"],
                }
            )
        out[regime] = {
            "better_baseline": best_name,
            "baseline_score": best["score"],
            "baseline_collisions": best["collisions"],
            "per_seed": seeds,
            "met_all_seeds": all(s["met"] for s in seeds),
        }
    return out


def vehicle_main(args: argparse.Namespace) -> None:
    """Raw speed, training on every seed, evaluation per regime, JSON and the docs table."""
    started = dt.datetime.now(dt.UTC)
    t0 = time.perf_counter()
    cfg = VEHICLE
    raw = raw_speed(VEHICLE_ID, 50_000 if args.quick else args.raw_steps)
    print(f"raw {VEHICLE_ID}: {raw['steps_per_s']:,} steps/s", flush=True)
    n_eval = 10 if args.quick else args.eval_episodes
    eval_seeds = list(range(10_000, 10_000 + n_eval))
    val_seeds = list(range(30_000, 30_000 + cfg["validation_episodes"]))
    baselines = vehicle_baselines(eval_seeds)
    steps = cfg["quick_steps" if args.quick else "steps"]
    history_steps = cfg["quick_history_steps" if args.quick else "history_steps"]
    runs: list[dict[str, Any]] = []
    with concurrent.futures.ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = [
            pool.submit(
                train_vehicle,
                seed=seed,
                steps=steps,
                history_steps=history_steps,
                eval_seeds=eval_seeds,
                val_seeds=val_seeds,
            )
            for seed in args.train_seeds
        ]
        for future in concurrent.futures.as_completed(futures):
            run = future.result()
            runs.append(run)
            print(
                f"trained {VEHICLE_ID} seed {run['train_seed']} in {run['train_seconds']} s, "
                f"kept the policy of step {run['kept_at_steps']}",
                flush=True,
            )
    runs.sort(key=lambda r: int(r["train_seed"]))
    targets = {which: vehicle_targets(runs, baselines, which) for which in ("kept", "last")}
    for regime, target in targets["kept"].items():
        per_seed = ", ".join(f"{100 * s['reduction']:+.1f} %" for s in target["per_seed"])
        print(f"  {regime}: {per_seed} vs {target['better_baseline']} "
              f"met={target['met_all_seeds']}", flush=True)  # fmt: skip
    report = {
        "command": " ".join(["python", "bench/worlds_bench.py", *sys.argv[1:]]),
        "started": started.isoformat(timespec="seconds"),
        "duration_s": round(time.perf_counter() - t0, 1),
        "machine": machine_info(),
        "raw_steps_per_s": raw,
        "eval_seeds": [eval_seeds[0], eval_seeds[-1]],
        "validation_seeds": [val_seeds[0], val_seeds[-1]],
        "baselines": baselines,
        "targets": targets,
        "runs": runs,
    }
    out = args.out.with_name("worlds-vehicle.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    if not args.quick:
        write_vehicle_table(report)


def write_vehicle_table(report: dict[str, Any]) -> None:
    """The car-following world's per-regime table in docs/benchmarks.md."""
    measured_on = report["machine"]
    runs = report["runs"]
    seeds = ", ".join(str(r["train_seed"]) for r in runs)
    episodes = report["eval_seeds"][1] - report["eval_seeds"][0] + 1
    lines = [
        (
            f"Command: `{report['command']}` ({report['started'][:10]}, "
            f"{report['duration_s']:.0f} s; {measured_on['cores']} cores, {measured_on['cpu']}, "
            f"torch {measured_on['torch']}, commit {measured_on['commit']}). "
            f"Raw speed {report['raw_steps_per_s']['steps_per_s']:,} steps/s. "
            f"Training seeds {seeds}; {episodes} held-out episodes per regime; combined score "
            "(lower is better) and collisions per episode."
        ),
        "",
        "| regime | IDM | ACC | agent, kept policy (per seed) | collisions (agent / better) "
        "| met on every seed | agent, last policy (per seed) | met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    baselines = report["baselines"]
    for regime, kept in report["targets"]["kept"].items():
        last = report["targets"]["last"][regime]
        idm = baselines[regime]["idm"]
        acc = baselines[regime]["acc"]

        def cell(score: float, collisions: float) -> str:
            return f"{score:.2f}" + (f" ({collisions:.2f} coll.)" if collisions else "")

        agents_kept = ", ".join(f"{s['score']:.2f}" for s in kept["per_seed"])
        agents_last = ", ".join(f"{s['score']:.2f}" for s in last["per_seed"])
        collisions = ", ".join(f"{s['collisions']:.2f}" for s in kept["per_seed"])
        lines.append(
            f"| `{regime}` | {cell(idm['score'], idm['collisions'])} "
            f"| {cell(acc['score'], acc['collisions'])} | {agents_kept} "
            f"| {collisions} / {kept['baseline_collisions']:.2f} "
            f"| {'yes' if kept['met_all_seeds'] else 'no'} | {agents_last} "
            f"| {'yes' if last['met_all_seeds'] else 'no'} |"
        )
    replace_section("worlds-vehicle", "\n".join(lines))


if __name__ == "__main__":
    raise SystemExit(main())
