"""Soak run: a society of agents for a long time, with the broker restarted and agents killed.

Every process is a real one, as users run them: a Mosquitto owned by this script, a coordinator
(``society coordinator``) and N agents (``society agent``, PPO on CartPole, learning forever).
On a fixed schedule the broker is stopped and started again (graceful: Mosquitto writes its
persistence file) and one agent is killed with SIGKILL and started again with the same id and
data folder. At the end every agent gets SIGTERM, the coordinator is given time to drain what
the broker queued for it, and the figures are counted:

* sent: per agent, the last experience ``seq`` it published (``final.json``; seqs are 1..last);
* received: distinct ``(agent, seq)`` in the coordinator's ``history.sqlite``;
* duplicates removed: the coordinator's ``society_messages_duplicate_total{kind="experience"}``;
* lost: sent minus received (target 0);
* restart time: from spawning a killed agent again to its ``online`` status with the new pid;
* peak memory: the high-water resident set (``VmHWM``) of each process, polled.

    python bench/soak.py                       # 8 agents, 30 min, broker every 5 min, kill every 10
    python bench/soak.py --agents 3 --minutes 3 --broker-every 60 --kill-every 90   # a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents._process import free_port
from agents.broker.managed import ManagedBroker
from agents.bus.client import Backoff, BusClient
from agents.bus.codec import decode_as
from agents.bus.mqtt import MqttTransport
from agents.bus.schemas import Status
from agents.bus.transport import ConnectOptions, RawMessage
from agents.bus.url import BrokerUrl
from bench.common import machine, replace_section, write_result

SOCIETY = "soak"


@dataclass
class Member:
    """One agent process of the soak, and what was measured about it."""

    agent_id: str
    data_dir: Path
    process: subprocess.Popen[bytes] | None = None
    spawned_at: float = 0.0
    peak_rss_kib: int = 0
    restarts: list[float] = field(default_factory=list)


def peak_rss_kib(pid: int) -> int:
    """The process's resident-set high-water mark, 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def spawn_agent(member: Member, broker: str, seed: int) -> None:
    log = (member.data_dir.parent / f"{member.agent_id}.log").open("ab")
    member.process = subprocess.Popen(
        [sys.executable, "-m", "agents", "agent", "--id", member.agent_id, "--society", SOCIETY,
         "--broker", broker, "--env", "CartPole-v1", "--algo", "ppo", "--steps", "0",
         "--seed", str(seed), "--data-dir", str(member.data_dir), "--json-logs",
         "--log-level", "warning"],
        stdout=subprocess.DEVNULL, stderr=log,
    )  # fmt: skip
    member.spawned_at = time.monotonic()


class StatusWatch:
    """Follows every agent's status through the project's own bus client (which reconnects)."""

    def __init__(self, url: BrokerUrl) -> None:
        self.url = url
        self.online_pid: dict[str, tuple[int, float]] = {}
        self.waiters: dict[tuple[str, int], asyncio.Future[float]] = {}

    async def run(self) -> None:
        async def handle(raw: RawMessage) -> None:
            self.seen(raw.payload)

        client = BusClient(
            MqttTransport(self.url),
            ConnectOptions(client_id="soak-watch", clean_session=True),
            subscriptions=[(f"society/{SOCIETY}/agents/+/status", 1)],
            handler=handle,
        )
        client.backoff = Backoff(base=0.2, cap=1.0)
        async with client:
            await asyncio.Event().wait()  # until cancelled

    def seen(self, payload: bytes) -> None:
        status = decode_as(Status, payload)
        if status.state != "online":
            return
        now = time.monotonic()
        self.online_pid[status.agent] = (status.pid, now)
        waiter = self.waiters.pop((status.agent, status.pid), None)
        if waiter is not None and not waiter.done():
            waiter.set_result(now)

    async def online(self, agent_id: str, pid: int, timeout: float) -> float:
        known = self.online_pid.get(agent_id)
        if known is not None and known[0] == pid:
            return known[1]
        waiter: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.waiters[(agent_id, pid)] = waiter
        return await asyncio.wait_for(waiter, timeout)


def scrape(port: int, name: str, labels: str) -> float:
    url = f"http://127.0.0.1:{port}/metrics"
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    for line in text.splitlines():
        if line.startswith(f"{name}{{{labels}}} "):
            return float(line.split()[-1])
    return 0.0


def received(history: Path) -> dict[str, int]:
    with sqlite3.connect(history) as db:
        rows = db.execute("SELECT agent, count(*) FROM experience_seen GROUP BY agent").fetchall()
    return {agent: int(count) for agent, count in rows}


class Soak:
    """The processes of one soak run, the fault schedule, and the counting at the end."""

    def __init__(self, args: argparse.Namespace, folder: Path) -> None:
        self.args = args
        self.folder = folder
        self.broker = ManagedBroker(folder / "broker", kind="mosquitto")
        self.url = f"mqtt://{self.broker.host}:{self.broker.port}"
        self.metrics_port = free_port()
        self.members = [Member(f"a{i}", folder / f"a{i}") for i in range(args.agents)]
        self.coordinator: subprocess.Popen[bytes] | None = None
        self.watch = StatusWatch(self.broker.url)
        self.peaks = {"coordinator": 0, "broker": 0}
        self.broker_restarts: list[float] = []
        self.kills: list[dict[str, Any]] = []
        self.started = time.monotonic()

    def start(self) -> None:
        self.broker.start()
        log = (self.folder / "coordinator.log").open("ab")
        self.coordinator = subprocess.Popen(
            [sys.executable, "-m", "agents", "coordinator", "--society", SOCIETY,
             "--broker", self.url, "--metrics-port", str(self.metrics_port),
             "--metrics-host", "127.0.0.1", "--eval-episodes", "1",
             "--data-dir", str(self.folder / "coordinator"), "--json-logs",
             "--log-level", "warning"],
            stdout=subprocess.DEVNULL, stderr=log,
        )  # fmt: skip
        for index, member in enumerate(self.members):
            member.data_dir.mkdir(parents=True)
            spawn_agent(member, self.url, seed=index)
        self.started = time.monotonic()

    def elapsed(self) -> float:
        return round(time.monotonic() - self.started, 1)

    def poll_memory(self) -> None:
        for member in self.members:
            if member.process is not None:
                member.peak_rss_kib = max(member.peak_rss_kib, peak_rss_kib(member.process.pid))
        if self.coordinator is not None:
            peak = peak_rss_kib(self.coordinator.pid)
            self.peaks["coordinator"] = max(self.peaks["coordinator"], peak)
        if self.broker.process is not None:
            self.peaks["broker"] = max(self.peaks["broker"], peak_rss_kib(self.broker.process.pid))

    async def restart_broker(self) -> None:
        at = self.elapsed()
        await asyncio.to_thread(self.broker.stop)
        await asyncio.sleep(self.args.broker_down)
        await asyncio.to_thread(self.broker.start)
        self.broker_restarts.append(at)
        print(f"[{at:7.0f}s] broker restarted", flush=True)

    async def kill_one(self, member: Member) -> None:
        """SIGKILL, start again with the same id and folder, and time its way back online."""
        at = self.elapsed()
        assert member.process is not None
        member.process.send_signal(signal.SIGKILL)
        await asyncio.to_thread(member.process.wait)
        spawn_agent(member, self.url, seed=self.members.index(member))
        assert member.process is not None
        online_at = await self.watch.online(member.agent_id, member.process.pid, timeout=300)
        restart = round(online_at - member.spawned_at, 2)
        member.restarts.append(restart)
        self.kills.append({"at_s": at, "agent": member.agent_id, "restart_s": restart})
        print(f"[{at:7.0f}s] killed {member.agent_id}, online again in {restart} s", flush=True)

    async def run_faults(self) -> None:
        """The schedule; kills are offset by half a broker period so the two never coincide."""
        args = self.args
        end = self.started + args.minutes * 60
        next_broker = self.started + args.broker_every
        next_kill = self.started + args.kill_every - args.broker_every / 2
        victims = itertools.cycle(self.members)
        background: set[asyncio.Task[None]] = set()
        while time.monotonic() < end:
            await asyncio.sleep(1.0)
            self.poll_memory()
            assert self.coordinator is not None
            if self.coordinator.poll() is not None:
                msg = f"the coordinator exited with {self.coordinator.returncode}"
                raise RuntimeError(msg)
            now = time.monotonic()
            if now >= next_broker:
                next_broker += args.broker_every
                await self.restart_broker()
            if now >= next_kill:
                next_kill += args.kill_every
                task = asyncio.create_task(self.kill_one(next(victims)))
                background.add(task)
                task.add_done_callback(background.discard)
        await asyncio.gather(*background)

    async def stop_agents(self) -> dict[str, dict[str, Any]]:
        for member in self.members:
            assert member.process is not None
            member.process.send_signal(signal.SIGTERM)
        for member in self.members:
            assert member.process is not None
            code = await asyncio.to_thread(member.process.wait, 120)
            if code != 0:
                msg = f"{member.agent_id} exited with {code} on SIGTERM"
                raise RuntimeError(msg)
        return {
            m.agent_id: json.loads((m.data_dir / "final.json").read_text()) for m in self.members
        }

    async def count(self, finals: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """Wait for the coordinator to drain its queue, then count."""
        sent = {a: int(f["experience_batches_published"]) for a, f in finals.items()}
        history = self.folder / "coordinator" / "history.sqlite"
        began = time.monotonic()
        got = received(history)
        while time.monotonic() - began < self.args.drain and any(
            got.get(a, 0) < n for a, n in sent.items()
        ):
            await asyncio.sleep(2.0)
            got = received(history)
        experience = 'kind="experience"'
        restarts = [r for m in self.members for r in m.restarts]
        self.poll_memory()
        return {
            "batches_sent": sum(sent.values()),
            "batches_received": sum(got.values()),
            "messages_delivered": int(
                scrape(self.metrics_port, "society_messages_received_total", experience)
            ),
            "duplicates_removed": int(
                scrape(self.metrics_port, "society_messages_duplicate_total", experience)
            ),
            "lost": sum(max(0, n - got.get(a, 0)) for a, n in sent.items()),
            "outbox_pending_at_exit": sum(int(f["outbox_pending"]) for f in finals.values()),
            "drained_in_s": round(time.monotonic() - began, 1),
            "restart_s_median": statistics.median(restarts) if restarts else None,
            "restart_s_max": max(restarts) if restarts else None,
            "env_steps": {a: int(f["env_steps"]) for a, f in finals.items()},
        }

    def close(self) -> None:
        for member in self.members:
            if member.process is not None and member.process.poll() is None:
                member.process.kill()
        if self.coordinator is not None:
            self.coordinator.send_signal(signal.SIGTERM)
            try:
                self.coordinator.wait(60)
            except subprocess.TimeoutExpired:
                self.coordinator.kill()
        self.broker.stop()


async def soak(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    run = Soak(args, folder)
    watching: asyncio.Task[None] | None = None
    try:
        run.start()
        watching = asyncio.create_task(run.watch.run())
        await run.run_faults()
        counted = await run.count(await run.stop_agents())
    finally:
        if watching is not None:
            watching.cancel()
        run.close()
    return {
        "agents": args.agents,
        "minutes": args.minutes,
        "broker_every_s": args.broker_every,
        "broker_down_s": args.broker_down,
        "kill_every_s": args.kill_every,
        "broker_restarts_at_s": run.broker_restarts,
        "kills": run.kills,
        **counted,
        "peak_rss_mib": {
            **{m.agent_id: round(m.peak_rss_kib / 1024, 1) for m in run.members},
            "coordinator": round(run.peaks["coordinator"] / 1024, 1),
            "broker": round(run.peaks["broker"] / 1024, 1),
        },
    }


def markdown(result: dict[str, Any], command: str) -> str:
    rss = result["peak_rss_mib"]
    agents_rss = [v for k, v in rss.items() if k not in {"coordinator", "broker"}]
    steps = result["env_steps"].values()
    lines = [
        f"Measured {result['machine']['date']} on {result['machine']['cpu']} "
        f"({result['machine']['cores']} cores), commit {result['machine']['commit']}:",
        "",
        "```",
        command,
        "```",
        "",
        f"{result['agents']} agents (PPO, CartPole-v1, learning forever) and a coordinator for "
        f"{result['minutes']} minutes; the broker stopped and started every "
        f"{result['broker_every_s']:.0f} s (down {result['broker_down_s']:.0f} s each time, "
        f"{len(result['broker_restarts_at_s'])} restarts), one agent killed with SIGKILL every "
        f"{result['kill_every_s']:.0f} s ({len(result['kills'])} kills).",
        "",
        "| Figure | Value |",
        "|---|---|",
        f"| experience batches sent (sum of last `seq`) | {result['batches_sent']} |",
        f"| batches received, distinct `(agent, seq)` | {result['batches_received']} |",
        f"| deliveries (before de-duplication) | {result['messages_delivered']} |",
        f"| duplicates removed | {result['duplicates_removed']} |",
        f"| **lost** | **{result['lost']}** |",
        f"| left in outboxes at exit | {result['outbox_pending_at_exit']} |",
        f"| coordinator caught up after the agents stopped in | {result['drained_in_s']} s |",
        f"| restart of a killed agent to `online` (median / max) | "
        f"{result['restart_s_median']} s / {result['restart_s_max']} s |",
        f"| environment steps per agent (min / max) | {min(steps)} / {max(steps)} |",
        f"| peak RSS per agent process (max) | {max(agents_rss)} MiB |",
        f"| peak RSS coordinator | {result['peak_rss_mib']['coordinator']} MiB |",
        f"| peak RSS Mosquitto | {result['peak_rss_mib']['broker']} MiB |",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=8)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--broker-every", type=float, default=300.0, help="seconds")
    parser.add_argument("--broker-down", type=float, default=10.0, help="seconds")
    parser.add_argument("--kill-every", type=float, default=600.0, help="seconds")
    parser.add_argument("--drain", type=float, default=600.0, help="seconds to wait at the end")
    parser.add_argument("--keep", type=Path, help="run in this new folder and keep it (logs)")
    parser.add_argument("--no-docs", action="store_true", help="do not update docs/reliability.md")
    args = parser.parse_args()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=False)
        result = asyncio.run(soak(args, args.keep))
    else:
        with tempfile.TemporaryDirectory() as folder:
            result = asyncio.run(soak(args, Path(folder)))
    result["machine"] = machine()
    write_result("soak", result)
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=2))
    if not args.no_docs:
        command = "python bench/soak.py " + " ".join(sys.argv[1:])
        replace_section("soak", markdown(result, command.strip()), doc="reliability.md")


if __name__ == "__main__":
    main()
