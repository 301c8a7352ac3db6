"""The bus inspector: see what travels on a society's bus without writing a client.

``society inspect --broker URL [--society NAME] [--json]`` subscribes to the society's topics
and prints every message decoded and validated exactly as the society's own processes do it:
time, society, agent, kind, ``seq``/``version``, size and the key fields of each kind, or the
reason a message would be rejected. See ``docs/report.md``.
"""

from __future__ import annotations

import argparse
import asyncio

from agents.cli.options import tls_files
from agents.inspect.command import InspectOptions, inspect_bus
from agents.inspect.decoding import KINDS, parse_kinds

__all__ = ["KINDS", "cmd_inspect", "parse_kinds"]


def cmd_inspect(args: argparse.Namespace) -> int:
    options = InspectOptions(
        broker=args.broker,
        tls=tls_files(args),
        society=args.society,
        json_lines=bool(args.json),
        kinds=args.kinds,
        count=args.count,
        duration=args.duration,
        connect_timeout=args.connect_timeout,
    )
    return asyncio.run(inspect_bus(options))
