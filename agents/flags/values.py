"""The value types of flags: text to value, and back.

Each type raises ``argparse.ArgumentTypeError`` with a message saying what is expected, which
the parser turns into one line naming the flag (or the environment variable). Where a value's
``str`` is not the text that gives it back, a ``*_text`` function writes it for the command line.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from agents.bus.schemas import HyperValue
from agents.bus.topics import SHARE_KINDS, validate_name
from agents.bus.url import BrokerUrl, parse_broker_url
from agents.exceptions import ConfigError

__all__ = [
    "SHARE_KINDS",
    "broker_url",
    "broker_url_text",
    "existing_file",
    "fraction",
    "key_value",
    "key_value_text",
    "name",
    "niceness",
    "non_negative_float",
    "non_negative_int",
    "port",
    "positive_float",
    "positive_int",
    "scalar",
    "share_kinds",
    "share_kinds_text",
]


def positive_int(text: str) -> int:
    value = _int(text)
    if value < 1:
        msg = f"must be a positive integer, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def non_negative_int(text: str) -> int:
    value = _int(text)
    if value < 0:
        msg = f"must be 0 or more, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def niceness(text: str) -> int:
    value = _int(text)
    if not 0 <= value <= 19:  # noqa: PLR2004 - the range of nice(2) for lowering priority
        msg = f"must be a niceness from 0 to 19, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def port(text: str) -> int:
    value = _int(text)
    if not 0 <= value <= 65535:  # noqa: PLR2004
        msg = f"must be a TCP port (0-65535), got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        msg = f"must be a positive number, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def name(text: str) -> str:
    try:
        return validate_name(text, "name")
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def broker_url(text: str) -> BrokerUrl:
    try:
        return parse_broker_url(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def existing_file(text: str) -> Path:
    path = Path(text)
    if not path.is_file():
        msg = f"no such file: {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return path


def share_kinds(text: str) -> frozenset[str]:
    """``experience,snapshots,evolution,federated``, ``all`` or ``none``."""
    lowered = text.strip().lower()
    if lowered == "none":
        return frozenset()
    if lowered == "all":
        return frozenset(SHARE_KINDS)
    kinds = frozenset(part.strip() for part in lowered.split(",") if part.strip())
    unknown = kinds - set(SHARE_KINDS)
    if unknown or not kinds:
        msg = f"expected some of {','.join(SHARE_KINDS)}, or all, or none; got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return kinds


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        msg = f"must be 0 or more, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value < 1.0:
        msg = f"must be a fraction in [0, 1), got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def key_value(text: str) -> tuple[str, HyperValue]:
    """``key=value``; the value becomes a bool, int or float when it reads as one."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        msg = f"expected key=value, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return key.strip(), scalar(raw.strip())


def scalar(raw: str) -> HyperValue:
    lowered = raw.lower()
    if lowered in {"true", "false"}:
        return lowered == "true"
    for convert in (int, float):
        try:
            return convert(raw)
        except ValueError:
            continue
    return raw


def _int(text: str) -> int:
    try:
        return int(text.replace("_", ""))
    except ValueError:
        msg = f"must be an integer, got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None


def broker_url_text(url: BrokerUrl) -> str:
    """The URL :func:`broker_url` reads back, password included (``str(url)`` leaves it out)."""
    scheme = "mqtts" if url.tls else "mqtt"
    auth = ""
    if url.username:
        auth = url.username + (f":{url.password}" if url.password else "") + "@"
    return f"{scheme}://{auth}{url.host}:{url.port}"


def share_kinds_text(kinds: frozenset[str]) -> str:
    """What :func:`share_kinds` reads back: the kinds, comma-separated, or ``none``."""
    return ",".join(sorted(kinds)) or "none"


def key_value_text(pair: tuple[str, HyperValue]) -> str:
    """What :func:`key_value` reads back: ``key=value``."""
    key, value = pair
    return f"{key}={str(value).lower() if isinstance(value, bool) else value}"
