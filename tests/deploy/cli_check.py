"""Checks a container's command and SOCIETY_* environment with the real ``society`` parser.

docker compose and Kubernetes start the image's ``society`` entrypoint with a command (``agent``,
``coordinator``, ...) and configure it through environment variables. A misspelt variable is
silently ignored by the process, so these checks fail on any ``SOCIETY_*`` variable the chosen
subcommand does not read, and run the parser itself on the command and the environment, so
a value it would refuse fails here.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
from collections.abc import Iterator, Mapping, Sequence

from agents.cli.options import SocietyParser, parse_args
from agents.cli.parser import build_parser

__all__ = ["check_society_container"]


@contextlib.contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    """Exactly ``values`` as the SOCIETY_* variables (others of the test's are hidden)."""
    saved = {key: value for key, value in os.environ.items() if key.startswith("SOCIETY_")}
    for key in saved:
        del os.environ[key]
    os.environ.update(values)
    try:
        yield
    finally:
        for key in values:
            os.environ.pop(key, None)
        os.environ.update(saved)


def _known_variables(parser: SocietyParser, chosen: SocietyParser) -> set[str]:
    return {option.env for option in [*parser.env_options, *chosen.env_options] if option.env}


def check_society_container(
    where: str, command: Sequence[str], environment: Mapping[str, str]
) -> argparse.Namespace:
    """Parse ``command`` with ``environment`` as ``society`` would; return the options.

    Raises AssertionError naming ``where`` for an unknown SOCIETY_* variable, or for a
    command or value the parser refuses (with the parser's own one-line error).
    """
    society = {key: value for key, value in environment.items() if key.startswith("SOCIETY_")}
    parser = build_parser()
    errors = io.StringIO()
    with _environment(society), contextlib.redirect_stderr(errors):
        try:
            namespace, chosen = parse_args(parser, list(command))
        except SystemExit as exc:
            msg = f"{where}: `society {' '.join(command)}` is refused: {errors.getvalue().strip()}"
            raise AssertionError(msg) from exc
    unknown = sorted(set(society) - _known_variables(parser, chosen))
    assert not unknown, f"{where}: `society {command[0]}` does not read {', '.join(unknown)}"
    return namespace
