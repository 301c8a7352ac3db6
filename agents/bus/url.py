"""Broker addresses as URLs: ``mqtt://[user[:password]@]host[:port]`` or ``mqtts://...``."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from agents.exceptions import ConfigError

__all__ = ["BrokerUrl", "parse_broker_url"]

_DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


@dataclass(frozen=True, slots=True)
class BrokerUrl:
    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = None

    def __str__(self) -> str:
        """The URL without the password, safe to log."""
        scheme = "mqtts" if self.tls else "mqtt"
        user = f"{self.username}@" if self.username else ""
        return f"{scheme}://{user}{self.host}:{self.port}"


def parse_broker_url(value: str) -> BrokerUrl:
    """Parse a broker URL; a bare ``host:port`` is taken as ``mqtt://host:port``."""
    text = value if "://" in value else f"mqtt://{value}"
    parts = urlsplit(text)
    if parts.scheme not in _DEFAULT_PORTS:
        msg = f"invalid broker URL {value!r}: scheme must be mqtt:// or mqtts://"
        raise ConfigError(msg)
    try:
        port = parts.port or _DEFAULT_PORTS[parts.scheme]
    except ValueError:
        msg = f"invalid broker URL {value!r}: bad port"
        raise ConfigError(msg) from None
    if not parts.hostname:
        msg = f"invalid broker URL {value!r}: no host"
        raise ConfigError(msg)
    if parts.path not in {"", "/"} or parts.query or parts.fragment:
        msg = f"invalid broker URL {value!r}: unexpected path or query"
        raise ConfigError(msg)
    return BrokerUrl(
        host=parts.hostname,
        port=port,
        tls=parts.scheme == "mqtts",
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )
