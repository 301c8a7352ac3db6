"""Run every benchmark, one after the other (they need the machine to themselves).

Each writes its raw results to ``bench/results/<name>.json`` and rewrites its table in
``docs/benchmarks.md``. ``python bench/run_all.py --only throughput`` runs one.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent

#: Name: script and arguments, in the order they run (about 2.5 hours in all on 2 cores, the
#: lifelong benchmark the longest).
BENCHMARKS: dict[str, list[str]] = {
    "throughput": ["throughput.py", "--steps", "20000", "--repeats", "3"],  # issue 2
    "worlds": ["worlds_bench.py"],  # issue 3
    "lifelong": [  # issue 4
        "lifelong.py",
        *("--settings", "cartpole", "traffic", "smart-home"),
        *("--seeds", *map(str, range(6))),
    ],
    # Six seeds do not settle traffic-crossed (docs/benchmarks.md): twelve, beside the others.
    "lifelong-traffic-crossed": [
        "lifelong.py",
        *("--settings", "traffic-crossed"),
        *("--seeds", *map(str, range(12))),
        "--add",
    ],
    # issue 5
    "sharing": [
        "sharing.py",
        *("--settings", "cartpole-dqn", "traffic-dqn", "traffic-dqn-mixed"),
        *("--seeds", "0", "1", "2"),
    ],
    # issue 16: what pooling four PPO learners' data could give on CartPole at most
    "pooling_ceiling": ["pooling_ceiling.py", "--seeds", "0", "1", "2", "3", "4"],
    # issue 16: how much of PPO's clipped gradient its actor gets, world by world
    "gradient_norms": ["gradient_norms.py", "--seed", "0"],
    # issue 16: federated PPO against twins; the intersections' twins need 80,000 steps to get
    # to the threshold at all
    "sharing-ppo": [
        "sharing.py",
        *("--settings", "cartpole-ppo"),
        *("--seeds", "0", "1", "2", "3", "4"),
        "--add",
    ],
    "sharing-traffic-ppo": [
        "sharing.py",
        *("--settings", "traffic-ppo"),
        *("--seeds", "0", "1", "2", "3", "4"),
        *("--steps", "80000"),
        "--add",
    ],
    # issue 15: regret against the device's controller, and where the learner ends
    "regret": ["regret.py", "--seeds", "0", "1", "2", "3", "4", "--steps", "100000"],
    # issue 15, a negative result: a history from two controllers, and a learner that should
    # pick between them state by state
    "controller_mix": ["controller_mix.py", "--seeds", "0", "1"],
    # issue 15: `make run` as a user sees it, where every agent ends against its controller
    "quickstart": ["quickstart.py", "--seeds", "0", "3", "6", "9", "12"],
    "evaluation_speed": ["evaluation_speed.py", "--worlds", "cartpole", "thermostat", "traffic"],
    "soak": ["soak.py"],  # issue 6: docs/reliability.md
    "scaling": ["scaling.py"],  # issue 7: docs/scaling.md
    # issue 18: societies of 4 to 48 agents against as many bare processes
    "society-size": ["scaling.py", "--societies", "4", "8", "16", "32", "48"],
    # issue 18: the society against Ray RLlib's multi-policy PPO (installs Ray for itself)
    "ray-peer": ["ray_peer.py", "--sizes", "1", "4", "--steps", "8000", "--repeats", "3"],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=sorted(BENCHMARKS), help="run just these")
    args = parser.parse_args()
    failed = []
    for name in args.only or BENCHMARKS:
        script, *rest = BENCHMARKS[name]
        print(f"== {name}", flush=True)
        started = time.monotonic()
        code = subprocess.run([sys.executable, str(BENCH / script), *rest], check=False).returncode
        print(f"== {name}: exit {code} after {time.monotonic() - started:.0f} s", flush=True)
        if code:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
