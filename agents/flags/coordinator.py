"""``society coordinator``'s flags, declared once: the parser, the settings and the argv follow."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

from agents.bus.url import BrokerUrl
from agents.flags.common import (
    BROKER,
    DEFAULT_BROKER,
    DEFAULT_LOG_LEVEL,
    JSON_LOGS,
    LOG_LEVEL,
    SOCIETY,
    SOCIETY_KEY_FILE,
    TLS_CA,
    TLS_CERT,
    TLS_KEY,
    home_assistant,
)
from agents.flags.declare import Flag, flag_field
from agents.flags.values import (
    broker_url,
    fraction,
    non_negative_float,
    non_negative_int,
    port,
    positive_float,
    positive_int,
)

__all__ = ["CoordinatorFlags"]

_METRICS_PORT: Final = Flag(
    "--metrics-port",
    "Prometheus port (0: any free port)",
    env="SOCIETY_METRICS_PORT",
    type=port,
)
_METRICS_HOST: Final = Flag(
    "--metrics-host", "interface for the metrics endpoint", env="SOCIETY_METRICS_HOST"
)
_EVAL_EPISODES: Final = Flag(
    "--eval-episodes",
    "evaluation episodes per snapshot",
    env="SOCIETY_EVAL_EPISODES",
    type=positive_int,
)
_EVAL_SEED: Final = Flag(
    "--eval-seed",
    "seed of the first evaluation episode",
    env="SOCIETY_EVAL_SEED",
    type=non_negative_int,
)
_EVAL_WORKERS: Final = Flag(
    "--eval-workers",
    "evaluation worker processes of the coordinator's own (0: only remote evaluators, "
    "with --remote-evaluators)",
    env="SOCIETY_EVAL_WORKERS",
    type=non_negative_int,
)
_REMOTE_EVALUATORS: Final = Flag(
    "--remote-evaluators",
    "hand snapshots also to `society evaluator` processes on the bus (docs/scaling.md)",
    env="SOCIETY_REMOTE_EVALUATORS",
    kind="switch",
)
_REMOTE_EVAL_TIMEOUT: Final = Flag(
    "--remote-eval-timeout",
    "seconds a remote evaluation may stay unanswered before it is handed out again",
    env="SOCIETY_REMOTE_EVAL_TIMEOUT",
    type=positive_float,
)
_THRESHOLD: Final = Flag(
    "--threshold",
    "evaluation return that counts as learned (for the sharing gain)",
    env="SOCIETY_THRESHOLD",
    type=float,
)
_EVOLUTION_INTERVAL: Final = Flag(
    "--evolution-interval",
    "seconds between generations of population-based training (0: off)",
    env="SOCIETY_EVOLUTION_INTERVAL",
    type=non_negative_float,
)
_EVOLUTION_EVERY_STEPS: Final = Flag(
    "--evolution-every-steps",
    "population-based training: rank each agent every N steps of its life (0: off)",
    env="SOCIETY_EVOLUTION_EVERY_STEPS",
    type=non_negative_int,
)
_SEED: Final = Flag(
    "--seed",
    "seed of evolution's random choices (which top agent, which perturbation); default 0",
    env="SOCIETY_SEED",
    type=non_negative_int,
)
_THRESHOLD_SCALE: Final = Flag(
    "--threshold-scale",
    "what --threshold measures: the mean return, a normalised score (0 random, 1 baseline), "
    "or the share by which an agent beats the baseline on the same episodes (over_baseline; "
    "0.1: 10 %% better); default return",
    env="SOCIETY_THRESHOLD_SCALE",
    choices=("return", "normalised", "over_baseline"),
)
_THRESHOLD_WINDOW: Final = Flag(
    "--threshold-window",
    "evaluations in a row whose mean must reach --threshold (default 1)",
    env="SOCIETY_THRESHOLD_WINDOW",
    type=positive_int,
)
_HOME_ASSISTANT: Final = home_assistant(
    "mark thermostat agents that die offline in Home Assistant (docs/deployment.md)"
)
_EVOLUTION_QUANTILE: Final = Flag(
    "--evolution-quantile",
    "share of a niche that exploits, and is exploited",
    env="SOCIETY_EVOLUTION_QUANTILE",
    type=fraction,
)
_ALLOW_ENV: Final = Flag(
    "--allow-env",
    "a module:Class world the coordinator may import (repeatable)",
    env="SOCIETY_ALLOW_ENVS",
    kind="append",
    metavar="MODULE:CLASS",
)
_DATA_DIR: Final = Flag("--data-dir", "history database and summary", env="SOCIETY_DATA_DIR")


@dataclass(frozen=True, slots=True)
class CoordinatorFlags:
    """What ``society coordinator`` was told: its flags (or their environment variables)."""

    society: str = flag_field(SOCIETY, "default")
    broker: BrokerUrl = flag_field(BROKER, broker_url(DEFAULT_BROKER))
    tls_ca: Path | None = flag_field(TLS_CA)
    tls_cert: Path | None = flag_field(TLS_CERT)
    tls_key: Path | None = flag_field(TLS_KEY)
    metrics_port: int = flag_field(_METRICS_PORT, 9464)
    metrics_host: str = flag_field(_METRICS_HOST, "0.0.0.0")  # noqa: S104 - a container's endpoint
    eval_episodes: int = flag_field(_EVAL_EPISODES, 5)
    eval_seed: int = flag_field(_EVAL_SEED, 10_000)
    eval_workers: int = flag_field(_EVAL_WORKERS, 1)
    remote_evaluators: bool = flag_field(_REMOTE_EVALUATORS)
    remote_eval_timeout: float = flag_field(_REMOTE_EVAL_TIMEOUT, 600.0)
    threshold: float | None = flag_field(_THRESHOLD)
    evolution_interval: float = flag_field(_EVOLUTION_INTERVAL, 0.0)
    evolution_every_steps: int = flag_field(_EVOLUTION_EVERY_STEPS, 0)
    seed: int | None = flag_field(_SEED)
    society_key_file: Path | None = flag_field(SOCIETY_KEY_FILE)
    threshold_scale: str = flag_field(_THRESHOLD_SCALE, "return")
    threshold_window: int = flag_field(_THRESHOLD_WINDOW, 1)
    home_assistant: bool = flag_field(_HOME_ASSISTANT)
    evolution_quantile: float = flag_field(_EVOLUTION_QUANTILE, 0.25)
    allow_env: tuple[str, ...] | None = flag_field(_ALLOW_ENV)
    data_dir: str = flag_field(_DATA_DIR, "society-data/coordinator")
    log_level: str = flag_field(LOG_LEVEL, DEFAULT_LOG_LEVEL)
    json_logs: bool = flag_field(JSON_LOGS)
