"""What each ``society`` subcommand does, once its arguments are parsed and checked.

Every command turns its parsed arguments into typed settings (:mod:`agents.flags`, or the
options of the package it drives) and hands those down: nothing below the command line sees
an ``argparse.Namespace``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from agents._process import lower_priority
from agents.bus.security import society_key, tls_files
from agents.cli.options import settings_of
from agents.exceptions import ConfigError
from agents.flags import AgentFlags, CoordinatorFlags, EvaluatorFlags, RunFlags

__all__ = [
    "cmd_agent",
    "cmd_broker",
    "cmd_coordinator",
    "cmd_evaluator",
    "cmd_inspect",
    "cmd_report",
    "cmd_run",
    "cmd_scenarios",
    "run_until_signal",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Seconds an agent or coordinator waits for its broker at start before it gives up (exit 2):
#: long enough for a broker started at the same moment (docker compose, systemd) to come up.
BROKER_WAIT = 10.0


async def run_until_signal(work: Coroutine[Any, Any, T], on_signal: Callable[[], None]) -> T:
    """Run ``work``; SIGINT and SIGTERM call ``on_signal`` (a graceful stop) instead of killing."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal)
    try:
        return await work
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def cmd_agent(args: argparse.Namespace) -> int:
    # torch must get its thread limits before anything runs a parallel op.
    from agents.learner.learner import limit_torch_threads  # noqa: PLC0415

    limit_torch_threads()
    from agents.agent.agent import Agent  # noqa: PLC0415
    from agents.bus.mqtt import MqttTransport  # noqa: PLC0415
    from agents.cli.agent_config import agent_config  # noqa: PLC0415
    from agents.cli.preflight import check_broker_reachable  # noqa: PLC0415

    flags = settings_of(AgentFlags, args)
    lower_priority(flags.nice)
    config = agent_config(flags)
    check_broker_reachable(flags.broker, timeout=BROKER_WAIT)
    tls = tls_files(flags.tls_ca, flags.tls_cert, flags.tls_key)
    agent = Agent(config, MqttTransport(flags.broker, tls=tls))
    report = asyncio.run(run_until_signal(agent.run(), agent.stop))
    log.info(
        "agent %s stopped at step %d (%s), %d snapshots",
        report.id,
        report.env_steps,
        report.stopped_by,
        report.snapshots_published,
    )
    return 0


def cmd_coordinator(args: argparse.Namespace) -> int:
    from agents.bus.mqtt import MqttTransport  # noqa: PLC0415
    from agents.cli.preflight import check_broker_reachable, check_port_free  # noqa: PLC0415
    from agents.coordinator.coordinator import Coordinator, CoordinatorConfig  # noqa: PLC0415
    from agents.coordinator.sharing import ThresholdScale  # noqa: PLC0415
    from agents.integrations import home_assistant as ha  # noqa: PLC0415

    flags = settings_of(CoordinatorFlags, args)
    if flags.eval_workers == 0 and not flags.remote_evaluators:
        msg = "--eval-workers 0 needs --remote-evaluators: someone must evaluate the snapshots"
        raise ConfigError(msg)
    check_port_free(flags.metrics_host, flags.metrics_port, flag="--metrics-port")
    check_broker_reachable(flags.broker, timeout=BROKER_WAIT)
    config = CoordinatorConfig(
        society=flags.society,
        data_dir=Path(flags.data_dir),
        metrics_port=flags.metrics_port,
        metrics_host=flags.metrics_host,
        eval_episodes=flags.eval_episodes,
        eval_seed=flags.eval_seed,
        eval_workers=flags.eval_workers,
        remote_evaluators=flags.remote_evaluators,
        remote_eval_timeout=flags.remote_eval_timeout,
        allowed_envs=frozenset(flags.allow_env or ()),
        threshold=flags.threshold,
        threshold_scale=ThresholdScale.parse(flags.threshold_scale),
        threshold_window=flags.threshold_window,
        society_key=society_key(flags.society_key_file),
        evolution_interval=flags.evolution_interval,
        evolution_every_steps=flags.evolution_every_steps,
        evolution_quantile=flags.evolution_quantile,
        seed=flags.seed or 0,
        hooks=(ha.HomeAssistantCoordinator(flags.society),) if flags.home_assistant else (),
    )
    tls = tls_files(flags.tls_ca, flags.tls_cert, flags.tls_key)
    coordinator = Coordinator(config, MqttTransport(flags.broker, tls=tls))
    log.info("coordinator of society %s, broker %s", flags.society, flags.broker)
    summary = asyncio.run(run_until_signal(coordinator.run(), coordinator.stop))
    log.info(
        "coordinator stopped: %d snapshots evaluated, %d messages, %d rejected",
        summary["snapshots_evaluated"],
        summary["messages_received"],
        summary["messages_rejected"],
    )
    return 0


def cmd_evaluator(args: argparse.Namespace) -> int:
    # torch must get its thread limits before anything runs a parallel op.
    from agents.learner.learner import limit_torch_threads  # noqa: PLC0415

    limit_torch_threads()
    from agents.bus.mqtt import MqttTransport  # noqa: PLC0415
    from agents.cli.preflight import check_broker_reachable  # noqa: PLC0415
    from agents.evaluator import Evaluator, EvaluatorConfig  # noqa: PLC0415

    flags = settings_of(EvaluatorFlags, args)
    config = EvaluatorConfig(
        society=flags.society,
        evaluator_id=flags.id,
        allowed_envs=frozenset(flags.allow_env or ()),
        society_key=society_key(flags.society_key_file),
    )
    check_broker_reachable(flags.broker, timeout=BROKER_WAIT)
    tls = tls_files(flags.tls_ca, flags.tls_cert, flags.tls_key)
    evaluator = Evaluator(config, MqttTransport(flags.broker, tls=tls))
    log.info("evaluator %s of society %s, broker %s", flags.id, flags.society, flags.broker)
    report = asyncio.run(run_until_signal(evaluator.run(), evaluator.stop))
    log.info(
        "evaluator %s stopped: %d evaluated, %d failed",
        report.evaluator, report.evaluated, report.failed,
    )  # fmt: skip
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from agents.cli.preflight import check_run  # noqa: PLC0415
    from agents.orchestrator.plan import RunPlan  # noqa: PLC0415
    from agents.orchestrator.run import Orchestrator  # noqa: PLC0415

    plan = RunPlan.from_flags(settings_of(RunFlags, args))
    orchestrator = Orchestrator(plan)
    check_run(orchestrator)
    return asyncio.run(orchestrator.run())


def cmd_report(args: argparse.Namespace) -> int:
    """``society report RUN_DIR``: exit 0 with the report's path, 2 if not a run folder."""
    from agents.report.render import render_report  # noqa: PLC0415 - matplotlib on demand

    path = render_report(Path(args.run_dir))
    print(f"report: {path}", flush=True)  # noqa: T201 - the command's one line of output
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from agents.inspect import InspectOptions, inspect_bus  # noqa: PLC0415

    options = InspectOptions(
        broker=args.broker,
        tls=tls_files(args.tls_ca, args.tls_cert, args.tls_key),
        society=args.society,
        json_lines=bool(args.json),
        kinds=args.kinds,
        count=args.count,
        duration=args.duration,
        connect_timeout=args.connect_timeout,
    )
    return asyncio.run(inspect_bus(options))


def cmd_broker(args: argparse.Namespace) -> int:
    from agents.broker.managed import ManagedBroker  # noqa: PLC0415

    broker = ManagedBroker(Path(args.data_dir), port=args.port, host=args.host, kind=args.kind)

    async def serve() -> None:
        stop = asyncio.Event()
        with broker:
            print(f"{broker.kind} broker listening on {broker.url}", flush=True)  # noqa: T201
            await run_until_signal(_wait_or_exit(broker, stop), stop.set)

    asyncio.run(serve())
    return 0


async def _wait_or_exit(broker: Any, stop: asyncio.Event) -> None:
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=1.0)
        process = broker.process
        if process is not None and process.poll() is not None:
            msg = f"the {broker.kind} broker exited with code {process.returncode}"
            raise ConfigError(msg)


def cmd_scenarios(args: argparse.Namespace) -> int:  # noqa: ARG001
    from agents.scenarios import builtin_scenarios, load_scenario  # noqa: PLC0415

    rows = []
    for scenario_name in builtin_scenarios():
        scenario = load_scenario(scenario_name)
        drift = scenario.drift
        regimes = " > ".join(name for name, _ in drift.phases) if drift else "-"
        if drift is not None and drift.cyclic:
            regimes += " (cyclic)"
        rows.append(
            (
                scenario.name,
                scenario.world.env,
                scenario.learner.algo,
                str(scenario.society.agents),
                f"{scenario.society.steps:,}",
                regimes,
                scenario.description
                + (f" [needs: pip install .[{scenario.requires}]]" if scenario.requires else ""),
            )
        )
    header = ("NAME", "WORLD", "ALGO", "AGENTS", "STEPS", "DRIFT", "DESCRIPTION")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(6)]
    for row in [header, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row[:6], widths, strict=True)]
        print("  ".join([*cells, row[6]]).rstrip())  # noqa: T201
    return 0
