"""An agent's learning speed inside the society against the same SB3 model learning alone.

Alone: stable-baselines3 PPO on CartPole-v1 with the cartpole scenario's hyperparameters, one
torch thread, ``model.learn(N)`` in this process. In the society: a managed Mosquitto, a
coordinator process evaluating every snapshot, and one ``society agent`` process with the same
scenario and seed, learning N steps while it publishes experience, snapshots and telemetry.
Both figures are environment steps per second of learning time. The two are run alternately,
``--repeats`` times each, and the medians compared. Target: ratio >= 0.95.

    python bench/throughput.py [--steps 20000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine, replace_section, write_result

SCENARIO = "cartpole"


def alone(steps: int, seed: int) -> float:
    """Steps per second of plain SB3 PPO, configured as the scenario configures the agent."""
    code = f"""
import time, torch
torch.set_num_threads(1); torch.set_num_interop_threads(1)
from stable_baselines3 import PPO
from agents.scenarios import load_scenario
from agents.learner.algorithms import get_algorithm
from agents.learner.snapshots import make_arch, policy_kwargs
s = load_scenario({SCENARIO!r})
spec = get_algorithm(s.learner.algo)
arch = make_arch(spec, net_arch=s.learner.policy.net_arch, activation=s.learner.policy.activation)
model = PPO("MlpPolicy", s.world.env, policy_kwargs=policy_kwargs(spec, arch), seed={seed},
            device="cpu", **s.learner.hyperparams)
start = time.perf_counter()
model.learn({steps})
print({steps} / (time.perf_counter() - start))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def in_society(steps: int, seed: int) -> dict[str, Any]:
    """Steps per second of one agent process in a society with broker and coordinator."""
    from agents.broker.managed import ManagedBroker

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        with ManagedBroker(root / "broker", kind="mosquitto") as broker:
            url = f"mqtt://{broker.url.host}:{broker.url.port}"
            coordinator = subprocess.Popen(
                [sys.executable, "-m", "agents", "coordinator", "--society", "bench",
                 "--broker", url, "--metrics-port", "0", "--data-dir", str(root / "coord"),
                 "--log-level", "WARNING"],
            )  # fmt: skip
            try:
                subprocess.run(
                    [sys.executable, "-m", "agents", "agent", "--id", "bench-0", "--society",
                     "bench", "--broker", url, "--scenario", SCENARIO, "--seed", str(seed),
                     "--steps", str(steps), "--data-dir", str(root / "agent"),
                     "--log-level", "WARNING"],
                    check=True,
                )  # fmt: skip
            finally:
                coordinator.terminate()
                coordinator.wait(60)
            report = json.loads((root / "agent" / "final.json").read_text())
            coordinator_summary = json.loads((root / "coord" / "coordinator.json").read_text())
    return {
        "steps_per_second": report["steps_this_run"] / report["learning_seconds"],
        "experience_batches": report["experience_batches_published"],
        "snapshots": report["snapshots_published"],
        "snapshots_evaluated": coordinator_summary["snapshots_evaluated"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    solo: list[float] = []
    society: list[dict[str, Any]] = []
    for repeat in range(args.repeats):
        seed = repeat
        if repeat % 2 == 0:
            solo.append(alone(args.steps, seed))
            society.append(in_society(args.steps, seed))
        else:
            society.append(in_society(args.steps, seed))
            solo.append(alone(args.steps, seed))
        print(f"repeat {repeat}: alone {solo[-1]:.0f} steps/s, "
              f"in society {society[-1]['steps_per_second']:.0f} steps/s", flush=True)  # fmt: skip
    solo_median = statistics.median(solo)
    society_median = statistics.median(s["steps_per_second"] for s in society)
    ratio = society_median / solo_median
    command = f"python bench/throughput.py --steps {args.steps} --repeats {args.repeats}"
    result = {
        "benchmark": "throughput",
        "command": command,
        "machine": machine(),
        "scenario": SCENARIO,
        "steps": args.steps,
        "alone_steps_per_second": solo,
        "society_steps_per_second": [s["steps_per_second"] for s in society],
        "society_runs": society,
        "alone_median": solo_median,
        "society_median": society_median,
        "ratio": ratio,
        "target": 0.95,
    }
    write_result("throughput", result)
    m = result["machine"]
    rows = "\n".join(
        f"| {i + 1} | {a:,.0f} | {s['steps_per_second']:,.0f} | {s['snapshots_evaluated']} |"
        for i, (a, s) in enumerate(zip(solo, society, strict=True))
    )
    replace_section(
        "throughput",
        f"""Command: `{command}`
({m["date"]}, {m["cores"]} cores, {m["cpu"]}, torch {m["torch"]}, commit {m["commit"]}).

| run | alone (steps/s) | in the society (steps/s) | snapshots evaluated meanwhile |
|---|---|---|---|
{rows}
| **median** | **{solo_median:,.0f}** | **{society_median:,.0f}** | |

Ratio in the society / alone: **{ratio:.3f}** (target >= 0.95).
""",
    )
    print(json.dumps({"ratio": ratio, "alone": solo_median, "society": society_median}))


if __name__ == "__main__":
    main()
