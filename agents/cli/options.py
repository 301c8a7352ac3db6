"""argparse with one-line errors and 12-factor environment variables.

Every error is one line, ``society: error: <what was wrong>``, and exit status 2. Options may
name an environment variable: when the flag is absent from the command line, the variable is
read, through the same type check as the flag, and an error names the variable.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

from agents.exceptions import ConfigError
from agents.flags import Flag, flag_fields, from_values

__all__ = ["SocietyParser", "parse_args", "settings_of"]


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

    def flag(self, flag: Flag, default: Any = None) -> None:
        """Add a declared :class:`~agents.flags.Flag`."""
        kwargs: dict[str, Any] = {}
        if flag.kind == "switch":
            kwargs.update(action="store_const", const=True)
        elif flag.kind == "append":
            kwargs["action"] = "append"
        if flag.choices is not None:
            kwargs["choices"] = list(flag.choices)
        if flag.metavar is not None:
            kwargs["metavar"] = flag.metavar
        self.option(
            flag.name, env=flag.env, type=flag.type, default=default, help=flag.help, **kwargs
        )

    def flags(self, settings: type[Any]) -> None:
        """Add every flag that the settings dataclass ``settings`` declares, in order."""
        assert dataclasses.is_dataclass(settings)
        for flag, default in flag_fields(settings):
            self.flag(flag, default)

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


T = TypeVar("T")


def settings_of(cls: type[T], namespace: argparse.Namespace) -> T:
    """The typed settings ``cls`` (an :mod:`agents.flags` dataclass) of a parsed command line."""
    return from_values(cls, vars(namespace))
