"""argparse with one-line errors and 12-factor environment variables.

Every error is one line, ``society: error: <what was wrong>``, and exit status 2. Options may
name an environment variable: when the flag is absent from the command line, the variable is
read, through the same type check as the flag, and an error names the variable.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from agents.bus.mqtt import TlsFiles
from agents.bus.schemas import HyperValue
from agents.bus.topics import validate_name
from agents.bus.url import BrokerUrl, parse_broker_url
from agents.exceptions import ConfigError

__all__ = [
    "SocietyParser",
    "broker_url",
    "key_value",
    "name",
    "non_negative_int",
    "port",
    "positive_float",
    "positive_int",
]


class _Unset:
    """Marks an option the command line did not give (so the environment may)."""

    def __repr__(self) -> str:
        return "<unset>"


UNSET: Any = _Unset()


@dataclass(frozen=True, slots=True)
class _EnvOption:
    dest: str
    env: str
    convert: Callable[[str], Any] | None
    default: Any
    repeated: bool


class SocietyParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, and whose options can come from env vars."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.env_options: list[_EnvOption] = []

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"society: error: {message}\n")

    def option(
        self,
        *flags: str,
        env: str | None = None,
        type: Callable[[str], Any] | None = None,  # noqa: A002 - argparse's own name
        default: Any = None,
        help: str | None = None,  # noqa: A002 - argparse's own name
        **kwargs: Any,
    ) -> None:
        """Add an option that falls back to environment variable ``env``, then ``default``."""
        repeated = kwargs.get("action") == "append"
        if env is not None and help is not None:
            help = f"{help} [env: {env}]"  # noqa: A001
        if type is not None:
            kwargs["type"] = type
        # argparse's "append" needs None (not a sentinel) to start its list; None means unset.
        unset = None if repeated else UNSET
        action = self.add_argument(*flags, default=unset, help=help, **kwargs)
        if default is not None and help is not None:
            action.help = f"{action.help} (default: {default})"
        self.env_options.append(_EnvOption(action.dest, env or "", type, default, repeated))

    def resolve(self, namespace: argparse.Namespace) -> argparse.Namespace:
        """Fill the options the command line left unset from the environment or defaults."""
        for option in self.env_options:
            given = getattr(namespace, option.dest, UNSET)
            if given is not UNSET and not (option.repeated and given is None):
                continue
            raw = os.environ.get(option.env) if option.env else None
            if raw is None or raw == "":
                setattr(namespace, option.dest, option.default)
                continue
            values = raw.split() if option.repeated else [raw]
            converted = [self._convert(option, value) for value in values]
            setattr(namespace, option.dest, converted if option.repeated else converted[0])
        return namespace

    def _convert(self, option: _EnvOption, raw: str) -> Any:
        if option.convert is None:
            return raw
        try:
            return option.convert(raw)
        except (argparse.ArgumentTypeError, ValueError, ConfigError) as exc:
            self.error(f"environment variable {option.env}={raw!r}: {exc}")


def parse_args(
    parser: SocietyParser, argv: Sequence[str] | None
) -> tuple[argparse.Namespace, SocietyParser]:
    """Parse ``argv`` and resolve env fallbacks for the chosen subcommand's options."""
    namespace = parser.parse_args(argv)
    chosen: SocietyParser = getattr(namespace, "subparser", parser)
    parser.resolve(namespace)
    if chosen is not parser:
        chosen.resolve(namespace)
    return namespace, chosen


# --- value types: raise ArgumentTypeError with a message that says what is expected ---------


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


SHARE_KINDS = ("experience", "snapshots", "evolution")


def share_kinds(text: str) -> frozenset[str]:
    """``experience,snapshots,evolution``, ``all`` or ``none``."""
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


def society_key(path: Path | None) -> bytes | None:
    """The society's key: from ``--society-key-file``, else ``SOCIETY_KEY``, else none.

    Never a plain flag: a secret on a command line is visible to every user of the machine.
    """
    if path is not None:
        key = path.read_bytes().strip()
    else:
        key = os.environ.get("SOCIETY_KEY", "").encode()
    if path is not None and not key:
        msg = f"--society-key-file {path}: the file is empty"
        raise ConfigError(msg)
    return key or None


def tls_files(args: argparse.Namespace) -> TlsFiles:
    """The ``--tls-*`` options of a command that talks to a broker."""
    if args.tls_key is not None and args.tls_cert is None:
        die("--tls-key needs --tls-cert")
    return TlsFiles(ca_file=args.tls_ca, cert_file=args.tls_cert, key_file=args.tls_key)


def die(message: str, code: int = 2) -> NoReturn:
    sys.stderr.write(f"society: error: {message}\n")
    raise SystemExit(code)
