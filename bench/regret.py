"""Learning that pays within a run: regret against the device's controller, and where it ends.

Each run is one agent's learner as ``society run`` configures it from a built-in device
scenario (its own device, drawn for member ``seed``; the scenario's drift, hyperparameters,
``start_from = "baseline"`` and guard), living ``--steps`` device steps. Measured:

- **regret**: the controller's summed return minus the deployed one on the same episodes
  (the learner's shadow twin plays the controller on each), at the scenario's default budget
  and at the end, absolute and as a share of the controller's cost (> 0: worse);
- **first evaluation**: the first published snapshot (the clone, after the recorded history)
  on every regime, with the coordinator's evaluation code, normalised per regime
  (0 random, 1 the controller);
- **final evaluation**: the last snapshot against the controller on the same fixed-seed
  episodes of every regime, in the world's own terms: waiting time (traffic), energy cost and
  comfort violation (thermostat), return (battery).

Targets (issue 15): regret <= 0 over the default run; first evaluation >= 0.95; by 100,000
steps traffic >= 10 % less waiting than max-pressure, the thermostat >= 15 % lower cost than
the setpoint thermostat at no worse comfort, the battery ahead of its controller.

    python bench/regret.py [--worlds smart-home traffic home-battery] [--seeds 0 1 2 3 4]
        [--steps 100000] [--workers 2] [--algo dqn] [--hp KEY=VALUE ...] [--add]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import statistics
import sys
import time
from multiprocessing import get_context
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import RESULTS, machine, measured_on, replace_section, write_result

WORLDS = ("smart-home", "traffic", "home-battery")
#: Worlds measured on request (``--worlds sumo-traffic --add``): SUMO needs the optional extra.
OPTIONAL_WORLDS = ("sumo-traffic",)
#: The world's own measure of each regime: (metric, higher is better?).
MEASURE = {
    "society/TrafficSignal-v0": ("total_waiting_time", False),
    "society/Thermostat-v0": ("energy_cost", False),
    "society/HomeBattery-v0": ("return", True),
    "society/SumoTraffic-v0": ("total_waiting_time", False),
}
EVAL_EPISODES = 10


class _Events:
    """The learner's events, kept: snapshots, and the regret as each episode ends."""

    def __init__(self) -> None:
        self.snapshots: list[Any] = []
        self.regret: list[tuple[int, float, float]] = []  # (step, regret, baseline's sum)
        self.learner: Any = None

    def experience(self, batch: Any, step: int) -> None:
        pass

    def snapshot(self, state: Any) -> None:
        self.snapshots.append(state)

    def episode(self, episode_return: float, length: int, step: int, regime: str) -> None:  # noqa: ARG002
        meter = self.learner.meter
        self.regret.append((step, meter.regret, meter.baseline_return))

    def adapted(self, adaptation: Any) -> None:
        pass


def one_run(
    world: str, seed: int, steps: int, algo: str | None = None, hp: tuple[str, ...] = ()
) -> dict[str, Any]:
    """One agent's life in ``world``'s scenario: regret over time, first and last evaluation.

    ``algo`` and ``hp`` (``KEY=VALUE``) override the scenario's learner, as ``--algo`` and
    ``--hp`` do for ``society agent``.
    """
    from agents.scenarios import load_scenario

    learner, events, config = scenario_learner(world, seed, steps, algo, hp)
    scenario = load_scenario(world)
    started = time.perf_counter()
    try:
        learner.run()
    finally:
        learner.close()
    seconds = time.perf_counter() - started
    first = evaluate_state(learner, events.snapshots[0], config)
    last = evaluate_state(learner, events.snapshots[-1], config)
    others = other_controllers(learner, config)
    for regime, versus in others.items():
        last[regime]["others"] = versus
    in_regime = last_in_each_regime(learner, events.snapshots, config, last)
    for regime, versus in others.items():
        in_regime[regime]["others"] = versus
    default_steps = scenario.society.steps
    at_default = [r for r in events.regret if r[0] <= default_steps]
    return {
        "world": world,
        "seed": seed,
        "steps": learner.step,
        "seconds": round(seconds, 1),
        "default_steps": default_steps,
        "regret_at_default": list(at_default[-1][1:]) if at_default else None,
        "regret_at_end": [learner.meter.regret, learner.meter.baseline_return],
        "controller_steps": learner.meter.controller_steps,
        "learner_episodes": learner.meter.learner_episodes,
        "controller_episodes": learner.meter.controller_episodes,
        "first_step": events.snapshots[0].step,
        "first": first,
        "last": last,
        "in_regime": in_regime,
    }


def last_in_each_regime(
    learner: Any, snapshots: list[Any], config: Any, last: dict[str, Any]
) -> dict[str, Any]:
    """Per regime, the evaluation there of the latest snapshot taken while living in it.

    A run ends in one regime; its final snapshot is adapted to that one. In another regime
    the agent runs what it had learnt when it last lived there (its world watch recalls it),
    so that is the policy a user of the device meets there by the run's end.
    """
    out: dict[str, Any] = {}
    for regime, final in last.items():
        taken = [s for s in snapshots if s.regime == regime]
        if not taken or taken[-1] is snapshots[-1]:
            out[regime] = {**final, "step": snapshots[-1].step}
        else:
            out[regime] = {
                **evaluate_state(learner, taken[-1], config)[regime],
                "step": taken[-1].step,
            }
    return out


def scenario_learner(
    world: str, seed: int, steps: int, algo: str | None = None, hp: tuple[str, ...] = ()
) -> tuple[Any, _Events, Any]:
    """The learner ``society run`` would start for member ``seed`` of scenario ``world``.

    Returns the learner (not started), the events it reports to, and its configuration.
    ``algo`` and ``hp`` (``KEY=VALUE``) override the scenario's, as ``--algo`` and ``--hp`` do
    for ``society agent``.
    """
    from dataclasses import replace

    from agents.cli.agent_config import agent_config
    from agents.flags import AgentFlags
    from agents.flags.values import key_value
    from agents.learner.learner import Learner, limit_torch_threads
    from agents.scenarios import load_scenario

    limit_torch_threads()
    scenario = load_scenario(world)
    flags = AgentFlags(
        id=f"bench-{seed}", scenario=world, seed=seed, steps=steps,
        device_index=seed if scenario.world.heterogeneous else None,
        data_dir="/nonexistent-bench-dir",
        algo=algo,
        hp=tuple(key_value(kv) for kv in hp) or None,
    )  # fmt: skip
    config = replace(agent_config(flags).learner, checkpoint_dir=None, experience_batch=10_000)
    events = _Events()
    learner = Learner(config, events)
    events.learner = learner
    return learner, events, config


def evaluate_state(learner: Any, state: Any, config: Any) -> dict[str, Any]:
    """The coordinator's evaluation of one snapshot: per regime, the policy and the controller."""
    from agents.bus.codec import encode
    from agents.bus.schemas import SCHEMA_VERSION, LibraryPolicy, PolicySnapshot
    from agents.bus.signing import tensor_digest
    from agents.coordinator.evaluation import EvaluationRequest, evaluate_snapshot

    snapshot = PolicySnapshot(
        schema=SCHEMA_VERSION, agent="bench", version=1, step=state.step, algo=config.algo,
        env_id=config.env_id, obs_space=learner.obs_spec, action_space=learner.action_spec,
        arch=learner.arch, tensors=state.tensors, digest=tensor_digest(state.tensors),
        env_kwargs=dict(config.env_kwargs), regimes=learner.regimes, regime=state.regime,
        library=[
            LibraryPolicy(
                context=e.context, score=e.score, tensors=e.tensors, digest=tensor_digest(e.tensors)
            )
            for e in state.library
        ],
        shielded=config.shield,
    )  # fmt: skip
    result = evaluate_snapshot(
        EvaluationRequest(encode(snapshot), episodes=EVAL_EPISODES, seed=10_000)
    )
    if result.error_reason is not None:
        raise RuntimeError(result.error_detail)
    return {
        r.regime: {
            "mean": r.mean,
            "baseline": r.baseline_mean,
            "random": r.random_mean,
            "metrics": r.metrics,
            "baseline_metrics": r.baseline_metrics,
            "recall": r.recall_mean,
            "recall_from": r.recall_from,
        }
        for r in result.regimes
    }


def other_controllers(learner: Any, config: Any) -> dict[str, dict[str, dict[str, float]]]:
    """The world's other controllers' metrics on the final evaluation's episodes, per regime.

    The issue's targets name some of them (the thermostat's: the setpoint thermostat).
    """
    from agents.learner.envs import make_env
    from agents.worlds import BASELINES, PRIMARY_BASELINE, metric_keys, play_episodes

    primary = PRIMARY_BASELINE.get(config.env_id)
    seeds = [10_000 + i for i in range(EVAL_EPISODES)]
    out: dict[str, dict[str, dict[str, float]]] = {}
    for regime in learner.regimes:
        env = make_env(config.env_id, config.env_kwargs, regime=regime, checked=False)
        try:
            for name, make in BASELINES.get(config.env_id, {}).items():
                if name == primary:
                    continue
                played = play_episodes(
                    make(env), env, seeds=seeds, metrics=metric_keys(config.env_id),
                    max_steps=10_000,
                )  # fmt: skip
                means = {k: statistics.fmean(v) for k, v in played.metrics.items() if v}
                means["return"] = statistics.fmean(played.returns)
                out.setdefault(regime.name, {})[name] = means
        finally:
            env.close()
    return out


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    from agents.coordinator.lifelong import normalise

    table: dict[str, Any] = {}
    for world in dict.fromkeys(r["world"] for r in runs):
        mine = [r for r in runs if r["world"] == world]
        rows = []
        for run in mine:
            first = {
                regime: normalise(v["mean"], v["random"], v["baseline"])
                for regime, v in run["first"].items()
                if v["random"] is not None and v["baseline"] is not None
            }
            rows.append(
                {
                    "seed": run["seed"],
                    "regret_default": _share(run["regret_at_default"]),
                    "regret_end": _share(run["regret_at_end"]),
                    "first_normalised": min(first.values()) if first else None,
                    "final": {
                        regime: _versus(world, v)
                        for regime, v in run.get("in_regime", run["last"]).items()
                    },
                    "final_of": "in_regime" if "in_regime" in run else "last",
                    "controller_share": run["controller_steps"] / max(1, run["steps"]),
                }
            )
        regimes = sorted({regime for row in rows for regime in row["final"]})
        table[world] = {
            "rows": rows,
            "median_regret_default": _median([r["regret_default"] for r in rows]),
            "median_regret_end": _median([r["regret_end"] for r in rows]),
            "worst_regret_default": max(
                (r["regret_default"] for r in rows if r["regret_default"] is not None),
                default=None,
            ),
            "min_first_normalised": min(
                (r["first_normalised"] for r in rows if r["first_normalised"] is not None),
                default=None,
            ),
            "median_final": {
                regime: _median([r["final"][regime]["gain"] for r in rows]) for regime in regimes
            },
            "median_against_others": {
                regime: {
                    name: _median(
                        [
                            r["final"][regime].get("others", {}).get(name, {}).get("gain")
                            for r in rows
                        ]
                    )
                    for name in sorted(
                        {n for r in rows for n in r["final"][regime].get("others", {})}
                    )
                }
                for regime in regimes
            },
            "median_recall": {
                regime: _median(
                    [
                        r["final"][regime].get("recall_gain", r["final"][regime]["gain"])
                        for r in rows
                    ]
                )
                for regime in regimes
            },
        }
    return table


def table_markdown(result: dict[str, Any]) -> str:
    """The figures as docs/benchmarks.md shows them."""
    lines = [
        *measured_on(result),
        "",
        "Regret: the controller's summed return minus the deployed one's on the same episodes, "
        "as a share of the controller's cost (negative: better than the controller). Final: "
        "in each regime, the latest snapshot the agent took while living in it (a run ends in "
        "one regime; in the others the agent runs what it learnt there last; rows measured "
        "before this column existed, marked *, show the run's last snapshot in every regime), "
        "against the controller on 10 fixed-seed episodes of each regime, in "
        "the world's measure (positive: better); the thermostat's comfort violation (K h) is "
        "beside its cost. Recalling: what the agent does in that regime with its library (the "
        "policy it would recall there, chosen on other episodes, as the coordinator scores it), "
        "where it is not the current policy.",
        "",
        "| world | seed | regret at the default budget | regret at the end | controller's "
        "share of steps | first evaluation (worst regime, normalised) | final, per regime |",
        "|---|---|---|---|---|---|---|",
    ]
    for world, table in result["table"].items():
        for row in table["rows"]:
            final = "; ".join(
                f"{regime} {_pct(cell['gain'])}"
                + (
                    f" (comfort {cell['comfort']:.2f} vs {cell['controller_comfort']:.2f})"
                    if cell.get("comfort") is not None
                    and cell.get("controller_comfort") is not None
                    else ""
                )
                + (
                    f" (recalling {cell['recall_from']}: {_pct(cell['recall_gain'])})"
                    if cell.get("recall_from") not in (None, "", "current")
                    else ""
                )
                + "".join(
                    f"; against {name} {_pct(versus['gain'])}"
                    + (
                        f" (its comfort {versus['comfort']:.2f})"
                        if versus.get("comfort") is not None
                        else ""
                    )
                    for name, versus in sorted(cell.get("others", {}).items())
                )
                + (f" (snapshot at {cell['step']:,})" if cell.get("step") is not None else "")
                for regime, cell in sorted(row["final"].items())
            )
            mark = "*" if row.get("final_of") == "last" else ""
            lines.append(
                f"| {world} | {row['seed']}{mark} | {_pct(row['regret_default'])} | "
                f"{_pct(row['regret_end'])} | {row['controller_share']:.0%} | "
                f"{_num(row['first_normalised'])} | {final} |"
            )
        recalls = table.get("median_recall", {})
        medians = "; ".join(
            f"{regime} {_pct(gain)}"
            + (
                f" (recalling {_pct(recalls[regime])})"
                if recalls.get(regime) is not None and recalls[regime] != gain
                else ""
            )
            + "".join(
                f"; against {name} {_pct(other)}"
                for name, other in sorted(
                    table.get("median_against_others", {}).get(regime, {}).items()
                )
            )
            for regime, gain in sorted(table["median_final"].items())
        )
        lines.append(
            f"| **{world}** | **median** | **{_pct(table['median_regret_default'])}** "
            f"(worst {_pct(table['worst_regret_default'])}) | "
            f"**{_pct(table['median_regret_end'])}** | | "
            f"min {_num(table['min_first_normalised'])} | {medians} |"
        )
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.1%}"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _share(pair: list[float] | None) -> float | None:
    if not pair or not pair[1]:
        return None
    return pair[0] / abs(pair[1])


def _versus(world: str, regime: dict[str, Any]) -> dict[str, Any]:
    """The policy against the controller in the world's own measure: gain > 0 is better."""
    from agents.scenarios import load_scenario

    env_id = load_scenario(world).world.env
    metric, higher = MEASURE[env_id]
    if metric == "return":
        mine, theirs = regime["mean"], regime["baseline"]
    else:
        mine, theirs = regime["metrics"].get(metric), regime["baseline_metrics"].get(metric)
    gain = None
    if mine is not None and theirs:
        gain = (mine - theirs) / abs(theirs) * (1 if higher else -1)
    out = {"metric": metric, "policy": mine, "controller": theirs, "gain": gain}
    if regime.get("step") is not None:
        out["step"] = regime["step"]
    # What the agent does there recalling from its library, as the coordinator scores it (its
    # returns only: the world's measure is the return's for the battery alone).
    recall, base = regime.get("recall"), regime["baseline"]
    if metric == "return" and recall is not None and base:
        out["recall_gain"] = (recall - base) / abs(base)
        out["recall_from"] = regime.get("recall_from", "")
    if env_id == "society/Thermostat-v0":
        out["comfort"] = regime["metrics"].get("comfort_violation")
        out["controller_comfort"] = regime["baseline_metrics"].get("comfort_violation")
    # Against the world's other controllers on the same episodes, in the same measure.
    versus_others: dict[str, dict[str, float | None]] = {}
    for name, metrics in regime.get("others", {}).items():
        other = metrics.get(metric)
        versus_others[name] = {
            "gain": (mine - other) / abs(other) * (1 if higher else -1)
            if mine is not None and other
            else None,
            "comfort": metrics.get("comfort_violation"),
        }
    if versus_others:
        out["others"] = versus_others
    return out


def _median(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return statistics.median(kept) if kept else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--worlds", nargs="+", default=list(WORLDS), choices=WORLDS + OPTIONAL_WORLDS
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--add", action="store_true",
        help="keep the last results of the other worlds; this run replaces its own worlds'",
    )  # fmt: skip
    parser.add_argument("--algo", help="another learner than the scenario's (ppo, a2c, dqn, sac)")
    parser.add_argument(
        "--hp", action="append", default=[], metavar="KEY=VALUE",
        help="a hyperparameter over the scenario's (repeatable)",
    )  # fmt: skip
    args = parser.parse_args()
    started = time.time()
    jobs = [(world, seed) for world in args.worlds for seed in args.seeds]
    runs: list[dict[str, Any]] = []
    commands = ["python bench/regret.py " + " ".join(sys.argv[1:])]
    if args.add:
        last = json.loads((RESULTS / "regret.json").read_text())
        runs = [r for r in last["runs"] if r["world"] not in args.worlds]
        commands = [*last.get("commands", [last["command"]]), *commands]
    with concurrent.futures.ProcessPoolExecutor(
        args.workers, mp_context=get_context("spawn")
    ) as pool:
        futures = {
            pool.submit(one_run, w, s, args.steps, args.algo, tuple(args.hp)): (w, s)
            for w, s in jobs
        }
        for future in concurrent.futures.as_completed(futures):
            run = future.result()
            runs.append(run)
            print(
                f"{run['world']} seed {run['seed']}: regret {_share(run['regret_at_default'])} "
                f"at {run['default_steps']}, {_share(run['regret_at_end'])} at {run['steps']} "
                f"({run['seconds']} s)",
                flush=True,
            )
    runs.sort(key=lambda r: (r["world"], r["seed"]))
    result = {
        "machine": machine(),
        "command": " ; ".join(commands),
        "commands": commands,
        "seconds": round(time.time() - started),
        "steps": args.steps,
        "runs": runs,
        "table": summarise(runs),
    }
    write_result("regret", result)
    replace_section("regret", table_markdown(result))
    print(table_markdown(result))


if __name__ == "__main__":
    main()
