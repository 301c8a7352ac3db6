"""The ``society`` command: ``run``, ``agent``, ``coordinator``, ``evaluator``, ``broker``, ..."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Final

from agents._logging import configure_logging
from agents.cli.commands import (
    cmd_agent,
    cmd_broker,
    cmd_coordinator,
    cmd_evaluator,
    cmd_inspect,
    cmd_report,
    cmd_run,
    cmd_scenarios,
)
from agents.cli.options import parse_args
from agents.cli.parser import build_parser
from agents.exceptions import ConfigError, SocietyError

__all__ = ["main"]

_COMMANDS: Final[dict[str, Callable[..., int]]] = {
    "run": cmd_run,
    "agent": cmd_agent,
    "coordinator": cmd_coordinator,
    "evaluator": cmd_evaluator,
    "broker": cmd_broker,
    "scenarios": cmd_scenarios,
    "report": cmd_report,
    "inspect": cmd_inspect,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``society`` console script. Returns the exit status.

    Exit status: 0 success; 1 a runtime failure (broker refused us, a process failed);
    2 a bad flag, environment variable, scenario or hyperparameter; 130 interrupted.
    """
    args, _ = parse_args(build_parser(), argv)
    configure_logging(args.log_level, json_lines=bool(args.json_logs), name=args.command)
    try:
        return _COMMANDS[args.command](args)
    except ConfigError as exc:
        sys.stderr.write(f"society: error: {exc}\n")
        return 2
    except SocietyError as exc:
        sys.stderr.write(f"society: {args.command} failed: {exc}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("society: interrupted\n")
        return 130
