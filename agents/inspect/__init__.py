"""The bus inspector: see what travels on a society's bus without writing a client.

``society inspect --broker URL [--society NAME] [--json]`` subscribes to the society's topics
and prints every message decoded and validated exactly as the society's own processes do it:
time, society, agent, kind, ``seq``/``version``, size and the key fields of each kind, or the
reason a message would be rejected. See ``docs/report.md``.
"""

from __future__ import annotations

from agents.inspect.command import InspectOptions, inspect_bus
from agents.inspect.decoding import KINDS, parse_kinds

__all__ = ["KINDS", "InspectOptions", "inspect_bus", "parse_kinds"]
