"""A process's flags declared once, as the fields of a frozen dataclass.

Each field carries a :class:`Flag` (its name, help text, environment variable and value type)
in its metadata, and its default as the field's default. From that one declaration come:

- the parser: ``agents.cli`` adds one option per field (:func:`flag_fields`);
- the typed settings: :func:`from_values` builds the dataclass from the parsed values;
- the command line: :func:`to_argv` turns settings back into flags, which is how
  ``society run`` starts its agents and coordinator.

``from_values(cls, parse(to_argv(settings))) == settings`` for every settings object; the
tests check it for every declared process.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

__all__ = ["Flag", "FlagKind", "flag_field", "flag_fields", "from_values", "to_argv"]

#: ``value``: ``--flag VALUE``; ``switch``: ``--flag`` alone (off when absent);
#: ``append``: ``--flag VALUE`` repeatable, a tuple of values (``None`` when absent).
FlagKind = Literal["value", "switch", "append"]

_METADATA_KEY = "agents.flags"

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Flag:
    """One command-line option: what the parser shows and checks, and how a value is written."""

    name: str
    help: str
    env: str | None = None
    #: Text to value; raises ``argparse.ArgumentTypeError`` (or ValueError) saying what is expected.
    type: Callable[[str], Any] | None = None
    kind: FlagKind = "value"
    choices: tuple[str, ...] | None = None
    metavar: str | None = None
    #: Value to text, the inverse of ``type``.
    render: Callable[[Any], str] = str

    @property
    def dest(self) -> str:
        """The settings field (and argparse destination) of this flag."""
        return self.name.removeprefix("--").replace("-", "_")

    def argv(self, value: Any) -> list[str]:
        """The command-line words that give ``value``; none for an unset value or a switch off."""
        if self.kind == "switch":
            return [self.name] if value else []
        if value is None:
            return []
        items = value if self.kind == "append" else (value,)
        return [word for item in items for word in self._words(self.render(item))]

    def _words(self, text: str) -> list[str]:
        # argparse would take "-x" after the flag for another flag; "--flag=-x" is unambiguous.
        return [f"{self.name}={text}"] if text.startswith("-") else [self.name, text]


def flag_field(flag: Flag, default: Any = None, *, factory: Callable[[], Any] | None = None) -> Any:
    """A dataclass field declaring ``flag``, with ``default`` (or ``factory()``; a switch: off)."""
    if flag.kind == "switch":
        default = False
    metadata = {_METADATA_KEY: flag}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def flag_fields(cls: type[Any]) -> Iterator[tuple[Flag, Any]]:
    """Each flag declared by the settings class ``cls``, in order, with its default."""
    for field in dataclasses.fields(cls):
        flag = field.metadata.get(_METADATA_KEY)
        if not isinstance(flag, Flag):
            continue
        if flag.dest != field.name:
            msg = f"{cls.__name__}.{field.name} declares the flag {flag.name}"
            raise TypeError(msg)
        if field.default_factory is not dataclasses.MISSING:
            yield flag, field.default_factory()
        else:
            yield flag, None if field.default is dataclasses.MISSING else field.default


def from_values(cls: type[T], values: Mapping[str, Any]) -> T:
    """Settings of type ``cls`` from parsed values (by destination; extra keys are ignored).

    A switch is on when its value is truthy (an environment variable gives it as text); a
    repeated flag's values become a tuple.
    """
    fields: dict[str, Any] = {}
    for flag, _ in flag_fields(cls):
        value = values[flag.dest]
        if flag.kind == "switch":
            value = bool(value)
        elif flag.kind == "append" and value is not None:
            value = tuple(value)
        fields[flag.dest] = value
    return cls(**fields)


def to_argv(settings: object) -> list[str]:
    """The flags that give ``settings``: every field that holds a value, in declared order.

    Everything set is written, defaults included, so a process started with these flags has
    exactly these settings whatever its environment holds for them.
    """
    return [
        word
        for flag, _ in flag_fields(type(settings))
        for word in flag.argv(getattr(settings, flag.dest))
    ]
