"""Hooks: how integrations plug into agents and the coordinator without the core knowing them.

As httpx's ``event_hooks``: the core calls every hook it was given at a few points of its
life, and publishes what the hook returns; an integration (Home Assistant, in
``agents/integrations``) implements the hooks it needs and is handed to the core by whoever
builds it (the command line). Nothing in ``agents.agent`` or ``agents.coordinator`` imports an
integration.

A hook returns messages rather than publishing them itself: it stays a pure function of what
it is told, testable without a broker, and the core keeps the one bus client. A hook that
raises is logged (once per hook and event) and counted; the agent or coordinator goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from agents.bus.schemas import Status

__all__ = ["AgentHook", "CoordinatorHook", "HookRunner", "Outgoing"]

log = logging.getLogger(__name__)


class Outgoing(Protocol):
    """A message a hook wants published (any object with these attributes)."""

    @property
    def topic(self) -> str: ...
    @property
    def payload(self) -> bytes: ...
    @property
    def qos(self) -> int: ...
    @property
    def retain(self) -> bool: ...


class AgentHook:
    """What an agent tells an integration; override the events you need (all do nothing)."""

    def on_connect(self) -> Sequence[Outgoing]:
        """The agent (re)connected and announced itself online."""
        return ()

    def on_telemetry(self, latest: tuple[Any, dict[str, Any]] | None) -> Sequence[Outgoing]:
        """The agent sent its telemetry; ``latest`` is its device's last (observation, info)."""
        del latest
        return ()

    def on_stop(self) -> Sequence[Outgoing]:
        """The agent stops cleanly (before it says offline)."""
        return ()


class CoordinatorHook:
    """What the coordinator tells an integration; override the events you need."""

    def on_status(self, status: Status) -> Sequence[Outgoing]:
        """An agent's status changed (``status.state``: online or offline)."""
        del status
        return ()


HookCall = tuple[object, Callable[[], Sequence[Outgoing]]]
"""A hook, and its method for one event bound to that event's arguments."""


class HookRunner:
    """Calls hooks and gathers what they return; a hook that raises is logged and counted."""

    def __init__(self) -> None:
        #: Hook calls that raised, over the process's life.
        self.failures = 0
        self._logged: set[tuple[str, str]] = set()

    def gather(self, event: str, calls: Iterable[HookCall]) -> list[Outgoing]:
        """Every message the ``calls`` (hook, bound call) return; failures skipped."""
        out: list[Outgoing] = []
        for hook, call in calls:
            try:
                out.extend(call())
            except Exception:
                self.failures += 1
                key = (type(hook).__name__, event)
                if key not in self._logged:
                    self._logged.add(key)
                    log.exception("%s hook %s failed (logged once; counted)", key[0], event)
        return out
