"""Soak run: a society of agents for a long time, with the broker restarted and agents killed.

Every process is a real one, as users run them: a Mosquitto owned by this script, a coordinator
(``society coordinator``) and N agents (``society agent``, PPO on CartPole, learning forever).
On a fixed schedule the broker is stopped and started again (graceful: Mosquitto writes its
persistence file) and one agent is killed with SIGKILL and started again with the same id and
data folder. Optionally (issue 17): the broker is also killed with SIGKILL and started on an
empty disk (``--broker-kill-every``: no memory at all, so what it had acknowledged and queued
is gone and only the agents' receipts bring it back), the coordinator is killed with SIGKILL
and started again (``--coordinator-kill-every``; its evaluation workers must die with it), and
one agent's data folder, a tmpfs of its own (root only), is filled up (``--disk-full-at``): the
agent must stop with one clear error, and is started again once the disk has room. At the end
every agent gets SIGTERM, the coordinator is given time to drain what the broker queued for
it, and the figures are counted:

* sent: per agent, the last experience ``seq`` it published (``final.json``; seqs are 1..last);
* received: distinct ``(agent, seq)`` in the coordinator's ``history.sqlite``;
* duplicates removed: the coordinator's ``society_messages_duplicate_total{kind="experience"}``;
* lost: sent minus received (target 0);
* repaired: numbers the coordinator recorded after a later one (gaps the receipts filled),
  summed over the coordinator's lives;
* leaked processes: any process of the run (an agent, the coordinator, an evaluation worker)
  still alive after it was killed or the run was closed (target 0);
* restart time: from spawning a killed agent again to its ``online`` status with the new pid;
* peak memory: the high-water resident set (``VmHWM``) of each process, polled.

    python bench/soak.py                       # 8 agents, 30 min, broker every 5 min, kill every 10
    python bench/soak.py --agents 3 --minutes 3 --broker-every 60 --kill-every 90   # a smoke run
    python bench/soak.py --agents 4 --minutes 12 --broker-every 240 --kill-every 300 \
        --broker-kill-every 180 --coordinator-kill-every 200 --disk-full-at 330
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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


def children(pid: int) -> set[int]:
    """Every live descendant of ``pid`` (from /proc)."""
    parents: dict[int, int] = {}
    for status in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = status.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(status.parent.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its parent does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def still_alive_after(pids: set[int], timeout: float) -> list[int]:
    """Those of ``pids`` still alive after up to ``timeout`` seconds of waiting for them to go."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(pid) for pid in pids):
        time.sleep(0.5)
    return sorted(pid for pid in pids if alive(pid))


def scrape_sum(port: int, name: str, kind: str) -> float:
    """The sum of ``name`` over every agent for ``kind``."""
    url = f"http://127.0.0.1:{port}/metrics"
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    return sum(
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith(f"{name}{{") and f'kind="{kind}"' in line
    )


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
        self.broker_kills: list[float] = []
        self.coordinator_kills: list[dict[str, Any]] = []
        self.disk_full: dict[str, Any] | None = None
        self.kills: list[dict[str, Any]] = []
        #: Every process the run started or saw started (agents, coordinators, their workers).
        self.pids: set[int] = set()
        #: Gaps repaired, summed over the coordinator's earlier lives (its counter restarts).
        self.repaired_before = 0.0
        self.started = time.monotonic()

    def start(self) -> None:
        self.broker.start()
        self.spawn_coordinator()
        for index, member in enumerate(self.members):
            member.data_dir.mkdir(parents=True)
            if index == 0 and self.args.disk_full_at:
                # A disk of its own (root only): 64 MiB of tmpfs that can be filled up.
                subprocess.run(
                    ["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(member.data_dir)],
                    check=True,
                )
            spawn_agent(member, self.url, seed=index)
        self.started = time.monotonic()

    def spawn_coordinator(self) -> None:
        log = (self.folder / "coordinator.log").open("ab")
        self.coordinator = subprocess.Popen(
            [sys.executable, "-m", "agents", "coordinator", "--society", SOCIETY,
             "--broker", self.url, "--metrics-port", str(self.metrics_port),
             "--metrics-host", "127.0.0.1", "--eval-episodes", "1",
             "--data-dir", str(self.folder / "coordinator"), "--json-logs",
             "--log-level", "warning"],
            stdout=subprocess.DEVNULL, stderr=log,
        )  # fmt: skip

    def elapsed(self) -> float:
        return round(time.monotonic() - self.started, 1)

    def poll_memory(self) -> None:
        for member in self.members:
            if member.process is not None:
                member.peak_rss_kib = max(member.peak_rss_kib, peak_rss_kib(member.process.pid))
                self.pids.add(member.process.pid)
        if self.coordinator is not None:
            self.pids |= {self.coordinator.pid, *children(self.coordinator.pid)}
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

    async def kill_broker(self) -> None:
        """SIGKILL before its autosave, and start it on an empty disk: it remembers nothing."""
        at = self.elapsed()
        await asyncio.to_thread(self.broker.kill)
        for saved in self.broker.data_dir.glob("*.db"):
            saved.unlink()
        await asyncio.sleep(self.args.broker_down)
        await asyncio.to_thread(self.broker.start)
        self.broker_kills.append(at)
        print(f"[{at:7.0f}s] broker killed and started with no memory", flush=True)

    async def kill_coordinator(self) -> None:
        """SIGKILL, check its evaluation workers die with it, start it again on its history."""
        at = self.elapsed()
        assert self.coordinator is not None
        with contextlib.suppress(OSError):
            self.repaired_before += scrape_sum(
                self.metrics_port, "society_messages_repaired_total", "experience"
            )
        workers = children(self.coordinator.pid)
        self.pids |= workers
        self.coordinator.send_signal(signal.SIGKILL)
        await asyncio.to_thread(self.coordinator.wait)
        left = await asyncio.to_thread(still_alive_after, workers, 15.0)
        self.spawn_coordinator()
        self.coordinator_kills.append({"at_s": at, "workers": len(workers), "left": left})
        print(f"[{at:7.0f}s] coordinator killed ({len(workers)} workers, {len(left)} left)")

    async def fill_disk(self, member: Member) -> None:
        """Fill the agent's disk; it must stop with one clear error. Then make room, restart."""
        at = self.elapsed()
        filler = member.data_dir / "filler"
        with contextlib.suppress(OSError), filler.open("wb") as out:
            while True:
                out.write(b"\0" * (1 << 20))
        assert member.process is not None
        code = await asyncio.to_thread(member.process.wait, 300)
        log_lines = (member.data_dir.parent / f"{member.agent_id}.log").read_text().splitlines()
        said = next((line for line in reversed(log_lines) if "failed" in line), "")
        filler.unlink()
        spawn_agent(member, self.url, seed=self.members.index(member))
        assert member.process is not None
        online_at = await self.watch.online(member.agent_id, member.process.pid, timeout=300)
        self.disk_full = {
            "at_s": at, "agent": member.agent_id, "exit_code": code, "said": said,
            "online_again_s": round(online_at - member.spawned_at, 2),
        }  # fmt: skip
        print(f"[{at:7.0f}s] {member.agent_id}'s disk filled: exit {code}: {said}", flush=True)

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
        never = float("inf")
        next_broker_kill = self.started + (args.broker_kill_every or never)
        next_coordinator_kill = self.started + (args.coordinator_kill_every or never)
        disk_full_at = self.started + (args.disk_full_at or never)
        # The disk-full agent is a0; the others are killed in turn.
        victims = itertools.cycle(self.members[1:] if args.disk_full_at else self.members)
        background: set[asyncio.Task[None]] = set()

        def in_background(work: Any) -> None:
            task = asyncio.create_task(work)
            background.add(task)
            task.add_done_callback(background.discard)

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
            if now >= next_broker_kill:
                next_broker_kill += args.broker_kill_every
                await self.kill_broker()
            if now >= next_coordinator_kill:
                next_coordinator_kill += args.coordinator_kill_every
                await self.kill_coordinator()
            if now >= next_kill:
                next_kill += args.kill_every
                in_background(self.kill_one(next(victims)))
            if now >= disk_full_at:
                disk_full_at = never
                in_background(self.fill_disk(self.members[0]))
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
        repaired = self.repaired_before + scrape_sum(
            self.metrics_port, "society_messages_repaired_total", "experience"
        )
        missing = scrape_sum(self.metrics_port, "society_messages_missing", "experience")
        return {
            "repaired": int(repaired),
            "missing_at_end": int(missing),
            "resent_by_agents": sum(int(f.get("resent", 0)) for f in finals.values()),
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

    def close(self) -> list[int]:
        """Stop everything; returns the run's processes still alive after it (leaked)."""
        self.poll_memory()
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
        for member in self.members:
            if member.process is not None:
                member.process.wait()
        if self.args.disk_full_at:
            subprocess.run(["umount", str(self.members[0].data_dir)], check=False)
        return still_alive_after(self.pids, 15.0)


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
        leaked = run.close()
    left_by_kills = sorted({pid for kill in run.coordinator_kills for pid in kill["left"]})
    return {
        "broker_kills_at_s": run.broker_kills,
        "coordinator_kills": run.coordinator_kills,
        "disk_full": run.disk_full,
        "leaked_processes": len(set(leaked) | set(left_by_kills)),
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
        *_more_faults(result),
        "",
        "| Figure | Value |",
        "|---|---|",
        f"| experience batches sent (sum of last `seq`) | {result['batches_sent']} |",
        f"| batches received, distinct `(agent, seq)` | {result['batches_received']} |",
        f"| deliveries (before de-duplication; the coordinator's last life) | "
        f"{result['messages_delivered']} |",
        f"| duplicates removed (the coordinator's last life) | {result['duplicates_removed']} |",
        f"| **lost** | **{result['lost']}** |",
        f"| repaired (recorded after a later one: gaps the receipts filled) | "
        f"{result.get('repaired', 'n/a')} |",
        f"| sent again by the agents (receipts) | {result.get('resent_by_agents', 'n/a')} |",
        f"| missing at the end | {result.get('missing_at_end', 'n/a')} |",
        f"| **leaked processes** | **{result.get('leaked_processes', 'n/a')}** |",
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


def _more_faults(result: dict[str, Any]) -> list[str]:
    """The sentences for the optional faults that happened."""
    said = []
    if result.get("broker_kills_at_s"):
        said.append(
            f"The broker also killed with SIGKILL and started on an empty disk (no memory) "
            f"{len(result['broker_kills_at_s'])} times, at {result['broker_kills_at_s']} s."
        )
    if result.get("coordinator_kills"):
        kills = result["coordinator_kills"]
        said.append(
            f"The coordinator killed with SIGKILL and started again {len(kills)} times "
            f"(evaluation workers left alive 15 s after a kill: "
            f"{sum(len(k['left']) for k in kills)})."
        )
    full = result.get("disk_full")
    if full:
        said.append(
            f"At {full['at_s']} s agent {full['agent']}'s disk filled up: it exited with "
            f"{full['exit_code']} saying `{full['said']}`; with room again it was back "
            f"online in {full['online_again_s']} s."
        )
    return [" ".join(said)] if said else []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=8)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--broker-every", type=float, default=300.0, help="seconds")
    parser.add_argument("--broker-down", type=float, default=10.0, help="seconds")
    parser.add_argument("--kill-every", type=float, default=600.0, help="seconds")
    parser.add_argument(
        "--broker-kill-every", type=float, default=0.0,
        help="seconds between SIGKILLs of the broker, started again with no memory (0: never)",
    )  # fmt: skip
    parser.add_argument(
        "--coordinator-kill-every", type=float, default=0.0,
        help="seconds between SIGKILLs of the coordinator (0: never)",
    )  # fmt: skip
    parser.add_argument(
        "--disk-full-at", type=float, default=0.0,
        help="second at which agent a0's disk (a tmpfs; root only) fills up (0: never)",
    )  # fmt: skip
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
