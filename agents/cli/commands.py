"""What each ``society`` subcommand does, once its arguments are parsed and checked."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from agents.bus.schemas import HyperValue
from agents.exceptions import ConfigError

__all__ = ["cmd_agent", "cmd_broker", "cmd_coordinator", "cmd_scenarios", "run_until_signal"]

log = logging.getLogger(__name__)

T = TypeVar("T")


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


def _pairs(values: list[tuple[str, HyperValue]] | None) -> dict[str, HyperValue]:
    return dict(values or [])


def cmd_agent(args: argparse.Namespace) -> int:
    # torch must get its thread limits before anything runs a parallel op.
    from agents.learner.learner import LearnerConfig, limit_torch_threads  # noqa: PLC0415

    limit_torch_threads()
    from agents.agent.agent import Agent, AgentConfig  # noqa: PLC0415
    from agents.bus.mqtt import MqttTransport  # noqa: PLC0415
    from agents.learner.algorithms import get_algorithm, parse_hyperparams  # noqa: PLC0415
    from agents.learner.snapshots import make_arch, parse_net_arch  # noqa: PLC0415
    from agents.scenarios import load_scenario  # noqa: PLC0415

    scenario = load_scenario(args.scenario) if args.scenario else None
    learner_section = scenario.learner if scenario else None
    env_id = args.env or (scenario.world.env if scenario else "CartPole-v1")
    env_kwargs = {**(scenario.world.kwargs if scenario else {}), **_pairs(args.env_kwarg)}
    algo = args.algo or (learner_section.algo if learner_section else "ppo")
    spec = get_algorithm(algo)
    hyperparams: dict[str, HyperValue] = {}
    net_arch: list[int] | dict[str, list[int]] | None = None
    activation = args.activation
    options: dict[str, HyperValue] = {}
    if learner_section is not None and learner_section.algo == spec.name:
        hyperparams.update(learner_section.hyperparams)
        net_arch = learner_section.policy.net_arch
        activation = activation or learner_section.policy.activation
        options.update(learner_section.policy.options)
    hyperparams.update(_pairs(args.hp))
    parse_hyperparams(spec, hyperparams)  # fail on a bad value before anything starts
    if args.net_arch:
        net_arch = parse_net_arch(args.net_arch)
    arch = make_arch(spec, net_arch=net_arch, activation=activation, options=options)

    def pick(flag: int | None, from_scenario: int | None, default: int) -> int:
        if flag is not None:
            return flag
        return from_scenario if from_scenario is not None else default

    learner = LearnerConfig(
        env_id=env_id,
        algo=spec.name,
        env_kwargs=env_kwargs,
        hyperparams=hyperparams,
        arch=arch,
        seed=pick(args.seed, scenario.society.seed if scenario else None, 0),
        budget_steps=pick(args.steps, None, 0),
        experience_batch=pick(
            args.experience_batch,
            learner_section.experience_batch if learner_section else None,
            256,
        ),
        snapshot_every=pick(
            args.snapshot_every, learner_section.snapshot_every if learner_section else None, 5000
        ),
        checkpoint_every=pick(
            args.checkpoint_every,
            learner_section.checkpoint_every if learner_section else None,
            10_000,
        ),
    )
    data_dir = Path(args.data_dir) if args.data_dir else Path("society-data/agents") / args.id
    config = AgentConfig(
        agent_id=args.id,
        society=args.society,
        learner=learner,
        data_dir=data_dir,
        telemetry_interval=args.telemetry_interval,
    )
    agent = Agent(config, MqttTransport(args.broker))
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
    from agents.coordinator.coordinator import Coordinator, CoordinatorConfig  # noqa: PLC0415

    config = CoordinatorConfig(
        society=args.society,
        data_dir=Path(args.data_dir),
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_host,
        eval_episodes=args.eval_episodes,
        eval_seed=args.eval_seed,
        eval_workers=args.eval_workers,
        allowed_envs=frozenset(args.allow_env or ()),
    )
    coordinator = Coordinator(config, MqttTransport(args.broker))
    log.info("coordinator of society %s, broker %s", args.society, args.broker)
    summary = asyncio.run(run_until_signal(coordinator.run(), coordinator.stop))
    log.info(
        "coordinator stopped: %d snapshots evaluated, %d messages, %d rejected",
        summary["snapshots_evaluated"],
        summary["messages_received"],
        summary["messages_rejected"],
    )
    return 0


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
        rows.append(
            (
                scenario.name,
                scenario.world.env,
                scenario.learner.algo,
                str(scenario.society.agents),
                f"{scenario.society.steps:,}",
                scenario.description,
            )
        )
    header = ("NAME", "WORLD", "ALGO", "AGENTS", "STEPS", "DESCRIPTION")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(5)]
    for row in [header, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row[:5], widths, strict=True)]
        print("  ".join([*cells, row[5]]).rstrip())  # noqa: T201
    return 0
