"""``society run``'s flags, declared once: the parser and the settings follow."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

from agents.bus.url import BrokerUrl
from agents.flags.common import (
    DEFAULT_LOG_LEVEL,
    JSON_LOGS,
    LOG_LEVEL,
    SHARE,
    SOCIETY_KEY_FILE,
    STRATEGY,
    TLS_CA,
    TLS_CERT,
    TLS_KEY,
)
from agents.flags.declare import Flag, flag_field
from agents.flags.values import (
    broker_url,
    broker_url_text,
    existing_file,
    name,
    non_negative_int,
    port,
    positive_float,
    positive_int,
)

__all__ = ["RunFlags"]

_SCENARIO: Final = Flag(
    "--scenario", "built-in scenario name (see `society scenarios`)", env="SOCIETY_SCENARIO"
)
_CONFIG: Final = Flag(
    "--config",
    "a scenario file of your own (overrides --scenario)",
    env="SOCIETY_CONFIG",
    type=existing_file,
)
_AGENTS: Final = Flag(
    "--agents",
    "number of agents (default: the scenario's)",
    env="SOCIETY_AGENTS",
    type=positive_int,
)
_STEPS: Final = Flag(
    "--steps",
    "environment steps per agent (default: the scenario's)",
    env="SOCIETY_STEPS",
    type=non_negative_int,
)
_DURATION: Final = Flag(
    "--duration",
    "stop after this many seconds even if the steps are not done",
    env="SOCIETY_DURATION",
    type=positive_float,
)
_BROKER: Final = Flag(
    "--broker",
    "use this broker instead of starting one",
    env="SOCIETY_BROKER",
    type=broker_url,
    render=broker_url_text,
)
_TWINS: Final = Flag(
    "--twins",
    "add an isolated twin (same world and seed, sharing nothing) per agent, "
    "to measure the gain from sharing",
    kind="switch",
)
_BROKER_KIND: Final = Flag(
    "--broker-kind",
    "which managed broker to start",
    choices=("auto", "mosquitto", "python"),
)
_METRICS_PORT: Final = Flag(
    "--metrics-port",
    "coordinator's Prometheus port (0: any free port)",
    env="SOCIETY_METRICS_PORT",
    type=port,
)
_OUT: Final = Flag("--out", "run folder (default: runs/<scenario>-<time>)", env="SOCIETY_OUT")
_SOCIETY: Final = Flag(
    "--society",
    "society name (default: the scenario's name)",
    env="SOCIETY_NAME",
    type=name,
)
_SEED: Final = Flag(
    "--seed",
    "scenario seed: the agents' seeds and, on heterogeneous devices, the devices (default: the "
    "scenario's)",
    env="SOCIETY_SEED",
    type=non_negative_int,
)
_EVAL_TIMEOUT: Final = Flag(
    "--eval-timeout", "seconds to wait for the final evaluations", type=positive_float
)
_QUIET: Final = Flag("--quiet", "no live table, only the final line", kind="switch")
_RESUME: Final = Flag(
    "--resume",
    "continue the run whose folder --out names (its agents resume from their checkpoints); "
    "without it, a folder that holds a run is refused",
    kind="switch",
)


@dataclass(frozen=True, slots=True)
class RunFlags:
    """What ``society run`` was told; ``None`` is "not given" (the scenario's value is used)."""

    scenario: str = flag_field(_SCENARIO, "cartpole")
    config: Path | None = flag_field(_CONFIG)
    agents: int | None = flag_field(_AGENTS)
    steps: int | None = flag_field(_STEPS)
    duration: float | None = flag_field(_DURATION)
    broker: BrokerUrl | None = flag_field(_BROKER)
    strategy: str | None = flag_field(STRATEGY)
    share: frozenset[str] | None = flag_field(SHARE)
    society_key_file: Path | None = flag_field(SOCIETY_KEY_FILE)
    twins: bool = flag_field(_TWINS)
    broker_kind: str = flag_field(_BROKER_KIND, "auto")
    metrics_port: int = flag_field(_METRICS_PORT, 0)
    out: str | None = flag_field(_OUT)
    society: str | None = flag_field(_SOCIETY)
    seed: int | None = flag_field(_SEED)
    eval_timeout: float = flag_field(_EVAL_TIMEOUT, 180.0)
    quiet: bool = flag_field(_QUIET)
    resume: bool = flag_field(_RESUME)
    tls_ca: Path | None = flag_field(TLS_CA)
    tls_cert: Path | None = flag_field(TLS_CERT)
    tls_key: Path | None = flag_field(TLS_KEY)
    log_level: str = flag_field(LOG_LEVEL, DEFAULT_LOG_LEVEL)
    json_logs: bool = flag_field(JSON_LOGS)
