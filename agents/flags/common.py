"""Flags that several processes share, declared once: logging, the bus, the key, sharing."""

from __future__ import annotations

from typing import Final

from agents.flags.declare import Flag
from agents.flags.values import (
    broker_url,
    broker_url_text,
    existing_file,
    name,
    share_kinds,
    share_kinds_text,
)

__all__ = [
    "BROKER",
    "DEFAULT_BROKER",
    "DEFAULT_LOG_LEVEL",
    "JSON_LOGS",
    "LOG_LEVEL",
    "LOG_LEVELS",
    "SHARE",
    "SOCIETY",
    "SOCIETY_KEY_FILE",
    "STRATEGY",
    "TLS_CA",
    "TLS_CERT",
    "TLS_KEY",
    "home_assistant",
]

DEFAULT_BROKER: Final = "mqtt://127.0.0.1:1883"

DEFAULT_LOG_LEVEL: Final = "INFO"

LOG_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR", "debug", "info", "warning", "error")

LOG_LEVEL: Final = Flag("--log-level", "log verbosity", env="SOCIETY_LOG_LEVEL", choices=LOG_LEVELS)
JSON_LOGS: Final = Flag(
    "--json-logs",
    "log JSON lines (for containers and scripts)",
    env="SOCIETY_JSON_LOGS",
    kind="switch",
)

SOCIETY: Final = Flag(
    "--society",
    "society name (first topic level under society/)",
    env="SOCIETY_NAME",
    type=name,
)
BROKER: Final = Flag(
    "--broker",
    "broker URL, mqtt://[user:password@]host[:port] or mqtts://...",
    env="SOCIETY_BROKER",
    type=broker_url,
    render=broker_url_text,
)
TLS_CA: Final = Flag(
    "--tls-ca",
    "CA certificate (PEM) the broker's certificate is checked against, for mqtts:// "
    "(default: the system's trust store)",
    env="SOCIETY_TLS_CA",
    type=existing_file,
)
TLS_CERT: Final = Flag(
    "--tls-cert",
    "client certificate (PEM) to present, for brokers that identify clients by it",
    env="SOCIETY_TLS_CERT",
    type=existing_file,
)
TLS_KEY: Final = Flag(
    "--tls-key", "the client certificate's key", env="SOCIETY_TLS_KEY", type=existing_file
)

SOCIETY_KEY_FILE: Final = Flag(
    "--society-key-file",
    "file holding the society's key: snapshots and directives are signed and "
    "checked (or set SOCIETY_KEY)",
    env="SOCIETY_KEY_FILE",
    type=existing_file,
)
STRATEGY: Final = Flag(
    "--strategy",
    "on a detected drift: adopt the best known policy (lifelong), keep training "
    "(finetune) or start over (scratch); default: the scenario's, else lifelong",
    env="SOCIETY_STRATEGY",
    choices=("lifelong", "finetune", "scratch"),
)
SHARE: Final = Flag(
    "--share",
    "what agents share and take in from peers: experience,snapshots,evolution,federated, all "
    "or none (default: the scenario's, else all)",
    env="SOCIETY_SHARE",
    type=share_kinds,
    render=share_kinds_text,
)


def home_assistant(help_text: str) -> Flag:
    """``--home-assistant``: what it does depends on the process."""
    return Flag("--home-assistant", help_text, env="SOCIETY_HOME_ASSISTANT", kind="switch")
