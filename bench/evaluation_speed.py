"""Evaluation's CPU per policy step: one episode after another through ``predict``, or side by side.

The coordinator used to play a snapshot's evaluation episodes one after another, asking
stable-baselines3's ``predict`` for one action at a time. It now plays all the episodes of a
regime side by side, one batched (numpy) forward pass per step (``agents.worlds.play_batched``,
``agents.learner.batch_actor``). Both loops play the same episodes (the same seeds, the same
policy: ``tests/learner/test_batch_actor.py`` checks they return the same); this measures the
process CPU time of each per policy step, on each world, with the scenario's network. Target
(issue 18): at least 20 times less on CartPole and on the thermostat.

    python bench/evaluation_speed.py [--worlds cartpole thermostat traffic sumo] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine, replace_section, write_result

#: World -> (env id, algorithm, activation, net_arch) as its scenario learns it.
WORLDS: dict[str, tuple[str, str, str, Any]] = {
    "cartpole": ("CartPole-v1", "ppo", "tanh", {"pi": [64, 64], "vf": [64, 64]}),
    "thermostat": ("society/Thermostat-v0", "ppo", "tanh", {"pi": [64, 64], "vf": [64, 64]}),
    "traffic": ("society/TrafficSignal-v0", "dqn", "relu", [64, 64]),
    "sumo": ("society/SumoTraffic-v0", "ppo", "tanh", {"pi": [64, 64], "vf": [64, 64]}),
}
EPISODES = 5  # the coordinator's default evaluation episodes per regime


def measure(world: str, repeats: int) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    from agents.bus.schemas import PolicyArch
    from agents.learner.algorithms import get_algorithm
    from agents.learner.batch_actor import batch_actor, numpy_actor
    from agents.learner.envs import make_env
    from agents.learner.snapshots import build_policy
    from agents.worlds import PolicyController, play_batched, play_episodes

    env_id, algo, activation, net_arch = WORLDS[world]
    from agents.coordinator.evaluation import one_per_process

    # Before: the world as gymnasium.make wraps it (checked). Now: as the coordinator builds it
    # for an evaluation (checked=False, agents.learner.envs.make_env). libsumo allows one
    # simulation per process: SUMO's loops share it.
    envs = [make_env(env_id, {}, checked=False)]
    alone_at_a_time = one_per_process(envs[0])
    envs += [
        make_env(env_id, {}, checked=False) for _ in range(0 if alone_at_a_time else EPISODES - 1)
    ]
    before_env = envs[0] if alone_at_a_time else make_env(env_id, {})
    arch = PolicyArch(policy="MlpPolicy", net_arch=net_arch, activation=activation)
    torch.manual_seed(0)
    policy = build_policy(
        get_algorithm(algo), arch, envs[0].observation_space, envs[0].action_space
    )
    seeds = [10_000 + i for i in range(EPISODES)]
    one_by_one, side_by_side, steps = [], [], 0
    try:
        for _ in range(repeats):
            started = time.process_time()
            alone = play_episodes(PolicyController(policy), before_env, seeds=seeds, metrics={})
            one_by_one.append((time.process_time() - started) / sum(alone.lengths))
            started = time.process_time()
            together = play_batched(batch_actor(policy), envs, seeds=seeds, metrics={})
            side_by_side.append((time.process_time() - started) / sum(together.lengths))
            if together.returns != alone.returns:
                msg = f"{world}: the two loops played different episodes"
                raise SystemExit(msg)
            steps = sum(together.lengths)
    finally:
        for env in {id(e): e for e in [before_env, *envs]}.values():
            env.close()
    before, after = statistics.median(one_by_one), statistics.median(side_by_side)
    return {
        "world": world,
        "env_id": env_id,
        "algo": algo,
        "numpy_pass": numpy_actor(policy) is not None,
        "side_by_side": len(envs),
        "policy_steps": steps,
        "one_by_one_us": round(before * 1e6, 2),
        "side_by_side_us": round(after * 1e6, 2),
        "ratio": round(before / after, 1),
    }


def table_markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        f"Command: `{result['command']}` ({m['date']}, {m['cores']} cores, {m['cpu']}, torch "
        f"{m['torch']}, commit {m['commit']}; median of {result['repeats']} repeats).",
        "",
        "| world | algorithm | policy steps per evaluation | one by one (`predict`), µs CPU "
        "per step | side by side, µs | less CPU |",
        "|---|---|---|---|---|---|",
    ]
    lines.extend(
        f"| {r['world']}{'' if r['side_by_side'] > 1 else ' (one at a time)'} | "
        f"{r['algo']}{'' if r['numpy_pass'] else ' (predict)'} | "
        f"{r['policy_steps']} | {r['one_by_one_us']} | {r['side_by_side_us']} | {r['ratio']}x |"
        for r in result["rows"]
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--worlds", nargs="+", choices=sorted(WORLDS), default=["cartpole", "thermostat", "traffic"]
    )
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rows = [measure(world, args.repeats) for world in args.worlds]
    for row in rows:
        print(row, flush=True)
    result = {
        "machine": machine(),
        "command": "python bench/evaluation_speed.py " + " ".join(sys.argv[1:]),
        "repeats": args.repeats,
        "rows": rows,
    }
    write_result("evaluation_speed", result)
    replace_section("evaluation_speed", table_markdown(result))
    print(table_markdown(result))


if __name__ == "__main__":
    main()
