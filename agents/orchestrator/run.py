"""``society run``: start a broker, a coordinator and the agents; watch; stop; summarise.

The order of events::

    broker        managed Mosquitto (or the fallback broker), unless --broker is given
    observer      our own bus client, feeding the live table
    coordinator   `society coordinator` as a child process
    agents        `society agent` per member, each a child process
    wait          until every agent has trained its steps (or --duration, or Ctrl-C)
    drain         until the coordinator has evaluated every agent's last snapshot
    stop          coordinator, observer, broker - in that order
    summary       DIR/summary.json from the agents' own reports and the coordinator's

Exit status 0 on success; otherwise non-zero with a one-line reason on stderr.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import time

from agents._atomic import write_text_atomically
from agents._process import free_port
from agents.broker.managed import ManagedBroker
from agents.bus.client import BusClient
from agents.bus.inbox import Inbox
from agents.bus.mqtt import MqttTransport
from agents.bus.security import KEY_ENV
from agents.bus.topics import Kind, Topics
from agents.bus.transport import ConnectOptions
from agents.bus.url import BrokerUrl
from agents.coordinator.sharing import ThresholdScale
from agents.exceptions import SocietyError
from agents.flags import AgentFlags, CoordinatorFlags, to_argv
from agents.orchestrator.live import LiveDisplay, LiveState, Threshold
from agents.orchestrator.plan import AgentPlan, RunPlan
from agents.orchestrator.processes import Child, spawn
from agents.orchestrator.summary import build_summary, read_json, result_line
from agents.report import render_after_run

__all__ = ["Orchestrator"]

log = logging.getLogger(__name__)

_AGENT_STOP_TIMEOUT = 60.0
_COORDINATOR_STOP_TIMEOUT = 30.0


class Orchestrator:
    def __init__(self, plan: RunPlan) -> None:
        self.plan = plan
        self.topics = Topics(plan.society)
        evaluation = plan.scenario.evaluation
        threshold = (
            Threshold(
                evaluation.threshold,
                ThresholdScale.parse(evaluation.scale),
                evaluation.threshold_window,
            )
            if evaluation.threshold is not None
            else None
        )
        self.state = LiveState([agent.id for agent in plan.agents], threshold)
        self.interrupted = asyncio.Event()
        self.broker: ManagedBroker | None = None
        self.broker_url: BrokerUrl | None = plan.broker
        self.metrics_port = plan.metrics_port or free_port()
        self.agents: dict[str, Child] = {}
        self.coordinator: Child | None = None
        #: Agents' last snapshots the coordinator had not evaluated when the wait ended.
        self.pending_evaluations: list[tuple[str, int]] = []
        self.started_at = time.time()

    def interrupt(self) -> None:
        """Ctrl-C (or SIGTERM): stop in order; a second one stops every child at once.

        The first lets the agents checkpoint and flush their outboxes to the broker, then the
        coordinator, then the broker, and says what it waits for. The second kills the agents
        and the coordinator: what their outboxes hold is on disk and goes out at their next
        start, so nothing is lost but the steps since their last checkpoint.
        """
        if not self.interrupted.is_set():
            self.interrupted.set()
            waiting = [name for name, child in self.agents.items() if child.running()]
            what = f"{len(waiting)} agent{'s' if len(waiting) != 1 else ''} and the coordinator"
            sys.stderr.write(
                f"society: stopping: waiting for {what} to checkpoint and flush "
                "(Ctrl-C again to stop at once)\n"
            )
            return
        sys.stderr.write("society: stopping at once\n")
        for child in [*self.agents.values(), *([self.coordinator] if self.coordinator else [])]:
            child.signal(signal.SIGKILL)

    async def run(self) -> int:
        plan = self.plan
        plan.out_dir.mkdir(parents=True, exist_ok=True)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self.interrupt)
        reason: str | None = None
        try:
            reason = await self._run()
        except SocietyError as exc:
            reason = str(exc)
        finally:
            await self._stop_everything()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
        status = "interrupted" if self.interrupted.is_set() else "failed" if reason else "completed"
        summary = build_summary(self, status=status, reason=reason)
        path = plan.out_dir / "summary.json"
        write_text_atomically(path, json.dumps(summary, indent=2))
        render_after_run(plan.out_dir)  # report.html; a failure is logged, never raised
        if status == "completed":
            print(result_line(summary, path), flush=True)  # noqa: T201 - the run's one line
            return 0
        if status == "interrupted":
            sys.stderr.write(f"society: run interrupted; see {path}\n")
        else:
            sys.stderr.write(f"society: run failed: {reason}; see {path}\n")
        return 130 if status == "interrupted" else 1

    async def _run(self) -> str | None:
        plan = self.plan
        if self.broker_url is None:
            self.broker = ManagedBroker(plan.out_dir / "broker", kind=plan.broker_kind)  # type: ignore[arg-type]
            self.broker_url = await asyncio.to_thread(self.broker.start)
        url = self.broker_url
        observer_inbox = Inbox(
            self.topics,
            self.state.on_message,
            kinds={Kind.STATUS, Kind.TELEMETRY, Kind.EVALUATION},
            dedupe=False,
            key=plan.society_key,
        )
        observer = BusClient(
            MqttTransport(url, tls=plan.tls),
            ConnectOptions(client_id=f"{plan.society}-run-{os.getpid()}", clean_session=True),
            subscriptions=[
                (self.topics.agents_filter(Kind.STATUS), 1),
                (self.topics.agents_filter(Kind.TELEMETRY), 0),
                (self.topics.coordinator(Kind.EVALUATION), 1),
            ],
            handler=observer_inbox,
        )
        async with observer:
            await observer.wait_connected(timeout=30.0)
            secrets = {KEY_ENV: plan.society_key.decode()} if plan.society_key else {}
            self.coordinator = await spawn(
                "coordinator",
                self._coordinator_args(url),
                plan.out_dir / "logs/coordinator.log",
                env=secrets,
            )
            for agent in plan.agents:
                self.agents[agent.id] = await spawn(
                    agent.id,
                    self._agent_args(agent, url),
                    plan.out_dir / f"logs/{agent.id}.log",
                    env=secrets,
                )
            with LiveDisplay(self.state, title=f"society {plan.society}", quiet=plan.quiet) as show:
                reason = await self._wait_for_agents(show)
                for agent in plan.agents:
                    report = read_json(plan.out_dir / "agents" / agent.id / "final.json")
                    if report is not None:
                        self.state.take_final_report(agent.id, report)
                if reason is None and not self.interrupted.is_set():
                    reason = await self._wait_for_evaluations(show)
                show.refresh()
            return reason

    async def _wait_for_agents(self, show: LiveDisplay) -> str | None:
        deadline = (time.monotonic() + self.plan.duration) if self.plan.duration else None
        coordinator = self.coordinator
        assert coordinator is not None
        while any(child.running() for child in self.agents.values()):
            show.refresh()
            if self.interrupted.is_set():
                return "interrupted"
            if not coordinator.running():
                code, path = coordinator.returncode, coordinator.log_path
                return f"the coordinator exited with code {code}; see {path}"
            if deadline is not None and time.monotonic() >= deadline:
                log.info("duration reached: stopping the agents")
                await self._stop_agents()
                break
            await asyncio.sleep(0.5)
        for child in self.agents.values():
            code = await child.waiter
            if code != 0 and not self.interrupted.is_set():
                return f"agent {child.name} exited with code {code}; see {child.log_path}"
        return None

    async def _wait_for_evaluations(self, show: LiveDisplay) -> str | None:
        """Until the coordinator evaluated every agent's last snapshot, or the timeout."""
        wanted = {
            (agent_id, version)
            for agent_id, version in self._final_versions().items()
            if version > 0
        }
        deadline = time.monotonic() + self.plan.eval_timeout
        while not wanted <= self.state.evaluated:
            left = deadline - time.monotonic()
            missing = len(wanted - self.state.evaluated)
            show.waiting = f"waiting for {missing} evaluations, {max(0.0, left):.0f} s left"
            show.refresh()
            if self.interrupted.is_set():
                return "interrupted"
            if left <= 0:
                # The agents did their work: evaluation being behind does not fail the run.
                # What was not evaluated in time is in the summary and the final line.
                self.pending_evaluations = sorted(wanted - self.state.evaluated)
                log.warning(
                    "%d last snapshots not evaluated within %.0f s (--eval-timeout): %s",
                    len(self.pending_evaluations), self.plan.eval_timeout,
                    self.pending_evaluations,
                )  # fmt: skip
                break
            await asyncio.sleep(0.25)
        show.waiting = ""
        return None

    def _final_versions(self) -> dict[str, int]:
        versions = {}
        for agent in self.plan.agents:
            report = read_json(self.plan.out_dir / "agents" / agent.id / "final.json")
            versions[agent.id] = int(report.get("last_snapshot_version", 0)) if report else 0
        return versions

    async def _stop_agents(self) -> None:
        await asyncio.gather(
            *(child.stop(_AGENT_STOP_TIMEOUT) for child in self.agents.values()),
            return_exceptions=True,
        )

    async def _stop_everything(self) -> None:
        await self._stop_agents()
        if self.coordinator is not None:
            await self.coordinator.stop(_COORDINATOR_STOP_TIMEOUT)
        if self.broker is not None:
            await asyncio.to_thread(self.broker.stop)

    def _coordinator_args(self, url: BrokerUrl) -> list[str]:
        return ["coordinator", *to_argv(self.coordinator_flags(url))]

    def coordinator_flags(self, url: BrokerUrl) -> CoordinatorFlags:
        plan = self.plan
        evaluation, evolution = plan.scenario.evaluation, plan.scenario.evolution
        threshold = evaluation.threshold
        return CoordinatorFlags(
            society=plan.society,
            broker=url,
            metrics_port=self.metrics_port,
            metrics_host="127.0.0.1",
            eval_episodes=evaluation.episodes,
            eval_seed=evaluation.seed,
            evolution_interval=float(evolution.interval),
            evolution_every_steps=evolution.every_steps,
            seed=plan.seed,
            evolution_quantile=evolution.quantile,
            threshold=threshold,
            threshold_scale=evaluation.scale,
            threshold_window=evaluation.threshold_window,
            data_dir=str(plan.out_dir / "coordinator"),
            log_level=plan.log_level,
            json_logs=plan.json_logs,
            tls_ca=plan.tls.ca_file,
            tls_cert=plan.tls.cert_file,
            tls_key=plan.tls.key_file,
        )

    def _agent_args(self, agent: AgentPlan, url: BrokerUrl) -> list[str]:
        return ["agent", *to_argv(self.agent_flags(agent, url))]

    def agent_flags(self, agent: AgentPlan, url: BrokerUrl) -> AgentFlags:
        plan = self.plan
        return AgentFlags(
            id=agent.id,
            society=plan.society,
            broker=url,
            scenario=plan.scenario_ref,
            seed=agent.seed,
            # A federation's members (and their twins) start from one network; otherwise each
            # agent draws its own.
            init_seed=agent.init_seed if plan.federates else None,
            steps=plan.steps,
            data_dir=str(plan.out_dir / "agents" / agent.id),
            device_index=agent.device_index,
            # The devices are the run's: --seed draws them, as it draws everything else.
            device_seed=plan.seed if agent.device_index is not None else None,
            strategy=plan.strategy,
            # A control twin shares nothing (--twin-of says so); the others as the plan says.
            twin_of=agent.twin_of or None,
            share=None if agent.twin_of else plan.shares,
            log_level=plan.log_level,
            json_logs=plan.json_logs,
            tls_ca=plan.tls.ca_file,
            tls_cert=plan.tls.cert_file,
            tls_key=plan.tls.key_file,
        )
