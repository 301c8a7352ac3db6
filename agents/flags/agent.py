"""``society agent``'s flags, declared once: the parser, the settings and the argv follow."""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from agents.bus.schemas import HyperValue
from agents.bus.url import BrokerUrl
from agents.flags.common import (
    BROKER,
    DEFAULT_BROKER,
    DEFAULT_LOG_LEVEL,
    JSON_LOGS,
    LOG_LEVEL,
    SHARE,
    SOCIETY,
    SOCIETY_KEY_FILE,
    STRATEGY,
    TLS_CA,
    TLS_CERT,
    TLS_KEY,
    home_assistant,
)
from agents.flags.declare import Flag, flag_field
from agents.flags.values import (
    broker_url,
    fraction,
    key_value,
    key_value_text,
    name,
    niceness,
    non_negative_int,
    positive_float,
    positive_int,
)

__all__ = ["AgentFlags", "default_agent_id"]

KeyValues = tuple[tuple[str, HyperValue], ...]


def default_agent_id() -> str:
    """``agent-<hostname>``: unique per container (compose) and per pod (StatefulSet)."""
    host = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname())[:56].strip("-.") or "local"
    return f"agent-{host}"


_ID: Final = Flag("--id", "agent id, also its MQTT client id", env="SOCIETY_AGENT_ID", type=name)
_SCENARIO: Final = Flag(
    "--scenario",
    "take world and learner settings from this scenario (name or file)",
    env="SOCIETY_SCENARIO",
)
_ENV: Final = Flag("--env", "gymnasium id or module:Class of the world", env="SOCIETY_ENV")
_ENV_KWARG: Final = Flag(
    "--env-kwarg",
    "constructor argument of the world (repeatable)",
    env="SOCIETY_ENV_KWARGS",
    type=key_value,
    kind="append",
    metavar="KEY=VALUE",
    render=key_value_text,
)
_DEVICE_INDEX: Final = Flag(
    "--device-index",
    "draw this member's own device parameters (from --device-seed and N)",
    env="SOCIETY_DEVICE_INDEX",
    type=non_negative_int,
)
_DEVICE_SEED: Final = Flag(
    "--device-seed",
    "the seed --device-index draws the device parameters from (default: the scenario's seed; "
    "`society run` passes the run's --seed)",
    env="SOCIETY_DEVICE_SEED",
    type=non_negative_int,
)
_DRIFT: Final = Flag(
    "--drift",
    "drift schedule regime:steps,regime:steps (e.g. earth:20000,moon:20000)",
    env="SOCIETY_DRIFT",
)
_DRIFT_CYCLIC: Final = Flag(
    "--drift-cyclic",
    "start the drift schedule over at its end",
    env="SOCIETY_DRIFT_CYCLIC",
    kind="switch",
)
_ALGO: Final = Flag("--algo", "ppo, a2c, dqn or sac", env="SOCIETY_ALGO")
_PEER_FRACTION: Final = Flag(
    "--peer-fraction",
    "off-policy learners: the largest share of replay intake from peers (default 0.5)",
    env="SOCIETY_PEER_FRACTION",
    type=fraction,
)
_TWIN_OF: Final = Flag(
    "--twin-of",
    "run as the isolated control twin of this agent (implies --share none)",
    env="SOCIETY_TWIN_OF",
    type=name,
)
_START_FROM: Final = Flag(
    "--start-from",
    "begin as a clone of the world's baseline controller, from its recorded history "
    "(baseline), or untrained (scratch); default: the scenario's, else scratch",
    env="SOCIETY_START_FROM",
    choices=("baseline", "scratch"),
)
_HISTORY_STEPS: Final = Flag(
    "--history-steps",
    "--start-from baseline: device steps of the controller's history to record and clone",
    env="SOCIETY_HISTORY_STEPS",
    type=positive_int,
)
_GUARD: Final = Flag(
    "--guard",
    "let the learner drive the device only while its regret against the baseline controller "
    "stays within the budget (on), or always (off); default: the scenario's, else off",
    env="SOCIETY_GUARD",
    choices=("on", "off"),
)
_GUARD_BUDGET: Final = Flag(
    "--guard-budget",
    "the regret the guard allows, as a share of the controller's cost (default 0.02)",
    env="SOCIETY_GUARD_BUDGET",
    type=fraction,
)
_HP: Final = Flag(
    "--hp",
    "hyperparameter, e.g. --hp learning_rate=3e-4 (repeatable)",
    env="SOCIETY_HYPERPARAMS",
    type=key_value,
    kind="append",
    metavar="KEY=VALUE",
    render=key_value_text,
)
_NET_ARCH: Final = Flag("--net-arch", "e.g. 64,64 or pi=64,64;vf=64,64", env="SOCIETY_NET_ARCH")
_ACTIVATION: Final = Flag("--activation", "tanh, relu, elu, gelu, ...", env="SOCIETY_ACTIVATION")
_STEPS: Final = Flag(
    "--steps",
    "environment steps to train, then stop (0: learn until stopped)",
    env="SOCIETY_STEPS",
    type=non_negative_int,
)
_SEED: Final = Flag(
    "--seed",
    "random seed (default: the scenario's offset by the agent id, so no two agents share one)",
    env="SOCIETY_SEED",
    type=non_negative_int,
)
_INIT_SEED: Final = Flag(
    "--init-seed",
    "seed of the network's initial weights, the same for a federation's members (default: "
    "the scenario's seed, else 0)",
    env="SOCIETY_INIT_SEED",
    type=non_negative_int,
)
_SNAPSHOT_EVERY: Final = Flag(
    "--snapshot-every",
    "publish a policy snapshot every N steps",
    env="SOCIETY_SNAPSHOT_EVERY",
    type=positive_int,
)
_EXPERIENCE_BATCH: Final = Flag(
    "--experience-batch",
    "transitions per published experience batch",
    env="SOCIETY_EXPERIENCE_BATCH",
    type=positive_int,
)
_CHECKPOINT_EVERY: Final = Flag(
    "--checkpoint-every",
    "write a local checkpoint every N steps",
    env="SOCIETY_CHECKPOINT_EVERY",
    type=positive_int,
)
_TELEMETRY_INTERVAL: Final = Flag(
    "--telemetry-interval",
    "seconds between telemetry messages",
    env="SOCIETY_TELEMETRY_INTERVAL",
    type=positive_float,
)
_NICE: Final = Flag(
    "--nice",
    "lower this process's CPU priority by N (0-19): on a shared machine, learning yields to the "
    "broker, the coordinator and evaluators, whose work others wait for",
    env="SOCIETY_NICE",
    type=niceness,
)
_DATA_DIR: Final = Flag(
    "--data-dir",
    "checkpoints and outbox (default: society-data/agents/<id>)",
    env="SOCIETY_DATA_DIR",
)
_HOME_ASSISTANT: Final = home_assistant("show this thermostat in Home Assistant (MQTT discovery)")


@dataclass(frozen=True, slots=True)
class AgentFlags:
    """What ``society agent`` was told: its flags (or their environment variables) as given.

    ``None`` is "not given": the scenario's value, then the built-in default, is used
    (``agents.cli.agent_config`` combines them into an :class:`~agents.agent.agent.AgentConfig`).
    """

    id: str = flag_field(_ID, factory=default_agent_id)
    society: str = flag_field(SOCIETY, "default")
    broker: BrokerUrl = flag_field(BROKER, broker_url(DEFAULT_BROKER))
    tls_ca: Path | None = flag_field(TLS_CA)
    tls_cert: Path | None = flag_field(TLS_CERT)
    tls_key: Path | None = flag_field(TLS_KEY)
    scenario: str | None = flag_field(_SCENARIO)
    env: str | None = flag_field(_ENV)
    env_kwarg: KeyValues | None = flag_field(_ENV_KWARG)
    device_index: int | None = flag_field(_DEVICE_INDEX)
    device_seed: int | None = flag_field(_DEVICE_SEED)
    drift: str | None = flag_field(_DRIFT)
    drift_cyclic: bool = flag_field(_DRIFT_CYCLIC)
    algo: str | None = flag_field(_ALGO)
    society_key_file: Path | None = flag_field(SOCIETY_KEY_FILE)
    strategy: str | None = flag_field(STRATEGY)
    share: frozenset[str] | None = flag_field(SHARE)
    peer_fraction: float | None = flag_field(_PEER_FRACTION)
    twin_of: str | None = flag_field(_TWIN_OF)
    start_from: str | None = flag_field(_START_FROM)
    history_steps: int | None = flag_field(_HISTORY_STEPS)
    guard: str | None = flag_field(_GUARD)
    guard_budget: float | None = flag_field(_GUARD_BUDGET)
    hp: KeyValues | None = flag_field(_HP)
    net_arch: str | None = flag_field(_NET_ARCH)
    activation: str | None = flag_field(_ACTIVATION)
    steps: int | None = flag_field(_STEPS)
    seed: int | None = flag_field(_SEED)
    init_seed: int | None = flag_field(_INIT_SEED)
    snapshot_every: int | None = flag_field(_SNAPSHOT_EVERY)
    experience_batch: int | None = flag_field(_EXPERIENCE_BATCH)
    checkpoint_every: int | None = flag_field(_CHECKPOINT_EVERY)
    telemetry_interval: float = flag_field(_TELEMETRY_INTERVAL, 2.0)
    nice: int = flag_field(_NICE, 5)
    data_dir: str | None = flag_field(_DATA_DIR)
    home_assistant: bool = flag_field(_HOME_ASSISTANT)
    log_level: str = flag_field(LOG_LEVEL, DEFAULT_LOG_LEVEL)
    json_logs: bool = flag_field(JSON_LOGS)
