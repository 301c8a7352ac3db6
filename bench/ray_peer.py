"""The peer comparison: the society against Ray RLlib's multi-policy PPO on the same machine.

Issue 18 item 5. For each size N (``--sizes``, default 1 and 4), in one run of this script,
alternately (the order turns round from one run to the next):

- **society**: a managed Mosquitto, a coordinator and N ``society agent`` processes learning
  PPO on CartPole (``bench/scenarios/cartpole-scale.toml``), measured by
  :func:`bench.society_size.society`: aggregate agent steps/s while all N learn;
- **Ray**: Ray RLlib's PPO with N policies on a multi-agent environment of N independent
  CartPoles (RLlib's ``MultiAgentCartPole``), agent *i* mapped to policy *i*, the scenario's
  hyperparameters as far as RLlib has them (a rollout of 512 steps per policy, minibatches
  of 64, 10 epochs, learning rate 3e-4, GAE lambda 0.95, gamma 0.99, clip 0.2, no KL penalty,
  gradient norm 0.5, separate [64, 64] tanh policy and value networks), one torch thread per
  process, CPU only. Counted: agent steps sampled over the learning time (from the first
  ``train()`` to the last; Ray's start-up, ``ray.init`` and building the algorithm, reported
  apart), and the peak PSS of all Ray's processes (driver, GCS, raylet, workers), summed;
- **bare**: N bare stable-baselines3 processes (:func:`bench.society_size.bare`).

Ray is not a dependency of the project: the script installs it for itself into a virtualenv
of its own (``--venv``, by default in the user's cache folder): ``torch==2.13.0`` first (the
CPU build this machine's pip finds), then ``ray[rllib]==RAY_VERSION``. Ray picks its node
address by routing towards a public address, so it runs in a network namespace of its own
with only the loopback interface up (``unshare -n``, then ``ip link set lo up``; needs root
or user namespaces): nothing it does leaves the machine. Usage statistics and the dashboard
are off, the object store small.

    python bench/ray_peer.py [--sizes 1 4] [--steps 8000] [--repeats 3]

Writes bench/results/ray_peer.json and the table in docs/benchmarks.md. If Ray cannot be
installed or run here, it says why in one line and exits with status 1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import ROOT, measured_on
from bench.society_size import pss_kb

RAY_VERSION = "2.60.0"
TORCH = "torch==2.13.0"  # the CPU build on this machine's disk; a plain `torch` pulls CUDA
SAMPLE_EVERY = 1.0  # seconds between memory samples of Ray's processes
RAY_TIMEOUT = 1800.0  # seconds for one Ray run, start-up included
OBJECT_STORE_BYTES = 80 * 1024 * 1024  # the smallest Ray accepts is 75 MB
KINDS = ("society", "ray", "bare")

#: The scenario's PPO (bench/scenarios/cartpole-scale.toml, stable-baselines3's defaults for the
#: rest) in RLlib's words; the batch is 512 agent steps per policy (``count_steps_by``).
PPO: dict[str, Any] = {
    "minibatch_size": 64,
    "num_epochs": 10,
    "lr": 3e-4,
    "lambda_": 0.95,
    "gamma": 0.99,
    "entropy_coeff": 0.0,
    "clip_param": 0.2,
    "vf_loss_coeff": 0.5,
    "vf_clip_param": float("inf"),  # stable-baselines3 does not clip the value function
    "grad_clip": 0.5,
    "use_kl_loss": False,  # nor does it add a KL penalty
    "kl_coeff": 0.0,
}


class RayUnavailableError(Exception):
    """Ray cannot be installed or run here; the message says why, in one line."""


def default_venv() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "agent-society" / f"ray-{RAY_VERSION}"


def ensure_ray(venv: Path) -> Path:
    """The Python of a virtualenv holding Ray RLlib and torch, installed there when missing."""
    python = venv / "bin" / "python"
    probe = "import ray, torch; print(ray.__version__)"
    if python.exists():
        done = subprocess.run(
            [str(python), "-c", probe], capture_output=True, text=True, check=False
        )
        if done.returncode == 0 and done.stdout.strip() == RAY_VERSION:
            return python
    print(f"installing Ray {RAY_VERSION} into {venv} (for this benchmark only)", flush=True)
    steps = [
        [sys.executable, "-m", "venv", "--clear", str(venv)],
        [str(python), "-m", "pip", "install", "--quiet", TORCH],
        [str(python), "-m", "pip", "install", "--quiet", f"ray[rllib]=={RAY_VERSION}"],
    ]
    for command in steps:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            msg = f"cannot install Ray: `{' '.join(command[2:])}` failed: {_last_line(done)}"
            raise RayUnavailableError(msg)
    return python


def _last_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
    return lines[-1].strip() if lines else f"exit status {done.returncode}"


# --- Ray's side: runs in the Ray virtualenv, inside the network namespace -----------------


def rllib_child(n: int, steps: int, seed: int, env_runners: int, out: Path) -> None:
    """Learn ``steps`` agent steps per policy with N policies; write the timings to ``out``."""
    started = time.time()
    import torch

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    import ray
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig
    from ray.rllib.examples.envs.classes.multi_agent import MultiAgentCartPole
    from ray.tune.registry import register_env

    register_env("cartpoles", lambda _: MultiAgentCartPole(config={"num_agents": n}))
    ray.init(
        num_cpus=os.cpu_count(), num_gpus=0, include_dashboard=False,
        object_store_memory=OBJECT_STORE_BYTES, configure_logging=False,
    )  # fmt: skip
    initialised = time.time()
    config = (
        PPOConfig()
        .environment("cartpoles")
        .framework("torch")
        .resources(num_gpus=0)
        .env_runners(num_env_runners=env_runners, num_envs_per_env_runner=1)
        .learners(num_learners=0)
        .multi_agent(
            policies={f"p{i}" for i in range(n)},
            policy_mapping_fn=lambda agent, *_, **__: f"p{agent}",
            count_steps_by="agent_steps",
        )
        .training(train_batch_size_per_learner=512 * n, **PPO)
        .rl_module(
            model_config=DefaultModelConfig(
                fcnet_hiddens=[64, 64], fcnet_activation="tanh", vf_share_layers=False
            )
        )
        .debugging(seed=seed)
    )
    algo = config.build_algo()
    built = time.time()
    progress: list[tuple[float, float]] = [(built, 0.0)]
    per_policy: dict[str, float] = {}
    result: dict[str, Any] = {}
    while min(per_policy.values(), default=0.0) < steps:
        result = algo.train()
        sampled = result["env_runners"]["num_agent_steps_sampled_lifetime"]
        per_policy = {str(agent): float(count) for agent, count in sampled.items()}
        progress.append((time.time(), sum(per_policy.values())))
    ended = time.time()
    out.write_text(
        json.dumps({
            "ray": ray.__version__,
            "torch": torch.__version__,
            "startup_seconds": built - started,
            "ray_init_seconds": initialised - started,
            "learning_seconds": ended - built,
            "agent_steps": progress[-1][1],
            "agent_steps_per_policy": per_policy,
            "iterations": len(progress) - 1,
            "progress": progress,
            "episode_return_mean": result["env_runners"].get("episode_return_mean"),
        })
    )  # fmt: skip
    algo.stop()
    ray.shutdown()


# --- this side: start Ray in its namespace and watch its processes ------------------------


def _netns(pid: int) -> str | None:
    try:
        return str(Path(f"/proc/{pid}/ns/net").readlink())
    except OSError:
        return None


def _processes_in(netns: str) -> dict[int, str]:
    """Every process in the network namespace ``netns``, by pid, with its command name."""
    found = {}
    for path in Path("/proc").iterdir():
        if path.name.isdigit() and _netns(int(path.name)) == netns:
            try:
                found[int(path.name)] = (path / "comm").read_text().strip()
            except OSError:
                continue
    return found


def _kill_all_in(netns: str | None) -> None:
    """End the processes left in Ray's namespace: all of them were started by this script."""
    if netns is None:
        return
    for pid in _processes_in(netns):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def ray_run(python: Path, n: int, steps: int, seed: int, env_runners: int) -> dict[str, Any]:
    """One RLlib run in a network namespace with only loopback; its rate, start-up, memory."""
    with tempfile.TemporaryDirectory() as folder:
        out, log = Path(folder) / "ray.json", Path(folder) / "ray.log"
        env = {
            **os.environ, "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "ignore",
            "RAY_DEDUP_LOGS": "0", "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
        }  # fmt: skip
        command = [
            "unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$0" "$@"', str(python),
            str(Path(__file__).resolve()), "--ray-child", str(n), str(steps), str(seed),
            str(env_runners), str(out),
        ]  # fmt: skip
        host_netns = _netns(os.getpid())
        started = time.time()
        with log.open("w") as sink:
            child = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env)
            peak_total, peak_driver, peak_processes = 0, 0, 0
            names: dict[int, str] = {}
            ours: str | None = None  # Ray's network namespace, once the child is in it
            while child.poll() is None:
                if time.time() - started > RAY_TIMEOUT:
                    child.kill()
                    child.wait()
                    _kill_all_in(ours)
                    msg = f"Ray did not finish within {RAY_TIMEOUT:.0f} s"
                    raise RayUnavailableError(msg)
                netns = _netns(child.pid)
                if netns is not None and netns != host_netns:
                    ours = netns
                    processes = _processes_in(netns)
                    names.update(processes)
                    sizes = {pid: pss_kb(pid) or 0 for pid in processes}
                    peak_total = max(peak_total, sum(sizes.values()))
                    peak_driver = max(peak_driver, sizes.get(child.pid, 0))
                    peak_processes = max(peak_processes, len(processes))
                time.sleep(SAMPLE_EVERY)
        _kill_all_in(ours)  # whatever Ray left behind in its namespace
        if child.returncode != 0 or not out.exists():
            lines = [line for line in log.read_text().splitlines() if line.strip()]
            errors = [line for line in lines if "Error" in line or "error:" in line]
            reason = (errors or lines or [f"exit status {child.returncode}"])[-1].strip()
            msg = f"Ray failed (exit status {child.returncode}): {reason}"
            raise RayUnavailableError(msg)
        timings = json.loads(out.read_text())
    return {
        **{k: v for k, v in timings.items() if k != "progress"},
        "seconds": time.time() - started,
        "steps_per_second": timings["agent_steps"] / timings["learning_seconds"],
        "pss_mb": {
            "total": peak_total / 1024,
            "driver": peak_driver / 1024,
            "processes": peak_processes,
            "names": sorted(set(names.values())),
        },
        "progress": timings["progress"],
    }


# --- the comparison ------------------------------------------------------------------------


def run(python: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    """For each repeat and size, society, Ray and bare in turn; one row per size."""
    from bench.society_size import bare, society

    sizes: list[int] = args.sizes
    steps: int = args.steps
    rows: dict[int, dict[str, Any]] = {
        n: {"policies": n, "steps_each": steps, "runs": []} for n in sizes
    }
    turn = 0
    for repeat in range(args.repeats):
        for n in sizes:
            order = KINDS[turn % 3 :] + KINDS[: turn % 3]
            turn += 1
            entry: dict[str, Any] = {"repeat": repeat, "order": list(order)}
            for kind in order:
                if kind == "society":
                    entry[kind] = society(n, steps, args.eval_wait)
                elif kind == "ray":
                    entry[kind] = ray_run(python, n, steps, repeat, args.env_runners)
                else:
                    entry[kind] = bare(n, steps)
                shown = {k: v for k, v in entry[kind].items() if k != "progress"}
                print(f"{n} policies, {kind}: {json.dumps(shown)}", flush=True)
            rows[n]["runs"].append(entry)
    for row in rows.values():
        for kind in KINDS:
            row[kind] = statistics.median(r[kind]["steps_per_second"] for r in row["runs"])
        row["society_over_ray"] = row["society"] / row["ray"]
        row["society_over_bare"] = row["society"] / row["bare"]
        row["ray_over_bare"] = row["ray"] / row["bare"]
        row["ray_startup_seconds"] = statistics.median(
            r["ray"]["startup_seconds"] for r in row["runs"]
        )
        row["ray_pss_mb"] = max(r["ray"]["pss_mb"]["total"] for r in row["runs"])
        row["ray_pss_mb_min"] = min(r["ray"]["pss_mb"]["total"] for r in row["runs"])
        row["society_agent_pss_mb"] = max(r["society"]["pss_mb"]["max"] for r in row["runs"])
    return list(rows.values())


def table_markdown(result: dict[str, Any]) -> str:
    lines = [
        *measured_on(result, versions=f", Ray {result['ray_version']}"),
        "",
        "| policies (agents) | steps each | society (agent steps/s) | Ray RLlib | bare SB3 "
        "| society / Ray | society / bare | Ray / bare | Ray start-up (s) | Ray PSS, all its "
        "processes (MB) | society agent PSS max (MB) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {row['policies']} | {row['steps_each']:,} | {row['society']:,.0f} | "
        f"{row['ray']:,.0f} | {row['bare']:,.0f} | **{row['society_over_ray']:.2f}** | "
        f"{row['society_over_bare']:.2f} | {row['ray_over_bare']:.2f} | "
        f"{row['ray_startup_seconds']:.1f} | {row['ray_pss_mb_min']:,.0f} to "
        f"{row['ray_pss_mb']:,.0f} | {row['society_agent_pss_mb']:,.0f} |"
        for row in result["rows"]
    ]
    lines += ["", "Each run (agent steps/s, in the order run):", ""]
    for row in result["rows"]:
        for r in row["runs"]:
            shown = ", ".join(f"{k} {r[k]['steps_per_second']:,.0f}" for k in r["order"])
            lines.append(f"- {row['policies']} policies, repeat {r['repeat'] + 1}: {shown}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[1, 4], metavar="N",
        help="numbers of policies (Ray) and agents (society, bare processes)",
    )  # fmt: skip
    parser.add_argument("--steps", type=int, default=8000, help="steps per agent and policy")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each kind per size")
    parser.add_argument(
        "--env-runners", type=int, default=0,
        help="RLlib's remote EnvRunners (0: sampling in the driver, the fastest on 2 cores)",
    )  # fmt: skip
    parser.add_argument(
        "--eval-wait", type=float, default=30.0,
        help="seconds the society waits for its last evaluations (not counted in its rate)",
    )  # fmt: skip
    parser.add_argument(
        "--venv", type=Path, default=default_venv(),
        help=f"the virtualenv for Ray {RAY_VERSION} (created when missing)",
    )  # fmt: skip
    parser.add_argument("--ray-child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ray_child:
        n, steps, seed, env_runners, out = args.ray_child
        rllib_child(int(n), int(steps), int(seed), int(env_runners), Path(out))
        return 0

    from bench.common import machine, replace_section, write_result

    started = time.time()
    try:
        python = ensure_ray(args.venv)
        rows = run(python, args)
    except RayUnavailableError as error:
        print(f"ray_peer: {error}", file=sys.stderr)
        return 1
    result = {
        "command": "python bench/ray_peer.py " + " ".join(sys.argv[1:]),
        "machine": machine(),
        "ray_version": RAY_VERSION,
        "seconds": round(time.time() - started),
        "env_runners": args.env_runners,
        "ppo": {**PPO, "vf_clip_param": "inf", "train_batch_size_per_learner": "512 x N"},
        "rows": rows,
    }
    write_result("ray_peer", result)
    replace_section("ray-peer", table_markdown(result))
    print(table_markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
