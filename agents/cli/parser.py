"""The ``society`` command line: one parser, a subcommand per process kind."""

from __future__ import annotations

import re
import socket
from typing import Any

from agents.cli.options import (
    SocietyParser,
    broker_url,
    existing_file,
    fraction,
    key_value,
    name,
    non_negative_float,
    non_negative_int,
    port,
    positive_float,
    positive_int,
    share_kinds,
)

__all__ = ["build_parser", "default_agent_id"]

DEFAULT_BROKER = "mqtt://127.0.0.1:1883"


def default_agent_id() -> str:
    """``agent-<hostname>``: unique per container (compose) and per pod (StatefulSet)."""
    host = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname())[:56].strip("-.") or "local"
    return f"agent-{host}"


def _common(parser: SocietyParser) -> None:
    parser.option(
        "--log-level",
        env="SOCIETY_LOG_LEVEL",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR", "debug", "info", "warning", "error"],
        help="log verbosity",
    )
    parser.option(
        "--json-logs",
        env="SOCIETY_JSON_LOGS",
        default=False,
        action="store_const",
        const=True,
        help="log JSON lines (for containers and scripts)",
    )


def _bus(parser: SocietyParser) -> None:
    parser.option(
        "--society",
        env="SOCIETY_NAME",
        type=name,
        default="default",
        help="society name (first topic level under society/)",
    )
    parser.option(
        "--broker",
        env="SOCIETY_BROKER",
        type=broker_url,
        default=broker_url(DEFAULT_BROKER),
        help="broker URL, mqtt://[user:password@]host[:port] or mqtts://...",
    )
    _tls(parser)


def _tls(parser: SocietyParser) -> None:
    parser.option(
        "--tls-ca",
        env="SOCIETY_TLS_CA",
        type=existing_file,
        help="CA certificate (PEM) the broker's certificate is checked against, for mqtts:// "
        "(default: the system's trust store)",
    )
    parser.option(
        "--tls-cert",
        env="SOCIETY_TLS_CERT",
        type=existing_file,
        help="client certificate (PEM) to present, for brokers that identify clients by it",
    )
    parser.option(
        "--tls-key", env="SOCIETY_TLS_KEY", type=existing_file, help="the client certificate's key"
    )


def _share(parser: SocietyParser) -> None:
    parser.option(
        "--share",
        env="SOCIETY_SHARE",
        type=share_kinds,
        help="what agents share and take in from peers: experience,snapshots,evolution, all "
        "or none (default: the scenario's, else all)",
    )


def _key(parser: SocietyParser) -> None:
    parser.option(
        "--society-key-file",
        env="SOCIETY_KEY_FILE",
        type=existing_file,
        help="file holding the society's key: snapshots and directives are signed and "
        "checked (or set SOCIETY_KEY)",
    )


def _strategy(parser: SocietyParser) -> None:
    parser.option(
        "--strategy",
        env="SOCIETY_STRATEGY",
        choices=["lifelong", "finetune", "scratch"],
        help="on a detected drift: adopt the best known policy (lifelong), keep training "
        "(finetune) or start over (scratch); default: the scenario's, else lifelong",
    )


def _learner(parser: SocietyParser) -> None:
    parser.option("--env", env="SOCIETY_ENV", help="gymnasium id or module:Class of the world")
    parser.option(
        "--env-kwarg",
        env="SOCIETY_ENV_KWARGS",
        type=key_value,
        action="append",
        metavar="KEY=VALUE",
        help="constructor argument of the world (repeatable)",
    )
    parser.option(
        "--device-index",
        env="SOCIETY_DEVICE_INDEX",
        type=non_negative_int,
        help="draw this member's own device parameters (from the scenario seed and N)",
    )
    parser.option(
        "--drift",
        env="SOCIETY_DRIFT",
        help="drift schedule regime:steps,regime:steps (e.g. earth:20000,moon:20000)",
    )
    parser.option(
        "--drift-cyclic",
        env="SOCIETY_DRIFT_CYCLIC",
        default=False,
        action="store_const",
        const=True,
        help="start the drift schedule over at its end",
    )
    parser.option("--algo", env="SOCIETY_ALGO", help="ppo, a2c, dqn or sac")
    _key(parser)
    _strategy(parser)
    _share(parser)
    parser.option(
        "--peer-fraction", env="SOCIETY_PEER_FRACTION", type=fraction,
        help="off-policy learners: the largest share of replay intake from peers (default 0.5)",
    )  # fmt: skip
    parser.option(
        "--twin-of", env="SOCIETY_TWIN_OF", type=name,
        help="run as the isolated control twin of this agent (implies --share none)",
    )  # fmt: skip
    parser.option(
        "--hp",
        env="SOCIETY_HYPERPARAMS",
        type=key_value,
        action="append",
        metavar="KEY=VALUE",
        help="hyperparameter, e.g. --hp learning_rate=3e-4 (repeatable)",
    )
    parser.option("--net-arch", env="SOCIETY_NET_ARCH", help="e.g. 64,64 or pi=64,64;vf=64,64")
    parser.option("--activation", env="SOCIETY_ACTIVATION", help="tanh, relu, elu, gelu, ...")
    parser.option(
        "--steps",
        env="SOCIETY_STEPS",
        type=non_negative_int,
        help="environment steps to train, then stop (0: learn until stopped)",
    )
    parser.option("--seed", env="SOCIETY_SEED", type=non_negative_int, help="random seed")
    parser.option(
        "--snapshot-every",
        env="SOCIETY_SNAPSHOT_EVERY",
        type=positive_int,
        help="publish a policy snapshot every N steps",
    )
    parser.option(
        "--experience-batch",
        env="SOCIETY_EXPERIENCE_BATCH",
        type=positive_int,
        help="transitions per published experience batch",
    )
    parser.option(
        "--checkpoint-every",
        env="SOCIETY_CHECKPOINT_EVERY",
        type=positive_int,
        help="write a local checkpoint every N steps",
    )


def build_parser() -> SocietyParser:
    parser = SocietyParser(
        prog="society",
        description="A society of lifelong-learning RL agents that talk over MQTT.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    _run_command(commands)
    _agent_command(commands)
    _coordinator_command(commands)
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
    run.option(
        "--scenario",
        env="SOCIETY_SCENARIO",
        default="cartpole",
        help="built-in scenario name (see `society scenarios`)",
    )
    run.option(
        "--config",
        env="SOCIETY_CONFIG",
        type=existing_file,
        help="a scenario file of your own (overrides --scenario)",
    )
    run.option(
        "--agents",
        env="SOCIETY_AGENTS",
        type=positive_int,
        help="number of agents (default: the scenario's)",
    )
    run.option(
        "--steps",
        env="SOCIETY_STEPS",
        type=non_negative_int,
        help="environment steps per agent (default: the scenario's)",
    )
    run.option(
        "--duration",
        env="SOCIETY_DURATION",
        type=positive_float,
        help="stop after this many seconds even if the steps are not done",
    )
    run.option(
        "--broker",
        env="SOCIETY_BROKER",
        type=broker_url,
        help="use this broker instead of starting one",
    )
    _strategy(run)
    _share(run)
    _key(run)
    run.option("--twins", default=False, action="store_const", const=True,
               help="add an isolated twin (same world and seed, sharing nothing) per agent, "
               "to measure the gain from sharing")  # fmt: skip
    run.option(
        "--broker-kind",
        default="auto",
        choices=["auto", "mosquitto", "python"],
        help="which managed broker to start",
    )
    run.option(
        "--metrics-port",
        env="SOCIETY_METRICS_PORT",
        type=port,
        default=0,
        help="coordinator's Prometheus port (0: any free port)",
    )
    run.option("--out", env="SOCIETY_OUT", help="run folder (default: runs/<scenario>-<time>)")
    run.option(
        "--society",
        env="SOCIETY_NAME",
        type=name,
        help="society name (default: the scenario's name)",
    )
    run.option(
        "--seed",
        env="SOCIETY_SEED",
        type=non_negative_int,
        help="scenario seed (default: the scenario's)",
    )
    run.option(
        "--eval-timeout",
        type=positive_float,
        default=180.0,
        help="seconds to wait for the final evaluations",
    )
    run.option(
        "--quiet",
        default=False,
        action="store_const",
        const=True,
        help="no live table, only the final line",
    )
    _common(run)


def _agent_command(commands: Any) -> None:
    agent = commands.add_parser("agent", help="run one agent (container entrypoint)")
    agent.set_defaults(subparser=agent)
    agent.option(
        "--id",
        env="SOCIETY_AGENT_ID",
        type=name,
        default=default_agent_id(),
        help="agent id, also its MQTT client id",
    )
    _bus(agent)
    agent.option(
        "--scenario",
        env="SOCIETY_SCENARIO",
        help="take world and learner settings from this scenario (name or file)",
    )
    _learner(agent)
    agent.option(
        "--telemetry-interval",
        env="SOCIETY_TELEMETRY_INTERVAL",
        type=positive_float,
        default=2.0,
        help="seconds between telemetry messages",
    )
    agent.option(
        "--data-dir",
        env="SOCIETY_DATA_DIR",
        help="checkpoints and outbox (default: society-data/agents/<id>)",
    )
    _home_assistant(agent, "show this thermostat in Home Assistant (MQTT discovery)")
    _common(agent)


def _home_assistant(parser: SocietyParser, help_text: str) -> None:
    parser.option(
        "--home-assistant",
        env="SOCIETY_HOME_ASSISTANT",
        default=False,
        action="store_const",
        const=True,
        help=help_text,
    )


def _coordinator_command(commands: Any) -> None:
    coordinator = commands.add_parser(
        "coordinator", help="run the coordinator (container entrypoint)"
    )
    coordinator.set_defaults(subparser=coordinator)
    _bus(coordinator)
    coordinator.option(
        "--metrics-port",
        env="SOCIETY_METRICS_PORT",
        type=port,
        default=9464,
        help="Prometheus port (0: any free port)",
    )
    coordinator.option(
        "--metrics-host",
        env="SOCIETY_METRICS_HOST",
        default="0.0.0.0",  # noqa: S104
        help="interface for the metrics endpoint",
    )
    coordinator.option(
        "--eval-episodes",
        env="SOCIETY_EVAL_EPISODES",
        type=positive_int,
        default=5,
        help="evaluation episodes per snapshot",
    )
    coordinator.option(
        "--eval-seed",
        env="SOCIETY_EVAL_SEED",
        type=non_negative_int,
        default=10_000,
        help="seed of the first evaluation episode",
    )
    coordinator.option(
        "--eval-workers",
        env="SOCIETY_EVAL_WORKERS",
        type=positive_int,
        default=1,
        help="evaluation worker processes",
    )
    coordinator.option(
        "--threshold",
        env="SOCIETY_THRESHOLD",
        type=float,
        help="evaluation return that counts as learned (for the sharing gain)",
    )
    coordinator.option(
        "--evolution-interval",
        env="SOCIETY_EVOLUTION_INTERVAL",
        type=non_negative_float,
        default=0.0,
        help="seconds between generations of population-based training (0: off)",
    )
    _key(coordinator)
    coordinator.option(
        "--threshold-normalised",
        env="SOCIETY_THRESHOLD_NORMALISED",
        default=False,
        action="store_const",
        const=True,
        help="read --threshold as a normalised score (0 random, 1 baseline)",
    )
    coordinator.option(
        "--threshold-window",
        env="SOCIETY_THRESHOLD_WINDOW",
        type=positive_int,
        default=1,
        help="evaluations in a row whose mean must reach --threshold (default 1)",
    )
    _home_assistant(
        coordinator,
        "mark thermostat agents that die offline in Home Assistant (docs/deployment.md)",
    )
    coordinator.option(
        "--evolution-quantile",
        env="SOCIETY_EVOLUTION_QUANTILE",
        type=fraction,
        default=0.25,
        help="share of a niche that exploits, and is exploited",
    )
    coordinator.option(
        "--allow-env",
        env="SOCIETY_ALLOW_ENVS",
        action="append",
        metavar="MODULE:CLASS",
        help="a module:Class world the coordinator may import (repeatable)",
    )
    coordinator.option(
        "--data-dir",
        env="SOCIETY_DATA_DIR",
        default="society-data/coordinator",
        help="history database and summary",
    )
    _common(coordinator)


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
    inspect.option(
        "--broker",
        env="SOCIETY_BROKER",
        type=broker_url,
        default=broker_url(DEFAULT_BROKER),
        help="broker URL, mqtt://[user:password@]host[:port] or mqtts://...",
    )
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
