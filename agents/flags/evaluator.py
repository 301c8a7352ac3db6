"""``society evaluator``'s flags, declared once: the parser, the settings and the argv follow."""

from __future__ import annotations

import os
import re
import socket
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
)
from agents.flags.declare import Flag, flag_field
from agents.flags.values import broker_url, name

__all__ = ["EvaluatorFlags", "default_evaluator_id"]


def default_evaluator_id() -> str:
    """``evaluator-<hostname>-<pid>``: unique per container, and per process on one machine."""
    host = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname())[:40].strip("-.") or "local"
    return f"evaluator-{host}-{os.getpid()}"


_ID: Final = Flag(
    "--id", "evaluator id, also its MQTT client id", env="SOCIETY_EVALUATOR_ID", type=name
)
_ALLOW_ENV: Final = Flag(
    "--allow-env",
    "a module:Class world this evaluator may import (repeatable)",
    env="SOCIETY_ALLOW_ENVS",
    kind="append",
    metavar="MODULE:CLASS",
)


@dataclass(frozen=True, slots=True)
class EvaluatorFlags:
    """What ``society evaluator`` was told: its flags (or their environment variables)."""

    id: str = flag_field(_ID, factory=default_evaluator_id)
    society: str = flag_field(SOCIETY, "default")
    broker: BrokerUrl = flag_field(BROKER, broker_url(DEFAULT_BROKER))
    tls_ca: Path | None = flag_field(TLS_CA)
    tls_cert: Path | None = flag_field(TLS_CERT)
    tls_key: Path | None = flag_field(TLS_KEY)
    society_key_file: Path | None = flag_field(SOCIETY_KEY_FILE)
    allow_env: tuple[str, ...] | None = flag_field(_ALLOW_ENV)
    log_level: str = flag_field(LOG_LEVEL, DEFAULT_LOG_LEVEL)
    json_logs: bool = flag_field(JSON_LOGS)
