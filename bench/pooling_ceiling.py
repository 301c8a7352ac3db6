"""The most pooling four PPO learners' data could give on CartPole: a ceiling for sharing gain.

Issue 16 asks federated PPO on CartPole for a sharing gain of 2.0 (the twins' agent steps to
475 over the sharing agents'). This benchmark asks what any way of pooling on-policy data
could give at the sharing scenario's settings (``bench/scenarios/cartpole-sharing.toml``:
``n_steps`` 512, 10 epochs of minibatches of 64, learning rate 3e-4), with none of the
society's delays: four learners in lockstep, all from one initial network, each on its own
CartPole, every rollout at once.

- ``alone``: four independent learners (what the twins are);
- ``pooled``: one PPO on the four environments, every update made from the four rollouts
  together, the learners keeping the same weights: what sharing on-policy rollouts among
  learners of one policy gives with no delay and no importance weights;
- ``fedsum``: each learner trains on its own rollout, then all take the initial weights plus
  the sum of the four updates over four, times four (FedAvg with a server step of the group's
  size, what ``agents/learner/federation.py`` does when every member's update is fresh);
- ``fedavg``: the same with the plain average of the four updates;
- ``chunks``: one PPO on the four environments as ``pooled``, each collecting a quarter of
  the rollout (``n_steps / 4``) per update: an update of the usual size every quarter rollout
  of each member, what pooled rollouts (``agents/learner/pooling.py``) do in lockstep;
- ``fedsum_late``: ``fedsum`` with the peers' updates one round late: each learner adds its
  own update at once and each peer's at its next round (what an asynchronous federation gives
  at best, every update arriving one rollout after it was made), so the learners' weights
  differ by their latest updates and each is evaluated on its own.

After every rollout each learner is evaluated as the coordinator evaluates a snapshot (5
episodes from seeds 10000-10004, deterministic actions); its steps to the threshold are those
of its first evaluation at 475 or more (one that never gets there counts the whole budget,
so the gain is then a lower bound). Gain per seed: the ``alone`` learners' total over the
mode's, as ``society run --twins`` computes it.

    python bench/pooling_ceiling.py [--seeds 0 1 2 3 4] [--modes pooled fedsum fedavg]
        [--add]   # keep the stored runs, run only the (seed, mode) pairs not there yet
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gymnasium as gym
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env

from agents.learner.algorithms import get_algorithm, silence_logger
from agents.learner.snapshots import make_arch, policy_kwargs
from agents.scenarios import load_scenario
from agents.worlds import PolicyController, play_episodes
from bench.common import RESULTS, machine, measured_on, replace_section, write_result

SCENARIO = Path(__file__).resolve().parent / "scenarios" / "cartpole-sharing.toml"
MEMBERS = 4
EVAL_SEED = 10000
EVAL_EPISODES = 5
MODES = ("pooled", "fedsum", "fedavg", "fedsum_late", "chunks")


def scenario_settings() -> tuple[dict[str, Any], dict[str, Any], float, int]:
    """The sharing scenario's PPO hyperparameters, policy, threshold and budget."""
    scenario = load_scenario(str(SCENARIO))
    learner = scenario.learner
    spec = get_algorithm(learner.algo)
    arch = make_arch(
        spec, net_arch=learner.policy.net_arch, activation=learner.policy.activation,
        options=learner.policy.options,
    )  # fmt: skip
    assert scenario.evaluation.threshold is not None  # the sharing scenario has one
    return (
        dict(learner.hyperparams),
        policy_kwargs(spec, arch),
        scenario.evaluation.threshold,
        scenario.society.steps,
    )


def evaluate(model: PPO) -> float:
    """Mean return of ``model``'s deterministic policy on the coordinator's episodes."""
    score = play_episodes(
        PolicyController(model), gym.make("CartPole-v1"),
        seeds=range(EVAL_SEED, EVAL_SEED + EVAL_EPISODES), metrics={},
    )  # fmt: skip
    return score.mean_return


def build(seed: int, n_envs: int, settings: tuple[dict[str, Any], dict[str, Any]]) -> PPO:
    hyperparams, policy = settings
    env = make_vec_env("CartPole-v1", n_envs=n_envs, seed=seed)
    model = PPO("MlpPolicy", env, seed=seed, policy_kwargs=policy, verbose=0, **hyperparams)
    silence_logger(model)
    return model


def steps_to_threshold(
    models: list[PPO], rollout: int, budget: int, threshold: float,
    after_rollout: Callable[[list[dict[str, torch.Tensor]]], None], *, independent: bool,
) -> list[int | None]:  # fmt: skip
    """Train ``models`` in lockstep, one rollout each per round; each one's steps to 475.

    ``independent``: the models share nothing, so one that got there stops learning.
    """
    reached: list[int | None] = [None] * len(models)
    for round_ in range(1, budget // rollout + 1):
        starts = [copy.deepcopy(m.policy.state_dict()) for m in models]
        for i, model in enumerate(models):
            if reached[i] is None or not independent:  # a member at 475 needs no more steps
                model.learn(rollout * model.n_envs, reset_num_timesteps=False)
        after_rollout(starts)
        for i, model in enumerate(models):
            if reached[i] is None and evaluate(model) >= threshold:
                reached[i] = round_ * rollout
        if all(r is not None for r in reached):
            break
    return reached


def one_seed(mode: str, seed: int) -> list[int | None]:
    hyperparams, policy, threshold, budget = scenario_settings()
    settings = (hyperparams, policy)
    rollout = int(hyperparams["n_steps"])
    torch.manual_seed(seed)
    if mode == "chunks":
        # Each member a quarter of the rollout, one update of the four quarters together.
        chunked = {**hyperparams, "n_steps": rollout // MEMBERS}
        model = build(seed, MEMBERS, (chunked, policy))
        reached = steps_to_threshold(
            [model], rollout // MEMBERS, budget, threshold, lambda _: None, independent=True
        )
        return reached * MEMBERS
    if mode == "pooled":
        model = build(seed, MEMBERS, settings)
        reached = steps_to_threshold(
            [model], rollout, budget, threshold, lambda _: None, independent=True
        )
        return reached * MEMBERS  # one policy: every member has the same weights
    models = [build(seed * MEMBERS + i, 1, settings) for i in range(MEMBERS)]
    initial = models[0].policy.state_dict()
    for model in models[1:]:
        model.policy.load_state_dict(initial)  # one initial network, as a federation has

    late = LateUpdates(models)

    def combine(starts: list[dict[str, torch.Tensor]]) -> None:
        if mode == "fedsum_late":
            late.combine(starts)
        elif mode != "alone":
            combine_at_once(models, starts, server_step=float(MEMBERS) if mode == "fedsum" else 1.0)

    return steps_to_threshold(
        models, rollout, budget, threshold, combine, independent=mode == "alone"
    )


def _updates(
    models: list[PPO], starts: list[dict[str, torch.Tensor]]
) -> list[dict[str, torch.Tensor]]:
    """Each learner's update of its floating-point weights since ``starts``."""
    updates = []
    for model, start in zip(models, starts, strict=True):
        state = model.policy.state_dict()
        updates.append(
            {
                name: state[name] - value
                for name, value in start.items()
                if value.is_floating_point()
            }
        )
    return updates


def combine_at_once(
    models: list[PPO], starts: list[dict[str, torch.Tensor]], *, server_step: float
) -> None:
    """Every learner to the common start plus ``server_step`` times the mean update."""
    updates = _updates(models, starts)
    combined = dict(starts[0])  # every member started from the previous round's combination
    for name in updates[0]:
        combined[name] = starts[0][name] + server_step * sum(u[name] for u in updates) / MEMBERS
    for model in models:
        model.policy.load_state_dict(combined)


class LateUpdates:
    """``fedsum_late``: own update at once, the peers' one round later."""

    def __init__(self, models: list[PPO]) -> None:
        self.models = models
        self.previous: list[dict[str, torch.Tensor]] = []

    def combine(self, starts: list[dict[str, torch.Tensor]]) -> None:
        updates = _updates(self.models, starts)
        for i, model in enumerate(self.models if self.previous else []):
            weights = model.policy.state_dict()
            for name in updates[i]:
                late = sum(self.previous[p][name] for p in range(MEMBERS) if p != i)
                weights[name] = weights[name] + late
            model.policy.load_state_dict(weights)
        self.previous = updates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--modes", nargs="*", default=list(MODES), choices=MODES)
    parser.add_argument(
        "--add", action="store_true",
        help="keep the stored runs (bench/results) and run only the pairs not there yet",
    )  # fmt: skip
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    budget = scenario_settings()[3]
    runs: list[dict[str, Any]] = []
    commands: list[str] = []
    if args.add:
        path = RESULTS / "pooling_ceiling.json"
        if not path.exists():
            parser.error(f"--add: no earlier results in {path} to keep")
        stored = json.loads(path.read_text())
        if stored["budget"] == budget:  # runs with another budget are not comparable
            runs = stored["runs"]
            commands = stored["command"].split(" && ")
    done = {(r["seed"], r["mode"]) for r in runs}
    for seed in args.seeds:
        for mode in ("alone", *args.modes):
            if (seed, mode) in done:
                continue
            reached = one_seed(mode, seed)
            run = {"seed": seed, "mode": mode, "reached": reached}
            runs.append(run)
            print(run, flush=True)
    result = {
        "benchmark": "pooling_ceiling",
        "command": " && ".join([
            *commands,
            "python bench/pooling_ceiling.py --seeds " + " ".join(map(str, args.seeds))
            + " --modes " + " ".join(args.modes) + (" --add" if args.add else ""),
        ]),
        "machine": machine(),
        "seconds": round(time.perf_counter() - started),
        "budget": budget,
        "runs": runs,
    }  # fmt: skip
    write_result("pooling_ceiling", result)
    write_table(result)


def total(reached: list[int | None], budget: int) -> tuple[int, bool]:
    """Summed steps to the threshold, and whether a learner never got there."""
    return sum(r if r is not None else budget for r in reached), None in reached


def write_table(result: dict[str, Any]) -> None:
    budget = result["budget"]
    by = {(r["seed"], r["mode"]): r["reached"] for r in result["runs"]}
    seeds = sorted({r["seed"] for r in result["runs"]})
    modes = [m for m in MODES if any(r["mode"] == m for r in result["runs"])]
    lines = [*measured_on(result), ""]
    lines.append(
        "| seed | alone: each learner's steps to 475 | "
        + " | ".join(f"{m}: steps (each) | gain" for m in modes) + " |"
    )  # fmt: skip
    lines.append("|---|---|" + "---|---|" * len(modes))
    gains: dict[str, list[float]] = {m: [] for m in modes}
    for seed in seeds:
        alone, alone_short = total(by[(seed, "alone")], budget)
        row = [str(seed), _each(by[(seed, "alone")])]
        for mode in modes:
            mine, _ = total(by[(seed, mode)], budget)
            gains[mode].append(alone / mine)
            bound = ">= " if alone_short else ""
            row += [_each(by[(seed, mode)]), f"{bound}{alone / mine:.2f}"]
        lines.append("| " + " | ".join(row) + " |")
    cells = ["**median**", ""]
    for mode in modes:
        cells += ["", f"**{statistics.median(gains[mode]):.2f}**"]
    lines.append("| " + " | ".join(cells) + " |")
    replace_section("pooling_ceiling", "\n".join(lines))


def _each(reached: list[int | None]) -> str:
    return ", ".join("never" if r is None else f"{r:,}" for r in reached)


if __name__ == "__main__":
    main()
