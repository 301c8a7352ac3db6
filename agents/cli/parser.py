"""The ``society`` command line: one parser, a subcommand per process kind."""

from __future__ import annotations

from typing import Any

from agents.cli.options import SocietyParser
from agents.flags import AgentFlags, CoordinatorFlags, EvaluatorFlags, RunFlags
from agents.flags.common import (
    BROKER,
    DEFAULT_BROKER,
    DEFAULT_LOG_LEVEL,
    JSON_LOGS,
    LOG_LEVEL,
    TLS_CA,
    TLS_CERT,
    TLS_KEY,
)
from agents.flags.values import broker_url, name, port, positive_float, positive_int

__all__ = ["build_parser"]


def _common(parser: SocietyParser) -> None:
    parser.flag(LOG_LEVEL, DEFAULT_LOG_LEVEL)
    parser.flag(JSON_LOGS, default=False)


def _tls(parser: SocietyParser) -> None:
    for flag in (TLS_CA, TLS_CERT, TLS_KEY):
        parser.flag(flag)


def build_parser() -> SocietyParser:
    parser = SocietyParser(
        prog="society",
        description="A society of lifelong-learning RL agents that talk over MQTT.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    _run_command(commands)
    _agent_command(commands)
    _coordinator_command(commands)
    _evaluator_command(commands)
    _broker_command(commands)
    _scenarios_command(commands)
    _report_command(commands)
    _inspect_command(commands)
    return parser


def _run_command(commands: Any) -> None:
    run = commands.add_parser(
        "run", help="run a whole society on this machine (broker, coordinator, agents)"
    )
    run.set_defaults(subparser=run)
    run.flags(RunFlags)


def _agent_command(commands: Any) -> None:
    agent = commands.add_parser("agent", help="run one agent (container entrypoint)")
    agent.set_defaults(subparser=agent)
    agent.flags(AgentFlags)


def _coordinator_command(commands: Any) -> None:
    coordinator = commands.add_parser(
        "coordinator", help="run the coordinator (container entrypoint)"
    )
    coordinator.set_defaults(subparser=coordinator)
    coordinator.flags(CoordinatorFlags)


def _evaluator_command(commands: Any) -> None:
    evaluator = commands.add_parser(
        "evaluator",
        help="evaluate snapshots a coordinator with --remote-evaluators hands out (any machine)",
    )
    evaluator.set_defaults(subparser=evaluator)
    evaluator.flags(EvaluatorFlags)


def _broker_command(commands: Any) -> None:
    broker = commands.add_parser("broker", help="run a development broker (container entrypoint)")
    broker.set_defaults(subparser=broker)
    broker.option(
        "--host", env="SOCIETY_BROKER_HOST", default="127.0.0.1", help="interface to listen on"
    )
    broker.option("--port", env="SOCIETY_BROKER_PORT", type=port, default=1883, help="TCP port")
    broker.option(
        "--kind",
        env="SOCIETY_BROKER_KIND",
        default="auto",
        choices=["auto", "mosquitto", "python"],
        help="which broker to run",
    )
    broker.option(
        "--data-dir",
        env="SOCIETY_DATA_DIR",
        default="society-data/broker",
        help="persistence and logs",
    )
    _common(broker)


def _scenarios_command(commands: Any) -> None:
    scenarios = commands.add_parser("scenarios", help="list the built-in scenarios")
    scenarios.set_defaults(subparser=scenarios)
    _common(scenarios)


def _report_command(commands: Any) -> None:
    report = commands.add_parser(
        "report", help="render a run folder's report (report.html and figures/) again"
    )
    report.set_defaults(subparser=report)
    report.add_argument("run_dir", metavar="RUN_DIR", help="a run folder of `society run`")
    _common(report)


def _inspect_command(commands: Any) -> None:
    from agents.inspect import parse_kinds  # noqa: PLC0415 - the inspector's own value type

    inspect = commands.add_parser(
        "inspect", help="tail the bus: print every message, decoded and checked"
    )
    inspect.set_defaults(subparser=inspect)
    inspect.flag(BROKER, broker_url(DEFAULT_BROKER))
    _tls(inspect)
    inspect.option(
        "--society", env="SOCIETY_NAME", type=name, help="only this society (default: all)"
    )
    inspect.option("--json", default=False, action="store_const", const=True,
                   help="one JSON object per message (JSON lines) instead of a table")  # fmt: skip
    inspect.option("--kinds", type=parse_kinds,
                   help="only these kinds, e.g. policy,evaluation (default: all)")  # fmt: skip
    inspect.option("--count", type=positive_int, help="stop after N messages")
    inspect.option("--duration", type=positive_float, help="stop after this many seconds")
    inspect.option(
        "--connect-timeout",
        type=positive_float,
        default=10.0,
        help="seconds to wait for the broker before giving up",
    )
    _common(inspect)
