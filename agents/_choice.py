"""Settings with a few named values: a ``StrEnum`` that refuses any other with a clear error."""

from __future__ import annotations

from enum import StrEnum
from typing import Self

from agents.exceptions import ConfigError

__all__ = ["Choice"]


class Choice(StrEnum):
    """Subclass with the values as members and :meth:`setting` naming what is chosen."""

    @classmethod
    def setting(cls) -> str:
        """What the value chooses, as the error names it (``strategy``, ``start_from``)."""
        return cls.__name__

    @classmethod
    def parse(cls, value: str) -> Self:
        """The member with this value; ConfigError naming the setting and the choices."""
        try:
            return cls(value)
        except ValueError:
            choices = ", ".join(member.value for member in cls)
            msg = f"unknown {cls.setting()} {value!r}: choose one of {choices}"
            raise ConfigError(msg) from None
